package vmstub_test

import (
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"pontoon/internal/link"
	"pontoon/internal/testutil"
	"pontoon/internal/testutil/vmstub"
)

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

// A VM on a tap and a sandbox on a veth, on one bridge, ping each other;
// the VM pings the host beyond its subnet through the gateway.
func TestVMStubOnTap(t *testing.T) {
	host := testutil.NewNetns(t)
	var l link.Interface
	if err := testutil.InNetns(t, host, func() (err error) {
		l, err = link.New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	gw := netip.MustParsePrefix("10.77.0.1/24")
	if _, err := l.EnsureBridge(link.Bridge{Name: "br0", Gateways: []netip.Prefix{gw}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddTap(link.Tap{Name: "ptt-vm", Bridge: "br0", MTU: 1500, Owner: -1, Group: -1}); err != nil {
		t.Fatal(err)
	}
	vmMAC := net.HardwareAddr{0x02, 0x42, 10, 77, 0, 10}
	vm, err := vmstub.Open(host, "ptt-vm", vmMAC, netip.MustParsePrefix("10.77.0.10/24"), gw.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := vm.Close(); err != nil {
			t.Error(err)
		}
	})
	sb := testutil.NewNetns(t)
	sbAddr := netip.MustParseAddr("10.77.0.2")
	sbMAC := net.HardwareAddr{0x02, 0x42, 10, 77, 0, 2}
	if _, err := l.AddVeth(link.Veth{HostName: "ptv-sb", Bridge: "br0", Iface: link.Iface{MTU: 1500, Netns: sb, IfName: "eth0", MAC: sbMAC, Addrs: []link.Address{{Addr: netip.PrefixFrom(sbAddr, 24), Gateway: gw.Addr()}}, DefaultRoute: true}}); err != nil {
		t.Fatal(err)
	}

	// One reply is enough; requests 0.2 s apart for at most 2 s, so that
	// an answer late on a loaded machine (seen once in 40 runs with -race
	// beside other tests: -c1 -W1 timed out) is no failure.
	if out, err := run(t, sb, "ping", "-c1", "-i0.2", "-w2", "10.77.0.10"); err != nil {
		t.Fatalf("ping the VM from the sandbox: %v\n%s", err, out)
	}
	if err := vm.Ping(sbAddr, 2*time.Second); err != nil {
		t.Errorf("VM pings the sandbox: %v", err)
	}
	// Beyond the subnet: through the gateway's MAC, to an address of the
	// (throwaway) host namespace.
	if out, err := run(t, host, "ip", "addr", "add", "198.51.100.1/32", "dev", "lo"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := vm.Ping(netip.MustParseAddr("198.51.100.1"), 2*time.Second); err != nil {
		t.Errorf("VM pings the host through its gateway: %v", err)
	}
	// Nobody at .99: the ping fails at ARP, within its timeout.
	start := time.Now()
	if err := vm.Ping(netip.MustParseAddr("10.77.0.99"), 500*time.Millisecond); err == nil {
		t.Error("VM pinged an address no one has")
	} else if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a ping with a 0.5 s timeout took %s", d)
	}

	seen, dropped := vm.Seen()
	has := func(k vmstub.Kind, from netip.Addr, mac net.HardwareAddr, answered bool) bool {
		return slices.ContainsFunc(seen, func(s vmstub.Seen) bool {
			return s.Kind == k && s.From == from && s.FromMAC.String() == mac.String() && s.Answered == answered
		})
	}
	if !has(vmstub.ARPRequest, sbAddr, sbMAC, true) {
		t.Errorf("the stub did not record answering the sandbox's ARP request: %+v", seen)
	}
	if !has(vmstub.EchoRequest, sbAddr, sbMAC, true) {
		t.Errorf("the stub did not record answering the sandbox's echo request: %+v", seen)
	}
	// The sandbox's MAC was learned from its ARP request, as a real
	// stack does: the VM's ping needed no ARP of its own.
	if !has(vmstub.EchoReply, sbAddr, sbMAC, false) {
		t.Errorf("the stub did not record the sandbox's echo reply: %+v", seen)
	}
	brMAC := net.HardwareAddr{0x02, 0x42, 10, 77, 0, 1} // EnsureBridge's, from the gateway
	if !has(vmstub.ARPReply, gw.Addr(), brMAC, false) || !has(vmstub.EchoReply, netip.MustParseAddr("198.51.100.1"), brMAC, false) {
		t.Errorf("the stub did not record the gateway's ARP reply and the host's echo reply through it: %+v", seen)
	}
	if dropped != 0 {
		t.Errorf("%d frames beyond the record's cap", dropped)
	}
}

// Bad input and a missing tap are errors, and Open creates no tap.
func TestVMStubOpenErrors(t *testing.T) {
	host := testutil.NewNetns(t)
	mac := net.HardwareAddr{2, 0x42, 10, 77, 0, 10}
	addr := netip.MustParsePrefix("10.77.0.10/24")
	if _, err := vmstub.Open(host, "nosuchtap", mac, addr, netip.Addr{}); err == nil {
		t.Error("Open of a missing tap succeeded")
	}
	if out, err := run(t, host, "ip", "-o", "link", "show", "nosuchtap"); err == nil {
		t.Errorf("Open of a missing tap left a link: %s", out)
	}
	if _, err := vmstub.Open(host, "x", net.HardwareAddr{1}, addr, netip.Addr{}); err == nil {
		t.Error("Open with a bad MAC succeeded")
	}
	if _, err := vmstub.Open(host, "x", mac, netip.MustParsePrefix("fd00::1/64"), netip.Addr{}); err == nil {
		t.Error("Open with an IPv6 address succeeded")
	}
}
