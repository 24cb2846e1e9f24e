package link

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/model"
)

// Both implementations satisfy the contract.
var (
	_ Interface = (*Fake)(nil)
	_ Interface = (*netlinkLinks)(nil)
)

func fakeVethFor(host, ns, ip string) Veth {
	a := netip.MustParseAddr(ip)
	return Veth{HostName: host, Bridge: "br0", Iface: Iface{MTU: 1500, Netns: ns, IfName: "eth0", MAC: model.MACFromIP(a), Addrs: []Address{{Addr: netip.PrefixFrom(a, 24), Gateway: gw0.Addr()}}, DefaultRoute: true}}
}

func TestFakeLifecycle(t *testing.T) {
	f := NewFake()
	br, err := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}, MTU: 1400}); again != br {
		t.Errorf("EnsureBridge again = %d, want %d", again, br)
	}
	a := fakeVethFor("ptv-a", "/run/ns/a", "10.70.0.2")
	b := fakeVethFor("ptv-b", "/run/ns/b", "10.70.0.3")
	b.Isolated = true
	c := fakeVethFor("ptv-c", "/run/ns/a", "10.70.0.4")
	c.IfName, c.DefaultRoute, c.Table = "eth1", false, 101
	for _, v := range []Veth{a, b, c} {
		if _, err := f.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.DisableVeth("ptv-b"); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"bridge br0 addr 10.70.0.1/24 mtu 1400",
		"rule /run/ns/a|10.70.0.4|101",
		"veth ptv-a master br0 up peer eth0 netns /run/ns/a addr 10.70.0.2/24 mac 02:42:0a:46:00:02 default via 10.70.0.1",
		"veth ptv-b master br0 down peer eth0 netns /run/ns/b addr 10.70.0.3/24 mac 02:42:0a:46:00:03 default via 10.70.0.1 isolated",
		"veth ptv-c master br0 up peer eth1 netns /run/ns/a addr 10.70.0.4/24 mac 02:42:0a:46:00:04 table 101",
	}, "\n")
	if diff := cmp.Diff(want, f.Dump()); diff != "" {
		t.Errorf("Dump (-want +got):\n%s", diff)
	}

	ls, _ := f.ListLinks("ptv-a", "ptv-b")
	wantLs := []LinkInfo{{Name: "ptv-a", Index: ls[0].Index, Type: "veth", Master: "br0", MTU: a.MTU, Up: true, Stats: &LinkStats{}}, {Name: "ptv-b", Index: ls[1].Index, Type: "veth", MTU: b.MTU, Stats: &LinkStats{}}}
	if diff := cmp.Diff(wantLs, ls); diff != "" {
		t.Errorf("ListLinks (-want +got):\n%s", diff)
	}
	if all, _ := f.ListLinks(); len(all) != 4 {
		t.Errorf("ListLinks() = %v", all)
	}
	if idx, _ := f.LinkIndex("ptv-a"); idx != ls[0].Index {
		t.Errorf("LinkIndex = %d", idx)
	}
	if idx, err := f.LinkIndex("nope"); idx != 0 || err != nil {
		t.Errorf("LinkIndex(missing) = %d, %v", idx, err)
	}

	if probs := f.CheckVeth(a); len(probs) != 0 {
		t.Errorf("CheckVeth(a) = %v", probs)
	}
	if probs := f.CheckVeth(b); len(probs) != 1 {
		t.Errorf("CheckVeth(disabled b) = %v", probs)
	}
	if probs := f.CheckVeth(c); len(probs) != 0 {
		t.Errorf("CheckVeth(c) = %v", probs)
	}
	drift := a
	drift.MTU, drift.Addrs = 9000, []Address{{Addr: netip.MustParsePrefix("10.70.0.9/24"), Gateway: gw0.Addr()}}
	if probs := f.CheckVeth(drift); len(probs) != 2 {
		t.Errorf("CheckVeth(drift) = %v", probs)
	}

	if err := f.DeleteRule("/run/ns/a", 0, c.Addrs[0].Addr.Addr(), 101); err != nil {
		t.Fatal(err)
	}
	if probs := f.CheckVeth(c); len(probs) != 1 {
		t.Errorf("CheckVeth(c without rule) = %v", probs)
	}
	if err := f.DeleteVeths([]string{"ptv-a", "ptv-missing", "ptv-b", "ptv-c"}); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteBridge("br0"); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteBridge("br0"); err != nil {
		t.Fatal(err)
	}
	if d := f.Dump(); d != "" {
		t.Errorf("Dump after teardown: %q", d)
	}
}

func TestFakeRefuses(t *testing.T) {
	f := NewFake()
	if _, err := f.AddVeth(fakeVethFor("ptv-a", "/ns/a", "10.70.0.2")); err == nil {
		t.Error("AddVeth onto a missing bridge")
	}
	f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}})
	if _, err := f.AddVeth(fakeVethFor("ptv-a", "/ns/a", "10.70.0.2")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AddVeth(fakeVethFor("ptv-a", "/ns/b", "10.70.0.3")); err == nil {
		t.Error("AddVeth with a taken host name")
	}
	if _, err := f.AddVeth(fakeVethFor("ptv-b", "/ns/a", "10.70.0.3")); err == nil {
		t.Error("AddVeth with a taken peer name")
	}
	if _, err := f.EnsureBridge(Bridge{Name: "ptv-a"}); err == nil {
		t.Error("EnsureBridge over a veth")
	}
}

func TestFakeInjectError(t *testing.T) {
	boom := errors.New("boom")
	calls := map[string]func(f *Fake) error{
		"EnsureBridge": func(f *Fake) error { _, err := f.EnsureBridge(Bridge{Name: "br1"}); return err },
		"DeleteBridge": func(f *Fake) error { return f.DeleteBridge("br0") },
		"AddVeth":      func(f *Fake) error { _, err := f.AddVeth(fakeVethFor("ptv-x", "/ns/x", "10.70.0.9")); return err },
		"DisableVeth":  func(f *Fake) error { return f.DisableVeth("ptv-a") },
		"DeleteVeths":  func(f *Fake) error { return f.DeleteVeths([]string{"ptv-a"}) },
		"DeleteRule":   func(f *Fake) error { return f.DeleteRule("/ns/a", 0, netip.MustParseAddr("10.70.0.2"), 101) },
		"ListLinks":    func(f *Fake) error { _, err := f.ListLinks(); return err },
		"LinkIndex":    func(f *Fake) error { _, err := f.LinkIndex("br0"); return err },
		"HostPrefixes": func(f *Fake) error { _, err := f.HostPrefixes(); return err },
		"HostNets":     func(f *Fake) error { _, err := f.HostNets(); return err },
	}
	for op, call := range calls {
		t.Run(op, func(t *testing.T) {
			f := NewFake()
			f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}})
			f.AddVeth(fakeVethFor("ptv-a", "/ns/a", "10.70.0.2"))
			before := f.Dump()
			f.InjectError(op, boom)
			if err := call(f); !errors.Is(err, boom) {
				t.Fatalf("%s with an injected error returned %v", op, err)
			}
			if after := f.Dump(); after != before {
				t.Errorf("a failed %s changed the state:\n%s\nwas\n%s", op, after, before)
			}
			f.InjectError(op, nil)
			if err := call(f); err != nil {
				t.Fatalf("%s after clearing the error: %v", op, err)
			}
		})
	}
}

// The fake keeps both families of a dual-stack endpoint: addresses,
// gateways, a rule per family; it refuses what the kernel adapter
// refuses.
func TestFakeDualStack(t *testing.T) {
	f := NewFake()
	v6gw := netip.MustParsePrefix("fd00:70::1/64")
	if _, err := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0, v6gw}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	a := fakeVethFor("ptv-a", "/run/ns/a", "10.70.0.2")
	a.Addrs = append(a.Addrs, Address{Addr: netip.MustParsePrefix("fd00:70::2/64"), Gateway: v6gw.Addr()})
	c := fakeVethFor("ptv-c", "/run/ns/a", "10.70.0.4")
	c.Addrs = append(c.Addrs, Address{Addr: netip.MustParsePrefix("fd00:70::4/64"), Gateway: v6gw.Addr()})
	c.IfName, c.DefaultRoute, c.Table = "eth1", false, 101
	for _, v := range []Veth{a, c} {
		if _, err := f.AddVeth(v); err != nil {
			t.Fatal(err)
		}
	}
	want := strings.Join([]string{
		"bridge br0 addr 10.70.0.1/24,fd00:70::1/64 mtu 1500",
		"rule /run/ns/a|10.70.0.4|101",
		"rule /run/ns/a|fd00:70::4|101",
		"veth ptv-a master br0 up peer eth0 netns /run/ns/a addr 10.70.0.2/24,fd00:70::2/64 mac 02:42:0a:46:00:02 default via 10.70.0.1,fd00:70::1",
		"veth ptv-c master br0 up peer eth1 netns /run/ns/a addr 10.70.0.4/24,fd00:70::4/64 mac 02:42:0a:46:00:04 table 101",
	}, "\n")
	if diff := cmp.Diff(want, f.Dump()); diff != "" {
		t.Errorf("Dump (-want +got):\n%s", diff)
	}
	for _, v := range []Veth{a, c} {
		if p := f.CheckVeth(v); len(p) != 0 {
			t.Errorf("CheckVeth(%s) = %v", v.HostName, p)
		}
	}
	if err := f.DeleteRule("/run/ns/a", 0, netip.MustParseAddr("fd00:70::4"), 101); err != nil {
		t.Fatal(err)
	}
	if p := f.CheckVeth(c); !slices.Equal(p, []string{"no rule from fd00:70::4 lookup 101"}) {
		t.Errorf("CheckVeth(c without its IPv6 rule) = %v", p)
	}
	if p := f.CheckBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0, netip.MustParsePrefix("fd00:99::1/64")}}); len(p) != 1 {
		t.Errorf("CheckBridge with another IPv6 gateway = %v", p)
	}
	nets, _ := f.HostNets()
	if !slices.Contains(nets, HostNet{Prefix: v6gw.Masked(), Link: "br0", Kind: HostRoute}) {
		t.Errorf("HostNets lacks the bridge's IPv6 route: %v", nets)
	}
	// Replacing the IPv6 default route leaves the IPv4 one.
	if err := f.SetDefaultRoute("/run/ns/a", 0, "eth0", netip.MustParseAddr("fd00:70::99")); err != nil {
		t.Fatal(err)
	}
	if d := f.Dump(); !strings.Contains(d, "default via 10.70.0.1,fd00:70::99") {
		t.Errorf("after SetDefaultRoute:\n%s", d)
	}
	before := f.Dump()
	bad := fakeVethFor("ptv-x", "/run/ns/x", "10.70.0.9")
	bad.Addrs = append(bad.Addrs, Address{Addr: netip.MustParsePrefix("10.70.0.10/24")})
	if _, err := f.AddVeth(bad); err == nil {
		t.Error("AddVeth with two IPv4 addresses")
	}
	bad = fakeVethFor("ptv-x", "/run/ns/x", "10.70.0.9")
	bad.MAC = nil
	bad.Addrs = append(bad.Addrs, Address{Addr: netip.MustParsePrefix("fd00:70::9/64")})
	if _, err := f.AddVeth(bad); err == nil {
		t.Error("AddVeth of IPv6 without a MAC")
	}
	if _, err := f.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{v6gw, v6gw}}); err == nil {
		t.Error("EnsureBridge with two IPv6 gateways")
	}
	if after := f.Dump(); after != before {
		t.Errorf("refused calls changed the state:\n%s\nwas\n%s", after, before)
	}
}

// LinkLocal is the modified EUI-64 address (RFC 4291 appendix A), as the
// kernel would make it.
func TestLinkLocal(t *testing.T) {
	mac, _ := net.ParseMAC("00:16:3e:12:34:56")
	if got := LinkLocal(mac).String(); got != "fe80::216:3eff:fe12:3456/64" {
		t.Errorf("LinkLocal(%s) = %s", mac, got)
	}
}
