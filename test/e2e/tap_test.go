package e2e

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/testutil/vmstub"
)

// A VM on a bridge network through a tap: a stand-in opens the tap as a
// hypervisor would, with the address and MAC pontoon reserved, and talks
// to a sandbox beside it, to the outside through NAT, and by name; a VM
// that claims another address is dropped by anti-spoofing.
func TestTapForVM(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "app", "--subnet", "10.96.1.0/24")
	h.P("sandbox", "create", "s1", "--network", "app")
	out := h.P("tap", "create", "vm1", "--network", "app", "--owner", "4242", "--group", "4242")
	for _, want := range []string{"Tap:", "ptt-", "MAC:", "Address:", "10.96.1.", "Gateway:", "10.96.1.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("tap create output lacks %q:\n%s", want, out)
		}
	}
	var vms []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("tap", "ls", "--format", "json")), &vms); err != nil || len(vms) != 1 {
		t.Fatalf("tap ls: %v %v", err, vms)
	}
	ep := vms[0].Endpoints[0]
	a4, _ := ep.Addr4()
	mac, _ := net.ParseMAC(ep.MAC)
	if d := h.In(h.NS, "ip", "-d", "link", "show", ep.HostIf); !strings.Contains(d, "tun type tap") || !strings.Contains(d, "user 4242") || !strings.Contains(d, "master ptbr-") {
		t.Errorf("the tap in the kernel:\n%s", d)
	}

	vm, err := vmstub.Open(h.NS, ep.HostIf, mac, a4.Addr, a4.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	s1 := netip.MustParseAddr(h.IP("s1", "app"))
	if err := vm.Ping(s1, 3*time.Second); err != nil {
		t.Errorf("VM → sandbox: %v", err)
	}
	h.MustPing("s1", a4.Addr.Addr().String())
	if err := vm.Ping(netip.MustParseAddr(RouterIP), 3*time.Second); err != nil {
		t.Errorf("VM → outside through NAT: %v", err)
	}
	if out, err := h.lookup("s1", "vm1"); err != nil || !strings.Contains(out, a4.Addr.Addr().String()) {
		t.Errorf("nslookup vm1 from s1: %v\n%s", err, out)
	}
	vm.Close()
	if out, err := h.TryP("doctor"); err != nil {
		t.Errorf("doctor: %v\n%s", err, out)
	}

	// A VM that takes an address it was not given gets nowhere.
	spoofed := netip.MustParsePrefix("10.96.1.200/24")
	bad, err := vmstub.Open(h.NS, ep.HostIf, mac, spoofed, a4.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Ping(s1, 2*time.Second); err == nil {
		t.Error("a VM with a spoofed address reached the sandbox")
	}
	bad.Close()

	// A tap is not a sandbox's to connect, and only on bridges.
	if msg := h.PFail("network", "connect", model.DefaultNetwork, "vm1"); !strings.Contains(msg, "tap") {
		t.Errorf("connect a VM's sandbox: %s", msg)
	}
	h.P("network", "create", "wire", "--driver", "link")
	if msg := h.PFail("tap", "create", "vm2", "--network", "wire"); !strings.Contains(msg, "tap") {
		t.Errorf("tap on a direct link: %s", msg)
	}
	if msg := h.PFail("tap", "rm", "s1"); !strings.Contains(msg, "not a VM") {
		t.Errorf("tap rm of a sandbox: %s", msg)
	}
	h.P("tap", "rm", "vm1")
	if links := h.HostLinks("ptt-"); len(links) != 0 {
		t.Errorf("taps left: %v", links)
	}
}
