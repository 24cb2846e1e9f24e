package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// An overlay network's members on other hosts are its own only through
// the interface they come through (issue #13): the VXLAN device in vxlan
// mode, the underlay in host-gw mode. The engine tells the firewall
// which, and a packet from the range on another link of the host is
// dropped.
func TestOverlayFirewallUplink(t *testing.T) {
	_, h1, _ := twoNodes(t) // web: vxlan, 10.200.0.0/16; h1's slice 10.200.0.0/24
	ctx := context.Background()
	if _, err := h1.e.CreateNetwork(ctx, model.NetworkSpec{Name: "fast", Driver: model.DriverOverlay,
		Subnets: []model.Subnet{{Prefix: tPrefix("10.201.0.0/16")}}, Overlay: &model.OverlayOptions{Mode: model.OverlayHostGW}}); err != nil {
		t.Fatal(err)
	}
	nets, eps := h1.records(t)
	s := h1.e.firewallState(nets, eps)
	byName := map[string]firewall.Network{}
	for _, n := range s.Networks {
		byName[n.Name] = n
	}
	web, fast := byName["web"], byName["fast"]
	var webVXLAN string
	for _, n := range nets {
		if n.Name == "web" {
			webVXLAN = n.Overlay.VXLAN
		}
	}
	if web.RemoteVia != webVXLAN || !strings.HasPrefix(web.RemoteVia, model.VXLANPrefix) {
		t.Errorf("web (vxlan): remote members through %q, want its VXLAN device", web.RemoteVia)
	}
	if fast.RemoteVia != "under0" {
		t.Errorf("fast (host-gw): remote members through %q, want the underlay under0", fast.RemoteVia)
	}
	for _, n := range []firewall.Network{web, fast} {
		if len(n.Remotes) != 1 {
			t.Errorf("%s: remote members %v, want the network's whole range", n.Name, n.Remotes)
		}
	}

	// What the firewall makes of it: the range is a member through the
	// uplink, nobody's from another link.
	ev := firewall.NewEvaluator(s)
	for _, c := range []struct {
		name string
		p    firewall.Packet
		want string
	}{
		{"fast: a member through the underlay", firewall.Packet{Hook: firewall.HookForward, IIF: "under0", OIF: fast.Bridge,
			Src: tAddr("10.201.1.2"), Dst: tAddr("10.201.0.2"), Proto: "tcp", DPort: 80}, "remote-in"},
		{"fast: the range from another link", firewall.Packet{Hook: firewall.HookForward, IIF: "lan0", OIF: fast.Bridge,
			Src: tAddr("10.201.1.2"), Dst: tAddr("10.201.0.2"), Proto: "tcp", DPort: 80}, "unsolicited"},
		{"web: a member through its VXLAN device", firewall.Packet{Hook: firewall.HookForward, IIF: web.RemoteVia, OIF: web.Bridge,
			Src: tAddr("10.200.1.2"), Dst: tAddr("10.200.0.2"), Proto: "tcp", DPort: 80}, "remote-in"},
		{"web: its VXLAN device delivering this host's own slice", firewall.Packet{Hook: firewall.HookForward, IIF: web.RemoteVia, OIF: web.Bridge,
			Src: tAddr("10.200.0.9"), Dst: tAddr("10.200.0.2"), Proto: "tcp", DPort: 80}, "overlay-source"},
		{"web: the range from the underlay, unencapsulated", firewall.Packet{Hook: firewall.HookForward, IIF: "under0", OIF: web.Bridge,
			Src: tAddr("10.200.1.2"), Dst: tAddr("10.200.0.2"), Proto: "tcp", DPort: 80}, "unsolicited"},
	} {
		r := ev.Evaluate(c.p)
		if r.By == nil || r.By.Rule == nil || r.By.Rule.Name != c.want {
			t.Errorf("%s: decided by %+v, want %s", c.name, r.By, c.want)
		}
	}
}

// A daemon started without --cluster keeps its overlay networks' records
// but has no underlay: the firewall is told of no remote members, so it
// accepts them from nowhere (rather than from everywhere).
func TestOverlayFirewallNoCluster(t *testing.T) {
	env := newEnv(t)
	n := &model.Network{Name: "fast", Driver: model.DriverOverlay, Bridge: "ptbr-fast", ICC: true,
		Subnets: []model.Subnet{{Prefix: tPrefix("10.201.0.0/24")}},
		Overlay: &model.OverlayOptions{Subnets: []model.OverlaySubnet{{Prefix: tPrefix("10.201.0.0/16"), SliceBits: 24}}, Mode: model.OverlayHostGW}}
	fn := env.e.fwNetwork(n)
	if fn.RemoteVia != "" || len(fn.Remotes) != 0 {
		t.Errorf("no cluster: remote members %v through %q, want none", fn.Remotes, fn.RemoteVia)
	}
	// A vxlan network's device is its record's own.
	n.Overlay = &model.OverlayOptions{Subnets: []model.OverlaySubnet{{Prefix: tPrefix("10.201.0.0/16"), SliceBits: 24}}, VXLAN: "ptvx-7", VNI: 7}
	fn = env.e.fwNetwork(n)
	if fn.RemoteVia != "ptvx-7" || len(fn.Remotes) != 1 {
		t.Errorf("no cluster, vxlan: remote members %v through %q, want 10.201.0.0/16 through ptvx-7", fn.Remotes, fn.RemoteVia)
	}
	if err := firewall.NewFake().Sync(context.Background(), firewall.State{Networks: []firewall.Network{fn}}); err != nil {
		t.Errorf("the firewall refuses what the engine made: %v", err)
	}
}

// records are the networks and endpoints in env's store.
func (env *testEnv) records(t *testing.T) ([]*model.Network, []*model.Endpoint) {
	t.Helper()
	var nets []*model.Network
	var eps []*model.Endpoint
	if err := env.st.View(context.Background(), func(tx store.Tx) (err error) {
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		eps, err = tx.Endpoints()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return nets, eps
}

// On a node of a cluster, UDP port 4789 carries the VXLAN tunnels: a
// sandbox may not publish it (on any network), and nothing is made; TCP
// 4789 and other UDP ports are fine.
func TestTunnelPortNotPublished(t *testing.T) {
	_, h1, _ := twoNodes(t)
	ctx := context.Background()
	before := h1.snapshot(t)
	for _, p := range []string{"4789:53/udp", "4780-4790:4780-4790/udp"} {
		_, err := h1.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, Ports: tPorts(p)}}})
		if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "VXLAN") {
			t.Errorf("-p %s: %v, want a conflict naming the VXLAN tunnels", p, err)
		}
	}
	if after := h1.snapshot(t); after != before {
		t.Errorf("a refused publish changed something:\n%s\nwant\n%s", after, before)
	}
	for i, p := range []string{"4789:80/tcp", "4790:53/udp"} {
		if _, err := h1.e.CreateSandbox(ctx, model.SandboxSpec{Name: fmt.Sprint("ok", i), Networks: []model.AttachSpec{{Network: model.DefaultNetwork, Ports: tPorts(p)}}}); err != nil {
			t.Errorf("-p %s: %v", p, err)
		}
	}
}
