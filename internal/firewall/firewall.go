// Package firewall turns pontoon's networks into nftables state. It is the
// only user of nft. pontoon owns one table, `inet pontoon`; it never changes
// a chain policy and never touches another table — with the one exception
// described in ../shared/DESIGN.md: when the host's iptables has Docker's
// FORWARD chain (policy drop, jumping to DOCKER-USER), pontoon keeps one
// commented accept rule pair per network in DOCKER-USER while the network
// exists, because an accept in our table cannot undo a drop in theirs.
//
// Per-network facts are elements of sets (bridges, internal bridges,
// masqueraded subnets, intra-network pairs, the pairs of --icc=false
// networks), so the rules are static and
// the per-packet cost does not grow with the number of networks.
//
// Dual stack: IPv4 and IPv6 share the table. Rules that match no address
// (the forward chain) judge both families; rules that match one are built
// once per family from one description (family.go), with per-family sets
// and maps. Published ports on [::1] are the exception the kernel forces:
// see loopback6 in family.go.
package firewall

import (
	"context"
	"net/netip"

	"pontoon/internal/model"
)

// TableName is the nftables table pontoon owns (family inet).
const TableName = "pontoon"

// Network is what the firewall needs to know of a network.
type Network struct {
	Name   string
	Bridge string
	// Subnets are the network's subnets, at most one per family (IPv4
	// first, as in model.Network). Each says whether traffic from it is
	// masqueraded when it leaves the host; the firewall reads only Prefix
	// and Masquerade.
	Subnets []model.Subnet
	// Links are further host interfaces of the network besides its bridge
	// (an overlay network's VXLAN device, which carries its traffic to and
	// from the network's sandboxes on other hosts): members as the bridge
	// is — traffic between them and the bridge stays inside the network,
	// is not masqueraded, and is kept from other networks. What comes out
	// of a link comes from the network's members on other hosts: its
	// source must be in Remotes (RemoteVia being the link) and not in
	// Subnets, this host's slice (set link-sources), or it is dropped.
	Links []string
	// Remotes are the network's members on other hosts, by address: an
	// overlay network's whole range across the cluster (10.201.0.0/16),
	// of which Subnets holds this host's slice. Their traffic is the
	// network's own only on RemoteVia: packets from them (the range less
	// the slice: nobody on another host has an address of this host's
	// slice) arriving on it into the bridge, and from the bridge to them
	// leaving through it, are accepted (also on --internal networks) and
	// not masqueraded.
	// From them on any other interface, or into another network's
	// bridge, they are dropped like anything unsolicited. Not on
	// --icc=false networks, whose sandboxes do not reach each other, here
	// or across hosts. At most one per family.
	Remotes []netip.Prefix
	// RemoteVia is the host interface the Remotes come and go through,
	// required with them: in host-gw mode the underlay (the daemon's
	// --underlay; no member link carries their traffic), with VXLAN the
	// network's VXLAN device (one of its Links, which already makes that
	// traffic the network's own: the elements say the same thing again).
	// Never another network's bridge or link.
	// Without it, anyone who can put a packet on another of the host's
	// links could inject into the network by sending from its range.
	RemoteVia string
	Internal  bool // no route out, no NAT, not reachable from outside
	// Isolated is --icc=false: the network's sandboxes do not reach each
	// other. Bridge port isolation keeps them apart on the bridge; the
	// forward chain keeps them apart when one routes to another through
	// the gateway (rule no-icc). Published ports still answer them through
	// a host address. (Named for what it does, so that the zero value is
	// the default, icc=true.)
	Isolated bool
}

// State is the whole desired firewall state.
type State struct {
	Networks []Network
	// Ports are every published port. Sync writes them all (start-up,
	// network changes); attach and detach use Publish and Unpublish.
	Ports []Published
	// Guards are every endpoint's identity for anti-spoofing.
	Guards []Guarded
	// VXLAN is who this host's VXLAN devices take encapsulated packets
	// from; the zero value: no VXLAN overlay on this host, and no check.
	VXLAN VXLANUnderlay
}

// VXLANUnderlay is the underlay of this host's VXLAN overlays as the
// firewall guards it (table inet pontoon, chain input; see inputChain).
//
// A VXLAN device takes an encapsulated packet from any source that
// reaches its UDP port on any of the host's addresses (the kernel binds
// the port to the wildcard address and checks no sender: with learning
// off it only stops learning), and hands the frame inside to the overlay
// network of its VNI. So the firewall drops a packet to Port whose outer
// source is not one of Peers, before the device sees it.
type VXLANUnderlay struct {
	// Local is this host's underlay address (the tunnels' outer
	// source): its family is the underlay's, and the check is made for
	// packets of that family only. Invalid: no VXLAN device here; Port
	// and Peers must then be empty.
	Local netip.Addr
	// Port is the UDP destination port of pontoon's VXLAN devices
	// (link.VXLANPort).
	Port uint16
	// Peers are the underlay addresses of the nodes this host's VXLAN
	// devices exchange packets with (every node holding a slice of one
	// of its VXLAN networks), of Local's family. Empty: nobody (a cluster
	// of one node).
	Peers []netip.Addr
}

// Published is one port mapping of one endpoint: host side → Targets.
//
// Targets are the endpoint's addresses, at most one per family. A mapping
// on every host address (HostIP zero) is one DNAT element per target:
// IPv4 clients reach the IPv4 target, IPv6 clients the IPv6 one (NAT does
// not cross families). A mapping bound to one host address needs a target
// of that address's family, and is one element. A mapping bound to ::1
// cannot be DNATed (see loopback6 in family.go) and is refused.
type Published struct {
	model.PortMapping
	Targets []netip.Addr
}

// Interface is what the engine needs. Implementations: New (real nft via
// sigs.k8s.io/knftables) and NewFake (knftables.Fake, for golden tests).
type Interface interface {
	// Sync makes the kernel match s in one nft transaction (the whole
	// table is rebuilt: delete + add), and adds/removes pontoon's rules in
	// DOCKER-USER when that chain exists. Calling it again with the same
	// state is a no-op as far as traffic is concerned.
	Sync(ctx context.Context, s State) error
	// Exists reports whether pontoon's table is present in the kernel.
	Exists(ctx context.Context) (bool, error)
	// Delete removes pontoon's table and its DOCKER-USER rules. Missing is
	// success.
	Delete(ctx context.Context) error
	// Dump returns the current table as nft text (for doctor / debug).
	Dump(ctx context.Context) (string, error)
	// Publish adds the DNAT map elements of port mappings (one element per
	// port and target family) and Unpublish removes them (missing is
	// success). Each is one netlink transaction, no nft process: it costs
	// the same whatever is already published. A mapping that cannot be
	// written (bound to ::1, or to a host address of a family the endpoint
	// has no address of) is refused before anything is written.
	Publish(ctx context.Context, ps []Published) error
	Unpublish(ctx context.Context, ps []Published) error
	// Guard adds an endpoint's anti-spoofing elements (its port, MAC and
	// addresses) and Unguard removes them (missing is success); one netlink
	// transaction each.
	Guard(ctx context.Context, gs []Guarded) error
	Unguard(ctx context.Context, gs []Guarded) error
	// UpdateVXLANPeers moves set vxlan-peers from old's peers to new's
	// (same local address and port) in one netlink transaction, between
	// Syncs (vxlanpeers.go).
	UpdateVXLANPeers(ctx context.Context, old, new VXLANUnderlay) error

	// Watch streams a notice whenever nftables changes pontoon's tables or
	// Docker's filter chains, until ctx ends (bursts are coalesced: one
	// notice may stand for many changes).
	Watch(ctx context.Context) (<-chan Event, error)
	// Check says what of want is missing from the kernel ("" when nothing
	// is): the tables, the forward rules, and as many bridge, port and
	// anti-spoofing elements as want has. It changes nothing and execs no
	// nft process.
	Check(ctx context.Context, want State) string
}
