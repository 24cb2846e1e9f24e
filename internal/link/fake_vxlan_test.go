package link

import (
	"net/netip"
	"strings"
	"testing"
)

func TestFakeVXLAN(t *testing.T) {
	f := NewFake()
	f.AddHostLink(LinkInfo{Name: "eth0", MTU: 1500})
	h1, h2, h3 := vxHost{n: 1}, vxHost{n: 2}, vxHost{n: 3}
	v := h1.vxlan(42, 200)
	v.Dev = "eth0"
	idx, err := f.EnsureVXLAN(v)
	if err != nil {
		t.Fatal(err)
	}
	if d := f.CheckVXLAN(v); d != nil {
		t.Errorf("CheckVXLAN: %q", d)
	}
	if l, ok, _ := f.Link("vx42"); !ok || l.MTU != 1450 || l.Index != idx {
		t.Errorf("Link(vx42) = %+v, %v: want MTU 1450 (1500 − 50)", l, ok)
	}
	peers := []Peer{h2.peer(200), h3.peer(200)}
	if err := f.SetPeers("vx42", peers); err != nil {
		t.Fatal(err)
	}
	if d := f.CheckPeers("vx42", peers); d != nil {
		t.Errorf("CheckPeers: %q", d)
	}
	if d := f.CheckPeers("vx42", peers[:1]); len(d) != 3 {
		t.Errorf("CheckPeers without host 3: %q, want its route, neighbour and FDB entry", d)
	}
	dump := f.Dump()
	for _, want := range []string{"route 10.200.3.0/24 via 10.200.3.0 dev vx42 onlink", "neigh 10.200.2.0 lladdr " + VTEPMAC(h2.underlay()).String() + " dev vx42 permanent", "fdb " + VTEPMAC(h3.underlay()).String() + " dst 192.0.2.3 dev vx42 self permanent"} {
		if !strings.Contains(dump, want) {
			t.Errorf("Dump lacks %q:\n%s", want, dump)
		}
	}
	bad := h2.peer(200)
	bad.Gateway = netip.MustParseAddr("10.9.9.9")
	if err := f.SetPeers("vx42", []Peer{bad}); err == nil {
		t.Error("SetPeers with a gateway outside the slice succeeded")
	}
	if d := f.CheckPeers("vx42", peers); d != nil {
		t.Errorf("bad input changed the peers: %q", d)
	}
	f.BreakVXLAN("flush", "vx42")
	if d := f.CheckPeers("vx42", peers); len(d) != 6 {
		t.Errorf("CheckPeers after flush: %q", d)
	}
	v.VNI = 43 // made again: a new index
	if got, err := f.EnsureVXLAN(v); err != nil || got == idx {
		t.Errorf("EnsureVXLAN with another VNI: %d, %v", got, err)
	}
	if err := f.DeleteVXLAN("eth0"); err == nil {
		t.Error("DeleteVXLAN deleted a NIC")
	}
	if err := f.DeleteVXLAN("vx42"); err != nil {
		t.Fatal(err)
	}
	if err := f.SetPeers("vx42", nil); err == nil {
		t.Error("SetPeers on a deleted device succeeded")
	}
}
