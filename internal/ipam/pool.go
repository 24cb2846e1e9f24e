package ipam

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"

	"pontoon/internal/model"
)

// Default address plan.
//
// IPv4, all inside 10.0.0.0/8 (RFC 1918), laid out like Podman's
// (10.88.0.0/16 default, /24s from 10.89.0.0 up for others):
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
//
// IPv6: /64s of the unique local /48 DefaultULA (RFC 4193), 65536 of them.
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
	// DefaultULA is ULA48("pontoon"), fd2b:225b:c0de::/48: a fixed prefix,
	// so that the same network gets the same subnet on every host and in
	// every test, yet with a Global ID drawn the way RFC 4193 3.2 asks
	// (pseudo-random, not a memorable fd00::/48 that other software and
	// people pick too), so that it is unlikely to collide with a ULA the
	// host already routes. A daemon that wants one per host can set
	// DefaultPools from ULA48 of its machine ID.
	DefaultULA = ULA48("pontoon")

	// DefaultPools are the pools networks get subnets from when created
	// without one, one per family, IPv4 first. The daemon may replace them
	// (from flags) before it creates networks.
	DefaultPools = []Pool{
		{Prefixes: DefaultPool, Bits: DefaultPoolBits},
		{Prefixes: []netip.Prefix{DefaultULA}, Bits: 64},
	}
)

// DefaultPoolBits is the prefix length of IPv4 subnets picked from the pool.
const DefaultPoolBits = 24

// ULA48 returns a unique local /48 (fd00::/8, L bit set, RFC 4193) whose
// 40-bit Global ID is the first 40 bits of the SHA-256 of seed: the same
// seed gives the same prefix.
func ULA48(seed string) netip.Prefix {
	sum := sha256.Sum256([]byte(seed))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], sum[:5])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// Pool is where the subnets of one family come from for networks created
// without one.
type Pool struct {
	Prefixes []netip.Prefix // searched in order; all of one family
	Bits     int            // the prefix length of the subnets picked
}

// Is6 reports whether the pool is an IPv6 one.
func (p Pool) Is6() bool { return len(p.Prefixes) > 0 && p.Prefixes[0].Addr().Is6() }

// Check validates a pool given by a user: prefixes of one family without
// host bits, and a subnet length that fits in them (IPv4: /8 to /30;
// IPv6: /8 to /64, since subnets longer than /64 break software that
// assumes SLAAC, RFC 7421).
func (p Pool) Check() error {
	if len(p.Prefixes) == 0 {
		return model.Invalidf("address pool is empty: give at least one prefix, like 10.89.0.0/16 or fd00:1::/48")
	}
	v6 := p.Is6()
	lo, hi := 8, 30
	if v6 {
		lo, hi = 8, 64
	}
	if p.Bits < lo || p.Bits > hi {
		return model.Invalidf("address pool subnet size /%d is out of range: use %d to %d", p.Bits, lo, hi)
	}
	for _, x := range p.Prefixes {
		switch {
		case !x.IsValid():
			return model.Invalidf("address pool entry %v is not a prefix: write it like 10.89.0.0/16 or fd00:1::/48", x)
		case x.Addr().Is6() != v6 || x.Addr().Is4In6():
			return model.Invalidf("address pool entry %s is not of the family of %s: give one pool per family", x, p.Prefixes[0])
		case x.Masked() != x:
			return model.Invalidf("address pool entry %s has host bits set: did you mean %s?", x, x.Masked())
		case x.Bits() > p.Bits:
			return model.Invalidf("address pool entry %s is smaller than the subnet size /%d: give a larger prefix or a longer size", x, p.Bits)
		}
	}
	return nil
}

// Pick returns the first subnet of the pool that overlaps none of taken
// (see PickSubnet).
func (p Pool) Pick(taken []netip.Prefix) (netip.Prefix, error) {
	return PickSubnet(p.Prefixes, p.Bits, taken)
}

// PoolFor returns the first of pools of the family (IPv6 when v6).
func PoolFor(pools []Pool, v6 bool) (Pool, bool) {
	for _, p := range pools {
		if len(p.Prefixes) > 0 && p.Is6() == v6 {
			return p, true
		}
	}
	return Pool{}, false
}

// ErrNoSubnet is returned by PickSubnet when the pool is full; the error
// is also an model.ErrExhausted.
var ErrNoSubnet = errors.New("no free subnet in the pool")

// PickSubnet returns the first prefix of length bits inside pool (in
// order) that overlaps none of taken (the subnets of existing networks and
// the host's routes and addresses), IPv4 and IPv6 alike. Pool entries
// that cannot hold such a prefix (longer than bits, or of a family
// shorter than bits) are skipped; a taken prefix larger than bits is
// jumped over in one step, so the cost is that of taken, never of the
// pool's size: a /48 split into /64s, or even fd00::/8, is as cheap as a
// /16 split into /24s.
func PickSubnet(pool []netip.Prefix, bits int, taken []netip.Prefix) (netip.Prefix, error) {
	for _, p := range pool {
		if !p.IsValid() || bits < p.Bits() || bits > p.Addr().BitLen() {
			continue
		}
		p = p.Masked()
		for v := p.Addr(); v.IsValid() && p.Contains(v); {
			cand := netip.PrefixFrom(v, bits)
			next := model.Broadcast(cand).Next()
			free := true
			for _, t := range taken {
				if t.Overlaps(cand) {
					free = false
					// Skip past the taken prefix when it is larger: its
					// end is also the end of a candidate.
					if t.Bits() < bits {
						if end := model.Broadcast(t).Next(); !end.IsValid() || next.IsValid() && next.Less(end) {
							next = end
						}
					}
					break
				}
			}
			if free {
				return cand, nil
			}
			v = next // invalid past the end of the address space: the loop ends
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: every /%d of the pool overlaps a network or route the host has (%w)", ErrNoSubnet, bits, model.ErrExhausted)
}
