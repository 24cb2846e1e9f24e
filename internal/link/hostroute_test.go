package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"pontoon/internal/testutil"
)

// Host-gw kernel tests: the VXLAN lab's two hosts (newVXHosts: under0,
// 192.0.2.1/24 and 192.0.2.2/24), each with a bridge for its slice of
// 10.207.0.0/16 and one sandbox, and no tunnel: only host routes.

// r207 is the host-gw network's whole range.
var r207 = netip.MustParsePrefix("10.207.0.0/16")

// gwNetwork makes, on h, bridge br7 with its slice's gateway
// (10.207.n.1/24, MTU 1500) and a sandbox on it (10.207.n.2); it returns
// the sandbox's namespace.
func (h vxHost) gwNetwork(t testing.TB) string {
	t.Helper()
	gw := netip.PrefixFrom(h.slice(207).Addr().Next(), 24)
	if _, err := h.l.EnsureBridge(Bridge{Name: "br7", Gateways: []netip.Prefix{gw}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	sb := testutil.NewNetns(t)
	a := h.sandboxAddr(207).As4()
	if _, err := h.l.AddVeth(Veth{HostName: "ve7", Bridge: "br7", Iface: Iface{Netns: sb, IfName: "eth0", MTU: 1500,
		MAC:   net.HardwareAddr{2, 0x07, a[0], a[1], a[2], a[3]},
		Addrs: []Address{{Addr: netip.PrefixFrom(h.sandboxAddr(207), 24), Gateway: gw.Addr()}}, DefaultRoute: true}}); err != nil {
		t.Fatal(err)
	}
	return sb
}

// gwRoute is what the other host programs for h.
func (h vxHost) gwRoute() HostGWRoute {
	return HostGWRoute{Dst: h.slice(207), Via: h.underlay(), Peer: fmt.Sprintf("h%d", h.n)}
}

// routes lists h's routes on under0 as `ip route` prints them.
func (h vxHost) routes(t testing.TB) string {
	t.Helper()
	return h.run(t, "ip", "-4", "route", "show", "dev", "under0")
}

func TestHostRoutes(t *testing.T) {
	testutil.RequireRoot(t)
	h1, h2 := newVXHosts(t)
	sb1, sb2 := h1.gwNetwork(t), h2.gwNetwork(t)
	// h3 is on another segment: 198.51.100.9 is inside none of under0's
	// prefixes, so the kernel could not route through it.
	h3 := HostGWRoute{Dst: netip.MustParsePrefix("10.207.3.0/24"), Via: netip.MustParseAddr("198.51.100.9"), Peer: "h3"}
	// Someone else's route on the underlay, through h2: never touched.
	h1.run(t, "ip", "route", "add", "10.99.0.0/24", "via", "192.0.2.2", "dev", "under0")

	err := h1.l.SetHostRoutes("under0", r207, []HostGWRoute{h2.gwRoute(), h3})
	var nos *NotOnSegmentError
	if !errors.Is(err, ErrNotOnSegment) || !errors.As(err, &nos) || nos.Route.Peer != "h3" || !strings.Contains(err.Error(), "--mode vxlan") {
		t.Fatalf("SetHostRoutes with a node on another segment: %v, want a NotOnSegmentError for h3", err)
	}
	if err := h2.l.SetHostRoutes("under0", r207, []HostGWRoute{h1.gwRoute()}); err != nil {
		t.Fatal(err)
	}
	r1 := h1.routes(t)
	if !strings.Contains(r1, "10.207.2.0/24 via 192.0.2.2 proto 112") || strings.Contains(r1, "10.207.3.0") || !strings.Contains(r1, "10.99.0.0/24 via 192.0.2.2") {
		t.Fatalf("h1's routes on under0:\n%s", r1)
	}

	// Real traffic, no NAT (there is none here): the receiver sees the
	// sender's own address, and a full-size packet with DF set passes
	// (no encapsulation: the underlay's MTU).
	if err := vxPing(t, sb1, h2.sandboxAddr(207)); err != nil {
		t.Fatal(err)
	}
	if out, err := runIn(t, sb2, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", h1.sandboxAddr(207).String()); err != nil {
		t.Fatalf("full-size ping with DF: %v\n%s", err, out)
	}
	if from, _ := transfer(t, sb1, sb2, h2.sandboxAddr(207), 256<<10); from != h1.sandboxAddr(207) {
		t.Fatalf("h2's sandbox saw the connection from %s, want %s", from, h1.sandboxAddr(207))
	}

	// Check: h2 matches; h1 names h3's refusal and nothing else.
	if d := h2.l.CheckHostRoutes("under0", r207, []HostGWRoute{h1.gwRoute()}); d != nil {
		t.Fatalf("h2: CheckHostRoutes: %q", d)
	}
	d := h1.l.CheckHostRoutes("under0", r207, []HostGWRoute{h2.gwRoute(), h3})
	if len(d) != 1 || !strings.Contains(d[0], "node h3") || !strings.Contains(d[0], "198.51.100.9") {
		t.Fatalf("h1: CheckHostRoutes: %q, want h3's refusal only", d)
	}

	// What the kernel lost and what someone added with our protocol: Check
	// says so, Set repairs both and leaves the foreign route.
	h1.run(t, "ip", "route", "del", "10.207.2.0/24", "dev", "under0")
	h1.run(t, "ip", "route", "add", "10.207.9.0/24", "via", "192.0.2.2", "dev", "under0", "proto", "112")
	d = h1.l.CheckHostRoutes("under0", r207, []HostGWRoute{h2.gwRoute()})
	if len(d) != 2 || !strings.HasPrefix(d[0], "no route 10.207.2.0/24 via 192.0.2.2") || !strings.Contains(d[1], "10.207.9.0/24 via 192.0.2.2 dev under0 proto 112 is no node's") {
		t.Fatalf("CheckHostRoutes after damage: %q", d)
	}
	if err := h1.l.SetHostRoutes("under0", r207, []HostGWRoute{h2.gwRoute()}); err != nil {
		t.Fatal(err)
	}
	if d := h1.l.CheckHostRoutes("under0", r207, []HostGWRoute{h2.gwRoute()}); d != nil {
		t.Fatalf("CheckHostRoutes after repair: %q", d)
	}
	if err := vxPing(t, sb1, h2.sandboxAddr(207)); err != nil {
		t.Fatal(err)
	}

	// A changed gateway is replaced (h2's slice now via .3, on the segment).
	moved := h2.gwRoute()
	moved.Via = netip.MustParseAddr("192.0.2.3")
	if err := h1.l.SetHostRoutes("under0", r207, []HostGWRoute{moved}); err != nil {
		t.Fatal(err)
	}
	if r := h1.routes(t); !strings.Contains(r, "10.207.2.0/24 via 192.0.2.3 proto 112") || strings.Contains(r, "10.207.2.0/24 via 192.0.2.2") {
		t.Fatalf("after the gateway moved:\n%s", r)
	}

	// Bad input changes nothing.
	before := h1.routes(t)
	for _, bad := range [][]HostGWRoute{
		{moved, moved},
		{{Dst: netip.MustParsePrefix("10.207.2.1/24"), Via: moved.Via}},
		{{Dst: netip.MustParsePrefix("10.207.2.0/24"), Via: netip.MustParseAddr("fd00::1")}},
		{{Dst: netip.MustParsePrefix("10.207.2.0/24")}},
	} {
		if err := h1.l.SetHostRoutes("under0", r207, bad); err == nil {
			t.Errorf("SetHostRoutes(%v): no error", bad)
		}
	}
	if err := h1.l.SetHostRoutes("nosuch0", r207, nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("SetHostRoutes on a missing device: %v", err)
	}
	if after := h1.routes(t); after != before {
		t.Fatalf("bad input changed the routes:\n%s\nwas:\n%s", after, before)
	}

	// Another host-gw network's routes on the same device are its own:
	// syncing one network never removes the other's.
	r208 := netip.MustParsePrefix("10.208.0.0/16")
	other := HostGWRoute{Dst: netip.MustParsePrefix("10.208.2.0/24"), Via: h2.underlay(), Peer: "h2"}
	if err := h1.l.SetHostRoutes("under0", r208, []HostGWRoute{other}); err != nil {
		t.Fatal(err)
	}
	if err := h1.l.SetHostRoutes("under0", r208, []HostGWRoute{moved}); err == nil {
		t.Fatal("SetHostRoutes accepted a route outside its range")
	}

	// None: all of this network's go; the other network's and the
	// foreign one stay.
	if err := h1.l.SetHostRoutes("under0", r207, nil); err != nil {
		t.Fatal(err)
	}
	if r := h1.routes(t); strings.Contains(r, "10.207.") || !strings.Contains(r, "10.208.2.0/24 via 192.0.2.2 proto 112") || !strings.Contains(r, "10.99.0.0/24 via 192.0.2.2") {
		t.Fatalf("after SetHostRoutes(nil):\n%s", r)
	}
}

func TestFakeHostRoutes(t *testing.T) {
	f := NewFake()
	f.AddHostLink(LinkInfo{Name: "under0", MTU: 1500, Up: true})
	f.Nets = append(f.Nets, HostNet{Prefix: netip.MustParsePrefix("192.0.2.1/24"), Link: "under0", Kind: HostAddress})
	h2 := HostGWRoute{Dst: netip.MustParsePrefix("10.207.2.0/24"), Via: netip.MustParseAddr("192.0.2.2"), Peer: "h2"}
	h3 := HostGWRoute{Dst: netip.MustParsePrefix("10.207.3.0/24"), Via: netip.MustParseAddr("198.51.100.9"), Peer: "h3"}
	if err := f.SetHostRoutes("under0", r207, []HostGWRoute{h2, h3}); !errors.Is(err, ErrNotOnSegment) {
		t.Fatalf("SetHostRoutes: %v, want ErrNotOnSegment", err)
	}
	got := f.HostRoutes("under0")
	if len(got) != 1 || got[h2.Dst] != h2.Via {
		t.Fatalf("routes: %v", got)
	}
	d := f.CheckHostRoutes("under0", r207, []HostGWRoute{h2, h3})
	if len(d) != 1 || !strings.Contains(d[0], "node h3") {
		t.Fatalf("CheckHostRoutes: %q", d)
	}
	if d := f.CheckHostRoutes("under0", r207, nil); !slices.Equal(d, []string{"route 10.207.2.0/24 via 192.0.2.2 dev under0 proto 112 is no node's"}) {
		t.Fatalf("CheckHostRoutes(nil): %q", d)
	}
}
