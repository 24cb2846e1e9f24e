package firewall

import (
	"strings"

	"pontoon/internal/model"
)

// Places a published port can be reached from, as Reach names them.
const (
	FromLAN       = "lan"       // other hosts, through one of the host's addresses
	FromHost      = "host"      // the host itself
	FromSandboxes = "sandboxes" // sandboxes, through a host address (hairpin)
)

// Reach is where a published port answers, read off the rules this package
// writes for it (ruleset.go), so that what pontoon reports cannot drift
// from what the firewall lets through.
type Reach struct {
	// From lists FromLAN, FromHost, FromSandboxes, in that order.
	From []string
	// Text says the same for people, with the addresses and exceptions.
	Text string
}

// Reachable says from where mapping p of an endpoint on network n is
// reachable:
//
//   - the host: chain output DNATs traffic to any local address (both
//     maps), 127.0.0.1 included; the sandbox answers through its default
//     route, or through the 127.0.0.0/8 masquerade rule.
//   - the LAN: chain prerouting DNATs traffic to a local address, but the
//     loopback guard drops 127.0.0.0/8 arriving on any other interface than
//     lo, so a mapping bound to a loopback address is the host's only.
//   - sandboxes: prerouting too, from their bridge, through the host's
//     addresses; forward rule (e) accepts the DNATed connection before (d)
//     would isolate the networks, and the hairpin masquerade rule brings the
//     replies back. Rule (c) drops everything from an internal network that
//     leaves it, so sandboxes on internal networks reach no other
//     network's published port.
//   - an internal target network: (c) drops every forwarded packet into it
//     from another interface, and its sandboxes have no default route, so
//     only a path that ends up with a source on its own subnet answers: the
//     host through 127.0.0.1 (masqueraded to the gateway), and sandboxes of
//     that network through its gateway ((a) accepts, hairpin masquerade).
//     pontoon refuses new mappings there; this describes older ones.
//   - an icc=false target network: not from its own sandboxes, through
//     any address. The firewall would let them (rule no-icc-published),
//     but with br_netfilter the kernel bridges a DNAT to an address on
//     the same bridge ("bridged DNAT", br_nf_pre_routing_finish) from the
//     client's port to the target's, and bridge port isolation drops it —
//     even back to the client's own port (TestKernelNoICC). Sandboxes of
//     other networks are routed to it and do reach it.
//   - [::1]: nowhere through the firewall. The kernel cannot DNAT ::1
//     (loopback6 in family.go); Publish refuses such mappings, and a
//     userspace relay must serve them.
//
// A mapping on every host address answers on the host's IPv4 and IPv6
// addresses alike when the endpoint has an address of each family (one
// DNAT element per family).
func Reachable(p model.PortMapping, n Network) Reach {
	if isLoopbackOnly(p.HostIP) {
		return Reach{From: []string{}, Text: "not through the firewall ([" + p.HostIP.String() + "] cannot be DNATed: a userspace relay must serve it)"}
	}
	loopback := p.HostIP.IsValid() && p.HostIP.IsLoopback()
	if n.Internal {
		switch {
		case loopback:
			return Reach{From: []string{FromHost}, Text: "host only (" + p.HostIP.String() + "; network " + n.Name + " is --internal)"}
		case p.HostIP.IsValid():
			return Reach{From: []string{}, Text: "nowhere (network " + n.Name + " is --internal: publish from a non-internal network)"}
		case n.Isolated:
			return Reach{From: []string{FromHost},
				Text: "host through 127.0.0.1 only (network " + n.Name + " is --internal, and has icc=false: not even its own sandboxes; publish from a non-internal network)"}
		}
		return Reach{From: []string{FromHost, FromSandboxes},
			Text: "host through 127.0.0.1, sandboxes of network " + n.Name + " through its gateway (it is --internal: publish from a non-internal network)"}
	}
	switch {
	case loopback:
		return Reach{From: []string{FromHost}, Text: "host only (" + p.HostIP.String() + ")"}
	case p.HostIP.IsValid():
		return reach("through "+p.HostIP.String()+" only", n)
	}
	return reach("every host address", n)
}

func reach(where string, n Network) Reach {
	from := []string{FromLAN, FromHost, FromSandboxes}
	not := "not from sandboxes of --internal networks"
	if n.Isolated {
		not += " nor of network " + n.Name + " itself (icc=false)"
	}
	return Reach{From: from, Text: strings.Join([]string{"LAN", "host", "sandboxes"}, ", ") + " (" + where + "; " + not + ")"}
}
