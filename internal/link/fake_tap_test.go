package link

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFakeTapLifecycle(t *testing.T) {
	f := NewFake()
	if _, err := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	a := Tap{Name: "ptt-a", Bridge: "br0", MTU: 1500, MAC: net.HardwareAddr{2, 0x42, 10, 70, 0, 9}, Owner: 1000, Group: -1, MultiQueue: true}
	b := Tap{Name: "ptt-b", Bridge: "br0", Owner: -1, Group: -1, Isolated: true, VLAN: 10}
	ia, err := f.AddTap(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.AddTap(b); err != nil {
		t.Fatal(err)
	}
	if err := f.SetTapOpen("ptt-a", true); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"bridge br0 addr 10.70.0.1/24 mtu 1500",
		"tap ptt-a master br0 up mtu 1500 owner 1000 group none mac 02:42:0a:46:00:09 multi_queue open",
		"tap ptt-b master br0 up mtu 0 owner none group none mac  isolated vlan 10",
	}, "\n")
	if diff := cmp.Diff(want, f.Dump()); diff != "" {
		t.Errorf("Dump (-want +got):\n%s", diff)
	}
	ls, _ := f.ListLinks("ptt-")
	wantLs := []LinkInfo{{Name: "ptt-a", Index: ia, Type: "tuntap", Master: "br0", MTU: 1500, Up: true, Stats: &LinkStats{}}, {Name: "ptt-b", Index: ls[1].Index, Type: "tuntap", Master: "br0", MTU: 1500, Up: true, Stats: &LinkStats{}}}
	if diff := cmp.Diff(wantLs, ls); diff != "" {
		t.Errorf("ListLinks (-want +got):\n%s", diff)
	}
	if idx, _ := f.LinkIndex("ptt-a"); idx != ia {
		t.Errorf("LinkIndex(ptt-a) = %d, want %d", idx, ia)
	}
	for _, tp := range []Tap{a, b} {
		if p := f.CheckTap(tp); len(p) != 0 {
			t.Errorf("CheckTap(%s) = %q", tp.Name, p)
		}
	}

	// Broken from outside: Check sees it, Repair puts it back in place.
	f.Break("nomaster", "ptt-a")
	f.Break("down", "ptt-a")
	if p := f.CheckTap(a); len(p) != 2 {
		t.Errorf("CheckTap(broken a) = %q, want off the bridge and down", p)
	}
	idx, fixes, err := f.RepairTap(a)
	if err != nil || idx != ia || len(fixes) != 2 {
		t.Errorf("RepairTap(a) = %d, %v, %v; want %d and two fixes", idx, fixes, err, ia)
	}
	if p := f.CheckTap(a); len(p) != 0 {
		t.Errorf("CheckTap(repaired a) = %q", p)
	}
	// A different owner cannot be set in place: the tap is made again.
	a2 := a
	a2.Owner = 1001
	if p := f.CheckTap(a2); len(p) != 1 {
		t.Errorf("CheckTap(other owner) = %q", p)
	}
	if _, fixes, err := f.RepairTap(a2); err != nil || len(fixes) != 1 || fixes[0].Kind != "tap" {
		t.Errorf("RepairTap(other owner) = %v, %v", fixes, err)
	}
	if p := f.CheckTap(a2); len(p) != 0 {
		t.Errorf("CheckTap after recreate = %q", p)
	}
	// Deleted: RepairTap makes it again.
	f.Break("delete", "ptt-b")
	if p := f.CheckTap(b); len(p) != 1 || !strings.Contains(p[0], "missing") {
		t.Errorf("CheckTap(deleted b) = %q", p)
	}
	if _, fixes, err := f.RepairTap(b); err != nil || len(fixes) != 1 {
		t.Errorf("RepairTap(deleted b) = %v, %v", fixes, err)
	}

	// DeleteVeths deletes taps by name too.
	if err := f.DeleteVeths([]string{"ptt-a", "ptt-b", "ptt-none"}); err != nil {
		t.Fatal(err)
	}
	if got := f.Taps(); len(got) != 0 {
		t.Errorf("taps after DeleteVeths: %v", got)
	}
	if p := f.CheckTap(a); len(p) != 1 {
		t.Errorf("CheckTap(deleted) = %q", p)
	}
}

func TestFakeTapRefusals(t *testing.T) {
	f := NewFake()
	if _, err := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}}); err != nil {
		t.Fatal(err)
	}
	ok := Tap{Name: "ptt-a", Bridge: "br0", Owner: -1, Group: -1}
	for _, tc := range []struct {
		name string
		tap  func(Tap) Tap
		want string
	}{
		{"empty name", func(t Tap) Tap { t.Name = ""; return t }, "no name given"},
		{"long name", func(t Tap) Tap { t.Name = "ptt-0123456789ab"; return t }, "at most 15"},
		{"template", func(t Tap) Tap { t.Name = "tap%d"; return t }, "not a valid interface name"},
		{"missing bridge", func(t Tap) Tap { t.Bridge = "br9"; return t }, "create the network first"},
		{"bridge name", func(t Tap) Tap { t.Name = "br0"; return t }, "exists"},
		{"owner", func(t Tap) Tap { t.Owner = -2; return t }, "-1 for none"},
		{"vlan", func(t Tap) Tap { t.VLAN = 4095; return t }, "out of range"},
		{"mac", func(t Tap) Tap { t.MAC = net.HardwareAddr{1, 2}; return t }, "six bytes"},
	} {
		if _, err := f.AddTap(tc.tap(ok)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: AddTap err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	if got := f.Taps(); len(got) != 0 {
		t.Errorf("refused taps were made: %v", got)
	}
	if _, err := f.AddTap(ok); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AddTap(ok); err == nil {
		t.Error("AddTap of an existing tap succeeded")
	}
}
