package ovs

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"pontoon/internal/ovs/ovstest"
	"pontoon/internal/testutil"
)

// Kernel tests: a throwaway "host" namespace runs a private OVS
// (ovstest.Start); sandboxes are further throwaway namespaces joined to the
// host by veth pairs whose host ends become OVS ports. The test sets up
// the kernel side with netlink itself (in pontoon that is internal/link's
// job), so what is tested here is only what OVSDB and ovs-vswitchd do.

const br = "brovs0"

var gw = netip.MustParsePrefix("10.80.0.1/24")

type host struct {
	ns  string
	ovs *ovstest.OVS
	c   *Client
	h   *netlink.Handle
}

// newHost starts a private OVS in a new namespace and dials it.
func newHost(t testing.TB) *host {
	t.Helper()
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t)
	o := ovstest.Start(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, o.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &host{ns: ns, ovs: o, c: c, h: handleAt(t, ns)}
}

func handleAt(t testing.TB, ns string) *netlink.Handle {
	t.Helper()
	nsh, err := vnetns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// bridgeUp makes the bridge, checks its internal interface is a tap device
// with the ifindex OVSDB reported, and gives it the gateway address.
func (h *host) bridgeUp(t testing.TB) {
	t.Helper()
	ifindex, err := h.c.EnsureBridge(context.Background(), Bridge{Name: br})
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.h.LinkByIndex(ifindex)
	if err != nil {
		t.Fatalf("ifindex %d of %s not in the host namespace: %v", ifindex, br, err)
	}
	if l.Attrs().Name != br || l.Type() != "tuntap" {
		t.Fatalf("ifindex %d is %s of type %s, want %s of type tuntap", ifindex, l.Attrs().Name, l.Type(), br)
	}
	if err := h.h.AddrAdd(l, &netlink.Addr{IPNet: ipnet(gw)}); err != nil {
		t.Fatal(err)
	}
	if err := h.h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// sandbox makes a namespace with eth0 at addr/24 (default route via the
// gateway) whose veth peer hostName is in the host namespace, up, not yet
// an OVS port.
func (h *host) sandbox(t testing.TB, hostName, addr string) string {
	t.Helper()
	ns := testutil.NewNetns(t)
	nsh, err := vnetns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName, MTU: 1500}, PeerName: "eth0", PeerNamespace: netlink.NsFd(nsh)}
	if err := h.h.LinkAdd(v); err != nil {
		t.Fatalf("veth %s: %v", hostName, err)
	}
	if err := h.h.LinkSetUp(v); err != nil {
		t.Fatal(err)
	}
	sh := handleAt(t, ns)
	eth0, err := sh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.PrefixFrom(netip.MustParseAddr(addr), 24)
	if err := sh.AddrAdd(eth0, &netlink.Addr{IPNet: ipnet(a)}); err != nil {
		t.Fatal(err)
	}
	if err := sh.LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}
	if err := sh.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.Addr().AsSlice()}); err != nil {
		t.Fatal(err)
	}
	return ns
}

func ping(t testing.TB, from, to string) error {
	t.Helper()
	var out []byte
	err := testutil.InNetns(t, from, func() (err error) {
		out, err = exec.Command("ping", "-c1", "-i0.2", "-w2", to).CombinedOutput()
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s: %w\n%s", to, err, out)
	}
	return nil
}

// tcpTransfer sends n random bytes from namespace from to addr in
// namespace to over TCP and checks the receiver got exactly those bytes.
func tcpTransfer(t testing.TB, from, to, addr string, n int) {
	t.Helper()
	if err := tryTCP(t, from, to, addr, n, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// tryTCP sends n random bytes from namespace from to addr:5001 in
// namespace to, giving up after timeout, and compares what arrived.
func tryTCP(t testing.TB, from, to, addr string, n int, timeout time.Duration) error {
	t.Helper()
	var ln net.Listener
	if err := testutil.InNetns(t, to, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, "5001"))
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	deadline := time.Now().Add(timeout)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		b, _ := io.ReadAll(c)
		got <- b
	}()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	var conn net.Conn
	if err := testutil.InNetns(t, from, func() (err error) {
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(addr, "5001"), timeout)
		return err
	}); err != nil {
		return fmt.Errorf("TCP connect: %w", err)
	}
	_ = conn.SetDeadline(deadline)
	_, werr := conn.Write(data)
	conn.Close()
	b := <-got
	if werr != nil || !bytes.Equal(b, data) {
		return fmt.Errorf("TCP: receiver got %d bytes, want the %d sent (write: %v)", len(b), n, werr)
	}
	return nil
}

func TestTraffic(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	h.bridgeUp(t)
	sb1 := h.sandbox(t, "vh1", "10.80.0.11")
	sb2 := h.sandbox(t, "vh2", "10.80.0.12")
	for i, name := range []string{"vh1", "vh2"} {
		p := Port{Name: name, Bridge: br, ExternalIDs: map[string]string{"pontoon-endpoint": fmt.Sprintf("ep%d", i+1)}}
		ofport, err := h.c.AddPort(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if ofport <= 0 {
			t.Fatalf("%s: ofport %d", name, ofport)
		}
		if got, _ := h.ovs.Vsctl(ctx, "get", "Interface", name, "ofport"); got != fmt.Sprint(ofport) {
			t.Errorf("ovs-vsctl: %s has ofport %s, AddPort returned %d", name, got, ofport)
		}
		if diffs, err := h.c.CheckPort(ctx, p); err != nil || diffs != nil {
			t.Errorf("CheckPort %s: %q, %v", name, diffs, err)
		}
	}
	if diffs, err := h.c.CheckBridge(ctx, Bridge{Name: br}); err != nil || diffs != nil {
		t.Errorf("CheckBridge: %q, %v", diffs, err)
	}
	if out, _ := h.ovs.Vsctl(ctx, "list-ports", br); out != "vh1\nvh2" {
		t.Errorf("ovs-vsctl list-ports %s: %q", br, out)
	}

	if err := ping(t, sb1, "10.80.0.12"); err != nil {
		t.Error("sandbox to sandbox:", err)
	}
	if err := ping(t, sb2, gw.Addr().String()); err != nil {
		t.Error("sandbox to gateway:", err)
	}
	// TCP is what userspace-tso-enable fixes: without it the veth hands
	// vswitchd 64 KB TSO frames it cannot pass on, and the transfer stalls.
	tcpTransfer(t, sb1, sb2, "10.80.0.12", 512<<10)
	tcpTransfer(t, sb2, h.ns, gw.Addr().String(), 512<<10)

	ports, err := h.c.Ports(ctx, br)
	if err != nil {
		t.Fatal(err)
	}
	want := []Port{
		{Name: "vh1", Bridge: br, ExternalIDs: map[string]string{"pontoon-endpoint": "ep1"}},
		{Name: "vh2", Bridge: br, ExternalIDs: map[string]string{"pontoon-endpoint": "ep2"}},
	}
	if d := cmp.Diff(want, ports); d != "" {
		t.Errorf("Ports (-want +got):\n%s", d)
	}

	if err := h.c.DeletePorts(ctx, "vh1", "vh2", "not-there"); err != nil {
		t.Fatal(err)
	}
	if ports, err := h.c.Ports(ctx, br); err != nil || len(ports) != 0 {
		t.Errorf("ports after DeletePorts: %v, %v", ports, err)
	}
	if err := ping(t, sb1, "10.80.0.12"); err == nil {
		t.Error("sandboxes still reach each other after their ports were deleted")
	}
	if err := h.c.DeleteBridge(ctx, br); err != nil {
		t.Fatal(err)
	}
	if err := h.c.DeleteBridge(ctx, br); err != nil {
		t.Errorf("deleting a missing bridge: %v", err)
	}
	h.checkEmpty(t)
}

// checkEmpty checks that OVSDB has no bridge, port or interface left and
// the host namespace no tap device of the bridge.
func (h *host) checkEmpty(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	for _, table := range []string{"Bridge", "Port", "Interface"} {
		if out, err := h.ovs.Vsctl(ctx, "--columns=name", "list", table); err != nil || out != "" {
			t.Errorf("ovs-vsctl list %s: %q, %v", table, out, err)
		}
	}
	if l, err := h.h.LinkByName(br); err == nil {
		t.Errorf("%s still in the host namespace: %+v", br, l.Attrs())
	}
	if diffs, _ := h.c.CheckBridge(ctx, Bridge{Name: br}); len(diffs) != 1 || !strings.Contains(diffs[0], "does not exist") {
		t.Errorf("CheckBridge after delete: %q", diffs)
	}
}

func TestVLAN(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	h.bridgeUp(t)
	a := h.sandbox(t, "va", "10.80.0.21")
	h.sandbox(t, "vb", "10.80.0.22")
	h.sandbox(t, "vc", "10.80.0.23")
	for name, tag := range map[string]int{"va": 10, "vb": 20, "vc": 10} {
		if _, err := h.c.AddPort(ctx, Port{Name: name, Bridge: br, VLAN: tag}); err != nil {
			t.Fatal(err)
		}
		if got, _ := h.ovs.Vsctl(ctx, "get", "Port", name, "tag"); got != fmt.Sprint(tag) {
			t.Errorf("ovs-vsctl: port %s has tag %s, want %d", name, got, tag)
		}
	}
	if err := ping(t, a, "10.80.0.23"); err != nil {
		t.Error("same VLAN:", err)
	}
	if err := ping(t, a, "10.80.0.22"); err == nil {
		t.Error("VLAN 10 reached VLAN 20")
	}
	if diffs, _ := h.c.CheckPort(ctx, Port{Name: "va", Bridge: br, VLAN: 20}); len(diffs) != 1 || !strings.Contains(diffs[0], "tag 10, want 20") {
		t.Errorf("CheckPort with the wrong tag: %q", diffs)
	}
	if err := h.c.DeletePorts(ctx, "va", "vb", "vc"); err != nil {
		t.Fatal(err)
	}
	if err := h.c.DeleteBridge(ctx, br); err != nil {
		t.Fatal(err)
	}
	h.checkEmpty(t)
}

// TestAddPortErrors: bad input gets a clear error and leaves nothing.
func TestAddPortErrors(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	h.bridgeUp(t)
	h.sandbox(t, "vx", "10.80.0.31")
	if _, err := h.c.AddPort(ctx, Port{Name: "vx", Bridge: br}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    Port
		want string
	}{
		{Port{Name: "no-such-if", Bridge: br}, "No such device"},
		{Port{Name: "vy", Bridge: "nobr"}, "bridge nobr does not exist"},
		{Port{Name: "vx", Bridge: br}, "already exists"},
		{Port{Name: "vz", Bridge: br, VLAN: 4095}, "out of range"},
		{Port{Name: "a-name-too-long-for-linux", Bridge: br}, "1 to 15 characters"},
	} {
		_, err := h.c.AddPort(ctx, tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddPort(%+v): %v, want an error with %q", tc.p, err, tc.want)
		}
		if tc.want == "already exists" && !errors.Is(err, ErrExists) {
			t.Errorf("AddPort of an existing port: %v is not ErrExists", err)
		}
	}
	if out, _ := h.ovs.Vsctl(ctx, "list-ports", br); out != "vx" {
		t.Errorf("ports left after the failed adds: %q, want only vx", out)
	}
}

// TestDialError: the error says what was tried and how to start OVS.
func TestDialError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sock := t.TempDir() + "/db.sock"
	_, err := Dial(ctx, "unix:"+sock)
	if err == nil {
		t.Fatal("Dial of a missing socket succeeded")
	}
	for _, want := range []string{sock, "ovsdb-server", "--remote=punix:" + sock, "ovs-vswitchd unix:" + sock} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Dial error lacks %q:\n%v", want, err)
		}
	}
}

// TestTCPNeedsUserspaceTSO shows why Dial sets
// other_config:userspace-tso-enable=true: without it, ping works through a
// netdev bridge but TCP between veth ports does not. Should an OVS version
// make this test fail, the flag may no longer be needed.
func TestTCPNeedsUserspaceTSO(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t)
	o := ovstest.Start(t, ns)
	ctx := context.Background()
	c, err := dial(ctx, o.Endpoint, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	h := &host{ns: ns, ovs: o, c: c, h: handleAt(t, ns)}
	h.bridgeUp(t)
	sb1 := h.sandbox(t, "vt1", "10.80.0.41")
	sb2 := h.sandbox(t, "vt2", "10.80.0.42")
	for _, n := range []string{"vt1", "vt2"} {
		if _, err := c.AddPort(ctx, Port{Name: n, Bridge: br}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ping(t, sb1, "10.80.0.42"); err != nil {
		t.Fatal(err)
	}
	err = tryTCP(t, sb1, sb2, "10.80.0.42", 512<<10, 3*time.Second)
	t.Logf("TCP without userspace TSO: %v", err)
	if err == nil {
		t.Error("TCP worked without userspace-tso-enable")
	}
}

// TestBridgeMTU: without a request the internal interface follows the
// smallest MTU of the bridge's ports; mtu_request pins it, and a second
// EnsureBridge changes it in place.
func TestBridgeMTU(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	h.bridgeUp(t)
	mtu := func() int {
		t.Helper()
		l, err := h.h.LinkByName(br)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().MTU
	}
	if got := mtu(); got != 1500 {
		t.Errorf("MTU of a bridge without ports: %d, want 1500", got)
	}
	h.sandbox(t, "vm1", "10.80.0.51")
	v, err := h.h.LinkByName("vm1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.h.LinkSetMTU(v, 1400); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.AddPort(ctx, Port{Name: "vm1", Bridge: br}); err != nil {
		t.Fatal(err)
	}
	// vswitchd applies the port's MTU to the internal interface after it
	// attached the port: wait for it, bounded.
	for i := 0; i < 100 && mtu() != 1400; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if got := mtu(); got != 1400 {
		t.Errorf("MTU with a 1400 port: %d, want 1400 (the smallest port's)", got)
	}
	for _, want := range []int{9000, 1280} {
		ifindex, err := h.c.EnsureBridge(ctx, Bridge{Name: br, MTU: want})
		if err != nil {
			t.Fatal(err)
		}
		if l, err := h.h.LinkByIndex(ifindex); err != nil || l.Attrs().MTU != want {
			t.Errorf("EnsureBridge MTU %d: link %v, %v", want, l, err)
		}
		if diffs, err := h.c.CheckBridge(ctx, Bridge{Name: br, MTU: want}); err != nil || diffs != nil {
			t.Errorf("CheckBridge MTU %d: %q, %v", want, diffs, err)
		}
	}
	if diffs, _ := h.c.CheckBridge(ctx, Bridge{Name: br}); len(diffs) != 1 || !strings.Contains(diffs[0], "mtu_request 1280, want none") {
		t.Errorf("CheckBridge without the MTU request: %q", diffs)
	}
}

// A bridge with a MAC keeps it as ports come: vswitchd would otherwise
// give the internal interface the lowest of its ports' MACs.
func TestBridgeMAC(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	mac := net.HardwareAddr{0x02, 0x42, 0x0a, 0x50, 0x00, 0x01}
	ifindex, err := h.c.EnsureBridge(ctx, Bridge{Name: br, MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	h.sandbox(t, "vm1", "10.80.0.51")
	if _, err := h.c.AddPort(ctx, Port{Name: "vm1", Bridge: br}); err != nil {
		t.Fatal(err)
	}
	var got net.HardwareAddr
	for i := 0; i < 100; i++ {
		l, err := h.h.LinkByIndex(ifindex)
		if err != nil {
			t.Fatal(err)
		}
		if got = l.Attrs().HardwareAddr; got.String() == mac.String() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got.String() != mac.String() {
		t.Errorf("internal interface MAC %s with a port, want %s", got, mac)
	}
	// Again is no change.
	if _, err := h.c.EnsureBridge(ctx, Bridge{Name: br, MAC: mac}); err != nil {
		t.Fatal(err)
	}
}
