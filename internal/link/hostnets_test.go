package link

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// HostNets reports addresses and connected routes of both families with
// their links, and leaves out the default routes, routes through a
// gateway, blackholes, and IPv6 link-local and multicast prefixes.
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
		{"ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "uplink0", "nodad"},
		{"ip", "-6", "route", "add", "default", "via", "2001:db8:1::2"},
		{"ip", "-6", "route", "add", "2001:db8:2::/48", "via", "2001:db8:1::2"},
		{"ip", "-6", "route", "add", "2001:db8:3::/64", "dev", "uplink0"},
		{"ip", "-6", "route", "add", "blackhole", "2001:db8:4::/64"},
		{"ip", "-6", "route", "add", "ff0e::/16", "dev", "uplink0"},
	} {
		if out, err := run(t, host, argv...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	// The kernel gave uplink0 a link-local address (and its fe80::/64
	// route): HostNets must leave them out.
	if out, _ := run(t, host, "ip", "-6", "addr", "show", "dev", "uplink0"); !strings.Contains(out, "fe80::") {
		t.Fatalf("uplink0 has no link-local address to leave out:\n%s", out)
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
		"address 2001:db8:1::1/64 uplink0",
		"address ::1/128 lo",
		"route 10.70.0.0/24 br0",
		"route 192.0.2.0/25 uplink0",
		"route 198.51.100.0/24 uplink0",
		"route 2001:db8:1::/64 uplink0",
		"route 2001:db8:3::/64 uplink0",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("HostNets:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if n := (HostNet{Prefix: netip.MustParsePrefix("198.51.100.1/24")}).Network(); n != netip.MustParsePrefix("198.51.100.0/24") {
		t.Errorf("Network() = %s", n)
	}
	pfx, err := l.HostPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2001:db8:1::/64", "2001:db8:2::/48", "2001:db8:3::/64", "198.51.100.0/24", "203.0.113.0/24"} {
		if !slices.Contains(pfx, netip.MustParsePrefix(want)) {
			t.Errorf("HostPrefixes lacks %s: %v", want, pfx)
		}
	}
	for _, p := range pfx {
		if hostScoped(p) {
			t.Errorf("HostPrefixes has %s", p)
		}
	}
}

// The fake reports what it was given plus each bridge's address and route,
// as the kernel does.
func TestFakeHostNets(t *testing.T) {
	f := NewFake()
	f.Nets = []HostNet{{Prefix: netip.MustParsePrefix("198.51.100.1/24"), Link: "uplink0", Kind: HostAddress}}
	if _, err := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}}); err != nil {
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
