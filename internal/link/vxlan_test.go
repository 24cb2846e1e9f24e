package link

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"pontoon/internal/testutil"
)

// VXLAN kernel tests. Two throwaway "host" namespaces are joined by a veth,
// under0 (192.0.2.1/24 and 192.0.2.2/24): the underlay. Each host runs the
// real Interface, has the overlay network's bridge (br42, its slice's
// gateway) with one sandbox on it, forwarding on, and its VXLAN device
// (vx42, VNI 42) with its slice's network address, peered with the other.

// vxHost is one host of the lab.
type vxHost struct {
	l  Interface
	ns string
	n  int // 1, 2: its underlay address 192.0.2.n and slices 10.20x.n.0/24
}

func (h vxHost) underlay() netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(h.n)}) }

// slice is the host's slice of 10.<second>.0.0/16.
func (h vxHost) slice(second byte) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, second, byte(h.n), 0}), 24)
}

// vxlan is the host's device for VNI vni carrying 10.<second>.0.0/16.
func (h vxHost) vxlan(vni int, second byte) VXLAN {
	return VXLAN{Name: fmt.Sprintf("vx%d", vni), VNI: vni, Local: h.underlay(), Dev: "under0",
		Addrs: []netip.Prefix{netip.PrefixFrom(h.slice(second).Addr(), 32)}}
}

// peer is what the other hosts program for h's network 10.<second>.0.0/16
// (on any VNI: h's VTEP MAC is the same on all of its devices).
func (h vxHost) peer(second byte) Peer {
	return Peer{Slice: h.slice(second), Gateway: h.slice(second).Addr(), VTEPMAC: VTEPMAC(h.underlay()), Underlay: h.underlay()}
}

// sandboxAddr is h's sandbox's address in 10.<second>.n.0/24.
func (h vxHost) sandboxAddr(second byte) netip.Addr {
	return netip.AddrFrom4([4]byte{10, second, byte(h.n), 2})
}

func (h vxHost) run(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := runIn(t, h.ns, argv...)
	if err != nil {
		t.Fatalf("%v on host %d: %v\n%s", argv, h.n, err, out)
	}
	return out
}

// newVXHosts makes the two hosts and the underlay between them.
func newVXHosts(t testing.TB) (vxHost, vxHost) {
	t.Helper()
	h1, h2 := vxHost{ns: testutil.NewNetns(t), n: 1}, vxHost{ns: testutil.NewNetns(t), n: 2}
	for _, h := range []*vxHost{&h1, &h2} {
		if err := testutil.InNetns(t, h.ns, func() (err error) {
			h.l, err = New(slog.New(slog.DiscardHandler))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	hd, err := handleAtPath(h1.ns, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hd.Close()
	ns2, err := vnetns.GetFromPath(h2.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer ns2.Close()
	if err := hd.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "under0", MTU: 1500}, PeerName: "under0", PeerNamespace: netlink.NsFd(ns2)}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []vxHost{h1, h2} {
		h.run(t, "ip", "addr", "add", h.underlay().String()+"/24", "dev", "under0")
		h.run(t, "ip", "link", "set", "under0", "up")
		if err := h.l.SetIPForward(); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(h.run(t, "sysctl", "-n", "net.ipv4.ip_forward")); got != "1" {
			t.Fatalf("host %d: ip_forward is %s", h.n, got)
		}
	}
	return h1, h2
}

// network makes, on h, the bridge br<vni> with the slice's gateway, a
// sandbox on it (10.<second>.n.2, default route via the gateway) and the
// VXLAN device; it returns the sandbox's namespace.
func (h vxHost) network(t testing.TB, vni int, second byte) string {
	t.Helper()
	v := h.vxlan(vni, second)
	if _, err := h.l.EnsureVXLAN(v); err != nil {
		t.Fatal(err)
	}
	gw := netip.PrefixFrom(h.slice(second).Addr().Next(), 24)
	br := fmt.Sprintf("br%d", vni)
	if _, err := h.l.EnsureBridge(Bridge{Name: br, Gateways: []netip.Prefix{gw}, MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	sb := testutil.NewNetns(t)
	a := h.sandboxAddr(second).As4()
	if _, err := h.l.AddVeth(Veth{HostName: fmt.Sprintf("ve%d", vni), Bridge: br, Iface: Iface{Netns: sb, IfName: "eth0", MTU: 1450,
		MAC:   net.HardwareAddr{2, 0x42, a[0], a[1], a[2], a[3]},
		Addrs: []Address{{Addr: netip.PrefixFrom(h.sandboxAddr(second), 24), Gateway: gw.Addr()}}, DefaultRoute: true}}); err != nil {
		t.Fatal(err)
	}
	return sb
}

func vxPing(t testing.TB, ns string, to netip.Addr) error {
	t.Helper()
	out, err := runIn(t, ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", to.String())
	if err != nil {
		return fmt.Errorf("ping %s: %v\n%s", to, err, out)
	}
	return nil
}

// transfer sends n bytes over TCP from the sandbox at fromNs to to:5001
// in the sandbox at toNs, and returns what the receiver saw: the peer's
// address and the bytes' digest.
func transfer(t testing.TB, fromNs, toNs string, to netip.Addr, n int) (netip.Addr, [32]byte) {
	t.Helper()
	var ln net.Listener
	if err := testutil.InNetns(t, toNs, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(to, 5001).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type seen struct {
		from netip.Addr
		sum  [32]byte
		err  error
	}
	got := make(chan seen, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- seen{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		h := sha256.New()
		_, err = io.Copy(h, c)
		var s seen
		s.from = c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		copy(s.sum[:], h.Sum(nil))
		s.err = err
		got <- s
	}()
	data := bytes.Repeat([]byte("pontoon vxlan "), n/14+1)[:n]
	if err := testutil.InNetns(t, fromNs, func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(to, 5001).String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		_, err = c.Write(data)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.err != nil {
		t.Fatal(s.err)
	}
	if s.sum != sha256.Sum256(data) {
		t.Fatalf("the receiver got other bytes than were sent")
	}
	return s.from, s.sum
}

// entries lists, on h, the device's routes, neighbours and FDB entries as
// `ip` and `bridge` print them.
func (h vxHost) entries(t testing.TB, dev string) string {
	t.Helper()
	return h.run(t, "ip", "route", "show", "dev", dev) + h.run(t, "ip", "neigh", "show", "dev", dev) + h.run(t, "bridge", "fdb", "show", "dev", dev)
}

// vxAttrs are device dev's attributes on h, read now.
func vxAttrs(t testing.TB, h vxHost, dev string) *netlink.LinkAttrs {
	t.Helper()
	hd, err := handleAtPath(h.ns, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hd.Close()
	l, err := hd.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs()
}

// vxMAC is device dev's MAC on h.
func vxMAC(t testing.TB, h vxHost, dev string) string {
	return vxAttrs(t, h, dev).HardwareAddr.String()
}

// vxRx is how many packets device dev on h has received.
func vxRx(t testing.TB, h vxHost, dev string) uint64 {
	return vxAttrs(t, h, dev).Statistics.RxPackets
}

// VTEPMAC: one MAC per node, from its underlay address alone; locally
// administered, unicast, the same every time and for every VNI, another
// for another node. The value is pinned: a node derives it again after
// losing its state, and it must get what it had.
func TestVTEPMAC(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	m := VTEPMAC(a)
	if len(m) != 6 || m[0]&0x01 != 0 || m[0]&0x02 == 0 {
		t.Errorf("VTEPMAC(%s) = %s: want 6 bytes, unicast, locally administered", a, m)
	}
	if m.String() != "4e:ed:53:10:dc:7c" {
		t.Errorf("VTEPMAC(%s) = %s, want 4e:ed:53:10:dc:7c: the derivation changed, and with it every node's MAC", a, m)
	}
	if again := VTEPMAC(a); again.String() != m.String() {
		t.Errorf("VTEPMAC(%s) twice: %s, then %s", a, m, again)
	}
	if mapped := VTEPMAC(netip.AddrFrom16(a.As16())); mapped.String() != m.String() {
		t.Errorf("VTEPMAC of %s as ::ffff:%s: %s, want %s", a, a, mapped, m)
	}
	if other := VTEPMAC(b); other.String() == m.String() {
		t.Errorf("nodes %s and %s have one VTEP MAC %s", a, b, m)
	}
	if v6 := VTEPMAC(netip.MustParseAddr("2001:db8::1")); len(v6) != 6 || v6[0]&0x03 != 0x02 {
		t.Errorf("VTEPMAC(2001:db8::1) = %s", v6)
	}

	// Every VXLAN device of a host gets it when given no MAC; one given
	// is kept.
	f := NewFake()
	f.AddHostLink(LinkInfo{Name: "eth0", MTU: 1500})
	h := vxHost{n: 1}
	for _, vni := range []int{42, 43} {
		if _, err := f.EnsureVXLAN(VXLAN{Name: fmt.Sprintf("vx%d", vni), VNI: vni, Local: h.underlay(), Dev: "eth0"}); err != nil {
			t.Fatal(err)
		}
	}
	mine := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	if _, err := f.EnsureVXLAN(VXLAN{Name: "vx44", VNI: 44, Local: h.underlay(), Dev: "eth0", MAC: mine}); err != nil {
		t.Fatal(err)
	}
	dump := f.Dump()
	for _, want := range []string{"vxlan vx42 id 42 local 192.0.2.1 dev eth0 dstport 4789 nolearning mtu 1450 mac " + m.String(),
		"vxlan vx43 id 43 local 192.0.2.1 dev eth0 dstport 4789 nolearning mtu 1450 mac " + m.String(),
		"vxlan vx44 id 44 local 192.0.2.1 dev eth0 dstport 4789 nolearning mtu 1450 mac " + mine.String()} {
		if !strings.Contains(dump, want) {
			t.Errorf("Dump lacks %q:\n%s", want, dump)
		}
	}
}

func TestVXLANOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	h1, h2 := newVXHosts(t)
	sb1, sb2 := h1.network(t, 42, 200), h2.network(t, 42, 200)
	if err := h1.l.SetPeers("vx42", []Peer{h2.peer(200)}); err != nil {
		t.Fatal(err)
	}
	if err := h2.l.SetPeers("vx42", []Peer{h1.peer(200)}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []vxHost{h1, h2} {
		if d := h.l.CheckVXLAN(h.vxlan(42, 200)); d != nil {
			t.Errorf("host %d: CheckVXLAN after setup: %q", h.n, d)
		}
		other := h2
		if h.n == 2 {
			other = h1
		}
		if d := h.l.CheckPeers("vx42", []Peer{other.peer(200)}); d != nil {
			t.Errorf("host %d: CheckPeers after setup: %q", h.n, d)
		}
	}

	t.Run("device", func(t *testing.T) {
		hd, err := handleAtPath(h1.ns, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer hd.Close()
		l, err := hd.LinkByName("vx42")
		if err != nil {
			t.Fatal(err)
		}
		vx := l.(*netlink.Vxlan)
		under, _ := hd.LinkByName("under0")
		if vx.MTU != under.Attrs().MTU-50 || vx.MTU != 1450 {
			t.Errorf("vx42 MTU %d, underlay %d: want the underlay's − 50", vx.MTU, under.Attrs().MTU)
		}
		if vx.VxlanId != 42 || vx.Port != 4789 || vx.VtepDevIndex != under.Attrs().Index || !vx.SrcAddr.Equal(net.IP{192, 0, 2, 1}) {
			t.Errorf("vx42: id %d port %d link %d local %s", vx.VxlanId, vx.Port, vx.VtepDevIndex, vx.SrcAddr)
		}
		if vx.HardwareAddr.String() != VTEPMAC(h1.underlay()).String() {
			t.Errorf("vx42 MAC %s, want %s", vx.HardwareAddr, VTEPMAC(h1.underlay()))
		}
		// Learning off, read from the raw IFLA_VXLAN_LEARNING attribute
		// (the library reports false for a missing one too).
		if learn, ok := vxlanAttr(t, h1.ns, l.Attrs().Index, nl.IFLA_VXLAN_LEARNING); !ok || len(learn) != 1 || learn[0] != 0 {
			t.Errorf("IFLA_VXLAN_LEARNING = %v (present %v), want [0]", learn, ok)
		}
		out := h1.run(t, "ip", "-d", "link", "show", "vx42")
		if !strings.Contains(out, "nolearning") || !strings.Contains(out, "addrgenmode none") {
			t.Errorf("ip -d link show vx42 lacks nolearning or addrgenmode none:\n%s", out)
		}
		if a := h1.run(t, "ip", "-o", "addr", "show", "dev", "vx42"); !strings.Contains(a, "inet 10.200.1.0/32") || strings.Contains(a, "inet6") {
			t.Errorf("vx42 addresses:\n%s", a)
		}
	})

	t.Run("traffic", func(t *testing.T) {
		if err := vxPing(t, sb1, h2.sandboxAddr(200)); err != nil {
			t.Fatal(err)
		}
		if err := vxPing(t, sb2, h1.sandboxAddr(200)); err != nil {
			t.Fatal(err)
		}
		// 4 MiB in segments of the overlay's MSS: the MTU is right, or
		// full-sized segments would not pass.
		from, _ := transfer(t, sb1, sb2, h2.sandboxAddr(200), 4<<20)
		if from != h1.sandboxAddr(200) {
			t.Errorf("host 2's sandbox saw the connection from %s, want %s (no NAT)", from, h1.sandboxAddr(200))
		}
		from, _ = transfer(t, sb2, sb1, h1.sandboxAddr(200), 1<<20)
		if from != h2.sandboxAddr(200) {
			t.Errorf("host 1's sandbox saw the connection from %s, want %s (no NAT)", from, h2.sandboxAddr(200))
		}
		// Nothing learnt: the device's FDB holds the one entry pontoon made.
		fdb := h1.run(t, "bridge", "fdb", "show", "dev", "vx42")
		want := fmt.Sprintf("%s dst 192.0.2.2 self permanent", VTEPMAC(h2.underlay()))
		if strings.TrimSpace(fdb) != want {
			t.Errorf("host 1 FDB of vx42:\n%s\nwant only %q", fdb, want)
		}
		neigh := h1.run(t, "ip", "neigh", "show", "dev", "vx42")
		if strings.TrimSpace(neigh) != fmt.Sprintf("10.200.2.0 lladdr %s PERMANENT", VTEPMAC(h2.underlay())) {
			t.Errorf("host 1 neighbours of vx42:\n%s", neigh)
		}
	})

	t.Run("peers come and go", func(t *testing.T) {
		h3 := vxHost{n: 3}
		before := h1.entries(t, "vx42")
		if err := h1.l.SetPeers("vx42", []Peer{h2.peer(200), h3.peer(200)}); err != nil {
			t.Fatal(err)
		}
		got := h1.entries(t, "vx42")
		for _, want := range []string{"10.200.3.0/24 via 10.200.3.0 onlink", "10.200.3.0 lladdr " + VTEPMAC(h3.underlay()).String() + " PERMANENT",
			VTEPMAC(h3.underlay()).String() + " dst 192.0.2.3 self permanent"} {
			if !strings.Contains(got, want) {
				t.Errorf("after adding host 3, no %q in\n%s", want, got)
			}
		}
		if d := h1.l.CheckPeers("vx42", []Peer{h2.peer(200)}); len(d) != 3 {
			t.Errorf("CheckPeers without host 3 should report its 3 entries: %q", d)
		}
		if err := h1.l.SetPeers("vx42", []Peer{h2.peer(200)}); err != nil {
			t.Fatal(err)
		}
		if after := h1.entries(t, "vx42"); after != before {
			t.Errorf("after removing host 3:\n%s\nwant as before:\n%s", after, before)
		}
		// A changed peer (new underlay address) is replaced, not added.
		moved := h2.peer(200)
		moved.Underlay = netip.MustParseAddr("192.0.2.22")
		if err := h1.l.SetPeers("vx42", []Peer{moved}); err != nil {
			t.Fatal(err)
		}
		if fdb := h1.run(t, "bridge", "fdb", "show", "dev", "vx42"); strings.Count(fdb, "\n") != 1 || !strings.Contains(fdb, "dst 192.0.2.22") {
			t.Errorf("FDB after the peer moved:\n%s", fdb)
		}
		if err := h1.l.SetPeers("vx42", []Peer{h2.peer(200)}); err != nil {
			t.Fatal(err)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr(200)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		before := h1.entries(t, "vx42")
		twin := vxHost{n: 4}.peer(200)
		twin.VTEPMAC = h2.peer(200).VTEPMAC
		for _, peers := range [][]Peer{
			{h2.peer(200), twin}, // two nodes, one MAC
			{{Slice: netip.MustParsePrefix("10.200.5.0/24"), Gateway: netip.MustParseAddr("10.200.6.0"), VTEPMAC: twin.VTEPMAC, Underlay: twin.Underlay}},                                         // gateway outside the slice
			{h2.peer(200), {Slice: netip.MustParsePrefix("10.200.2.128/25"), Gateway: netip.MustParseAddr("10.200.2.128"), VTEPMAC: net.HardwareAddr{2, 1, 2, 3, 4, 5}, Underlay: twin.Underlay}}, // overlapping slices
			{{Slice: h2.slice(200), Gateway: h2.slice(200).Addr(), VTEPMAC: h2.peer(200).VTEPMAC, Underlay: netip.MustParseAddr("2001:db8::2")}},                                                  // another family than the device's
		} {
			if err := h1.l.SetPeers("vx42", peers); err == nil {
				t.Errorf("SetPeers(%v) succeeded", peers)
			} else {
				t.Log(err)
			}
		}
		if err := h1.l.SetPeers("nosuch", nil); err == nil {
			t.Error("SetPeers on a missing device succeeded")
		}
		if err := h1.l.SetPeers("br42", nil); err == nil {
			t.Error("SetPeers on a bridge succeeded")
		}
		if _, err := h1.l.EnsureVXLAN(VXLAN{Name: "vx42", VNI: 42, Local: h1.underlay(), Dev: "under0", MTU: 1460}); err == nil {
			t.Error("EnsureVXLAN with an MTU above the underlay's − 50 succeeded")
		}
		if after := h1.entries(t, "vx42"); after != before {
			t.Errorf("bad input changed the device's entries:\n%s\nwant\n%s", after, before)
		}
		if d := h1.l.CheckVXLAN(h1.vxlan(42, 200)); d != nil {
			t.Errorf("bad input changed the device: %q", d)
		}
	})

	t.Run("check and repair", func(t *testing.T) {
		want := []Peer{h2.peer(200)}
		h1.run(t, "bridge", "fdb", "del", h2.peer(200).VTEPMAC.String(), "dev", "vx42", "self")
		d := h1.l.CheckPeers("vx42", want)
		if len(d) != 1 || !strings.Contains(d[0], "no FDB entry "+h2.peer(200).VTEPMAC.String()) {
			t.Errorf("CheckPeers after the FDB entry was removed: %q", d)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr(200)); err == nil {
			t.Error("ping went through without the FDB entry")
		}
		h1.run(t, "ip", "link", "set", "vx42", "mtu", "1400")
		h1.run(t, "ip", "addr", "add", "10.200.9.0/32", "dev", "vx42")
		if d := h1.l.CheckVXLAN(h1.vxlan(42, 200)); len(d) != 2 {
			t.Errorf("CheckVXLAN after MTU and address changes: %q", d)
		}
		idx, _ := h1.l.LinkIndex("vx42")
		if got, err := h1.l.EnsureVXLAN(h1.vxlan(42, 200)); err != nil || got != idx {
			t.Fatalf("EnsureVXLAN repair: %d, %v (was %d: repaired in place)", got, err, idx)
		}
		if err := h1.l.SetPeers("vx42", want); err != nil {
			t.Fatal(err)
		}
		if d := append(h1.l.CheckVXLAN(h1.vxlan(42, 200)), h1.l.CheckPeers("vx42", want)...); d != nil {
			t.Errorf("after repair: %q", d)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr(200)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("second network: one VTEP MAC, isolated by VNI", func(t *testing.T) {
		sb1b, sb2b := h1.network(t, 43, 201), h2.network(t, 43, 201)
		// Both devices of a host carry the host's one VTEP MAC, and the
		// peers of both name the other host by the same MAC.
		for _, h := range []vxHost{h1, h2} {
			for _, dev := range []string{"vx42", "vx43"} {
				if got := vxMAC(t, h, dev); got != VTEPMAC(h.underlay()).String() {
					t.Errorf("host %d: %s has MAC %s, want the host's VTEP MAC %s", h.n, dev, got, VTEPMAC(h.underlay()))
				}
			}
		}
		if err := h1.l.SetPeers("vx43", []Peer{h2.peer(201)}); err != nil {
			t.Fatal(err)
		}
		if err := h2.l.SetPeers("vx43", []Peer{h1.peer(201)}); err != nil {
			t.Fatal(err)
		}
		if err := vxPing(t, sb1b, h2.sandboxAddr(201)); err != nil {
			t.Fatalf("VNI 43's own traffic: %v", err)
		}
		if from, _ := transfer(t, sb2b, sb1b, h1.sandboxAddr(201), 1<<20); from != h2.sandboxAddr(201) {
			t.Errorf("VNI 43: seen from %s", from)
		}
		// One MAC, two FDBs: host 2's MAC is in each device's own table,
		// and deleting it from vx43's leaves vx42's (and its traffic).
		mac := VTEPMAC(h2.underlay()).String()
		for _, dev := range []string{"vx42", "vx43"} {
			if fdb := strings.TrimSpace(h1.run(t, "bridge", "fdb", "show", "dev", dev)); fdb != mac+" dst 192.0.2.2 self permanent" {
				t.Errorf("host 1 FDB of %s:\n%s\nwant only host 2's MAC", dev, fdb)
			}
		}
		h1.run(t, "bridge", "fdb", "del", mac, "dev", "vx43", "self")
		if d := h1.l.CheckPeers("vx42", []Peer{h2.peer(200)}); d != nil {
			t.Errorf("deleting vx43's FDB entry changed vx42's: %q", d)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr(200)); err != nil {
			t.Errorf("network 42 without vx43's FDB entry: %v", err)
		}
		if err := vxPing(t, sb1b, h2.sandboxAddr(201)); err == nil {
			t.Error("network 43 passed without its FDB entry: vx43 used vx42's")
		}
		if err := h1.l.SetPeers("vx43", []Peer{h2.peer(201)}); err != nil {
			t.Fatal(err)
		}

		// Host 1 sends network 42's traffic for host 2 through vx43: the
		// very frame VNI 42 carried (same inner MACs and addresses, host
		// 2's VTEP MAC), on VNI 43. Host 2 hands it to vx43, never to
		// vx42: the VNI picks the device. (vx43 takes the frame, its MAC
		// being the host's, and host 2 routes it on like any packet of
		// network 43: keeping it out of network 42 is the firewall's
		// isolation, which counts vx43 as network 43's link.)
		if err := h1.l.SetPeers("vx42", nil); err != nil {
			t.Fatal(err)
		}
		if err := h1.l.SetPeers("vx43", []Peer{h2.peer(200)}); err != nil {
			t.Fatal(err)
		}
		rx42, rx43 := vxRx(t, h2, "vx42"), vxRx(t, h2, "vx43")
		_ = vxPing(t, sb1, h2.sandboxAddr(200)) // what matters is where it arrived
		if got := vxRx(t, h2, "vx42"); got != rx42 {
			t.Errorf("host 2's vx42 received %d packets sent on VNI 43", got-rx42)
		}
		if got := vxRx(t, h2, "vx43"); got == rx43 {
			t.Error("host 2's vx43 received nothing: the frames did not arrive at all, the test proves nothing")
		}
		// Back to normal: each network on its own VNI.
		if err := h1.l.SetPeers("vx43", []Peer{h2.peer(201)}); err != nil {
			t.Fatal(err)
		}
		if err := h1.l.SetPeers("vx42", []Peer{h2.peer(200)}); err != nil {
			t.Fatal(err)
		}
		if d := h1.l.CheckPeers("vx43", []Peer{h2.peer(201)}); d != nil {
			t.Errorf("vx43 after SetPeers: %q", d)
		}
		if err := vxPing(t, sb1, h2.sandboxAddr(200)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("remade when the VNI changes", func(t *testing.T) {
		idx, _ := h1.l.LinkIndex("vx43")
		v := h1.vxlan(44, 201)
		v.Name = "vx43"
		got, err := h1.l.EnsureVXLAN(v)
		if err != nil {
			t.Fatal(err)
		}
		if got == idx {
			t.Error("a device with another VNI was kept")
		}
		if d := h1.l.CheckVXLAN(v); d != nil {
			t.Errorf("after remaking: %q", d)
		}
		if e := h1.entries(t, "vx43"); e != "" {
			t.Errorf("a remade device has entries:\n%s", e)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := h1.l.DeleteVXLAN("br42"); err == nil {
			t.Error("DeleteVXLAN deleted a bridge")
		}
		for _, name := range []string{"vx42", "vx43", "vx42"} {
			if err := h1.l.DeleteVXLAN(name); err != nil {
				t.Fatal(err)
			}
		}
		if idx, _ := h1.l.LinkIndex("vx42"); idx != 0 {
			t.Error("vx42 still there")
		}
		if r := h1.run(t, "ip", "route", "show", "10.200.2.0/24"); r != "" {
			t.Errorf("route left behind: %s", r)
		}
	})
}

// vxlanAttr reads one IFLA_VXLAN_* attribute of link idx as the kernel
// sends it.
func vxlanAttr(t testing.TB, nsPath string, idx int, typ uint16) ([]byte, bool) {
	t.Helper()
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	req.AddData(msg)
	s, err := nl.GetNetlinkSocketAt(ns, vnetns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var data []byte
	if err := dump(s, req, func(m []byte) { data = m }); err != nil {
		t.Fatal(err)
	}
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attrs {
		if a.Attr.Type != unix.IFLA_LINKINFO {
			continue
		}
		info, _ := nl.ParseRouteAttr(a.Value)
		for _, i := range info {
			if i.Attr.Type != nl.IFLA_INFO_DATA {
				continue
			}
			d, _ := nl.ParseRouteAttr(i.Value)
			for _, x := range d {
				if x.Attr.Type == typ {
					return x.Value, true
				}
			}
		}
	}
	return nil, false
}

// benchPeers is a 50-node cluster as one node sees it: 49 … the 50 other
// nodes, slices 10.200.2.0/24 … 10.200.51.0/24.
func benchPeers(k int) []Peer {
	out := make([]Peer, k)
	for i := range out {
		out[i] = vxHost{n: i + 2}.peer(200)
	}
	return out
}

// BenchmarkSetPeers measures SetPeers with 50 peers on a device that has
// none (from scratch: 150 entries in one batch after three dumps), on one
// that has them all (no change: the dumps only), and, for comparison, the
// same 150 entries made with one library call each.
//
//	go test -run '^$' -bench SetPeers ./internal/link/
func BenchmarkSetPeers(b *testing.B) {
	testutil.RequireRoot(b)
	h := vxHost{ns: testutil.NewNetns(b), n: 1}
	if err := testutil.InNetns(b, h.ns, func() (err error) {
		h.l, err = New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	h.run(b, "ip", "link", "add", "under0", "type", "veth", "peer", "name", "under1") // no dummy driver here
	h.run(b, "ip", "addr", "add", "192.0.2.1/24", "dev", "under0")
	h.run(b, "ip", "link", "set", "under0", "up")
	idx, err := h.l.EnsureVXLAN(h.vxlan(42, 200))
	if err != nil {
		b.Fatal(err)
	}
	peers := benchPeers(50)
	clear := func(b *testing.B) {
		b.StopTimer()
		if err := h.l.SetPeers("vx42", nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.Run("scratch", func(b *testing.B) {
		for b.Loop() {
			clear(b)
			if err := h.l.SetPeers("vx42", peers); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("nochange", func(b *testing.B) {
		if err := h.l.SetPeers("vx42", peers); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := h.l.SetPeers("vx42", peers); err != nil {
				b.Fatal(err)
			}
		}
		if d := h.l.CheckPeers("vx42", peers); d != nil {
			b.Fatal(d)
		}
	})
	b.Run("per-entry-calls", func(b *testing.B) {
		hd, err := handleAtPath(h.ns, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer hd.Close()
		for b.Loop() {
			clear(b)
			for _, p := range peers {
				if err := hd.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, HardwareAddr: p.VTEPMAC, IP: p.Underlay.AsSlice()}); err != nil {
					b.Fatal(err)
				}
				if err := hd.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, HardwareAddr: p.VTEPMAC, IP: p.Gateway.AsSlice()}); err != nil {
					b.Fatal(err)
				}
				if err := hd.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: ipNet(p.Slice), Gw: p.Gateway.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}); err != nil {
					b.Fatal(err)
				}
			}
		}
		if d := h.l.CheckPeers("vx42", peers); d != nil {
			b.Fatal(d)
		}
	})
}
