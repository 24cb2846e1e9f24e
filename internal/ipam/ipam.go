// Package ipam hands out addresses and subnets, IPv4 and IPv6 alike. It is
// pure logic over a Reservations interface (store.Tx satisfies it), like
// host-local's allocator over its Store: the daemon runs it inside one
// store transaction, which is what makes a reservation and the endpoint
// that owns it atomic.
//
// It works on one model.Subnet of a network at a time; a dual-stack
// network calls it once per subnet. The code is the same for both
// families: addresses are netip.Addr and stepping is Addr.Next, never
// integer arithmetic on a family's width.
//
// Allocation is next-fit: it starts after the last address handed out in
// the network's subnet of that family (the cursor, one per family), so
// with addresses mostly handed out in order the 500th allocation costs
// what the 1st did, and a just-released address is not handed out again
// at once (stale ARP and neighbour entries elsewhere age out first).
// Nothing is sized by the subnet: a /64 costs what a /24 does, since only
// reservations are stored, never a bitmap of the range.
package ipam

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"

	"pontoon/internal/model"
)

// Reservations is the state the allocator works on.
type Reservations interface {
	Reservation(networkID string, ip netip.Addr) (owner string, ok bool, err error)
	Reserve(networkID string, ip netip.Addr, owner string) error
	Release(networkID string, ip netip.Addr) error
	// Reservations returns every address held on the network, of both
	// families. Allocate reads it only when a walk from the cursor meets
	// more than scanLookups held addresses in a row.
	Reservations(networkID string) (map[netip.Addr]string, error)
	// Cursor is the last address handed out on the network in the family
	// (IPv6 when v6); the zero Addr when none. SetCursor sets the cursor
	// of ip's family.
	Cursor(networkID string, v6 bool) (netip.Addr, error)
	SetCursor(networkID string, ip netip.Addr) error
}

// scanLookups is how many addresses Allocate looks up one by one after the
// cursor before it reads all of the network's reservations at once. Ranges
// up to this size are simply walked through; beyond it, meeting that many
// held addresses in a row means the range is crowded, and one read of the
// reservations tells whether any address is free and bounds the rest of
// the walk.
const scanLookups = 256

// count returns how many addresses lo..hi holds (hi ≥ lo, same family),
// saturating at math.MaxUint64: a range that large is never walked
// through, only into (see Allocate).
func count(lo, hi netip.Addr) uint64 {
	a, b := lo.As16(), hi.As16()
	dlo, borrow := bits.Sub64(binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(a[8:]), 0)
	dhi, _ := bits.Sub64(binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(a[:8]), borrow)
	if dhi != 0 || dlo == math.MaxUint64 {
		return math.MaxUint64
	}
	return dlo + 1
}

// within reports whether lo ≤ a ≤ hi.
func within(a, lo, hi netip.Addr) bool { return lo.Compare(a) <= 0 && a.Compare(hi) <= 0 }

// hostRange returns the first and last host address of a subnet: never
// its first address (IPv4's network address, IPv6's subnet-router anycast
// address, RFC 4291 2.6.1) nor, in IPv4, its broadcast address. ok is
// false when the subnet has no host address (an IPv4 /31 or /32, an IPv6
// /128).
func hostRange(p netip.Prefix) (first, last netip.Addr, ok bool) {
	p = p.Masked()
	first, last = p.Addr().Next(), model.Broadcast(p)
	if p.Addr().Is4() {
		last = last.Prev()
	}
	return first, last, first.IsValid() && last.IsValid() && first.Compare(last) <= 0
}

// bounds returns the first and last address Allocate may hand out in s:
// its allocation range clipped to the host addresses of its prefix. ok is
// false when there is none.
func bounds(network string, s model.Subnet) (lo, hi netip.Addr, ok bool, err error) {
	p, r := s.Prefix.Masked(), s.AllocRange().Masked()
	if !p.IsValid() || !r.IsValid() {
		return lo, hi, false, model.Invalidf("network %s has no valid subnet (%v): give one like 10.90.1.0/24 or fd00:1::/64", network, s.Prefix)
	}
	if r.Addr().Is4() != p.Addr().Is4() {
		return lo, hi, false, model.Invalidf("network %s: ip-range %s is not of the family of subnet %s: give a range inside the subnet", network, r, p)
	}
	first, last, ok := hostRange(p)
	if !ok {
		return lo, hi, false, nil
	}
	lo, hi = r.Addr(), model.Broadcast(r)
	if lo.Less(first) {
		lo = first
	}
	if last.Less(hi) {
		hi = last
	}
	return lo, hi, lo.Compare(hi) <= 0, nil
}

// Allocate reserves for owner the next free address of s after the
// cursor of s's family (next-fit, wrapping round the range), and moves
// the cursor to it. It hands out addresses of s.AllocRange() only, never
// the subnet's first address (IPv4 network, IPv6 subnet-router anycast),
// IPv4's broadcast address or the gateway.
//
// Cost: one point lookup per address it steps over, and one lookup when
// addresses are handed out in order. After scanLookups held addresses in
// a row it reads the network's reservations once (one scan of what is
// held, never of the range): when every address is taken that is an
// ErrExhausted, else the walk goes on over the map and ends within as
// many steps as addresses are held, plus two. So Allocate always ends,
// on a /64 too, and a full small range is an ErrExhausted.
//
// A just-released address is handed out again only after the cursor has
// gone round, so stale neighbour entries for it age out first.
func Allocate(r Reservations, nw *model.Network, s model.Subnet, owner string) (netip.Addr, error) {
	network, id := nw.Name, nw.ID
	lo, hi, ok, err := bounds(network, s)
	if err != nil {
		return netip.Addr{}, err
	}
	size, usable := uint64(0), uint64(0)
	if ok {
		size = count(lo, hi)
		usable = size
		if within(s.Gateway, lo, hi) && usable != math.MaxUint64 {
			usable--
		}
	}
	if usable == 0 {
		return netip.Addr{}, model.Exhaustedf("network %s has no usable address in %s: create a network with a larger subnet", network, s.AllocRange())
	}
	start := lo
	if c, err := r.Cursor(id, lo.Is6()); err != nil {
		return netip.Addr{}, err
	} else if c.IsValid() && lo.Compare(c) <= 0 && c.Less(hi) {
		start = c.Next()
	}
	next := func(a netip.Addr) netip.Addr {
		if a == hi {
			return lo
		}
		return a.Next()
	}
	take := func(a netip.Addr) (netip.Addr, error) {
		if err := r.Reserve(id, a, owner); err != nil {
			return netip.Addr{}, err
		}
		if err := r.SetCursor(id, a); err != nil {
			return netip.Addr{}, err
		}
		return a, nil
	}
	exhausted := func(used uint64) error {
		return model.Exhaustedf("network %s has no free address left in %s (%d in use): remove a sandbox from it or create a network with a larger subnet", network, s.AllocRange(), used)
	}

	v := start
	for range min(size, scanLookups) {
		if v != s.Gateway {
			_, held, err := r.Reservation(id, v)
			if err != nil {
				return netip.Addr{}, err
			}
			if !held {
				return take(v)
			}
		}
		v = next(v)
	}
	if size <= scanLookups {
		return netip.Addr{}, exhausted(usable)
	}

	// Crowded: count what is held in the range. Among any held+2
	// consecutive addresses at most held are taken and one is the
	// gateway, so when an address is free the walk below finds one
	// within min(size, held+2) steps.
	all, err := r.Reservations(id)
	if err != nil {
		return netip.Addr{}, err
	}
	var held uint64
	for a := range all {
		if a != s.Gateway && within(a, lo, hi) {
			held++
		}
	}
	if held >= usable {
		return netip.Addr{}, exhausted(held)
	}
	for range min(size, held+2) {
		if _, taken := all[v]; !taken && v != s.Gateway {
			return take(v)
		}
		v = next(v)
	}
	return netip.Addr{}, fmt.Errorf("ipam: network %s: %d of %d addresses of %s are held, yet none was free after the cursor: the reservations are inconsistent", network, held, usable, s.AllocRange())
}

// ReserveStatic reserves an address a user asked for in subnet s of a
// network: it must pass model.Subnet.CheckStatic (a host address of the
// subnet, not its gateway; else ErrInvalid). It may lie outside
// the subnet's ip-range, which limits only what Allocate hands out.
// Reserving an address owner already holds is success.
//
// When another owner holds it, the error is an ErrConflict that names the
// holder: name turns the holder's owner ID (an endpoint ID) into words for
// people, e.g. "sandbox web"; nil prints the ID. The caller resolves the
// name because only it knows what owner IDs stand for.
func ReserveStatic(r Reservations, nw *model.Network, s model.Subnet, ip netip.Addr, owner string, name func(owner string) string) error {
	network, id := nw.Name, nw.ID
	if err := s.CheckStatic(network, ip); err != nil {
		return err
	}
	holder, held, err := r.Reservation(id, ip)
	if err != nil {
		return err
	}
	if held && holder != owner {
		who := holder
		if name != nil {
			who = name(holder)
		}
		flag := "--ip"
		if ip.Is6() {
			flag = "--ip6"
		}
		return model.Conflictf("address %s on network %s is already in use by %s: pick another address, or leave %s out to get a free one", ip, network, who, flag)
	}
	return r.Reserve(id, ip, owner)
}
