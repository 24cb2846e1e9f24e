package link

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// fdbLine is an entry as the tests compare them: "MAC PORT STATE".
func fdbLines(t FDBTable) []string {
	var out []string
	for _, e := range t.Entries {
		line := fmt.Sprintf("%s %s %s", e.MAC, e.Port, e.State)
		if e.Dst.IsValid() {
			line += " dst " + e.Dst.String()
		}
		out = append(out, line)
	}
	return out
}

func neighLines(t FDBTable) []string {
	var out []string
	for _, n := range t.Neighbours {
		out = append(out, fmt.Sprintf("%s %s %s", n.Addr, n.MAC, n.State))
	}
	return out
}

// A bridge's FDB after real traffic: the MACs of the sandboxes that sent
// frames, each on its own port, learned (and only those: not the local
// entries of the bridge and its ports, not another bridge's), as `bridge
// fdb` shows them; the host's neighbours on the bridge, as `ip neigh`
// shows them. A port that leaves the bridge takes its entries along.
func TestKernelFDB(t *testing.T) {
	l, host := newKernelHost(t)
	a, b, c := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
	va, vb := veth("ptv-a", a, "10.70.0.2"), veth("ptv-b", b, "10.70.0.3")
	// c is on another bridge, br1, which learns it: br0 must not list it.
	if _, err := l.EnsureBridge(Bridge{Name: "br1", Gateways: []netip.Prefix{gw1}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	vc := veth("ptv-c", c, "10.71.0.2")
	vc.Bridge, vc.MAC = "br1", net.HardwareAddr{2, 0x42, 10, 71, 0, 2}
	vc.Addrs = []Address{{Addr: netip.MustParsePrefix("10.71.0.2/24"), Gateway: gw1.Addr()}}
	for _, v := range []Veth{va, vb, vc} {
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := ping(t, a, "10.70.0.3"); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, c, gw1.Addr().String()); err != nil {
		t.Fatal(err)
	}
	// The host resolves a (REACHABLE or about to be), and fails to resolve
	// an address no one has (INCOMPLETE, then FAILED): an entry without a MAC.
	if err := ping(t, host, "10.70.0.2"); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, host, "ping", "-c1", "-W1", "10.70.0.99"); err == nil {
		t.Fatalf("ping 10.70.0.99, which no one has, was answered:\n%s", out)
	}

	tab, err := l.FDB("br0")
	if err != nil {
		t.Fatal(err)
	}
	if tab.Kind != "bridge" {
		t.Errorf("kind %q, want bridge", tab.Kind)
	}
	got := fdbLines(tab)
	want := []string{va.MAC.String() + " ptv-a dynamic", vb.MAC.String() + " ptv-b dynamic"}
	if !slices.Equal(got, want) {
		t.Errorf("br0's entries %q, want %q", got, want)
	}
	for _, e := range tab.Entries {
		// Learned a moment ago: well inside the ageing time (300 s).
		if e.Age < 0 || e.Age >= 300*time.Second {
			t.Errorf("entry %s: age %s, want one within the ageing time", e.MAC, e.Age)
		}
	}
	// What bridge(8) says the bridge learned agrees.
	out, err := run(t, host, "bridge", "fdb", "show", "br", "br0")
	if err != nil {
		t.Fatalf("bridge fdb show: %v\n%s", err, out)
	}
	for _, e := range tab.Entries {
		if !strings.Contains(out, fmt.Sprintf("%s dev %s master br0", e.MAC, e.Port)) {
			t.Errorf("bridge fdb show br br0 has no %s on %s:\n%s", e.MAC, e.Port, out)
		}
	}
	if strings.Contains(out, vc.MAC.String()) {
		t.Errorf("bridge fdb show br br0 lists br1's sandbox:\n%s", out)
	}

	var sawA, saw99 bool
	for _, n := range tab.Neighbours {
		switch n.Addr.String() {
		case "10.70.0.2":
			sawA = n.MAC.String() == va.MAC.String() && n.State != "INCOMPLETE" && n.State != "FAILED"
		case "10.70.0.99":
			saw99 = n.MAC == nil && (n.State == "INCOMPLETE" || n.State == "FAILED")
		}
	}
	if !sawA || !saw99 {
		neigh, _ := run(t, host, "ip", "neigh", "show", "dev", "br0")
		t.Errorf("br0's neighbours %q: want 10.70.0.2 at %s resolved and 10.70.0.99 unresolved; ip neigh says:\n%s", neighLines(tab), va.MAC, neigh)
	}

	tab1, err := l.FDB("br1")
	if err != nil {
		t.Fatal(err)
	}
	if got := fdbLines(tab1); !slices.Equal(got, []string{vc.MAC.String() + " ptv-c dynamic"}) {
		t.Errorf("br1's entries %q, want c's alone", got)
	}

	// b leaves the bridge: its entry goes.
	if err := l.DisableVeth("ptv-b"); err != nil {
		t.Fatal(err)
	}
	tab, err = l.FDB("br0")
	if err != nil {
		t.Fatal(err)
	}
	if got := fdbLines(tab); !slices.Equal(got, want[:1]) {
		t.Errorf("after ptv-b left br0: %q, want %q", got, want[:1])
	}

	// Not a bridge, not there: errors that say so.
	if _, err := l.FDB("ptv-a"); err == nil || !strings.Contains(err.Error(), "ptv-a is a veth, neither a bridge nor a VXLAN device") {
		t.Errorf("FDB(ptv-a): %v", err)
	}
	if _, err := l.FDB("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch does not exist") {
		t.Errorf("FDB(nosuch): %v", err)
	}
}

// A VXLAN device's FDB is its peers' entries: each remote VTEP's MAC sent
// to its underlay address, and the neighbour entry of its slice's address.
func TestKernelFDBVXLAN(t *testing.T) {
	testutil.RequireRoot(t)
	h1, h2 := newVXHosts(t)
	if _, err := h1.l.EnsureVXLAN(h1.vxlan(42, 200)); err != nil {
		t.Fatal(err)
	}
	if err := h1.l.SetPeers("vx42", []Peer{h2.peer(200)}); err != nil {
		t.Fatal(err)
	}
	tab, err := h1.l.FDB("vx42")
	if err != nil {
		t.Fatal(err)
	}
	mac := VTEPMAC(h2.underlay()).String()
	if got, want := fdbLines(tab), []string{mac + " vx42 permanent dst 192.0.2.2"}; tab.Kind != "vxlan" || !slices.Equal(got, want) {
		t.Errorf("vx42 (%s): entries %q, want %q", tab.Kind, got, want)
	}
	if got, want := neighLines(tab), []string{"10.200.2.0 " + mac + " PERMANENT"}; !slices.Equal(got, want) {
		t.Errorf("vx42: neighbours %q, want %q", got, want)
	}
}

// The Fake keeps what a test says the bridge learned, per port as it was:
// a MAC moves between ports, a port off its bridge or made again has none.
func TestFakeFDB(t *testing.T) {
	f := NewFake()
	if _, err := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}}); err != nil {
		t.Fatal(err)
	}
	a, b := fakeVethFor("ptv-a", "/run/ns/a", "10.70.0.2"), fakeVethFor("ptv-b", "/run/ns/b", "10.70.0.3")
	for _, v := range []Veth{a, b} {
		if _, err := f.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Learn("ptv-a", a.MAC, 3*time.Second))
	must(f.Learn("ptv-b", b.MAC, time.Second))
	must(f.Learn("ptv-b", a.MAC, 0)) // a's MAC moves to b's port
	must(f.SetNeighbour("br0", NeighEntry{Addr: netip.MustParseAddr("10.70.0.3"), MAC: b.MAC, State: "REACHABLE"}))
	must(f.SetNeighbour("br0", NeighEntry{Addr: netip.MustParseAddr("10.70.0.2"), State: "INCOMPLETE"}))
	tab, err := f.FDB("br0")
	must(err)
	if got, want := fdbLines(tab), []string{a.MAC.String() + " ptv-b dynamic", b.MAC.String() + " ptv-b dynamic"}; !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
	if got, want := neighLines(tab), []string{"10.70.0.2  INCOMPLETE", "10.70.0.3 " + b.MAC.String() + " REACHABLE"}; !slices.Equal(got, want) {
		t.Errorf("neighbours %q, want %q", got, want)
	}
	if err := f.Learn("br0", a.MAC, 0); err == nil {
		t.Error("Learn on the bridge itself succeeded")
	}
	must(f.DisableVeth("ptv-b"))
	if tab, _ := f.FDB("br0"); len(tab.Entries) != 0 {
		t.Errorf("entries of a port off its bridge: %q", fdbLines(tab))
	}
	must(f.DeleteVeths([]string{"ptv-b"}))
	if _, err := f.AddVeth(b); err != nil {
		t.Fatal(err)
	}
	if tab, _ := f.FDB("br0"); len(tab.Entries) != 0 {
		t.Errorf("entries of a port made again: %q", fdbLines(tab))
	}
	if _, err := f.FDB("ptv-a"); err == nil || !strings.Contains(err.Error(), "ptv-a is a veth, neither a bridge nor a VXLAN device") {
		t.Errorf("FDB(ptv-a): %v", err)
	}
	if _, err := f.FDB("nosuch"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("FDB(nosuch): %v", err)
	}
	f.InjectError("FDB", fmt.Errorf("boom"))
	if _, err := f.FDB("br0"); err == nil {
		t.Error("injected error not returned")
	}
	f.InjectError("FDB", nil)

	// A VXLAN device: its peers' entries.
	f.AddHostLink(LinkInfo{Name: "eth0", MTU: 1500})
	h1, h2 := vxHost{n: 1}, vxHost{n: 2}
	v := h1.vxlan(42, 200)
	v.Dev = "eth0"
	if _, err := f.EnsureVXLAN(v); err != nil {
		t.Fatal(err)
	}
	must(f.SetPeers("vx42", []Peer{h2.peer(200)}))
	tab, err = f.FDB("vx42")
	must(err)
	mac := VTEPMAC(h2.underlay()).String()
	if got, want := fdbLines(tab), []string{mac + " vx42 permanent dst 192.0.2.2"}; tab.Kind != "vxlan" || !slices.Equal(got, want) {
		t.Errorf("vx42 entries %q, want %q", got, want)
	}
	if got, want := neighLines(tab), []string{"10.200.2.0 " + mac + " PERMANENT"}; !slices.Equal(got, want) {
		t.Errorf("vx42 neighbours %q, want %q", got, want)
	}
}
