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

// DefaultSubnet is the default network's subnet unless it overlaps the host.
var DefaultSubnet = netip.MustParsePrefix("10.88.0.0/16")

// DefaultPool is where subnets of networks created without --subnet come
// from (as /24s by default): 10.89.0.0 – 10.127.255.255, all inside 10/8.
var DefaultPool = func() []netip.Prefix {
	var p []netip.Prefix
	for b := 89; b <= 127; b++ {
		p = append(p, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), 0, 0}), 16))
	}
	return p
}()

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// bounds returns the first and last usable address of n's allocation range:
// never the subnet's network or broadcast address.
func bounds(n *model.Network) (lo, hi uint32) {
	r := n.AllocRange()
	lo, hi = u32(r.Masked().Addr()), u32(model.Broadcast(r))
	sLo, sHi := u32(n.Subnet.Masked().Addr()), u32(model.Broadcast(n.Subnet))
	if lo == sLo {
		lo++
	}
	if hi == sHi {
		hi--
	}
	return lo, hi
}

// Allocate reserves the next free address of n for owner.
func Allocate(r Reservations, n *model.Network, owner string) (netip.Addr, error) {
	lo, hi := bounds(n)
	if hi < lo {
		return netip.Addr{}, model.Exhaustedf("network %s has no usable address in %s: create a network with a larger subnet", n.Name, n.AllocRange())
	}
	size := uint64(hi-lo) + 1
	start := lo
	if c, err := r.Cursor(n.Name); err != nil {
		return netip.Addr{}, err
	} else if c.IsValid() && c.Is4() {
		if cv := u32(c); cv >= lo && cv < hi {
			start = cv + 1
		}
	}
	gw := uint32(0)
	if n.Gateway.IsValid() {
		gw = u32(n.Gateway)
	}
	v := start
	for i := uint64(0); i < size; i++ {
		if v != gw {
			a := addr(v)
			_, held, err := r.Reservation(n.Name, a)
			if err != nil {
				return netip.Addr{}, err
			}
			if !held {
				if err := r.Reserve(n.Name, a, owner); err != nil {
					return netip.Addr{}, err
				}
				if err := r.SetCursor(n.Name, a); err != nil {
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
	if gw >= lo && gw <= hi {
		used--
	}
	return netip.Addr{}, model.Exhaustedf("network %s has no free address left in %s (%d in use): remove a sandbox from it or create a network with a larger subnet", n.Name, n.AllocRange(), used)
}

// ReserveStatic reserves an address a user asked for. name turns the owner
// ID of a conflicting reservation into words for the error ("sandbox a");
// nil prints the ID.
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

// ErrNoSubnet is returned by PickSubnet when the pool is full.
var ErrNoSubnet = errors.New("no free subnet in the pool")

// PickSubnet returns the first prefix of length bits inside pool (in order)
// that overlaps none of taken.
func PickSubnet(pool []netip.Prefix, bits int, taken []netip.Prefix) (netip.Prefix, error) {
	for _, p := range pool {
		if bits < p.Bits() || bits > 32 {
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
	return netip.Prefix{}, fmt.Errorf("%w (/%d)", ErrNoSubnet, bits)
}
