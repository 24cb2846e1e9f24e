package link

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The Fake's macvlans, VLANs and shims: the kernel's refusals, Dump,
// ListLinks, check and repair.
func TestFakeMacvlan(t *testing.T) {
	f := NewFake()
	f.AddHostLink(LinkInfo{Name: "lan0", MTU: 1500, Up: true})
	if err := f.AddMacvlan(member("/run/ns/a", "", 10)); err != nil {
		t.Fatal(err)
	}
	vlan, created, err := f.EnsureVLAN("lan0", 50)
	if err != nil || vlan != "lan0.50" || !created {
		t.Fatalf("EnsureVLAN = %s %v %v", vlan, created, err)
	}
	if _, created, _ := f.EnsureVLAN("lan0", 50); created {
		t.Error("EnsureVLAN again created it")
	}
	b := member("/run/ns/b", "private", 11)
	b.Parent = vlan
	if err := f.AddMacvlan(b); err != nil {
		t.Fatal(err)
	}
	s := Shim{Name: ShimPrefix + "lan0", Parent: "lan0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.95.0.2/32")}, Routes: []netip.Prefix{netip.MustParsePrefix("10.95.0.8/29")}}
	if err := f.EnsureShim(s); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"macvlan eth0 netns /run/ns/a parent lan0 mode bridge up addr 10.95.0.10/24 mac 02:42:0a:5f:00:0a mtu 1500 default via 10.95.0.1",
		"macvlan eth0 netns /run/ns/b parent lan0.50 mode private up addr 10.95.0.11/24 mac 02:42:0a:5f:00:0b mtu 1500 default via 10.95.0.1",
		"shim ptm-lan0 parent lan0 addr 10.95.0.2/32 routes 10.95.0.8/29",
		"vlan lan0.50 parent lan0 id 50",
	}, "\n")
	if diff := cmp.Diff(want, f.Dump()); diff != "" {
		t.Errorf("Dump (-want +got):\n%s", diff)
	}
	ls, _ := f.ListLinks("lan0", ShimPrefix)
	var names []string
	for _, l := range ls {
		names = append(names, l.Name+"/"+l.Type)
	}
	if got := strings.Join(names, " "); got != "lan0/device lan0.50/vlan ptm-lan0/macvlan" {
		t.Errorf("ListLinks: %s", got)
	}
	if idx, _ := f.LinkIndex(vlan); idx == 0 {
		t.Error("LinkIndex of the VLAN link is 0")
	}
	// Refusals, as the kernel adapter's.
	for _, c := range []struct {
		edit func(*Macvlan)
		want string
	}{
		{func(m *Macvlan) { m.Parent = "nosuch0" }, "does not exist"},
		{func(m *Macvlan) { m.Mode = "source" }, "unknown mode"},
		{func(m *Macvlan) { m.MTU = 9000 }, "above parent"},
		{func(m *Macvlan) {}, "exists in the sandbox"},
	} {
		m := member("/run/ns/a", "", 10)
		c.edit(&m)
		if err := f.AddMacvlan(m); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddMacvlan = %v, want %q", err, c.want)
		}
	}
	if _, _, err := f.EnsureVLAN("averylongname0", 50); err == nil || !strings.Contains(err.Error(), "shorter name") {
		t.Errorf("EnsureVLAN with a long parent: %v", err)
	}
	pt := member("/run/ns/c", "passthru", 12)
	pt.MAC = nil
	if err := f.AddMacvlan(pt); err == nil || !strings.Contains(err.Error(), "passthru") {
		t.Errorf("passthru beside a bridge macvlan: %v", err)
	}
	// Drift, check, repair.
	a := member("/run/ns/a", "", 10)
	f.BreakMacvlan("unaddr", a.Netns, a.IfName)
	if p := f.CheckMacvlan(a); len(p) != 1 || !strings.Contains(p[0], "does not have address") {
		t.Errorf("CheckMacvlan after unaddr: %v", p)
	}
	if fixes, err := f.RepairMacvlan(a); err != nil || len(fixes) != 1 {
		t.Errorf("RepairMacvlan = %v, %v", fixes, err)
	}
	if p := f.CheckMacvlan(a); len(p) > 0 {
		t.Errorf("after RepairMacvlan: %v", p)
	}
	f.BreakMacvlan("delete", a.Netns, a.IfName)
	if p := f.CheckMacvlan(a); len(p) != 1 || !strings.Contains(p[0], "missing") {
		t.Errorf("CheckMacvlan after delete: %v", p)
	}
	if p := f.CheckShim(s); len(p) > 0 {
		t.Errorf("CheckShim: %v", p)
	}
	// Deleting: the VLAN link takes its macvlans with it.
	if err := f.DeleteVLAN(vlan); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteVLAN("lan0"); err == nil {
		t.Error("DeleteVLAN deleted a device")
	}
	if err := f.DeleteShim(s.Name); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteIface("/run/ns/a", 0, "eth0"); err != nil {
		t.Fatal(err)
	}
	if d := f.Dump(); d != "" {
		t.Errorf("after deleting everything:\n%s", d)
	}
}
