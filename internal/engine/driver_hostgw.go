package engine

import (
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"pontoon/internal/cluster"
	"pontoon/internal/link"
	"pontoon/internal/model"
)

// host-gw mode of the overlay driver (issue #13, section 4): the nodes
// share an L2 segment (their underlay), so a node reaches another's slice
// by routing it straight to that node's underlay address — no VXLAN
// device, no encapsulation, the underlay's MTU:
//
//	<its slice> via <its underlay address> dev <underlay> proto 112
//
// one route per remote node (link.SetHostRoutes, within the network's
// whole range so networks sharing the underlay keep each other's). The
// local slice is on the network's bridge as in vxlan mode, and the
// firewall knows the network's whole range as its remote members,
// through the underlay (fwNetwork, remoteVia), so traffic from them into
// the bridge is not "unsolicited" and traffic to them is not masqueraded
// — when it comes and goes through the underlay, and only then.
//
// A node whose underlay address is inside none of this host's underlay
// prefixes is on another segment: the kernel would refuse the route
// (ENETUNREACH), and an onlink route would ARP for an address nobody on
// the segment has. Such a node is refused — logged once when it appears,
// reported per node by doctor (HostGWRefusals) — and the others are
// programmed. It is not drift: self-healing does not try to repair it
// (CheckNetwork leaves it out).
//
// IPv4 subnets only: the underlay is IPv4, and Linux takes no IPv4 next
// hop for an IPv6 route (RTA_VIA is refused for IPv6, and so is an IPv4
// nexthop object); a host-gw network with an IPv6 subnet is refused when
// it is made (checkOverlayDef). The code keeps to the network's subnets
// (one SetHostRoutes per subnet) and would carry one that had a next hop.

// hostGW is the overlay driver's host-gw state: the nodes each network
// refused at its last sync, by network, node → why.
type hostGW struct {
	log     *slog.Logger
	mu      sync.Mutex
	refused map[string]map[string]string
}

// hostGWRoutes are the other live nodes' slices of network n in topology
// t, each via the node's underlay address, in node name order.
func (d *overlayDriver) hostGWRoutes(t *cluster.Topology, n *model.Network) []link.HostGWRoute {
	held := t.Slices[n.Name]
	self := d.cl.NodeName()
	var out []link.HostGWRoute
	for _, name := range slices.Sorted(maps.Keys(t.Nodes)) {
		node := t.Nodes[name]
		if name == self || !node.Underlay.IsValid() {
			continue
		}
		for _, s := range n.Overlay.SlicesIn(held[name]) {
			out = append(out, link.HostGWRoute{Dst: s, Via: node.Underlay, Peer: name})
		}
	}
	return out
}

// syncHostGW makes this host's routes of host-gw network n those of
// topology t. Nodes on another segment are recorded and logged (once
// each, when they appear), not returned: the network works between the
// others.
func (d *overlayDriver) syncHostGW(t *cluster.Topology, n *model.Network) error {
	routes := d.hostGWRoutes(t, n)
	dev, _ := d.cl.Underlay()
	var errs []error
	for _, r := range n.Overlay.Prefixes() {
		errs = append(errs, d.link.SetHostRoutes(dev, r, within(r, routes)))
	}
	var rest []error
	refused := map[string]string{}
	for _, e := range unjoin(errors.Join(errs...)) {
		var nos *link.NotOnSegmentError
		if errors.As(e, &nos) {
			refused[nos.Route.Peer] = nos.Error()
			continue
		}
		rest = append(rest, e)
	}
	d.recordRefusals(n.Name, refused)
	return errors.Join(rest...)
}

// unjoin splits an errors.Join into its errors, nested ones too (nil:
// none).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// within are those of routes whose destination is inside r (a host-gw
// network's subnet: the routes SetHostRoutes manages in it).
func within(r netip.Prefix, routes []link.HostGWRoute) []link.HostGWRoute {
	var out []link.HostGWRoute
	for _, x := range routes {
		if x.Dst.Addr().Is4() == r.Addr().Is4() && x.Dst.Bits() >= r.Bits() && r.Contains(x.Dst.Addr()) {
			out = append(out, x)
		}
	}
	return out
}

// recordRefusals replaces network's refused nodes, logging those that
// are new (an error: the node's sandboxes are unreachable from here) and
// those that are no longer refused.
func (d *overlayDriver) recordRefusals(network string, refused map[string]string) {
	h := &d.hgw
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refused == nil {
		h.refused = map[string]map[string]string{}
	}
	old := h.refused[network]
	log := h.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, node := range slices.Sorted(maps.Keys(refused)) {
		if old[node] != refused[node] {
			log.Error("cluster: host-gw network cannot reach a node; its sandboxes are unreachable from this host", "network", network, "node", node, "err", refused[node])
		}
	}
	for node := range old {
		if _, still := refused[node]; !still {
			log.Info("cluster: host-gw network reaches a node again (or it left)", "network", network, "node", node)
		}
	}
	if len(refused) == 0 {
		delete(h.refused, network)
		return
	}
	h.refused[network] = refused
}

// checkHostGW describes how this host's routes of host-gw network n differ
// from the cluster's, leaving out the nodes refused at the last sync
// (HostGWRefusals reports those).
func (d *overlayDriver) checkHostGW(t *cluster.Topology, n *model.Network) []string {
	routes := d.hostGWRoutes(t, n)
	d.hgw.mu.Lock()
	refused := d.hgw.refused[n.Name]
	d.hgw.mu.Unlock()
	routes = slices.DeleteFunc(routes, func(r link.HostGWRoute) bool { _, no := refused[r.Peer]; return no })
	dev, _ := d.cl.Underlay()
	var out []string
	for _, r := range n.Overlay.Prefixes() {
		for _, p := range d.link.CheckHostRoutes(dev, r, within(r, routes)) {
			out = append(out, "host-gw: "+p)
		}
	}
	return out
}

// removeHostGW removes this host's routes of host-gw network n.
func (d *overlayDriver) removeHostGW(n *model.Network) error {
	d.recordRefusals(n.Name, nil)
	dev, _ := d.cl.Underlay()
	var errs []error
	for _, r := range n.Overlay.Prefixes() {
		errs = append(errs, d.link.SetHostRoutes(dev, r, nil))
	}
	return errors.Join(errs...)
}

// remoteVia is the host interface network n's members on other hosts
// come and go through (firewall.Network.RemoteVia): the underlay in
// host-gw mode, the network's VXLAN device otherwise. "" when there is
// none — a daemon started without --cluster still has an overlay
// network's record, but no underlay: the firewall then knows no remote
// members, and drops what comes from them as unsolicited.
func (d *overlayDriver) remoteVia(n *model.Network) string {
	if !n.Overlay.HostGW() {
		return n.Overlay.VXLAN
	}
	if d.cl == nil {
		return ""
	}
	dev, _ := d.cl.Underlay()
	return dev
}

// hostGWMTU is the MTU of a host-gw network on an underlay of MTU under:
// the underlay's (nothing is added in front of a packet), or less if the
// network asked for less.
func hostGWMTU(asked, under int) int {
	if asked == 0 || asked > under {
		return under
	}
	return asked
}

// HostGWRefusals lists, per host-gw network, why this host does not reach
// some of the cluster's nodes (on another L2 segment), as of the last
// sync; empty when it reaches them all.
func (e *Engine) HostGWRefusals() map[string][]string {
	d, ok := e.drivers[model.DriverOverlay].(*overlayDriver)
	if !ok {
		return nil
	}
	d.hgw.mu.Lock()
	defer d.hgw.mu.Unlock()
	out := map[string][]string{}
	for network, refused := range d.hgw.refused {
		for _, node := range slices.Sorted(maps.Keys(refused)) {
			out[network] = append(out[network], refused[node])
		}
	}
	return out
}
