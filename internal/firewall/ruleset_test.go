package firewall

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"pontoon/internal/model"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	defaultNet = Network{Name: "pontoon", Bridge: "pontoon0", Subnets: v4(netip.MustParsePrefix("10.88.0.0/16"), true)}
	backNet    = Network{Name: "back", Bridge: "ptbr-0a0b0c0d", Subnets: v4(netip.MustParsePrefix("10.90.1.0/24"), true), Internal: true}
	routedNet  = Network{Name: "routed", Bridge: "ptbr-12345678", Subnets: v4(netip.MustParsePrefix("10.93.0.0/24"), false)}
	frontNet   = Network{Name: "front", Bridge: "ptbr-deadbeef", Subnets: v4(netip.MustParsePrefix("10.91.0.0/24"), true)}
	// apartNet has icc=false: its pair goes to no-icc, not intra.
	apartNet = Network{Name: "apart", Bridge: "ptbr-0000a9a9", Subnets: v4(netip.MustParsePrefix("10.95.0.0/24"), true), Isolated: true}
	// dualNet is dual-stack, both subnets masqueraded (a ULA IPv6 subnet:
	// the engine's default); globalNet has a routed global IPv6 subnet,
	// not masqueraded.
	dualNet = Network{Name: "app", Bridge: "ptbr-0000a990", Subnets: []model.Subnet{
		{Prefix: netip.MustParsePrefix("10.90.2.0/24"), Gateway: netip.MustParseAddr("10.90.2.1"), Masquerade: true},
		{Prefix: netip.MustParsePrefix("fd00:1::/64"), Gateway: netip.MustParseAddr("fd00:1::1"), Masquerade: true}}}
	globalNet = Network{Name: "global", Bridge: "ptbr-0000db80", Subnets: []model.Subnet{
		{Prefix: netip.MustParsePrefix("10.92.0.0/24"), Masquerade: true},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Masquerade: false}}}
)

// golden compares got with testdata/name.golden (-update rewrites it).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Fatalf("ruleset differs from %s (-want +got):\n%s", path, diff)
	}
}

func TestGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		s    State
	}{
		{"empty", State{}},
		{"default", State{Networks: []Network{defaultNet}}},
		{"internal", State{Networks: []Network{backNet}}},
		{"several", State{Networks: []Network{routedNet, backNet, defaultNet, frontNet, apartNet}}},
		// Overlays: a network's range across the cluster is its remote
		// members, through its uplink (set remote-members, remote-pairs):
		// host-gw ones through the underlay, an internal one the same, an
		// --icc=false one none; a VXLAN one through its VXLAN device.
		// The VXLAN one's device lets out only the range less this
		// host's slice (link-sources), and only the cluster's nodes
		// send to the VXLAN port (vxlan-ports, vxlan-peers).
		{"overlay", State{Networks: []Network{fastNet, fastInternalNet, fastApartNet, vxNet, vxApartNet, defaultNet}, VXLAN: vxUnderlay}},
		{"ports", State{Networks: []Network{defaultNet}, Ports: []Published{
			{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"}, Targets: []netip.Addr{netip.MustParseAddr("10.88.0.2")}},
			{PortMapping: model.PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9090, HostPortEnd: 9090, Port: 90, PortEnd: 90, Proto: "udp"}, Targets: []netip.Addr{netip.MustParseAddr("10.88.0.2")}},
			{PortMapping: model.PortMapping{HostPort: 30000, HostPortEnd: 30001, Port: 31000, PortEnd: 31001, Proto: "tcp"}, Targets: []netip.Addr{netip.MustParseAddr("10.88.0.3")}},
		}}},
		// Dual stack: one network with an IPv4 and a ULA subnet (both
		// masqueraded), one with a routed global IPv6 subnet (not), next to
		// the IPv4-only default. A mapping on every host address is one
		// element per family; one bound to a host address only its family's.
		{"dualstack", State{Networks: []Network{globalNet, dualNet, defaultNet}, Ports: []Published{
			{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"},
				Targets: []netip.Addr{netip.MustParseAddr("10.90.2.2"), netip.MustParseAddr("fd00:1::2")}},
			{PortMapping: model.PortMapping{HostIP: netip.MustParseAddr("2001:db8::1"), HostPort: 5353, HostPortEnd: 5353, Port: 53, PortEnd: 53, Proto: "udp"},
				Targets: []netip.Addr{netip.MustParseAddr("10.90.2.2"), netip.MustParseAddr("fd00:1::2")}},
			{PortMapping: model.PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9090, HostPortEnd: 9090, Port: 90, PortEnd: 90, Proto: "tcp"},
				Targets: []netip.Addr{netip.MustParseAddr("10.90.2.2"), netip.MustParseAddr("fd00:1::2")}},
			{PortMapping: model.PortMapping{HostPort: 8443, HostPortEnd: 8443, Port: 443, PortEnd: 443, Proto: "tcp"},
				Targets: []netip.Addr{netip.MustParseAddr("2001:db8:1::2")}},
		}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			f := NewFake()
			if err := f.Sync(ctx, c.s); err != nil {
				t.Fatal(err)
			}
			got := f.Fake.Dump()
			golden(t, c.name, got)

			// Syncing the same state again changes nothing.
			if err := f.Sync(ctx, c.s); err != nil {
				t.Fatal(err)
			}
			if again, _ := f.Dump(ctx); again != got {
				t.Fatalf("second Sync changed the ruleset:\n%s", cmp.Diff(got, again))
			}
			// Neither does the order of the networks.
			rev := State{Networks: append([]Network(nil), c.s.Networks...), Ports: c.s.Ports, VXLAN: c.s.VXLAN}
			for i, j := 0, len(rev.Networks)-1; i < j; i, j = i+1, j-1 {
				rev.Networks[i], rev.Networks[j] = rev.Networks[j], rev.Networks[i]
			}
			if err := f.Sync(ctx, rev); err != nil {
				t.Fatal(err)
			}
			if again := f.Fake.Dump(); again != got {
				t.Fatalf("network order changed the ruleset:\n%s", cmp.Diff(got, again))
			}
		})
	}
}

// Every state reached from any other renders as if synced from scratch:
// nothing of a previous state survives a Sync.
func TestSyncTransitions(t *testing.T) {
	states := []State{
		{},
		{Networks: []Network{defaultNet}},
		{Networks: []Network{defaultNet, backNet, routedNet, frontNet}},
		{Networks: []Network{backNet}},
		{Networks: []Network{frontNet, routedNet}},
	}
	fresh := make([]string, len(states))
	for i, s := range states {
		f := NewFake()
		if err := f.Sync(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		fresh[i] = f.Fake.Dump()
	}
	for i := range states {
		for j := range states {
			f := NewFake()
			if err := f.Sync(context.Background(), states[i]); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(context.Background(), states[j]); err != nil {
				t.Fatal(err)
			}
			if got := f.Fake.Dump(); got != fresh[j] {
				t.Errorf("state %d → %d differs from a fresh sync:\n%s", i, j, cmp.Diff(fresh[j], got))
			}
		}
	}
}

func TestSyncRemovesNetworks(t *testing.T) {
	f := NewFake()
	ctx := context.Background()
	if err := f.Sync(ctx, State{Networks: []Network{defaultNet, backNet, routedNet, frontNet}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(ctx, State{Networks: []Network{defaultNet}}); err != nil {
		t.Fatal(err)
	}
	d := f.Fake.Dump()
	for _, gone := range []string{backNet.Bridge, routedNet.Bridge, frontNet.Bridge, "10.90.1.0", "10.91.0.0", "network back"} {
		if strings.Contains(d, gone) {
			t.Errorf("%s still in the ruleset:\n%s", gone, d)
		}
	}
	for _, kept := range []string{`"pontoon0" . "pontoon0"`, "10.88.0.0/16"} {
		if !strings.Contains(d, kept) {
			t.Errorf("%s missing from the ruleset:\n%s", kept, d)
		}
	}
}

func TestFakeExistsDelete(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	if ok, err := f.Exists(ctx); err != nil || ok {
		t.Fatalf("Exists before Sync = %v, %v", ok, err)
	}
	if err := f.Sync(ctx, State{Networks: []Network{defaultNet}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.Exists(ctx); err != nil || !ok {
		t.Fatalf("Exists after Sync = %v, %v", ok, err)
	}
	for range 2 { // missing is success
		if err := f.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := f.Fake.Dump(); d != "" {
		t.Fatalf("Dump after Delete:\n%s", d)
	}
}

func TestValidate(t *testing.T) {
	six := Network{Name: "six", Bridge: "br6", Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("fd00::/64"), Masquerade: true}}}
	port := func(host string, targets ...string) Published {
		p := Published{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"}}
		if host != "" {
			p.HostIP = netip.MustParseAddr(host)
		}
		for _, a := range targets {
			p.Targets = append(p.Targets, netip.MustParseAddr(a))
		}
		return p
	}
	guard := Guarded{Port: "ptv-0000000001", MAC: net.HardwareAddr{2, 0x42, 10, 88, 0, 2}, IPs: []netip.Addr{netip.MustParseAddr("10.88.0.2")}}
	for _, c := range []struct {
		name string
		s    State
		ok   bool
	}{
		{"ok", State{Networks: []Network{defaultNet, backNet}}, true},
		{"dual stack", State{Networks: []Network{dualNet, globalNet}}, true},
		{"v6 masquerade", State{Networks: []Network{six}}, true},
		{"v6 internal", State{Networks: []Network{{Name: "i6", Bridge: "br6", Subnets: six.Subnets, Internal: true}}}, true},
		{"two IPv4 subnets", State{Networks: []Network{{Name: "x", Bridge: "br0", Subnets: append(v4(netip.MustParsePrefix("10.1.0.0/24"), true), v4(netip.MustParsePrefix("10.2.0.0/24"), true)...)}}}, false},
		{"no prefix", State{Networks: []Network{{Name: "x", Bridge: "br0", Subnets: []model.Subnet{{Masquerade: true}}}}}, false},
		{"IPv4-mapped subnet", State{Networks: []Network{{Name: "x", Bridge: "br0", Subnets: v4(netip.MustParsePrefix("::ffff:10.1.0.0/120"), true)}}}, false},
		{"no bridge", State{Networks: []Network{{Name: "x"}}}, false},
		{"long bridge", State{Networks: []Network{{Name: "x", Bridge: "a-very-long-bridge"}}}, false},
		{"quote in bridge", State{Networks: []Network{{Name: "x", Bridge: `br"0`}}}, false},
		{"shared bridge", State{Networks: []Network{defaultNet, {Name: "other", Bridge: defaultNet.Bridge}}}, false},
		{"no name", State{Networks: []Network{{Bridge: "br0"}}}, false},
		{"ports of both families", State{Ports: []Published{port("", "10.88.0.2", "fd00::2"), port("2001:db8::1", "10.88.0.2", "fd00::2")}}, true},
		{"port on ::1", State{Ports: []Published{port("::1", "10.88.0.2", "fd00::2")}}, false},
		{"IPv6 host address, IPv4 endpoint", State{Ports: []Published{port("2001:db8::1", "10.88.0.2")}}, false},
		{"two IPv4 targets", State{Ports: []Published{port("", "10.88.0.2", "10.88.0.3")}}, false},
		{"no target", State{Ports: []Published{port("")}}, false},
		{"unknown protocol", State{Ports: []Published{{PortMapping: model.PortMapping{HostPort: 1, HostPortEnd: 1, Port: 1, PortEnd: 1, Proto: "dccp"}, Targets: []netip.Addr{netip.MustParseAddr("10.88.0.2")}}}}, false},
		{"guard", State{Guards: []Guarded{guard}}, true},
		{"guard without MAC", State{Guards: []Guarded{{Port: guard.Port, IPs: guard.IPs}}}, false},
		{"guard with an IPv4-mapped address", State{Guards: []Guarded{{Port: guard.Port, MAC: guard.MAC, IPs: []netip.Addr{netip.MustParseAddr("::ffff:10.88.0.2")}}}}, false},
	} {
		f := NewFake()
		err := f.Sync(context.Background(), c.s)
		if (err == nil) != c.ok {
			t.Errorf("%s: Sync error = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && f.Fake.Dump() != "" {
			t.Errorf("%s: a refused state left a ruleset", c.name)
		}
	}
}

func TestDockerUserPlan(t *testing.T) {
	want := dockerUserRules([]Network{frontNet, defaultNet})
	cp, cf := dockerUserComment("pontoon"), dockerUserComment("front")
	if want[0][1] != frontNet.Bridge || want[2][1] != defaultNet.Bridge || want[0][5] != cf || want[2][5] != cp {
		t.Fatalf("rules not sorted by network name: %q", want)
	}
	docker := []string{"-j", "RETURN"}
	stale := []string{"-i", "ptbr-gone", "-m", "comment", "--comment", dockerUserComment("gone"), "-j", "ACCEPT"}
	foreign := []string{"-i", "eth9", "-m", "comment", "--comment", "someone else", "-j", "ACCEPT"}
	have := [][]string{want[1], stale, want[1], foreign, docker}
	insert, del := plan(have, want)
	if diff := cmp.Diff([][]string{want[0], want[2], want[3]}, insert); diff != "" {
		t.Errorf("insert (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{stale, want[1]}, del); diff != "" {
		t.Errorf("delete (-want +got):\n%s", diff)
	}
	if insert, del := plan(append(want, docker), want); len(insert)+len(del) != 0 {
		t.Errorf("in place: insert %q delete %q", insert, del)
	}
	if insert, del := plan(have, nil); len(insert) != 0 || len(del) != 3 {
		t.Errorf("remove all: insert %q delete %q", insert, del)
	}
}

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		`-i br0 -m comment --comment "pontoon: network a (b; c)" -j ACCEPT`: {"-i", "br0", "-m", "comment", "--comment", "pontoon: network a (b; c)", "-j", "ACCEPT"},
		`-m comment --comment "say \"hi\"" -j DROP`:                         {"-m", "comment", "--comment", `say "hi"`, "-j", "DROP"},
		`-j RETURN`:    {"-j", "RETURN"},
		`--comment ""`: {"--comment", ""},
	} {
		got, err := splitArgs(in)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("splitArgs(%s) (-want +got):\n%s", in, diff)
		}
		if back, _ := splitArgs(joinArgs(got)); !strings.Contains(in, `\"`) && !cmp.Equal(back, got) {
			t.Errorf("joinArgs does not round-trip %q: %q", got, back)
		}
	}
	if _, err := splitArgs(`--comment "open`); err == nil {
		t.Error("unbalanced quote accepted")
	}
}

func TestParseForwardDrop(t *testing.T) {
	js := `{"nftables": [{"metainfo": {"version": "1.0.6"}},
	 {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
	 {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 2}},
	 {"chain": {"family": "inet", "table": "pontoon", "name": "forward", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
	 {"chain": {"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "type": "filter", "hook": "forward", "prio": 10, "policy": "accept"}},
	 {"chain": {"family": "ip6", "table": "filter", "name": "FORWARD", "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
	 {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}]}`
	got, err := parseForwardDrop([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ip filter FORWARD", "ip6 filter FORWARD"}, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// The transaction text is logged at debug level.
func TestSyncLogsTransaction(t *testing.T) {
	var buf strings.Builder
	f := NewFakeLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err := f.Sync(context.Background(), State{Networks: []Network{defaultNet}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"level=DEBUG", "nft transaction", "add rule inet pontoon forward iifname . oifname @intra accept"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

// v4 is a network's one IPv4 subnet.
func v4(p netip.Prefix, masquerade bool) []model.Subnet {
	return []model.Subnet{{Prefix: p, Masquerade: masquerade}}
}
