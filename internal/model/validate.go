package model

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Error kinds. Callers test them with errors.Is; the API maps them to HTTP
// status codes (invalid → 400, not found → 404, conflict → 409, exhausted → 507).
var (
	ErrInvalid   = errors.New("invalid argument")
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("conflict")
	ErrExhausted = errors.New("address space exhausted")
)

// Invalidf returns an ErrInvalid with a message that says what is wrong and
// what to do.
func Invalidf(format string, a ...any) error {
	return &kindError{kind: ErrInvalid, msg: fmt.Sprintf(format, a...)}
}

// NotFoundf returns an ErrNotFound.
func NotFoundf(format string, a ...any) error {
	return &kindError{kind: ErrNotFound, msg: fmt.Sprintf(format, a...)}
}

// Conflictf returns an ErrConflict.
func Conflictf(format string, a ...any) error {
	return &kindError{kind: ErrConflict, msg: fmt.Sprintf(format, a...)}
}

// Exhaustedf returns an ErrExhausted.
func Exhaustedf(format string, a ...any) error {
	return &kindError{kind: ErrExhausted, msg: fmt.Sprintf(format, a...)}
}

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// validName reports whether name is a letter or digit, then letters,
// digits, '_', '.' or '-' (ASCII). A function rather than a regular
// expression: compiling one at start-up costs every process that imports
// this package, the CNI plugin's included.
func validName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return name != ""
}

// MaxNameLen bounds network, sandbox and alias names (a DNS label is ≤ 63).
const MaxNameLen = 63

// ValidateName checks a network, sandbox or alias name.
func ValidateName(what, name string) error {
	switch {
	case name == "":
		return Invalidf("%s name is empty: give a name of letters, digits, '_', '.' or '-'", what)
	case len(name) > MaxNameLen:
		return Invalidf("%s name %q is %d characters long: use at most %d", what, name, len(name), MaxNameLen)
	case !validName(name):
		return Invalidf("%s name %q has characters that are not allowed: start with a letter or digit, then use letters, digits, '_', '.' or '-'", what, name)
	}
	return nil
}

// ReservedNetworkNames are values of --network that are not networks:
// "none" (loopback only) and "host" (the host's namespace). The third,
// "sandbox:NAME", cannot be a name anyway: names have no ':'.
var ReservedNetworkNames = []string{"none", "host"}

// ValidateNetworkName checks a name for a new network: a valid name that
// --network would not take for something else.
func ValidateNetworkName(name string) error {
	if err := ValidateName("network", name); err != nil {
		return err
	}
	for _, r := range ReservedNetworkNames {
		if strings.EqualFold(name, r) {
			return Invalidf("network name %q is reserved: --network %s means %s, so a network of that name could never be chosen; pick another name", name, r, map[string]string{"none": "loopback only", "host": "the host's own network"}[r])
		}
	}
	return nil
}

// ValidateIfName checks a Linux interface name.
func ValidateIfName(what, name string) error {
	switch {
	case name == "":
		return Invalidf("%s is empty", what)
	case len(name) > MaxIfNameLen:
		return Invalidf("%s %q is %d bytes long: Linux interface names have at most %d", what, name, len(name), MaxIfNameLen)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		return Invalidf("%s %q is not a valid interface name: no '/', ':' or spaces", what, name)
	}
	return nil
}

// ParseMAC checks a MAC chosen for an interface (--mac, AttachSpec.MAC)
// and returns it: six bytes, unicast (the lowest bit of the first byte,
// the group bit, clear: broadcast is a multicast address too) and not all
// zero, which the kernel refuses as an interface's address. 02:42:0a:00:00:05
// and 02-42-0A-00-00-05 are the same MAC.
func ParseMAC(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return nil, Invalidf("mac %q is not an Ethernet address: give six bytes in hex like 02:42:0a:58:00:02", s)
	}
	switch {
	case hw[0]&1 == 1:
		return nil, Invalidf("mac %s is a multicast address (the lowest bit of its first byte is set): an interface needs a unicast one, e.g. %02x:%s", hw, hw[0]&^1, hw.String()[3:])
	case slices.Equal(hw, make(net.HardwareAddr, 6)):
		return nil, Invalidf("mac 00:00:00:00:00:00 cannot be an interface's address: give another, e.g. 02:42:0a:58:00:02 (02: locally administered)")
	}
	return hw, nil
}

// NetworkSpec is what a user asks for when creating a network. Zero values
// mean "choose for me".
type NetworkSpec struct {
	Name   string `json:"name"`
	Driver string `json:"driver,omitempty"`
	// Subnets asked for, at most one per family. Each needs its Prefix;
	// Gateway (default: the first host address) and IPRange are optional.
	// Masquerade is set by the network-wide switch below, not here. With
	// no IPv4 subnet given, one is picked from the pool.
	Subnets []Subnet `json:"subnets,omitempty"`
	// IPv6 adds an IPv6 subnet from the pool (a /64 of a ULA /48) when
	// Subnets has none.
	IPv6     bool  `json:"ipv6,omitempty"`
	Internal bool  `json:"internal,omitempty"`
	ICC      *bool `json:"icc,omitempty"` // default true
	// Masquerade switches source NAT for every subnet. Unset: on for IPv4
	// and for ULA IPv6 subnets (fc00::/7), off for global IPv6 subnets,
	// which are expected to be routed to the host.
	Masquerade *bool             `json:"masquerade,omitempty"`
	MTU        int               `json:"mtu,omitempty"`
	Bridge     string            `json:"bridge,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	// BridgeOptions: STP, ageing, VLAN filtering, hairpin, multicast
	// snooping; nil: the defaults. Bridge driver only.
	BridgeOptions *BridgeOptions `json:"bridge_options,omitempty"`
	// Macvlan: parent (required), mode, VLAN and shim of a macvlan
	// network; Link and LinkCreated are the engine's to fill.
	Macvlan *MacvlanOptions `json:"macvlan,omitempty"`
	// Overlay: an overlay network's VNI (default derived from its name),
	// mode, and the size of the hosts' slices of each subnet (default
	// DefaultSliceBits); its subnets are Subnets, one per family. The
	// engine fills the rest when it makes this host's part.
	Overlay *OverlayOptions `json:"overlay,omitempty"`
}

// WantsIPv6 reports whether a network built from spec has an IPv6 subnet.
func (spec NetworkSpec) WantsIPv6() bool {
	_, ok := spec.SubnetFor(true)
	return ok || spec.IPv6
}

// SubnetFor returns the subnet spec asks for in one family.
func (spec NetworkSpec) SubnetFor(v6 bool) (Subnet, bool) {
	for _, s := range spec.Subnets {
		if s.Prefix.Addr().Is6() == v6 {
			return s, true
		}
	}
	return Subnet{}, false
}

// CheckSubnets validates the subnets of a spec: canonical prefixes of a
// usable size, at most one per family, gateways and ranges inside them.
func (spec NetworkSpec) CheckSubnets() error {
	var seen [2]bool
	for _, s := range spec.Subnets {
		if !s.Prefix.IsValid() {
			return Invalidf("a subnet's gateway or ip-range was given without the subnet: give --subnet too")
		}
		if err := CheckPrefix("subnet", s.Prefix); err != nil {
			return err
		}
		fam := 0
		if s.Prefix.Addr().Is6() {
			fam = 1
		}
		if seen[fam] {
			return Invalidf("two %s subnets given: a network has at most one subnet per address family", familyName(s.Prefix.Addr()))
		}
		seen[fam] = true
		if s.Gateway.IsValid() {
			if err := checkHostAddr("gateway", s.Gateway, s.Prefix); err != nil {
				return err
			}
		}
		if s.IPRange.IsValid() {
			r := s.IPRange
			if r.Masked() != r {
				return Invalidf("ip-range %s has host bits set: did you mean %s?", r, r.Masked())
			}
			if !s.Prefix.Contains(r.Addr()) || r.Bits() < s.Prefix.Bits() {
				return Invalidf("ip-range %s is not inside subnet %s: give a range within the subnet of its family", r, s.Prefix)
			}
		}
	}
	for _, s := range spec.Subnets {
		if s.Gateway.IsValid() && s.Gateway.Is4() != s.Prefix.Addr().Is4() {
			return Invalidf("gateway %s is not in the family of subnet %s", s.Gateway, s.Prefix)
		}
	}
	return nil
}

func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// ParsePrefix parses a CIDR of either family that must be given in
// canonical form (host bits zero) and be of a usable size.
func ParsePrefix(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, Invalidf("%s %q is not a CIDR: write it like 10.90.1.0/24 or fd00:1::/64", what, s)
	}
	return p, CheckPrefix(what, p)
}

// CheckPrefix checks that a subnet is canonical and of a usable size: an
// IPv4 /8 to /30, an IPv6 /16 to /124.
func CheckPrefix(what string, p netip.Prefix) error {
	if p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return Invalidf("%s %s is not a plain IPv4 or IPv6 prefix", what, p)
	}
	if p.Masked() != p {
		return Invalidf("%s %s has host bits set: did you mean %s?", what, p, p.Masked())
	}
	lo, hi := 8, 30
	if p.Addr().Is6() {
		lo, hi = 16, 124
		if p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast() {
			return Invalidf("%s %s is link-local or multicast: give a ULA (fd00::/8) or global prefix", what, p)
		}
	}
	if p.Bits() > hi {
		return Invalidf("%s %s is too small: use a /%d or larger so there is room for a gateway and a sandbox", what, p, hi)
	}
	if p.Bits() < lo {
		return Invalidf("%s %s is too large: use a /%d or smaller", what, p, lo)
	}
	return nil
}

// ParseAddr parses an IP address of either family.
func ParseAddr(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, Invalidf("%s %q is not an IP address: write it like 10.90.1.10 or fd00:1::10", what, s)
	}
	return a.Unmap(), nil
}

// Broadcast returns the last address of a prefix (for IPv4, the broadcast
// address).
func Broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Overlaps reports whether two prefixes share an address.
func Overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

// BuildNetwork validates a spec whose subnets are already chosen (one
// prefix per family, IPv4 first) and returns the network to create. It
// does not check conflicts with other networks; the engine does, under its
// lock.
func BuildNetwork(spec NetworkSpec, prefixes []netip.Prefix, id string) (*Network, error) {
	if err := ValidateNetworkName(spec.Name); err != nil {
		return nil, err
	}
	driver := DriverBridge
	if spec.Driver != "" {
		// Which drivers exist is the engine's to say (it has them).
		if err := ValidateName("driver", spec.Driver); err != nil {
			return nil, err
		}
		driver = spec.Driver
	}
	if err := spec.CheckSubnets(); err != nil {
		return nil, err
	}
	n := &Network{
		ID: id, Name: spec.Name, Driver: driver,
		Internal: spec.Internal, ICC: true, MTU: DefaultMTU,
		Labels: spec.Labels,
	}
	if spec.ICC != nil {
		n.ICC = *spec.ICC
	}
	if spec.MTU != 0 {
		if spec.MTU < 576 || spec.MTU > 65535 {
			return nil, Invalidf("mtu %d is out of range: use a value from 576 to 65535", spec.MTU)
		}
		if spec.WantsIPv6() && spec.MTU < 1280 {
			return nil, Invalidf("mtu %d is below IPv6's minimum of 1280: use 1280 or more on a network with an IPv6 subnet", spec.MTU)
		}
		n.MTU = spec.MTU
	}
	for k := range spec.Labels {
		if k == "" {
			return nil, Invalidf("label with an empty key: write labels as key=value")
		}
	}
	if err := n.buildDriverOptions(spec); err != nil {
		return nil, err
	}
	// Gateways: a bridge network's is its bridge's address (the first
	// host address unless given); a link or macvlan network has none
	// unless one is given (a member that routes, the LAN's router).
	hostGateway := n.HasHostGateway()
	for _, p := range prefixes {
		if err := CheckPrefix("subnet", p); err != nil {
			return nil, err
		}
		s := Subnet{}
		s.Prefix = p
		if hostGateway {
			s.Gateway = p.Addr().Next()
		}
		if given, ok := spec.SubnetFor(p.Addr().Is6()); ok && given.Prefix == p {
			if given.Gateway.IsValid() {
				s.Gateway = given.Gateway
			}
			s.IPRange = given.IPRange
		}
		switch {
		case n.Internal, !hostGateway:
			// Nothing leaves through the host: no source NAT.
			if spec.Masquerade != nil && *spec.Masquerade && !hostGateway {
				return nil, Invalidf("driver %s cannot masquerade: its traffic never passes the host (give no --masquerade)", n.Driver)
			}
		case spec.Masquerade != nil:
			s.Masquerade = *spec.Masquerade
		default:
			s.Masquerade = p.Addr().Is4() || p.Addr().IsPrivate()
		}
		if _, dup := n.family(p.Addr().Is6()); dup {
			return nil, Invalidf("two %s subnets: a network has at most one subnet per address family", familyName(p.Addr()))
		}
		n.Subnets = append(n.Subnets, s)
	}
	slices.SortStableFunc(n.Subnets, func(a, b Subnet) int {
		return cmp.Compare(a.Prefix.Addr().BitLen(), b.Prefix.Addr().BitLen())
	})
	if len(n.Subnets) == 0 {
		return nil, Invalidf("network %s has no subnet", spec.Name)
	}
	switch {
	case !hostGateway:
		if spec.Bridge != "" {
			return nil, Invalidf("driver %s has no bridge: give no --bridge", n.Driver)
		}
	case spec.Bridge != "":
		if err := ValidateIfName("bridge name", spec.Bridge); err != nil {
			return nil, err
		}
		n.Bridge = spec.Bridge
	case spec.Name == DefaultNetwork:
		n.Bridge = DefaultBridge
	default:
		n.Bridge = BridgeName(id)
	}
	return n, nil
}

// buildDriverOptions checks the spec's driver-specific options against
// its driver and copies them into n: bridge options for the bridge
// driver, macvlan options (parent required) for macvlan, none for link.
func (n *Network) buildDriverOptions(spec NetworkSpec) error {
	if spec.BridgeOptions != nil && n.Driver != DriverBridge {
		return Invalidf("bridge options (--stp, --ageing, --vlan-filtering, --hairpin, --multicast-snooping) are for the bridge driver, not %s", n.Driver)
	}
	if spec.Overlay != nil && n.Driver != DriverOverlay {
		return Invalidf("overlay options (--vni, --slice-size, --slice-size6, --mode) are for the overlay driver, not %s: add --driver overlay", n.Driver)
	}
	if spec.Overlay != nil {
		if err := CheckOverlayMode(spec.Overlay.Mode); err != nil {
			return err
		}
		o := *spec.Overlay
		o.Subnets = slices.Clone(o.Subnets)
		n.Overlay = &o
	}
	if spec.Macvlan != nil && n.Driver != DriverMacvlan {
		return Invalidf("macvlan options (--parent, --macvlan-mode, --vlan, --shim) are for the macvlan driver, not %s: add --driver macvlan", n.Driver)
	}
	if spec.BridgeOptions != nil {
		if err := spec.BridgeOptions.Check(); err != nil {
			return err
		}
		o := *spec.BridgeOptions
		n.BridgeOptions = &o
	}
	if n.Driver != DriverMacvlan {
		return nil
	}
	if spec.Macvlan == nil || spec.Macvlan.Parent == "" {
		return Invalidf("a macvlan network needs the host link its members join: give --parent (e.g. --parent eth0)")
	}
	o := MacvlanOptions{Parent: spec.Macvlan.Parent, Mode: spec.Macvlan.Mode, VLAN: spec.Macvlan.VLAN, Shim: spec.Macvlan.Shim}
	if err := ValidateIfName("parent", o.Parent); err != nil {
		return err
	}
	if o.Mode == "" {
		o.Mode = MacvlanModes[0]
	}
	if !slices.Contains(MacvlanModes, o.Mode) {
		return Invalidf("macvlan mode %q is not one of %s", o.Mode, strings.Join(MacvlanModes, ", "))
	}
	if o.VLAN < 0 || o.VLAN > 4094 {
		return Invalidf("vlan %d is out of range: use 1 to 4094", o.VLAN)
	}
	o.Link = o.Parent
	if o.VLAN != 0 {
		o.Link = fmt.Sprintf("%s.%d", o.Parent, o.VLAN)
		if len(o.Link) > MaxIfNameLen {
			return Invalidf("the VLAN sub-interface %s would be longer than the kernel's %d characters: create it yourself (ip link add link %s name SHORT type vlan id %d) and give it as --parent, without --vlan", o.Link, MaxIfNameLen, o.Parent, o.VLAN)
		}
	}
	if o.Shim && o.Mode != "bridge" {
		return Invalidf("--shim needs macvlan mode bridge (the host's macvlan reaches the members inside the parent only in that mode), not %s", o.Mode)
	}
	n.Macvlan = &o
	return nil
}

// Check validates bridge options: a forward delay only with STP and
// within the kernel's 2–30 s, an ageing time within 10–1000000 s.
func (o *BridgeOptions) Check() error {
	if o == nil {
		return nil
	}
	if o.ForwardDelay != 0 {
		if !o.STP {
			return Invalidf("forward delay %ds given without STP: the forward delay is STP's listening and learning time; add --stp or leave --forward-delay out", o.ForwardDelay)
		}
		if o.ForwardDelay < 2 || o.ForwardDelay > 30 {
			return Invalidf("forward delay %ds is out of range: with STP the kernel takes 2 to 30 seconds", o.ForwardDelay)
		}
	}
	if o.AgeingTime != 0 && (o.AgeingTime < 10 || o.AgeingTime > 1000000) {
		return Invalidf("ageing time %ds is out of range: use 10 to 1000000 seconds (or leave it out for the kernel's 300)", o.AgeingTime)
	}
	return nil
}

// CheckVLAN validates an endpoint's VLAN on network n: 1–4094, and only
// on a network with VLAN filtering. 0 (none) is always fine.
func CheckVLAN(n *Network, vlan int) error {
	if vlan == 0 {
		return nil
	}
	if vlan < 1 || vlan > 4094 {
		return Invalidf("VLAN %d is out of range: use 1 to 4094 (0 and 4095 are reserved by 802.1Q)", vlan)
	}
	if n.Driver == DriverOVS {
		return nil // an Open vSwitch access port: every OVS bridge has VLANs
	}
	if !n.BridgeOptions.VLANs() {
		return Invalidf("VLAN %d asked on network %s, which has no VLAN filtering: create the network with --vlan-filtering, or leave --vlan out", vlan, n.Name)
	}
	return nil
}

// ParsePrefixLoose parses a CIDR of either family that may be as small as
// a single address (used for ip ranges).
func ParsePrefixLoose(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, Invalidf("%s %q is not a CIDR: write it like 10.90.1.128/25 or fd00:1::100/120", what, s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, Invalidf("%s %q has host bits set: did you mean %s?", what, s, p.Masked())
	}
	return p, nil
}

// checkHostAddr checks that a is a host address of subnet: inside it, not
// its first address (IPv4's network address, IPv6's subnet-router
// anycast) and, for IPv4, not its broadcast address.
func checkHostAddr(what string, a netip.Addr, subnet netip.Prefix) error {
	if !subnet.Contains(a) {
		return Invalidf("%s %s is outside subnet %s: give an address inside the subnet", what, a, subnet)
	}
	if a == subnet.Addr() {
		if a.Is6() {
			return Invalidf("%s %s is the subnet-router anycast address of %s: give a host address", what, a, subnet)
		}
		return Invalidf("%s %s is the network address of %s: give a host address", what, a, subnet)
	}
	if a.Is4() && a == Broadcast(subnet) {
		return Invalidf("%s %s is the broadcast address of %s: give a host address", what, a, subnet)
	}
	return nil
}

// CheckStaticIP validates an address a user asked for on a network (not
// whether it is free: the IPAM does that under the store's transaction).
// Any host address of the subnet of its family but the gateway will do:
// like Docker's --ip-range, the subnet's IPRange limits only the addresses
// pontoon picks itself, so static addresses can be kept outside it.
func CheckStaticIP(n *Network, ip netip.Addr) error {
	s, ok := n.family(ip.Is6())
	if !ok {
		return Invalidf("address %s is %s but network %s has no %s subnet: give an address in %s", ip, familyName(ip), n.Name, familyName(ip), n.SubnetString())
	}
	if n.Driver == DriverLink && ip == s.Gateway {
		// A direct link's gateway is one of its two members.
		return checkHostAddr("address", ip, s.Prefix)
	}
	return s.CheckStatic(n.Name, ip)
}

// CheckStatic checks ip as a static address in subnet s of network: a
// host address of the subnet (not its first address, not IPv4's
// broadcast address) and not its gateway.
func (s Subnet) CheckStatic(network string, ip netip.Addr) error {
	if err := checkHostAddr("address", ip, s.Prefix); err != nil {
		return err
	}
	if ip == s.Gateway {
		return Invalidf("address %s is the gateway of network %s: pick another address", ip, network)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux ≥ 3.17
	}
	return hex.EncodeToString(b)
}
