package link

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// HostNets reports addresses and connected routes with their links, and
// leaves out the default route, routes through a gateway and blackholes.
func TestKernelHostNets(t *testing.T) {
	l, host := newKernelHost(t)
	for _, argv := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"},
		{"ip", "addr", "add", "198.51.100.1/24", "dev", "uplink0"},
		{"ip", "link", "set", "uplink0", "up"},
		{"ip", "link", "set", "uplink0p", "up"},
		{"ip", "route", "add", "default", "via", "198.51.100.2"},
		{"ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.2"},
		{"ip", "route", "add", "192.0.2.0/25", "dev", "uplink0"},
		{"ip", "route", "add", "blackhole", "10.99.0.0/16"},
		{"ip", "addr", "add", "10.5.0.7/32", "dev", "lo"},
	} {
		if out, err := run(t, host, argv...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	got, err := l.HostNets()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, h := range got {
		lines = append(lines, fmt.Sprintf("%s %s %s", h.Kind, h.Prefix, h.Link))
	}
	slices.Sort(lines)
	want := []string{
		"address 10.5.0.7/32 lo",
		"address 10.70.0.1/24 br0",
		"address 127.0.0.1/8 lo",
		"address 198.51.100.1/24 uplink0",
		"route 10.70.0.0/24 br0",
		"route 192.0.2.0/25 uplink0",
		"route 198.51.100.0/24 uplink0",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("HostNets:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if n := (HostNet{Prefix: netip.MustParsePrefix("198.51.100.1/24")}).Network(); n != netip.MustParsePrefix("198.51.100.0/24") {
		t.Errorf("Network() = %s", n)
	}
}

// The fake reports what it was given plus each bridge's address and route,
// as the kernel does.
func TestFakeHostNets(t *testing.T) {
	f := NewFake()
	f.Nets = []HostNet{{Prefix: netip.MustParsePrefix("198.51.100.1/24"), Link: "uplink0", Kind: HostAddress}}
	if _, err := f.EnsureBridge(Bridge{Name: "br0", Gateway: gw0}); err != nil {
		t.Fatal(err)
	}
	got, err := f.HostNets()
	want := []HostNet{f.Nets[0], {Prefix: gw0, Link: "br0", Kind: HostAddress}, {Prefix: gw0.Masked(), Link: "br0", Kind: HostRoute}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("HostNets = %v, %v; want %v", got, err, want)
	}
	if p, _ := f.HostPrefixes(); !slices.Contains(p, netip.MustParsePrefix("198.51.100.0/24")) {
		t.Errorf("HostPrefixes = %v: lacks the configured network", p)
	}
}

// BenchmarkHostNets measures the dumps behind a subnet check (network
// create, --ip): a host with a bridge, an uplink and lo.
//
//	go test -run '^$' -bench HostNets ./internal/link/
func BenchmarkHostNets(b *testing.B) {
	l := benchHost(b)
	for b.Loop() {
		if _, err := l.HostNets(); err != nil {
			b.Fatal(err)
		}
	}
}
