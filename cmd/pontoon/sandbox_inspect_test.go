package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"pontoon/internal/model"
)

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 980: "980 B", 1023: "1023 B", 1024: "1 KiB", 1300: "1.3 KiB", 1536: "1.5 KiB",
		10 * 1024: "10 KiB", 200 * 1024: "200 KiB", 3 << 20: "3 MiB", 3<<20 + 400<<10: "3.4 MiB",
		15 << 30: "15 GiB", 1<<20 - 1: "1 MiB", 1<<20 - 600: "1023 KiB", 1 << 62: "4 EiB", ^uint64(0): "16 EiB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// inspectText is what `sandbox inspect` prints for sb.
func inspectText(t *testing.T, sb *model.SandboxInfo) string {
	t.Helper()
	cmd := &cobra.Command{}
	var out bytes.Buffer
	cmd.SetOut(&out)
	if err := printSandboxes(cmd, "table", []*model.SandboxInfo{sb}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// section returns the lines of the text from the one starting with title
// to the next one that does not start with a space.
func section(text, title string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, title):
			in = true
		case in && !strings.HasPrefix(l, " "):
			return out
		}
		if in {
			out = append(out, strings.TrimRight(l, " "))
		}
	}
	return out
}

// Under the endpoints: each interface's routing table with its rules
// (on several networks only), and its counters in human units, or why
// there are none.
func TestSandboxInspectRoutingAndCounters(t *testing.T) {
	addr := func(a, gw string) model.Address {
		out := model.Address{Addr: netip.MustParsePrefix(a)}
		if gw != "" {
			out.Gateway = netip.MustParseAddr(gw)
		}
		return out
	}
	sb := &model.SandboxInfo{
		Sandbox: model.Sandbox{Name: "a", Kind: model.KindPontoon, Netns: "/run/pontoon/netns/a"},
		Endpoints: []*model.Endpoint{
			{IfName: "eth0", Network: "pontoon", HostIf: "ptv-0", HostIfIndex: 7, Primary: true, MAC: "02:42:0a:58:00:02",
				Addresses: []model.Address{addr("10.88.0.2/16", "10.88.0.1")},
				Stats:     &model.EndpointStats{RxBytes: 1536, RxPackets: 12, TxBytes: 980, TxPackets: 1, TxDropped: 2, RxErrors: 1}},
			{IfName: "eth1", Network: "back", HostIf: "ptv-1", HostIfIndex: 9, Table: 101, MAC: "02:42:0a:5b:00:05",
				Addresses: []model.Address{addr("10.91.0.5/24", "10.91.0.1"), addr("fd00:91::5/64", "fd00:91::1")},
				Stats:     &model.EndpointStats{RxBytes: 3 << 20, RxPackets: 2200, TxBytes: 5 << 30, TxPackets: 4000000}},
			{IfName: "eth2", Network: "wire", Table: 102, MAC: "02:42:0a:00:01:01",
				Addresses: []model.Address{addr("10.0.1.1/30", "")}},
			{IfName: "eth3", Network: "gone", HostIf: "ptv-3", Table: 103, MAC: "02:42:0a:00:02:01",
				Addresses: []model.Address{addr("10.0.2.1/24", "10.0.2.254")}},
		},
	}
	text := inspectText(t, sb)
	want := []string{
		"Routing (replies leave by the interface their request came in on):",
		"  eth0  table main  (its gateways are the default routes)",
		"  eth1  table 101  rule: from 10.91.0.5 lookup 101",
		"                   rule: from fd00:91::5 lookup 101",
		"  eth2  table 102  rule: from 10.0.1.1 lookup 102",
		"  eth3  table 103  rule: from 10.0.2.1 lookup 103",
	}
	if d := cmp.Diff(want, section(text, "Routing")); d != "" {
		t.Errorf("routing (-want +got):\n%s\nin:\n%s", d, text)
	}
	want = []string{
		"Counters (as the sandbox sees them, counted by the host end):",
		"  eth0  RX 1.5 KiB  12 packets    0 dropped  1 error   TX 980 B  1 packet         2 dropped  0 errors",
		"  eth1  RX 3 MiB    2200 packets  0 dropped  0 errors  TX 5 GiB  4000000 packets  0 dropped  0 errors",
		"  eth2  none: no host end to count on (pontoon exec a -- ip -s link show eth2)",
		"  eth3  -",
	}
	if d := cmp.Diff(want, section(text, "Counters")); d != "" {
		t.Errorf("counters (-want +got):\n%s\nin:\n%s", d, text)
	}

	// On one network, no routing of its own: no section.
	one := *sb
	one.Endpoints = sb.Endpoints[:1]
	if text := inspectText(t, &one); strings.Contains(text, "Routing") || !strings.Contains(text, "Counters") {
		t.Errorf("a sandbox on one network:\n%s", text)
	}
}
