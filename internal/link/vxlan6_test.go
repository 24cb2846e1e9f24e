package link

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"pontoon/internal/testutil"
)

// Dual-stack VXLAN overlay over the IPv4 underlay of vxlan_test.go: each
// host's network has a slice of each family (10.<second>.n.0/24 and
// fd00:<second>:0:n::/64) on its bridge and the network address of each on
// its VXLAN device; a remote node is two peers, one per family, with one
// VTEP MAC and one underlay address.

// slice6 is the host's IPv6 slice of fd00:<second>::/48.
func (h vxHost) slice6(second byte) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, second, 0, 0, 0, byte(h.n)}), 64)
}

// sandboxAddr6 is h's sandbox's IPv6 address in its slice.
func (h vxHost) sandboxAddr6(second byte) netip.Addr {
	b := h.slice6(second).Addr().As16()
	b[15] = 2
	return netip.AddrFrom16(b)
}

// vxlan6 is h's device for VNI vni of the dual-stack network <second>.
func (h vxHost) vxlan6(vni int, second byte) VXLAN {
	v := h.vxlan(vni, second)
	v.Addrs = append(v.Addrs, netip.PrefixFrom(h.slice6(second).Addr(), 128))
	return v
}

// peers6 is what the other hosts program for h's dual-stack network: its
// IPv4 slice, then its IPv6 one, with the same VTEP MAC and underlay.
func (h vxHost) peers6(second byte) []Peer {
	p6 := h.peer(second)
	p6.Slice, p6.Gateway = h.slice6(second), h.slice6(second).Addr()
	return []Peer{h.peer(second), p6}
}

// network6 is network() dual-stack: the bridge has both gateways, the
// sandbox both addresses and default routes, the VXLAN device both
// slices' network addresses; IPv6 forwarding is on.
func (h vxHost) network6(t testing.TB, vni int, second byte) string {
	t.Helper()
	if _, err := h.l.SetIPv6Forward(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.l.EnsureVXLAN(h.vxlan6(vni, second)); err != nil {
		t.Fatal(err)
	}
	gw := netip.PrefixFrom(h.slice(second).Addr().Next(), 24)
	gw6 := netip.PrefixFrom(h.slice6(second).Addr().Next(), 64)
	br := fmt.Sprintf("br%d", vni)
	if _, err := h.l.EnsureBridge(Bridge{Name: br, Gateways: []netip.Prefix{gw, gw6}, MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	sb := testutil.NewNetns(t)
	a := h.sandboxAddr(second).As4()
	if _, err := h.l.AddVeth(Veth{HostName: fmt.Sprintf("ve%d", vni), Bridge: br, Iface: Iface{Netns: sb, IfName: "eth0", MTU: 1450,
		MAC: net.HardwareAddr{2, 0x42, a[0], a[1], a[2], a[3]},
		Addrs: []Address{{Addr: netip.PrefixFrom(h.sandboxAddr(second), 24), Gateway: gw.Addr()},
			{Addr: netip.PrefixFrom(h.sandboxAddr6(second), 64), Gateway: gw6.Addr()}}, DefaultRoute: true}}); err != nil {
		t.Fatal(err)
	}
	return sb
}

func TestVXLANOverlayDualStack(t *testing.T) {
	testutil.RequireRoot(t)
	h1, h2 := newVXHosts(t)
	sb1, sb2 := h1.network6(t, 46, 206), h2.network6(t, 46, 206)
	if err := h1.l.SetPeers("vx46", h2.peers6(206)); err != nil {
		t.Fatal(err)
	}
	if err := h2.l.SetPeers("vx46", h1.peers6(206)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ h, other vxHost }{{h1, h2}, {h2, h1}} {
		if d := append(c.h.l.CheckVXLAN(c.h.vxlan6(46, 206)), c.h.l.CheckPeers("vx46", c.other.peers6(206))...); d != nil {
			t.Errorf("host %d after setup: %q", c.h.n, d)
		}
	}

	t.Run("device and entries", func(t *testing.T) {
		a := h1.run(t, "ip", "-o", "addr", "show", "dev", "vx46")
		if !strings.Contains(a, "inet 10.206.1.0/32") || !strings.Contains(a, "inet6 fd00:ce:0:1::/128") || strings.Contains(a, "fe80") {
			t.Errorf("vx46 addresses: want its slices' network addresses and no link-local one:\n%s", a)
		}
		if ra := strings.TrimSpace(h1.run(t, "sysctl", "-n", "net.ipv6.conf.vx46.accept_ra")); ra != "0" {
			t.Errorf("vx46 accept_ra = %s, want 0", ra)
		}
		mac := VTEPMAC(h2.underlay()).String()
		r6 := h1.run(t, "ip", "-6", "route", "show", "dev", "vx46")
		if !strings.Contains(r6, "fd00:ce:0:2::/64 via fd00:ce:0:2::") || !strings.Contains(r6, "onlink") {
			t.Errorf("host 1's IPv6 routes on vx46:\n%s", r6)
		}
		n6 := strings.TrimSpace(h1.run(t, "ip", "-6", "neigh", "show", "dev", "vx46"))
		if n6 != "fd00:ce:0:2:: lladdr "+mac+" PERMANENT" {
			t.Errorf("host 1's IPv6 neighbours on vx46:\n%s", n6)
		}
		// One FDB entry for the node, whatever the families of its slices.
		if fdb := strings.TrimSpace(h1.run(t, "bridge", "fdb", "show", "dev", "vx46")); fdb != mac+" dst 192.0.2.2 self permanent" {
			t.Errorf("host 1's FDB of vx46:\n%s\nwant host 2's one entry", fdb)
		}
	})

	t.Run("traffic", func(t *testing.T) {
		for _, c := range []struct {
			from string
			to   netip.Addr
		}{{sb1, h2.sandboxAddr6(206)}, {sb2, h1.sandboxAddr6(206)}, {sb1, h2.sandboxAddr(206)}} {
			if err := vxPing(t, c.from, c.to); err != nil {
				t.Error(err)
			}
		}
		// TCP over IPv6 both ways, in full-sized segments, without NAT.
		if from, _ := transfer(t, sb1, sb2, h2.sandboxAddr6(206), 2<<20); from != h1.sandboxAddr6(206) {
			t.Errorf("host 2's sandbox saw the IPv6 connection from %s, want %s", from, h1.sandboxAddr6(206))
		}
		if from, _ := transfer(t, sb2, sb1, h1.sandboxAddr6(206), 1<<20); from != h2.sandboxAddr6(206) {
			t.Errorf("host 1's sandbox saw the IPv6 connection from %s, want %s", from, h2.sandboxAddr6(206))
		}
		// The device's MTU holds for IPv6: 1450 − 40 (IPv6) − 8 (ICMPv6)
		// bytes of payload pass with DF, one more does not leave.
		if out, err := runIn(t, sb1, "ping", "-6", "-c1", "-W2", "-M", "do", "-s", "1402", h2.sandboxAddr6(206).String()); err != nil {
			t.Errorf("a full-sized IPv6 ping did not pass: %v\n%s", err, out)
		}
		if out, err := runIn(t, sb1, "ping", "-6", "-c1", "-W2", "-M", "do", "-s", "1403", h2.sandboxAddr6(206).String()); err == nil {
			t.Errorf("an IPv6 ping one byte above the MTU passed:\n%s", out)
		}
	})

	t.Run("the IPv6 slice goes, the node stays", func(t *testing.T) {
		if err := h1.l.SetPeers("vx46", h2.peers6(206)[:1]); err != nil {
			t.Fatal(err)
		}
		if r6 := h1.run(t, "ip", "-6", "route", "show", "dev", "vx46"); strings.Contains(r6, "fd00:ce:0:2::") {
			t.Errorf("IPv6 route left:\n%s", r6)
		}
		if n6 := strings.TrimSpace(h1.run(t, "ip", "-6", "neigh", "show", "dev", "vx46")); n6 != "" {
			t.Errorf("IPv6 neighbour left: %s", n6)
		}
		if d := h1.l.CheckPeers("vx46", h2.peers6(206)[:1]); d != nil {
			t.Errorf("CheckPeers with the IPv4 slice only: %q (the FDB entry must stay)", d)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr(206)); err != nil {
			t.Error(err)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr6(206)); err == nil {
			t.Error("IPv6 passed without its route")
		}
		d := h1.l.CheckPeers("vx46", h2.peers6(206))
		if len(d) != 2 || !strings.Contains(d[0], "no route fd00:ce:0:2::/64") || !strings.Contains(d[1], "no neighbour fd00:ce:0:2::") {
			t.Errorf("CheckPeers without the IPv6 slice: %q, want its route and neighbour missing", d)
		}
		if err := h1.l.SetPeers("vx46", h2.peers6(206)); err != nil {
			t.Fatal(err)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr6(206)); err != nil {
			t.Error(err)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		before := h1.entries(t, "vx46")
		moved := h2.peers6(206)
		moved[1].Underlay = netip.MustParseAddr("192.0.2.22") // one MAC, two underlays
		if err := h1.l.SetPeers("vx46", moved); err == nil || !strings.Contains(err.Error(), "own VTEP MAC") {
			t.Errorf("SetPeers with one MAC at two underlay addresses: %v", err)
		}
		two6 := h1.vxlan6(46, 206)
		two6.Addrs = append(two6.Addrs, netip.MustParsePrefix("fd00:ce:0:9::/128"))
		if _, err := h1.l.EnsureVXLAN(two6); err == nil || !strings.Contains(err.Error(), "two IPv6") {
			t.Errorf("EnsureVXLAN with two IPv6 addresses: %v", err)
		}
		if after := h1.entries(t, "vx46"); after != before {
			t.Errorf("bad input changed the entries:\n%s\nwant\n%s", after, before)
		}
		if d := h1.l.CheckVXLAN(h1.vxlan6(46, 206)); d != nil {
			t.Errorf("bad input changed the device: %q", d)
		}
	})

	t.Run("IPv6 off on the device", func(t *testing.T) {
		// Someone turns IPv6 off on the device: its IPv6 address goes, and
		// EnsureVXLAN says why it cannot put it back rather than leave a
		// device that drops IPv6 silently.
		h1.run(t, "sysctl", "-qw", "net.ipv6.conf.vx46.disable_ipv6=1")
		if d := h1.l.CheckVXLAN(h1.vxlan6(46, 206)); len(d) != 1 || !strings.Contains(d[0], "does not have address fd00:ce:0:1::/128") {
			t.Errorf("CheckVXLAN with IPv6 off: %q", d)
		}
		_, err := h1.l.EnsureVXLAN(h1.vxlan6(46, 206))
		if err == nil || !strings.Contains(err.Error(), "disable_ipv6") {
			t.Errorf("EnsureVXLAN with IPv6 off on the device: %v, want an error naming disable_ipv6", err)
		}
		h1.run(t, "sysctl", "-qw", "net.ipv6.conf.vx46.disable_ipv6=0")
		if _, err := h1.l.EnsureVXLAN(h1.vxlan6(46, 206)); err != nil {
			t.Fatal(err)
		}
		if err := h1.l.SetPeers("vx46", h2.peers6(206)); err != nil {
			t.Fatal(err)
		}
		if d := append(h1.l.CheckVXLAN(h1.vxlan6(46, 206)), h1.l.CheckPeers("vx46", h2.peers6(206))...); d != nil {
			t.Errorf("after repair: %q", d)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr6(206)); err != nil {
			t.Error(err)
		}
	})
}

// The Fake takes a node with a slice of each family as two peers, one
// FDB entry.
func TestFakeVXLANDualStack(t *testing.T) {
	f := NewFake()
	f.AddHostLink(LinkInfo{Name: "eth0", MTU: 1500})
	h1, h2 := vxHost{n: 1}, vxHost{n: 2}
	v := h1.vxlan6(46, 206)
	v.Dev = "eth0"
	if _, err := f.EnsureVXLAN(v); err != nil {
		t.Fatal(err)
	}
	if d := f.CheckVXLAN(v); d != nil {
		t.Errorf("CheckVXLAN: %q", d)
	}
	if err := f.SetPeers("vx46", h2.peers6(206)); err != nil {
		t.Fatal(err)
	}
	if d := f.CheckPeers("vx46", h2.peers6(206)); d != nil {
		t.Errorf("CheckPeers: %q", d)
	}
	dump := f.Dump()
	mac := VTEPMAC(h2.underlay()).String()
	for _, want := range []string{"addr 10.206.1.0/32,fd00:ce:0:1::/128 up", "route fd00:ce:0:2::/64 via fd00:ce:0:2:: dev vx46 onlink",
		"neigh fd00:ce:0:2:: lladdr " + mac + " dev vx46 permanent", "neigh 10.206.2.0 lladdr " + mac} {
		if !strings.Contains(dump, want) {
			t.Errorf("Dump lacks %q:\n%s", want, dump)
		}
	}
	if n := strings.Count(dump, "fdb "+mac); n != 1 {
		t.Errorf("%d FDB entries for host 2, want 1:\n%s", n, dump)
	}
	v4 := v
	v4.Addrs = v.Addrs[:1]
	if d := f.CheckVXLAN(v4); len(d) != 1 || !strings.Contains(d[0], "fd00:ce:0:1::/128, not pontoon's") {
		t.Errorf("CheckVXLAN of the IPv4-only device against the dual-stack one: %q", d)
	}
}
