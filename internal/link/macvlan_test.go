package link

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
	"pontoon/internal/testutil"
)

// Macvlan kernel tests. A throwaway "host" namespace runs the real
// Interface; its link lan0 is the parent, a veth whose other end (eth0) is
// in a "LAN" namespace with 10.95.0.1/24: the physical segment and a
// machine on it. Sandboxes are further throwaway namespaces.

const lanAddr = "10.95.0.1"

type macvlanLab struct {
	l    Interface
	host string
	lan  string
}

// newMacvlanLab makes the host and LAN namespaces and the parent lan0.
func newMacvlanLab(t testing.TB) macvlanLab {
	t.Helper()
	lab := macvlanLab{host: testutil.NewNetns(t), lan: testutil.NewNetns(t)}
	if err := testutil.InNetns(t, lab.host, func() (err error) {
		lab.l, err = New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	lab.wire(t, "lan0", "eth0")
	lab.lanRun(t, "ip", "addr", "add", lanAddr+"/24", "dev", "eth0")
	return lab
}

// wire makes a veth: hostName in the host namespace, lanName in the LAN
// namespace, both up.
func (lab macvlanLab) wire(t testing.TB, hostName, lanName string) {
	t.Helper()
	h, err := handleAtPath(lab.host, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lanNs, err := vnetns.GetFromPath(lab.lan)
	if err != nil {
		t.Fatal(err)
	}
	defer lanNs.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName, MTU: 1500}, PeerName: lanName, PeerNamespace: netlink.NsFd(lanNs)}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}}); err != nil {
		t.Fatal(err)
	}
	lab.lanRun(t, "ip", "link", "set", lanName, "up")
}

func (lab macvlanLab) lanRun(t testing.TB, argv ...string) {
	t.Helper()
	if out, err := runIn(t, lab.lan, argv...); err != nil {
		t.Fatalf("%v in the LAN: %v\n%s", argv, err, out)
	}
}

func (lab macvlanLab) hostRun(t testing.TB, argv ...string) {
	t.Helper()
	if out, err := runIn(t, lab.host, argv...); err != nil {
		t.Fatalf("%v on the host: %v\n%s", argv, err, out)
	}
}

// runIn is run for tests and benchmarks.
func runIn(t testing.TB, ns string, argv ...string) (string, error) {
	t.Helper()
	var out []byte
	err := testutil.InNetns(t, ns, func() (err error) {
		out, err = exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return err
	})
	return string(out), err
}

// member is eth0 on lan0 in mode with 10.95.0.x/24 (gateway: the LAN
// machine) and a MAC of its own.
func member(ns, mode string, x byte) Macvlan {
	return Macvlan{Parent: "lan0", Mode: mode, Iface: Iface{Netns: ns, IfName: "eth0", MTU: 1500,
		MAC:   net.HardwareAddr{2, 0x42, 10, 95, 0, x},
		Addrs: []Address{{Addr: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 95, 0, x}), 24), Gateway: netip.MustParseAddr(lanAddr)}}, DefaultRoute: true}}
}

// links lists the links of a namespace by name, lo left out.
func links(t testing.TB, ns string) []string {
	t.Helper()
	h, err := handleAtPath(ns, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		if l.Attrs().Name != "lo" {
			out = append(out, l.Attrs().Name)
		}
	}
	slices.Sort(out)
	return out
}

// noPing fails the test if from reaches to.
func noPing(t *testing.T, from, to string) {
	t.Helper()
	if out, err := run(t, from, "ping", "-c2", "-i0.2", "-W1", to); err == nil {
		t.Errorf("ping %s was answered, want no answer:\n%s", to, out)
	}
}

// Two sandboxes in bridge mode: the macvlan is made in the sandbox (never
// in the host), with the MAC, MTU and mode asked; the sandboxes reach each
// other and the LAN, and the LAN reaches them.
func TestKernelMacvlanBridge(t *testing.T) {
	lab := newMacvlanLab(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	ma, mb := member(a, "", 10), member(b, "bridge", 11)
	for _, m := range []Macvlan{ma, mb} {
		if err := lab.l.AddMacvlan(m); err != nil {
			t.Fatal(err)
		}
	}
	if got := links(t, lab.host); strings.Join(got, ",") != "lan0" {
		t.Errorf("host links %v, want only lan0: the macvlans are made in the sandboxes", got)
	}
	h := nsHandle(t, a)
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	mv, ok := l.(*netlink.Macvlan)
	if !ok || mv.Mode != netlink.MACVLAN_MODE_BRIDGE || mv.Attrs().HardwareAddr.String() != ma.MAC.String() || mv.Attrs().MTU != 1500 || mv.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0 in a: %s %+v", l.Type(), l.Attrs())
	}
	for _, c := range []struct{ from, to string }{{a, "10.95.0.11"}, {b, "10.95.0.10"}, {a, lanAddr}, {lab.lan, "10.95.0.11"}} {
		if err := ping(t, c.from, c.to); err != nil {
			t.Error(err)
		}
	}
	for _, m := range []Macvlan{ma, mb} {
		if p := lab.l.CheckMacvlan(m); len(p) > 0 {
			t.Errorf("CheckMacvlan(%s): %v", m.Netns, p)
		}
	}
	if err := lab.l.DeleteIface(a, 0, "eth0"); err != nil {
		t.Fatal(err)
	}
	if got := links(t, a); len(got) > 0 {
		t.Errorf("after DeleteIface: %v", got)
	}
	if err := lab.l.DeleteIface(a, 0, "eth0"); err != nil {
		t.Errorf("DeleteIface of a missing link: %v", err)
	}
	if err := lab.l.DeleteIface(a+"-gone", 0, "eth0"); err != nil {
		t.Errorf("DeleteIface in a missing namespace: %v", err)
	}
	ino, _ := netns.Ino(b)
	if err := lab.l.DeleteIface(b, ino+1, "eth0"); err != nil {
		t.Errorf("DeleteIface in a namespace with another identity: %v", err)
	}
	if got := links(t, b); len(got) != 1 {
		t.Errorf("DeleteIface with another identity touched the namespace: %v", got)
	}
}

// Private mode: siblings cannot reach each other, but both reach the LAN.
func TestKernelMacvlanPrivate(t *testing.T) {
	lab := newMacvlanLab(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	for i, ns := range []string{a, b} {
		if err := lab.l.AddMacvlan(member(ns, "private", byte(10+i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{a, b} {
		if err := ping(t, ns, lanAddr); err != nil {
			t.Error(err)
		}
	}
	noPing(t, a, "10.95.0.11")
	noPing(t, b, "10.95.0.10")
	if p := lab.l.CheckMacvlan(member(a, "bridge", 10)); len(p) != 1 || !strings.Contains(p[0], "mode private, want bridge") {
		t.Errorf("CheckMacvlan in another mode: %v", p)
	}
}

// Passthru: the macvlan takes the parent's MAC, and the parent takes no
// other macvlan.
func TestKernelMacvlanPassthru(t *testing.T) {
	lab := newMacvlanLab(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	m := member(a, "passthru", 10)
	if err := lab.l.AddMacvlan(m); err == nil || !strings.Contains(err.Error(), "parent lan0's MAC") {
		t.Fatalf("passthru with a MAC of its own: %v", err)
	}
	m.MAC = nil
	if err := lab.l.AddMacvlan(m); err != nil {
		t.Fatal(err)
	}
	parent, err := nsHandle(t, lab.host).LinkByName("lan0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := nsHandle(t, a).LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().HardwareAddr.String() != parent.Attrs().HardwareAddr.String() {
		t.Errorf("passthru MAC %s, parent's %s", l.Attrs().HardwareAddr, parent.Attrs().HardwareAddr)
	}
	if err := ping(t, a, lanAddr); err != nil {
		t.Error(err)
	}
	if p := lab.l.CheckMacvlan(m); len(p) > 0 {
		t.Errorf("CheckMacvlan: %v", p)
	}
	for _, mode := range []string{"passthru", "bridge"} {
		other := member(b, mode, 11)
		if mode == "passthru" {
			other.MAC = nil
		}
		if err := lab.l.AddMacvlan(other); err == nil || !strings.Contains(err.Error(), "passthru") {
			t.Errorf("a %s macvlan beside a passthru one: %v", mode, err)
		}
	}
	if got := links(t, b); len(got) > 0 {
		t.Errorf("refused macvlans left %v", got)
	}
}

// Dual-stack members reach each other over IPv6, global and link-local;
// the only link-local address is the one derived from the MAC, and no
// address is tentative.
func TestKernelMacvlanDualStack(t *testing.T) {
	lab := newMacvlanLab(t)
	a, b := testutil.NewNetns(t), testutil.NewNetns(t)
	for i, ns := range []string{a, b} {
		x := byte(10 + i)
		m := member(ns, "bridge", x)
		m.Addrs = append(m.Addrs, Address{Addr: netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("fd00:95::%x", x)), 64)})
		if err := lab.l.AddMacvlan(m); err != nil {
			t.Fatal(err)
		}
		if p := lab.l.CheckMacvlan(m); len(p) > 0 {
			t.Errorf("CheckMacvlan: %v", p)
		}
	}
	got := v6Addrs(t, nsHandle(t, a), "eth0")
	ll := LinkLocal(net.HardwareAddr{2, 0x42, 10, 95, 0, 10})
	want := map[netip.Prefix]bool{netip.MustParsePrefix("fd00:95::a/64"): true, ll: true}
	if len(got) != 2 {
		t.Errorf("IPv6 addresses of eth0 in a: %v, want %v", got, want)
	}
	for p, flags := range got {
		if !want[p] {
			t.Errorf("unexpected address %s", p)
		}
		if flags&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("%s is tentative", p)
		}
	}
	if err := ping6(t, a, "fd00:95::b"); err != nil {
		t.Error(err)
	}
	llB := LinkLocal(net.HardwareAddr{2, 0x42, 10, 95, 0, 11})
	if err := ping6(t, a, llB.Addr().String()+"%eth0"); err != nil {
		t.Error(err)
	}
	if err := ping(t, b, "10.95.0.10"); err != nil {
		t.Error(err)
	}
}

// Check sees a macvlan down, without its address, deleted, replaced by
// another kind of link, and its parent down; Repair puts each back.
func TestKernelMacvlanCheckRepair(t *testing.T) {
	lab := newMacvlanLab(t)
	a := testutil.NewNetns(t)
	ino, err := netns.Ino(a)
	if err != nil {
		t.Fatal(err)
	}
	m := member(a, "bridge", 10)
	m.NetnsIno = ino
	if err := lab.l.AddMacvlan(m); err != nil {
		t.Fatal(err)
	}
	if p := lab.l.CheckMacvlan(m); len(p) > 0 {
		t.Fatalf("CheckMacvlan after AddMacvlan: %v", p)
	}
	for _, c := range []struct {
		name   string
		ns     string
		argv   []string
		report string // in CheckMacvlan's answer
		kind   string // of a Fix
	}{
		{"down", a, []string{"ip", "link", "set", "eth0", "down"}, "eth0 is down", "link"},
		{"address removed", a, []string{"ip", "addr", "flush", "dev", "eth0"}, "does not have address 10.95.0.10/24", "address"},
		{"deleted", a, []string{"ip", "link", "del", "eth0"}, "eth0 is missing in the sandbox", "macvlan"},
		{"another kind", a, []string{"sh", "-c", "ip link del eth0 && ip link add eth0 type veth peer name x0"}, "is a veth, not a macvlan", "macvlan"},
		{"parent down", lab.host, []string{"ip", "link", "set", "lan0", "down"}, "parent lan0 is down", "link"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if out, err := run(t, c.ns, c.argv...); err != nil {
				t.Fatalf("%v: %v\n%s", c.argv, err, out)
			}
			p := lab.l.CheckMacvlan(m)
			if !strings.Contains(strings.Join(p, "\n"), c.report) {
				t.Fatalf("CheckMacvlan = %q, want %q among them", p, c.report)
			}
			fixes, err := lab.l.RepairMacvlan(m)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]bool{}
			for _, f := range fixes {
				kinds[f.Kind] = true
			}
			if !kinds[c.kind] {
				t.Errorf("RepairMacvlan fixes %+v, want one of kind %s", fixes, c.kind)
			}
			if p := lab.l.CheckMacvlan(m); len(p) > 0 {
				t.Errorf("after RepairMacvlan: %v", p)
			}
			if err := ping(t, a, lanAddr); err != nil {
				t.Error(err)
			}
		})
	}
	if fixes, err := lab.l.RepairMacvlan(m); err != nil || len(fixes) > 0 {
		t.Errorf("RepairMacvlan of a sound endpoint: %+v, %v", fixes, err)
	}
	// Another identity: nothing is entered, nothing made.
	other := member(a, "bridge", 12)
	other.IfName, other.NetnsIno = "eth1", ino+1
	if err := lab.l.AddMacvlan(other); !errors.Is(err, ErrNetnsGone) {
		t.Errorf("AddMacvlan into a namespace with another identity: %v", err)
	}
	if _, err := lab.l.RepairMacvlan(other); !errors.Is(err, ErrNetnsGone) {
		t.Errorf("RepairMacvlan with another identity: %v", err)
	}
	if got := links(t, a); strings.Join(got, ",") != "eth0" {
		t.Errorf("sandbox links %v, want only eth0", got)
	}
}

// The parent deleted: its macvlans go with it, in every namespace; the
// endpoint cannot be repaired until the parent is back.
func TestKernelMacvlanParentGone(t *testing.T) {
	lab := newMacvlanLab(t)
	a := testutil.NewNetns(t)
	m := member(a, "bridge", 10)
	if err := lab.l.AddMacvlan(m); err != nil {
		t.Fatal(err)
	}
	lab.hostRun(t, "ip", "link", "del", "lan0")
	if got := links(t, a); len(got) > 0 {
		t.Errorf("sandbox links after the parent was deleted: %v", got)
	}
	if p := lab.l.CheckMacvlan(m); len(p) != 1 || !strings.Contains(p[0], "parent lan0 of macvlan eth0 is missing") {
		t.Errorf("CheckMacvlan: %v", p)
	}
	if _, err := lab.l.RepairMacvlan(m); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("RepairMacvlan without a parent: %v", err)
	}
}

// Bad input: a clear error, and nothing made in the sandbox or the host.
func TestKernelMacvlanRefuses(t *testing.T) {
	lab := newMacvlanLab(t)
	a := testutil.NewNetns(t)
	// A bridge port cannot be a parent.
	lab.hostRun(t, "sh", "-c", "ip link add brx type bridge && ip link add p0 type veth peer name p1 && ip link set p0 master brx")
	parentMAC := func() net.HardwareAddr {
		l, err := nsHandle(t, lab.host).LinkByName("lan0")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr
	}()
	for _, c := range []struct {
		name string
		edit func(*Macvlan)
		want string
	}{
		{"missing parent", func(m *Macvlan) { m.Parent = "nosuch0" }, "parent nosuch0 does not exist"},
		{"unknown mode", func(m *Macvlan) { m.Mode = "source" }, `unknown mode "source"`},
		{"name too long", func(m *Macvlan) { m.IfName = "eth0123456789abc" }, "invalid interface name"},
		{"MTU above the parent's", func(m *Macvlan) { m.MTU = 9000 }, "above parent lan0's 1500"},
		{"the parent's MAC", func(m *Macvlan) { m.MAC = parentMAC }, "is parent lan0's"},
		{"multicast MAC", func(m *Macvlan) { m.MAC = net.HardwareAddr{1, 0, 0x5e, 0, 0, 1} }, "not a unicast"},
		{"bridge port as parent", func(m *Macvlan) { m.Parent = "p0" }, "is a port of another link"},
		{"loopback as parent", func(m *Macvlan) { m.Parent = "lo" }, "not Ethernet"},
		{"two IPv4 addresses", func(m *Macvlan) {
			m.Addrs = []Address{{Addr: netip.MustParsePrefix("10.95.0.10/24")}, {Addr: netip.MustParsePrefix("10.95.0.11/24")}}
		}, "two IPv4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := member(a, "bridge", 10)
			c.edit(&m)
			err := lab.l.AddMacvlan(m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("AddMacvlan = %v, want an error with %q", err, c.want)
			}
		})
	}
	// A name taken in the sandbox: refused, the link there untouched.
	if out, err := run(t, a, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0"); err != nil {
		t.Fatal(err, out)
	}
	if err := lab.l.AddMacvlan(member(a, "bridge", 10)); err == nil || !strings.Contains(err.Error(), "exists in the sandbox") {
		t.Errorf("AddMacvlan over an existing eth0: %v", err)
	}
	if l, err := nsHandle(t, a).LinkByName("eth0"); err != nil || l.Type() != "veth" {
		t.Errorf("the sandbox's own eth0: %v %v", l, err)
	}
	if got := strings.Join(links(t, a), ","); got != "eth0,x0" {
		t.Errorf("sandbox links: %s", got)
	}
	// A MAC in use on the parent fails when the macvlan comes up: rolled back.
	b, c := testutil.NewNetns(t), testutil.NewNetns(t)
	if err := lab.l.AddMacvlan(member(b, "bridge", 20)); err != nil {
		t.Fatal(err)
	}
	dup := member(c, "bridge", 21)
	dup.MAC = member(b, "", 20).MAC
	if err := lab.l.AddMacvlan(dup); err == nil || !strings.Contains(err.Error(), "another macvlan's") {
		t.Errorf("AddMacvlan with a sibling's MAC: %v", err)
	}
	if got := links(t, c); len(got) > 0 {
		t.Errorf("a failed AddMacvlan left %v in the sandbox", got)
	}
	if got := strings.Join(links(t, lab.host), ","); got != "brx,lan0,p0,p1" {
		t.Errorf("host links: %s", got)
	}
}

// The host reaches a member only through a shim: not through the parent
// (where it has an address in the subnet), and through the shim once it is
// there; the shim is checked, repaired by EnsureShim, and deleted.
func TestKernelMacvlanShim(t *testing.T) {
	lab := newMacvlanLab(t)
	lab.hostRun(t, "ip", "addr", "add", "10.95.0.3/24", "dev", "lan0")
	a := testutil.NewNetns(t)
	if err := lab.l.AddMacvlan(member(a, "bridge", 10)); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, lab.host, lanAddr); err != nil {
		t.Fatal(err) // the host is on the LAN
	}
	noPing(t, lab.host, "10.95.0.10")
	s := Shim{Name: ShimPrefix + "lan0", Parent: "lan0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.95.0.2/32")}, Routes: []netip.Prefix{netip.MustParsePrefix("10.95.0.8/29")}}
	if p := lab.l.CheckShim(s); len(p) != 1 || !strings.Contains(p[0], "missing") {
		t.Errorf("CheckShim before EnsureShim: %v", p)
	}
	if err := lab.l.EnsureShim(s); err != nil {
		t.Fatal(err)
	}
	if p := lab.l.CheckShim(s); len(p) > 0 {
		t.Errorf("CheckShim: %v", p)
	}
	if err := ping(t, lab.host, "10.95.0.10"); err != nil {
		t.Error(err)
	}
	if err := ping(t, a, "10.95.0.2"); err != nil {
		t.Error(err)
	}
	if err := ping(t, lab.host, lanAddr); err != nil {
		t.Error(err) // still reached through the parent
	}
	// Broken and repaired: EnsureShim again.
	lab.hostRun(t, "ip", "addr", "flush", "dev", s.Name)
	p := strings.Join(lab.l.CheckShim(s), "\n")
	if !strings.Contains(p, "does not have address 10.95.0.2/32") || !strings.Contains(p, "no route 10.95.0.8/29") {
		t.Errorf("CheckShim after the addresses were flushed:\n%s", p)
	}
	if err := lab.l.EnsureShim(s); err != nil {
		t.Fatal(err)
	}
	if p := lab.l.CheckShim(s); len(p) > 0 {
		t.Errorf("CheckShim after EnsureShim: %v", p)
	}
	if err := ping(t, lab.host, "10.95.0.10"); err != nil {
		t.Error(err)
	}
	// Refused: a name without the prefix; a link of the name that is not a
	// shim.
	if err := lab.l.EnsureShim(Shim{Name: "mac0", Parent: "lan0"}); err == nil || !strings.Contains(err.Error(), ShimPrefix) {
		t.Errorf("EnsureShim without the prefix: %v", err)
	}
	lab.hostRun(t, "ip", "link", "add", ShimPrefix+"x", "type", "veth", "peer", "name", "ptx")
	if err := lab.l.EnsureShim(Shim{Name: ShimPrefix + "x", Parent: "lan0"}); err == nil || !strings.Contains(err.Error(), "not a shim") {
		t.Errorf("EnsureShim over a veth: %v", err)
	}
	if err := lab.l.DeleteShim(ShimPrefix + "x"); err == nil {
		t.Error("DeleteShim deleted a veth")
	}
	if err := lab.l.DeleteShim(s.Name); err != nil {
		t.Fatal(err)
	}
	if err := lab.l.DeleteShim(s.Name); err != nil {
		t.Errorf("DeleteShim of a missing shim: %v", err)
	}
	noPing(t, lab.host, "10.95.0.10")
}

// vlanSupported reports whether the kernel makes 802.1Q links (CONFIG_VLAN_8021Q).
func vlanSupported(t *testing.T, lab macvlanLab) bool {
	t.Helper()
	out, err := runIn(t, lab.lan, "ip", "link", "add", "link", "eth0", "name", "probe.9", "type", "vlan", "id", "9")
	if err != nil {
		t.Logf("no 802.1Q in this kernel: %s", strings.TrimSpace(out))
		return false
	}
	lab.lanRun(t, "ip", "link", "del", "probe.9")
	return true
}

// VLAN: members on lan0.50 reach the LAN's VLAN 50 interface, not its
// untagged address; an untagged member still reaches that. Without 802.1Q
// in the kernel, EnsureVLAN says so and makes nothing.
func TestKernelMacvlanVLAN(t *testing.T) {
	lab := newMacvlanLab(t)
	// Bad input first (any kernel): id, name length.
	for _, c := range []struct {
		parent string
		id     int
		want   string
	}{
		{"lan0", 0, "from 1 to 4094"},
		{"lan0", 4095, "from 1 to 4094"},
		{"averylongname0", 50, "give a parent with a shorter name, or create the VLAN link yourself"},
		{"nosuch0", 50, "parent nosuch0 does not exist"},
	} {
		if _, _, err := lab.l.EnsureVLAN(c.parent, c.id); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("EnsureVLAN(%s, %d) = %v, want an error with %q", c.parent, c.id, err, c.want)
		}
	}
	if !vlanSupported(t, lab) {
		_, _, err := lab.l.EnsureVLAN("lan0", 50)
		if !errors.Is(err, unix.EOPNOTSUPP) || !strings.Contains(err.Error(), "no 802.1Q VLAN support") {
			t.Errorf("EnsureVLAN without 802.1Q: %v", err)
		}
		if got := strings.Join(links(t, lab.host), ","); got != "lan0" {
			t.Errorf("host links: %s", got)
		}
		t.Skip("the kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q): the VLAN traffic test needs it")
	}
	name, created, err := lab.l.EnsureVLAN("lan0", 50)
	if err != nil || name != "lan0.50" || !created {
		t.Fatalf("EnsureVLAN = %s, %v, %v", name, created, err)
	}
	if again, created, err := lab.l.EnsureVLAN("lan0", 50); err != nil || again != name || created {
		t.Errorf("EnsureVLAN again = %s, %v, %v; want it reused", again, created, err)
	}
	lab.lanRun(t, "ip", "link", "add", "link", "eth0", "name", "eth0.50", "type", "vlan", "id", "50")
	lab.lanRun(t, "ip", "addr", "add", "10.96.0.1/24", "dev", "eth0.50")
	lab.lanRun(t, "ip", "link", "set", "eth0.50", "up")
	a, b, c := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
	ma := Macvlan{Parent: name, Iface: Iface{Netns: a, IfName: "eth0", MAC: net.HardwareAddr{2, 0x42, 10, 96, 0, 10}, Addrs: []Address{{Addr: netip.MustParsePrefix("10.96.0.10/24")}}}}
	// b is on the VLAN with an address of the untagged subnet.
	mb := Macvlan{Parent: name, Iface: Iface{Netns: b, IfName: "eth0", MAC: net.HardwareAddr{2, 0x42, 10, 95, 0, 12}, Addrs: []Address{{Addr: netip.MustParsePrefix("10.95.0.12/24")}}}}
	mc := member(c, "bridge", 13) // untagged, on lan0
	for _, m := range []Macvlan{ma, mb, mc} {
		if err := lab.l.AddMacvlan(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := ping(t, a, "10.96.0.1"); err != nil {
		t.Error(err)
	}
	noPing(t, b, lanAddr)
	if err := ping(t, c, lanAddr); err != nil {
		t.Error(err)
	}
	// Someone else's link of the name.
	lab.hostRun(t, "ip", "link", "add", "lan0.51", "type", "veth", "peer", "name", "x51")
	if _, _, err := lab.l.EnsureVLAN("lan0", 51); err == nil || !strings.Contains(err.Error(), "is not VLAN 51 on lan0") {
		t.Errorf("EnsureVLAN over a veth: %v", err)
	}
	if err := lab.l.DeleteVLAN("lan0.51"); err == nil {
		t.Error("DeleteVLAN deleted a veth")
	}
	if err := lab.l.DeleteVLAN(name); err != nil {
		t.Fatal(err)
	}
	if got := links(t, a); len(got) > 0 {
		t.Errorf("members of a deleted VLAN link: %v", got)
	}
	if err := lab.l.DeleteVLAN(name); err != nil {
		t.Errorf("DeleteVLAN of a missing link: %v", err)
	}
}

// BenchmarkAddMacvlan measures one macvlan attach's kernel work — parent
// lookup, the macvlan made in an existing sandbox, its address, up and
// default route (ns/op, p50, p99) — and reports the detach (DeleteIface)
// beside it (del-p50-ns), which is not in ns/op. Each macvlan is deleted
// before the next, so the parent carries one at a time.
//
//	go test -run '^$' -bench 'AddMacvlan|AddVeth$' -benchtime 500x ./internal/link/
func BenchmarkAddMacvlan(b *testing.B) {
	lab := newMacvlanLab(b)
	sb := testutil.NewNetns(b)
	ino, err := netns.Ino(sb)
	if err != nil {
		b.Fatal(err)
	}
	adds := make([]time.Duration, 0, b.N)
	dels := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		m := member(sb, "bridge", byte(10+i%200))
		m.NetnsIno = ino
		start := time.Now()
		if err := lab.l.AddMacvlan(m); err != nil {
			b.Fatal(err)
		}
		adds = append(adds, time.Since(start))
		b.StopTimer()
		start = time.Now()
		if err := lab.l.DeleteIface(sb, ino, m.IfName); err != nil {
			b.Fatal(err)
		}
		dels = append(dels, time.Since(start))
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(adds)
	slices.Sort(dels)
	b.ReportMetric(float64(adds[len(adds)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(adds[len(adds)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(dels[len(dels)/2].Nanoseconds()), "del-p50-ns")
}
