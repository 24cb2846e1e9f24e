package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pontoon/internal/store/etcdtest"
)

// reach6Within waits until sandbox sb on h pings ip over IPv6 (the peers
// are programmed within one etcd round trip; 10 s is a generous bound).
func reach6Within(t testing.TB, h *Host, sb, ip string) {
	t.Helper()
	if out, ok := within(10*time.Second, func() (string, bool) {
		o, err := h.TryIn(h.SandboxNS(sb), "ping", "-6", "-c1", "-W1", ip)
		return o, err == nil
	}); !ok {
		t.Fatalf("%s → %s across the overlay: %s\nroutes: %s", sb, ip, out, h.In(h.NS, "ip", "-6", "route"))
	}
}

// slicesWithin waits until node ls on h shows n slices of network for
// each of the two nodes, and returns them by node.
func slicesWithin(t testing.TB, h *Host, network string, n int) map[string][]netip.Prefix {
	t.Helper()
	out := map[string][]netip.Prefix{}
	if got, ok := within(5*time.Second, func() (string, bool) {
		for _, node := range h.nodes() {
			out[node.Name] = node.Slices[network]
		}
		return fmt.Sprint(out), len(out["h1"]) == n && len(out["h2"]) == n
	}); !ok {
		t.Fatalf("node ls: want %d slices of %s per node, have %s", n, network, got)
	}
	return out
}

// A dual-stack VXLAN overlay across two hosts over their IPv4 underlay:
// each host a slice of each family; sandboxes on the two hosts reach each
// other over IPv6 (ping and TCP, both ways, without NAT, full-sized
// packets with DF set), by name (AAAA), and the outside through their
// own host's NAT66; another overlay stays apart; an IPv6-only overlay
// works the same; host-gw with IPv6 is refused with the reason.
func TestOverlayDualStack(t *testing.T) {
	cli := etcdtest.Start(t)
	ep := cli.Endpoints()[0]
	h1, h2 := overlayPair(t, ep)

	if msg := h1.PFail("network", "create", "bad", "--driver", "overlay", "--mode", "host-gw", "--subnet", "10.209.0.0/16", "--subnet", "fd00:209::/48"); !strings.Contains(msg, "host-gw mode cannot carry IPv6") || !strings.Contains(msg, "--mode vxlan") {
		t.Errorf("host-gw with an IPv6 subnet: %s", msg)
	}
	if msg := h1.PFail("network", "create", "bad", "--driver", "overlay", "--subnet", "10.209.0.0/16", "--slice-size6", "56"); !strings.Contains(msg, "IPv6 --subnet") {
		t.Errorf("--slice-size6 without an IPv6 subnet: %s", msg)
	}
	if msg := h1.PFail("network", "create", "bad", "--driver", "overlay", "--subnet", "fd00:209::/48", "--slice-size6", "125"); !strings.Contains(msg, "--slice-size6 from 48 to 124") {
		t.Errorf("--slice-size6 125: %s", msg)
	}
	if out := h1.P("network", "ls", "-q"); strings.Contains(out, "bad") {
		t.Fatalf("a refused network exists: %s", out)
	}

	h1.P("network", "create", "web", "--driver", "overlay", "--subnet", "10.206.0.0/16", "--subnet", "fd00:206::/48")
	waitNetwork(t, h2, "web")
	// Each node a slice of each family (which node gets which is a race
	// between the two), as node ls shows it, IPv4 first.
	sl := slicesWithin(t, h2, "web", 2)
	if sl["h1"][0] == sl["h2"][0] || sl["h1"][1] == sl["h2"][1] || sl["h1"][1].Bits() != 64 || !netip.MustParsePrefix("fd00:206::/48").Contains(sl["h2"][1].Addr()) {
		t.Fatalf("slices of web: %v, want a /24 of 10.206.0.0/16 and a /64 of fd00:206::/48 per node, none twice", sl)
	}
	if out := h2.P("node", "ls"); !strings.Contains(out, "web="+sl["h2"][0].String()+","+sl["h2"][1].String()) {
		t.Errorf("node ls: want h2's two slices:\n%s", out)
	}
	if out := h2.P("network", "inspect", "web"); !strings.Contains(out, "subnet 10.206.0.0/16 slice /24  subnet fd00:206::/48 slice /64") {
		t.Errorf("network inspect web:\n%s", out)
	}
	h1.P("sandbox", "create", "a", "--network", "web")
	h2.P("sandbox", "create", "b", "--network", "web")
	a4, b4 := h1.IP("a", "web"), h2.IP("b", "web")
	a6, b6 := h1.IP6("a", "web"), h2.IP6("b", "web")
	if !sl["h1"][1].Contains(netip.MustParseAddr(a6)) || !sl["h2"][1].Contains(netip.MustParseAddr(b6)) {
		t.Fatalf("IPv6 addresses %s and %s: want each host's own slice of %v", a6, b6, sl)
	}
	h2v6, h2gw6 := sl["h2"][1].String(), sl["h2"][1].Addr().String()
	reach6Within(t, h1, "a", b6)
	if _, err := h2.TryIn(h2.SandboxNS("b"), "ping", "-6", "-c1", "-W2", a6); err != nil {
		t.Errorf("b → a over IPv6: %v", err)
	}
	h2.MustPing("b", a4) // IPv4 beside it

	// The data plane on h1: per family a route and a neighbour for h2's
	// slice, one FDB entry for h2.
	vx := h1.HostLinks("ptvx-")
	if len(vx) != 1 {
		t.Fatalf("h1's VXLAN devices: %v", vx)
	}
	if r := h1.In(h1.NS, "ip", "-6", "route", "show", "dev", vx[0]); !strings.Contains(r, h2v6+" via "+h2gw6) || !strings.Contains(r, "onlink") {
		t.Errorf("h1's IPv6 routes on %s, want %s via %s onlink:\n%s", vx[0], h2v6, h2gw6, r)
	}
	mac := h2.self().VTEPMAC
	if n := h1.In(h1.NS, "ip", "-6", "neigh", "show", "dev", vx[0]); !strings.Contains(n, h2gw6+" lladdr "+mac+" PERMANENT") {
		t.Errorf("h1's IPv6 neighbours on %s (want %s, h2's VTEP MAC %s):\n%s", vx[0], h2gw6, mac, n)
	}
	if fdb := strings.TrimSpace(h1.In(h1.NS, "bridge", "fdb", "show", "dev", vx[0])); fdb != mac+" dst 192.0.2.2 self permanent" {
		t.Errorf("h1's FDB of %s:\n%s\nwant h2's one entry", vx[0], fdb)
	}
	if a := h1.In(h1.NS, "ip", "-o", "addr", "show", "dev", vx[0]); !strings.Contains(a, "inet "+sl["h1"][0].Addr().String()+"/32") || !strings.Contains(a, "inet6 "+sl["h1"][1].Addr().String()+"/128") {
		t.Errorf("%s's addresses, want those of h1's slices %v:\n%s", vx[0], sl["h1"], a)
	}

	// TCP over IPv6 both ways: each side sees the other's own address.
	for _, c := range []struct {
		from, to *Host
		fsb, tsb string
		src, dst string
	}{{h1, h2, "a", "b", a6, b6}, {h2, h1, "b", "a", b6, a6}} {
		srv := ServeTCP(t, c.to.SandboxNS(c.tsb), "["+c.dst+"]:7206")
		if line, err := DialFrom(t, c.from.SandboxNS(c.fsb), srv.Addr); err != nil || !strings.Contains(line, "hello") {
			t.Errorf("TCP %s → %s over IPv6: %q, %v", c.fsb, c.tsb, line, err)
		}
		if p := srv.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], "["+c.src+"]:") {
			t.Errorf("%s saw %v, want a connection from [%s]", c.tsb, p, c.src)
		}
	}

	// MTU: the underlay's 1500 minus VXLAN's 50, for IPv6 too. 1450 − 40
	// (IPv6) − 8 (ICMPv6) bytes of payload pass with DF both ways; one
	// more does not leave the sandbox.
	if out := h1.In(h1.SandboxNS("a"), "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1450 ") {
		t.Errorf("a's eth0: %s, want mtu 1450", out)
	}
	for _, c := range []struct {
		h      *Host
		sb, to string
	}{{h1, "a", b6}, {h2, "b", a6}} {
		if out, err := c.h.TryIn(c.h.SandboxNS(c.sb), "ping", "-6", "-c1", "-W2", "-M", "do", "-s", "1402", c.to); err != nil {
			t.Errorf("a full-sized IPv6 ping %s → %s with DF: %v\n%s", c.sb, c.to, err, out)
		}
	}
	if out, err := h1.TryIn(h1.SandboxNS("a"), "ping", "-6", "-c1", "-W2", "-M", "do", "-s", "1403", b6); err == nil {
		t.Errorf("an IPv6 ping one byte above the MTU passed:\n%s", out)
	}

	// By name across the hosts: AAAA (and A) from the cluster's names.
	if out, ok := within(5*time.Second, func() (string, bool) {
		o, err := h1.lookup("a", "b")
		return o, err == nil && strings.Contains(o, b6) && strings.Contains(o, b4)
	}); !ok {
		t.Errorf("nslookup b from a: want its A and AAAA:\n%s", out)
	}
	if out, err := h1.TryP("exec", "a", "--", "ping", "-6", "-c1", "-W2", "b"); err != nil {
		t.Errorf("ping -6 b by name from a: %v\n%s", err, out)
	}
	if out, err := h2.lookup("b", "a"); err != nil || !strings.Contains(out, a6) {
		t.Errorf("nslookup a from b: %v\n%s", err, out)
	}

	// The outside over IPv6, through a's own host's NAT66 (a ULA range,
	// as on a bridge network).
	out6 := ServeTCP(t, h1.Outside, "["+LANClientIP6+"]:7207")
	if _, err := DialFrom(t, h1.SandboxNS("a"), out6.Addr); err != nil {
		t.Errorf("a → the outside over IPv6: %v", err)
	} else if p := out6.Peers(); !strings.HasPrefix(p[len(p)-1], "["+HostUplinkIP6+"]:") {
		t.Errorf("the outside saw %s, want h1's address %s (NAT66)", p[len(p)-1], HostUplinkIP6)
	}

	// Isolation: another dual-stack overlay's sandbox on h2 reaches
	// neither a nor b over IPv6, nor they it.
	h1.P("network", "create", "other", "--driver", "overlay", "--subnet", "10.207.0.0/16", "--subnet", "fd00:207::/48")
	waitNetwork(t, h2, "other")
	h2.P("sandbox", "create", "c", "--network", "other")
	h1.P("sandbox", "create", "d", "--network", "other")
	c6 := h2.IP6("c", "other")
	reach6Within(t, h1, "d", c6) // other works across the hosts
	for _, x := range []struct {
		h      *Host
		sb, to string
	}{{h2, "c", a6}, {h2, "c", b6}, {h1, "a", c6}, {h2, "b", c6}} {
		if out, err := x.h.TryIn(x.h.SandboxNS(x.sb), "ping", "-6", "-c1", "-W1", x.to); err == nil {
			t.Errorf("%s reached %s on another overlay:\n%s", x.sb, x.to, out)
		}
	}

	// IPv6-only, with /56 slices: made on h2, on h1 too.
	h2.P("network", "create", "six", "--driver", "overlay", "--subnet", "fd00:208::/48", "--slice-size6", "56")
	waitNetwork(t, h1, "six")
	h1.P("sandbox", "create", "e", "--network", "six")
	h2.P("sandbox", "create", "f", "--network", "six")
	e6, f6 := h1.IP6("e", "six"), h2.IP6("f", "six")
	if pe, pf := netip.MustParseAddr(e6), netip.MustParseAddr(f6); netip.PrefixFrom(pe, 56).Masked() == netip.PrefixFrom(pf, 56).Masked() {
		t.Errorf("e %s and f %s: want each host's own /56", e6, f6)
	}
	if sb := h1.Sandbox("e"); len(sb.Endpoints) != 1 || len(sb.Endpoints[0].Addresses) != 1 {
		t.Errorf("e on an IPv6-only overlay: %+v, want one IPv6 address", sb.Endpoints)
	}
	reach6Within(t, h1, "e", f6)
	if out, ok := within(5*time.Second, func() (string, bool) {
		o, err := h2.TryP("exec", "f", "--", "ping", "-6", "-c1", "-W2", "e")
		return o, err == nil
	}); !ok {
		t.Errorf("f pings e by name on the IPv6-only overlay:\n%s", out)
	}

	for _, h := range []*Host{h1, h2} {
		if out, err := h.TryP("doctor"); err != nil {
			t.Errorf("doctor: %v\n%s", err, out)
		}
	}

	// Removal on one host removes it on both, VXLAN devices included.
	for _, x := range []struct {
		h  *Host
		sb string
	}{{h1, "a"}, {h2, "b"}, {h2, "c"}, {h1, "d"}, {h1, "e"}, {h2, "f"}} {
		x.h.P("sandbox", "rm", x.sb)
	}
	for _, n := range []string{"web", "other", "six"} {
		h1.P("network", "rm", n)
	}
	if out, ok := within(10*time.Second, func() (string, bool) {
		l := h2.HostLinks("ptvx-")
		return fmt.Sprint(l, h2.P("network", "ls", "-q")), len(l) == 0
	}); !ok {
		t.Errorf("h2 kept parts of the removed overlays: %s", out)
	}
}
