package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
	"pontoon/internal/store/etcdtest"
)

// openEtcd opens an etcd store on a throwaway etcd server of t's own.
func openEtcd(t testing.TB) Store {
	t.Helper()
	s, err := OpenEtcd(context.Background(), etcdtest.Start(t), "/pontoon/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// twoDaemons opens two etcd stores on one server and one prefix, each with
// a client of its own: two pontoon daemons sharing a state.
func twoDaemons(t *testing.T) (a, b *etcdStore, cli *clientv3.Client) {
	t.Helper()
	cli = etcdtest.Start(t)
	open := func(c *clientv3.Client) *etcdStore {
		s, err := OpenEtcd(context.Background(), c, "/pontoon/", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s.(*etcdStore)
	}
	return open(cli), open(etcdtest.NewClient(t, cli)), cli
}

func TestEtcdOpenChecksPrefix(t *testing.T) {
	cli := etcdtest.Start(t)
	for _, p := range []string{"", "/pontoon"} {
		if _, err := OpenEtcd(context.Background(), cli, p, nil); err == nil || !strings.Contains(err.Error(), "does not end with '/'") {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	// Close leaves the client open: it is the caller's.
	s, err := OpenEtcd(context.Background(), cli, "/a/", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := cli.Get(context.Background(), "x"); err != nil {
		t.Errorf("client after the store's Close: %v", err)
	}
	if err := s.View(context.Background(), func(Tx) error { return nil }); !errors.Is(err, errClosed) {
		t.Errorf("View after Close: %v", err)
	}
}

// Two daemons reserve the next free address on one network with the same
// read-modify-write (cursor, then reservation), 32 goroutines in all: no
// address is handed out twice, and every Update succeeds or says it met
// contention.
func TestEtcdTwoDaemonsReserve(t *testing.T) {
	a, b, _ := twoDaemons(t)
	const goroutines, each = 32, 8
	base := addr("10.90.0.0")
	var ok, contended atomic.Int64
	errs := make(chan error, goroutines*each)
	var wg sync.WaitGroup
	for g := range goroutines {
		s := []*etcdStore{a, b}[g%2]
		wg.Go(func() {
			for i := range each {
				owner := fmt.Sprint(g, "-", i)
				err := s.Update(context.Background(), func(tx Tx) error {
					c, err := tx.Cursor("n", false)
					if err != nil {
						return err
					}
					if !c.IsValid() {
						c = base
					}
					c = c.Next()
					return errors.Join(tx.Reserve("n", c, owner), tx.SetCursor("n", c))
				})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrContention):
					contended.Add(1)
				default:
					errs <- fmt.Errorf("%s: %w", owner, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d committed, %d gave up on contention, %d+%d conflicting commits retried", ok.Load(), contended.Load(), a.conflicts.Load(), b.conflicts.Load())
	view(t, a, func(tx Tx) error {
		res, err := tx.Reservations("n")
		if err != nil {
			return err
		}
		// One address per committed Update, each owner once, and the
		// addresses are base+1 … base+n: none skipped, none twice.
		owners := map[string]bool{}
		for ip, o := range res {
			if owners[o] {
				t.Errorf("owner %s holds two addresses", o)
			}
			owners[o] = true
			if ip.Compare(base) <= 0 {
				t.Errorf("reserved %v", ip)
			}
		}
		if int64(len(res)) != ok.Load() {
			t.Errorf("%d reservations for %d committed Updates", len(res), ok.Load())
		}
		want := base
		for range ok.Load() {
			want = want.Next()
			if _, held := res[want]; !held {
				t.Errorf("%v not reserved", want)
			}
		}
		if c, _ := tx.Cursor("n", false); c != want {
			t.Errorf("cursor %v, want %v", c, want)
		}
		return nil
	})
	if ok.Load() == 0 {
		t.Error("no Update committed")
	}
}

// What one daemon's transaction read, another changes before it commits:
// the commit fails and fn runs again, on the new state; a change to what
// it did not read lets it commit at once.
func TestEtcdConflicts(t *testing.T) {
	ip1, ip2 := addr("10.90.0.1"), addr("10.90.0.2")
	seed := func(tx Tx) error {
		return errors.Join(tx.SetMeta("k", "old"), tx.PutNetwork(&model.Network{ID: "n", Name: "n"}),
			tx.PutNetwork(&model.Network{ID: "m", Name: "m"}), tx.Reserve("n", ip1, "x"), tx.Reserve("m", ip1, "x"),
			tx.SetCursor("n", ip1), tx.SetCursor("m", ip1),
			tx.PutEndpoint(&model.Endpoint{ID: "1", Sandbox: "sb", Network: "n", IfName: "eth0"}))
	}
	for _, tc := range []struct {
		name  string
		read  func(Tx) error // what A reads
		other func(Tx) error // what B commits meanwhile
		rerun bool
	}{
		{"changed key", func(tx Tx) error { _, err := tx.Meta("k"); return err },
			func(tx Tx) error { return tx.SetMeta("k", "new") }, true},
		{"created key", func(tx Tx) error { _, _, err := tx.Reservation("n", ip2); return err },
			func(tx Tx) error { return tx.Reserve("n", ip2, "y") }, true},
		{"deleted key", func(tx Tx) error { _, _, err := tx.Reservation("n", ip1); return err },
			func(tx Tx) error { return tx.Release("n", ip1) }, true},
		{"added to a scanned range", func(tx Tx) error { _, err := tx.Reservations("n"); return err },
			func(tx Tx) error { return tx.Reserve("n", ip2, "y") }, true},
		{"deleted from a scanned range", func(tx Tx) error { _, err := tx.Reservations("n"); return err },
			func(tx Tx) error { return tx.Release("n", ip1) }, true},
		{"scanned bucket dropped", func(tx Tx) error { _, err := tx.Reservations("n"); return err },
			func(tx Tx) error { return tx.DeleteNetwork("n") }, true},
		{"changed in a scanned range", func(tx Tx) error { _, err := tx.EndpointsOfSandbox("sb"); return err },
			func(tx Tx) error {
				return tx.PutEndpoint(&model.Endpoint{ID: "1", Sandbox: "sb", Network: "n", IfName: "eth1"})
			}, true},
		{"other key", func(tx Tx) error { _, err := tx.Cursor("n", false); return err },
			func(tx Tx) error { return tx.SetCursor("m", ip2) }, false},
		{"other range", func(tx Tx) error { _, err := tx.Reservations("n"); return err },
			func(tx Tx) error { return tx.Reserve("m", ip2, "y") }, false},
		// "sb2\x00…" is not in the range of "sb\x00": the prefix stays a
		// prefix once escaped.
		{"key beside a scanned prefix", func(tx Tx) error { _, err := tx.EndpointsOfSandbox("sb"); return err },
			func(tx Tx) error {
				return tx.PutEndpoint(&model.Endpoint{ID: "2", Sandbox: "sb2", Network: "n", IfName: "eth0"})
			}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, _ := twoDaemons(t)
			update(t, a, seed)
			runs := 0
			update(t, a, func(tx Tx) error {
				runs++
				if err := tc.read(tx); err != nil {
					return err
				}
				if runs == 1 {
					update(t, b, tc.other) // between A's read and A's commit
				}
				return tx.SetMeta("a", fmt.Sprint(runs))
			})
			if want := map[bool]int{true: 2, false: 1}[tc.rerun]; runs != want {
				t.Errorf("fn ran %d times, want %d", runs, want)
			}
			view(t, b, func(tx Tx) error {
				if v, _ := tx.Meta("a"); v != fmt.Sprint(runs) {
					t.Errorf("committed meta a=%q after %d runs", v, runs)
				}
				return nil
			})
		})
	}
}

// A transaction whose reads are changed on every run gives up with
// ErrContention after its attempts and writes nothing.
func TestEtcdContention(t *testing.T) {
	a, b, _ := twoDaemons(t)
	a.maxAttempts = 3
	runs := 0
	err := a.Update(context.Background(), func(tx Tx) error {
		runs++
		v, err := tx.Meta("k")
		if err != nil {
			return err
		}
		update(t, b, func(tx Tx) error { return tx.SetMeta("k", v+"x") })
		return tx.SetMeta("mine", "yes")
	})
	if !errors.Is(err, ErrContention) || !strings.Contains(err.Error(), "3 attempts") || runs != 3 {
		t.Fatalf("after %d runs: %v", runs, err)
	}
	view(t, a, func(tx Tx) error {
		if v, _ := tx.Meta("mine"); v != "" {
			t.Errorf("a transaction that gave up wrote mine=%q", v)
		}
		if v, _ := tx.Meta("k"); v != "xxx" {
			t.Errorf("k=%q", v)
		}
		return nil
	})
}

// A View reads one revision: what another daemon commits while it runs is
// not in it, in keys and in scans; the next View sees it.
func TestEtcdViewOneRevision(t *testing.T) {
	a, b, _ := twoDaemons(t)
	update(t, a, func(tx Tx) error {
		return errors.Join(tx.SetMeta("x", "1"), tx.SetMeta("y", "1"), tx.Reserve("n", addr("10.90.0.1"), "o"))
	})
	check := func(tx Tx, want string, reservations int) {
		t.Helper()
		x, _ := tx.Meta("x")
		y, _ := tx.Meta("y")
		res, err := tx.Reservations("n")
		if x != want || y != want || len(res) != reservations || err != nil {
			t.Errorf("x=%s y=%s, %d reservations (%v); want %s and %d", x, y, len(res), err, want, reservations)
		}
	}
	view(t, a, func(tx Tx) error {
		if x, _ := tx.Meta("x"); x != "1" {
			t.Errorf("x=%s", x)
		}
		update(t, b, func(tx Tx) error {
			return errors.Join(tx.SetMeta("x", "2"), tx.SetMeta("y", "2"), tx.Reserve("n", addr("10.90.0.2"), "o"))
		})
		check(tx, "1", 1)
		return nil
	})
	view(t, a, func(tx Tx) error { check(tx, "2", 2); return nil })
}

// A transaction that drops a bucket and writes into it again commits (etcd
// refuses a Txn whose put falls in one of its delete ranges: the etcd store
// deletes around the keys it puts) and leaves only the new keys.
func TestDropAndRefillInOneUpdate(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		update(t, s, func(tx Tx) error {
			return errors.Join(tx.PutNetwork(&model.Network{ID: "n", Name: "n"}),
				tx.Reserve("n", addr("10.90.0.1"), "a"), tx.Reserve("n", addr("10.90.0.3"), "a"),
				tx.Reserve("n", addr("10.90.0.5"), "a"), tx.Reserve("n2", addr("10.90.0.1"), "a"))
		})
		update(t, s, func(tx Tx) error {
			return errors.Join(tx.DeleteNetwork("n"), tx.Reserve("n", addr("10.90.0.3"), "b"), tx.Reserve("n", addr("10.90.0.4"), "b"))
		})
		view(t, s, func(tx Tx) error {
			res, err := tx.Reservations("n")
			want := map[netip.Addr]string{addr("10.90.0.3"): "b", addr("10.90.0.4"): "b"}
			if err != nil || len(res) != len(want) || res[addr("10.90.0.3")] != "b" || res[addr("10.90.0.4")] != "b" {
				t.Errorf("reservations %v (%v), want %v", res, err, want)
			}
			if res, _ := tx.Reservations("n2"); len(res) != 1 {
				t.Errorf("n2: %v", res)
			}
			return nil
		})
	})
}

// Keys of any bytes ('%', '/', NUL, high bytes) keep their bytes and their
// order, in point reads and scans.
func TestBinaryKeys(t *testing.T) {
	ips := []netip.Addr{addr("2001:db8::2525:2f2f"), addr("2001:db8::ff00:1"), addr("2001:db8::1"), addr("37.47.0.255"), addr("0.0.0.1")}
	forEach(t, func(t *testing.T, s Store) {
		update(t, s, func(tx Tx) error {
			var errs []error
			for i, ip := range ips {
				errs = append(errs, tx.Reserve("n", ip, fmt.Sprint(i)))
			}
			return errors.Join(errs...)
		})
		view(t, s, func(tx Tx) error {
			res, err := tx.Reservations("n")
			if err != nil || len(res) != len(ips) {
				t.Errorf("reservations %v (%v)", res, err)
			}
			for i, ip := range ips {
				if o, ok, _ := tx.Reservation("n", ip); !ok || o != fmt.Sprint(i) || res[ip] != o {
					t.Errorf("%v: %q %v, scan %q", ip, o, ok, res[ip])
				}
			}
			return nil
		})
	})
}

// esc is a prefix code that round-trips: k has prefix p exactly when
// esc(k) has prefix esc(p).
func TestEsc(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	word := func() []byte {
		b := make([]byte, r.IntN(6))
		for i := range b {
			b[i] = "a%/\x00-.Z\xff9"[r.IntN(9)]
		}
		return b
	}
	for range 5000 {
		k, p := word(), word()
		got, err := unesc(esc(k))
		if err != nil || !bytes.Equal(got, k) {
			t.Fatalf("unesc(esc(%q)) = %q, %v", k, got, err)
		}
		if bytes.HasPrefix(k, p) != strings.HasPrefix(esc(k), esc(p)) {
			t.Fatalf("prefix %q of %q: escaped %q of %q", p, k, esc(p), esc(k))
		}
	}
	for _, bad := range []string{"%", "%4", "%G0"} {
		if _, err := unesc(bad); err == nil {
			t.Errorf("unesc(%q) accepted", bad)
		}
	}
}

// An Update with more writes than etcd takes in one Txn fails with an
// error that names the limit, and writes nothing.
func TestEtcdTooManyWrites(t *testing.T) {
	s := openEtcd(t)
	err := s.Update(context.Background(), func(tx Tx) error {
		for i := range 200 {
			if err := tx.SetMeta(fmt.Sprint("k", i), "v"); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "--max-txn-ops") {
		t.Fatalf("200 writes: %v", err)
	}
	view(t, s, func(tx Tx) error {
		if v, _ := tx.Meta("k0"); v != "" {
			t.Errorf("k0=%q", v)
		}
		return nil
	})
}
