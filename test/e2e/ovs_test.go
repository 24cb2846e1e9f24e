package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/ovs/ovstest"
	"pontoon/internal/testutil/vmstub"
)

// The ovs driver: an Open vSwitch bridge (userspace datapath, started by
// the test inside the throwaway host namespace) with the same endpoint
// semantics as a Linux bridge: traffic between members, TCP included, NAT
// to the outside, a published port, names, isolation from other networks,
// VLAN access ports, and nothing left in OVSDB after removal.
func TestOVSDriver(t *testing.T) {
	h := NewHost(t)
	if msg := h.PFail("network", "create", "sw", "--driver", "ovs"); !strings.Contains(msg, "--ovsdb") {
		t.Errorf("ovs network without OVS: %s", msg)
	}
	o := ovstest.Start(t, h.NS)
	h.Stop()
	h.Start("--ovsdb", o.Endpoint)
	vsctl := func(args ...string) string {
		t.Helper()
		out, err := o.Vsctl(context.Background(), args...)
		if err != nil {
			t.Fatalf("ovs-vsctl %v: %v\n%s", args, err, out)
		}
		return out
	}

	if msg := h.PFail("network", "create", "nope", "--driver", "ovs", "--icc=false"); !strings.Contains(msg, "icc") {
		t.Errorf("--icc=false on ovs: %s", msg)
	}
	h.P("network", "create", "sw", "--driver", "ovs", "--subnet", "10.93.0.0/24")
	br := h.P("network", "ls", "--format", "json")
	if !strings.Contains(br, `"driver": "ovs"`) && !strings.Contains(br, `"driver":"ovs"`) {
		t.Errorf("network ls: %s", br)
	}
	h.P("sandbox", "create", "a", "--network", "sw")
	h.P("sandbox", "create", "b", "--network", "sw", "-p", "8093:8093")
	a, b := h.IP("a", "sw"), h.IP("b", "sw")
	if ports := vsctl("list-ports", bridgeOf(t, h, "sw")); strings.Count(ports, "ptv-") != 2 {
		t.Errorf("OVS ports: %q", ports)
	}
	h.MustPing("a", b)
	// TCP between members (the userspace datapath needs userspace TSO).
	srv := ServeTCP(t, h.SandboxNS("b"), b+":8093")
	if line, err := DialFrom(t, h.SandboxNS("a"), srv.Addr); err != nil || !strings.Contains(line, "hello") {
		t.Fatalf("TCP a → b: %q, %v", line, err)
	}
	// To the outside through NAT: the router sees the host's address.
	out := ServeTCP(t, h.Outside, RouterIP+":7093")
	if _, err := DialFrom(t, h.SandboxNS("a"), out.Addr); err != nil {
		t.Fatal(err)
	}
	if p := out.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], HostUplinkIP+":") {
		t.Errorf("the outside saw %v, want the host's %s", p, HostUplinkIP)
	}
	// A published port, from the outside.
	if line, err := DialFrom(t, h.Outside, HostUplinkIP+":8093"); err != nil || !strings.Contains(line, "hello") {
		t.Errorf("published port from the outside: %q, %v", line, err)
	}
	// Names on the gateway.
	if res, err := h.lookup("a", "b"); err != nil || !strings.Contains(res, b) {
		t.Errorf("nslookup b from a: %v\n%s", err, res)
	}
	// Isolation from a Linux bridge network.
	h.P("sandbox", "create", "other")
	h.MustNotPing("other", a)
	// VLAN access ports: only the same tag reaches.
	h.P("sandbox", "create", "v10", "--network", "sw", "--vlan", "10")
	h.P("sandbox", "create", "v20", "--network", "sw", "--vlan", "20")
	h.P("sandbox", "create", "w10", "--network", "sw", "--vlan", "10")
	h.MustPing("v10", h.IP("w10", "sw"))
	h.MustNotPing("v10", h.IP("v20", "sw"))

	if out, err := h.TryP("doctor"); err != nil {
		t.Errorf("doctor: %v\n%s", err, out)
	}
	// A VM's tap on the OVS bridge reaches a sandbox.
	h.P("tap", "create", "vm1", "--network", "sw")
	var vms []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("tap", "ls", "--format", "json")), &vms); err != nil || len(vms) != 1 {
		t.Fatalf("tap ls: %v %v", err, vms)
	}
	ep := vms[0].Endpoints[0]
	a4, _ := ep.Addr4()
	mac, _ := net.ParseMAC(ep.MAC)
	vm, err := vmstub.Open(h.NS, ep.HostIf, mac, a4.Addr, a4.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Ping(netip.MustParseAddr(a), 3*time.Second); err != nil {
		t.Errorf("VM on OVS → sandbox: %v", err)
	}
	vm.Close()
	h.P("tap", "rm", "vm1")

	// Removal leaves nothing in OVSDB or the kernel.
	h.P("sandbox", "rm", "a", "b", "v10", "v20", "w10")
	// The reaper deletes detached endpoints' ports and veths in the
	// background, in batches.
	if ports, ok := within(5*time.Second, func() (string, bool) {
		p := vsctl("list-ports", bridgeOf(t, h, "sw"))
		return p, strings.TrimSpace(p) == ""
	}); !ok {
		t.Errorf("ports left: %q", ports)
	}
	h.P("network", "rm", "sw")
	if brs := vsctl("list-br"); strings.TrimSpace(brs) != "" {
		t.Errorf("bridges left: %q", brs)
	}
	if links := h.HostLinks("ptv-"); len(links) != 1 { // other's
		t.Errorf("veths left: %v", links)
	}

	// What OVS holds and the state no longer explains (a state directory
	// removed by hand) goes at the next start: the bridge and its ports.
	h.P("network", "create", "sw2", "--driver", "ovs", "--subnet", "10.93.9.0/24")
	h.P("sandbox", "create", "g", "--network", "sw2")
	h.Stop()
	if err := os.Remove(filepath.Join(h.Root, "pontoon.db")); err != nil {
		t.Fatal(err)
	}
	h.Start("--ovsdb", o.Endpoint)
	if brs := vsctl("list-br"); strings.TrimSpace(brs) != "" {
		t.Errorf("OVS bridges left after their state went: %q", brs)
	}
}
