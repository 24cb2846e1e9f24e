package firewall

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

// Table bridge pontoon as nft text: the anti-spoofing chain rendered from
// its description, with two endpoints' elements.
func TestGuardGolden(t *testing.T) {
	f := NewFake()
	s := State{Networks: []Network{defaultNet}, Guards: []Guarded{
		{Port: "ptv-0000000002", MAC: net.HardwareAddr{0x02, 0x42, 10, 88, 0, 2}, IP: netip.MustParseAddr("10.88.0.2")},
		{Port: "ptv-0000000001", MAC: net.HardwareAddr{0x02, 0x42, 10, 88, 0, 3}, IP: netip.MustParseAddr("10.88.0.3")},
	}}
	if err := f.Sync(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	golden(t, "guard", f.Bridge.Dump())
}
