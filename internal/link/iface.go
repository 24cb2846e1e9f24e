package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// This file is the L3 half of an endpoint (see Iface): configuring an
// interface that some driver's plumbing has put in a sandbox, checking it
// and repairing it. It knows nothing of what made the link.

// configureIface configures the interface with index idx in the sandbox
// namespace ns as ifc says: addresses, addrgenmode none, up, routes and
// rules, in one sendmsg on a socket in the sandbox (ifaceRequests). The
// link must be down and have ifc's MAC and MTU already (the plumbing sets
// them when it creates the link). idx 0: look the link up by name first,
// on the same socket (a link created into the sandbox from the host, as a
// macvlan is, has no ifindex the creator can learn: see createMacvlan).
func (n *netlinkLinks) configureIface(ns vnetns.NsHandle, idx int, ifc Iface) error {
	v6 := ifc.hasIPv6()
	s, err := doIn(ns, func() (*nl.NetlinkSocket, error) {
		// The thread is in the sandbox already (for the socket): its
		// /proc/sys/net is the sandbox's, and the peer is not up yet.
		if v6 {
			if err := noAutoconf(ifc.IfName); err != nil {
				return nil, fmt.Errorf("in the sandbox: %w", err)
			}
		}
		return nl.GetNetlinkSocketAt(vnetns.None(), vnetns.None(), unix.NETLINK_ROUTE)
	})
	if err != nil {
		return fmt.Errorf("configure %s: %w", ifc.IfName, err)
	}
	defer s.Close()
	if idx == 0 {
		if idx, err = linkIndexOn(s, ifc.IfName); err != nil {
			return fmt.Errorf("configure %s: find it in the sandbox: %w", ifc.IfName, err)
		}
	}
	reqs, what := ifaceRequests(ifc, idx, n.dad)
	errs, err := transact(s, reqs, nil)
	if err != nil {
		return fmt.Errorf("configure %s in the sandbox: %w", ifc.IfName, err)
	}
	for i, e := range errs {
		if e != nil && !(what[i].okExists && errors.Is(e, unix.EEXIST)) {
			return fmt.Errorf("%s: %w", what[i].what, e)
		}
	}
	return nil
}

// linkIndexOn returns the ifindex of the link named name in the namespace
// of socket s: one RTM_GETLINK, answered by an RTM_NEWLINK and the ack.
func linkIndexOn(s *nl.NetlinkSocket, name string) (int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	reply := map[uint32][]byte{}
	errs, err := transact(s, []*nl.NetlinkRequest{req}, reply)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return 0, err
	}
	data, ok := reply[req.Seq]
	if !ok || len(data) < unix.SizeofIfInfomsg {
		return 0, fmt.Errorf("no answer to the lookup of %s", name)
	}
	return int(nl.DeserializeIfInfomsg(data).Index), nil
}

// sandboxStep names one request of ifaceRequests for its error.
type sandboxStep struct {
	what     string
	okExists bool // EEXIST is success (the rule is there already)
}

// ifaceRequests are the requests that configure an interface (index
// peerIdx in the sandbox), in order: addresses; addrgenmode none; up; the
// default routes (first network) or, for a further network, its table's
// routes and the rules that select it — each for every address's family.
//
// addrgenmode none: the kernel makes no IPv6 link-local address of its
// own, so the peer sends no DAD, router solicitation or MLD report for one
// when it comes up. The bridge floods each such multicast to all its
// ports: an attach cost grew with the number of sandboxes on the network
// (measured at 1000 ports: 1.3 → 5.9 ms mean, p99 3 → 27 ms). It must be
// set before the link is up (the address is made on NETDEV_UP), and the
// kernel rejects IFLA_AF_SPEC in the creating RTM_NEWLINK (EAFNOSUPPORT on
// 6.18: no inet6_dev yet), hence its own request.
//
// An IPv4-only peer then has no IPv6 address at all. An IPv6 peer gets
// its address and, from us, a link-local address (LinkLocal of its MAC),
// both with IFA_F_NODAD (see addrRequest). It needs the link-local one:
// the kernel sends a neighbour solicitation without a packet to take the
// source from — the unicast probes that confirm a cached neighbour
// (NUD_PROBE) — only from a link-local address (ndisc_send_ns returns
// without one), so without it every neighbour entry of the sandbox would
// expire to FAILED and be resolved again from scratch; RFC 4291 requires
// one on every IPv6 interface, and tools (ping ff02::1%eth0, DHCPv6, a
// routing daemon in the sandbox) expect it. It is not free: the kernel
// reports the peer's multicast groups once more when a link-local address
// becomes usable, so an IPv6 peer sends three MLD reports as it comes up
// instead of two, and the bridge (snooping off) floods each to every port.
// At 600 IPv6 sandboxes on one bridge an attach took 1.7 ms p50 with it,
// 1.0 without, 0.8 IPv4-only; with MLD reports from sandboxes dropped at
// the bridge (no one listens to them) 0.97 ms with it
// (BenchmarkAddVethDualStack, dual and dual-nomld). Router advertisements
// and autoconfiguration are off on IPv6 peers (configureVeth): a sandbox
// never takes a route or an address from another sandbox.
//
// dad (benchmarks only) adds the IPv6 addresses without IFA_F_NODAD.
func ifaceRequests(ifc Iface, peerIdx int, dad bool) ([]*nl.NetlinkRequest, []sandboxStep) {
	var reqs []*nl.NetlinkRequest
	var what []sandboxStep
	add := func(r *nl.NetlinkRequest, step sandboxStep) {
		reqs = append(reqs, r)
		what = append(what, step)
	}
	for _, p := range ifc.addrs() {
		add(addrRequest(peerIdx, p, dad), sandboxStep{what: fmt.Sprintf("add %s to %s in the sandbox", p, ifc.IfName)})
	}
	add(addrGenModeNoneRequest(peerIdx), sandboxStep{what: fmt.Sprintf("set addrgenmode none on %s in the sandbox", ifc.IfName)})
	add(linkUpRequest(peerIdx), sandboxStep{what: fmt.Sprintf("bring %s up in the sandbox", ifc.IfName)})
	if ifc.DefaultRoute {
		for _, r := range defaultRoutes(ifc, peerIdx) {
			add(routeReplaceRequest(r), sandboxStep{what: fmt.Sprintf("add default route via %s dev %s", r.Gw, ifc.IfName)})
		}
	}
	for _, r := range extraRoutes(ifc, peerIdx) {
		add(routeReplaceRequest(r), sandboxStep{what: fmt.Sprintf("add route %s via %s dev %s", r.Dst, r.Gw, ifc.IfName)})
	}
	if ifc.Table != 0 {
		for _, r := range policyRoutes(ifc, peerIdx) {
			add(routeReplaceRequest(r), sandboxStep{what: fmt.Sprintf("add route %s in table %d", routeString(r), ifc.Table)})
		}
		for _, a := range ifc.Addrs {
			add(ruleAddRequest(a.Addr.Addr(), ifc.Table),
				sandboxStep{what: fmt.Sprintf("add rule from %s lookup %d", a.Addr.Addr(), ifc.Table), okExists: true})
		}
	}
	return reqs, what
}

// defaultRoutes are the main table's default routes of an endpoint: one
// through each address's gateway.
func defaultRoutes(ifc Iface, peerIdx int) []*netlink.Route {
	var out []*netlink.Route
	for _, a := range ifc.Addrs {
		if a.Gateway.IsValid() {
			out = append(out, &netlink.Route{LinkIndex: peerIdx, Gw: a.Gateway.AsSlice()})
		}
	}
	return out
}

// extraRoutes are ifc.Routes as netlink routes.
func extraRoutes(ifc Iface, peerIdx int) []*netlink.Route {
	out := make([]*netlink.Route, 0, len(ifc.Routes))
	for _, r := range ifc.Routes {
		out = append(out, &netlink.Route{LinkIndex: peerIdx, Dst: ipNet(r.Dst.Masked()), Gw: r.Via.AsSlice()})
	}
	return out
}

// policyRoutes are table ifc.Table's routes, for each address: the subnet on
// the peer with the address as source, and a default route through the
// family's gateway.
func policyRoutes(ifc Iface, peerIdx int) []*netlink.Route {
	var out []*netlink.Route
	for _, a := range ifc.Addrs {
		f := familyOf(a.Addr.Addr())
		out = append(out, &netlink.Route{LinkIndex: peerIdx, Dst: ipNet(a.Addr.Masked()), Src: a.Addr.Addr().AsSlice(), Scope: f.connected, Table: ifc.Table})
		if a.Gateway.IsValid() {
			out = append(out, &netlink.Route{LinkIndex: peerIdx, Gw: a.Gateway.AsSlice(), Table: ifc.Table})
		}
	}
	return out
}

// addrs are the addresses the interface has: its own, and its
// link-local address with IPv6.
func (ifc Iface) addrs() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ifc.Addrs)+1)
	for _, a := range ifc.Addrs {
		out = append(out, a.Addr)
	}
	if ll, ok := ifc.linkLocal(); ok {
		out = append(out, ll)
	}
	return out
}

// checkIface compares the interface peer (in the sandbox namespace of
// handle sh) with ifc and describes each difference: down, MAC, MTU,
// addresses, routes, rules.
func checkIface(sh *netlink.Handle, peer netlink.Link, ifc Iface) []string {
	var out []string
	a := peer.Attrs()
	if a.Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("%s is down", ifc.IfName))
	}
	if ifc.MAC != nil && a.HardwareAddr.String() != ifc.MAC.String() {
		out = append(out, fmt.Sprintf("%s has MAC %s, want %s", ifc.IfName, a.HardwareAddr, ifc.MAC))
	}
	if ifc.MTU > 0 && a.MTU != ifc.MTU {
		out = append(out, fmt.Sprintf("%s has MTU %d, want %d", ifc.IfName, a.MTU, ifc.MTU))
	}
	for _, p := range ifc.addrs() {
		if !hasAddr(sh, peer, p) {
			out = append(out, fmt.Sprintf("%s does not have address %s", ifc.IfName, p))
		}
	}
	if ifc.DefaultRoute {
		for _, r := range defaultRoutes(ifc, a.Index) {
			if !hasRoute(sh, r) {
				out = append(out, fmt.Sprintf("no default route via %s dev %s", r.Gw, ifc.IfName))
			}
		}
	}
	for _, r := range extraRoutes(ifc, a.Index) {
		if !hasRoute(sh, r) {
			out = append(out, fmt.Sprintf("no route %s via %s dev %s", r.Dst, r.Gw, ifc.IfName))
		}
	}
	if ifc.Table != 0 {
		for _, r := range policyRoutes(ifc, a.Index) {
			if !hasRoute(sh, r) {
				out = append(out, fmt.Sprintf("no route %s dev %s in table %d", routeString(r), ifc.IfName, ifc.Table))
			}
		}
		for _, ad := range ifc.Addrs {
			if !hasRule(sh, ad.Addr.Addr(), ifc.Table) {
				out = append(out, fmt.Sprintf("no rule from %s lookup %d", ad.Addr.Addr(), ifc.Table))
			}
		}
	}
	return out
}

// repairIface puts back what checkIface would report, calling fix for
// each change (its error nil when the change was made). Addresses
// (NODAD, as configureIface adds them) go before the routes whose src
// they are. An IPv6 address is lost when its link goes down
// (keep_addr_on_down=0): bringing the link up does not bring it back.
func repairIface(sh *netlink.Handle, peer netlink.Link, ifc Iface, fix func(kind, what string, err error)) {
	a := peer.Attrs()
	if ifc.MAC != nil && a.HardwareAddr.String() != ifc.MAC.String() {
		fix("link", "set MAC "+ifc.MAC.String()+" on "+ifc.IfName, sh.LinkSetHardwareAddr(peer, ifc.MAC))
	}
	if ifc.MTU > 0 && a.MTU != ifc.MTU {
		fix("link", fmt.Sprintf("set MTU %d on %s", ifc.MTU, ifc.IfName), sh.LinkSetMTU(peer, ifc.MTU))
	}
	for _, p := range ifc.addrs() {
		if !hasAddr(sh, peer, p) {
			fix("address", "added "+p.String()+" to "+ifc.IfName, sh.AddrReplace(peer, hostAddr(p)))
		}
	}
	if a.Flags&net.FlagUp == 0 {
		fix("link", "brought "+ifc.IfName+" up", sh.LinkSetUp(peer))
	}
	if ifc.DefaultRoute {
		for _, r := range defaultRoutes(ifc, a.Index) {
			if !hasRoute(sh, r) {
				fix("route", "added default route via "+r.Gw.String()+" dev "+ifc.IfName, sh.RouteReplace(r))
			}
		}
	}
	for _, r := range extraRoutes(ifc, a.Index) {
		if !hasRoute(sh, r) {
			fix("route", fmt.Sprintf("added route %s via %s dev %s", r.Dst, r.Gw, ifc.IfName), sh.RouteReplace(r))
		}
	}
	if ifc.Table != 0 {
		for _, r := range policyRoutes(ifc, a.Index) {
			if !hasRoute(sh, r) {
				fix("route", fmt.Sprintf("added route %s dev %s table %d", routeString(r), ifc.IfName, ifc.Table), sh.RouteReplace(r))
			}
		}
		for _, ad := range ifc.Addrs {
			ip := ad.Addr.Addr()
			if !hasRule(sh, ip, ifc.Table) {
				err := sh.RuleAdd(policyRule(ip, ifc.Table))
				if errors.Is(err, unix.EEXIST) {
					err = nil
				}
				fix("rule", fmt.Sprintf("added rule from %s lookup %d", ip, ifc.Table), err)
			}
		}
	}
}

// check refuses an Iface whose addresses cannot be configured as asked.
func (ifc Iface) check(what string) error {
	ps := make([]netip.Prefix, len(ifc.Addrs))
	for i, a := range ifc.Addrs {
		ps[i] = a.Addr
		if a.Gateway.IsValid() && (a.Gateway.Is4() != a.Addr.Addr().Is4() || a.Gateway.Is4In6()) {
			return fmt.Errorf("%s: gateway %s is not in the family of address %s: give each address its own family's gateway", what, a.Gateway, a.Addr)
		}
	}
	if err := checkAddrs(what, ps); err != nil {
		return err
	}
	if ifc.hasIPv6() && len(ifc.MAC) != 6 {
		return fmt.Errorf("%s: an IPv6 address needs the peer's MAC (its link-local address is derived from it): give a MAC", what)
	}
	return nil
}

// hasIPv6 reports whether the endpoint has an IPv6 address.
func (ifc Iface) hasIPv6() bool {
	for _, a := range ifc.Addrs {
		if a.Addr.Addr().Is6() {
			return true
		}
	}
	return false
}

// linkLocal is the interface's link-local address (see ifaceRequests), when
// it has an IPv6 address at all.
func (ifc Iface) linkLocal() (netip.Prefix, bool) {
	if !ifc.hasIPv6() {
		return netip.Prefix{}, false
	}
	return LinkLocal(ifc.MAC), true
}
