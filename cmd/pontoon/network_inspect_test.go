package main

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"pontoon/internal/model"
)

func TestCounterCell(t *testing.T) {
	for _, c := range []struct {
		b, p, d, e uint64
		want       string
	}{
		{0, 0, 0, 0, "0 B, 0 packets"},
		{980, 1, 0, 0, "980 B, 1 packet"},
		{1536, 12, 0, 1, "1.5 KiB, 12 packets, 1 error"},
		{3 << 20, 2200, 2, 3, "3 MiB, 2200 packets, 2 dropped, 3 errors"},
	} {
		if got := counterCell(c.b, c.p, c.d, c.e); got != c.want {
			t.Errorf("counterCell(%d, %d, %d, %d) = %q, want %q", c.b, c.p, c.d, c.e, got, c.want)
		}
	}
}

// `network inspect` shows each endpoint's counters in two columns, in
// human units, "-" for one without a host end (or an older daemon's
// answer, without counters).
func TestNetworkInspectCounters(t *testing.T) {
	n := &model.NetworkInfo{
		Network: model.Network{Name: "back", ID: "n1", Driver: model.DriverBridge, Bridge: "ptbr-1", MTU: 1500,
			Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("10.91.0.0/24"), Gateway: netip.MustParseAddr("10.91.0.1")}}},
		Endpoints: []*model.Endpoint{
			{Sandbox: "a", IfName: "eth1", HostIf: "ptv-1", HostIfIndex: 9, MAC: "02:42:0a:5b:00:05",
				Addresses: []model.Address{{Addr: netip.MustParsePrefix("10.91.0.5/24")}},
				Stats:     &model.EndpointStats{RxBytes: 1536, RxPackets: 12, RxErrors: 1, TxBytes: 980, TxPackets: 1, TxDropped: 2}},
			{Sandbox: "c", IfName: "eth0", HostIf: "ptv-2", HostIfIndex: 11, MAC: "02:42:0a:5b:00:06",
				Addresses: []model.Address{{Addr: netip.MustParsePrefix("10.91.0.6/24")}},
				Stats:     &model.EndpointStats{RxBytes: 3 << 20, RxPackets: 2200, TxBytes: 5 << 30, TxPackets: 4000000}},
			{Sandbox: "d", IfName: "eth0", HostIf: "ptv-3", HostIfIndex: 12, MAC: "02:42:0a:5b:00:07",
				Addresses: []model.Address{{Addr: netip.MustParsePrefix("10.91.0.7/24")}}},
		},
	}
	cmd := &cobra.Command{}
	var out bytes.Buffer
	cmd.SetOut(&out)
	if err := printNetworks(cmd, []*model.NetworkInfo{n}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Endpoints (RX and TX as the sandbox sees them, counted by the host end):",
		"  SANDBOX  IFACE  IP            MAC                HOST-IF  HOST-IFINDEX  RX                            TX",
		"  a        eth1   10.91.0.5/24  02:42:0a:5b:00:05  ptv-1    9             1.5 KiB, 12 packets, 1 error  980 B, 1 packet, 2 dropped",
		"  c        eth0   10.91.0.6/24  02:42:0a:5b:00:06  ptv-2    11            3 MiB, 2200 packets           5 GiB, 4000000 packets",
		"  d        eth0   10.91.0.7/24  02:42:0a:5b:00:07  ptv-3    12            -                             -",
	}
	if d := cmp.Diff(want, section(out.String(), "Endpoints")); d != "" {
		t.Errorf("endpoints (-want +got):\n%s\nin:\n%s", d, out.String())
	}
}
