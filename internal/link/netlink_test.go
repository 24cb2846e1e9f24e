package link

import (
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"pontoon/internal/netns"
	"pontoon/internal/testutil"
)

// kernelHost is a throwaway "host" namespace with a bridge, and the real
// Interface operating inside it.
type kernelHost struct {
	t    *testing.T
	ns   string
	link Interface
}

// inHost runs fn with the real Interface created inside the test host
// namespace. The netlink handle is bound to the namespace it was created in,
// so calls work from any thread; fn runs on the locked thread anyway.
func newKernelHost(t *testing.T) *kernelHost {
	t.Helper()
	h := &kernelHost{t: t, ns: testutil.NewNetns(t)}
	if err := testutil.InNetns(t, h.ns, func() (err error) {
		h.link, err = New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.link.EnsureBridge(Bridge{Name: "br0", Gateway: netip.MustParsePrefix("10.70.0.1/24"), MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	return h
}

func run(t *testing.T, ns string, argv ...string) (string, error) {
	t.Helper()
	var out []byte
	err := testutil.InNetns(t, ns, func() (err error) {
		out, err = exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return err
	})
	return string(out), err
}

func veth(host, ns, ip string) Veth {
	return Veth{HostName: host, Bridge: "br0", MTU: 1500, Netns: ns, PeerName: "eth0",
		MAC:  net.HardwareAddr{2, 0x42, 10, 70, 0, byte(netip.MustParseAddr(ip).As4()[3])},
		Addr: netip.PrefixFrom(netip.MustParseAddr(ip), 24), Gateway: netip.MustParseAddr("10.70.0.1"), DefaultRoute: true}
}

func TestKernelAttachPingDelete(t *testing.T) {
	h := newKernelHost(t)
	// EnsureBridge is idempotent.
	if _, err := h.link.EnsureBridge(Bridge{Name: "br0", Gateway: netip.MustParsePrefix("10.70.0.1/24"), MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	ia, err := h.link.AddVeth(veth("ptv-a", a, "10.70.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.link.AddVeth(veth("ptv-b", b, "10.70.0.3")); err != nil {
		t.Fatal(err)
	}
	out, _ := run(t, a, "ip", "-o", "addr", "show", "eth0")
	if !strings.Contains(out, "10.70.0.2/24") {
		t.Fatalf("eth0 in a: %s", out)
	}
	out, _ = run(t, a, "ip", "-o", "link", "show", "eth0")
	if !strings.Contains(out, "02:42:0a:46:00:02") || !strings.Contains(out, "mtu 1500") {
		t.Fatalf("eth0 link in a: %s", out)
	}
	// sysfs shows the namespace of whoever mounted it, so ask ip: "eth0@ifN".
	if !strings.Contains(out, "eth0@if"+strconv.Itoa(ia)+":") {
		t.Fatalf("AddVeth returned host index %d, the peer says: %s", ia, out)
	}
	if out, _ := run(t, a, "ip", "route"); !strings.Contains(out, "default via 10.70.0.1 dev eth0") {
		t.Fatalf("routes in a: %s", out)
	}
	if out, err := run(t, a, "ping", "-c1", "-W1", "10.70.0.3"); err != nil {
		t.Fatalf("a → b: %v\n%s", err, out)
	}
	if probs := h.link.CheckVeth(veth("ptv-a", a, "10.70.0.2")); len(probs) != 0 {
		t.Fatalf("CheckVeth on a good veth: %v", probs)
	}
	if err := h.link.DisableVeth("ptv-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, a, "ping", "-c1", "-W1", "10.70.0.3"); err == nil {
		t.Fatal("b still answers after DisableVeth")
	}
	if probs := h.link.CheckVeth(veth("ptv-b", b, "10.70.0.3")); len(probs) == 0 {
		t.Fatal("CheckVeth found no drift on a disabled veth")
	}
	if err := h.link.DeleteVeths([]string{"ptv-a", "ptv-b", "ptv-missing"}); err != nil {
		t.Fatal(err)
	}
	if ls, _ := h.link.ListLinks("ptv-"); len(ls) != 0 {
		t.Fatalf("left: %+v", ls)
	}
	if out, _ := run(t, a, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Fatalf("peer survived: %s", out)
	}
	if err := h.link.DeleteBridge("br0"); err != nil {
		t.Fatal(err)
	}
	if err := h.link.DeleteBridge("br0"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestKernelIsolatedPorts(t *testing.T) {
	h := newKernelHost(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	va, vb := veth("ptv-a", a, "10.70.0.2"), veth("ptv-b", b, "10.70.0.3")
	va.Isolated, vb.Isolated = true, true
	for _, v := range []Veth{va, vb} {
		if _, err := h.link.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run(t, a, "ping", "-c1", "-W1", "10.70.0.3"); err == nil {
		t.Fatal("isolated ports reach each other")
	}
	if out, err := run(t, a, "ping", "-c1", "-W1", "10.70.0.1"); err != nil {
		t.Fatalf("isolated port cannot reach the gateway: %v\n%s", err, out)
	}
}

// A sandbox on two bridges answers on each through the interface the
// request came in on (source-based policy routing).
func TestKernelPolicyRouting(t *testing.T) {
	h := newKernelHost(t)
	if _, err := h.link.EnsureBridge(Bridge{Name: "br1", Gateway: netip.MustParsePrefix("10.71.0.1/24"), MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	dual, c0, c1 := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
	if _, err := h.link.AddVeth(veth("ptv-d0", dual, "10.70.0.10")); err != nil {
		t.Fatal(err)
	}
	second := Veth{HostName: "ptv-d1", Bridge: "br1", MTU: 1500, Netns: dual, PeerName: "eth1",
		MAC: net.HardwareAddr{2, 0x42, 10, 71, 0, 10}, Addr: netip.MustParsePrefix("10.71.0.10/24"),
		Gateway: netip.MustParseAddr("10.71.0.1"), Table: 101}
	if _, err := h.link.AddVeth(second); err != nil {
		t.Fatal(err)
	}
	if _, err := h.link.AddVeth(veth("ptv-c0", c0, "10.70.0.20")); err != nil {
		t.Fatal(err)
	}
	c1v := Veth{HostName: "ptv-c1", Bridge: "br1", MTU: 1500, Netns: c1, PeerName: "eth0",
		MAC: net.HardwareAddr{2, 0x42, 10, 71, 0, 20}, Addr: netip.MustParsePrefix("10.71.0.20/24"),
		Gateway: netip.MustParseAddr("10.71.0.1"), DefaultRoute: true}
	if _, err := h.link.AddVeth(c1v); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ns, to string }{{c0, "10.70.0.10"}, {c1, "10.71.0.10"}} {
		if out, err := run(t, c.ns, "ping", "-c1", "-W1", c.to); err != nil {
			t.Fatalf("ping %s: %v\n%s", c.to, err, out)
		}
	}
	if out, _ := run(t, dual, "ip", "rule"); !strings.Contains(out, "from 10.71.0.10 lookup 101") {
		t.Fatalf("rules: %s", out)
	}
	if err := h.link.DeleteVeths([]string{"ptv-d1"}); err != nil {
		t.Fatal(err)
	}
	if err := h.link.DeleteRule(dual, netip.MustParseAddr("10.71.0.10"), 101); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, dual, "ip", "rule"); strings.Contains(out, "lookup 101") {
		t.Fatalf("rule left: %s", out)
	}
}

// A failed AddVeth leaves no link behind.
func TestKernelAddVethFailureLeavesNothing(t *testing.T) {
	h := newKernelHost(t)
	a := testutil.NewNetns(t)
	v := veth("ptv-x", a, "10.70.0.2")
	v.Bridge = "nosuchbr"
	if _, err := h.link.AddVeth(v); err == nil {
		t.Fatal("AddVeth onto a missing bridge succeeded")
	}
	// The peer name is taken inside the sandbox: creation fails.
	if _, err := run(t, a, "ip", "link", "add", "eth0", "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.link.AddVeth(veth("ptv-y", a, "10.70.0.3")); err == nil {
		t.Fatal("AddVeth over an existing eth0 succeeded")
	}
	if ls, _ := h.link.ListLinks("ptv-"); len(ls) != 0 {
		t.Fatalf("links left after failures: %+v", ls)
	}
}

func TestKernelNetns(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	p := dir + "/sb"
	if err := netns.Create(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Delete(p) })
	if !netns.IsPinned(p) {
		t.Fatal("not pinned")
	}
	if err := netns.Create(p); err == nil {
		t.Fatal("second Create on the same pin succeeded")
	}
	out, err := run(t, p, "ip", "-o", "link", "show", "lo")
	if err != nil || !strings.Contains(out, "UP") {
		t.Fatalf("lo in a new namespace: %v %s", err, out)
	}
	same, err := netns.Same(p, p)
	if err != nil || !same {
		t.Fatalf("Same(p, p) = %v %v", same, err)
	}
	if same, _ := netns.Same(p, "/proc/self/ns/net"); same {
		t.Fatal("a new namespace is the test's own")
	}
	var inside string
	if err := netns.Do(p, func() error {
		b, err := exec.Command("readlink", "/proc/thread-self/ns/net").Output()
		inside = string(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if own, _ := exec.Command("readlink", "/proc/self/ns/net").Output(); string(own) == inside {
		t.Fatal("Do ran in the caller's namespace")
	}
	pins, _ := netns.Pins(dir)
	if len(pins) != 1 {
		t.Fatalf("pins %v", pins)
	}
	if err := netns.Delete(p); err != nil {
		t.Fatal(err)
	}
	if err := netns.Delete(p); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if netns.IsPinned(p) {
		t.Fatal("still pinned")
	}
}
