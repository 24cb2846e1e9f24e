package link

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"pontoon/internal/testutil"
)

var (
	gw0v6 = netip.MustParsePrefix("fd00:70::1/64")
	gw1v6 = netip.MustParsePrefix("fd00:71::1/64")
)

// dualVeth is veth() with an IPv6 address too: 10.70.0.X/24 and
// fd00:70::X/64 on br0, default routes through both gateways.
func dualVeth(host, ns string, x byte) Veth {
	v := veth(host, ns, fmt.Sprintf("10.70.0.%d", x))
	v.Addrs = append(v.Addrs, Address{Addr: netip.PrefixFrom(v6Host(gw0v6, x), 64), Gateway: gw0v6.Addr()})
	return v
}

// v6Host is the address ending in x in gw's subnet.
func v6Host(gw netip.Prefix, x byte) netip.Addr {
	b := gw.Masked().Addr().As16()
	b[15] = x
	return netip.AddrFrom16(b)
}

// newDualHost is newKernelHost with br0 dual-stack (10.70.0.1/24,
// fd00:70::1/64).
func newDualHost(t *testing.T) (Interface, string) {
	t.Helper()
	l, host := newKernelHost(t)
	if _, err := l.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0, gw0v6}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	return l, host
}

func ping6(t *testing.T, from, to string) error {
	t.Helper()
	out, err := run(t, from, "ping", "-6", "-c1", "-i0.2", "-w2", to)
	if err != nil {
		return fmt.Errorf("ping -6 %s: %w\n%s", to, err, out)
	}
	return nil
}

// sysctl reads a /proc/sys file inside the namespace at ns.
func sysctl(t *testing.T, ns, path string) string {
	t.Helper()
	out, err := run(t, ns, "cat", path)
	if err != nil {
		t.Fatalf("read %s: %v %s", path, err, out)
	}
	return strings.TrimSpace(out)
}

// v6Addrs lists a link's IPv6 addresses as "ADDR/LEN flags".
func v6Addrs(t *testing.T, h *netlink.Handle, name string) map[netip.Prefix]int {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]int{}
	for _, a := range addrs {
		p, _ := toPrefix(a.IPNet)
		out[p] = a.Flags
	}
	return out
}

// A dual-stack attach: both addresses and the link-local one, none
// tentative (NODAD), default routes of both families, router
// advertisements off in the sandbox and on the bridge, no IPv6 on the host
// end; real IPv6 traffic between two sandboxes and to the gateway, over
// global and link-local addresses.
func TestKernelDualStackAttach(t *testing.T) {
	l, host := newDualHost(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	va, vb := dualVeth("ptv-a", a, 2), dualVeth("ptv-b", b, 3)
	for _, v := range []Veth{va, vb} {
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	h := nsHandle(t, a)
	got := v6Addrs(t, h, "eth0")
	ll := LinkLocal(va.MAC)
	if ll.String() != "fe80::42:aff:fe46:2/64" {
		t.Errorf("LinkLocal(%s) = %s, want the modified EUI-64 one", va.MAC, ll)
	}
	for _, p := range []netip.Prefix{va.Addrs[1].Addr, ll} {
		flags, ok := got[p]
		if !ok {
			t.Errorf("eth0 lacks %s: %v", p, got)
			continue
		}
		if flags&unix.IFA_F_NODAD == 0 || flags&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("%s has flags %#x: want nodad, not tentative", p, flags)
		}
	}
	if len(got) != 2 {
		t.Errorf("eth0 IPv6 addresses %v, want exactly the global and the link-local one", got)
	}
	eth0, _ := h.LinkByName("eth0")
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, _ := h.RouteListFiltered(fam, &netlink.Route{LinkIndex: eth0.Attrs().Index}, netlink.RT_FILTER_OIF)
		var gws []string
		for _, r := range routes {
			if r.Gw != nil {
				gws = append(gws, fmt.Sprintf("%v via %v", r.Dst, r.Gw))
			}
		}
		want := map[int]string{netlink.FAMILY_V4: "0.0.0.0/0 via 10.70.0.1", netlink.FAMILY_V6: "::/0 via fd00:70::1"}[fam]
		if !slices.Equal(gws, []string{want}) {
			t.Errorf("gateway routes %q, want %q", gws, want)
		}
	}
	for _, key := range []string{"accept_ra", "autoconf"} {
		if v := sysctl(t, a, "/proc/sys/net/ipv6/conf/eth0/"+key); v != "0" {
			t.Errorf("sandbox eth0 %s = %s, want 0", key, v)
		}
		if v := sysctl(t, host, "/proc/sys/net/ipv6/conf/br0/"+key); v != "0" {
			t.Errorf("br0 %s = %s, want 0", key, v)
		}
	}
	hh := nsHandle(t, host)
	if got := v6Addrs(t, hh, "ptv-a"); len(got) != 0 {
		t.Errorf("host end has IPv6 addresses %v, want none", got)
	}
	br := v6Addrs(t, hh, "br0")
	brLink, _ := hh.LinkByName("br0")
	if _, ok := br[gw0v6]; !ok || len(br) != 2 {
		t.Errorf("br0 IPv6 addresses %v, want %s and one link-local", br, gw0v6)
	}
	if flags, ok := br[LinkLocal(brLink.Attrs().HardwareAddr)]; !ok || flags&unix.IFA_F_TENTATIVE != 0 {
		t.Errorf("br0 link-local address missing or tentative: %v", br)
	}

	// Real traffic, the replies seen by the pinging side.
	for _, to := range []string{"fd00:70::3", "fd00:70::1", LinkLocal(vb.MAC).Addr().String() + "%eth0"} {
		if err := ping6(t, a, to); err != nil {
			t.Fatal(err)
		}
	}
	// b learned a's MAC for a's global address: the traffic was IPv6 over
	// the bridge, not something else answering.
	nb, err := l.(*netlinkLinks).NeighGet(b, 0, "eth0", va.Addrs[1].Addr.Addr())
	if err != nil || nb.MAC.String() != va.MAC.String() {
		t.Errorf("b's neighbour entry for a: %+v %v", nb, err)
	}
	if err := ping(t, a, "10.70.0.3"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []Veth{va, vb} {
		if p := l.CheckVeth(v); len(p) > 0 {
			t.Errorf("CheckVeth(%s): %v", v.HostName, p)
		}
	}
	if p := l.CheckBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0, gw0v6}, MTU: 1500}); len(p) > 0 {
		t.Errorf("CheckBridge: %v", p)
	}
	// The bridge turned back into accepting router advertisements is
	// drift.
	if out, err := run(t, host, "sysctl", "-w", "net.ipv6.conf.br0.accept_ra=1"); err != nil {
		t.Fatal(err, out)
	}
	if p := l.CheckBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0, gw0v6}}); len(p) != 1 || !strings.Contains(p[0], "router advertisements") {
		t.Errorf("CheckBridge with accept_ra=1: %v", p)
	}
}

// An IPv6 address or route lost in the sandbox is drift: a watch hears
// it, CheckVeth names it and RepairVeth puts it back; a link taken down
// and up loses its IPv6 addresses (keep_addr_on_down=0), which RepairVeth
// also restores.
func TestKernelDualStackRepair(t *testing.T) {
	l, _ := newDualHost(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	va, vb := dualVeth("ptv-a", a, 2), dualVeth("ptv-b", b, 3)
	for _, v := range []Veth{va, vb} {
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := l.Watch(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{"ip", "-6", "route", "del", "default"}, {"ip", "-6", "addr", "del", "fd00:70::2/64", "dev", "eth0"}} {
		if out, err := run(t, a, argv...); err != nil {
			t.Fatalf("%v: %v %s", argv, err, out)
		}
	}
	heard := map[EventKind]bool{}
	for timeout := time.After(2 * time.Second); !heard[AddrDeleted] || !heard[RouteDeleted]; {
		select {
		case ev := <-events:
			heard[ev.Kind] = true
		case <-timeout:
			t.Fatalf("the watch heard %v, want the IPv6 address and route deleted", heard)
		}
	}
	if err := ping6(t, a, "fd00:70::3"); err == nil {
		t.Fatal("ping -6 works without the address")
	}
	probs := l.CheckVeth(va)
	want := []string{"eth0 does not have address fd00:70::2/64", "no default route via fd00:70::1 dev eth0"}
	if !slices.Equal(probs, want) {
		t.Errorf("CheckVeth = %q, want %q", probs, want)
	}
	_, fixes, err := l.RepairVeth(va)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, f := range fixes {
		kinds = append(kinds, f.Kind)
	}
	if !slices.Equal(kinds, []string{"address", "route"}) {
		t.Errorf("RepairVeth fixed %+v, want the address and the route", fixes)
	}
	if p := l.CheckVeth(va); len(p) > 0 {
		t.Fatalf("after RepairVeth: %v", p)
	}
	if err := ping6(t, a, "fd00:70::3"); err != nil {
		t.Fatal(err)
	}

	// Down and up: the IPv4 address stays, the IPv6 ones go.
	for _, argv := range [][]string{{"ip", "link", "set", "eth0", "down"}, {"ip", "link", "set", "eth0", "up"}} {
		if out, err := run(t, a, argv...); err != nil {
			t.Fatalf("%v: %v %s", argv, err, out)
		}
	}
	probs = l.CheckVeth(va)
	for _, w := range []string{"does not have address fd00:70::2/64", "does not have address " + LinkLocal(va.MAC).String(), "no default route via fd00:70::1"} {
		if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, w) }) {
			t.Errorf("CheckVeth after down and up lacks %q: %q", w, probs)
		}
	}
	if _, _, err := l.RepairVeth(va); err != nil {
		t.Fatal(err)
	}
	if p := l.CheckVeth(va); len(p) > 0 {
		t.Fatalf("after RepairVeth: %v", p)
	}
	for _, to := range []string{"fd00:70::3", "fd00:70::1", "10.70.0.3"} {
		if err := ping(t, a, to); err != nil {
			t.Fatalf("after the repair: %v", err)
		}
	}
}

// A sandbox on two dual-stack bridges answers a client on a third network,
// routed through the host, from the interface the request came in on: in
// each family the replies leave through eth1, where the request arrived,
// and not through eth0, where the main table's default route points. With
// the rules deleted they leave through eth0 — the check can fail.
func TestKernelPolicyRoutingBothFamilies(t *testing.T) {
	l, host := newDualHost(t)
	gw2, gw2v6 := netip.MustParsePrefix("10.72.0.1/24"), netip.MustParsePrefix("fd00:72::1/64")
	for _, b := range []Bridge{{Name: "br1", Gateways: []netip.Prefix{gw1, gw1v6}}, {Name: "br2", Gateways: []netip.Prefix{gw2, gw2v6}}} {
		b.MTU = 1500
		if _, err := l.EnsureBridge(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, argv := range [][]string{{"sysctl", "-w", "net.ipv4.ip_forward=1"}, {"sysctl", "-w", "net.ipv6.conf.all.forwarding=1"}} {
		if out, err := run(t, host, argv...); err != nil {
			t.Fatalf("%v: %v %s", argv, err, out)
		}
	}
	dual, client := testutil.NewNetns(t), testutil.NewNetns(t)
	second := Veth{HostName: "ptv-d1", Bridge: "br1", Iface: Iface{MTU: 1500, Netns: dual, IfName: "eth1", MAC: net.HardwareAddr{2, 0x42, 10, 71, 0, 10}, Table: 101, Addrs: []Address{
		{Addr: netip.MustParsePrefix("10.71.0.10/24"), Gateway: gw1.Addr()},
		{Addr: netip.MustParsePrefix("fd00:71::10/64"), Gateway: gw1v6.Addr()},
	}}}
	cv := Veth{HostName: "ptv-c", Bridge: "br2", Iface: Iface{MTU: 1500, Netns: client, IfName: "eth0", MAC: net.HardwareAddr{2, 0x42, 10, 72, 0, 20}, DefaultRoute: true, Addrs: []Address{
		{Addr: netip.MustParsePrefix("10.72.0.20/24"), Gateway: gw2.Addr()},
		{Addr: netip.MustParsePrefix("fd00:72::20/64"), Gateway: gw2v6.Addr()},
	}}}
	for _, v := range []Veth{dualVeth("ptv-d0", dual, 10), second, cv} {
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	if p := l.CheckVeth(second); len(p) > 0 {
		t.Fatalf("CheckVeth: %v", p)
	}
	for _, want := range []string{"fd00:71::/64 dev eth1 src fd00:71::10", "default via fd00:71::1 dev eth1"} {
		if out, _ := run(t, dual, "ip", "-6", "route", "show", "table", "101"); !strings.Contains(out, want) {
			t.Errorf("IPv6 table 101 lacks %q:\n%s", want, out)
		}
	}
	h := nsHandle(t, dual)
	txPackets := func(name string) uint64 {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Statistics.TxPackets
	}
	const n = 20
	// burst pings to from the client and returns how many packets eth0
	// and eth1 of the dual sandbox sent meanwhile.
	burst := func(to string) (eth0, eth1 uint64) {
		t.Helper()
		e0, e1 := txPackets("eth0"), txPackets("eth1")
		if out, err := run(t, client, "ping", "-c", fmt.Sprint(n), "-i", "0.01", "-W", "1", to); err != nil {
			t.Fatalf("ping %s: %v\n%s", to, err, out)
		}
		return txPackets("eth0") - e0, txPackets("eth1") - e1
	}
	for _, a := range second.Addrs {
		ip := a.Addr.Addr().String()
		if e0, e1 := burst(ip); e1 < n || e0 >= n {
			t.Errorf("%d pings to %s: eth1 sent %d packets, eth0 %d; want the replies on eth1", n, ip, e1, e0)
		}
		if err := l.DeleteRule(dual, 0, a.Addr.Addr(), 101); err != nil {
			t.Fatal(err)
		}
		if e0, _ := burst(ip); e0 < n {
			t.Errorf("without the rule, eth0 sent %d packets for %d pings to %s: the check cannot tell", e0, n, ip)
		}
	}
	if out, _ := run(t, dual, "ip", "-6", "rule"); strings.Contains(out, "lookup 101") {
		t.Errorf("IPv6 rule left after DeleteRule:\n%s", out)
	}
	probs := l.CheckVeth(second)
	want := []string{"no rule from 10.71.0.10 lookup 101", "no rule from fd00:71::10 lookup 101"}
	if !slices.Equal(probs, want) {
		t.Errorf("CheckVeth = %q, want %q", probs, want)
	}
	if _, fixes, err := l.RepairVeth(second); err != nil || len(fixes) != 2 {
		t.Fatalf("RepairVeth: %+v %v", fixes, err)
	}
	if e0, e1 := burst("fd00:71::10"); e1 < n || e0 >= n {
		t.Errorf("after RepairVeth: eth1 sent %d packets, eth0 %d", e1, e0)
	}
}

// Addresses that cannot be configured as given are refused before
// anything is made.
func TestKernelAddVethRefusesBadAddrs(t *testing.T) {
	l, _ := newDualHost(t)
	ns := testutil.NewNetns(t)
	good := dualVeth("ptv-x", ns, 2)
	for name, mod := range map[string]func(v *Veth){
		"two IPv4":        func(v *Veth) { v.Addrs = append(v.Addrs, Address{Addr: netip.MustParsePrefix("10.70.0.9/24")}) },
		"mapped":          func(v *Veth) { v.Addrs[0].Addr = netip.MustParsePrefix("::ffff:10.70.0.2/120") },
		"no MAC":          func(v *Veth) { v.MAC = nil },
		"gateway family":  func(v *Veth) { v.Addrs[1].Gateway = gw0.Addr() },
		"invalid address": func(v *Veth) { v.Addrs[0].Addr = netip.Prefix{} },
	} {
		v := good
		v.Addrs = slices.Clone(good.Addrs)
		mod(&v)
		if _, err := l.AddVeth(v); err == nil {
			t.Errorf("%s: AddVeth succeeded", name)
		} else if !strings.Contains(err.Error(), "ptv-x") {
			t.Errorf("%s: error does not name the veth: %v", name, err)
		}
	}
	if left := hostLinks(t, l); len(left) != 0 {
		t.Fatalf("links made: %v", left)
	}
	if _, err := l.EnsureBridge(Bridge{Name: "br9", Gateways: []netip.Prefix{gw1v6, netip.MustParsePrefix("fd00:99::1/64")}}); err == nil {
		t.Error("EnsureBridge with two IPv6 gateways succeeded")
	}
	if idx, _ := l.LinkIndex("br9"); idx != 0 {
		t.Error("EnsureBridge made the bridge it refused")
	}
	if err := l.SetDefaultRoute(ns, 0, "eth0", netip.Addr{}); err == nil {
		t.Error("SetDefaultRoute without a gateway succeeded")
	}
}

// SetDefaultRoute replaces the default route of the gateway's family
// only.
func TestKernelSetDefaultRouteBothFamilies(t *testing.T) {
	l, _ := newDualHost(t)
	if _, err := l.EnsureBridge(Bridge{Name: "br1", Gateways: []netip.Prefix{gw1, gw1v6}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	ns := testutil.NewNetns(t)
	second := Veth{HostName: "ptv-s1", Bridge: "br1", Iface: Iface{MTU: 1500, Netns: ns, IfName: "eth1", MAC: net.HardwareAddr{2, 0x42, 10, 71, 0, 10}, Addrs: []Address{
		{Addr: netip.MustParsePrefix("10.71.0.10/24"), Gateway: gw1.Addr()},
		{Addr: netip.MustParsePrefix("fd00:71::10/64"), Gateway: gw1v6.Addr()},
	}}}
	for _, v := range []Veth{dualVeth("ptv-s0", ns, 10), second} {
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SetDefaultRoute(ns, 0, "eth1", gw1v6.Addr()); err != nil {
		t.Fatal(err)
	}
	v4, _ := run(t, ns, "ip", "-4", "route", "show", "default")
	v6, _ := run(t, ns, "ip", "-6", "route", "show", "default")
	if !strings.Contains(v6, "via fd00:71::1 dev eth1") || strings.Contains(v6, "fd00:70::1") || !strings.Contains(v4, "via 10.70.0.1 dev eth0") {
		t.Errorf("default routes after SetDefaultRoute(fd00:71::1):\n%s%s", v4, v6)
	}
	if err := l.SetDefaultRoute(ns, 0, "eth1", gw1.Addr()); err != nil {
		t.Fatal(err)
	}
	if v4, _ := run(t, ns, "ip", "-4", "route", "show", "default"); !strings.Contains(v4, "via 10.71.0.1 dev eth1") || strings.Contains(v4, "10.70.0.1") {
		t.Errorf("IPv4 default route after SetDefaultRoute(10.71.0.1):\n%s", v4)
	}
}
