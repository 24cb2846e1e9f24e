package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

func network(t testing.TB, subnet, rng string) *model.Network {
	t.Helper()
	n, err := model.BuildNetwork(model.NetworkSpec{Name: "n", IPRange: rng}, netip.MustParsePrefix(subnet), "id")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func alloc(t *testing.T, st store.Store, n *model.Network, owner string) (netip.Addr, error) {
	t.Helper()
	var a netip.Addr
	err := st.Update(func(tx store.Tx) (err error) {
		a, err = Allocate(tx, n, owner)
		return err
	})
	return a, err
}

func TestAllocateSkipsReservedAddresses(t *testing.T) {
	st := store.NewMemory()
	n := network(t, "10.90.1.0/29", "") // .0 network, .1 gateway, .7 broadcast
	var got []string
	for i := 0; i < 5; i++ {
		a, err := alloc(t, st, n, fmt.Sprint("o", i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	if want := "10.90.1.2 10.90.1.3 10.90.1.4 10.90.1.5 10.90.1.6"; strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	_, err := alloc(t, st, n, "o5")
	if !errors.Is(err, model.ErrExhausted) || !strings.Contains(err.Error(), "no free address left in 10.90.1.0/29 (5 in use)") {
		t.Fatalf("exhausted: %v", err)
	}
	// Release one in the middle: next-fit wraps around to it.
	_ = st.Update(func(tx store.Tx) error { return tx.Release("n", netip.MustParseAddr("10.90.1.4")) })
	if a, err := alloc(t, st, n, "o6"); err != nil || a.String() != "10.90.1.4" {
		t.Fatalf("after release: %v %v", a, err)
	}
}

func TestAllocateRespectsRangeAndGateway(t *testing.T) {
	st := store.NewMemory()
	n := network(t, "10.90.1.0/24", "10.90.1.0/30") // range includes network addr and gateway
	a, err := alloc(t, st, n, "x")
	if err != nil || a.String() != "10.90.1.2" {
		t.Fatalf("first in range: %v %v", a, err)
	}
	a, err = alloc(t, st, n, "y")
	if err != nil || a.String() != "10.90.1.3" {
		t.Fatalf("second in range: %v %v", a, err)
	}
	if _, err := alloc(t, st, n, "z"); !errors.Is(err, model.ErrExhausted) {
		t.Fatalf("range full: %v", err)
	}
	// /30 subnet: exactly one usable address besides the gateway.
	st2 := store.NewMemory()
	small := network(t, "10.90.2.0/30", "")
	if a, err := alloc(t, st2, small, "x"); err != nil || a.String() != "10.90.2.2" {
		t.Fatalf("/30: %v %v", a, err)
	}
	if _, err := alloc(t, st2, small, "y"); !errors.Is(err, model.ErrExhausted) {
		t.Fatalf("/30 full: %v", err)
	}
}

func TestReserveStatic(t *testing.T) {
	st := store.NewMemory()
	n := network(t, "10.90.1.0/24", "10.90.1.0/25")
	name := func(o string) string { return "sandbox " + o }
	res := func(ip, owner string) error {
		return st.Update(func(tx store.Tx) error {
			return ReserveStatic(tx, n, netip.MustParseAddr(ip), owner, name)
		})
	}
	if err := res("10.90.1.10", "a"); err != nil {
		t.Fatal(err)
	}
	if err := res("10.90.1.10", "a"); err != nil {
		t.Fatalf("same owner again: %v", err)
	}
	for ip, want := range map[string]string{
		"10.90.1.10":  "already in use by sandbox a",
		"10.90.1.1":   "gateway",
		"10.90.1.200": "ip-range",
		"10.90.2.1":   "outside subnet",
	} {
		if err := res(ip, "b"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", ip, err, want)
		}
	}
	// Allocation steps over the static address.
	_ = st.Update(func(tx store.Tx) error { return tx.SetCursor("n", netip.MustParseAddr("10.90.1.9")) })
	if a, _ := alloc(t, st, n, "c"); a.String() != "10.90.1.11" {
		t.Fatalf("allocated %s over a static reservation", a)
	}
}

func TestPickSubnet(t *testing.T) {
	pool := []netip.Prefix{netip.MustParsePrefix("10.89.0.0/16"), netip.MustParsePrefix("10.90.0.0/16")}
	taken := []netip.Prefix{
		netip.MustParsePrefix("10.89.0.0/24"),
		netip.MustParsePrefix("10.89.1.128/25"), // partial overlap
		netip.MustParsePrefix("10.89.2.7/32"),   // a host route
	}
	p, err := PickSubnet(pool, 24, taken)
	if err != nil || p.String() != "10.89.3.0/24" {
		t.Fatalf("got %v %v", p, err)
	}
	p, err = PickSubnet(pool, 24, []netip.Prefix{netip.MustParsePrefix("10.89.0.0/16")})
	if err != nil || p.String() != "10.90.0.0/24" {
		t.Fatalf("skip a whole pool entry: %v %v", p, err)
	}
	if _, err := PickSubnet(pool[:1], 24, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); !errors.Is(err, ErrNoSubnet) {
		t.Fatalf("full pool: %v", err)
	}
}

// checkRandomOps applies a random sequence of allocations, static
// reservations and releases, and checks after each step that no address is
// held twice, every address is usable, and exhaustion is reported only when
// the range is truly full.
func checkRandomOps(t *testing.T, seed uint64, steps int) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b9))
	subnets := []string{"10.90.1.0/29", "10.90.1.0/28", "10.90.1.0/27"}
	sub := subnets[r.IntN(len(subnets))]
	n := network(t, sub, "")
	st := store.NewMemory()
	held := map[netip.Addr]string{} // our model of the truth
	usable := 0
	for a := n.Subnet.Addr().Next(); n.Subnet.Contains(a) && a != model.Broadcast(n.Subnet); a = a.Next() {
		if a != n.Gateway {
			usable++
		}
	}
	for i := 0; i < steps; i++ {
		owner := fmt.Sprintf("o%d", i)
		switch op := r.IntN(3); {
		case op == 0 || len(held) == 0:
			a, err := alloc(t, st, n, owner)
			if err != nil {
				if !errors.Is(err, model.ErrExhausted) || len(held) != usable {
					t.Fatalf("seed %d step %d: %v with %d/%d held", seed, i, err, len(held), usable)
				}
				continue
			}
			if o, dup := held[a]; dup {
				t.Fatalf("seed %d step %d: %s given to %s and %s", seed, i, a, o, owner)
			}
			if a == n.Gateway || a == n.Subnet.Addr() || a == model.Broadcast(n.Subnet) || !n.Subnet.Contains(a) {
				t.Fatalf("seed %d step %d: handed out unusable %s", seed, i, a)
			}
			held[a] = owner
		case op == 1:
			a := n.Subnet.Addr()
			for k := r.IntN(1 << (32 - n.Subnet.Bits())); k > 0; k-- {
				a = a.Next()
			}
			err := st.Update(func(tx store.Tx) error { return ReserveStatic(tx, n, a, owner, nil) })
			_, dup := held[a]
			switch {
			case err == nil && dup:
				t.Fatalf("seed %d step %d: static %s reserved twice", seed, i, a)
			case err == nil:
				held[a] = owner
			case !dup && !errors.Is(err, model.ErrInvalid):
				t.Fatalf("seed %d step %d: static %s free but refused: %v", seed, i, a, err)
			}
		default:
			for a := range held {
				_ = st.Update(func(tx store.Tx) error { return tx.Release("n", a) })
				delete(held, a)
				break
			}
		}
		_ = st.View(func(tx store.Tx) error {
			res, _ := tx.Reservations("n")
			if len(res) != len(held) {
				t.Fatalf("seed %d step %d: store holds %d, model %d", seed, i, len(res), len(held))
			}
			for a, o := range held {
				if res[a] != o {
					t.Fatalf("seed %d step %d: %s held by %q in the store, %q in the model", seed, i, a, res[a], o)
				}
			}
			return nil
		})
	}
}

func TestRandomAllocateRelease(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		checkRandomOps(t, seed, 300)
	}
}

func FuzzAllocateRelease(f *testing.F) {
	for _, s := range []uint64{1, 7, 42, 1 << 40} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { checkRandomOps(t, seed, 200) })
}

// The 1st and the 500th allocation cost the same (next-fit from a cursor).
func BenchmarkAllocate(b *testing.B) {
	for _, kind := range []string{"memory", "bolt"} {
		for _, already := range []int{0, 500, 5000} {
			b.Run(fmt.Sprintf("%s/after-%d", kind, already), func(b *testing.B) {
				var st store.Store = store.NewMemory()
				if kind == "bolt" {
					s, err := store.Open(filepath.Join(b.TempDir(), "s.db"), nil)
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					st = s
				}
				n := network(b, "10.0.0.0/8", "")
				_ = st.Update(func(tx store.Tx) error {
					for i := 0; i < already; i++ {
						if _, err := Allocate(tx, n, "pre"); err != nil {
							return err
						}
					}
					return nil
				})
				for i := 0; b.Loop(); i++ {
					if err := st.Update(func(tx store.Tx) error {
						_, err := Allocate(tx, n, "x")
						return err
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
