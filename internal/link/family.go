package link

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// family is what differs between IPv4 and IPv6 in the requests and dumps
// of this package. Every request builder takes its family from the address
// it is given (familyOf), so one code path serves both.
type family struct {
	af   int    // AF_INET, AF_INET6 (= netlink.FAMILY_V4, FAMILY_V6)
	name string // for messages
	bits int    // a host route's or rule's prefix length: 32, 128
	// scope of a route to a connected subnet: link for IPv4; IPv6 routes
	// have no scope (the kernel reports universe whatever it was given).
	connected netlink.Scope
}

var (
	ipv4 = family{af: unix.AF_INET, name: "IPv4", bits: 32, connected: netlink.SCOPE_LINK}
	ipv6 = family{af: unix.AF_INET6, name: "IPv6", bits: 128, connected: netlink.SCOPE_UNIVERSE}
)

// familyOf is a's family. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d)
// are refused by checkAddrs before anything is built from them.
func familyOf(a netip.Addr) family {
	if a.Is4() {
		return ipv4
	}
	return ipv6
}

// defaultDst is the default route's destination in the family
// (0.0.0.0/0, ::/0), as netlink reports it.
func (f family) defaultDst() *net.IPNet {
	if f.af == unix.AF_INET {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

// addrOf converts an address from netlink (4 or 16 bytes, IPv4 possibly
// in its 16-byte form) to a netip.Addr; false for nil or malformed input.
func addrOf(ip net.IP) (netip.Addr, bool) {
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	return netip.AddrFromSlice(ip)
}

// toPrefix converts an address or route destination from netlink to a
// prefix of its own family; false for nil or malformed input.
func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	if bits == 32 {
		a = a.Unmap() // net.IP may hold IPv4 in 16 bytes
	}
	if a.BitLen() != bits {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// hostScoped reports whether a host address or route is left out of
// HostNets, HostPrefixes and the lookups: IPv6 link-local (fe80::/10:
// every link has its own, they never clash with a subnet) and multicast.
func hostScoped(p netip.Prefix) bool {
	a := p.Addr()
	return a.Is6() && (a.IsLinkLocalUnicast() || a.IsMulticast())
}

// LinkLocal is the IPv6 link-local address pontoon gives an interface
// with MAC mac (and so the one the firewall lets it use): fe80::/64 with
// the modified EUI-64 interface identifier of RFC 4291 (appendix A), the
// address the kernel's addr_gen_mode eui64 would make. A MAC is unique on
// its bridge (or L2 would not work), so this address is unique there by
// construction and needs no duplicate address detection.
func LinkLocal(mac net.HardwareAddr) netip.Prefix {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	if len(mac) == 6 {
		b[8], b[9], b[10] = mac[0]^0x02, mac[1], mac[2]
		b[11], b[12] = 0xff, 0xfe
		b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

// checkAddrs checks a list of addresses (with their prefix lengths) given
// for one interface: valid, neither unspecified nor IPv4-mapped IPv6, at
// most one per family.
func checkAddrs(what string, ps []netip.Prefix) error {
	seen := map[int]netip.Prefix{}
	for _, p := range ps {
		switch a := p.Addr(); {
		case !p.IsValid():
			return fmt.Errorf("%s: invalid address %s: give an address with its prefix length (10.90.1.5/24, fd00:1::5/64)", what, p)
		case a.Is4In6():
			return fmt.Errorf("%s: %s is an IPv4-mapped IPv6 address: give the IPv4 address (%s)", what, p, a.Unmap())
		case a.IsUnspecified():
			return fmt.Errorf("%s: %s is the unspecified address: give the interface's own address", what, p)
		}
		f := familyOf(p.Addr())
		if o, ok := seen[f.af]; ok {
			return fmt.Errorf("%s: two %s addresses (%s, %s): give at most one per family", what, f.name, o, p)
		}
		seen[f.af] = p
	}
	return nil
}

// check refuses a Veth whose addresses cannot be configured as asked.
func (v Veth) check() error { return v.Iface.check("veth " + v.HostName) }

// check refuses a Bridge whose gateways cannot be configured.
func (b Bridge) check() error { return checkAddrs("bridge "+b.Name, b.Gateways) }

// gateway is the bridge's gateway in a family.
func (b Bridge) gateway(f family) (netip.Prefix, bool) {
	for _, g := range b.Gateways {
		if familyOf(g.Addr()) == f {
			return g, true
		}
	}
	return netip.Prefix{}, false
}
