package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

func network(t testing.TB, subnet, rng, gw string) *model.Network {
	t.Helper()
	sub := model.Subnet{Prefix: netip.MustParsePrefix(subnet)}
	if rng != "" {
		sub.IPRange = netip.MustParsePrefix(rng)
	}
	if gw != "" {
		sub.Gateway = netip.MustParseAddr(gw)
	}
	n, err := model.BuildNetwork(model.NetworkSpec{Name: "n", Subnets: []model.Subnet{sub}}, []netip.Prefix{sub.Prefix}, "id")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func alloc(t testing.TB, st store.Store, n *model.Network, owner string) (netip.Addr, error) {
	t.Helper()
	var a netip.Addr
	err := st.Update(func(tx store.Tx) (err error) {
		a, err = Allocate(tx, n.Name, n.Subnets[0], owner)
		return err
	})
	return a, err
}

func TestAllocate(t *testing.T) {
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
			exhausted: "network n has no free address left in 10.90.1.0/29 (5 in use)"},
		{name: "a /30 holds one sandbox", subnet: "10.90.2.0/30",
			want: []string{"10.90.2.2"}, exhausted: "no free address left in 10.90.2.0/30 (1 in use)"},
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
		{name: "steps over held addresses", subnet: "10.90.1.0/29", static: []string{"10.90.1.3", "10.90.1.4"},
			want: []string{"10.90.1.2", "10.90.1.5", "10.90.1.6"}, exhausted: "(5 in use)"},
		{name: "next-fit: starts after the cursor and wraps", subnet: "10.90.1.0/29", cursor: "10.90.1.4",
			want: []string{"10.90.1.5", "10.90.1.6", "10.90.1.2", "10.90.1.3", "10.90.1.4"}, exhausted: "(5 in use)"},
		{name: "cursor on the last address wraps to the first", subnet: "10.90.1.0/29", cursor: "10.90.1.6",
			want: []string{"10.90.1.2"}},
		{name: "cursor outside the range (range changed) starts at the first", subnet: "10.90.1.0/24", rng: "10.90.1.64/26", cursor: "10.90.1.200",
			want: []string{"10.90.1.64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := store.NewMemory()
			n := network(t, tc.subnet, tc.rng, tc.gw)
			if err := st.Update(func(tx store.Tx) error {
				for _, ip := range tc.static {
					if err := ReserveStatic(tx, n, netip.MustParseAddr(ip), "static", nil); err != nil {
						return err
					}
				}
				if tc.cursor != "" {
					return tx.SetCursor(n.Name, netip.MustParseAddr(tc.cursor))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for i := range tc.want {
				a, err := alloc(t, st, n, fmt.Sprint("o", i))
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
			a, err := alloc(t, st, n, "one-too-many")
			if !errors.Is(err, model.ErrExhausted) || !strings.Contains(err.Error(), tc.exhausted) {
				t.Fatalf("full: got %v %v, want ErrExhausted with %q", a, err, tc.exhausted)
			}
		})
	}
}

// A released address is handed out again only once the cursor comes
// round to it, and an exhausted network gets free again after a release.
func TestAllocateAfterRelease(t *testing.T) {
	st := store.NewMemory()
	n := network(t, "10.90.1.0/28", "", "")
	for i := range 3 {
		if _, err := alloc(t, st, n, fmt.Sprint("o", i)); err != nil { // .2 .3 .4
			t.Fatal(err)
		}
	}
	_ = st.Update(func(tx store.Tx) error { return tx.Release(n.Name, netip.MustParseAddr("10.90.1.3")) })
	if a, _ := alloc(t, st, n, "x"); a.String() != "10.90.1.5" {
		t.Fatalf("after release: %v, want 10.90.1.5 (next-fit, not first-fit)", a)
	}
	for {
		if _, err := alloc(t, st, n, "fill"); err != nil {
			break
		}
	}
	_ = st.Update(func(tx store.Tx) error { return tx.Release(n.Name, netip.MustParseAddr("10.90.1.9")) })
	if a, err := alloc(t, st, n, "y"); err != nil || a.String() != "10.90.1.9" {
		t.Fatalf("full network after a release: %v %v", a, err)
	}
}

// A failed transaction leaves neither the reservation nor the cursor move.
func TestAllocateRolledBack(t *testing.T) {
	st := store.NewMemory()
	n := network(t, "10.90.1.0/24", "", "")
	boom := errors.New("boom")
	if err := st.Update(func(tx store.Tx) error {
		if _, err := Allocate(tx, n.Name, n.Subnets[0], "x"); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if a, _ := alloc(t, st, n, "y"); a.String() != "10.90.1.2" {
		t.Fatalf("after a rolled-back allocation: %v", a)
	}
}

func TestReserveStatic(t *testing.T) {
	st := store.NewMemory()
	n := network(t, "10.90.1.0/24", "10.90.1.0/25", "")
	_ = st.Update(func(tx store.Tx) error { return ReserveStatic(tx, n, netip.MustParseAddr("10.90.1.10"), "ep-a", nil) })
	sandboxOf := func(owner string) string { return map[string]string{"ep-a": "sandbox web"}[owner] }
	for _, tc := range []struct {
		ip, owner string
		name      func(string) string
		kind      error  // nil: success
		msg       string // part of the error
	}{
		{ip: "10.90.1.10", owner: "ep-a"}, // the same owner again
		{ip: "10.90.1.11", owner: "ep-b"},
		{ip: "10.90.1.10", owner: "ep-b", name: sandboxOf, kind: model.ErrConflict,
			msg: "address 10.90.1.10 on network n is already in use by sandbox web: "},
		{ip: "10.90.1.10", owner: "ep-b", kind: model.ErrConflict, msg: "in use by ep-a"}, // no namer: the ID
		{ip: "10.90.1.1", owner: "ep-b", kind: model.ErrInvalid, msg: "gateway"},
		{ip: "10.90.1.0", owner: "ep-b", kind: model.ErrInvalid, msg: "network address"},
		// Outside the ip-range, inside the subnet: --ip-range limits only
		// automatic allocation (as in Docker).
		{ip: "10.90.1.200", owner: "ep-b"},
		{ip: "10.90.1.200", owner: "ep-c", kind: model.ErrConflict, msg: "already in use by ep-b"},
		{ip: "10.90.1.255", owner: "ep-b", kind: model.ErrInvalid, msg: "broadcast"},
		{ip: "10.90.2.1", owner: "ep-b", kind: model.ErrInvalid, msg: "outside subnet"},
		{ip: "fd00::1", owner: "ep-b", kind: model.ErrInvalid, msg: "no IPv6 subnet"},
	} {
		err := st.Update(func(tx store.Tx) error {
			return ReserveStatic(tx, n, netip.MustParseAddr(tc.ip), tc.owner, tc.name)
		})
		if tc.kind == nil && err != nil || tc.kind != nil && (!errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s for %s: %v, want %v %q", tc.ip, tc.owner, err, tc.kind, tc.msg)
		}
	}
	// The static address outside the range changes nothing about what
	// Allocate hands out: only the range.
	_ = st.Update(func(tx store.Tx) error { return tx.SetCursor("n", netip.MustParseAddr("10.90.1.126")) })
	for _, want := range []string{"10.90.1.127", "10.90.1.2"} {
		if a, err := alloc(t, st, n, "r"); err != nil || a.String() != want {
			t.Fatalf("allocated %s (%v), want %s: inside the ip-range 10.90.1.0/25 only", a, err, want)
		}
	}
	_ = st.Update(func(tx store.Tx) error {
		_ = tx.Release("n", netip.MustParseAddr("10.90.1.127"))
		return tx.Release("n", netip.MustParseAddr("10.90.1.2"))
	})
	full := network(t, "10.90.3.0/24", "", "")
	if err := st.Update(func(tx store.Tx) error {
		return ReserveStatic(tx, full, netip.MustParseAddr("10.90.3.255"), "x", nil)
	}); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "broadcast") {
		t.Errorf("broadcast: %v", err)
	}
	// Allocation steps over static addresses.
	_ = st.Update(func(tx store.Tx) error { return tx.SetCursor("n", netip.MustParseAddr("10.90.1.9")) })
	if a, _ := alloc(t, st, n, "c"); a.String() != "10.90.1.12" {
		t.Fatalf("allocated %s, want 10.90.1.12 past the static .10 and .11", a)
	}
}

func TestPickSubnet(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	pool := pfx("10.89.0.0/16", "10.90.0.0/16")
	for _, tc := range []struct {
		name  string
		pool  []netip.Prefix
		bits  int
		taken []netip.Prefix
		want  string // "" = ErrNoSubnet
	}{
		{"first of an empty pool", pool, 24, nil, "10.89.0.0/24"},
		{"skips taken, partial overlaps and host routes", pool, 24,
			pfx("10.89.0.0/24", "10.89.1.128/25", "10.89.2.7/32"), "10.89.3.0/24"},
		{"jumps a whole pool entry", pool, 24, pfx("10.89.0.0/16"), "10.90.0.0/24"},
		{"jumps a larger taken prefix", pool, 24, pfx("10.89.0.0/20"), "10.89.16.0/24"},
		{"a /16 for the default network", pool, 16, pfx("10.89.5.0/24"), "10.90.0.0/16"},
		{"pool entries smaller than bits are skipped", pfx("10.89.0.0/25", "10.90.0.0/16"), 24, nil, "10.90.0.0/24"},
		{"full", pool[:1], 24, pfx("10.0.0.0/8"), ""},
		{"the default pool leaves out the Kubernetes service range", DefaultPool, 24, pfx("10.89.0.0/16", "10.90.0.0/15", "10.92.0.0/14"), "10.112.0.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PickSubnet(tc.pool, tc.bits, tc.taken)
			if tc.want == "" {
				if !errors.Is(err, ErrNoSubnet) || !errors.Is(err, model.ErrExhausted) {
					t.Fatalf("got %v %v, want ErrNoSubnet", p, err)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("got %v %v, want %s", p, err, tc.want)
			}
		})
	}
	for _, p := range append(DefaultPool, DefaultSubnet) {
		if !netip.MustParsePrefix("10.0.0.0/8").Contains(p.Addr()) || p.Bits() > DefaultPoolBits {
			t.Errorf("default plan: %v", p)
		}
		if p != DefaultSubnet && p.Overlaps(DefaultSubnet) || p.Overlaps(netip.MustParsePrefix("10.96.0.0/12")) {
			t.Errorf("pool entry %v overlaps the default subnet or 10.96.0.0/12", p)
		}
	}
}

// countingTx counts point lookups.
type countingTx struct {
	store.Tx
	lookups int
}

func (c *countingTx) Reservation(network string, ip netip.Addr) (string, bool, error) {
	c.lookups++
	return c.Tx.Reservation(network, ip)
}

// The 500th allocation looks at one address, like the 1st: next-fit from
// the cursor, not a scan from the start. (Counted, not timed; the timing
// is BenchmarkAllocate.)
func TestAllocateIsNextFit(t *testing.T) {
	st := store.NewMemory()
	n := network(t, "10.90.0.0/16", "", "")
	_ = st.Update(func(tx store.Tx) error {
		c := &countingTx{Tx: tx}
		for i := 1; i <= 1000; i++ {
			c.lookups = 0
			if _, err := Allocate(c, n.Name, n.Subnets[0], fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			if c.lookups != 1 {
				t.Fatalf("allocation %d looked at %d addresses", i, c.lookups)
			}
		}
		return nil
	})
}

// Configurations the random runs use: small ranges, so that they fill up,
// wrap and run into the gateway.
var randomNets = []struct{ subnet, rng, gw string }{
	{"10.90.1.0/30", "", ""},
	{"10.90.1.0/29", "", ""},
	{"10.90.1.0/28", "", "10.90.1.9"},
	{"10.90.1.0/27", "", ""},
	{"10.90.1.0/24", "10.90.1.0/29", ""},
	{"10.90.1.0/24", "10.90.1.248/29", ""},
	{"10.90.1.0/24", "10.90.1.16/28", "10.90.1.20"},
}

// runOps interprets ops as a sequence of allocations, static reservations,
// releases and rolled-back allocations on a network from randomNets, and
// checks after every step, against a model of what must be held:
//   - no address is held by two owners, and the store holds exactly the model;
//   - every allocated address is inside the range and is not the network,
//     broadcast or gateway address;
//   - ErrExhausted comes only when every usable address is held;
//   - a static reservation of a free, valid address succeeds: any host
//     address of the subnet but the gateway, inside the range or not.
//
// Each op is one byte (the kind) and, for static and release, a second
// byte (which address). Deterministic: a failing input replays exactly.
func runOps(t *testing.T, netSel uint8, ops []byte) {
	cfg := randomNets[int(netSel)%len(randomNets)]
	n := network(t, cfg.subnet, cfg.rng, cfg.gw)
	lo, hi, _ := bounds(n.Name, n.Subnets[0])
	usable := map[netip.Addr]bool{} // what Allocate may hand out
	for v := lo; v <= hi; v++ {
		if a := addr(v); a != n.Subnets[0].Gateway {
			usable[a] = true
		}
	}
	staticOK := map[netip.Addr]bool{} // what --ip may ask for
	for v := u32(n.Subnets[0].Prefix.Addr()) + 1; v < u32(model.Broadcast(n.Subnets[0].Prefix)); v++ {
		if a := addr(v); a != n.Subnets[0].Gateway {
			staticOK[a] = true
		}
	}
	heldUsable := func(held map[netip.Addr]string) (c int) {
		for a := range held {
			if usable[a] {
				c++
			}
		}
		return c
	}
	st := store.NewMemory()
	held := map[netip.Addr]string{}
	fail := func(step int, format string, a ...any) {
		t.Helper()
		t.Fatalf("net %v, step %d: %s", cfg, step, fmt.Sprintf(format, a...))
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
		owner := fmt.Sprint("o", step)
		switch op % 5 {
		case 0, 1: // allocate
			a, err := alloc(t, st, n, owner)
			if err != nil {
				if !errors.Is(err, model.ErrExhausted) {
					fail(step, "allocate: %v", err)
				}
				if heldUsable(held) != len(usable) {
					fail(step, "exhausted with %d of %d usable addresses held: %v", heldUsable(held), len(usable), err)
				}
				break
			}
			if o, dup := held[a]; dup {
				fail(step, "%s handed to %s while %s holds it", a, owner, o)
			}
			if !usable[a] || !n.Subnets[0].AllocRange().Contains(a) || a == n.Subnets[0].Prefix.Addr() || a == model.Broadcast(n.Subnets[0].Prefix) || a == n.Subnets[0].Gateway {
				fail(step, "handed out %s, not a usable address of %v", a, cfg)
			}
			held[a] = owner
		case 2: // static reservation of any address in the subnet, valid or not
			arg := takeArg()
			a := addr(u32(n.Subnets[0].Prefix.Addr()) + uint32(arg)%(1<<(32-n.Subnets[0].Prefix.Bits())))
			err := st.Update(func(tx store.Tx) error { return ReserveStatic(tx, n, a, owner, nil) })
			_, dup := held[a]
			switch {
			case err == nil && (dup || !staticOK[a]):
				fail(step, "static %s reserved (held %v, valid %v)", a, dup, staticOK[a])
			case err == nil:
				held[a] = owner
			case dup && !errors.Is(err, model.ErrConflict), !staticOK[a] && !errors.Is(err, model.ErrInvalid):
				fail(step, "static %s: wrong error %v", a, err)
			case !dup && staticOK[a]:
				fail(step, "static %s free but refused: %v", a, err)
			}
		case 3: // release one held address
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
			if err := st.Update(func(tx store.Tx) error { return tx.Release(n.Name, a) }); err != nil {
				fail(step, "release: %v", err)
			}
			delete(held, a)
		case 4: // allocate in a transaction that then fails: nothing changes
			_ = st.Update(func(tx store.Tx) error {
				_, err := Allocate(tx, n.Name, n.Subnets[0], owner)
				return errors.Join(err, errors.New("rolled back"))
			})
		}
		if err := st.View(func(tx store.Tx) error {
			res, err := tx.Reservations(n.Name)
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
			if c, _ := tx.Cursor(n.Name); c.IsValid() && !usable[c] {
				fail(step, "cursor %s is not a usable address", c)
			}
			return nil
		}); err != nil {
			fail(step, "%v", err)
		}
	}
}

// Property test: many random sequences.
func TestRandomAllocateRelease(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
		ops := make([]byte, 400)
		for i := range ops {
			ops[i] = byte(r.Uint32())
		}
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runOps(t, uint8(seed), ops) })
	}
}

// FuzzAllocateRelease runs the same checks on inputs the fuzzer makes; the
// seed corpus runs as a normal test with `go test`. To fuzz:
//
//	go test -run '^$' -fuzz FuzzAllocateRelease ./internal/ipam/
func FuzzAllocateRelease(f *testing.F) {
	fill := make([]byte, 64) // allocate until full, then once more
	wrap := []byte{0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	static := []byte{2, 0, 2, 1, 2, 2, 2, 3, 2, 255, 0, 0, 0, 0, 3, 1, 0, 0}
	mixed := []byte{0, 4, 0, 2, 5, 3, 0, 1, 4, 4, 0, 2, 9, 0, 3, 2, 1, 1, 1}
	for sel := range uint8(len(randomNets)) {
		for _, ops := range [][]byte{fill, wrap, static, mixed} {
			f.Add(sel, ops)
		}
	}
	f.Fuzz(func(t *testing.T, netSel uint8, ops []byte) {
		if len(ops) > 4096 {
			ops = ops[:4096]
		}
		runOps(t, netSel, ops)
	})
}

// BenchmarkAllocate shows that an allocation costs the same whether the
// network already holds 0, 500 or 5000 addresses. Each op is one
// allocation in its own committed Update (for bolt, written to the page
// cache: runtime state is not fsynced, see store.Open).
//
//	go test -run '^$' -bench Allocate ./internal/ipam/
func BenchmarkAllocate(b *testing.B) {
	for _, kind := range []string{"memory", "bolt"} {
		for _, already := range []int{0, 499, 4999} {
			b.Run(fmt.Sprintf("%s/held=%d", kind, already), func(b *testing.B) {
				var st = store.NewMemory()
				if kind == "bolt" {
					s, err := store.Open(filepath.Join(b.TempDir(), "state.db"), nil)
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					st = s
				}
				n := network(b, "10.0.0.0/8", "", "")
				if err := st.Update(func(tx store.Tx) error {
					for i := range already {
						if _, err := Allocate(tx, n.Name, n.Subnets[0], fmt.Sprint("pre", i)); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				for i := 0; b.Loop(); i++ {
					if _, err := alloc(b, st, n, fmt.Sprint("ep", i)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
