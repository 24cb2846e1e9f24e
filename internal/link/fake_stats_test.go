package link

import (
	"net/netip"
	"testing"
)

// The fake reports the counters SetStats gave a veth's host end or a tap,
// from zero for a new link, and forgets them with the link.
func TestFakeStats(t *testing.T) {
	f := NewFake()
	if _, err := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AddVeth(veth("ptv-a", "/run/ns/a", "10.70.0.2")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AddTap(Tap{Name: "ptt-a", Bridge: "br0", Owner: -1, Group: -1}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ptv-a", "ptt-a"} {
		if l, ok, _ := f.Link(name); !ok || l.Stats == nil || *l.Stats != (LinkStats{}) {
			t.Errorf("%s new: %+v, %v; want zero counters", name, l, ok)
		}
		want := LinkStats{RxBytes: 980, RxPackets: 10, TxBytes: 1960, TxPackets: 20, TxDropped: 1}
		if !f.SetStats(name, want) {
			t.Fatalf("SetStats(%s) found no link", name)
		}
		if l, _, _ := f.Link(name); l.Stats == nil || *l.Stats != want {
			t.Errorf("%s: %+v, want %+v", name, l.Stats, want)
		}
	}
	if err := f.DeleteVeths([]string{"ptv-a"}); err != nil {
		t.Fatal(err)
	}
	if f.SetStats("ptv-a", LinkStats{}) || f.SetStats("br1", LinkStats{}) {
		t.Error("SetStats of a link that does not exist succeeded")
	}
}
