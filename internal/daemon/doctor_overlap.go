package daemon

import (
	"slices"
	"strings"

	"pontoon/internal/api"
	"pontoon/internal/engine"
	"pontoon/internal/link"
	"pontoon/internal/model"
)

// hostOverlap reports networks whose subnet overlaps one of the host's own
// networks (an address or a connected route on a link that is not one of
// pontoon's bridges). Creating such a network is refused, so this finds
// what the host gained later: an address or route added to a link, a DHCP
// lease, a VPN coming up. It is an error: pontoon's bridge and the other
// link both claim those addresses, so the host's traffic to them reaches
// only one of the two, and sandboxes may hold addresses the host or its
// LAN use (a sandbox holding a host address is named).
func (d *doctor) hostOverlap(nets []*model.NetworkInfo) []api.Finding {
	all, err := d.link.HostNets()
	if err != nil {
		return []api.Finding{finding(api.LevelWarn, "host-overlap", "cannot list the host's addresses and routes: %v", err)}
	}
	plain := make([]*model.Network, 0, len(nets))
	for _, n := range nets {
		plain = append(plain, &n.Network)
	}
	host := engine.HostOwnNets(all, plain)
	var out []api.Finding
	for _, n := range nets {
		seg := engine.SegmentOf(&n.Network)
		for _, sub := range n.Subnets {
			var over []link.HostNet
			for _, h := range engine.HostOverlaps(sub.Prefix, host) {
				// On a macvlan network's own segment only a host address
				// among those the network hands out is a problem.
				if seg[h.Link] && (h.Kind != link.HostAddress || !sub.AllocRange().Contains(h.Prefix.Addr())) {
					continue
				}
				over = append(over, h)
			}
			if len(over) == 0 {
				continue
			}
			var what []string
			for _, h := range over {
				what = append(what, engine.DescribeHostNet(h))
			}
			var taken []string
			for _, h := range over {
				a := h.Prefix.Addr()
				if h.Kind != link.HostAddress || !sub.Prefix.Contains(a) {
					continue
				}
				for _, ep := range n.Endpoints {
					if slices.Contains(ep.IPs(), a) {
						taken = append(taken, "sandbox "+ep.Sandbox+" has "+a.String())
					}
				}
			}
			held := ""
			if len(taken) > 0 {
				held = " (" + strings.Join(taken, ", ") + ")"
			}
			out = append(out, finding(api.LevelError, "host-overlap",
				"network %s (subnet %s) overlaps %s, the host's own network: the host's traffic to those addresses reaches only one of the two, and sandboxes can be given addresses of the host or its LAN%s; remove the address or route from the host, or recreate the network with another --subnet",
				n.Name, sub.Prefix, strings.Join(what, ", "), held))
		}
	}
	if len(out) == 0 {
		out = append(out, finding(api.LevelOK, "host-overlap", "no network overlaps the host's own addresses or routes"))
	}
	return out
}
