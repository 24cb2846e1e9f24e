// Package ipam hands out addresses and subnets. It is pure logic over a
// Reservations interface (store.Tx satisfies it), like host-local's
// allocator over its Store: the daemon runs it inside one store transaction,
// which is what makes a reservation and the endpoint that owns it atomic.
//
// Allocation is next-fit: it starts after the last address handed out on a
// network (the cursor), so with addresses mostly handed out in order the
// 500th allocation costs what the 1st did, and a just-released address is
// not handed out again at once (stale ARP entries elsewhere age out first).
package ipam

import (
	"errors"
	"fmt"
	"net/netip"

	"pontoon/internal/model"
)

// Reservations is the state the allocator works on.
type Reservations interface {
	Reservation(network string, ip netip.Addr) (owner string, ok bool, err error)
	Reserve(network string, ip netip.Addr, owner string) error
	Release(network string, ip netip.Addr) error
	Cursor(network string) (netip.Addr, error)
	SetCursor(network string, ip netip.Addr) error
}

// Default address plan, all inside 10.0.0.0/8 (RFC 1918), laid out like
// Podman's (10.88.0.0/16 default, /24s from 10.89.0.0 up for others):
//
//   - the default network gets DefaultSubnet, unless it overlaps a network
//     or route the host already has; then the engine picks from the pool;
//   - networks created without --subnet get a /DefaultPoolBits from
//     DefaultPool, the first that overlaps nothing (PickSubnet).
//
// The pool leaves out 10.96.0.0/12, Kubernetes' default service range:
// service addresses have no host route, so overlap detection cannot see
// them, and pontoon also runs as a CNI plugin on Kubernetes nodes.
// What is left holds 23 × 256 = 5888 /24 networks.
var (
	DefaultSubnet = netip.MustParsePrefix("10.88.0.0/16")
	DefaultPool   = func() []netip.Prefix {
		var p []netip.Prefix
		for b := 89; b <= 127; b++ {
			if b >= 96 && b <= 111 { // 10.96.0.0/12
				continue
			}
			p = append(p, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), 0, 0}), 16))
		}
		return p
	}()
	// DefaultPool6 is where IPv6 subnets come from: a ULA /48 (RFC 4193)
	// split into /64s.
	DefaultPool6 = []netip.Prefix{netip.MustParsePrefix("fdd0:ba5e:1::/48")}
)

// DefaultPoolBits is the prefix length of subnets picked from the pool.
const DefaultPoolBits = 24

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// bounds returns the first and last usable address of n's allocation range:
// never the subnet's network or broadcast address, never outside the subnet.
func bounds(network string, n model.Subnet) (lo, hi uint32, err error) {
	r := n.AllocRange()
	if !n.Prefix.Addr().Is4() || !r.Addr().Is4() {
		return 0, 0, model.Invalidf("network %s has no IPv4 subnet (%v): pontoon allocates IPv4 addresses only", network, r)
	}
	lo, hi = u32(r.Masked().Addr()), u32(model.Broadcast(r))
	lo = max(lo, u32(n.Prefix.Masked().Addr())+1)
	hi = min(hi, u32(model.Broadcast(n.Prefix))-1)
	return lo, hi, nil
}

// Allocate reserves for owner the next free address of n after the cursor
// (next-fit, wrapping round the range), and moves the cursor to it. It
// skips the subnet's network and broadcast addresses and the gateway.
//
// Cost: one point lookup per address it steps over. While addresses are
// handed out in order that is one lookup; it only scans when the range is
// nearly full and fragmented. A just-released address is handed out again
// only after the cursor has gone round, so stale ARP entries for it age out
// first.
func Allocate(r Reservations, network string, n model.Subnet, owner string) (netip.Addr, error) {
	lo, hi, err := bounds(network, n)
	if err != nil {
		return netip.Addr{}, err
	}
	if hi < lo {
		return netip.Addr{}, model.Exhaustedf("network %s has no usable address in %s: create a network with a larger subnet", network, n.AllocRange())
	}
	size := uint64(hi-lo) + 1
	start := lo
	if c, err := r.Cursor(network); err != nil {
		return netip.Addr{}, err
	} else if c.Is4() {
		if cv := u32(c); cv >= lo && cv < hi {
			start = cv + 1
		}
	}
	gw, hasGW := uint32(0), n.Gateway.Is4()
	if hasGW {
		gw = u32(n.Gateway)
	}
	v := start
	for range size {
		if !hasGW || v != gw {
			a := addr(v)
			_, held, err := r.Reservation(network, a)
			if err != nil {
				return netip.Addr{}, err
			}
			if !held {
				if err := r.Reserve(network, a, owner); err != nil {
					return netip.Addr{}, err
				}
				if err := r.SetCursor(network, a); err != nil {
					return netip.Addr{}, err
				}
				return a, nil
			}
		}
		if v == hi {
			v = lo
		} else {
			v++
		}
	}
	used := size
	if hasGW && gw >= lo && gw <= hi {
		used--
	}
	return netip.Addr{}, model.Exhaustedf("network %s has no free address left in %s (%d in use): remove a sandbox from it or create a network with a larger subnet", network, n.AllocRange(), used)
}

// ReserveStatic reserves an address a user asked for (--ip): it must pass
// model.CheckStaticIP (inside the subnet, not the network, broadcast or
// gateway address: else ErrInvalid). It may lie outside the network's
// ip-range, which limits only what Allocate hands out. Reserving an address
// owner already holds is success.
//
// When another owner holds it, the error is an ErrConflict that names the
// holder: name turns the holder's owner ID (an endpoint ID) into words for
// people, e.g. "sandbox web"; nil prints the ID. The caller resolves the
// name because only it knows what owner IDs stand for.
func ReserveStatic(r Reservations, n *model.Network, ip netip.Addr, owner string, name func(owner string) string) error {
	if err := model.CheckStaticIP(n, ip); err != nil {
		return err
	}
	holder, held, err := r.Reservation(n.Name, ip)
	if err != nil {
		return err
	}
	if held && holder != owner {
		who := holder
		if name != nil {
			who = name(holder)
		}
		return model.Conflictf("address %s on network %s is already in use by %s: pick another address, or leave --ip out to get a free one", ip, n.Name, who)
	}
	return r.Reserve(n.Name, ip, owner)
}

// ErrNoSubnet is returned by PickSubnet when the pool is full; the error
// is also an model.ErrExhausted.
var ErrNoSubnet = errors.New("no free subnet in the pool")

// PickSubnet returns the first prefix of length bits inside pool (in order)
// that overlaps none of taken (the subnets of existing networks and the
// host's routes and addresses). Pool entries longer than bits (too small
// to hold such a prefix) are skipped; a taken prefix larger than bits is
// jumped over in one step.
func PickSubnet(pool []netip.Prefix, bits int, taken []netip.Prefix) (netip.Prefix, error) {
	for _, p := range pool {
		if !p.Addr().Is4() || bits < p.Bits() || bits > 32 {
			continue
		}
		step := uint64(1) << (32 - bits)
		first := uint64(u32(p.Masked().Addr()))
		last := uint64(u32(model.Broadcast(p)))
		for v := first; v+step-1 <= last; v += step {
			cand := netip.PrefixFrom(addr(uint32(v)), bits)
			free := true
			for _, t := range taken {
				if t.Overlaps(cand) {
					free = false
					// Skip past the taken prefix when it is larger.
					if t.Bits() < bits {
						end := uint64(u32(model.Broadcast(t.Masked())))
						if end+1 > v+step {
							v = (end+1)/step*step - step
						}
					}
					break
				}
			}
			if free {
				return cand, nil
			}
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: every /%d of the pool overlaps a network or route the host has (%w)", ErrNoSubnet, bits, model.ErrExhausted)
}
