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
func naiveZone(zname string, recs []Record) (map[string][]netip.Addr, map[netip.Addr]string) {
	names := map[string][]netip.Addr{}
	ptr := map[netip.Addr]string{}
	for _, r := range recs {
		ns := recordNames(r)
		for _, ip := range r.IPs {
			for _, n := range ns {
				names[n] = append(names[n], ip)
				names[n+"."+zname] = append(names[n+"."+zname], ip)
			}
			if len(ns) > 0 {
				ptr[ip] = ns[0] + "." + zname + "."
			}
		}
	}
	for n, ips := range names {
		slices.SortFunc(ips, netip.Addr.Compare)
		names[n] = slices.Compact(ips)
	}
	return names, ptr
}

// withoutIPs drops the records that have any of ips.
func withoutIPs(recs []Record, ips ...netip.Addr) []Record {
	return slices.DeleteFunc(recs, func(r Record) bool {
		return slices.ContainsFunc(r.IPs, func(ip netip.Addr) bool { return slices.Contains(ips, ip) })
	})
}

// Random record updates, applied in place, always leave the zone equal to
// one built from the records from scratch: nothing stale, nothing missing.
// Records have an IPv4 address, an IPv6 one or both, drawn from small
// pools so that they share names and addresses and replace each other.
func TestZoneUpdatesInPlace(t *testing.T) {
	cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		s := newTestServer(t, Options{})
		var recs []Record
		v4 := func() netip.Addr { return netip.AddrFrom4([4]byte{10, 9, 0, byte(1 + rng.IntN(20))}) }
		v6 := func() netip.Addr {
			return netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(1 + rng.IntN(20))})
		}
		for step := range 300 {
			switch op := rng.IntN(10); {
			case op < 6:
				r := Record{Name: fmt.Sprintf("sb%d", rng.IntN(8))}
				switch rng.IntN(3) {
				case 0:
					r.IPs = []netip.Addr{v4()}
				case 1:
					r.IPs = []netip.Addr{v6()}
				default:
					r.IPs = []netip.Addr{v6(), v4()}
				}
				for range rng.IntN(3) {
					r.Aliases = append(r.Aliases, fmt.Sprintf("Alias%d", rng.IntN(5)))
				}
				s.SetRecord("net", r)
				recs = append(withoutIPs(recs, r.IPs...), r)
			case op < 9:
				ip := v4()
				if rng.IntN(2) == 0 {
					ip = v6()
				}
				s.RemoveRecord("net", ip)
				recs = withoutIPs(recs, ip)
			default:
				rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
				s.ReplaceRecords("net", recs)
			}
			s.mu.Lock()
			gotNames, gotPtr := map[string][]netip.Addr{}, map[netip.Addr]string{}
			zname := "net"
			if e := s.nets["net"]; e != nil { // made by the first set
				e.zmu.RLock()
				gotNames, gotPtr = maps.Clone(e.zone.names), maps.Clone(e.zone.ptr)
				zname = e.zname
				e.zmu.RUnlock()
				// Every address of every record, and nothing else.
				n := 0
				for _, r := range recs {
					for _, ip := range r.IPs {
						n++
						if got := e.records[ip]; got == nil || got.Name != r.Name {
							t.Fatalf("seed %d step %d: records[%s] = %v, want %s", seed, step, ip, got, r.Name)
						}
					}
				}
				if len(e.records) != n {
					t.Fatalf("seed %d step %d: %d addresses held, want %d", seed, step, len(e.records), n)
				}
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
