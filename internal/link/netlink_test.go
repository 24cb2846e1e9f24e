package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
	"pontoon/internal/testutil"
)

// Kernel tests: each runs the real Interface inside a throwaway "host"
// namespace (testutil.NewNetns) with its sandboxes in further throwaway
// namespaces, so nothing is created in the machine's own namespace.

var (
	gw0 = netip.MustParsePrefix("10.70.0.1/24")
	gw1 = netip.MustParsePrefix("10.71.0.1/24")
)

// newKernelHost makes a host namespace with bridge br0 (10.70.0.1/24) and
// returns the real Interface bound to it. New runs on a thread inside the
// namespace; its sockets stay bound there whatever thread calls it later.
func newKernelHost(t *testing.T) (Interface, string) {
	t.Helper()
	host := testutil.NewNetns(t)
	var l Interface
	if err := testutil.InNetns(t, host, func() (err error) {
		l, err = New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	return l, host
}

// run runs a command inside the namespace at ns.
func run(t *testing.T, ns string, argv ...string) (string, error) {
	t.Helper()
	var out []byte
	err := testutil.InNetns(t, ns, func() (err error) {
		out, err = exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return err
	})
	return string(out), err
}

// ping sends echo requests 0.2 s apart until one is answered, for at most
// 2 s: a request answered late on a loaded machine is no failure.
func ping(t *testing.T, from, to string) error {
	t.Helper()
	out, err := run(t, from, "ping", "-c1", "-i0.2", "-w2", to)
	if err != nil {
		return fmt.Errorf("ping %s: %w\n%s", to, err, out)
	}
	return nil
}

// veth is eth0 on br0 with address ip/24 and a default route.
func veth(host, ns, ip string) Veth {
	a := netip.MustParseAddr(ip)
	return Veth{HostName: host, Bridge: "br0", Iface: Iface{MTU: 1500, Netns: ns, IfName: "eth0", MAC: net.HardwareAddr{2, 0x42, 10, 70, 0, a.As4()[3]}, Addrs: []Address{{Addr: netip.PrefixFrom(a, 24), Gateway: gw0.Addr()}}, DefaultRoute: true}}
}

// nsHandle is a netlink handle inside the namespace at path.
func nsHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	h, err := handleAtPath(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// sameLink compares two LinkInfos but their counters.
func sameLink(a, b LinkInfo) bool {
	a.Stats, b.Stats = nil, nil
	return a == b
}

func hostLinks(t *testing.T, l Interface) []string {
	t.Helper()
	ls, err := l.ListLinks("ptv-")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, li := range ls {
		names = append(names, li.Name)
	}
	slices.Sort(names)
	return names
}

func TestKernelEnsureBridge(t *testing.T) {
	l, host := newKernelHost(t)
	idx, err := l.LinkIndex("br0")
	if err != nil || idx == 0 {
		t.Fatalf("LinkIndex(br0) = %d, %v", idx, err)
	}
	// Again, with a new MTU: same bridge, MTU changed, one address.
	again, err := l.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}, MTU: 1400})
	if err != nil || again != idx {
		t.Fatalf("second EnsureBridge = %d, %v; want %d", again, err, idx)
	}
	h := nsHandle(t, host)
	br, err := h.LinkByIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	if br.Type() != "bridge" || br.Attrs().MTU != 1400 || br.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("br0: type %s mtu %d flags %v", br.Type(), br.Attrs().MTU, br.Attrs().Flags)
	}
	if got := br.Attrs().HardwareAddr.String(); got != "02:42:0a:46:00:01" {
		t.Errorf("br0 MAC %s, want one derived from the gateway", got)
	}
	addrs, _ := h.AddrList(br, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.70.0.1/24" {
		t.Errorf("br0 addresses %v", addrs)
	}
	if ms := br.(*netlink.Bridge).MulticastSnooping; ms == nil || *ms {
		t.Error("multicast snooping is on on a new bridge")
	}
	// A bridge made by someone else, with snooping on, is taken over.
	on := true
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "userbr"}, MulticastSnooping: &on}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureBridge(Bridge{Name: "userbr", Gateways: []netip.Prefix{gw1}}); err != nil {
		t.Fatal(err)
	}
	if ub, err := h.LinkByName("userbr"); err != nil {
		t.Error(err)
	} else if ms := ub.(*netlink.Bridge).MulticastSnooping; ms == nil || *ms {
		t.Error("multicast snooping still on on an existing bridge pontoon took over")
	}
	// A name taken by something that is not a bridge.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "notbr0"}, PeerName: "notbr1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureBridge(Bridge{Name: "notbr0", Gateways: []netip.Prefix{gw1}}); err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("EnsureBridge over a veth: %v", err)
	}
	pfx, err := l.HostPrefixes()
	if err != nil || !slices.Contains(pfx, netip.MustParsePrefix("10.70.0.0/24")) {
		t.Errorf("HostPrefixes = %v, %v", pfx, err)
	}
	for range 2 {
		if err := l.DeleteBridge("br0"); err != nil {
			t.Fatal(err)
		}
	}
	if idx, err := l.LinkIndex("br0"); idx != 0 || err != nil {
		t.Errorf("LinkIndex after delete = %d, %v", idx, err)
	}
}

func TestKernelAttachPingDelete(t *testing.T) {
	l, _ := newKernelHost(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	va, vb := veth("ptv-a", a, "10.70.0.2"), veth("ptv-b", b, "10.70.0.3")
	ia, err := l.AddVeth(va)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddVeth(vb); err != nil {
		t.Fatal(err)
	}
	ls, _ := l.ListLinks("ptv-a")
	if len(ls) != 1 || ls[0].Index != ia || ls[0].Master != "br0" || ls[0].Type != "veth" {
		t.Errorf("ListLinks(ptv-a) = %+v, AddVeth returned index %d", ls, ia)
	}
	// Link says what ListLinks says, for one link (counters aside); nothing
	// for a missing one.
	if one, ok, err := l.Link("ptv-a"); err != nil || !ok || len(ls) != 1 || one.Stats == nil || ls[0].Stats == nil || !sameLink(one, ls[0]) || !one.Up {
		t.Errorf("Link(ptv-a) = %+v, %v, %v; ListLinks said %+v", one, ok, err, ls)
	}
	if _, ok, err := l.Link("ptv-none"); ok || err != nil {
		t.Errorf("Link(ptv-none) = %v, %v; want not found and no error", ok, err)
	}

	// Inside sandbox a, through a netlink handle bound to it.
	h := nsHandle(t, a)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	at := eth0.Attrs()
	if at.HardwareAddr.String() != "02:42:0a:46:00:02" || at.MTU != 1500 || at.Flags&net.FlagUp == 0 || at.ParentIndex != ia {
		t.Errorf("eth0: mac %s mtu %d flags %v peer index %d (host end %d)", at.HardwareAddr, at.MTU, at.Flags, at.ParentIndex, ia)
	}
	if addrs, _ := h.AddrList(eth0, netlink.FAMILY_V4); len(addrs) != 1 || addrs[0].IPNet.String() != "10.70.0.2/24" {
		t.Errorf("eth0 IPv4 addresses %v", addrs)
	}
	// addrgenmode none: no link-local address, so no IPv6 chatter flooded
	// over the bridge.
	if addrs, _ := h.AddrList(eth0, netlink.FAMILY_V6); len(addrs) != 0 {
		t.Errorf("eth0 IPv6 addresses %v, want none", addrs)
	}
	routes, _ := h.RouteList(eth0, netlink.FAMILY_V4)
	var rs []string
	for _, r := range routes {
		rs = append(rs, fmt.Sprintf("%v via %v", r.Dst, r.Gw))
	}
	slices.Sort(rs)
	if want := []string{"0.0.0.0/0 via 10.70.0.1", "10.70.0.0/24 via <nil>"}; !slices.Equal(rs, want) {
		t.Errorf("routes on eth0 %q, want %q", rs, want)
	}

	if err := ping(t, a, "10.70.0.3"); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, a, "10.70.0.1"); err != nil {
		t.Fatal(err)
	}
	// The host end counts what sandbox a sent as received (at least the
	// two echo requests, 98 bytes each with their Ethernet header) and the
	// replies as sent; a lookup and a dump say so alike.
	one, _, _ := l.Link("ptv-a")
	ls, _ = l.ListLinks("ptv-a")
	for _, li := range append(ls, one) {
		if s := li.Stats; s == nil || s.RxPackets < 2 || s.RxBytes < 2*98 || s.TxPackets < 2 || s.TxBytes < 2*98 {
			t.Errorf("%s counters after two pings from its sandbox: %+v", li.Name, s)
		}
	}
	if probs := l.CheckVeth(va); len(probs) != 0 {
		t.Errorf("CheckVeth on a good veth: %v", probs)
	}
	wrong := va
	wrong.Addrs, wrong.MTU = []Address{{Addr: netip.MustParsePrefix("10.70.0.9/24"), Gateway: gw0.Addr()}}, 1400
	if probs := l.CheckVeth(wrong); len(probs) != 2 {
		t.Errorf("CheckVeth with wrong address and MTU: %v", probs)
	}

	if err := l.DisableVeth("ptv-b"); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, a, "10.70.0.3"); err == nil {
		t.Fatal("b still answers after DisableVeth")
	}
	if ls, _ := l.ListLinks("ptv-b"); len(ls) != 1 || ls[0].Master != "" {
		t.Errorf("ptv-b after DisableVeth: %+v", ls)
	}
	if probs := l.CheckVeth(vb); len(probs) == 0 {
		t.Error("CheckVeth found no drift on a disabled veth")
	}
	if err := l.DisableVeth("ptv-missing"); err != nil {
		t.Errorf("DisableVeth of a missing link: %v", err)
	}

	if err := l.DeleteVeths([]string{"ptv-a", "ptv-missing", "ptv-b"}); err != nil {
		t.Fatal(err)
	}
	if left := hostLinks(t, l); len(left) != 0 {
		t.Fatalf("left: %v", left)
	}
	if _, err := h.LinkByName("eth0"); err == nil {
		t.Fatal("the peer survived its host end")
	}
	if err := l.DeleteVeths([]string{"ptv-a"}); err != nil {
		t.Errorf("DeleteVeths of deleted links: %v", err)
	}
}

// Concurrent batches delete their own links and no one else's.
func TestKernelDeleteVethsConcurrent(t *testing.T) {
	l, _ := newKernelHost(t)
	sb := testutil.NewNetns(t)
	var names [3][]string
	for i := range 30 {
		v := veth(fmt.Sprintf("ptv-%d", i), sb, fmt.Sprintf("10.70.0.%d", 10+i))
		v.IfName, v.DefaultRoute = fmt.Sprintf("eth%d", i), false
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
		names[i%3] = append(names[i%3], v.HostName)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for g := range 2 {
		wg.Go(func() { errs[g] = l.DeleteVeths(names[g]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(names[2])
	slices.Sort(want)
	if got := hostLinks(t, l); !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
}

func TestKernelIsolatedPorts(t *testing.T) {
	l, _ := newKernelHost(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	va, vb := veth("ptv-a", a, "10.70.0.2"), veth("ptv-b", b, "10.70.0.3")
	va.Isolated, vb.Isolated = true, true
	for _, v := range []Veth{va, vb} {
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := ping(t, a, "10.70.0.3"); err == nil {
		t.Fatal("isolated ports reach each other")
	}
	if err := ping(t, a, "10.70.0.1"); err != nil {
		t.Fatalf("isolated port cannot reach the gateway: %v", err)
	}
	if probs := l.CheckVeth(va); len(probs) != 0 {
		t.Errorf("CheckVeth: %v", probs)
	}
	va.Isolated = false
	if probs := l.CheckVeth(va); len(probs) != 1 {
		t.Errorf("CheckVeth of an isolated port expected open: %v", probs)
	}
}

// A sandbox on two bridges answers on each through the interface the
// request came in on (source-based policy routing); a client on each
// bridge pings it.
func TestKernelPolicyRouting(t *testing.T) {
	l, _ := newKernelHost(t)
	if _, err := l.EnsureBridge(Bridge{Name: "br1", Gateways: []netip.Prefix{gw1}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	dual, c0, c1 := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
	second := Veth{HostName: "ptv-d1", Bridge: "br1", Iface: Iface{MTU: 1500, Netns: dual, IfName: "eth1", MAC: net.HardwareAddr{2, 0x42, 10, 71, 0, 10}, Addrs: []Address{{Addr: netip.MustParsePrefix("10.71.0.10/24"), Gateway: gw1.Addr()}}, Table: 101}}
	c1v := Veth{HostName: "ptv-c1", Bridge: "br1", Iface: Iface{MTU: 1500, Netns: c1, IfName: "eth0", MAC: net.HardwareAddr{2, 0x42, 10, 71, 0, 20}, Addrs: []Address{{Addr: netip.MustParsePrefix("10.71.0.20/24"), Gateway: gw1.Addr()}}, DefaultRoute: true}}
	for _, v := range []Veth{veth("ptv-d0", dual, "10.70.0.10"), second, veth("ptv-c0", c0, "10.70.0.20"), c1v} {
		if _, err := l.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	// Hosts on the bridges route to each other through the host namespace
	// only if it forwards, which it does not: each client reaches the dual
	// sandbox on its own bridge, and the reply must leave the same way.
	for _, c := range []struct{ ns, to string }{{c0, "10.70.0.10"}, {c1, "10.71.0.10"}} {
		if err := ping(t, c.ns, c.to); err != nil {
			t.Fatal(err)
		}
	}
	h := nsHandle(t, dual)
	rules, _ := h.RuleListFiltered(netlink.FAMILY_V4, policyRule(second.Addrs[0].Addr.Addr(), 101), netlink.RT_FILTER_SRC|netlink.RT_FILTER_TABLE)
	if len(rules) != 1 || rules[0].Priority != 101 {
		t.Fatalf("rules: %+v", rules)
	}
	out, _ := run(t, dual, "ip", "route", "show", "table", "101")
	for _, want := range []string{"default via 10.71.0.1 dev eth1", "10.71.0.0/24 dev eth1 scope link src 10.71.0.10"} {
		if !strings.Contains(out, want) {
			t.Errorf("table 101 lacks %q:\n%s", want, out)
		}
	}
	if probs := l.CheckVeth(second); len(probs) != 0 {
		t.Errorf("CheckVeth: %v", probs)
	}
	if err := l.DeleteVeths([]string{"ptv-d1"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := l.DeleteRule(dual, 0, second.Addrs[0].Addr.Addr(), 101); err != nil {
			t.Fatal(err)
		}
	}
	if out, _ := run(t, dual, "ip", "rule"); strings.Contains(out, "lookup 101") {
		t.Fatalf("rule left: %s", out)
	}
	if err := l.DeleteRule("/nonexistent/ns", 0, second.Addrs[0].Addr.Addr(), 101); err != nil {
		t.Errorf("DeleteRule in a missing namespace: %v", err)
	}
}

// A failed AddVeth leaves no link behind, and never deletes a link it did
// not create.
func TestKernelAddVethFailureLeavesNothing(t *testing.T) {
	l, _ := newKernelHost(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)

	v := veth("ptv-x", a, "10.70.0.2")
	v.Bridge = "nosuchbr"
	if _, err := l.AddVeth(v); err == nil {
		t.Fatal("AddVeth onto a missing bridge succeeded")
	}

	// Fails after the pair exists: the gateway is not on the subnet, so the
	// default route is refused. The rollback deletes the pair.
	v = veth("ptv-y", a, "10.70.0.2")
	v.Addrs[0].Gateway = netip.MustParseAddr("10.99.0.1")
	if _, err := l.AddVeth(v); err == nil || !strings.Contains(err.Error(), "default route") {
		t.Fatalf("AddVeth with an unreachable gateway: %v", err)
	}
	if _, err := nsHandle(t, a).LinkByName("eth0"); err == nil {
		t.Error("the peer survived the rollback")
	}

	// The peer name is taken inside the sandbox.
	if _, err := run(t, a, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddVeth(veth("ptv-z", a, "10.70.0.3")); err == nil {
		t.Fatal("AddVeth over an existing eth0 succeeded")
	}
	if left := hostLinks(t, l); len(left) != 0 {
		t.Fatalf("links left after failures: %v", left)
	}

	// The host name is taken: the existing link must survive.
	if _, err := l.AddVeth(veth("ptv-b", b, "10.70.0.4")); err != nil {
		t.Fatal(err)
	}
	c := testutil.NewNetns(t)
	if _, err := l.AddVeth(veth("ptv-b", c, "10.70.0.5")); err == nil || !errors.Is(err, unix.EEXIST) {
		t.Fatalf("AddVeth with a taken host name: %v", err)
	}
	if left := hostLinks(t, l); !slices.Equal(left, []string{"ptv-b"}) {
		t.Fatalf("links after a name clash: %v", left)
	}
}

// The kernel echoes the new host link (NLM_F_ECHO, Linux ≥ 6.3), so no
// lookup is needed for either ifindex.
func TestKernelCreateVethEcho(t *testing.T) {
	l, _ := newKernelHost(t)
	sb := testutil.NewNetns(t)
	nl := l.(*netlinkLinks)
	br, err := nl.bridgeIndex("br0")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := vnetns.GetFromPath(sb)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	hostIdx, peerIdx, err := nl.createVeth(veth("ptv-e", sb, "10.70.0.2"), br, ns)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := nsHandle(t, sb).LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if peerIdx != peer.Attrs().Index || hostIdx != peer.Attrs().ParentIndex || hostIdx == 0 {
		t.Errorf("createVeth = %d, %d; the kernel says host %d peer %d", hostIdx, peerIdx, peer.Attrs().ParentIndex, peer.Attrs().Index)
	}
}

// Watch reports drift in the host and in a sandbox; CheckBridge/CheckVeth
// see it; RepairVeth puts it back in place, or makes a lost pair again; a
// namespace with another identity is never entered.
func TestKernelWatchAndRepair(t *testing.T) {
	l, host := newKernelHost(t)
	ns := testutil.NewNetns(t)
	ino, err := netns.Ino(ns)
	if err != nil {
		t.Fatal(err)
	}
	v := veth("ptv-w1", ns, "10.70.0.5")
	v.NetnsIno = ino
	if _, err := l.AddVeth(v); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hostEv, err := l.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	sbEv, err := l.Watch(ctx, ns, ino)
	if err != nil {
		t.Fatal(err)
	}
	expect := func(ch <-chan Event, what string, match func(Event) bool) {
		t.Helper()
		timeout := time.After(2 * time.Second)
		for {
			select {
			case ev := <-ch:
				if match(ev) {
					return
				}
			case <-timeout:
				t.Fatalf("no event for %s", what)
			}
		}
	}
	if _, err := run(t, host, "ip", "link", "set", "ptv-w1", "down"); err != nil {
		t.Fatal(err)
	}
	expect(hostEv, "ptv-w1 down", func(e Event) bool { return e.Kind == LinkChanged && e.Name == "ptv-w1" && !e.Up })
	if _, err := run(t, ns, "ip", "addr", "flush", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	expect(sbEv, "address removed in the sandbox", func(e Event) bool { return e.Kind == AddrDeleted })
	if p := l.CheckVeth(v); len(p) < 2 {
		t.Fatalf("CheckVeth after host end down and address flushed: %v", p)
	}
	_, fixes, err := l.RepairVeth(v)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, f := range fixes {
		kinds[f.Kind] = true
	}
	if !kinds["port"] || !kinds["address"] || !kinds["route"] {
		t.Errorf("repairs: %+v, want the port up, the address and the default route back", fixes)
	}
	if p := l.CheckVeth(v); len(p) > 0 {
		t.Fatalf("after RepairVeth: %v", p)
	}
	if err := ping(t, ns, gw0.Addr().String()); err != nil {
		t.Fatal(err)
	}
	// The pair deleted: made again, same names, address and MAC.
	if _, err := run(t, host, "ip", "link", "del", "ptv-w1"); err != nil {
		t.Fatal(err)
	}
	expect(hostEv, "ptv-w1 deleted", func(e Event) bool { return e.Kind == LinkDeleted && e.Name == "ptv-w1" })
	if _, fixes, err = l.RepairVeth(v); err != nil || len(fixes) != 1 || fixes[0].Kind != "veth" {
		t.Fatalf("RepairVeth of a deleted pair: %+v %v", fixes, err)
	}
	if p := l.CheckVeth(v); len(p) > 0 {
		t.Fatalf("after making the pair again: %v", p)
	}
	// The bridge taken down.
	if _, err := run(t, host, "ip", "link", "set", "br0", "down"); err != nil {
		t.Fatal(err)
	}
	b := Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}, MTU: 1500}
	if p := l.CheckBridge(b); len(p) != 1 || !strings.Contains(p[0], "down") {
		t.Fatalf("CheckBridge of a downed bridge: %v", p)
	}
	if _, err := l.EnsureBridge(b); err != nil {
		t.Fatal(err)
	}
	if p := l.CheckBridge(b); len(p) > 0 {
		t.Fatalf("CheckBridge after EnsureBridge: %v", p)
	}
	// Another identity: nothing is entered.
	other := v
	other.NetnsIno = ino + 1
	if _, err := l.AddVeth(Veth{HostName: "ptv-w2", Bridge: "br0", Iface: Iface{Netns: ns, NetnsIno: ino + 1, IfName: "eth9", Addrs: []Address{{Addr: netip.MustParsePrefix("10.70.0.9/24")}}}}); !errors.Is(err, ErrNetnsGone) {
		t.Fatalf("AddVeth into a namespace with another identity: %v", err)
	}
	if _, _, err := l.RepairVeth(other); !errors.Is(err, ErrNetnsGone) {
		t.Fatalf("RepairVeth with another identity: %v", err)
	}
	if _, err := l.Watch(ctx, ns, ino+1); !errors.Is(err, ErrNetnsGone) {
		t.Fatalf("Watch with another identity: %v", err)
	}
	if out, _ := run(t, ns, "ip", "-o", "link"); strings.Contains(out, "eth9") {
		t.Fatalf("a link was made in the namespace:\n%s", out)
	}
}

// Every watch shares one socket: a namespace without an ID gets one, each
// watch hears only its own namespace (and the host watch only the host),
// two watches of one namespace both hear it, and the socket closes with
// the last watch.
func TestKernelWatchesShareOneSocket(t *testing.T) {
	l, host := newKernelHost(t)
	nl := l.(*netlinkLinks)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	hostEv, err := l.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	aEv, err := l.Watch(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	a2Ev, err := l.Watch(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	bEv, err := l.Watch(ctx, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	nl.hub.mu.Lock()
	keys := len(nl.hub.watchers)
	nl.hub.mu.Unlock()
	if keys != 3 {
		t.Fatalf("%d namespaces in the hub, want 3 (host, a, b)", keys)
	}
	for _, c := range []struct{ ns, name string }{{a, "wa"}, {b, "wb"}, {host, "wh"}} {
		if out, err := run(t, c.ns, "ip", "link", "add", c.name, "type", "veth", "peer", "name", c.name+"p"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if out, err := run(t, c.ns, "ip", "link", "del", c.name); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	// Each watch sees the deletion in its namespace and nothing of the
	// others' (their dummies are named apart).
	heard := func(ch <-chan Event, want string) {
		t.Helper()
		timeout := time.After(2 * time.Second)
		for {
			select {
			case ev := <-ch:
				if ev.Kind == LinkDeleted && ev.Name == want {
					return
				}
				if strings.HasPrefix(ev.Name, "w") && !strings.HasPrefix(ev.Name, want) {
					t.Fatalf("watch of %s heard %s %s", want, ev.Kind, ev.Name)
				}
			case <-timeout:
				t.Fatalf("no deletion of %s heard", want)
			}
		}
	}
	heard(aEv, "wa")
	heard(a2Ev, "wa")
	heard(bEv, "wb")
	heard(hostEv, "wh")
	cancel()
	for _, ch := range []<-chan Event{hostEv, aEv, a2Ev, bEv} {
		for range ch { // closed once the watch ends
		}
	}
	nl.hub.mu.Lock()
	open := nl.hub.file != nil
	nl.hub.mu.Unlock()
	if open {
		t.Error("the watch socket is still open after the last watch ended")
	}
}

// A watch whose reader falls behind loses events for one Overflow queued
// after them, then gets events again, in order.
func TestWatcherOverflow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watcher{out: make(chan Event, 2), ctx: ctx}
	for i := range 5 {
		w.push(Event{Kind: LinkChanged, Index: i})
	}
	got := []Event{<-w.out, <-w.out, <-w.out}
	w.wg.Wait() // the Overflow is queued: events flow again
	w.push(Event{Kind: LinkDeleted, Index: 9})
	got = append(got, <-w.out)
	want := []Event{{Kind: LinkChanged, Index: 0}, {Kind: LinkChanged, Index: 1}, {Kind: Overflow}, {Kind: LinkDeleted, Index: 9}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// Uplinks are the links with a default route, of either family, each
// once, described as ListLinks describes them.
func TestKernelUplinks(t *testing.T) {
	l, host := newKernelHost(t)
	for _, c := range [][]string{
		{"ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0p"},
		{"ip", "link", "add", "up1", "type", "veth", "peer", "name", "up1p"},
		{"ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p"},
		{"ip", "link", "set", "up0", "up"},
		{"ip", "link", "set", "up1", "up"},
		{"ip", "link", "set", "lan0", "up"},
		{"ip", "addr", "add", "198.51.100.2/24", "dev", "up0"},
		{"ip", "addr", "add", "203.0.113.2/24", "dev", "lan0"},
		{"ip", "route", "add", "default", "via", "198.51.100.1", "dev", "up0"},
		{"ip", "-6", "addr", "add", "2001:db8::2/64", "dev", "up1", "nodad"},
		{"ip", "-6", "route", "add", "default", "via", "2001:db8::1", "dev", "up1"},
		{"ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", "up0", "nodad"},
		{"ip", "-6", "route", "add", "default", "via", "2001:db8:1::1", "dev", "up0", "metric", "200"},
	} {
		if out, err := run(t, host, c...); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	ups, err := l.Uplinks()
	if err != nil {
		t.Fatal(err)
	}
	all, err := l.ListLinks()
	if err != nil {
		t.Fatal(err)
	}
	var want []LinkInfo
	for _, li := range all {
		if li.Name == "up0" || li.Name == "up1" {
			want = append(want, li)
		}
	}
	if !slices.EqualFunc(ups, want, sameLink) || len(ups) != 2 {
		t.Fatalf("Uplinks() = %+v, want up0 and up1 as ListLinks has them: %+v", ups, want)
	}
}
