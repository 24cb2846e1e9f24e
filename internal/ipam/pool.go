package ipam

import (
	"errors"
	"fmt"
	"net/netip"

	"pontoon/internal/model"
)

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
		last := uint64(u32(lastAddr(p)))
		for v := first; v+step-1 <= last; v += step {
			cand := netip.PrefixFrom(addr(uint32(v)), bits)
			free := true
			for _, t := range taken {
				if t.Overlaps(cand) {
					free = false
					// Skip past the taken prefix when it is larger.
					if t.Bits() < bits {
						end := uint64(u32(lastAddr(t)))
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
