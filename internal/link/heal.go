package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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
	if l.Type() != "bridge" {
		return []string{fmt.Sprintf("%s is a %s, not a bridge", b.Name, l.Type())}
	}
	var out []string
	if l.Attrs().Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("bridge %s is down", b.Name))
	}
	if b.MTU > 0 && l.Attrs().MTU != b.MTU {
		out = append(out, fmt.Sprintf("bridge %s has MTU %d, want %d", b.Name, l.Attrs().MTU, b.MTU))
	}
	if br, ok := l.(*netlink.Bridge); ok && br.MulticastSnooping != nil && *br.MulticastSnooping {
		out = append(out, fmt.Sprintf("bridge %s has multicast snooping on", b.Name))
	}
	// route_localnet (set by EnsureBridge, see routeLocalnetRequest) has
	// no netlink notification: read it where sysctl does.
	if v, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + b.Name + "/route_localnet"); err == nil && strings.TrimSpace(string(v)) != "1" {
		out = append(out, fmt.Sprintf("bridge %s has route_localnet off (the host cannot reach published ports through 127.0.0.1)", b.Name))
	}
	if b.Gateway.IsValid() {
		if !hasAddr(n.h, l, b.Gateway) {
			out = append(out, fmt.Sprintf("bridge %s does not have address %s", b.Name, b.Gateway))
		}
	}
	return out
}

// Fix is one change a repair made: Kind is the class of object (veth,
// port, link, address, route, rule), What says what was done.
type Fix struct {
	Kind string
	What string
}

// RepairVeth brings an endpoint back to v and says what it changed. A pair
// with a missing end is made again (deleting either end of a veth deletes
// both); otherwise only what differs is set, in place: bridge port, port
// flags, up, and in the sandbox MAC, MTU, address, up, routes and rule.
func (n *netlinkLinks) RepairVeth(v Veth) (int, []Fix, error) {
	host, err := n.h.LinkByName(v.HostName)
	if notFound(err) {
		n.forgetBridge(v.Bridge)
		idx, err := n.AddVeth(v)
		if err != nil {
			return 0, nil, err
		}
		return idx, []Fix{{"veth", "recreated veth pair " + v.HostName + "/" + v.PeerName}}, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("look up %s: %w", v.HostName, err)
	}
	sh, err := handleAtPath(v.Netns, v.NetnsIno)
	if err != nil {
		return 0, nil, err
	}
	defer sh.Close()
	peer, err := sh.LinkByName(v.PeerName)
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
		return idx, []Fix{{"veth", "recreated veth pair " + v.HostName + "/" + v.PeerName + " (" + v.PeerName + " was missing in the sandbox)"}}, nil
	}
	var fixed []Fix
	var errs []error
	fix := func(kind, what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return
		}
		fixed = append(fixed, Fix{kind, what})
	}
	hostIdx := host.Attrs().Index
	n.forgetBridge(v.Bridge)
	brIdx, err := n.bridgeIndex(v.Bridge)
	if err != nil {
		return hostIdx, nil, err
	}
	if host.Attrs().MasterIndex != brIdx {
		fix("port", "joined "+v.HostName+" to bridge "+v.Bridge, n.h.LinkSetMasterByIndex(host, brIdx))
	}
	if p, err := n.h.LinkGetProtinfo(host); err != nil || p.Isolated != v.Isolated || !p.Hairpin {
		fix("port", "set bridge port flags of "+v.HostName, n.raw.execute(brportRequest(hostIdx, v.Isolated)))
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		fix("port", "brought "+v.HostName+" up", n.h.LinkSetUp(host))
	}
	a := peer.Attrs()
	if v.MAC != nil && a.HardwareAddr.String() != v.MAC.String() {
		fix("link", "set MAC "+v.MAC.String()+" on "+v.PeerName, sh.LinkSetHardwareAddr(peer, v.MAC))
	}
	if v.MTU > 0 && a.MTU != v.MTU {
		fix("link", fmt.Sprintf("set MTU %d on %s", v.MTU, v.PeerName), sh.LinkSetMTU(peer, v.MTU))
	}
	if !hasAddr(sh, peer, v.Addr) {
		fix("address", "added "+v.Addr.String()+" to "+v.PeerName, sh.AddrReplace(peer, &netlink.Addr{IPNet: ipNet(v.Addr)}))
	}
	if a.Flags&net.FlagUp == 0 {
		fix("link", "brought "+v.PeerName+" up", sh.LinkSetUp(peer))
	}
	if v.DefaultRoute && !hasRoute(sh, &netlink.Route{LinkIndex: a.Index, Gw: v.Gateway.AsSlice()}) {
		fix("route", "added default route via "+v.Gateway.String()+" dev "+v.PeerName,
			sh.RouteReplace(&netlink.Route{LinkIndex: a.Index, Gw: v.Gateway.AsSlice()}))
	}
	if v.Table != 0 {
		for _, r := range policyRoutes(v, a.Index) {
			if !hasRoute(sh, r) {
				fix("route", fmt.Sprintf("added route %s dev %s table %d", routeString(r), v.PeerName, v.Table), sh.RouteReplace(r))
			}
		}
		rules, _ := sh.RuleListFiltered(netlink.FAMILY_V4, policyRule(v.Addr.Addr(), v.Table), netlink.RT_FILTER_SRC|netlink.RT_FILTER_TABLE)
		if len(rules) == 0 {
			err := sh.RuleAdd(policyRule(v.Addr.Addr(), v.Table))
			if errors.Is(err, unix.EEXIST) {
				err = nil
			}
			fix("rule", fmt.Sprintf("added rule from %s lookup %d", v.Addr.Addr(), v.Table), err)
		}
	}
	if len(fixed) > 0 {
		// Packets sent while the endpoint was broken left neighbour
		// entries INCOMPLETE or FAILED; the kernel retries them only
		// every retrans_time (1 s), so traffic would stay dead that long
		// after the repair. Dropping them makes the next packet resolve
		// at once.
		n.forgetUnresolved(sh, a.Index, netip.Addr{})
		n.forgetUnresolved(n.h, brIdx, v.Addr.Addr())
	}
	return hostIdx, fixed, errors.Join(errs...)
}

// forgetUnresolved deletes the IPv4 neighbour entries of a link that are
// INCOMPLETE or FAILED (only those for ip, when it is valid).
func (n *netlinkLinks) forgetUnresolved(h *netlink.Handle, index int, ip netip.Addr) {
	neighs, err := h.NeighList(index, netlink.FAMILY_V4)
	if err != nil {
		return
	}
	for _, ne := range neighs {
		if ne.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
			continue
		}
		if a, ok := netip.AddrFromSlice(ne.IP.To4()); ip.IsValid() && (!ok || a != ip) {
			continue
		}
		_ = h.NeighDel(&ne)
	}
}

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// IPForward reports net.ipv4.ip_forward of the daemon's namespace (/proc/sys
// shows the namespace of the process that reads it).
func (n *netlinkLinks) IPForward() (bool, error) {
	b, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", ipForwardPath, err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// SetIPForward sets net.ipv4.ip_forward to 1.
func (n *netlinkLinks) SetIPForward() error {
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", ipForwardPath, err)
	}
	return nil
}

// hasAddr reports whether a link has the IPv4 address p (with its prefix
// length).
func hasAddr(h *netlink.Handle, l netlink.Link, p netip.Prefix) bool {
	addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
	for _, a := range addrs {
		if got, ok := toPrefix(a.IPNet); ok && got == p {
			return true
		}
	}
	return false
}
