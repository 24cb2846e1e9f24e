// Package model holds pontoon's vocabulary — Network, Sandbox, Endpoint —
// with their validation and the deterministic names and addresses derived
// from them. It does no I/O: everything here is pure and unit-tested without
// root.
//
// Names that reach the kernel are derived, never random, so that the engine
// can find (and garbage-collect) a kernel object from a store record alone,
// and the other way round, after a crash:
//
//	bridge of the default network   pontoon0
//	bridge of another network       ptbr-<8 hex of the network ID>   (13 bytes)
//	host end of an endpoint's veth  ptv-<10 hex of the endpoint ID>  (14 bytes)
//
// Linux limits interface names to 15 bytes (IFNAMSIZ-1).
package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Well-known names.
const (
	DefaultNetwork = "pontoon"  // the network that exists from the first start
	DefaultBridge  = "pontoon0" // its bridge

	// Network drivers (Network.Driver). See DriverCaps for what each
	// honours and docs/drivers.md for how.
	DriverBridge  = "bridge"  // a Linux bridge per network, a veth pair per endpoint
	DriverLink    = "link"    // two members joined by one veth pair, no bridge, no host presence
	DriverMacvlan = "macvlan" // members are macvlans of a host link, on its segment
	DriverOVS     = "ovs"     // an Open vSwitch bridge per network, a veth pair per endpoint
	// DriverOverlay: a network across the hosts of a cluster (daemon
	// --cluster): on each host a bridge for its slice of the subnet, and
	// a VXLAN device to the other hosts' slices.
	DriverOverlay = "overlay"

	BridgePrefix   = "ptbr-" // bridges pontoon creates for user networks
	HostVethPrefix = "ptv-"  // host ends of endpoint veth pairs
	ShimPrefix     = "ptm-"  // the host's own macvlan on a macvlan network (--shim)
	TapPrefix      = "ptt-"  // tap devices for VMs
	PeerPrefix     = "ptp-"  // the container end of a Docker endpoint's veth, until dockerd moves it
	VXLANPrefix    = "ptvx-" // an overlay network's VXLAN device (ptvx-VNI)

	MaxIfNameLen = 15
	DefaultMTU   = 1500
)

// Network is an L2 segment with its subnets (at most one per address
// family, IPv4 first): a Linux bridge on the host.
type Network struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Driver   string            `json:"driver"`
	Bridge   string            `json:"bridge"`
	Subnets  []Subnet          `json:"subnets"`
	Internal bool              `json:"internal"`
	ICC      bool              `json:"icc"`
	MTU      int               `json:"mtu"`
	Labels   map[string]string `json:"labels,omitempty"`
	// BridgeAdopted is true when the bridge existed before pontoon created the
	// network (given with --bridge): pontoon then never deletes it.
	BridgeAdopted bool `json:"bridge_adopted,omitempty"`
	// BridgeOptions are the bridge's STP, ageing, VLAN, hairpin and
	// multicast settings; nil: the defaults. Bridge driver only.
	BridgeOptions *BridgeOptions `json:"bridge_options,omitempty"`
	// Macvlan is a macvlan network's parent, mode, VLAN and shim. Macvlan
	// driver only.
	Macvlan *MacvlanOptions `json:"macvlan,omitempty"`
	// Overlay is an overlay network's cluster-wide part (the whole
	// subnet, VNI, slice size) and this host's VXLAN device; its Subnets
	// hold this host's slice. Overlay driver only.
	Overlay *OverlayOptions `json:"overlay,omitempty"`
	Created time.Time       `json:"created"`
}

// MacvlanOptions are the settings of a macvlan network.
type MacvlanOptions struct {
	// Parent is the host link whose segment the members join (eth0).
	Parent string `json:"parent"`
	// Mode is the macvlan mode: bridge (members reach each other inside
	// the parent), private (they do not), vepa (through the external
	// switch, which must hairpin), passthru (one member, which takes the
	// parent over).
	Mode string `json:"mode"`
	// VLAN ≠ 0 (1–4094): members hang off the 802.1Q sub-interface
	// PARENT.VLAN instead of the parent itself.
	VLAN int `json:"vlan,omitempty"`
	// Shim: the host gets a macvlan of its own on the segment (ShimName)
	// with an address from the network's range, and a route to the range
	// through it, so that it can reach the members (a macvlan's frames to
	// or from its own parent's host never cross).
	Shim bool `json:"shim,omitempty"`
	// Link is the host link the members' macvlans are made on: Parent, or
	// the VLAN sub-interface. LinkCreated: pontoon made that sub-interface
	// and removes it with the network.
	Link        string `json:"link"`
	LinkCreated bool   `json:"link_created,omitempty"`
	// ShimAddrs are the shim's addresses, one per family (with --shim).
	ShimAddrs []netip.Addr `json:"shim_addrs,omitempty"`
}

// OverlayOptions are an overlay network's settings.
type OverlayOptions struct {
	// Subnets are the whole network's, across the cluster's hosts, at
	// most one per family, IPv4 first (10.200.0.0/16, fd00:200::/48),
	// each with the size of the hosts' slices of it; each host hands out
	// addresses from its slices (the network's Subnets on that host).
	//
	// In a NetworkSpec they are optional and give slice sizes: an entry
	// whose Prefix is the spec's subnet of its family sets the size of
	// that subnet's slices (0: DefaultSliceBits), one of a family the
	// spec has no subnet of adds it.
	Subnets []OverlaySubnet `json:"subnets,omitempty"`
	// VNI is the network's VXLAN network identifier (1–16777215).
	VNI int `json:"vni"`
	// VXLAN is this host's VXLAN device of the network (VXLANName); none
	// in host-gw mode.
	VXLAN string `json:"vxlan,omitempty"`
	// Mode is how the hosts reach each other's slices: OverlayVXLAN ("",
	// the default: a VXLAN device) or OverlayHostGW (a route per remote
	// host through its underlay address; the hosts share an L2 segment).
	Mode string `json:"mode,omitempty"`
}

// OverlaySubnet is one of an overlay network's subnets across the
// cluster, with the size of each host's slice of it.
type OverlaySubnet struct {
	Prefix netip.Prefix `json:"prefix"` // 10.200.0.0/16, fd00:200::/48
	// SliceBits is the prefix length of each host's slice: 24, 64.
	SliceBits int `json:"slice_bits"`
}

// DefaultSliceBits is the prefix length of a host's slice of an overlay
// subnet of a family when none is asked for: a /24 (254 addresses) of an
// IPv4 subnet, a /64 of an IPv6 one (the IPAM hands out addresses of a
// /64 one by one, without SLAAC, and keeps no bitmap of it).
func DefaultSliceBits(v6 bool) int {
	if v6 {
		return 64
	}
	return 24
}

// UnmarshalJSON reads OverlayOptions, also as written before overlay
// networks were dual-stack (one IPv4 subnet: top-level subnet and
// slice_bits), so that a network record of an older pontoon opens.
func (o *OverlayOptions) UnmarshalJSON(b []byte) error {
	type plain OverlayOptions // without this method
	var v struct {
		plain
		Subnet    netip.Prefix `json:"subnet"`
		SliceBits int          `json:"slice_bits"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*o = OverlayOptions(v.plain)
	if len(o.Subnets) == 0 && v.Subnet.IsValid() {
		o.Subnets = []OverlaySubnet{{Prefix: v.Subnet, SliceBits: v.SliceBits}}
	}
	return nil
}

// Prefixes lists the overlay's subnets across the cluster, IPv4 first.
func (o *OverlayOptions) Prefixes() []netip.Prefix {
	if o == nil {
		return nil
	}
	out := make([]netip.Prefix, 0, len(o.Subnets))
	for _, s := range o.Subnets {
		out = append(out, s.Prefix.Masked())
	}
	return out
}

// Range returns the overlay's subnet across the cluster of a's family.
func (o *OverlayOptions) Range(a netip.Addr) (netip.Prefix, bool) {
	for _, p := range o.Prefixes() {
		if p.Addr().Is4() == a.Is4() {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Overlay modes (OverlayOptions.Mode).
const (
	OverlayVXLAN  = "vxlan"
	OverlayHostGW = "host-gw"
)

// OverlayModes are the overlay modes pontoon accepts, the default first.
var OverlayModes = []string{OverlayVXLAN, OverlayHostGW}

// CheckOverlayMode refuses a mode that is not one of OverlayModes ("" is
// the default, vxlan).
func CheckOverlayMode(mode string) error {
	if mode == "" || slices.Contains(OverlayModes, mode) {
		return nil
	}
	return Invalidf("overlay mode %q: want one of %s", mode, strings.Join(OverlayModes, ", "))
}

// SlicesIn returns those of a node's slices (as the cluster has them)
// that are inside the network's subnets: a slice left in the cluster by
// a former network of the same name, with another subnet or family, is no
// peer of this one.
func (o *OverlayOptions) SlicesIn(held []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range held {
		if r, ok := o.Range(s.Addr()); ok && s.IsValid() && s.Bits() >= r.Bits() && r.Contains(s.Addr()) {
			out = append(out, s.Masked())
		}
	}
	return out
}

// HostGW reports whether the overlay network routes to its remote hosts'
// slices directly through the underlay (no VXLAN device).
func (o *OverlayOptions) HostGW() bool { return o != nil && o.Mode == OverlayHostGW }

// ModeName is the overlay's mode as people read it (vxlan for "").
func (o *OverlayOptions) ModeName() string {
	if o == nil || o.Mode == "" {
		return OverlayVXLAN
	}
	return o.Mode
}

// VXLANName is the name of the VXLAN device of the overlay network with
// VNI vni.
func VXLANName(vni int) string { return fmt.Sprintf("%s%d", VXLANPrefix, vni) }

// MacvlanModes are the macvlan modes pontoon accepts, the default first.
var MacvlanModes = []string{"bridge", "private", "vepa", "passthru"}

// HasHostGateway reports whether the network's driver gives it a
// presence on the host — a bridge with the gateway addresses, where the
// resolver listens and the host's firewall sees its traffic. Direct links
// and macvlan networks have none.
func (n *Network) HasHostGateway() bool {
	return n.Driver != DriverLink && n.Driver != DriverMacvlan
}

// HostAddrs are the addresses the host itself takes on the network
// besides its gateways (a macvlan network's shim): reserved when the
// network is made, never handed out.
func (n *Network) HostAddrs() []netip.Addr {
	if n.Macvlan != nil {
		return n.Macvlan.ShimAddrs
	}
	return nil
}

// Where says where a network lives on the host, for people: its bridge
// ("ptbr-…"), "macvlan on eth0.50", "direct link".
func (n *Network) Where() string {
	switch {
	case n.Macvlan != nil:
		return "macvlan on " + n.Macvlan.Link
	case n.Driver == DriverLink:
		return "direct link"
	}
	return n.Bridge
}

// Subnet4 returns the network's IPv4 subnet.
func (n *Network) Subnet4() (Subnet, bool) { return n.family(false) }

// Subnet6 returns the network's IPv6 subnet.
func (n *Network) Subnet6() (Subnet, bool) { return n.family(true) }

func (n *Network) family(v6 bool) (Subnet, bool) {
	for _, s := range n.Subnets {
		if s.Prefix.Addr().Is6() == v6 {
			return s, true
		}
	}
	return Subnet{}, false
}

// SubnetFor returns the subnet of the network that contains ip.
func (n *Network) SubnetFor(ip netip.Addr) (Subnet, bool) {
	for _, s := range n.Subnets {
		if s.Prefix.Contains(ip) {
			return s, true
		}
	}
	return Subnet{}, false
}

// Prefixes lists the network's subnets' prefixes.
func (n *Network) Prefixes() []netip.Prefix {
	ps := make([]netip.Prefix, len(n.Subnets))
	for i, s := range n.Subnets {
		ps[i] = s.Prefix
	}
	return ps
}

// Gateways lists the network's gateway addresses, one per family.
func (n *Network) Gateways() []netip.Addr {
	gs := make([]netip.Addr, len(n.Subnets))
	for i, s := range n.Subnets {
		gs[i] = s.Gateway
	}
	return gs
}

// SubnetString renders the subnets for people: "10.90.1.0/24, fd00:1::/64".
func (n *Network) SubnetString() string {
	return joinAddrs(n.Subnets, func(s Subnet) string { return s.Prefix.String() })
}

// UpgradeFrom fills the subnets of a network read from a record written
// before subnets were plural (IPv4 only: top-level subnet, gateway,
// ip_range and masquerade), so that a state file from an older pontoon
// opens and serves. A record in today's layout is left as it is. The store
// calls it after decoding each record.
func (n *Network) UpgradeFrom(record []byte) error {
	if len(n.Subnets) > 0 {
		return nil
	}
	var v struct {
		Subnet     netip.Prefix `json:"subnet"`
		Gateway    netip.Addr   `json:"gateway"`
		IPRange    netip.Prefix `json:"ip_range"`
		Masquerade *bool        `json:"masquerade"`
	}
	if err := json.Unmarshal(record, &v); err != nil {
		return err
	}
	if v.Subnet.IsValid() {
		n.Subnets = []Subnet{{Prefix: v.Subnet, Gateway: v.Gateway, IPRange: v.IPRange, Masquerade: v.Masquerade == nil || *v.Masquerade}}
	}
	return nil
}

// SandboxKind says where a sandbox's namespace comes from.
type SandboxKind string

const (
	// KindPontoon: a namespace pontoon created and pinned; removed with the sandbox.
	KindPontoon SandboxKind = "pontoon"
	// KindNetns: an existing namespace adopted by path; never deleted by pontoon.
	KindNetns SandboxKind = "netns"
	// KindPID: the namespace of a running process; never deleted by pontoon.
	KindPID SandboxKind = "pid"
	// KindHost: the host's own namespace (`--network host`); takes no endpoints.
	KindHost SandboxKind = "host"
	// KindVM: a virtual machine's place on a network, with no namespace:
	// its one endpoint is a tap device on the host that the hypervisor
	// opens (`pontoon tap create`).
	KindVM SandboxKind = "vm"
	// KindDocker: a Docker container's (pontoon as Docker's network
	// driver). Netns is Docker's sandbox key; pontoon makes each
	// endpoint's veth on the host and dockerd moves the other end into
	// the container and configures it.
	KindDocker SandboxKind = "docker"
)

// Sandbox is a network namespace pontoon knows.
type Sandbox struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Node is the host whose kernel holds the sandbox (the daemon's node
	// name, default the host name; "" in records written before it):
	// sandboxes and endpoints are node-local records, and carry their node
	// so that records of several hosts never mix in a shared store or a
	// report.
	Node  string      `json:"node,omitempty"`
	Kind  SandboxKind `json:"kind"`
	Netns string      `json:"netns"` // path of the namespace (pin, external path or /proc/PID/ns/net)
	PID   int         `json:"pid,omitempty"`
	// ContainerID is the runtime's ID for sandboxes attached through CNI.
	ContainerID string `json:"container_id,omitempty"`
	// NetnsIno identifies an adopted namespace (device and inode of its
	// nsfs file), so that a reused PID or path is not taken for it.
	NetnsIno uint64            `json:"netns_ino,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// State: creating and removing sandboxes found at start-up are removed
	// (the request that made them never returned success).
	State   SandboxState `json:"state"`
	Created time.Time    `json:"created"`
}

// SandboxState is the life-cycle state of a sandbox in the store.
type SandboxState string

const (
	SandboxCreating SandboxState = "creating"
	SandboxReady    SandboxState = "ready"
	SandboxRemoving SandboxState = "removing"
)

// EndpointState is the life-cycle state of an endpoint in the store.
type EndpointState string

const (
	// StateCreating: the IP is reserved; kernel objects may be partly there.
	// A daemon that starts and finds this rolls the endpoint back.
	StateCreating EndpointState = "creating"
	StateReady    EndpointState = "ready"
	// StateRemoving: the endpoint is gone for users, its IP is still held
	// until the kernel teardown of the host veth finished.
	StateRemoving EndpointState = "removing"
)

// Endpoint is a sandbox's interface on one network.
type Endpoint struct {
	ID      string `json:"id"`
	Network string `json:"network"`
	Sandbox string `json:"sandbox"`
	// Node is the host whose kernel holds the endpoint (see Sandbox.Node).
	Node        string `json:"node,omitempty"`
	IfName      string `json:"ifname"`  // inside the sandbox: eth0, eth1, …
	HostIf      string `json:"host_if"` // host end of the veth
	HostIfIndex int    `json:"host_ifindex,omitempty"`
	// Addresses has one address per family of the network, IPv4 first.
	Addresses []Address `json:"addresses"`
	MAC       string    `json:"mac"`
	MTU       int       `json:"mtu"`
	// Table is the policy-routing table for replies on this interface
	// (100 + interface index); 0 for the sandbox's first endpoint, whose
	// gateways are the default routes of the main table.
	Table   int      `json:"table,omitempty"`
	Primary bool     `json:"primary"`
	Aliases []string `json:"aliases,omitempty"`
	// VLAN is the endpoint's VLAN (1–4094) on a network with VLAN
	// filtering; 0: the bridge's default, VLAN 1.
	VLAN int `json:"vlan,omitempty"`
	// Tap: the endpoint is a VM's tap device (HostIf), not a veth; its
	// addresses and MAC are the VM's to configure.
	Tap *TapOptions `json:"tap,omitempty"`
	// Ports are the endpoint's published ports: they live and go with it.
	Ports   []PortMapping `json:"ports,omitempty"`
	State   EndpointState `json:"state"`
	Created time.Time     `json:"created"`
	// Stats are the interface's counters, read from the kernel by `sandbox
	// inspect` and `network inspect` (GET /v1/sandboxes/{name},
	// /v1/networks/{name}) only, never stored; nil without a host end to
	// read them from. (The topology's ports have them too: TopoPort.)
	Stats *EndpointStats `json:"stats,omitempty"`
}

// EndpointStats are an endpoint's interface counters as the sandbox (or
// the VM of a tap) sees them. They are counted by the host end of its veth
// pair, whose directions are the other way round: what the host end
// received (rx) is what the sandbox sent (tx). So drops and errors are
// those on the cable between the two ends, not those of the sandbox's own
// stack (a full socket buffer): `pontoon exec NAME -- ip -s link` has
// those.
type EndpointStats struct {
	RxBytes   uint64 `json:"rx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxDropped uint64 `json:"rx_dropped"`
	RxErrors  uint64 `json:"rx_errors"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxDropped uint64 `json:"tx_dropped"`
	TxErrors  uint64 `json:"tx_errors"`
}

// SourceRules are the policy-routing rules the endpoint's sandbox has for
// it, in `ip rule` syntax: "from ADDR lookup TABLE" (priority TABLE) for
// each of its addresses, so that replies from an address leave through
// its own interface (table Table). None for an endpoint without a table:
// the primary one, whose gateways are the default routes of the main
// table. (internal/link installs them: policyRule.)
func (e *Endpoint) SourceRules() []string {
	if e.Table == 0 {
		return nil
	}
	out := make([]string, 0, len(e.Addresses))
	for _, ip := range e.IPs() {
		out = append(out, fmt.Sprintf("from %s lookup %d", ip, e.Table))
	}
	return out
}

// IPs lists the endpoint's addresses without their lengths, IPv4 first.
func (e *Endpoint) IPs() []netip.Addr {
	ips := make([]netip.Addr, len(e.Addresses))
	for i, a := range e.Addresses {
		ips[i] = a.Addr.Addr()
	}
	return ips
}

// Addr4 returns the endpoint's IPv4 address.
func (e *Endpoint) Addr4() (Address, bool) { return e.family(false) }

// Addr6 returns the endpoint's IPv6 address.
func (e *Endpoint) Addr6() (Address, bool) { return e.family(true) }

func (e *Endpoint) family(v6 bool) (Address, bool) {
	for _, a := range e.Addresses {
		if a.Addr.Addr().Is6() == v6 {
			return a, true
		}
	}
	return Address{}, false
}

// FirstIP is the endpoint's first address (IPv4 when it has one), the one
// shown where a single address is wanted.
func (e *Endpoint) FirstIP() netip.Addr {
	if len(e.Addresses) == 0 {
		return netip.Addr{}
	}
	return e.Addresses[0].Addr.Addr()
}

// IPString renders the addresses for people: "10.90.1.5, fd00:1::5".
func (e *Endpoint) IPString() string {
	return joinAddrs(e.IPs(), netip.Addr.String)
}

// UpgradeFrom fills the addresses of an endpoint read from a record
// written before addresses were plural (ip, prefix_len, gateway); see
// Network.UpgradeFrom.
func (e *Endpoint) UpgradeFrom(record []byte) error {
	if len(e.Addresses) > 0 {
		return nil
	}
	var v struct {
		IP      netip.Addr `json:"ip"`
		Prefix  int        `json:"prefix_len"`
		Gateway netip.Addr `json:"gateway"`
	}
	if err := json.Unmarshal(record, &v); err != nil {
		return err
	}
	if v.IP.IsValid() {
		e.Addresses = []Address{{Addr: netip.PrefixFrom(v.IP, v.Prefix), Gateway: v.Gateway}}
	}
	return nil
}

// NewID returns a random 128-bit ID as 32 hex characters.
func NewID() string {
	return randomHex(16)
}

// BridgeName returns the bridge pontoon creates for a network with that ID.
func BridgeName(networkID string) string {
	return BridgePrefix + shortHash(networkID, 8)
}

// ShimName returns the name of a macvlan network's shim on the host.
func ShimName(networkID string) string {
	return ShimPrefix + shortHash(networkID, 8)
}

// PeerVethName returns the host-side name of the container end of a
// Docker endpoint's veth (dockerd renames it when it moves it).
func PeerVethName(endpointID string) string {
	return PeerPrefix + shortHash(endpointID, 10)
}

// TapName returns the name of a VM endpoint's tap device.
func TapName(endpointID string) string {
	return TapPrefix + shortHash(endpointID, 10)
}

// TapOptions are how a VM's tap device is made (Endpoint.Tap).
type TapOptions struct {
	// Owner and Group may open the tap without CAP_NET_ADMIN (the
	// hypervisor's user and group); -1: anyone may (the kernel checks
	// neither). Both 0: root only.
	Owner int `json:"owner"`
	Group int `json:"group"`
	// MultiQueue: one queue per vCPU (QEMU's queues=N); the hypervisor
	// must open it with the same setting.
	MultiQueue bool `json:"multi_queue,omitempty"`
}

// HostVethName returns the host end of an endpoint's veth pair.
func HostVethName(endpointID string) string {
	return HostVethPrefix + shortHash(endpointID, 10)
}

// CNISandboxName is the sandbox of a CNI container: "cni-" and the
// container ID, each character a name may not hold replaced by '-', cut to
// MaxNameLen.
func CNISandboxName(containerID string) string {
	s := "cni-" + strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return r
		}
		return '-'
	}, containerID)
	return s[:min(len(s), MaxNameLen)]
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// MACFromIP derives a locally administered unicast MAC from an address,
// the way Docker does (02:42 followed by the last four bytes: all of an
// IPv4 address, the low 32 bits of an IPv6 one), so that an endpoint keeps
// its MAC across restarts and a reader can tell the IP from the MAC.
// Endpoints with an IPv4 address take their MAC from it.
func MACFromIP(ip netip.Addr) net.HardwareAddr {
	b := ip.As16()
	return net.HardwareAddr{0x02, 0x42, b[12], b[13], b[14], b[15]}
}

// IfNameFor returns the name of the n-th interface inside a sandbox.
func IfNameFor(n int) string { return fmt.Sprintf("eth%d", n) }

// RouteTableFor returns the policy-routing table used for replies that leave
// through the n-th interface (n ≥ 1). eth0 uses the main table.
func RouteTableFor(n int) int { return 100 + n }

// Subnet is one address family's part of a network: its prefix, the
// bridge's address in it, where automatic addresses come from and whether
// traffic from it that leaves the host is masqueraded.
type Subnet struct {
	Prefix     netip.Prefix `json:"subnet"`
	Gateway    netip.Addr   `json:"gateway"`
	IPRange    netip.Prefix `json:"ip_range,omitzero"`
	Masquerade bool         `json:"masquerade"`
}

// AllocRange is the prefix addresses are handed out from: IPRange when set,
// the subnet otherwise.
func (s Subnet) AllocRange() netip.Prefix {
	if s.IPRange.IsValid() {
		return s.IPRange
	}
	return s.Prefix
}

// Address is one of an endpoint's addresses, with its family's gateway.
type Address struct {
	Addr    netip.Prefix `json:"addr"` // the address with its subnet's length
	Gateway netip.Addr   `json:"gateway,omitzero"`
}

// BridgeOptions are the bridge driver's own settings of a network (the
// brctl knobs). nil on a network: the defaults (STP off, the kernel's
// ageing time, no VLAN filtering, hairpin on, multicast snooping off).
// They are set when the network is created and cannot be changed on an
// existing network (there is no update): remove and create it again.
type BridgeOptions struct {
	// STP turns the spanning tree protocol on, for bridges that are
	// joined to other bridges (a loop would otherwise storm). A port
	// forwards only after 2×ForwardDelay (listening, learning).
	STP bool `json:"stp,omitempty"`
	// ForwardDelay in seconds, 2–30, only with STP; 0: the kernel's 15.
	ForwardDelay int `json:"forward_delay,omitempty"`
	// AgeingTime in seconds a learned MAC stays in the forwarding
	// database, 10–1000000; 0: the kernel's 300.
	AgeingTime int `json:"ageing_time,omitempty"`
	// VLANFiltering makes the bridge VLAN-aware: an endpoint attached
	// with a VLAN (AttachSpec.VLAN) reaches, at L2, only the endpoints of
	// its VLAN; the others are in VLAN 1.
	VLANFiltering bool `json:"vlan_filtering,omitempty"`
	// Hairpin puts each endpoint's bridge port in hairpin mode (default
	// on): a sandbox reaches its own published ports through the host's
	// address. Off, it cannot.
	Hairpin *bool `json:"hairpin,omitempty"`
	// MulticastSnooping makes the bridge forward multicast only to ports
	// that joined the group. Default off: each attach then costs more the
	// more endpoints the network has, and without a querier on the
	// network the bridge floods anyway.
	MulticastSnooping bool `json:"multicast_snooping,omitempty"`
}

// HairpinOn reports whether endpoints' ports are in hairpin mode (the
// default, also with o nil).
func (o *BridgeOptions) HairpinOn() bool { return o == nil || o.Hairpin == nil || *o.Hairpin }

// VLANs reports whether the bridge filters VLANs.
func (o *BridgeOptions) VLANs() bool { return o != nil && o.VLANFiltering }

// String renders the options for people: "stp forward-delay=4s
// ageing=30s vlan-filtering hairpin=off multicast-snooping"; "defaults".
func (o *BridgeOptions) String() string {
	if o == nil {
		return "defaults (stp off, ageing 300s, no vlan filtering, hairpin on, multicast snooping off)"
	}
	var parts []string
	if o.STP {
		fd := o.ForwardDelay
		if fd == 0 {
			fd = DefaultForwardDelay
		}
		parts = append(parts, fmt.Sprintf("stp forward-delay=%ds", fd))
	} else {
		parts = append(parts, "stp off")
	}
	ag := o.AgeingTime
	if ag == 0 {
		ag = DefaultAgeingTime
	}
	parts = append(parts, fmt.Sprintf("ageing=%ds", ag))
	if o.VLANFiltering {
		parts = append(parts, "vlan-filtering")
	}
	if o.HairpinOn() {
		parts = append(parts, "hairpin=on")
	} else {
		parts = append(parts, "hairpin=off")
	}
	if o.MulticastSnooping {
		parts = append(parts, "multicast-snooping")
	}
	return strings.Join(parts, " ")
}

// Kernel defaults of the bridge options, in seconds.
const (
	DefaultForwardDelay = 15
	DefaultAgeingTime   = 300
)

// DriverCaps is what a network driver honours; the API refuses an option
// a network's driver cannot, and says why.
type DriverCaps struct {
	Isolation    bool `json:"isolation"`     // networks apart from each other, --internal
	ICC          bool `json:"icc"`           // --icc=false: sandboxes of a network apart
	AntiSpoofing bool `json:"anti_spoofing"` // a sandbox sends only from its own MAC and addresses
	Ports        bool `json:"ports"`         // published ports
	DNS          bool `json:"dns"`           // names on the network's resolver
	Hairpin      bool `json:"hairpin"`       // a sandbox reaches its own published port
	Taps         bool `json:"taps"`          // VMs' tap devices (pontoon tap create)
}
