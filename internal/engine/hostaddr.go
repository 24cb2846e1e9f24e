package engine

import (
	"fmt"
	"net/netip"

	"pontoon/internal/link"
	"pontoon/internal/model"
)

// The host's own addressing and pontoon's must not collide. A network whose
// subnet is the host's LAN takes the LAN away from the host (the bridge's
// route competes with the uplink's), gets the uplink's address as its
// gateway, and hands the LAN's addresses to sandboxes; published ports then
// see the gateway instead of LAN clients. Automatic subnets already avoid
// every host route (pickSubnet); these checks cover what a user gives, and
// what the host gains later (doctor).

// HostOwnNets returns the host's own networks out of all that the link
// adapter reports: pontoon's bridges (the bridges of nets) are left out,
// since they are pontoon's networks, checked against each other.
func HostOwnNets(all []link.HostNet, nets []*model.Network) []link.HostNet {
	ours := make(map[string]bool, len(nets))
	for _, n := range nets {
		ours[n.Bridge] = true
		if m := n.Macvlan; m != nil && m.Shim {
			ours[model.ShimName(n.ID)] = true // the host's own macvlan on the network
		}
		if o := n.Overlay; o != nil && o.VXLAN != "" {
			ours[o.VXLAN] = true // the overlay's tunnel, with its slice's address
		}
	}
	out := make([]link.HostNet, 0, len(all))
	for _, h := range all {
		if !ours[h.Link] {
			out = append(out, h)
		}
	}
	return out
}

// SegmentOf returns the host links whose segment network n is on by
// design (a macvlan network's parent and its VLAN sub-interface): the
// host's networks there are the network's own, and only a host address
// among those it hands out is a problem.
func SegmentOf(n *model.Network) map[string]bool {
	if m := n.Macvlan; m != nil {
		return map[string]bool{m.Parent: true, m.Link: true}
	}
	return nil
}

// HostOverlaps returns the host's own networks that subnet overlaps, in
// the order given.
func HostOverlaps(subnet netip.Prefix, host []link.HostNet) []link.HostNet {
	var out []link.HostNet
	for _, h := range host {
		if h.Network().Overlaps(subnet) {
			out = append(out, h)
		}
	}
	return out
}

// DescribeHostNet names a host network for people: "198.51.100.0/24 on
// uplink0 (host address 198.51.100.1)".
func DescribeHostNet(h link.HostNet) string {
	if h.Kind == link.HostAddress {
		return fmt.Sprintf("%s on %s (host address %s)", h.Network(), h.Link, h.Prefix.Addr())
	}
	return fmt.Sprintf("%s on %s", h.Network(), h.Link)
}

// checkHostNets refuses a network about to be created whose subnet
// overlaps one of the host's own networks (and so could have a host
// address as its gateway, or hand one to a sandbox). all is what the link
// adapter reports, nets the networks that exist. A bridge given with
// --bridge that exists already (adopted) is the network's own: what is on
// it does not count as the host's, but an address on it that sandboxes
// could be given is refused.
//
// A macvlan network is on its parent's segment by design: the host's
// networks on the parent (or its VLAN sub-interface) are the network's
// own, and only a host address among those it hands out is refused.
func checkHostNets(n *model.Network, all []link.HostNet, nets []*model.Network) error {
	own := SegmentOf(n)
	if own == nil {
		own = map[string]bool{}
	}
	if n.Bridge != "" {
		own[n.Bridge] = true
	}
	var host []link.HostNet
	for _, h := range HostOwnNets(all, nets) {
		if !own[h.Link] {
			host = append(host, h)
			continue
		}
		a := h.Prefix.Addr()
		for _, s := range n.Subnets {
			if h.Kind != link.HostAddress || a == s.Gateway || !s.AllocRange().Contains(a) {
				continue
			}
			if n.Macvlan != nil {
				return model.Conflictf("the host has address %s on %s, inside the addresses macvlan network %s hands out (%s): a sandbox could be given the host's address; give an --ip-range of the LAN without it (the part of the LAN that pontoon may hand out, outside its DHCP pool)",
					h.Prefix, h.Link, n.Name, s.AllocRange())
			}
			return model.Conflictf("bridge %s already has address %s, inside the addresses network %s hands out (%s): a sandbox could be given the host's address; make it the gateway with --gateway %s, give an --ip-range without it, or remove it from %s",
				n.Bridge, h.Prefix, n.Name, s.AllocRange(), a, n.Bridge)
		}
	}
	for _, s := range n.Subnets {
		o := HostOverlaps(s.Prefix, host)
		if len(o) == 0 {
			continue
		}
		gw := ""
		for _, h := range host {
			if h.Kind == link.HostAddress && h.Prefix.Addr() == s.Gateway {
				gw = fmt.Sprintf(", and its gateway %s would be the host's address on %s", s.Gateway, h.Link)
			}
		}
		return model.Conflictf("subnet %s overlaps %s, the host's own network%s: the host would lose its way to that network and sandboxes would get its addresses; pick another subnet, or leave --subnet out to get a free one",
			s.Prefix, DescribeHostNet(o[0]), gw)
	}
	return nil
}

// checkNotHostAddr refuses a static address (--ip) that the host has: the
// sandbox would take it from the host (or be unreachable from it).
func (e *Engine) checkNotHostAddr(ip netip.Addr) error {
	all, err := e.link.HostNets()
	if err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	for _, h := range all {
		if h.Kind == link.HostAddress && h.Prefix.Addr() == ip {
			return model.Conflictf("address %s is an address of the host, on %s: a sandbox cannot have it; pick another address, or leave --ip out to get a free one", ip, h.Link)
		}
	}
	return nil
}

// checkPortsOnNetwork refuses published ports on an --internal network:
// the firewall lets nothing in or out of it (forward rule (c)), and the
// sandboxes there have no route back to the host's other addresses, so a
// mapping would answer nowhere but the host's 127.0.0.1. Docker does not
// publish ports from internal networks either.
func checkPortsOnNetwork(nw *model.Network, ports []model.PortMapping) error {
	if nw.Internal && len(ports) > 0 {
		return model.Invalidf("network %s is --internal: it has no way in or out, so it cannot publish ports (%s); publish ports from a non-internal network", nw.Name, ports[0])
	}
	return nil
}
