package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
)

// Dual-stack and IPv6-only overlay networks over the IPv4 underlay
// (192.0.2.0/24) of a fake cluster.

// dualNodes is twoNodes with web dual-stack: 10.200.0.0/16 and
// fd00:200::/48; h1 holds 10.200.0.0/24 and fd00:200::/64, h2
// 10.200.1.0/24 and fd00:200:0:1::/64.
func dualNodes(t *testing.T) (etcd *fakeEtcd, h1, h2 *testEnv) {
	t.Helper()
	return clusterPair(t, nil, model.NetworkSpec{Name: "web", Driver: model.DriverOverlay,
		Subnets: []model.Subnet{{Prefix: tPrefix("fd00:200::/48")}, {Prefix: tPrefix("10.200.0.0/16")}}})
}

// A dual-stack overlay: each node a slice of each family, its VXLAN device
// both slices' network addresses, per peer a route and a neighbour per
// family and one FDB entry; sandboxes both addresses and a route to each
// whole subnet; the firewall both ranges as remote members.
func TestOverlayDualStack(t *testing.T) {
	etcd, h1, h2 := dualNodes(t)
	ctx := context.Background()
	d := etcd.defs["web"]
	if got := fmt.Sprint(d.Subnets); got != "[{10.200.0.0/16 24} {fd00:200::/48 64}]" {
		t.Errorf("the cluster's definition: %s, want both subnets, IPv4 first, default slice sizes", got)
	}
	for _, c := range []struct {
		h    *testEnv
		want string
	}{{h1, "10.200.0.0/24, fd00:200::/64"}, {h2, "10.200.1.0/24, fd00:200:0:1::/64"}} {
		n := c.h.mustNet(t, "web")
		if n.SubnetString() != c.want || fmt.Sprint(n.Overlay.Subnets) != fmt.Sprint(d.Subnets) {
			t.Errorf("%s's part: slices %s, overlay %v; want %s and the cluster's subnets", c.h.e.cfg.Cluster.NodeName(), n.SubnetString(), n.Overlay.Subnets, c.want)
		}
	}
	vx := h2.mustNet(t, "web").Overlay.VXLAN
	h1mac := etcd.recordMAC("h1")
	waitDump(t, h2, []string{
		"addr 10.200.1.0/32,fd00:200:0:1::/128 up",
		"route 10.200.0.0/24 via 10.200.0.0 dev " + vx + " onlink",
		"route fd00:200::/64 via fd00:200:: dev " + vx + " onlink",
		"neigh 10.200.0.0 lladdr " + h1mac + " dev " + vx + " permanent",
		"neigh fd00:200:: lladdr " + h1mac + " dev " + vx + " permanent",
		"fdb " + h1mac + " dst 192.0.2.1 dev " + vx + " self permanent",
	}, nil)
	if n := strings.Count(h2.link.Dump(), "fdb "+h1mac); n != 1 {
		t.Errorf("h2 has %d FDB entries for h1, want 1:\n%s", n, h2.link.Dump())
	}
	if d := h2.e.drv(&h2.mustNet(t, "web").Network).CheckNetwork(&h2.mustNet(t, "web").Network); d != nil {
		t.Errorf("web on h2 drifted right after it was made: %q", d)
	}

	// A sandbox: both addresses from h2's slices, a route to each whole
	// subnet through its slice's gateway.
	if _, err := h2.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: []model.AttachSpec{{Network: "web"}}}); err != nil {
		t.Fatal(err)
	}
	h2.e.Flush()
	if !strings.Contains(h2.link.Dump(), "addr 10.200.1.2/24,fd00:200:0:1::2/64") ||
		!strings.Contains(h2.link.Dump(), "route 10.200.0.0/16 via 10.200.1.1 route fd00:200::/48 via fd00:200:0:1::1") {
		t.Errorf("b's interface:\n%s", h2.link.Dump())
	}

	// The firewall: both ranges are members through the VXLAN device,
	// neither from the underlay; nothing between them is masqueraded,
	// what leaves for elsewhere is (ULA, as on a bridge network).
	nets, eps := h2.records(t)
	s := h2.e.firewallState(nets, eps)
	var web firewall.Network
	for _, n := range s.Networks {
		if n.Name == "web" {
			web = n
		}
	}
	if fmt.Sprint(web.Remotes) != "[10.200.0.0/16 fd00:200::/48]" || web.RemoteVia != vx {
		t.Fatalf("web's remote members: %v through %q, want both subnets through %s", web.Remotes, web.RemoteVia, vx)
	}
	ev := firewall.NewEvaluator(s)
	remote, local := tAddr("fd00:200::5"), tAddr("fd00:200:0:1::2")
	for _, c := range []struct {
		name string
		p    firewall.Packet
		want string
	}{
		{"IPv6 from a member on h1, through the VXLAN device", firewall.Packet{Hook: firewall.HookForward, IIF: vx, OIF: web.Bridge, Src: remote, Dst: local, Proto: "tcp", DPort: 80}, "remote-in"},
		{"IPv6 through the VXLAN device from this host's own slice", firewall.Packet{Hook: firewall.HookForward, IIF: vx, OIF: web.Bridge, Src: tAddr("fd00:200:0:1::9"), Dst: local, Proto: "tcp", DPort: 80}, "overlay-source"},
		{"IPv6 from the range, on the underlay", firewall.Packet{Hook: firewall.HookForward, IIF: "under0", OIF: web.Bridge, Src: remote, Dst: local, Proto: "tcp", DPort: 80}, "unsolicited"},
		{"IPv6 to a member on h1: not masqueraded", firewall.Packet{Hook: firewall.HookPostrouting, IIF: web.Bridge, OIF: vx, Src: local, Dst: remote, Proto: "tcp", DPort: 80}, "remote-no-nat"},
		{"IPv6 to the outside: masqueraded", firewall.Packet{Hook: firewall.HookPostrouting, IIF: web.Bridge, OIF: "uplink0", OIFAddr: tAddr("2001:db8::1"), Src: local, Dst: tAddr("2001:db8:9::1"), Proto: "tcp", DPort: 80}, "masquerade"},
	} {
		r := ev.Evaluate(c.p)
		if r.By == nil || r.By.Rule == nil || r.By.Rule.Name != c.want {
			t.Errorf("%s: decided by %+v, want %s", c.name, r.By, c.want)
		}
	}

	// A static IPv6 address: in this host's slice, fine; in the other's,
	// refused naming it.
	if _, err := createOn(h2, "c", "fd00:200:0:1::99"); err != nil {
		t.Errorf("a static address of h2's IPv6 slice: %v", err)
	}
	_, err := createOn(h2, "e", "fd00:200::99")
	if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "node h1's slice fd00:200::/64") {
		t.Errorf("h2 asks for an address of h1's IPv6 slice: %v", err)
	}
	if _, err := createOn(h2, "e", "fd00:201::9"); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "outside overlay network web") {
		t.Errorf("an IPv6 address outside the network: %v", err)
	}

	// node ls and network inspect: both slices of each node.
	nodes, err := h1.e.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if len(n.Slices["web"]) != 2 {
			t.Errorf("node ls, %s: slices %v, want one per family", n.Name, n.Slices)
		}
	}
	info, err := h1.e.InspectNetwork(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(info.Cluster.Nodes[1].Slices); info.Cluster.Nodes[1].Node != "h2" || got != "[10.200.1.0/24 fd00:200:0:1::/64]" {
		t.Errorf("network inspect's h2: %+v", info.Cluster.Nodes[1])
	}
}

// An IPv6-only overlay, and slice sizes given per family.
func TestOverlayIPv6Only(t *testing.T) {
	etcd, h1, _ := dualNodes(t)
	ctx := context.Background()
	if _, err := h1.e.CreateNetwork(ctx, model.NetworkSpec{Name: "six", Driver: model.DriverOverlay,
		Subnets: []model.Subnet{{Prefix: tPrefix("fd00:600::/48")}},
		Overlay: &model.OverlayOptions{Subnets: []model.OverlaySubnet{{Prefix: tPrefix("fd00:600::/48"), SliceBits: 56}}}}); err != nil {
		t.Fatal(err)
	}
	n := h1.mustNet(t, "six")
	if n.SubnetString() != "fd00:600::/56" || fmt.Sprint(etcd.defs["six"].Subnets) != "[{fd00:600::/48 56}]" {
		t.Errorf("six on h1: %s, cluster %v; want a /56 slice of fd00:600::/48", n.SubnetString(), etcd.defs["six"].Subnets)
	}
	if !strings.Contains(h1.link.Dump(), "vxlan "+n.Overlay.VXLAN+" ") || !strings.Contains(h1.link.Dump(), "addr fd00:600::/128 up") {
		t.Errorf("six's VXLAN device on h1: want its IPv6 slice's address only:\n%s", h1.link.Dump())
	}
	// A slice size for a subnet the spec does not have adds it.
	if _, err := h1.e.CreateNetwork(ctx, model.NetworkSpec{Name: "seven", Driver: model.DriverOverlay,
		Subnets: []model.Subnet{{Prefix: tPrefix("10.207.0.0/16")}},
		Overlay: &model.OverlayOptions{Subnets: []model.OverlaySubnet{{Prefix: tPrefix("fd00:700::/48")}}}}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(etcd.defs["seven"].Subnets); got != "[{10.207.0.0/16 24} {fd00:700::/48 64}]" {
		t.Errorf("seven in the cluster: %s", got)
	}
}

// What an overlay network cannot be is refused before anything is
// defined or made.
func TestOverlayCreateRefusals(t *testing.T) {
	etcd, h1, _ := dualNodes(t)
	ctx := context.Background()
	sub := func(ps ...string) []model.Subnet {
		var out []model.Subnet
		for _, p := range ps {
			out = append(out, model.Subnet{Prefix: tPrefix(p)})
		}
		return out
	}
	sizes := func(prefix string, bits int) *model.OverlayOptions {
		return &model.OverlayOptions{Subnets: []model.OverlaySubnet{{Prefix: tPrefix(prefix), SliceBits: bits}}}
	}
	for _, c := range []struct {
		name string
		spec model.NetworkSpec
		want string
	}{
		{"host-gw with IPv6", model.NetworkSpec{Subnets: sub("10.210.0.0/16", "fd00:210::/48"), Overlay: &model.OverlayOptions{Mode: model.OverlayHostGW}},
			"host-gw mode cannot carry IPv6 subnet fd00:210::/48"},
		{"IPv6 from the pool", model.NetworkSpec{Subnets: sub("10.210.0.0/16"), IPv6: true}, "give --subnet fd00:…/48"},
		{"no subnet", model.NetworkSpec{}, "--subnet"},
		{"IPv6 slices too small", model.NetworkSpec{Subnets: sub("fd00:210::/48"), Overlay: sizes("fd00:210::/48", 125)}, "give --slice-size6 from 48 to 124"},
		{"IPv6 slices larger than the subnet", model.NetworkSpec{Subnets: sub("fd00:210::/48"), Overlay: sizes("fd00:210::/48", 40)}, "give --slice-size6 from 48 to 124"},
		{"IPv6 default slices larger than the subnet", model.NetworkSpec{Subnets: sub("fd00:210::/96")}, "slices of /64 do not fit subnet fd00:210::/96: give --slice-size6 from 96 to 124"},
		{"IPv4 slices too small", model.NetworkSpec{Subnets: sub("10.210.0.0/16"), Overlay: sizes("10.210.0.0/16", 31)}, "give --slice-size from 16 to 30"},
		{"a size for another subnet", model.NetworkSpec{Subnets: sub("fd00:210::/48"), Overlay: sizes("fd00:211::/48", 64)}, "the network's IPv6 subnet is fd00:210::/48"},
		{"a gateway", model.NetworkSpec{Subnets: []model.Subnet{{Prefix: tPrefix("fd00:210::/48"), Gateway: tAddr("fd00:210::1")}}}, "give no --gateway"},
		{"two IPv6 subnets", model.NetworkSpec{Subnets: sub("fd00:210::/48", "fd00:211::/48")}, "two IPv6 subnets"},
		{"MTU below IPv6's", model.NetworkSpec{Subnets: sub("fd00:210::/48"), MTU: 1200}, "1280"},
	} {
		c.spec.Name, c.spec.Driver = "bad", model.DriverOverlay
		before := h1.snapshot(t)
		_, err := h1.e.CreateNetwork(ctx, c.spec)
		if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", c.name, err, c.want)
		}
		if _, ok := etcd.defs["bad"]; ok {
			t.Errorf("%s: defined in the cluster", c.name)
		}
		if after := h1.snapshot(t); after != before {
			t.Errorf("%s: changed h1:\n%s\nwas\n%s", c.name, after, before)
		}
	}

	// A node whose underlay is IPv6 makes no overlay at all.
	c6 := &fakeCluster{fakeEtcd: etcd, node: "h6", underlay: tAddr("2001:db8::6")}
	h6 := newEnv(t, func(c *Config) { c.Cluster = c6 })
	h6.link.AddHostLink(link.LinkInfo{Name: "under0", Type: "veth", MTU: 1500, Up: true})
	if _, err := h6.e.CreateNetwork(ctx, model.NetworkSpec{Name: "bad", Driver: model.DriverOverlay, Subnets: sub("fd00:210::/48")}); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "IPv6 underlay is not supported") {
		t.Errorf("an overlay over an IPv6 underlay: %v", err)
	}
	if _, ok := etcd.defs["bad"]; ok {
		t.Error("an overlay over an IPv6 underlay was defined")
	}
}
