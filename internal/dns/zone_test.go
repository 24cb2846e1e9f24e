package dns

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// naiveZone builds a network's names from scratch, the simplest way: the
// reference the in-place updates are checked against.
func naiveZone(zname string, recs map[netip.Addr]Record) (map[string][]netip.Addr, map[netip.Addr]string) {
	names := map[string][]netip.Addr{}
	ptr := map[netip.Addr]string{}
	for ip, r := range recs {
		ns := recordNames(r)
		for _, n := range ns {
			names[n] = append(names[n], ip)
			names[n+"."+zname] = append(names[n+"."+zname], ip)
		}
		if len(ns) > 0 {
			ptr[ip] = ns[0] + "." + zname + "."
		}
	}
	for n, ips := range names {
		slices.SortFunc(ips, netip.Addr.Compare)
		names[n] = slices.Compact(ips)
	}
	return names, ptr
}

// Random record updates, applied in place, always leave the zone equal to
// one built from the records from scratch: nothing stale, nothing missing.
func TestZoneUpdatesInPlace(t *testing.T) {
	cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		s := newTestServer(t, Options{})
		recs := map[netip.Addr]Record{}
		for step := range 300 {
			ip := netip.AddrFrom4([4]byte{10, 9, 0, byte(1 + rng.IntN(20))})
			switch op := rng.IntN(10); {
			case op < 6:
				// Names and aliases drawn from a small pool, so that
				// records share names and replace each other's.
				r := Record{Name: fmt.Sprintf("sb%d", rng.IntN(8)), IP: ip}
				for range rng.IntN(3) {
					r.Aliases = append(r.Aliases, fmt.Sprintf("Alias%d", rng.IntN(5)))
				}
				s.SetRecord("net", r)
				recs[ip] = r
			case op < 9:
				s.RemoveRecord("net", ip)
				delete(recs, ip)
			default:
				rs := make([]Record, 0, len(recs))
				for _, r := range recs {
					rs = append(rs, r)
				}
				s.ReplaceRecords("net", rs)
			}
			s.mu.Lock()
			gotNames, gotPtr := map[string][]netip.Addr{}, map[netip.Addr]string{}
			zname := "net"
			if e := s.nets["net"]; e != nil { // made by the first set
				e.zmu.RLock()
				gotNames, gotPtr = maps.Clone(e.zone.names), maps.Clone(e.zone.ptr)
				zname = e.zname
				e.zmu.RUnlock()
			}
			s.mu.Unlock()
			names, ptr := naiveZone(zname, recs)
			if d := cmp.Diff(names, gotNames, cmpAddr); d != "" {
				t.Fatalf("seed %d step %d: names (-want +got):\n%s", seed, step, d)
			}
			if d := cmp.Diff(ptr, gotPtr, cmpAddr); d != "" {
				t.Fatalf("seed %d step %d: ptr (-want +got):\n%s", seed, step, d)
			}
		}
	}
}
