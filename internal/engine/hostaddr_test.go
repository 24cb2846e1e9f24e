package engine

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

func hostNet(p, ifname string, kind link.HostNetKind) link.HostNet {
	return link.HostNet{Prefix: netip.MustParsePrefix(p), Link: ifname, Kind: kind}
}

// uplink is the e2e host's LAN: address 198.51.100.1/24 on uplink0 and its
// connected route, plus a /32 on lo and a static connected route.
var uplink = []link.HostNet{
	hostNet("127.0.0.1/8", "lo", link.HostAddress),
	hostNet("10.5.0.7/32", "lo", link.HostAddress),
	hostNet("198.51.100.1/24", "uplink0", link.HostAddress),
	hostNet("198.51.100.0/24", "uplink0", link.HostRoute),
	hostNet("192.0.2.0/25", "uplink0", link.HostRoute),
}

// An explicit subnet, gateway or ip-range that collides with the host's
// own networks is refused, naming the interface, and changes nothing.
func TestCreateNetworkRefusesHostNets(t *testing.T) {
	env := newEnv(t)
	env.link.Nets = uplink
	ctx := context.Background()
	before := env.snapshot(t)
	for _, c := range []struct {
		spec model.NetworkSpec
		want string
	}{
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("198.51.100.0/24")}}}, "subnet 198.51.100.0/24 overlaps 198.51.100.0/24 on uplink0 (host address 198.51.100.1), the host's own network"},
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("198.51.100.128/25")}}}, "overlaps 198.51.100.0/24 on uplink0 (host address 198.51.100.1)"},
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("198.51.0.0/16")}}}, "overlaps 198.51.100.0/24 on uplink0"},
		// A connected route with no address of the host in it.
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("192.0.2.0/24")}}}, "subnet 192.0.2.0/24 overlaps 192.0.2.0/25 on uplink0, the host's own network"},
		// A subnet that contains a host address: the gateway (first
		// address) would not be it, a sandbox could be.
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("10.5.0.0/24")}}}, "overlaps 10.5.0.7/32 on lo (host address 10.5.0.7)"},
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("127.42.0.0/16")}}}, "overlaps 127.0.0.0/8 on lo"},
		// The gateway itself: named as such, the default one too.
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("10.5.0.0/24"), Gateway: tAddr("10.5.0.7")}}}, "the host's own network, and its gateway 10.5.0.7 would be the host's address on lo"},
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("198.51.100.0/24"), Gateway: tAddr("198.51.100.1")}}}, "and its gateway 198.51.100.1 would be the host's address on uplink0"},
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("198.51.100.0/25")}}}, "and its gateway 198.51.100.1 would be the host's address on uplink0"},
		// An ip-range cannot move the collision out of the subnet.
		{model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("198.51.100.0/24"), IPRange: tPrefix("198.51.100.128/25")}}}, "overlaps 198.51.100.0/24 on uplink0"},
	} {
		c.spec.Name = "clash"
		_, err := env.e.CreateNetwork(ctx, c.spec)
		if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %+v: %v, want a conflict saying %q", c.spec, err, c.want)
		}
	}
	if after := env.snapshot(t); after != before {
		t.Errorf("a refused network changed the state:\n%s\nwas\n%s", after, before)
	}
	// Next to the host's networks is fine, and so is a subnet picked for us.
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "near", Subnets: []model.Subnet{{Prefix: tPrefix("198.51.101.0/24")}}}); err != nil {
		t.Fatalf("a subnet next to the host's: %v", err)
	}
	if n, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "auto"}); err != nil {
		t.Fatalf("automatic subnet: %v", err)
	} else if o := HostOverlaps(n.Subnets[0].Prefix, uplink); len(o) != 0 {
		t.Fatalf("automatic subnet %s overlaps the host's %v", n.Subnets[0].Prefix, o)
	}
}

// pontoon's own bridges carry addresses and routes too (the fake reports
// them as the kernel does): they are networks, checked as networks, not
// as the host's.
func TestOwnBridgesAreNotTheHosts(t *testing.T) {
	env := newEnv(t)
	env.link.Nets = uplink
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "front", Subnets: []model.Subnet{{Prefix: tPrefix("10.60.0.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	all, _ := env.link.HostNets()
	if !slices.ContainsFunc(all, func(h link.HostNet) bool { return h.Prefix == netip.MustParsePrefix("10.60.0.1/24") }) {
		t.Fatalf("the fake does not report front's bridge address, so this test proves nothing: %v", all)
	}
	_, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "again", Subnets: []model.Subnet{{Prefix: tPrefix("10.60.0.0/25")}}})
	if err == nil || !strings.Contains(err.Error(), `of network "front"`) || strings.Contains(err.Error(), "host's own") {
		t.Fatalf("overlap with a pontoon network: %v, want it named as network front", err)
	}
	nets, _ := env.e.Networks()
	var plain []*model.Network
	for _, n := range nets {
		plain = append(plain, &n.Network)
	}
	own := HostOwnNets(all, plain)
	if !slices.Equal(own, uplink) {
		t.Errorf("HostOwnNets = %v, want only the uplink's %v", own, uplink)
	}
}

// A bridge given with --bridge that exists is the network's own, but an
// address on it must not be handed to sandboxes.
func TestAdoptedBridgeAddresses(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	env.link.Nets = []link.HostNet{
		hostNet("10.61.0.1/24", "userbr", link.HostAddress),
		hostNet("10.61.0.0/24", "userbr", link.HostRoute),
		hostNet("10.62.0.5/24", "userbr2", link.HostAddress),
		hostNet("10.62.0.0/24", "userbr2", link.HostRoute),
	}
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "a", Subnets: []model.Subnet{{Prefix: tPrefix("10.61.0.0/24")}}, Bridge: "userbr"}); err != nil {
		t.Fatalf("adopting a bridge whose address is the gateway: %v", err)
	}
	_, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "b", Subnets: []model.Subnet{{Prefix: tPrefix("10.62.0.0/24")}}, Bridge: "userbr2"})
	if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "bridge userbr2 already has address 10.62.0.5/24") {
		t.Fatalf("adopting a bridge with an address sandboxes could get: %v", err)
	}
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "b", Subnets: []model.Subnet{{Prefix: tPrefix("10.62.0.0/24"), IPRange: tPrefix("10.62.0.128/25")}}, Bridge: "userbr2"}); err != nil {
		t.Fatalf("the address outside --ip-range: %v", err)
	}
	// Someone else's bridge is the host's, like any link.
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "c", Subnets: []model.Subnet{{Prefix: tPrefix("10.61.0.0/16")}}}); err == nil {
		t.Fatal("a subnet over another network was accepted")
	}
}

// A static address the host has (gained after the network was created) is
// never handed to a sandbox, through create or connect; nothing changes.
func TestStaticIPNeverAHostAddress(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	env.link.Nets = []link.HostNet{hostNet("10.90.1.9/24", "eth9", link.HostAddress), hostNet("10.88.0.200/32", "lo", link.HostAddress)}
	before := env.snapshot(t)
	_, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: []model.AttachSpec{{Network: "back", IPs: tIPs("10.90.1.9")}}})
	if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "address 10.90.1.9 is an address of the host, on eth9") {
		t.Errorf("sandbox create --ip <host address>: %v", err)
	}
	_, err = env.e.Connect(ctx, "a", model.AttachSpec{Network: model.DefaultNetwork, IPs: tIPs("10.88.0.200")})
	if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "on lo") {
		t.Errorf("network connect --ip <host address>: %v", err)
	}
	if after := env.snapshot(t); after != before {
		t.Errorf("a refused static address changed the state:\n%s\nwas\n%s", after, before)
	}
	if _, err := env.e.Connect(ctx, "a", model.AttachSpec{Network: "back", IPs: tIPs("10.90.1.10")}); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

// Ports are not published from an --internal network: refused before
// anything is made, through every way an endpoint is created.
func TestInternalNetworkRefusesPorts(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.91.1.0/24")}}, Internal: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	before := env.snapshot(t)
	want := "network back is --internal: it has no way in or out, so it cannot publish ports (7100:80/tcp); publish ports from a non-internal network"
	_, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "i2", Networks: []model.AttachSpec{{Network: "back", Ports: tPorts("7100:80")}}})
	if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Errorf("sandbox create -p on an internal network: %v", err)
	}
	// Listed after a good attachment: nothing of that one is left either.
	_, err = env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "i3", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}, {Network: "back", Ports: tPorts("7100:80")}}})
	if !errors.Is(err, model.ErrInvalid) {
		t.Errorf("sandbox create with -p on its second, internal, network: %v", err)
	}
	_, err = env.e.Connect(ctx, "a", model.AttachSpec{Network: "back", Ports: tPorts("7100:80")})
	if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Errorf("network connect -p to an internal network: %v", err)
	}
	if after := env.snapshot(t); after != before {
		t.Errorf("a refused mapping changed the state:\n%s\nwas\n%s", after, before)
	}
	// A sandbox on an internal network publishes through its other one.
	sb, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "dual", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, Ports: tPorts("7100:80")}, {Network: "back"}}})
	if err != nil {
		t.Fatalf("ports on the non-internal network of a sandbox also on an internal one: %v", err)
	}
	ps, err := env.e.Ports("dual")
	if err != nil || len(ps) != 1 || ps[0].Network != model.DefaultNetwork || ps[0].IPs[0] != sb.Endpoints[0].FirstIP() {
		t.Fatalf("ports of dual: %+v %v", ps, err)
	}
	if !slices.Equal(ps[0].ReachableFrom, []string{firewall.FromLAN, firewall.FromHost, firewall.FromSandboxes}) {
		t.Errorf("reachable from %v", ps[0].ReachableFrom)
	}
}

// A mapping stored on an internal network by an older pontoon is reported
// as the rules treat it, not as if the network were open.
func TestPortsOfOlderInternalMapping(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.91.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "i2", Networks: []model.AttachSpec{{Network: "back", Ports: tPorts("7100:80")}}}); err != nil {
		t.Fatal(err)
	}
	// What an older pontoon could store: the same network, internal.
	nw, _ := env.e.Network("back")
	nw.Internal = true
	if err := putNetwork(env, &nw.Network); err != nil {
		t.Fatal(err)
	}
	ps, err := env.e.Ports("i2")
	if err != nil || len(ps) != 1 {
		t.Fatalf("%+v %v", ps, err)
	}
	if slices.Contains(ps[0].ReachableFrom, firewall.FromLAN) || !strings.Contains(ps[0].Reachable, "--internal") {
		t.Errorf("older internal mapping reported as %q %v", ps[0].Reachable, ps[0].ReachableFrom)
	}
}

func putNetwork(env *testEnv, n *model.Network) error {
	return env.st.Update(context.Background(), func(tx store.Tx) error { return tx.PutNetwork(n) })
}
