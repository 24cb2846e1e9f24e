package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"pontoon/internal/testutil"
)

// raLAN is a throwaway host namespace whose uplink up0 is cabled to a
// router namespace that sends router advertisements from fe80::1 and
// fe80::2 (r0, no DAD: usable at once).
type raLAN struct {
	host, router string
}

func newRALAN(t *testing.T) raLAN {
	t.Helper()
	lan := raLAN{host: testutil.NewNetns(t), router: testutil.NewNetns(t)}
	for _, c := range []struct {
		ns   string
		argv []string
	}{
		{lan.host, []string{"ip", "link", "add", "up0", "type", "veth", "peer", "name", "r0", "netns", lan.router}},
		{lan.router, []string{"sysctl", "-qw", "net.ipv6.conf.r0.accept_dad=0"}},
		{lan.router, []string{"ip", "addr", "add", "fe80::1/64", "dev", "r0", "nodad"}},
		{lan.router, []string{"ip", "addr", "add", "fe80::2/64", "dev", "r0", "nodad"}},
		{lan.router, []string{"ip", "link", "set", "r0", "up"}},
		// accept_ra=1 is the kernel's default; said here because it is
		// what the test is about.
		{lan.host, []string{"sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=1"}},
		{lan.host, []string{"ip", "link", "set", "up0", "up"}},
	} {
		if out, err := run(t, c.ns, c.argv...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c.argv, " "), err, out)
		}
	}
	return lan
}

// sendRA sends a router advertisement (router lifetime 1800 s, no
// options) from src on r0 to all nodes.
func (lan raLAN) sendRA(t *testing.T, src string) {
	t.Helper()
	err := testutil.InNetns(t, lan.router, func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifc, err := netlink.LinkByName("r0")
		if err != nil {
			return err
		}
		idx := ifc.Attrs().Index
		// Neighbour discovery drops RAs whose hop limit is not 255.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: netip.MustParseAddr(src).As16(), ZoneId: uint32(idx)}); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
		ra := make([]byte, 16) // the kernel fills in the ICMPv6 checksum
		ra[0], ra[4] = 134, 64
		binary.BigEndian.PutUint16(ra[6:], 1800)
		return unix.Sendto(fd, ra, 0, &unix.SockaddrInet6{Addr: netip.MustParseAddr("ff02::1").As16(), ZoneId: uint32(idx)})
	})
	if err != nil {
		t.Fatalf("send an RA from %s: %v", src, err)
	}
}

// defaultVia reports whether the host has an IPv6 default route via gw on
// up0, and its protocol.
func (lan raLAN) defaultVia(t *testing.T, gw string) (bool, netlink.RouteProtocol) {
	t.Helper()
	h := nsHandle(t, lan.host)
	routes, err := h.RouteList(nil, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if isDefault(r.Dst) && r.Gw.String() == gw {
			return true, r.Protocol
		}
	}
	return false, 0
}

// learn sends RAs from gw until the host has its default route (up0 may
// still be coming up when the first one arrives).
func (lan raLAN) learn(t *testing.T, gw string) {
	t.Helper()
	for range 50 {
		lan.sendRA(t, gw)
		if ok, proto := lan.defaultVia(t, gw); ok {
			if proto != unix.RTPROT_RA {
				t.Fatalf("default route via %s has protocol %s, want ra", gw, proto)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the host learned no default route via %s from RAs in 5 s", gw)
}

func readConf(t *testing.T, ns, link, key string) string {
	t.Helper()
	var v string
	if err := testutil.InNetns(t, ns, func() error {
		b, err := os.ReadFile(confPath(link, key))
		v = strings.TrimSpace(string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// The control for TestKernelSetIPv6Forward: turning forwarding on by hand
// on a host whose uplink has accept_ra=1 deletes the default route it
// learned from RAs at once. Without this, keeping the route would prove
// nothing.
func TestKernelIPv6ForwardingDropsRARoutes(t *testing.T) {
	lan := newRALAN(t)
	lan.learn(t, "fe80::1")
	if out, err := run(t, lan.host, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if ok, _ := lan.defaultVia(t, "fe80::1"); ok {
		t.Fatal("the RA-learned default route survived forwarding with accept_ra=1: this kernel does not purge them, so TestKernelSetIPv6Forward proves less")
	}
}

// SetIPv6Forward on a host with an RA-learned default route: the uplinks'
// accept_ra goes from 1 to 2 (and only theirs), forwarding is on, the
// route is still there, RAs are still taken, a warning names each change,
// and a second call changes nothing.
func TestKernelSetIPv6Forward(t *testing.T) {
	lan := newRALAN(t)
	logs := &testutil.LockedBuffer{}
	var l Interface
	if err := testutil.InNetns(t, lan.host, func() (err error) {
		l, err = New(slog.New(slog.NewTextHandler(logs, nil)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{gw0}, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		// up1: an IPv4-only uplink with accept_ra=1.
		{"ip", "link", "add", "up1", "type", "veth", "peer", "name", "up1p"},
		{"ip", "addr", "add", "198.51.100.1/24", "dev", "up1"},
		{"ip", "link", "set", "up1p", "up"},
		{"ip", "link", "set", "up1", "up"},
		{"ip", "route", "add", "default", "via", "198.51.100.2"},
		// up2: a static IPv6 default route, RAs off: left alone.
		{"ip", "link", "add", "up2", "type", "veth", "peer", "name", "up2p"},
		{"sysctl", "-qw", "net.ipv6.conf.up2.accept_ra=0"},
		{"ip", "link", "set", "up2p", "up"},
		{"ip", "link", "set", "up2", "up"},
		{"ip", "-6", "addr", "add", "2001:db8:2::1/64", "dev", "up2", "nodad"},
		{"ip", "-6", "route", "add", "default", "via", "2001:db8:2::ff", "dev", "up2", "metric", "2048"},
		// side0: accept_ra=1 but no default route: not an uplink.
		{"ip", "link", "add", "side0", "type", "veth", "peer", "name", "side0p"},
		{"ip", "link", "set", "side0", "up"},
	} {
		if out, err := run(t, lan.host, argv...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	lan.learn(t, "fe80::1")

	before, err := l.IPv6Host()
	if err != nil {
		t.Fatal(err)
	}
	wantBefore := IPv6Host{Available: true, Uplinks: []IPv6Uplink{
		{Name: "up0", AcceptRA: 1, DefaultRoute6: "ra"},
		{Name: "up1", AcceptRA: 1},
		{Name: "up2", AcceptRA: 0, DefaultRoute6: "boot"},
	}}
	if !equalIPv6Host(before, wantBefore) {
		t.Errorf("IPv6Host before:\n%+v\nwant\n%+v", before, wantBefore)
	}

	var changes []SysctlChange
	if err := testutil.InNetns(t, lan.host, func() (err error) {
		// Called from inside the host namespace too, so that a bug in the
		// adapter's own namespace switch cannot reach the machine's.
		changes, err = l.SetIPv6Forward()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, fmt.Sprintf("%s %s %s→%s", c.Name, c.Link, c.From, c.To))
	}
	want := []string{
		"net.ipv6.conf.up0.accept_ra up0 1→2",
		"net.ipv6.conf.up1.accept_ra up1 1→2",
		"net.ipv6.conf.all.forwarding  0→1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("changes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for link, want := range map[string]string{"up0": "2", "up1": "2", "up2": "0", "side0": "1", "br0": "0"} {
		if v := readConf(t, lan.host, link, "accept_ra"); v != want {
			t.Errorf("accept_ra of %s is %s, want %s", link, v, want)
		}
	}
	if v := readConf(t, lan.host, "all", "forwarding"); v != "1" {
		t.Errorf("all.forwarding is %s", v)
	}
	if ok, _ := lan.defaultVia(t, "fe80::1"); !ok {
		t.Error("the RA-learned default route via fe80::1 is gone")
	}
	if ok, _ := lan.defaultVia(t, "2001:db8:2::ff"); !ok {
		t.Error("the static default route via 2001:db8:2::ff is gone")
	}
	// RAs are still taken with forwarding on: a second router is learned.
	lan.learn(t, "fe80::2")

	for _, link := range []string{"up0", "up1"} {
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "net.ipv6.conf."+link+".accept_ra") {
			t.Errorf("no warning names %s:\n%s", link, logs)
		}
	}

	after, err := l.IPv6Host()
	if err != nil {
		t.Fatal(err)
	}
	wantAfter := IPv6Host{Available: true, Forwarding: true, Uplinks: []IPv6Uplink{
		{Name: "up0", AcceptRA: 2, Forwarding: true, DefaultRoute6: "ra"},
		{Name: "up1", AcceptRA: 2, Forwarding: true},
		{Name: "up2", AcceptRA: 0, Forwarding: true, DefaultRoute6: "boot"},
	}}
	if !equalIPv6Host(after, wantAfter) {
		t.Errorf("IPv6Host after:\n%+v\nwant\n%+v", after, wantAfter)
	}

	if err := testutil.InNetns(t, lan.host, func() (err error) {
		changes, err = l.SetIPv6Forward()
		return err
	}); err != nil || len(changes) != 0 {
		t.Errorf("second SetIPv6Forward: %v, %v; want no change", changes, err)
	}
}

// With IPv6 disabled the adapter refuses and changes nothing.
func TestKernelSetIPv6ForwardDisabled(t *testing.T) {
	lan := newRALAN(t)
	var l Interface
	if err := testutil.InNetns(t, lan.host, func() (err error) {
		l, err = New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, lan.host, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var err error
	var changes []SysctlChange
	_ = testutil.InNetns(t, lan.host, func() error { changes, err = l.SetIPv6Forward(); return nil })
	if !errors.Is(err, ErrIPv6Disabled) || !strings.Contains(err.Error(), "sysctl -w net.ipv6.conf.all.disable_ipv6=0") || changes != nil {
		t.Errorf("SetIPv6Forward with IPv6 disabled: %v, %v", changes, err)
	}
	if v := readConf(t, lan.host, "up0", "accept_ra"); v != "1" {
		t.Errorf("accept_ra of up0 became %s", v)
	}
	if v := readConf(t, lan.host, "all", "forwarding"); v != "0" {
		t.Errorf("forwarding became %s", v)
	}
}

func equalIPv6Host(a, b IPv6Host) bool {
	return a.Available == b.Available && a.Disabled == b.Disabled && a.DisabledForNew == b.DisabledForNew &&
		a.Forwarding == b.Forwarding && slices.Equal(a.Uplinks, b.Uplinks)
}

func TestPlanIPv6Forward(t *testing.T) {
	ups := []IPv6Uplink{
		{Name: "eth0", AcceptRA: 1, DefaultRoute6: "ra"},
		{Name: "eth0.100", AcceptRA: 1},
		{Name: "wan", AcceptRA: 2, DefaultRoute6: "ra"},
		{Name: "lan", AcceptRA: 0},
	}
	for _, c := range []struct {
		name string
		h    IPv6Host
		want []string
		err  error
	}{
		{"uplinks with accept_ra=1 first, forwarding last", IPv6Host{Available: true, Uplinks: ups},
			[]string{"net.ipv6.conf.eth0.accept_ra 1 → 2", "net.ipv6.conf.eth0/100.accept_ra 1 → 2", "net.ipv6.conf.all.forwarding 0 → 1"}, nil},
		{"no uplink", IPv6Host{Available: true}, []string{"net.ipv6.conf.all.forwarding 0 → 1"}, nil},
		{"already forwarding: the owner's settings stay", IPv6Host{Available: true, Forwarding: true, Uplinks: ups}, nil, nil},
		{"disabled", IPv6Host{Available: true, Disabled: true, Uplinks: ups}, nil, ErrIPv6Disabled},
		{"no IPv6 in the kernel", IPv6Host{}, nil, ErrIPv6Unavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan, err := planIPv6Forward(c.h)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			var got []string
			for _, p := range plan {
				s := p.String()
				got = append(got, s[:strings.Index(s, " (")])
				if p.Why == "" {
					t.Errorf("%s has no reason", p.Name)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("plan %q, want %q", got, c.want)
			}
		})
	}
}

// The fake makes the same changes on its state.
func TestFakeSetIPv6Forward(t *testing.T) {
	f := NewFake()
	f.IPv6.Uplinks = []IPv6Uplink{{Name: "eth0", AcceptRA: 1, DefaultRoute6: "ra"}, {Name: "eth1", AcceptRA: 0}}
	ch, err := f.SetIPv6Forward()
	if err != nil || len(ch) != 2 {
		t.Fatalf("SetIPv6Forward = %v, %v", ch, err)
	}
	h, _ := f.IPv6Host()
	want := IPv6Host{Available: true, Forwarding: true, Uplinks: []IPv6Uplink{
		{Name: "eth0", AcceptRA: 2, Forwarding: true, DefaultRoute6: "ra"}, {Name: "eth1", AcceptRA: 0, Forwarding: true}}}
	if !equalIPv6Host(h, want) {
		t.Errorf("after: %+v, want %+v", h, want)
	}
	if ch, err := f.SetIPv6Forward(); err != nil || len(ch) != 0 {
		t.Errorf("second call: %v, %v", ch, err)
	}
	f.IPv6.Uplinks[0].AcceptRA = 1
	if h, _ := f.IPv6Host(); !h.Uplinks[0].RAsIgnored() {
		t.Error("accept_ra=1 with forwarding: RAs not reported ignored")
	}
}
