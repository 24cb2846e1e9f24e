package model

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
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

// NetworkSpec is what a user asks for when creating a network. Zero values
// mean "choose for me".
type NetworkSpec struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver,omitempty"`
	Subnet     string            `json:"subnet,omitempty"`
	Gateway    string            `json:"gateway,omitempty"`
	IPRange    string            `json:"ip_range,omitempty"`
	Internal   bool              `json:"internal,omitempty"`
	ICC        *bool             `json:"icc,omitempty"`        // default true
	Masquerade *bool             `json:"masquerade,omitempty"` // default true
	MTU        int               `json:"mtu,omitempty"`
	Bridge     string            `json:"bridge,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// ParsePrefix parses an IPv4 CIDR that must be given in canonical form
// (host bits zero).
func ParsePrefix(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, Invalidf("%s %q is not a CIDR: write it like 10.90.1.0/24", what, s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, Invalidf("%s %q is not IPv4: pontoon's bridge driver supports IPv4 subnets only", what, s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, Invalidf("%s %q has host bits set: did you mean %s?", what, s, p.Masked())
	}
	if p.Bits() > 30 {
		return netip.Prefix{}, Invalidf("%s %q is too small: use a /30 or larger so there is room for a gateway and a sandbox", what, s)
	}
	if p.Bits() < 8 {
		return netip.Prefix{}, Invalidf("%s %q is too large: use a /8 or smaller", what, s)
	}
	return p, nil
}

// ParseAddr parses an IPv4 address.
func ParseAddr(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, Invalidf("%s %q is not an IPv4 address", what, s)
	}
	return a, nil
}

// Broadcast returns the last address of an IPv4 prefix.
func Broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << host) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Overlaps reports whether two prefixes share an address.
func Overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

// BuildNetwork validates a spec whose subnet is already chosen and returns
// the network to create. It does not check conflicts with other networks;
// the engine does, under its lock.
func BuildNetwork(spec NetworkSpec, subnet netip.Prefix, id string) (*Network, error) {
	if err := ValidateNetworkName(spec.Name); err != nil {
		return nil, err
	}
	if spec.Driver != "" && spec.Driver != DriverBridge {
		return nil, Invalidf("driver %q is not supported: use %q", spec.Driver, DriverBridge)
	}
	n := &Network{
		ID: id, Name: spec.Name, Driver: DriverBridge, Subnet: subnet,
		Internal: spec.Internal, ICC: true, Masquerade: true, MTU: DefaultMTU,
		Labels: spec.Labels,
	}
	if spec.ICC != nil {
		n.ICC = *spec.ICC
	}
	if spec.Masquerade != nil {
		n.Masquerade = *spec.Masquerade
	}
	if n.Internal {
		n.Masquerade = false
	}
	if spec.MTU != 0 {
		if spec.MTU < 576 || spec.MTU > 65535 {
			return nil, Invalidf("mtu %d is out of range: use a value from 576 to 65535", spec.MTU)
		}
		n.MTU = spec.MTU
	}
	for k := range spec.Labels {
		if k == "" {
			return nil, Invalidf("label with an empty key: write labels as key=value")
		}
	}
	if spec.Gateway != "" {
		gw, err := ParseAddr("gateway", spec.Gateway)
		if err != nil {
			return nil, err
		}
		if err := checkHostAddr("gateway", gw, subnet); err != nil {
			return nil, err
		}
		n.Gateway = gw
	} else {
		n.Gateway = subnet.Addr().Next()
	}
	if spec.IPRange != "" {
		r, err := ParsePrefixLoose("ip-range", spec.IPRange)
		if err != nil {
			return nil, err
		}
		if !subnet.Contains(r.Addr()) || r.Bits() < subnet.Bits() {
			return nil, Invalidf("ip-range %s is not inside subnet %s: give a range within the subnet", r, subnet)
		}
		n.IPRange = r
	}
	if spec.Bridge != "" {
		if err := ValidateIfName("bridge name", spec.Bridge); err != nil {
			return nil, err
		}
		n.Bridge = spec.Bridge
	} else if spec.Name == DefaultNetwork {
		n.Bridge = DefaultBridge
	} else {
		n.Bridge = BridgeName(id)
	}
	return n, nil
}

// ParsePrefixLoose parses an IPv4 CIDR that may be as small as a /32 (used
// for ip ranges).
func ParsePrefixLoose(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, Invalidf("%s %q is not an IPv4 CIDR: write it like 10.90.1.128/25", what, s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, Invalidf("%s %q has host bits set: did you mean %s?", what, s, p.Masked())
	}
	return p, nil
}

func checkHostAddr(what string, a netip.Addr, subnet netip.Prefix) error {
	if !subnet.Contains(a) {
		return Invalidf("%s %s is outside subnet %s: give an address inside the subnet", what, a, subnet)
	}
	if a == subnet.Addr() {
		return Invalidf("%s %s is the network address of %s: give a host address", what, a, subnet)
	}
	if a == Broadcast(subnet) {
		return Invalidf("%s %s is the broadcast address of %s: give a host address", what, a, subnet)
	}
	return nil
}

// CheckStaticIP validates an address a user asked for on a network (not
// whether it is free: the IPAM does that under the store's transaction).
// Any host address of the subnet but the gateway will do: like Docker's
// --ip-range, the network's IPRange limits only the addresses pontoon
// picks itself, so static addresses can be kept outside it.
func CheckStaticIP(n *Network, ip netip.Addr) error {
	if err := checkHostAddr("address", ip, n.Subnet); err != nil {
		return err
	}
	if ip == n.Gateway {
		return Invalidf("address %s is the gateway of network %s: pick another address", ip, n.Name)
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
