// Package link is the only importer of vishvananda/netlink: bridges, veth
// pairs, addresses, routes and policy rules. The engine talks to it through
// Interface; Fake holds the same state in memory for unit tests.
//
// Design notes:
//   - The veth peer is created directly inside the sandbox namespace
//     (IFLA_NET_NS_FD), never created on the host and moved: a move costs an
//     RCU barrier.
//   - Everything inside a sandbox is done with a netlink handle bound to its
//     namespace (netlink.NewHandleAt), so no OS thread switches namespace.
//   - Deleting a veth costs ~20 ms of RCU wait in the kernel. DeleteVeths
//     deletes many at once (one RTM_DELLINK by interface group), so the cost
//     is paid once per batch.
//   - Addresses are plural and of either family, at most one per family;
//     every request is built by one function from the address it carries
//     (family.go). IPv6 addresses pontoon sets are added without duplicate
//     address detection (unique by construction; DAD would keep them
//     unusable for 1–2 s); IPv6 sandboxes and bridges get a link-local
//     address derived from their MAC, and accept no router advertisements.
//     Host ends of veths have no IPv6 addresses at all.
package link

import (
	"context"
	"net"
	"net/netip"
)

// Bridge describes a network's bridge on the host.
type Bridge struct {
	Name string
	// Gateways are the bridge's addresses, one per family of the network
	// (IPv4 first), each with its subnet's length: 10.88.0.1/16,
	// fd00:1::1/64.
	Gateways []netip.Prefix
	MTU      int
	// Options: STP, ageing, VLAN filtering, multicast snooping. nil: the
	// defaults pontoon always had (multicast snooping off, the rest left
	// as the kernel or, for an adopted bridge, its owner has them).
	Options *BridgeOptions
	// External: the switch is not a Linux bridge but another's (an Open
	// vSwitch bridge), which made the link Name (its internal port).
	// EnsureBridge then only configures that link as the network's
	// gateway (MTU, IPv6 settings, addresses, up) and CheckBridge checks
	// only that; Options do not apply.
	External bool
}

// Address is one of an endpoint's addresses, with its family's gateway.
// It has the shape of model.Address: link.Address(a) converts one.
type Address struct {
	Addr    netip.Prefix // the peer's address with its subnet's length: 10.88.0.5/16, fd00:1::5/64
	Gateway netip.Addr   // that family's gateway; zero: none (no default route in the family)
}

// Iface is an interface inside a sandbox as pontoon configures it (L3):
// its name, MAC, MTU, addresses, routes and rules. It is the same whatever
// made the link (a veth's peer, a macvlan, the far end of a direct link):
// plumbing (L2) is each kind's own, configuring is one step for all
// (configureIface, checkIface, repairIface).
type Iface struct {
	Netns    string           // path of the sandbox namespace
	NetnsIno uint64           // its identity (netns.Ino); 0: not checked
	IfName   string           // eth0, eth1, … inside the sandbox
	MAC      net.HardwareAddr // required with an IPv6 address
	MTU      int              // 0: the kernel's default
	// Addrs are the interface's addresses, at most one per family (IPv4
	// first). An IPv6 address comes with the link-local address derived
	// from MAC (LinkLocal), and with router advertisements and address
	// autoconfiguration off on the interface. None: the link is only
	// brought up (an endpoint whose addresses are someone else's).
	Addrs []Address

	// DefaultRoute: add "default via GATEWAY dev IfName" to the main
	// table, for each address with a gateway (the sandbox's first network).
	DefaultRoute bool
	// Routes are further main-table routes through the interface, each
	// "Dst via Via dev IfName" (an overlay network's whole subnet through
	// the gateway of this host's slice, also on an internal network that
	// has no default route).
	Routes []Route
	// Table ≠ 0: source-based policy routing for a secondary interface, so
	// that the sandbox answers through the interface a request came in on:
	// for each address, table Table gets "SUBNET dev IfName src IP" and
	// (with a gateway) "default via GATEWAY dev IfName", and a rule "from
	// IP lookup Table" (priority Table) is added — the seeds' dual-NIC `ip
	// rule` example. Each family has its own table and rules in the
	// kernel, so the same number serves both.
	Table int
}

// Route is a route of a sandbox's interface: Dst via Via.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Veth describes one endpoint's cable: a pair whose host end is a port of
// Bridge and whose peer is Iface in the sandbox (its MTU is the pair's).
type Veth struct {
	HostName string // host end, joins Bridge
	// Bridge is the Linux bridge the host end joins; "": none, the host
	// end is left for another switch (an Open vSwitch port), without the
	// port settings below.
	Bridge   string
	Isolated bool // bridge port isolation (network with icc=false)
	// NoHairpin: the port is not in hairpin mode (it is by default, so
	// that a sandbox reaches its own published ports).
	NoHairpin bool
	// VLAN ≠ 0: the port's PVID, untagged, on a VLAN-filtering bridge
	// (see vlanRequests).
	VLAN int

	// Iface is the peer. With Netns empty the peer is made on the host,
	// named IfName, with MAC and MTU, down and unconfigured, for someone
	// else to move and configure (Docker moves a driver's interface into
	// the container itself); Check and Repair then look at the host end
	// only.
	Iface
}

// LinkInfo is what ListLinks reports about a host link.
type LinkInfo struct {
	Name   string
	Index  int
	Type   string // "bridge", "veth", …
	Master string // name of the bridge it is a port of, if any
	MTU    int
	Up     bool // administratively up
	// Stats are the link's counters (IFLA_STATS64), from its own point of
	// view; nil when the kernel gave none.
	Stats *LinkStats
}

// LinkStats are a link's counters as `ip -s link` shows them: bytes,
// packets, drops and errors received (Rx) and sent (Tx).
type LinkStats struct {
	RxBytes, RxPackets, RxDropped, RxErrors uint64
	TxBytes, TxPackets, TxDropped, TxErrors uint64
}

// HostNetKind says what a HostNet is.
type HostNetKind string

const (
	// HostAddress is an address of the host: Prefix is the address with
	// its prefix length (198.51.100.1/24).
	HostAddress HostNetKind = "address"
	// HostRoute is a connected route (a network reached directly on a
	// link, no gateway): Prefix is its destination (198.51.100.0/24).
	HostRoute HostNetKind = "route"
)

// HostNet is one of the host's own networks (IPv4 or IPv6), where the
// kernel has it.
type HostNet struct {
	Prefix netip.Prefix
	Link   string // the interface it is on, e.g. uplink0
	Kind   HostNetKind
}

// Network returns the network HostNet stands for: an address's subnet
// (198.51.100.0/24 for 198.51.100.1/24), a route's destination.
func (h HostNet) Network() netip.Prefix { return h.Prefix.Masked() }

// Interface is what the engine needs from the kernel's links.
type Interface interface {
	// EnsureBridge creates the bridge (or, when one with that name exists,
	// reuses it), sets its MTU, adds the gateway addresses if missing and
	// brings it up. The bridge never accepts router advertisements nor
	// autoconfigures addresses; with an IPv6 gateway it also gets the
	// link-local address derived from its MAC. It returns the bridge's
	// ifindex.
	EnsureBridge(b Bridge) (int, error)
	// DeleteBridge deletes a bridge. A bridge that does not exist is success.
	DeleteBridge(name string) error

	// AddVeth creates the pair, the peer directly in v.Netns, configures
	// it (MAC, MTU, addresses, up, routes, rules), joins the host end to
	// the bridge (port isolation if asked) and brings it up. It returns the
	// host end's ifindex. On error it removes whatever it created; invalid
	// addresses (two of a family, a gateway of the other family, IPv6
	// without a MAC) are refused before anything is made.
	AddVeth(v Veth) (hostIndex int, err error)
	// DisableVeth takes the host end down and out of its bridge: the
	// endpoint stops carrying traffic at once (fast, no RCU wait). A missing
	// link is success.
	DisableVeth(hostName string) error
	// DeleteVeths deletes host links by name in one batch: host ends of
	// veths (the peers go with them) and taps (AddTap) alike, a tap even
	// while a VM has it open. Links that do not exist are success.
	DeleteVeths(hostNames []string) error

	// AddTap creates a persistent tap (IFF_TAP, IFF_NO_PI, multi-queue if
	// asked, with its owner and group), joins it to the bridge with the
	// port's flags and VLAN exactly as AddVeth does a veth's host end, and
	// brings it up; it returns its ifindex. It has no carrier until a
	// process (the VM) opens it. A link with that name is an error. On
	// error nothing is left behind.
	AddTap(t Tap) (index int, err error)
	// CheckTap compares the kernel with t (exists, is a tap, multi-queue,
	// persistent, owner, group, bridge port, port flags, up, MTU) and
	// describes each difference; nil when they match. No carrier is no
	// difference. It changes nothing.
	CheckTap(t Tap) []string
	// RepairTap brings a tap back to t, changing only what differs, and
	// says what it changed: a missing tap is made again, one of the wrong
	// kind (multi-queue, owner, group, not persistent) is deleted and made
	// again, a tap off its bridge rejoins it. It returns its ifindex.
	RepairTap(t Tap) (index int, fixed []Fix, err error)

	// CheckVeth compares the kernel with v and describes each difference
	// (missing link, address, MAC, MTU, route, rule, bridge port); nil when
	// they match. It changes nothing.
	CheckVeth(v Veth) []string

	// AddPair creates a direct link (Pair): one veth pair made with each
	// end directly in its sandbox, both ends configured as their Iface
	// says. On error nothing is left. DeleteIface of either end deletes
	// the pair. CheckPair describes how the kernel differs from p (nil:
	// it matches); RepairPair puts it back (a missing end makes the pair
	// again).
	AddPair(p Pair) error
	CheckPair(p Pair) []string
	RepairPair(p Pair) ([]Fix, error)
	// Every method that enters a sandbox's namespace first checks that it is
	// the one with the identity it is given (Veth.NetnsIno, ino): a path
	// that now names another namespace fails with ErrNetnsGone and nothing
	// in that namespace is touched.
	//
	// DeleteRule removes the policy rule "from addr lookup table" (in
	// addr's family) from the namespace at netns (a detached secondary
	// endpoint's); call it once per address. Missing rule or namespace is
	// success.
	DeleteRule(netns string, ino uint64, addr netip.Addr, table int) error

	// SetDefaultRoute makes "default via gw dev ifname" the main table's
	// default route of gw's family in the namespace at netns (replacing
	// any other of that family); call it once per family.
	SetDefaultRoute(netns string, ino uint64, ifname string, gw netip.Addr) error

	// ListLinks lists the host namespace's links whose names start with one
	// of the prefixes (all links when none is given).
	ListLinks(prefixes ...string) ([]LinkInfo, error)
	// LinkIndex returns a host link's ifindex, or 0 and no error when it
	// does not exist.
	LinkIndex(name string) (int, error)
	// Link describes one host link, as ListLinks would, without dumping
	// them all (for reading a few of many); ok is false when it does not
	// exist.
	Link(name string) (l LinkInfo, ok bool, err error)

	// HostPrefixes lists the IPv4 and IPv6 addresses (as prefixes) and
	// routes' destinations of the host namespace, for choosing subnets that
	// do not overlap with the host's. IPv6 link-local and multicast
	// prefixes are left out.
	HostPrefixes() ([]netip.Prefix, error)
	// HostNets lists the host namespace's own IPv4 and IPv6 networks with
	// the link each is on: every address, and every connected route (main
	// table, no gateway, not the default route), leaving out IPv6
	// link-local (fe80::/10) and multicast ones. pontoon's bridges are
	// included: callers that mean "the host's, not pontoon's" leave them
	// out by name.
	HostNets() ([]HostNet, error)

	// CheckBridge compares the kernel with b (exists, is a bridge, up, MTU,
	// multicast snooping off or, with Options, each option, gateway
	// addresses, router advertisements off) and describes each difference; nil when they match.
	// EnsureBridge repairs them all.
	CheckBridge(b Bridge) []string
	// RepairVeth brings an endpoint's kernel state back to v, changing only
	// what differs, and says what it changed: a missing pair is made again
	// (same names, address and MAC), a host end off its bridge rejoins it,
	// a missing address, route or rule in the sandbox is added back. It
	// returns the host end's ifindex.
	RepairVeth(v Veth) (hostIndex int, fixed []Fix, err error)

	// AddMacvlan creates m as a macvlan on its parent (a host link),
	// directly in m.Netns, with its MAC, MTU and mode, and configures it
	// as AddVeth does its peer (addresses, up, routes, rules). The parent
	// is brought up if it is down. Bad input (missing or unsuitable
	// parent, unknown mode, MTU above the parent's, a MAC that is the
	// parent's) is refused before anything is made; on a later error the
	// macvlan is deleted again.
	AddMacvlan(m Macvlan) error
	// CheckMacvlan compares the kernel with m (parent there and up, the
	// macvlan in the sandbox on that parent in that mode, and its MAC,
	// MTU, addresses, routes and rules) and describes each difference;
	// nil when they match. It changes nothing.
	CheckMacvlan(m Macvlan) []string
	// RepairMacvlan brings an endpoint back to m, changing only what
	// differs, and says what it changed: a missing macvlan (or another
	// link of its name) is made again; a parent that is down is brought
	// up. A missing parent is an error: its macvlans went with it.
	RepairMacvlan(m Macvlan) ([]Fix, error)
	// DeleteIface deletes the interface ifname inside the sandbox at netns
	// (an endpoint without a host end, such as a macvlan). A missing link
	// or namespace (or one that is no longer ino) is success.
	DeleteIface(netns string, ino uint64, ifname string) error

	// EnsureVLAN makes the 802.1Q link <parent>.<id> on the host, up (the
	// parent too), for a macvlan network on a VLAN. An existing VLAN id
	// on parent of that name is reused (created false); any other link of
	// that name, or a name longer than the kernel's 15 characters, is an
	// error.
	EnsureVLAN(parent string, id int) (name string, created bool, err error)
	// DeleteVLAN deletes a VLAN link of the host. A missing link is
	// success; a link that is not a VLAN is left alone, with an error.
	DeleteVLAN(name string) error

	// EnsureShim makes (or repairs) the host's macvlan on a macvlan
	// network's parent (bridge mode) with the host's addresses and routes
	// through it, up: the host cannot reach its macvlans through the
	// parent itself. s.Name starts with ShimPrefix.
	EnsureShim(s Shim) error
	// CheckShim compares the kernel with s and describes each difference;
	// nil when they match.
	CheckShim(s Shim) []string
	// DeleteShim deletes a shim. A missing link is success.
	DeleteShim(name string) error

	// EnsureVXLAN makes (or repairs) an overlay network's VXLAN device
	// (vxlan.go): VNI, local underlay address and device, port, learning
	// off, addrgenmode none, its stable MAC, MTU (0: the underlay's minus
	// the encapsulation), its slice's address, up. It returns its
	// ifindex, which changes when a device that differed in what cannot
	// be changed (VNI, local, underlay, port) was made again: its peers'
	// entries went with it, call SetPeers again.
	EnsureVXLAN(v VXLAN) (int, error)
	// DeleteVXLAN deletes a VXLAN device; missing is success, a link that
	// is not a VXLAN device is an error and left alone.
	DeleteVXLAN(name string) error
	// CheckVXLAN describes how the kernel differs from v; nil: it matches.
	CheckVXLAN(v VXLAN) []string
	// SetPeers makes the VXLAN device's routes ("SLICE via GATEWAY
	// onlink"), permanent neighbours ("GATEWAY lladdr VTEPMAC") and
	// permanent FDB entries ("VTEPMAC dst UNDERLAY") exactly those of
	// peers, changing only what differs; entries that are not pontoon's
	// are left alone. CheckPeers describes how they differ; nil: they
	// match.
	SetPeers(vxlan string, peers []Peer) error
	CheckPeers(vxlan string, peers []Peer) []string

	// SetHostRoutes makes the device's routes of pontoon's protocol
	// inside within (hostroute.go: a host-gw overlay's "SLICE via
	// UNDERLAY dev DEV proto 112", within its whole range) exactly routes, changing only what differs; other
	// routes are left alone. A route whose gateway is not on the device's
	// L2 segment is refused (a NotOnSegmentError among the returned
	// errors) and the others are programmed. CheckHostRoutes describes how
	// they differ; nil: they match.
	SetHostRoutes(dev string, within netip.Prefix, routes []HostGWRoute) error
	CheckHostRoutes(dev string, within netip.Prefix, routes []HostGWRoute) []string

	// IPForward reports whether net.ipv4.ip_forward is on in the host
	// namespace; SetIPForward turns it on.
	IPForward() (bool, error)
	SetIPForward() error
	// IPv6Host reads the host namespace's IPv6 state: whether the kernel
	// has IPv6 and it is on, forwarding, and each uplink's router
	// advertisement settings and IPv6 default route (for doctor).
	IPv6Host() (IPv6Host, error)
	// SetIPv6Forward turns net.ipv6.conf.all.forwarding on in the host
	// namespace, first setting accept_ra=2 on each uplink whose accept_ra
	// is 1 so that the host keeps its RA-learned IPv6 default route (a
	// warning is logged for each). It returns what it changed, in order;
	// nothing when forwarding is already on. ErrIPv6Unavailable or
	// ErrIPv6Disabled (wrapped): nothing changed.
	SetIPv6Forward() ([]SysctlChange, error)

	// Watch streams link, address, route, rule (both families) and IPv4
	// setting notifications of the host namespace (netns "") or of a sandbox's
	// (checked against ino) until ctx ends. The watch holds a reference to
	// the namespace while it is open.
	Watch(ctx context.Context, netns string, ino uint64) (<-chan Event, error)

	// Uplinks lists the host links that carry an IPv4 default route (the
	// way out), for MTU checks.
	Uplinks() ([]LinkInfo, error)

	// DeleteConntrack deletes the host namespace's IPv4 conntrack entries
	// that match any of the filters (see ConntrackFilter), reading the
	// table once, and returns how many it deleted. An entry that vanishes
	// meanwhile counts as deleted. An invalid filter deletes nothing.
	DeleteConntrack(filters []ConntrackFilter) (int, error)

	// FDB reads what dev, a bridge or a VXLAN device of the host, knows at
	// layer 2 (fdb.go): a bridge's learned and static forwarding entries
	// by port, a VXLAN device's entries with their remote VTEPs, and the
	// host's neighbour entries on dev. It changes nothing and enters no
	// sandbox. Another kind of link is an error that says so.
	FDB(dev string) (FDBTable, error)
}
