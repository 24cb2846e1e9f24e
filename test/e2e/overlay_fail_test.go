package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"pontoon/internal/store/etcdtest"
)

var pingLoss = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`)

// The overlay across failures: the inner MTU is underlay − 50 and a
// full-size packet with DF set crosses; a daemon restart keeps its slice
// and the other host loses no packet meanwhile; with etcd stopped the
// traffic goes on and the nodes say they are degraded, and they are
// healthy again once it is back; a killed node's routes vanish from the
// others after its lease's TTL, and come back with it.
func TestOverlayFailures(t *testing.T) {
	etcd := etcdtest.StartServer(t)
	ep := etcd.Client.Endpoints()[0]
	h1, h2 := overlayPair(t, ep, "--node-ttl", "2s")
	h1.P("network", "create", "web", "--driver", "overlay", "--subnet", "10.210.0.0/16")
	waitNetwork(t, h2, "web")
	h1.P("sandbox", "create", "a", "--network", "web")
	h2.P("sandbox", "create", "b", "--network", "web")
	a, b := h1.IP("a", "web"), h2.IP("b", "web")
	reachWithin(t, h1, "a", b)

	// MTU: the underlay's 1500 less VXLAN's 50, in the sandbox; a
	// 1450-byte packet with DF set crosses, one byte more does not leave.
	if out := h1.In(h1.SandboxNS("a"), "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, " mtu 1450 ") {
		t.Errorf("sandbox a's eth0: want mtu 1450 (underlay 1500 − 50): %s", out)
	}
	if out, err := h1.TryIn(h1.SandboxNS("a"), "ping", "-c1", "-W2", "-M", "do", "-s", "1422", b); err != nil {
		t.Errorf("a full-size (1450-byte) ping with DF set, a → b: %v\n%s", err, out)
	}
	if out, err := h1.TryIn(h1.SandboxNS("a"), "ping", "-c1", "-W1", "-M", "do", "-s", "1423", b); err == nil {
		t.Errorf("a 1451-byte ping with DF set left a 1450-MTU link: %s", out)
	}

	// h2's daemon restarts: same slice, and a's pings to b all answered.
	slice := slice4(h2.self(), "web")
	var wg sync.WaitGroup
	var pingOut string
	wg.Add(1)
	go func() {
		defer wg.Done()
		pingOut, _ = h1.TryIn(h1.SandboxNS("a"), "ping", "-c", "40", "-i", "0.1", "-W", "1", b)
	}()
	time.Sleep(300 * time.Millisecond)
	h2.Stop()
	h2.Start("--cluster", ep, "--node-name", "h2", "--underlay", "under0", "--node-ttl", "2s")
	wg.Wait()
	if m := pingLoss.FindStringSubmatch(pingOut); m == nil || m[1] != m[2] {
		t.Errorf("pings a → b while h2's daemon restarted: want none lost:\n%s", pingOut)
	}
	if got := slice4(h2.self(), "web"); got != slice || !slice.IsValid() {
		t.Errorf("h2's slice of web after a restart: %s, want %s", got, slice)
	}
	h2.P("sandbox", "create", "c", "--network", "web")
	if c := netip.MustParseAddr(h2.IP("c", "web")); !slice.Contains(c) {
		t.Errorf("c on h2 got %s, outside h2's slice %s", c, slice)
	}

	// etcd stops: the data plane stays, both nodes say they are degraded.
	etcd.Stop()
	h1.MustPing("a", b)
	for _, h := range []*Host{h1, h2} {
		if out, ok := within(15*time.Second, func() (string, bool) {
			s := h.self()
			return s.Health, strings.Contains(s.Health, "degraded")
		}); !ok {
			t.Errorf("node ls with etcd stopped: health %q, want degraded", out)
		}
	}
	if out, err := h1.TryP("doctor"); err == nil || !strings.Contains(out, "cluster") {
		t.Errorf("doctor with etcd stopped: %v\n%s", err, out)
	}
	time.Sleep(3 * time.Second) // longer than the TTL: the routes stay
	h1.MustPing("a", b)
	h2.MustPing("b", a)

	// etcd is back: healthy again, and changes flow again.
	etcd.Restart()
	for _, h := range []*Host{h1, h2} {
		if out, ok := within(20*time.Second, func() (string, bool) {
			s := h.self()
			return s.Health, s.Health == ""
		}); !ok {
			t.Errorf("node ls after etcd came back: health %q", out)
		}
	}
	if out, err := h1.TryP("doctor"); err != nil {
		t.Errorf("doctor after etcd came back: %v\n%s", err, out)
	}
	h1.MustPing("a", b)

	// h2 dies: after its TTL h1 has no route to its slice any more.
	h1.P("network", "create", "tmp", "--driver", "overlay", "--subnet", "10.217.0.0/16")
	waitNetwork(t, h2, "tmp")
	h2.Kill()
	h1.P("network", "rm", "tmp") // while h2 is down: it prunes its part when it returns
	if out, ok := within(10*time.Second, func() (string, bool) {
		o := h1.In(h1.NS, "ip", "route", "show", slice.String())
		return o, strings.TrimSpace(o) == ""
	}); !ok {
		t.Errorf("h1 kept a route to dead h2's slice %s: %s", slice, out)
	}
	// Forgotten for good: its slice, names and static addresses go;
	// a live node and this one are refused.
	if msg := h1.PFail("node", "rm", "h1"); !strings.Contains(msg, "this one") {
		t.Errorf("node rm of this node: %s", msg)
	}
	out := h1.P("node", "rm", "h2")
	if !strings.Contains(out, "web="+slice.String()) || !strings.Contains(out, "2 names") {
		t.Errorf("node rm h2: %s", out)
	}
	if o, err := h1.lookup("a", "b"); err == nil {
		t.Errorf("b still resolves on h1 after h2 was forgotten: %s", o)
	}
	// It comes back (its old slice is the first free one again): the
	// route too, the traffic and its names.
	h2.Start("--cluster", ep, "--node-name", "h2", "--underlay", "under0", "--node-ttl", "2s")
	if out, ok := within(10*time.Second, func() (string, bool) {
		o, err := h1.TryIn(h1.SandboxNS("a"), "ping", "-c1", "-W1", b)
		return o, err == nil
	}); !ok {
		t.Errorf("a → b after h2 came back: %s", out)
	}
	if out, ok := within(5*time.Second, func() (string, bool) {
		o := h2.P("network", "ls", "-q")
		return o, !strings.Contains(o, "tmp")
	}); !ok {
		t.Errorf("h2 kept its part of tmp, removed from the cluster while it was down: %s", out)
	}
	if msg := h1.PFail("node", "rm", "h2"); !strings.Contains(msg, "live") {
		t.Errorf("node rm of a live node: %s", msg)
	}
	if out, ok := within(5*time.Second, func() (string, bool) {
		o, err := h1.lookup("a", "b")
		return o, err == nil && strings.Contains(o, b)
	}); !ok {
		t.Errorf("b does not resolve on h1 after h2 came back: %s", out)
	}
}

// Overlay networks keep the single-host features: a published port on
// each host (the outside reaches it through that host's address, and the
// sandbox sees the client's own address), and --internal (nothing out,
// but the network's sandboxes on the other host are its own).
func TestOverlayPortsAndInternal(t *testing.T) {
	cli := etcdtest.Start(t)
	h1, h2 := overlayPair(t, cli.Endpoints()[0])
	h1.P("network", "create", "web", "--driver", "overlay", "--subnet", "10.211.0.0/16")
	h1.P("network", "create", "back", "--driver", "overlay", "--subnet", "10.212.0.0/16", "--internal")
	if out, ok := within(10*time.Second, func() (string, bool) {
		o := h2.P("network", "ls", "-q")
		return o, strings.Contains(o, "web") && strings.Contains(o, "back")
	}); !ok {
		t.Fatalf("h2 did not make its part of web and back: %s", out)
	}
	for i, h := range []*Host{h1, h2} {
		name := fmt.Sprintf("s%d", i+1)
		h.P("sandbox", "create", name, "--network", "web", "-p", "8080:80")
		srv := ServeTCP(t, h.SandboxNS(name), "0.0.0.0:80")
		if _, err := DialFrom(t, h.Outside, HostUplinkIP+":8080"); err != nil {
			t.Fatalf("outside → h%d:8080 → %s: %v", i+1, name, err)
		}
		if p := srv.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], RouterIP+":") {
			t.Errorf("%s saw %v, want the outside's own address %s", name, p, RouterIP)
		}
		h.P("sandbox", "create", "i"+name[1:], "--network", "back")
	}
	i1, i2 := h1.IP("i1", "back"), h2.IP("i2", "back")
	if out, ok := within(5*time.Second, func() (string, bool) {
		o, err := h1.TryIn(h1.SandboxNS("i1"), "ping", "-c1", "-W1", i2)
		return o, err == nil
	}); !ok {
		t.Errorf("internal overlay: i1 (h1) → i2 (h2): %s", out)
	}
	h2.MustPing("i2", i1)
	h1.MustNotPing("i1", RouterIP)
	h2.MustNotPing("i2", RouterIP)
	// Isolation between the two overlays, across the hosts too.
	h1.MustNotPing("s1", i2)
	h2.MustNotPing("i2", h1.IP("s1", "web"))

	// Anti-spoofing holds on an overlay: the other hosts trust the
	// network's subnet as a source (remote members), so a sandbox must
	// not send from an address of that subnet that is not its own.
	s1, s2 := h1.Sandbox("s1").Endpoints[0], netip.MustParseAddr(h2.IP("s2", "web"))
	s1MAC, _ := net.ParseMAC(s1.MAC)
	gw := s1.Addresses[0].Gateway.As4()
	gwMAC := net.HardwareAddr{0x02, 0x42, gw[0], gw[1], gw[2], gw[3]} // the bridge's, from its address
	recv := serveUDP(t, h2.SandboxNS("s2"), "0.0.0.0:5003")
	for _, c := range []struct {
		what string
		src  netip.Addr
		pass bool
	}{
		{"its own address", s1.FirstIP(), true},
		// (Not the receiver's own address: its kernel would drop that as
		// a martian whatever the firewall did.)
		{"another address of the network", netip.MustParseAddr("10.211.200.7"), false},
	} {
		before := len(recv.Peers())
		if err := rawUDP(t, h1.SandboxNS("s1"), "eth0", gwMAC, s1MAC, c.src, s2, 5003); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		deadline := time.Now().Add(time.Second)
		for len(recv.Peers()) == before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := len(recv.Peers()) > before; got != c.pass {
			t.Errorf("s1 (h1) → s2 (h2) from %s (%s): arrived %v, want %v", c.src, c.what, got, c.pass)
		}
	}
}

// A 3-member etcd cluster loses its leader (SIGKILL): the daemons carry
// on — traffic flows, names and networks made afterwards still reach the
// other host, and both nodes are healthy.
func TestOverlayEtcdLeaderDies(t *testing.T) {
	etcd := etcdtest.StartCluster(t, 3)
	h1, h2 := overlayPair(t, strings.Join(etcd.Endpoints(), ","))
	h1.P("network", "create", "web", "--driver", "overlay", "--subnet", "10.213.0.0/16")
	waitNetwork(t, h2, "web")
	h1.P("sandbox", "create", "a", "--network", "web")
	h2.P("sandbox", "create", "b", "--network", "web")
	b := h2.IP("b", "web")
	reachWithin(t, h1, "a", b)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader, err := etcd.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	etcd.Members[leader].Kill()
	t.Logf("killed etcd member m%d, the leader", leader)
	h1.MustPing("a", b)

	// Changes still flow between the hosts: a new sandbox's name, a new
	// network.
	h2.P("sandbox", "create", "c", "--network", "web")
	if out, ok := within(15*time.Second, func() (string, bool) {
		o, err := h1.TryP("exec", "a", "--", "ping", "-c1", "-W1", "c")
		return o, err == nil
	}); !ok {
		t.Errorf("a (h1) pings c (h2, made after the leader died) by name: %s", out)
	}
	h1.P("network", "create", "more", "--driver", "overlay", "--subnet", "10.214.0.0/16")
	if out, ok := within(15*time.Second, func() (string, bool) {
		o := h2.P("network", "ls", "-q")
		return o, strings.Contains(o, "more")
	}); !ok {
		t.Errorf("h2 did not make its part of more (defined after the leader died): %s", out)
	}
	for _, h := range []*Host{h1, h2} {
		if out, ok := within(15*time.Second, func() (string, bool) {
			s := h.self()
			return s.Health, s.Health == ""
		}); !ok {
			t.Errorf("node ls after the leader died: health %q", out)
		}
	}
	h2.MustPing("b", h1.IP("a", "web"))
}

// Self-healing covers the overlay's kernel state: a deleted route to the
// other host's slice, a deleted FDB entry and neighbour, a changed MAC
// of the VXLAN device (back to the node's record's VTEP MAC) and a
// deleted VXLAN device are put back, and the traffic flows again.
func TestOverlaySelfHeals(t *testing.T) {
	cli := etcdtest.Start(t)
	h1, h2 := overlayPair(t, cli.Endpoints()[0], "--heal-period", "1s")
	h1.P("network", "create", "web", "--driver", "overlay", "--subnet", "10.215.0.0/16")
	waitNetwork(t, h2, "web")
	h1.P("sandbox", "create", "a", "--network", "web")
	h2.P("sandbox", "create", "b", "--network", "web")
	b := h2.IP("b", "web")
	pings := func(what string) {
		t.Helper()
		if out, ok := within(10*time.Second, func() (string, bool) {
			o, err := h1.TryIn(h1.SandboxNS("a"), "ping", "-c1", "-W1", b)
			return o, err == nil
		}); !ok {
			t.Fatalf("a → b %s: %s\nroutes: %s\nfdb: %s", what, out, h1.In(h1.NS, "ip", "route"), h1.In(h1.NS, "bridge", "fdb", "show"))
		}
	}
	pings("before")
	vx := h1.HostLinks("ptvx-")
	if len(vx) != 1 {
		t.Fatalf("h1's VXLAN devices: %v", vx)
	}
	slice := slice4(h2.self(), "web")
	h1.In(h1.NS, "ip", "route", "del", slice.String())
	pings("after its route was deleted")
	fdb := strings.Fields(h1.In(h1.NS, "bridge", "fdb", "show", "dev", vx[0]))
	if len(fdb) == 0 {
		t.Fatalf("no FDB entry on %s", vx[0])
	}
	h1.In(h1.NS, "bridge", "fdb", "del", fdb[0], "dev", vx[0])
	h1.In(h1.NS, "ip", "neigh", "flush", "dev", vx[0])
	pings("after its FDB entry and neighbour were deleted")
	// Another MAC on h1's device: h2 sends to the MAC of h1's record,
	// which the device no longer takes, until self-healing puts it back.
	mac := h1.self().VTEPMAC
	h1.In(h1.NS, "ip", "link", "set", vx[0], "address", "02:11:22:33:44:55")
	pings("after the VXLAN device's MAC was changed")
	if out := h1.In(h1.NS, "ip", "-br", "link", "show", vx[0]); !strings.Contains(out, mac) {
		t.Errorf("h1's %s after self-healing: %s, want its record's VTEP MAC %s", vx[0], out, mac)
	}
	h1.In(h1.NS, "ip", "link", "del", vx[0])
	pings("after the VXLAN device was deleted")
}

// The cluster's etcd over TLS with client certificates (--etcd-cacert,
// --etcd-cert, --etcd-key): the nodes join, and the overlay carries
// traffic.
func TestOverlayEtcdTLS(t *testing.T) {
	etcd := etcdtest.StartServerTLS(t)
	f := etcd.TLS
	h1, h2 := overlayPair(t, etcd.Client.Endpoints()[0], "--etcd-cacert", f.CA, "--etcd-cert", f.ClientCert, "--etcd-key", f.ClientKey)
	h1.P("network", "create", "web", "--driver", "overlay", "--subnet", "10.216.0.0/16")
	waitNetwork(t, h2, "web")
	h1.P("sandbox", "create", "a", "--network", "web")
	h2.P("sandbox", "create", "b", "--network", "web")
	if out, ok := within(10*time.Second, func() (string, bool) {
		o, err := h1.TryP("exec", "a", "--", "ping", "-c1", "-W1", "b")
		return o, err == nil
	}); !ok {
		t.Errorf("a pings b by name, the cluster on TLS etcd: %s", out)
	}
	if s := h1.self(); s.Health != "" {
		t.Errorf("h1's health on TLS etcd: %s", s.Health)
	}
}
