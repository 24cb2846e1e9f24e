package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Host routes: the kernel half of a host-gw overlay (issue #13). Each host
// has a slice of the network's range on its bridge; for each other host
// (slice S, underlay address U, on this host's underlay device D, which
// shares an L2 segment with U) it has exactly
//
//	S via U dev D proto pontoon   (main table)
//
// and nothing else: no tunnel, no encapsulation, the underlay's MTU.
//
// Several host-gw networks share the underlay device: each call manages
// the routes inside one prefix (the network's whole range, which no other
// cluster network overlaps), so one network's sync never removes
// another's routes.
//
// The routes carry pontoon's route protocol number (RouteProtocol, shown
// by `ip route` as "proto 112"): SetHostRoutes reads, replaces and deletes
// only routes of that protocol on D, so the kernel's own routes on D
// (proto kernel), the DHCP default route (proto dhcp) and what a person
// added (proto boot/static) are never touched.
//
// Kernel behaviour to know (fib_check_nh, 6.18): a gateway that is not
// inside one of D's directly connected prefixes is refused with
// ENETUNREACH ("Nexthop has invalid gateway"), unless the route is onlink —
// and an onlink route to a host on another segment would send frames to
// an address nobody on D's segment answers ARP for. So a host on another
// L2 segment is refused before the kernel is asked (ErrNotOnSegment), with
// the reason, and the other hosts' routes are programmed regardless.

// RouteProtocol marks pontoon's host routes (rtm_protocol). Not one of
// iproute2's registered numbers (/etc/iproute2/rt_protos).
const RouteProtocol = 112

// HostGWRoute is one route of a host-gw overlay: Dst (a remote host's slice)
// via Via (its underlay address). Peer names whose it is (the remote
// node), for messages.
type HostGWRoute struct {
	Dst  netip.Prefix
	Via  netip.Addr
	Peer string
}

func (r HostGWRoute) String() string { return fmt.Sprintf("%s via %s", r.Dst, r.Via) }

// ErrNotOnSegment says that a host route's gateway is not on the device's
// L2 segment (inside none of its directly connected prefixes).
var ErrNotOnSegment = errors.New("not on the underlay's L2 segment")

// NotOnSegmentError is a host route refused because its gateway is not on
// the device's segment. errors.Is(err, ErrNotOnSegment) is true.
type NotOnSegmentError struct {
	Dev       string
	Route     HostGWRoute
	Connected []netip.Prefix // the device's prefixes
}

func (e *NotOnSegmentError) Error() string {
	who := "a remote host"
	if e.Route.Peer != "" {
		who = "node " + e.Route.Peer
	}
	return fmt.Sprintf("host-gw: %s (underlay address %s, slice %s) is not on %s's L2 segment (%s's prefixes: %v): host-gw routes go straight to a host's underlay address, so every node must share one segment; use --mode vxlan for this network, or put the node on %s's segment",
		who, e.Route.Via, e.Route.Dst, e.Dev, e.Dev, e.Connected, e.Dev)
}

func (e *NotOnSegmentError) Unwrap() error { return ErrNotOnSegment }

// checkHostRoutes refuses a route list that cannot be programmed on any
// device: within a prefix, each route complete and inside within, its
// gateway of its destination's family, no destination twice.
func checkHostRoutes(dev string, within netip.Prefix, routes []HostGWRoute) error {
	if !within.IsValid() || within != within.Masked() {
		return fmt.Errorf("host routes on %s: %q is not a network prefix (the range the routes are in)", dev, within)
	}
	seen := map[netip.Prefix]bool{}
	for _, r := range routes {
		if !r.Dst.IsValid() || !r.Via.IsValid() || r.Via.Zone() != "" {
			return fmt.Errorf("host route %v on %s: want a destination prefix and a gateway address", r, dev)
		}
		if r.Dst.Addr().Is4() != r.Via.Is4() {
			return fmt.Errorf("host route %v on %s: destination and gateway are of different families", r, dev)
		}
		if r.Dst != r.Dst.Masked() {
			return fmt.Errorf("host route %v on %s: %s has host bits set (want %s)", r, dev, r.Dst, r.Dst.Masked())
		}
		if !inside(within, r.Dst) {
			return fmt.Errorf("host route %v on %s: %s is not inside %s", r, dev, r.Dst, within)
		}
		if seen[r.Dst] {
			return fmt.Errorf("host routes on %s: %s twice", dev, r.Dst)
		}
		seen[r.Dst] = true
	}
	return nil
}

// onSegment splits routes into those whose gateway is inside one of
// connected and the errors of those that are not.
func onSegment(dev string, connected []netip.Prefix, routes []HostGWRoute) ([]HostGWRoute, []error) {
	var ok []HostGWRoute
	var errs []error
	for _, r := range routes {
		if slices.ContainsFunc(connected, func(p netip.Prefix) bool { return p.Contains(r.Via) }) {
			ok = append(ok, r)
			continue
		}
		errs = append(errs, &NotOnSegmentError{Dev: dev, Route: r, Connected: connected})
	}
	return ok, errs
}

// hostRouteDevice looks up the device and its directly connected prefixes.
func (n *netlinkLinks) hostRouteDevice(dev string) (netlink.Link, []netip.Prefix, error) {
	l, err := n.h.LinkByName(dev)
	if notFound(err) {
		return nil, nil, fmt.Errorf("host routes: device %s does not exist: give the underlay link (ip link show)", dev)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("host routes: look up %s: %w", dev, err)
	}
	addrs, err := n.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, fmt.Errorf("host routes: addresses of %s: %w", dev, err)
	}
	var connected []netip.Prefix
	for _, a := range addrs {
		ip, ok := addrOf(a.IP)
		if !ok || a.IPNet == nil || ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		connected = append(connected, netip.PrefixFrom(ip, ones).Masked())
	}
	return l, connected, nil
}

// readHostRoutes lists the device's routes of pontoon's protocol in the
// main table with a destination inside within: destination → gateway. An
// interrupted dump is done again.
func (n *netlinkLinks) readHostRoutes(idx int, within netip.Prefix) (map[netip.Prefix]netip.Addr, error) {
	filter := &netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_MAIN, Protocol: RouteProtocol}
	mask := netlink.RT_FILTER_OIF | netlink.RT_FILTER_TABLE | netlink.RT_FILTER_PROTOCOL
	var rs []netlink.Route
	var err error
	for try := 0; try < 5; try++ {
		if rs, err = n.h.RouteListFiltered(netlink.FAMILY_ALL, filter, mask); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list host routes: %w", err)
	}
	out := make(map[netip.Prefix]netip.Addr, len(rs))
	for _, r := range rs {
		if r.Dst == nil {
			continue // a default route of our protocol: not ours to have made
		}
		dst, ok := addrOf(r.Dst.IP)
		gw, gok := addrOf(r.Gw)
		if !ok || !gok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if p := netip.PrefixFrom(dst, ones); inside(within, p) {
			out[p] = gw
		}
	}
	return out, nil
}

// inside reports whether p is within (a prefix of within's family, no
// shorter, and contained in it).
func inside(within, p netip.Prefix) bool {
	return p.Bits() >= within.Bits() && within.Contains(p.Addr())
}

func hostRoute(idx int, dst netip.Prefix, via netip.Addr) *netlink.Route {
	return &netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_MAIN, Protocol: RouteProtocol, Scope: netlink.SCOPE_UNIVERSE,
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}, Gw: via.AsSlice()}
}

// SetHostRoutes makes the device's routes of pontoon's protocol inside
// within exactly routes: it adds or replaces what differs, then deletes those no route
// wants. A route whose gateway is not on the device's segment is not
// programmed: its NotOnSegmentError is among the returned errors, and the
// others are programmed regardless. Routes of other protocols are left
// alone. Bad input changes nothing. It goes on after a failed request and
// returns all failures.
func (n *netlinkLinks) SetHostRoutes(dev string, within netip.Prefix, routes []HostGWRoute) error {
	if err := checkHostRoutes(dev, within, routes); err != nil {
		return err
	}
	l, connected, err := n.hostRouteDevice(dev)
	if err != nil {
		return err
	}
	idx := l.Attrs().Index
	have, err := n.readHostRoutes(idx, within)
	if err != nil {
		return fmt.Errorf("host routes on %s: %w", dev, err)
	}
	ok, errs := onSegment(dev, connected, routes)
	want := map[netip.Prefix]bool{}
	for _, r := range ok {
		want[r.Dst] = true
		if gw, has := have[r.Dst]; has && gw == r.Via {
			continue
		}
		if err := n.h.RouteReplace(hostRoute(idx, r.Dst, r.Via)); err != nil {
			errs = append(errs, fmt.Errorf("host route %s dev %s: %w", r, dev, err))
		}
	}
	for dst, gw := range have {
		if want[dst] {
			continue
		}
		if err := n.h.RouteDel(hostRoute(idx, dst, gw)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete host route %s via %s dev %s: %w", dst, gw, dev, err))
		}
	}
	return errors.Join(errs...)
}

// CheckHostRoutes compares the device's routes of pontoon's protocol
// inside within with routes and describes each difference (missing, different, extra); a
// route that cannot be programmed because its gateway is not on the
// device's segment is described as such. nil when they match. It changes
// nothing.
func (n *netlinkLinks) CheckHostRoutes(dev string, within netip.Prefix, routes []HostGWRoute) []string {
	if err := checkHostRoutes(dev, within, routes); err != nil {
		return []string{err.Error()}
	}
	l, connected, err := n.hostRouteDevice(dev)
	if err != nil {
		return []string{err.Error()}
	}
	have, err := n.readHostRoutes(l.Attrs().Index, within)
	if err != nil {
		return []string{fmt.Sprintf("host routes on %s: %v", dev, err)}
	}
	return diffHostRoutes(dev, connected, have, routes)
}

// diffHostRoutes describes how have differs from routes, in `ip` words:
// what is missing or different in routes' order, then what is extra,
// sorted.
func diffHostRoutes(dev string, connected []netip.Prefix, have map[netip.Prefix]netip.Addr, routes []HostGWRoute) []string {
	var out []string
	ok, errs := onSegment(dev, connected, routes)
	for _, e := range errs {
		out = append(out, e.Error())
	}
	want := map[netip.Prefix]bool{}
	for _, r := range ok {
		want[r.Dst] = true
	}
	for _, r := range ok {
		switch gw, has := have[r.Dst]; {
		case !has:
			out = append(out, fmt.Sprintf("no route %s via %s dev %s proto %d", r.Dst, r.Via, dev, RouteProtocol))
		case gw != r.Via:
			out = append(out, fmt.Sprintf("route %s dev %s is via %s, want via %s", r.Dst, dev, gw, r.Via))
		}
	}
	var extra []string
	for dst, gw := range have {
		if !want[dst] {
			extra = append(extra, fmt.Sprintf("route %s via %s dev %s proto %d is no node's", dst, gw, dev, RouteProtocol))
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}
