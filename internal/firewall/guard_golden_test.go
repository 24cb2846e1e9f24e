package firewall

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

// Table bridge pontoon as nft text: the anti-spoofing chain rendered from
// its description, with two IPv4 endpoints' elements and a dual-stack
// one's (with its link-local address).
func TestGuardGolden(t *testing.T) {
	f := NewFake()
	s := State{Networks: []Network{defaultNet, dualNet}, Guards: []Guarded{
		{Port: "ptv-0000000003", MAC: net.HardwareAddr{0x02, 0x42, 10, 90, 2, 2}, IPs: []netip.Addr{netip.MustParseAddr("10.90.2.2"),
			netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("fe80::42:aff:fe5a:202")}},
		{Port: "ptv-0000000002", MAC: net.HardwareAddr{0x02, 0x42, 10, 88, 0, 2}, IPs: []netip.Addr{netip.MustParseAddr("10.88.0.2")}},
		{Port: "ptv-0000000001", MAC: net.HardwareAddr{0x02, 0x42, 10, 88, 0, 3}, IPs: []netip.Addr{netip.MustParseAddr("10.88.0.3")}},
	}}
	if err := f.Sync(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	golden(t, "guard", f.Bridge.Dump())
}
