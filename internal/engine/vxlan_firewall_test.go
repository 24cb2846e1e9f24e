package engine

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// publish sends the followers the topology as it is now (a node joined,
// left or claimed a slice).
func (f *fakeEtcd) publish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.followers {
		ch <- f.topologyLocked()
	}
}

// claim gives node slice of network in the cluster.
func (f *fakeEtcd) claim(network, node, slice string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.slices[network] == nil {
		f.slices[network] = map[string][]netip.Prefix{}
	}
	f.slices[network][node] = []netip.Prefix{netip.MustParsePrefix(slice)}
}

// waitFirewall waits until env's firewall dump has every line of want and
// none of unwanted.
func waitFirewall(t *testing.T, env *testEnv, want, unwanted []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		dump := env.fw.Fake.Dump()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(dump, w)
		}
		for _, u := range unwanted {
			ok = ok && !strings.Contains(dump, u)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("firewall dump: want %q, not %q:\n%s", want, unwanted, dump)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func peerElement(addr string) string {
	return "add element inet pontoon vxlan-peers { " + addr + " comment"
}

// The firewall takes VXLAN packets only from the nodes the overlay's
// devices are programmed with, and follows them as they come and go.
func TestOverlayFirewallVXLANPeers(t *testing.T) {
	etcd, h1, h2 := twoNodes(t) // web: vxlan; h1 192.0.2.1, h2 192.0.2.2
	nets, eps := h2.records(t)
	s := h2.e.firewallState(nets, eps)
	want := firewall.VXLANUnderlay{Local: tAddr("192.0.2.2"), Port: 4789, Peers: []netip.Addr{tAddr("192.0.2.1")}}
	if !sameUnderlay(s.VXLAN, want) {
		t.Fatalf("h2's VXLAN underlay: %+v, want %+v", s.VXLAN, want)
	}
	waitFirewall(t, h2, []string{peerElement("192.0.2.1"), "add element inet pontoon vxlan-ports { 4789 "}, nil)

	// What the firewall makes of it.
	ev := firewall.NewEvaluator(s)
	for _, c := range []struct {
		src, want string
	}{{"192.0.2.1", "accept"}, {"192.0.2.9", "drop"}} {
		r := ev.Evaluate(firewall.Packet{Hook: firewall.HookInput, IIF: "under0", Src: tAddr(c.src), Dst: tAddr("192.0.2.2"),
			Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true})
		if got := map[bool]string{true: "drop", false: "accept"}[r.Dropped]; got != c.want {
			t.Errorf("VXLAN from %s: %s, want %s", c.src, got, c.want)
		}
	}

	// A third node joins and takes a slice of web: h2 takes its tunnels,
	// by changing the set's elements, not by rewriting the table.
	_, subscr := h2.e.Subscribe(0, false)
	defer subscr.Close()
	etcd.join("h3", "192.0.2.3")
	etcd.claim("web", "h3", "10.200.2.0/24")
	etcd.publish()
	waitFirewall(t, h2, []string{peerElement("192.0.2.1"), peerElement("192.0.2.3")}, nil)
	// It leaves: no longer.
	etcd.leave("h3")
	etcd.publish()
	waitFirewall(t, h2, []string{peerElement("192.0.2.1")}, []string{peerElement("192.0.2.3")})
	for drained := false; !drained; {
		select {
		case ev := <-subscr.C:
			if ev.Kind == model.EventFirewallSynced {
				t.Errorf("a node joining or leaving rewrote the firewall's table (%+v): want its peer's element changed only", ev)
			}
		default:
			drained = true
		}
	}

	// A node holding no slice of a VXLAN network of this host is no peer.
	etcd.join("h4", "192.0.2.4")
	etcd.publish()
	h2.e.HealNow(context.Background())
	if dump := h2.fw.Fake.Dump(); strings.Contains(dump, peerElement("192.0.2.4")) {
		t.Errorf("a node without a slice of web is a VXLAN peer:\n%s", dump)
	}

	// Only VXLAN networks count: a host-gw one has no tunnel.
	hostgw := &model.Network{Name: "fast", Driver: model.DriverOverlay, Overlay: &model.OverlayOptions{Subnets: []model.OverlaySubnet{{Prefix: tPrefix("10.201.0.0/16"), SliceBits: 24}}, Mode: model.OverlayHostGW}}
	if u := h2.e.fwVXLAN([]*model.Network{hostgw}); u.Local.IsValid() {
		t.Errorf("host-gw only: VXLAN underlay %+v, want none", u)
	}
	// Nor does a host without a cluster check anything.
	if u := newEnv(t).e.fwVXLAN(nets); u.Local.IsValid() {
		t.Errorf("no cluster: VXLAN underlay %+v, want none", u)
	}
	// h1 made web before h2 had a slice: its peers come with its
	// topology (here read once, when web was made: none yet).
	nets1, eps1 := h1.records(t)
	if u := h1.e.firewallState(nets1, eps1).VXLAN; u.Local != tAddr("192.0.2.1") || slices.Contains(u.Peers, tAddr("192.0.2.1")) {
		t.Errorf("h1's VXLAN underlay: %+v, want its own address and not itself as a peer", u)
	}
}
