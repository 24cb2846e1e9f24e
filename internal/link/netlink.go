package link

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// deleteGroup is the interface group (IFLA_GROUP) veths are moved into just
// before a batch delete: one RTM_DELLINK naming the group makes the kernel
// unregister them all with a single RCU grace period
// (rtnl_group_dellink → unregister_netdevice_many). "pont" in ASCII.
const deleteGroup = 0x706f6e74

// netlinkLinks implements Interface on the calling process's namespace
// (the daemon runs in its host namespace).
type netlinkLinks struct {
	log *slog.Logger
	h   *netlink.Handle

	delMu sync.Mutex // one group delete at a time: the group is shared

	// raw carries the requests netlink.Handle has no method for (veth
	// creation with IFLA_MASTER, delete by group). It is opened in the
	// namespace New ran in, like h, so it never acts on another namespace
	// whatever thread calls it.
	rawMu sync.Mutex
	raw   *nl.NetlinkSocket

	brMu    sync.Mutex
	brIndex map[string]int // bridge name → ifindex cache (validated on use)
}

// New returns the netlink implementation of Interface.
func New(log *slog.Logger) (Interface, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	self, err := vnetns.Get()
	if err != nil {
		return nil, fmt.Errorf("current network namespace: %w", err)
	}
	defer self.Close()
	raw, err := nl.GetNetlinkSocketAt(self, self, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &netlinkLinks{log: log, h: h, raw: raw, brIndex: map[string]int{}}, nil
}

// execute sends req on the bound raw socket and waits for the kernel's ack.
func (n *netlinkLinks) execute(req *nl.NetlinkRequest) error {
	n.rawMu.Lock()
	defer n.rawMu.Unlock()
	if err := n.raw.Send(req); err != nil {
		return err
	}
	for {
		msgs, from, err := n.raw.Receive()
		if err != nil {
			return err
		}
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if errno := int32(nl.NativeEndian().Uint32(m.Data[0:4])); errno != 0 {
				return unix.Errno(-errno)
			}
			return nil
		}
	}
}

func notFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV)
}

// bridgeMAC derives a stable MAC for a bridge from its gateway address, so
// that the gateway's MAC does not change as ports come and go (a bridge
// otherwise takes the lowest MAC of its ports, and sandboxes' ARP caches go
// stale).
func bridgeMAC(gw netip.Addr) net.HardwareAddr {
	b := gw.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

func (n *netlinkLinks) EnsureBridge(b Bridge) (int, error) {
	l, err := n.h.LinkByName(b.Name)
	switch {
	case notFound(err):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.Name, MTU: b.MTU, HardwareAddr: bridgeMAC(b.Gateway.Addr())}}
		if err := n.h.LinkAdd(br); err != nil {
			return 0, fmt.Errorf("create bridge %s: %w", b.Name, err)
		}
		if l, err = n.h.LinkByName(b.Name); err != nil {
			return 0, err
		}
	case err != nil:
		return 0, fmt.Errorf("look up %s: %w", b.Name, err)
	case l.Type() != "bridge":
		return 0, fmt.Errorf("%s exists and is a %s, not a bridge: pick another bridge name or remove it", b.Name, l.Type())
	}
	if b.MTU > 0 && l.Attrs().MTU != b.MTU {
		if err := n.h.LinkSetMTU(l, b.MTU); err != nil {
			return 0, fmt.Errorf("set MTU of %s: %w", b.Name, err)
		}
	}
	if b.Gateway.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: b.Gateway.Addr().AsSlice(), Mask: net.CIDRMask(b.Gateway.Bits(), 32)}}
		if err := n.h.AddrReplace(l, a); err != nil {
			return 0, fmt.Errorf("add %s to %s: %w", b.Gateway, b.Name, err)
		}
	}
	if err := n.h.LinkSetUp(l); err != nil {
		return 0, fmt.Errorf("bring %s up: %w", b.Name, err)
	}
	n.brMu.Lock()
	n.brIndex[b.Name] = l.Attrs().Index
	n.brMu.Unlock()
	return l.Attrs().Index, nil
}

func (n *netlinkLinks) DeleteBridge(name string) error {
	n.brMu.Lock()
	delete(n.brIndex, name)
	n.brMu.Unlock()
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := n.h.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

func (n *netlinkLinks) bridgeIndex(name string) (int, error) {
	n.brMu.Lock()
	idx, ok := n.brIndex[name]
	n.brMu.Unlock()
	if ok {
		return idx, nil
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("bridge %s: %w", name, err)
	}
	n.brMu.Lock()
	n.brIndex[name] = l.Attrs().Index
	n.brMu.Unlock()
	return l.Attrs().Index, nil
}

func (n *netlinkLinks) AddVeth(v Veth) (int, error) {
	idx, err := n.addVeth(v)
	if err != nil {
		// The bridge may have been recreated under us: forget its index.
		n.brMu.Lock()
		delete(n.brIndex, v.Bridge)
		n.brMu.Unlock()
		if derr := n.deleteByName(v.HostName); derr != nil {
			n.log.Error("rollback: delete veth", "link", v.HostName, "err", derr)
		}
		return 0, err
	}
	return idx, nil
}

func (n *netlinkLinks) addVeth(v Veth) (int, error) {
	brIdx, err := n.bridgeIndex(v.Bridge)
	if err != nil {
		return 0, err
	}
	ns, err := vnetns.GetFromPath(v.Netns)
	if err != nil {
		return 0, fmt.Errorf("open sandbox namespace %s: %w", v.Netns, err)
	}
	defer ns.Close()
	// One RTM_NEWLINK creates the pair with the host end on the bridge and
	// both ends up, and the peer directly inside the sandbox
	// (IFLA_NET_NS_FD in the peer's attributes): no move, no RCU barrier,
	// none of the follow-up requests (look up, set master, set up) that
	// netlink.LinkAdd would make.
	if err := n.execute(vethRequest(v, brIdx, int(ns))); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("create veth %s with peer %s: an interface with one of these names exists: %w", v.HostName, v.PeerName, err)
		}
		return 0, fmt.Errorf("create veth %s with peer %s in %s: %w", v.HostName, v.PeerName, v.Netns, err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: v.HostName}}
	if v.Isolated {
		if err := n.h.LinkSetIsolated(veth, true); err != nil {
			return 0, fmt.Errorf("isolate bridge port %s: %w", v.HostName, err)
		}
	}
	sh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("netlink in %s: %w", v.Netns, err)
	}
	defer sh.Close()
	peer, err := sh.LinkByName(v.PeerName)
	if err != nil {
		return 0, fmt.Errorf("find %s in the sandbox: %w", v.PeerName, err)
	}
	// The peer's IFLA_LINK is the host end's ifindex: no lookup on the host.
	hostIndex := peer.Attrs().ParentIndex
	ipnet := &net.IPNet{IP: v.Addr.Addr().AsSlice(), Mask: net.CIDRMask(v.Addr.Bits(), 32)}
	if err := sh.AddrAdd(peer, &netlink.Addr{IPNet: ipnet}); err != nil {
		return 0, fmt.Errorf("add %s to %s: %w", v.Addr, v.PeerName, err)
	}
	if err := sh.LinkSetUp(peer); err != nil {
		return 0, fmt.Errorf("bring %s up: %w", v.PeerName, err)
	}
	pidx := peer.Attrs().Index
	if v.DefaultRoute {
		if err := sh.RouteReplace(&netlink.Route{LinkIndex: pidx, Gw: v.Gateway.AsSlice()}); err != nil {
			return 0, fmt.Errorf("default route via %s: %w", v.Gateway, err)
		}
	}
	if v.Table != 0 {
		for _, r := range policyRoutes(v, pidx) {
			if err := sh.RouteReplace(r); err != nil {
				return 0, fmt.Errorf("route %v in table %d: %w", r.Dst, v.Table, err)
			}
		}
		if err := sh.RuleAdd(policyRule(v.Addr.Addr(), v.Table)); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("rule from %s lookup %d: %w", v.Addr.Addr(), v.Table, err)
		}
	}
	return hostIndex, nil
}

// vethRequest is the RTM_NEWLINK for a veth pair (see addVeth).
func vethRequest(v Veth, brIdx, nsFd int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change, msg.Flags = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(v.HostName)))
	if v.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(v.MTU))))
	}
	// IFLA_MASTER at creation: rtnl_newlink enslaves the new link itself.
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(brIdx))))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	// The peer cannot be brought up in the same request: veth_newlink
	// configures it before the pair is linked, and veth_open then fails
	// with ENOTCONN (seen on 6.18). addVeth brings it up afterwards.
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(v.PeerName))
	if v.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(v.MTU)))
	}
	if v.MAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(v.MAC))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(nsFd)))
	req.AddData(info)
	return req
}

func policyRoutes(v Veth, pidx int) []*netlink.Route {
	sub := v.Addr.Masked()
	return []*netlink.Route{
		{LinkIndex: pidx, Dst: &net.IPNet{IP: sub.Addr().AsSlice(), Mask: net.CIDRMask(sub.Bits(), 32)},
			Src: v.Addr.Addr().AsSlice(), Scope: netlink.SCOPE_LINK, Table: v.Table},
		{LinkIndex: pidx, Gw: v.Gateway.AsSlice(), Table: v.Table},
	}
}

func policyRule(ip netip.Addr, table int) *netlink.Rule {
	r := netlink.NewRule()
	r.Src = &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}
	r.Table = table
	r.Priority = table
	return r
}

func (n *netlinkLinks) DisableVeth(name string) error {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := n.h.LinkSetDown(l); err != nil && !notFound(err) {
		return fmt.Errorf("take %s down: %w", name, err)
	}
	if err := n.h.LinkSetNoMaster(l); err != nil && !notFound(err) {
		return fmt.Errorf("take %s off its bridge: %w", name, err)
	}
	return nil
}

func (n *netlinkLinks) DeleteVeths(names []string) error {
	if len(names) == 0 {
		return nil
	}
	n.delMu.Lock()
	defer n.delMu.Unlock()
	var grouped []string
	for _, name := range names {
		l, err := n.h.LinkByName(name)
		if notFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if err := n.h.LinkSetGroup(l, deleteGroup); err != nil {
			if notFound(err) {
				continue
			}
			return fmt.Errorf("mark %s for deletion: %w", name, err)
		}
		grouped = append(grouped, name)
	}
	if len(grouped) == 0 {
		return nil
	}
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(deleteGroup)))
	if err := n.execute(req); err == nil || notFound(err) {
		return nil
	} else {
		n.log.Warn("group delete failed; deleting one by one", "count", len(grouped), "err", err)
	}
	var errs []error
	for _, name := range grouped {
		if err := n.deleteByName(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteByName deletes a link; a link that is not there is success.
func (n *netlinkLinks) deleteByName(name string) error {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := n.h.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func (n *netlinkLinks) linkList() ([]netlink.Link, error) {
	var err error
	for range 5 {
		var ls []netlink.Link
		ls, err = n.h.LinkList()
		if err == nil {
			return ls, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
	}
	return nil, err
}

func (n *netlinkLinks) ListLinks(prefixes ...string) ([]LinkInfo, error) {
	ls, err := n.linkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []LinkInfo
	for _, l := range ls {
		a := l.Attrs()
		if len(prefixes) > 0 && !hasAnyPrefix(a.Name, prefixes) {
			continue
		}
		out = append(out, LinkInfo{Name: a.Name, Index: a.Index, Type: l.Type(), Master: names[a.MasterIndex]})
	}
	return out, nil
}

func hasAnyPrefix(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func (n *netlinkLinks) LinkIndex(name string) (int, error) {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

func (n *netlinkLinks) HostPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	addrs, err := n.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet); ok {
			out = append(out, p.Masked())
		}
	}
	routes, err := n.h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if p, ok := toPrefix(r.Dst); ok && p.Bits() > 0 {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

func (n *netlinkLinks) DeleteRule(netnsPath string, addr netip.Addr, table int) error {
	ns, err := vnetns.GetFromPath(netnsPath)
	if err != nil {
		return nil // namespace gone: so is the rule
	}
	defer ns.Close()
	sh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer sh.Close()
	if err := sh.RuleDel(policyRule(addr, table)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete rule from %s lookup %d: %w", addr, table, err)
	}
	return nil
}

func (n *netlinkLinks) CheckVeth(v Veth) []string {
	var out []string
	host, err := n.h.LinkByName(v.HostName)
	if err != nil {
		return []string{fmt.Sprintf("host end %s is missing", v.HostName)}
	}
	if br, err := n.bridgeIndex(v.Bridge); err != nil || host.Attrs().MasterIndex != br {
		out = append(out, fmt.Sprintf("host end %s is not a port of bridge %s", v.HostName, v.Bridge))
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("host end %s is down", v.HostName))
	}
	ns, err := vnetns.GetFromPath(v.Netns)
	if err != nil {
		return append(out, fmt.Sprintf("sandbox namespace %s cannot be opened: %v", v.Netns, err))
	}
	defer ns.Close()
	sh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return append(out, err.Error())
	}
	defer sh.Close()
	peer, err := sh.LinkByName(v.PeerName)
	if err != nil {
		return append(out, fmt.Sprintf("%s is missing in the sandbox", v.PeerName))
	}
	a := peer.Attrs()
	if a.Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("%s is down", v.PeerName))
	}
	if v.MAC != nil && a.HardwareAddr.String() != v.MAC.String() {
		out = append(out, fmt.Sprintf("%s has MAC %s, want %s", v.PeerName, a.HardwareAddr, v.MAC))
	}
	if v.MTU > 0 && a.MTU != v.MTU {
		out = append(out, fmt.Sprintf("%s has MTU %d, want %d", v.PeerName, a.MTU, v.MTU))
	}
	addrs, _ := sh.AddrList(peer, netlink.FAMILY_V4)
	found := false
	for _, ad := range addrs {
		if p, ok := toPrefix(ad.IPNet); ok && p == v.Addr {
			found = true
		}
	}
	if !found {
		out = append(out, fmt.Sprintf("%s does not have address %s", v.PeerName, v.Addr))
	}
	if v.DefaultRoute {
		routes, _ := sh.RouteList(peer, netlink.FAMILY_V4)
		ok := false
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(v.Gateway.AsSlice()) {
				ok = true
			}
		}
		if !ok {
			out = append(out, fmt.Sprintf("no default route via %s on %s", v.Gateway, v.PeerName))
		}
	}
	return out
}
