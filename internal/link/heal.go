package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"

	"pontoon/internal/netns"
)

// ErrNetnsGone is returned (wrapped) by every method that was asked to enter
// a sandbox namespace that is gone or whose path now names another one.
var ErrNetnsGone = netns.ErrGone

func (n *netlinkLinks) CheckBridge(b Bridge) []string {
	l, err := n.h.LinkByName(b.Name)
	if err != nil {
		return []string{fmt.Sprintf("bridge %s is missing", b.Name)}
	}
	if l.Type() != "bridge" && !b.External {
		return []string{fmt.Sprintf("%s is a %s, not a bridge", b.Name, l.Type())}
	}
	var out []string
	if l.Attrs().Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("bridge %s is down", b.Name))
	}
	if b.MTU > 0 && l.Attrs().MTU != b.MTU {
		out = append(out, fmt.Sprintf("bridge %s has MTU %d, want %d", b.Name, l.Attrs().MTU, b.MTU))
	}
	if b.External {
		// The switch's own settings are its to check.
	} else if b.Options != nil {
		data, err := n.bridgeData(l.Attrs().Index)
		if err != nil {
			out = append(out, fmt.Sprintf("bridge %s: cannot read its settings: %v", b.Name, err))
		}
		out = append(out, checkBridgeOptions(b.Name, data, b.Options)...)
	} else if br, ok := l.(*netlink.Bridge); ok && br.MulticastSnooping != nil && *br.MulticastSnooping {
		out = append(out, fmt.Sprintf("bridge %s has multicast snooping on", b.Name))
	}
	// route_localnet (set by EnsureBridge, see routeLocalnetRequest) and
	// accept_ra (bridgeIPv6) have no netlink notification: read them where
	// sysctl does, in the adapter's namespace.
	_ = n.inSelf(func() error {
		if v, err := readSysctl("/proc/sys/net/ipv4/conf/" + b.Name + "/route_localnet"); err == nil && v != "1" {
			out = append(out, fmt.Sprintf("bridge %s has route_localnet off (the host cannot reach published ports through 127.0.0.1)", b.Name))
		}
		if v, err := readSysctl(ipv6Conf + b.Name + "/accept_ra"); err == nil && v != "0" {
			out = append(out, fmt.Sprintf("bridge %s accepts router advertisements (accept_ra=%s): a sandbox could give the host a route", b.Name, v))
		}
		return nil
	})
	for _, gw := range b.Gateways {
		if !hasAddr(n.h, l, gw) {
			out = append(out, fmt.Sprintf("bridge %s does not have address %s", b.Name, gw))
		}
	}
	if _, ok := b.gateway(ipv6); ok && !hasLinkLocal(n.h, l) {
		out = append(out, fmt.Sprintf("bridge %s has no IPv6 link-local address (the host cannot resolve sandboxes' addresses for packets it forwards)", b.Name))
	}
	return out
}

// Fix is one change a repair made: Kind is the class of object (veth,
// port, link, address, route, rule), What says what was done.
type Fix struct {
	Kind string
	What string
}

// fixes collects what a repair changed and what it could not change.
type fixes struct {
	done []Fix
	errs []error
}

// add records one change: done when err is nil, else the error with what
// was tried.
func (f *fixes) add(kind, what string, err error) {
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s: %w", what, err))
		return
	}
	f.done = append(f.done, Fix{kind, what})
}

// result is what the repair changed and the errors, joined.
func (f *fixes) result() ([]Fix, error) { return f.done, errors.Join(f.errs...) }

// RepairVeth brings an endpoint back to v and says what it changed. A pair
// with a missing end is made again (deleting either end of a veth deletes
// both); otherwise only what differs is set, in place: bridge port, port
// flags, up, and in the sandbox MAC, MTU, addresses, up, routes and rules.
func (n *netlinkLinks) RepairVeth(v Veth) (int, []Fix, error) {
	if err := v.check(); err != nil {
		return 0, nil, err
	}
	host, err := n.h.LinkByName(v.HostName)
	if notFound(err) && v.Netns == "" {
		// The other end was handed over (Docker moved it into its
		// container): a new pair would have no one to move it.
		return 0, nil, fmt.Errorf("veth %s is gone, and its other end was the container runtime's to move: restart the container", v.HostName)
	}
	if notFound(err) {
		n.forgetBridge(v.Bridge)
		idx, err := n.AddVeth(v)
		if err != nil {
			return 0, nil, err
		}
		return idx, []Fix{{"veth", "recreated veth pair " + v.HostName + "/" + v.IfName}}, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("look up %s: %w", v.HostName, err)
	}
	if v.Netns == "" {
		return n.repairHostEnd(v, host)
	}
	sh, err := handleAtPath(v.Netns, v.NetnsIno)
	if err != nil {
		return 0, nil, err
	}
	defer sh.Close()
	peer, err := sh.LinkByName(v.IfName)
	if err != nil || peer.Attrs().ParentIndex != host.Attrs().Index {
		// The host end's peer is not the sandbox's interface: start again.
		if err := n.deleteEach([]string{v.HostName}); err != nil {
			return 0, nil, err
		}
		n.forgetBridge(v.Bridge)
		idx, err := n.AddVeth(v)
		if err != nil {
			return 0, nil, err
		}
		return idx, []Fix{{"veth", "recreated veth pair " + v.HostName + "/" + v.IfName + " (" + v.IfName + " was missing in the sandbox)"}}, nil
	}
	var fx fixes
	hostIdx := host.Attrs().Index
	brIdx, err := n.repairPort(v, host, &fx)
	if err != nil {
		return hostIdx, nil, err
	}
	a := peer.Attrs()
	repairIface(sh, peer, v.Iface, fx.add)
	if len(fx.done) > 0 {
		// Packets sent while the endpoint was broken left neighbour
		// entries INCOMPLETE or FAILED; the kernel retries them only
		// every retrans_time (1 s), so traffic would stay dead that long
		// after the repair. Dropping them makes the next packet resolve
		// at once.
		n.forgetUnresolved(sh, a.Index, nil)
		ips := make([]netip.Addr, len(v.Addrs))
		for i, ad := range v.Addrs {
			ips[i] = ad.Addr.Addr()
		}
		if brIdx != 0 {
			n.forgetUnresolved(n.h, brIdx, ips)
		}
	}
	return hostIdx, fx.done, errors.Join(fx.errs...)
}

// repairHostEnd repairs only the host end of a pair whose other end is
// someone else's (Netns ""): its bridge, port flags and up.
func (n *netlinkLinks) repairHostEnd(v Veth, host netlink.Link) (int, []Fix, error) {
	var fx fixes
	if _, err := n.repairPort(v, host, &fx); err != nil {
		return host.Attrs().Index, nil, err
	}
	done, err := fx.result()
	return host.Attrs().Index, done, err
}

// repairPort puts a veth's host end back on its bridge (none: another
// switch's port) with its port flags, and up, recording each change in
// fx; it returns the bridge's ifindex (0 without one).
func (n *netlinkLinks) repairPort(v Veth, host netlink.Link, fx *fixes) (int, error) {
	if v.Bridge == "" {
		if host.Attrs().Flags&net.FlagUp == 0 {
			fx.add("port", "brought "+v.HostName+" up", n.h.LinkSetUp(host))
		}
		return 0, nil
	}
	n.forgetBridge(v.Bridge)
	brIdx, err := n.bridgeIndex(v.Bridge)
	if err != nil {
		return 0, err
	}
	if host.Attrs().MasterIndex != brIdx {
		fx.add("port", "joined "+v.HostName+" to bridge "+v.Bridge, n.h.LinkSetMasterByIndex(host, brIdx))
	}
	if p, err := n.h.LinkGetProtinfo(host); err != nil || p.Isolated != v.Isolated || p.Hairpin == v.NoHairpin {
		fx.add("port", "set bridge port flags of "+v.HostName, n.raw.execute(brportRequest(host.Attrs().Index, v.Isolated, !v.NoHairpin)))
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		fx.add("port", "brought "+v.HostName+" up", n.h.LinkSetUp(host))
	}
	return brIdx, nil
}

// forgetUnresolved deletes the neighbour entries (ARP and NDP) of a link
// that are INCOMPLETE or FAILED (only those for ips, when given).
func (n *netlinkLinks) forgetUnresolved(h *netlink.Handle, index int, ips []netip.Addr) {
	neighs, err := h.NeighList(index, netlink.FAMILY_ALL)
	if err != nil {
		return
	}
	for _, ne := range neighs {
		if ne.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
			continue
		}
		if a, ok := addrOf(ne.IP); ips != nil && (!ok || !slices.Contains(ips, a)) {
			continue
		}
		_ = h.NeighDel(&ne)
	}
}

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// IPForward reports net.ipv4.ip_forward of the adapter's namespace (the
// daemon's; /proc/sys shows the namespace of the thread that reads it).
func (n *netlinkLinks) IPForward() (bool, error) {
	var v string
	err := n.inSelf(func() (err error) {
		v, err = readSysctl(ipForwardPath)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("read %s: %w", ipForwardPath, err)
	}
	return v == "1", nil
}

// SetIPForward sets net.ipv4.ip_forward to 1 in the adapter's namespace.
func (n *netlinkLinks) SetIPForward() error {
	return n.inSelf(func() error { return writeSysctl(ipForwardPath, "1") })
}

// hasAddr reports whether a link has the address p (with its prefix
// length), of either family. A tentative IPv6 address (still in duplicate
// address detection) counts: it is there, and becomes usable by itself.
func hasAddr(h *netlink.Handle, l netlink.Link, p netip.Prefix) bool {
	addrs, _ := h.AddrList(l, familyOf(p.Addr()).af)
	for _, a := range addrs {
		if got, ok := toPrefix(a.IPNet); ok && got == p {
			return true
		}
	}
	return false
}

// hasLinkLocal reports whether a link has an IPv6 link-local address.
func hasLinkLocal(h *netlink.Handle, l netlink.Link) bool {
	addrs, _ := h.AddrList(l, netlink.FAMILY_V6)
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet); ok && p.Addr().IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}
