package ipam

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// sub builds a subnet the way networks get one: the gateway is the first
// host address unless gw is given.
func sub(t testing.TB, prefix, rng, gw string) model.Subnet {
	t.Helper()
	s := model.Subnet{Prefix: netip.MustParsePrefix(prefix)}
	if rng != "" {
		s.IPRange = netip.MustParsePrefix(rng)
	}
	s.Gateway = s.Prefix.Masked().Addr().Next()
	if gw != "" {
		s.Gateway = netip.MustParseAddr(gw)
	}
	return s
}

// addN returns a+n (wrapping round the family's address space).
func addN(a netip.Addr, n uint64) netip.Addr {
	b := a.As16()
	lo, carry := bits.Add64(binary.BigEndian.Uint64(b[8:]), n, 0)
	hi, _ := bits.Add64(binary.BigEndian.Uint64(b[:8]), 0, carry)
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	r := netip.AddrFrom16(b)
	if a.Is4() {
		r = netip.AddrFrom4(r.As4()) // a v4 address stays in ::ffff:0:0/96
	}
	return r
}

const netName = "n"

// testNet is the network of the tests: its ID is netName too, so the
// store calls below name it by netName.
var testNet = &model.Network{ID: netName, Name: netName}

func alloc(t testing.TB, st store.Store, s model.Subnet, owner string) (netip.Addr, error) {
	t.Helper()
	var a netip.Addr
	err := st.Update(context.Background(), func(tx store.Tx) (err error) {
		a, err = Allocate(tx, testNet, s, owner)
		return err
	})
	return a, err
}

func TestAllocate(t *testing.T) {
	const top6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
	for _, tc := range []struct {
		name            string
		subnet, rng, gw string
		static          []string // reserved first, by "static"
		cursor          string   // set before allocating
		want            []string // successive allocations
		exhausted       string   // then this exhaustion message part ("" = no further check)
	}{
		{name: "skips network, gateway and broadcast of a /29", subnet: "10.90.1.0/29",
			want:      []string{"10.90.1.2", "10.90.1.3", "10.90.1.4", "10.90.1.5", "10.90.1.6"},
			exhausted: "network n has no free address left in 10.90.1.0/29 (5 in use): remove a sandbox from it or create a network with a larger subnet"},
		{name: "a /30 holds one sandbox", subnet: "10.90.2.0/30",
			want: []string{"10.90.2.2"}, exhausted: "no free address left in 10.90.2.0/30 (1 in use)"},
		{name: "a /31 holds none", subnet: "10.90.2.0/31", exhausted: "network n has no usable address in 10.90.2.0/31: create a network with a larger subnet"},
		{name: "a gateway other than .1", subnet: "10.90.1.0/29", gw: "10.90.1.4",
			want: []string{"10.90.1.1", "10.90.1.2", "10.90.1.3", "10.90.1.5", "10.90.1.6"}, exhausted: "(5 in use)"},
		{name: "ip-range at the start of the subnet (holds network address and gateway)", subnet: "10.90.1.0/24", rng: "10.90.1.0/30",
			want: []string{"10.90.1.2", "10.90.1.3"}, exhausted: "no free address left in 10.90.1.0/30 (2 in use)"},
		{name: "ip-range in the middle: its own first and last addresses are usable", subnet: "10.90.1.0/24", rng: "10.90.1.128/30",
			want: []string{"10.90.1.128", "10.90.1.129", "10.90.1.130", "10.90.1.131"}, exhausted: "(4 in use)"},
		{name: "ip-range at the end of the subnet (holds broadcast)", subnet: "10.90.1.0/24", rng: "10.90.1.252/30",
			want: []string{"10.90.1.252", "10.90.1.253", "10.90.1.254"}, exhausted: "(3 in use)"},
		{name: "ip-range of one address", subnet: "10.90.1.0/24", rng: "10.90.1.77/32",
			want: []string{"10.90.1.77"}, exhausted: "(1 in use)"},
		{name: "ip-range of only the network address", subnet: "10.90.1.0/24", rng: "10.90.1.0/32",
			exhausted: "no usable address in 10.90.1.0/32"},
		{name: "ip-range of only the gateway", subnet: "10.90.1.0/24", rng: "10.90.1.1/32",
			exhausted: "no usable address in 10.90.1.1/32"},
		{name: "steps over held addresses", subnet: "10.90.1.0/29", static: []string{"10.90.1.3", "10.90.1.4"},
			want: []string{"10.90.1.2", "10.90.1.5", "10.90.1.6"}, exhausted: "(5 in use)"},
		{name: "next-fit: starts after the cursor and wraps", subnet: "10.90.1.0/29", cursor: "10.90.1.4",
			want: []string{"10.90.1.5", "10.90.1.6", "10.90.1.2", "10.90.1.3", "10.90.1.4"}, exhausted: "(5 in use)"},
		{name: "cursor on the last address wraps to the first", subnet: "10.90.1.0/29", cursor: "10.90.1.6",
			want: []string{"10.90.1.2"}},
		{name: "cursor outside the range (range changed) starts at the first", subnet: "10.90.1.0/24", rng: "10.90.1.64/26", cursor: "10.90.1.200",
			want: []string{"10.90.1.64"}},
		{name: "the last /29 of the IPv4 space", subnet: "255.255.255.248/29", cursor: "255.255.255.253",
			want: []string{"255.255.255.254", "255.255.255.250", "255.255.255.251", "255.255.255.252", "255.255.255.253"}, exhausted: "(5 in use)"},

		{name: "v6 /125 skips the subnet-router anycast address and the gateway, and has no broadcast", subnet: "fd00:1::/125",
			want:      []string{"fd00:1::2", "fd00:1::3", "fd00:1::4", "fd00:1::5", "fd00:1::6", "fd00:1::7"},
			exhausted: "network n has no free address left in fd00:1::/125 (6 in use)"},
		{name: "v6 /126", subnet: "fd00:1::/126", want: []string{"fd00:1::2", "fd00:1::3"}, exhausted: "(2 in use)"},
		{name: "v6 /127 with its gateway holds none", subnet: "fd00:1::/127", exhausted: "no usable address in fd00:1::/127"},
		{name: "v6 /128 holds none", subnet: "fd00:1::5/128", exhausted: "no usable address in fd00:1::5/128"},
		{name: "v6 ip-range at the end of a /64: all of it is usable", subnet: "fd00:1::/64", rng: "fd00:1::ffff:ffff:ffff:fffc/126",
			want:      []string{"fd00:1::ffff:ffff:ffff:fffc", "fd00:1::ffff:ffff:ffff:fffd", "fd00:1::ffff:ffff:ffff:fffe", "fd00:1::ffff:ffff:ffff:ffff"},
			exhausted: "no free address left in fd00:1::ffff:ffff:ffff:fffc/126 (4 in use)"},
		{name: "v6 ip-range at the start of a /64", subnet: "fd00:1::/64", rng: "fd00:1::/126",
			want: []string{"fd00:1::2", "fd00:1::3"}, exhausted: "(2 in use)"},
		{name: "v6 gateway inside the ip-range", subnet: "fd00:1::/64", rng: "fd00:1::10/126", gw: "fd00:1::11", cursor: "fd00:1::10",
			want: []string{"fd00:1::12", "fd00:1::13", "fd00:1::10"}, exhausted: "(3 in use)"},
		{name: "v6 cursor on the last address of a /64 wraps to the first", subnet: "fd00:1::/64", cursor: "fd00:1::ffff:ffff:ffff:ffff",
			want: []string{"fd00:1::2", "fd00:1::3"}},
		{name: "the last /125 of the IPv6 space", subnet: top6 + "fff8/125", cursor: top6 + "fffe",
			want:      []string{top6 + "ffff", top6 + "fffa", top6 + "fffb", top6 + "fffc", top6 + "fffd", top6 + "fffe"},
			exhausted: "(6 in use)"},
		{name: "v6 steps over held addresses", subnet: "fd00:1::/120", static: []string{"fd00:1::2", "fd00:1::3", "fd00:1::5"},
			want: []string{"fd00:1::4", "fd00:1::6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := store.NewMemory()
			s := sub(t, tc.subnet, tc.rng, tc.gw)
			if err := st.Update(context.Background(), func(tx store.Tx) error {
				for _, ip := range tc.static {
					if err := ReserveStatic(tx, testNet, s, netip.MustParseAddr(ip), "static", nil); err != nil {
						return err
					}
				}
				if tc.cursor != "" {
					return tx.SetCursor(netName, netip.MustParseAddr(tc.cursor))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for i := range tc.want {
				a, err := alloc(t, st, s, fmt.Sprint("o", i))
				if err != nil {
					t.Fatalf("allocation %d: %v (got %v so far)", i, err, got)
				}
				got = append(got, a.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if tc.exhausted == "" {
				return
			}
			a, err := alloc(t, st, s, "one-too-many")
			if !errors.Is(err, model.ErrExhausted) || !strings.Contains(err.Error(), tc.exhausted) {
				t.Fatalf("full: got %v %v, want ErrExhausted with %q", a, err, tc.exhausted)
			}
		})
	}
}

// Subnets Allocate cannot work on are an ErrInvalid, not a panic.
func TestAllocateBadSubnet(t *testing.T) {
	st := store.NewMemory()
	for _, s := range []model.Subnet{
		{},
		{Prefix: netip.MustParsePrefix("10.90.1.0/24"), IPRange: netip.MustParsePrefix("fd00:1::/64")},
		{Prefix: netip.MustParsePrefix("fd00:1::/64"), IPRange: netip.MustParsePrefix("10.90.1.0/24")},
	} {
		if a, err := alloc(t, st, s, "o"); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("Allocate on %+v: %v %v, want ErrInvalid", s, a, err)
		}
	}
}

// Each family has its own cursor: allocations in the two subnets of a
// dual-stack network go on each from its own last address.
func TestAllocateCursorPerFamily(t *testing.T) {
	st := store.NewMemory()
	v4, v6 := sub(t, "10.90.1.0/24", "", ""), sub(t, "fd00:1::/64", "", "")
	var got []string
	for i := range 3 {
		for _, s := range []model.Subnet{v4, v6} {
			a, err := alloc(t, st, s, fmt.Sprint("ep", i))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, a.String())
		}
	}
	if want := []string{"10.90.1.2", "fd00:1::2", "10.90.1.3", "fd00:1::3", "10.90.1.4", "fd00:1::4"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	_ = st.View(context.Background(), func(tx store.Tx) error {
		c4, _ := tx.Cursor(netName, false)
		c6, _ := tx.Cursor(netName, true)
		if c4.String() != "10.90.1.4" || c6.String() != "fd00:1::4" {
			t.Errorf("cursors %v %v", c4, c6)
		}
		return nil
	})
}

// A released address is handed out again only once the cursor comes
// round to it, and an exhausted network gets free again after a release.
func TestAllocateAfterRelease(t *testing.T) {
	for _, tc := range []struct{ subnet, released, next, refilled string }{
		{"10.90.1.0/28", "10.90.1.3", "10.90.1.5", "10.90.1.9"},
		{"fd00:1::/124", "fd00:1::3", "fd00:1::5", "fd00:1::9"},
	} {
		t.Run(tc.subnet, func(t *testing.T) {
			st := store.NewMemory()
			s := sub(t, tc.subnet, "", "")
			for i := range 3 {
				if _, err := alloc(t, st, s, fmt.Sprint("o", i)); err != nil { // ::2 ::3 ::4
					t.Fatal(err)
				}
			}
			_ = st.Update(context.Background(), func(tx store.Tx) error { return tx.Release(netName, netip.MustParseAddr(tc.released)) })
			if a, _ := alloc(t, st, s, "x"); a.String() != tc.next {
				t.Fatalf("after release: %v, want %s (next-fit, not first-fit)", a, tc.next)
			}
			for range 20 {
				if _, err := alloc(t, st, s, "fill"); err != nil {
					break
				}
			}
			if _, err := alloc(t, st, s, "fill"); !errors.Is(err, model.ErrExhausted) {
				t.Fatalf("not full after 20 more: %v", err)
			}
			_ = st.Update(context.Background(), func(tx store.Tx) error { return tx.Release(netName, netip.MustParseAddr(tc.refilled)) })
			if a, err := alloc(t, st, s, "y"); err != nil || a.String() != tc.refilled {
				t.Fatalf("full network after a release: %v %v", a, err)
			}
		})
	}
}

// A failed transaction leaves neither the reservation nor the cursor move.
func TestAllocateRolledBack(t *testing.T) {
	for _, tc := range []struct{ subnet, first string }{{"10.90.1.0/24", "10.90.1.2"}, {"fd00:1::/64", "fd00:1::2"}} {
		st := store.NewMemory()
		s := sub(t, tc.subnet, "", "")
		boom := errors.New("boom")
		if err := st.Update(context.Background(), func(tx store.Tx) error {
			if _, err := Allocate(tx, testNet, s, "x"); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if a, _ := alloc(t, st, s, "y"); a.String() != tc.first {
			t.Fatalf("after a rolled-back allocation: %v, want %s", a, tc.first)
		}
	}
}

func TestReserveStatic(t *testing.T) {
	st := store.NewMemory()
	s4 := sub(t, "10.90.1.0/24", "10.90.1.0/25", "")
	s6 := sub(t, "fd00:1::/64", "fd00:1::/120", "")
	_ = st.Update(context.Background(), func(tx store.Tx) error {
		return errors.Join(
			ReserveStatic(tx, testNet, s4, netip.MustParseAddr("10.90.1.10"), "ep-a", nil),
			ReserveStatic(tx, testNet, s6, netip.MustParseAddr("fd00:1::10"), "ep-a", nil))
	})
	sandboxOf := func(owner string) string { return map[string]string{"ep-a": "sandbox web"}[owner] }
	for _, tc := range []struct {
		s         model.Subnet
		ip, owner string
		name      func(string) string
		kind      error  // nil: success
		msg       string // part of the error
	}{
		{s: s4, ip: "10.90.1.10", owner: "ep-a"}, // the same owner again
		{s: s4, ip: "10.90.1.11", owner: "ep-b"},
		{s: s4, ip: "10.90.1.10", owner: "ep-b", name: sandboxOf, kind: model.ErrConflict,
			msg: "address 10.90.1.10 on network n is already in use by sandbox web: pick another address, or leave --ip out to get a free one"},
		{s: s4, ip: "10.90.1.10", owner: "ep-b", kind: model.ErrConflict, msg: "in use by ep-a"}, // no namer: the ID
		{s: s4, ip: "10.90.1.1", owner: "ep-b", kind: model.ErrInvalid, msg: "address 10.90.1.1 is the gateway of network n: pick another address"},
		{s: s4, ip: "10.90.1.0", owner: "ep-b", kind: model.ErrInvalid, msg: "address 10.90.1.0 is the network address of 10.90.1.0/24: give a host address"},
		// Outside the ip-range, inside the subnet: --ip-range limits only
		// automatic allocation (as in Docker).
		{s: s4, ip: "10.90.1.200", owner: "ep-b"},
		{s: s4, ip: "10.90.1.200", owner: "ep-c", kind: model.ErrConflict, msg: "already in use by ep-b"},
		{s: s4, ip: "10.90.1.255", owner: "ep-b", kind: model.ErrInvalid, msg: "address 10.90.1.255 is the broadcast address of 10.90.1.0/24"},
		{s: s4, ip: "10.90.2.1", owner: "ep-b", kind: model.ErrInvalid, msg: "address 10.90.2.1 is outside subnet 10.90.1.0/24: give an address inside the subnet"},
		{s: s4, ip: "fd00:1::11", owner: "ep-b", kind: model.ErrInvalid, msg: "outside subnet"},
		{s: s4, ip: "::ffff:10.90.1.12", owner: "ep-b", kind: model.ErrInvalid, msg: "outside subnet"},

		{s: s6, ip: "fd00:1::10", owner: "ep-a"},
		{s: s6, ip: "fd00:1::10", owner: "ep-b", name: sandboxOf, kind: model.ErrConflict,
			msg: "address fd00:1::10 on network n is already in use by sandbox web: pick another address, or leave --ip6 out to get a free one"},
		{s: s6, ip: "fd00:1::", owner: "ep-b", kind: model.ErrInvalid, msg: "address fd00:1:: is the subnet-router anycast address of fd00:1::/64: give a host address"},
		{s: s6, ip: "fd00:1::1", owner: "ep-b", kind: model.ErrInvalid, msg: "is the gateway of network n"},
		{s: s6, ip: "fd00:1::ffff:ffff:ffff:ffff", owner: "ep-b"}, // no broadcast in IPv6
		{s: s6, ip: "fd00:1::1:0:0:5", owner: "ep-b"},             // outside the ip-range
		{s: s6, ip: "fd00:2::5", owner: "ep-b", kind: model.ErrInvalid, msg: "address fd00:2::5 is outside subnet fd00:1::/64"},
		{s: s6, ip: "10.90.1.12", owner: "ep-b", kind: model.ErrInvalid, msg: "outside subnet"},
		{s: s6, ip: "fd00:1::12%eth0", owner: "ep-b", kind: model.ErrInvalid, msg: "outside subnet"},
	} {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			return ReserveStatic(tx, testNet, tc.s, netip.MustParseAddr(tc.ip), tc.owner, tc.name)
		})
		if tc.kind == nil && err != nil || tc.kind != nil && (!errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s for %s: %v, want %v %q", tc.ip, tc.owner, err, tc.kind, tc.msg)
		}
	}
	// The static address outside the range changes nothing about what
	// Allocate hands out: only the range.
	_ = st.Update(context.Background(), func(tx store.Tx) error {
		return errors.Join(tx.SetCursor(netName, netip.MustParseAddr("10.90.1.126")), tx.SetCursor(netName, netip.MustParseAddr("fd00:1::fe")))
	})
	for _, tc := range []struct {
		s    model.Subnet
		want []string
	}{{s4, []string{"10.90.1.127", "10.90.1.2"}}, {s6, []string{"fd00:1::ff", "fd00:1::2"}}} {
		for _, want := range tc.want {
			if a, err := alloc(t, st, tc.s, "r"); err != nil || a.String() != want {
				t.Fatalf("allocated %s (%v), want %s: inside the ip-range %s only", a, err, want, tc.s.IPRange)
			}
		}
	}
	// Allocation steps over static addresses.
	_ = st.Update(context.Background(), func(tx store.Tx) error {
		return errors.Join(tx.SetCursor(netName, netip.MustParseAddr("10.90.1.9")), tx.SetCursor(netName, netip.MustParseAddr("fd00:1::f")),
			ReserveStatic(tx, testNet, s6, netip.MustParseAddr("fd00:1::11"), "s", nil))
	})
	if a, _ := alloc(t, st, s4, "c"); a.String() != "10.90.1.12" {
		t.Fatalf("allocated %s, want 10.90.1.12 past the static .10 and .11", a)
	}
	if a, _ := alloc(t, st, s6, "c"); a.String() != "fd00:1::12" {
		t.Fatalf("allocated %s, want fd00:1::12 past the static ::10 and ::11", a)
	}
}

// countingTx counts point lookups and full reads.
type countingTx struct {
	store.Tx
	lookups, reads int
}

func (c *countingTx) Reservation(network string, ip netip.Addr) (string, bool, error) {
	c.lookups++
	return c.Tx.Reservation(network, ip)
}

func (c *countingTx) Reservations(network string) (map[netip.Addr]string, error) {
	c.reads++
	return c.Tx.Reservations(network)
}

// The 1000th allocation looks at one address, like the 1st: next-fit from
// the cursor, not a scan from the start. (Counted, not timed; the timing
// is BenchmarkAllocate.)
func TestAllocateIsNextFit(t *testing.T) {
	for _, subnet := range []string{"10.90.0.0/16", "fd00:1::/64"} {
		st := store.NewMemory()
		s := sub(t, subnet, "", "")
		_ = st.Update(context.Background(), func(tx store.Tx) error {
			c := &countingTx{Tx: tx}
			for i := 1; i <= 1000; i++ {
				c.lookups = 0
				if _, err := Allocate(c, testNet, s, fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
				if c.lookups != 1 || c.reads != 0 {
					t.Fatalf("%s: allocation %d looked at %d addresses and read all %d times", subnet, i, c.lookups, c.reads)
				}
			}
			return nil
		})
	}
}

// In a range larger than scanLookups, a run of held addresses after the
// cursor costs scanLookups lookups and one read of the reservations,
// however long the run; a range that is full is an ErrExhausted, and one
// hole in it is found.
func TestAllocateCrowded(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		usable int
	}{
		{"10.90.0.0/20", 4096 - 3}, // network, broadcast and gateway
		{"fd00:1::/116", 4096 - 2}, // subnet-router anycast and gateway
	} {
		t.Run(tc.subnet, func(t *testing.T) {
			st := store.NewMemory()
			s := sub(t, tc.subnet, "", "")
			first := s.Gateway.Next()
			// A run of 1000 static addresses after the cursor.
			if err := st.Update(context.Background(), func(tx store.Tx) error {
				for i := range uint64(1000) {
					if err := ReserveStatic(tx, testNet, s, addN(first, i), "static", nil); err != nil {
						return err
					}
				}
				c := &countingTx{Tx: tx}
				a, err := Allocate(c, testNet, s, "after-run")
				if err != nil || a != addN(first, 1000) || c.lookups > scanLookups || c.reads != 1 {
					t.Errorf("after a run of 1000: %v %v, %d lookups, %d reads", a, err, c.lookups, c.reads)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			// Fill it, then one too many.
			if err := st.Update(context.Background(), func(tx store.Tx) error {
				for i := 1001; i < tc.usable; i++ {
					if _, err := Allocate(tx, testNet, s, "fill"); err != nil {
						return fmt.Errorf("fill %d: %w", i, err)
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("no free address left in %s (%d in use)", tc.subnet, tc.usable)
			if a, err := alloc(t, st, s, "too-many"); !errors.Is(err, model.ErrExhausted) || !strings.Contains(err.Error(), want) {
				t.Fatalf("full: %v %v, want ErrExhausted %q", a, err, want)
			}
			// One hole, far from the cursor: found.
			hole := addN(first, 517)
			_ = st.Update(context.Background(), func(tx store.Tx) error { return tx.Release(netName, hole) })
			if a, err := alloc(t, st, s, "hole"); err != nil || a != hole {
				t.Fatalf("with one hole at %s: %v %v", hole, a, err)
			}
		})
	}
}

// lyingTx says every address is held but lists none: Allocate must still
// end on a /64, after scanLookups lookups.
type lyingTx struct{ countingTx }

func (l *lyingTx) Reservation(network string, ip netip.Addr) (string, bool, error) {
	l.lookups++
	return "someone", true, nil
}

func (l *lyingTx) Reservations(string) (map[netip.Addr]string, error) {
	l.reads++
	return map[netip.Addr]string{}, nil
}

func TestAllocateEndsOnHugeRanges(t *testing.T) {
	st := store.NewMemory()
	s := sub(t, "fd00:1::/64", "", "")
	_ = st.Update(context.Background(), func(tx store.Tx) error {
		l := &lyingTx{countingTx{Tx: tx}}
		a, err := Allocate(l, testNet, s, "o")
		if err != nil || l.lookups > scanLookups || l.reads != 1 {
			t.Errorf("got %v %v after %d lookups, %d reads", a, err, l.lookups, l.reads)
		}
		return nil
	})
}

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		lo, hi string
		want   uint64
	}{
		{"10.0.0.0", "10.0.0.0", 1},
		{"10.0.0.0", "10.0.255.255", 1 << 16},
		{"0.0.0.0", "255.255.255.255", 1 << 32},
		{"fd00::", "fd00::ffff:ffff:ffff:fffe", 1<<64 - 1},
		{"fd00::", "fd00::ffff:ffff:ffff:ffff", 1<<64 - 1}, // 2^64 saturates
		{"fd00::", "fd00::1:0:0:0:0", 1<<64 - 1},
		{"fd00::ffff:ffff:ffff:ffff", "fd00::1:0:0:0:0", 2},
	} {
		if got := count(netip.MustParseAddr(tc.lo), netip.MustParseAddr(tc.hi)); got != tc.want {
			t.Errorf("count(%s, %s) = %d, want %d", tc.lo, tc.hi, got, tc.want)
		}
	}
}

// Dual-stack configurations the random runs use: small ranges, so that
// they fill up, wrap and run into the gateway, at the start and the end
// of their subnet and of the address space.
var (
	randomNets4 = []struct{ subnet, rng, gw string }{
		{"10.90.1.0/30", "", ""},
		{"10.90.1.0/29", "", ""},
		{"10.90.1.0/28", "", "10.90.1.9"},
		{"10.90.1.0/27", "", ""},
		{"10.90.1.0/24", "10.90.1.0/29", ""},
		{"10.90.1.0/24", "10.90.1.248/29", ""},
		{"10.90.1.0/24", "10.90.1.16/28", "10.90.1.20"},
		{"255.255.255.248/29", "", ""},
	}
	randomNets6 = []struct{ subnet, rng, gw string }{
		{"fd00:1::/126", "", ""},
		{"fd00:1::/125", "", ""},
		{"fd00:1::/124", "", "fd00:1::9"},
		{"fd00:1::/64", "fd00:1::/125", ""},
		{"fd00:1::/64", "fd00:1::ffff:ffff:ffff:fff8/125", ""},
		{"fd00:1::/64", "fd00:1::10/124", "fd00:1::14"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff8/125", "", ""},
	}
)

// randomSubnets is the dual-stack network of a run.
func randomSubnets(t testing.TB, sel uint8) []model.Subnet {
	c4 := randomNets4[int(sel)%len(randomNets4)]
	c6 := randomNets6[int(sel)/len(randomNets4)%len(randomNets6)]
	return []model.Subnet{sub(t, c4.subnet, c4.rng, c4.gw), sub(t, c6.subnet, c6.rng, c6.gw)}
}

// runOps interprets ops as a sequence of allocations, static reservations,
// releases and rolled-back allocations on a dual-stack network, and
// checks after every step, against a model of what must be held:
//   - no address is held by two owners, and the store holds exactly the model;
//   - every allocated address is inside its subnet's range and is not the
//     subnet's first address, IPv4's broadcast address or the gateway;
//   - ErrExhausted comes only when every usable address of that family
//     is held;
//   - a static reservation of a free, valid address succeeds: any host
//     address of the subnet but the gateway, inside the range or not;
//   - each family's cursor is a usable address of that family.
//
// Each op is one byte (the kind; its top bit picks the family) and, for
// static and release, a second byte (which address). Deterministic: a
// failing input replays exactly.
func runOps(t *testing.T, subnets []model.Subnet, ops []byte) {
	usable := make([]map[netip.Addr]bool, len(subnets)) // what Allocate may hand out
	for i, s := range subnets {
		usable[i] = map[netip.Addr]bool{}
		if lo, hi, ok, _ := bounds(netName, s); ok {
			for a := lo; ; a = a.Next() {
				if a != s.Gateway {
					usable[i][a] = true
				}
				if a == hi {
					break
				}
			}
		}
	}
	// What --ip may ask for: any address of the subnet but its first, its
	// broadcast (v4) and the gateway.
	staticOK := func(i int, a netip.Addr) bool {
		p := subnets[i].Prefix
		return p.Contains(a) && a != p.Addr() && a != subnets[i].Gateway && (a.Is6() || a != model.Broadcast(p))
	}
	heldUsable := func(held map[netip.Addr]string, i int) (c int) {
		for a := range held {
			if usable[i][a] {
				c++
			}
		}
		return c
	}
	st := store.NewMemory()
	held := map[netip.Addr]string{}
	fail := func(step int, format string, a ...any) {
		t.Helper()
		t.Fatalf("subnets %+v, step %d: %s", subnets, step, fmt.Sprintf(format, a...))
	}
	for step := 0; len(ops) > 0; step++ {
		op := ops[0]
		ops = ops[1:]
		takeArg := func() (arg byte) {
			if len(ops) > 0 {
				arg, ops = ops[0], ops[1:]
			}
			return arg
		}
		i := int(op>>7) % len(subnets)
		s := subnets[i]
		owner := fmt.Sprint("o", step)
		switch op & 0x7f % 5 {
		case 0, 1: // allocate
			a, err := alloc(t, st, s, owner)
			if err != nil {
				if !errors.Is(err, model.ErrExhausted) {
					fail(step, "allocate: %v", err)
				}
				if heldUsable(held, i) != len(usable[i]) {
					fail(step, "exhausted with %d of %d usable addresses held: %v", heldUsable(held, i), len(usable[i]), err)
				}
				break
			}
			if o, dup := held[a]; dup {
				fail(step, "%s handed to %s while %s holds it", a, owner, o)
			}
			if !usable[i][a] || !s.AllocRange().Contains(a) || a == s.Prefix.Addr() || a.Is4() && a == model.Broadcast(s.Prefix) || a == s.Gateway {
				fail(step, "handed out %s, not a usable address of %+v", a, s)
			}
			held[a] = owner
		case 2: // static reservation of an address in the subnet or the range, valid or not
			arg := takeArg()
			p := s.Prefix
			if arg&0x80 != 0 {
				p = s.AllocRange()
			}
			a := addN(p.Addr(), uint64(arg&0x7f)%count(p.Addr(), model.Broadcast(p)))
			err := st.Update(context.Background(), func(tx store.Tx) error { return ReserveStatic(tx, testNet, s, a, owner, nil) })
			_, dup := held[a]
			switch {
			case err == nil && (dup || !staticOK(i, a)):
				fail(step, "static %s reserved (held %v, valid %v)", a, dup, staticOK(i, a))
			case err == nil:
				held[a] = owner
			case dup && !errors.Is(err, model.ErrConflict), !staticOK(i, a) && !errors.Is(err, model.ErrInvalid):
				fail(step, "static %s: wrong error %v", a, err)
			case !dup && staticOK(i, a):
				fail(step, "static %s free but refused: %v", a, err)
			}
		case 3: // release one held address, of either family
			arg := takeArg()
			if len(held) == 0 {
				break
			}
			keys := slices.SortedFunc(func(yield func(netip.Addr) bool) {
				for a := range held {
					if !yield(a) {
						return
					}
				}
			}, netip.Addr.Compare)
			a := keys[int(arg)%len(keys)]
			if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.Release(netName, a) }); err != nil {
				fail(step, "release: %v", err)
			}
			delete(held, a)
		case 4: // allocate in a transaction that then fails: nothing changes
			_ = st.Update(context.Background(), func(tx store.Tx) error {
				_, err := Allocate(tx, testNet, s, owner)
				return errors.Join(err, errors.New("rolled back"))
			})
		}
		if err := st.View(context.Background(), func(tx store.Tx) error {
			res, err := tx.Reservations(netName)
			if err != nil {
				return err
			}
			if len(res) != len(held) {
				fail(step, "store holds %d addresses, model %d", len(res), len(held))
			}
			for a, o := range held {
				if res[a] != o {
					fail(step, "%s held by %q in the store, %q in the model", a, res[a], o)
				}
			}
			for i, s := range subnets {
				if c, _ := tx.Cursor(netName, s.Prefix.Addr().Is6()); c.IsValid() && !usable[i][c] {
					fail(step, "cursor %s is not a usable address of %s", c, s.Prefix)
				}
			}
			return nil
		}); err != nil {
			fail(step, "%v", err)
		}
	}
}

// Property test: many random sequences, on every pairing of the v4 and
// v6 configurations. A failure names its seed (the subtest); rerun it
// alone with -run 'TestRandomAllocateRelease/seed17$'.
func TestRandomAllocateRelease(t *testing.T) {
	runs := uint64(4 * len(randomNets4) * len(randomNets6))
	for seed := range runs {
		r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
		ops := make([]byte, 400)
		for i := range ops {
			ops[i] = byte(r.Uint32())
		}
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runOps(t, randomSubnets(t, uint8(seed)), ops) })
	}
}

// FuzzAllocateRelease runs the same checks on inputs the fuzzer makes; the
// seed corpus runs as a normal test with `go test`. To fuzz:
//
//	go test -run '^$' -fuzz FuzzAllocateRelease ./internal/ipam/
func FuzzAllocateRelease(f *testing.F) {
	fill := make([]byte, 64) // allocate v4 until full, then once more
	fill6 := slices.Repeat([]byte{0x80}, 64)
	wrap := []byte{0, 0x80, 0, 0x80, 0, 3, 0, 0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80}
	static := []byte{2, 0, 2, 1, 2, 2, 2, 3, 2, 255, 0x82, 0, 0x82, 1, 0x82, 0x81, 0x82, 0xff, 0, 0x80, 0, 3, 1, 0, 0}
	mixed := []byte{0, 4, 0x80, 2, 5, 3, 0, 1, 0x84, 4, 0, 0x82, 9, 0, 3, 2, 1, 0x81, 1}
	for sel := range uint8(len(randomNets4) * len(randomNets6)) {
		for _, ops := range [][]byte{fill, fill6, wrap, static, mixed} {
			f.Add(sel, ops)
		}
	}
	f.Fuzz(func(t *testing.T, netSel uint8, ops []byte) {
		if len(ops) > 4096 {
			ops = ops[:4096]
		}
		runOps(t, randomSubnets(t, netSel), ops)
	})
}

// benchName names a subnet in a benchmark, without the slash that would
// split the name: v4-16, v6-64.
func benchName(subnet string) string {
	p := netip.MustParsePrefix(subnet)
	if p.Addr().Is4() {
		return fmt.Sprintf("v4-%d", p.Bits())
	}
	return fmt.Sprintf("v6-%d", p.Bits())
}

func openStore(b *testing.B, kind string) store.Store {
	if kind == "memory" {
		return store.NewMemory()
	}
	s, err := store.Open(filepath.Join(b.TempDir(), "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkAllocate shows that an allocation costs the same whether the
// network already holds 0, 500 or 5000 addresses, in a v4 /8 or a v6
// /64. Each op is one allocation in its own committed Update (for bolt,
// written to the page cache: runtime state is not fsynced, see
// store.Open).
//
//	go test -run '^$' -bench 'Allocate$' ./internal/ipam/
func BenchmarkAllocate(b *testing.B) {
	for _, kind := range []string{"memory", "bolt"} {
		for _, subnet := range []string{"10.0.0.0/8", "fd00:1::/64"} {
			for _, already := range []int{0, 499, 4999} {
				b.Run(fmt.Sprintf("%s/%s/held=%d", kind, benchName(subnet), already), func(b *testing.B) {
					st := openStore(b, kind)
					s := sub(b, subnet, "", "")
					if err := st.Update(context.Background(), func(tx store.Tx) error {
						for i := range already {
							if _, err := Allocate(tx, testNet, s, fmt.Sprint("pre", i)); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					for i := 0; b.Loop(); i++ {
						if _, err := alloc(b, st, s, fmt.Sprint("ep", i)); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkCreateAllocate creates a network, allocates n addresses in it
// (in Updates of 1000) and deletes it, per op: with a v6 /64 it costs what it costs
// with a v4 /16, in time and in memory, and 10,000 addresses cost ten
// times what 1000 do — nothing is sized by the subnet, and no allocation
// gets dearer as the network fills. The memory store runs each Update
// twice (see store.NewMemory); bolt writes the networks' snapshot with an
// fsync when the network is created and when it is deleted.
//
//	go test -run '^$' -bench CreateAllocate -benchmem ./internal/ipam/
func BenchmarkCreateAllocate(b *testing.B) {
	const batch = 1000
	for _, kind := range []string{"memory", "bolt"} {
		for _, subnet := range []string{"10.0.0.0/16", "fd00:1::/64"} {
			for _, n := range []int{1000, 10000} {
				b.Run(fmt.Sprintf("%s/%s/n=%d", kind, benchName(subnet), n), func(b *testing.B) {
					st := openStore(b, kind)
					s := sub(b, subnet, "", "")
					for i := 0; b.Loop(); i++ {
						name := fmt.Sprint("net", i)
						nw := &model.Network{ID: name, Name: name}
						if err := st.Update(context.Background(), func(tx store.Tx) error {
							return tx.PutNetwork(nw)
						}); err != nil {
							b.Fatal(err)
						}
						for j := 0; j < n; j += batch {
							if err := st.Update(context.Background(), func(tx store.Tx) error {
								for k := range batch {
									if _, err := Allocate(tx, nw, s, fmt.Sprint(j+k)); err != nil {
										return err
									}
								}
								return nil
							}); err != nil {
								b.Fatal(err)
							}
						}
						if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteNetwork(name) }); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/addr")
				})
			}
		}
	}
}
