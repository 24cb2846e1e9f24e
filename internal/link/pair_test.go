package link

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"pontoon/internal/testutil"
)

// pairOf is a direct link between sandboxes a and b: 10.79.0.1/30 and
// .2/30, and with v6 fd00:79::1/64 and ::2/64.
func pairOf(a, b string, v6 bool) Pair {
	end := func(ns string, last byte) Iface {
		ifc := Iface{Netns: ns, IfName: "eth0", MTU: 1500,
			MAC:   net.HardwareAddr{2, 0x42, 10, 79, 0, last},
			Addrs: []Address{{Addr: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 79, 0, last}), 30)}}}
		if v6 {
			ifc.Addrs = append(ifc.Addrs, Address{Addr: netip.MustParsePrefix("fd00:79::" + string('0'+last) + "/64")})
		}
		return ifc
	}
	return Pair{A: end(a, 1), B: end(b, 2)}
}

func TestKernelPair(t *testing.T) {
	testutil.RequireRoot(t)
	l, host := newKernelHost(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	p := pairOf(a, b, true)
	if err := l.AddPair(p); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, a, "10.79.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := ping6(t, b, "fd00:79::1"); err != nil {
		t.Fatal(err)
	}
	if d := l.CheckPair(p); d != nil {
		t.Fatalf("CheckPair after AddPair: %v", d)
	}
	// Nothing of it is on the host.
	if out, _ := run(t, host, "ip", "-o", "link"); strings.Contains(out, "veth") {
		t.Errorf("the host has a veth:\n%s", out)
	}
	// A third sandbox cannot reuse an end's name while it exists.
	if err := l.AddPair(Pair{A: p.A, B: pairOf(testutil.NewNetns(t), "", false).A}); err == nil {
		t.Error("AddPair over an existing end succeeded")
	}

	// Break it: an address gone on B, then B's end deleted.
	if _, err := run(t, b, "ip", "addr", "del", "10.79.0.2/30", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if d := l.CheckPair(p); len(d) != 1 || !strings.Contains(d[0], "10.79.0.2/30") {
		t.Errorf("CheckPair with an address gone = %v", d)
	}
	if fixed, err := l.RepairPair(p); err != nil || len(fixed) != 1 {
		t.Fatalf("RepairPair = %v, %v", fixed, err)
	}
	if _, err := run(t, a, "ip", "link", "del", "eth0"); err != nil {
		t.Fatal(err)
	}
	if d := l.CheckPair(p); len(d) != 1 || !strings.Contains(d[0], "missing") {
		t.Errorf("CheckPair with the pair gone = %v", d)
	}
	fixed, err := l.RepairPair(p)
	if err != nil || len(fixed) != 1 || !strings.Contains(fixed[0].What, "recreated") {
		t.Fatalf("RepairPair of a deleted pair = %v, %v", fixed, err)
	}
	if err := ping(t, b, "10.79.0.1"); err != nil {
		t.Fatal(err)
	}

	// DeleteIface of one end removes both; again is success.
	if err := l.DeleteIface(p.B.Netns, 0, p.B.IfName); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteIface(p.B.Netns, 0, p.B.IfName); err != nil {
		t.Fatalf("DeleteIface of a missing pair: %v", err)
	}
	for _, ns := range []string{a, b} {
		if out, _ := run(t, ns, "ip", "-o", "link", "show", "eth0"); out != "" && !strings.Contains(out, "does not exist") {
			t.Errorf("eth0 left in %s: %s", ns, out)
		}
	}
}

func TestKernelPairRefusesBadInput(t *testing.T) {
	testutil.RequireRoot(t)
	l, _ := newKernelHost(t)
	a := testutil.NewNetns(t)
	p := pairOf(a, a, false)
	if err := l.AddPair(p); err == nil || !strings.Contains(err.Error(), "two sandboxes") {
		t.Errorf("AddPair in one namespace: %v", err)
	}
	b := testutil.NewNetns(t)
	p = pairOf(a, b, false)
	p.B.Addrs = append(p.B.Addrs, Address{Addr: netip.MustParsePrefix("10.80.0.2/30")})
	if err := l.AddPair(p); err == nil || !strings.Contains(err.Error(), "per family") {
		t.Errorf("AddPair with two IPv4 addresses: %v", err)
	}
	p = pairOf(a, "/nonexistent/netns", false)
	if err := l.AddPair(p); err == nil {
		t.Error("AddPair into a missing namespace succeeded")
	}
	// Nothing was left in a.
	var links []netlink.Link
	if err := testutil.InNetns(t, a, func() (err error) {
		links, err = netlink.LinkList()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, lk := range links {
		if lk.Attrs().Name != "lo" {
			t.Errorf("left behind in the sandbox: %s", lk.Attrs().Name)
		}
	}
}

func BenchmarkAddPair(b *testing.B) {
	testutil.RequireRoot(b)
	var l Interface
	host := testutil.NewNetns(b)
	if err := testutil.InNetns(b, host, func() (err error) {
		l, err = New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	x, y := testutil.NewNetns(b), testutil.NewNetns(b)
	p := pairOf(x, y, false)
	for b.Loop() {
		if err := l.AddPair(p); err != nil {
			b.Fatal(err)
		}
		if err := l.DeleteIface(p.A.Netns, 0, p.A.IfName); err != nil {
			b.Fatal(err)
		}
	}
}
