package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
)

// An overlay network's record from before overlays were dual-stack (one
// IPv4 subnet, top-level in its overlay options) opens as the same
// network; today's records read back as written.
func TestOverlayOptionsJSON(t *testing.T) {
	var n Network
	old := `{"name":"web","driver":"overlay","subnets":[{"prefix":"10.200.1.0/24","gateway":"10.200.1.1"}],"overlay":{"subnet":"10.200.0.0/16","vni":42,"slice_bits":26,"vxlan":"ptvx-42","mode":"host-gw"}}`
	if err := json.Unmarshal([]byte(old), &n); err != nil {
		t.Fatal(err)
	}
	o := n.Overlay
	if o == nil || fmt.Sprint(o.Subnets) != "[{10.200.0.0/16 26}]" || o.VNI != 42 || o.VXLAN != "ptvx-42" || !o.HostGW() {
		t.Fatalf("overlay options from before: %+v", o)
	}
	if r, ok := o.Range(netip.MustParseAddr("10.200.9.9")); !ok || r.String() != "10.200.0.0/16" {
		t.Errorf("Range(10.200.9.9) = %v, %v", r, ok)
	}
	if _, ok := o.Range(netip.MustParseAddr("fd00::1")); ok {
		t.Error("an IPv4 overlay has an IPv6 range")
	}

	dual := OverlayOptions{Subnets: []OverlaySubnet{{Prefix: netip.MustParsePrefix("10.200.0.0/16"), SliceBits: 24}, {Prefix: netip.MustParsePrefix("fd00:200::/48"), SliceBits: 64}}, VNI: 7}
	b, err := json.Marshal(dual)
	if err != nil {
		t.Fatal(err)
	}
	var back OverlayOptions
	if err := json.Unmarshal(b, &back); err != nil || fmt.Sprint(back) != fmt.Sprint(dual) {
		t.Errorf("round trip of %s: %+v, %v", b, back, err)
	}
	held := []netip.Prefix{netip.MustParsePrefix("10.200.3.0/24"), netip.MustParsePrefix("fd00:200:0:3::/64"), netip.MustParsePrefix("10.9.0.0/24"), netip.MustParsePrefix("fd00:200::/40")}
	if got := fmt.Sprint(dual.SlicesIn(held)); got != "[10.200.3.0/24 fd00:200:0:3::/64]" {
		t.Errorf("SlicesIn: %s, want the slices inside the subnets only", got)
	}
}
