package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"pontoon/internal/model"
)

var netipEqual = []cmp.Option{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

// impls are the implementations under test: every conformance test runs
// against each, so they must agree.
var impls = []struct {
	name string
	open func(t testing.TB) Store
}{
	{"memory", func(testing.TB) Store { return NewMemory() }},
	{"bolt", func(t testing.TB) Store {
		s, err := Open(filepath.Join(t.TempDir(), "state.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"etcd", openEtcd}, // etcd_test.go: a throwaway etcd server
}

func forEach(t *testing.T, fn func(t *testing.T, s Store)) {
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) { fn(t, impl.open(t)) })
	}
}

func update(t *testing.T, s Store, fn func(Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, s Store, fn func(Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestNetworks(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		mk := func(name string) *model.Network {
			return &model.Network{
				ID: "id-" + name, Name: name, Driver: model.DriverBridge, Bridge: "br-" + name,
				Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("10.90.1.0/24"), Gateway: addr("10.90.1.1"), IPRange: netip.MustParsePrefix("10.90.1.128/25")},
					{Prefix: netip.MustParsePrefix("fd00:1::/64"), Gateway: addr("fd00:1::1")}},
				ICC: true, MTU: 1500,
				Labels: map[string]string{"a": "b"}, Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			}
		}
		update(t, s, func(tx Tx) error {
			for _, name := range []string{"zeta", "alpha", "mid"} {
				if err := tx.PutNetwork(mk(name)); err != nil {
					return err
				}
			}
			return nil
		})
		view(t, s, func(tx Tx) error {
			got, err := tx.Network("alpha")
			if err != nil || !cmp.Equal(got, mk("alpha"), netipEqual...) {
				t.Errorf("Network: %v %s", err, cmp.Diff(mk("alpha"), got, netipEqual...))
			}
			got.Labels["a"] = "changed" // a copy: the store must not see it
			again, _ := tx.Network("alpha")
			if again.Labels["a"] != "b" {
				t.Errorf("returned object aliases the store")
			}
			all, err := tx.Networks()
			if err != nil || names(all, func(n *model.Network) string { return n.Name }) != "alpha,mid,zeta" {
				t.Errorf("Networks: %v %v", names(all, func(n *model.Network) string { return n.Name }), err)
			}
			_, err = tx.Network("nope")
			if !errors.Is(err, model.ErrNotFound) || !strings.Contains(err.Error(), "`pontoon network ls`") || !strings.Contains(err.Error(), `"nope"`) {
				t.Errorf("missing network: %v", err)
			}
			return nil
		})
		update(t, s, func(tx Tx) error {
			n := mk("mid")
			n.MTU = 9000
			if err := tx.PutNetwork(n); err != nil {
				return err
			}
			if err := tx.DeleteNetwork("zeta"); err != nil {
				return err
			}
			return tx.DeleteNetwork("never-existed") // missing is success
		})
		view(t, s, func(tx Tx) error {
			if n, _ := tx.Network("mid"); n == nil || n.MTU != 9000 {
				t.Errorf("update not kept: %+v", n)
			}
			if _, err := tx.Network("zeta"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("deleted network: %v", err)
			}
			all, _ := tx.Networks()
			if len(all) != 2 {
				t.Errorf("after delete: %d networks", len(all))
			}
			return nil
		})
	})
}

func names[T any](xs []T, name func(T) string) string {
	var s []string
	for _, x := range xs {
		s = append(s, name(x))
	}
	return strings.Join(s, ",")
}

func TestSandboxes(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		mk := func(name string) *model.Sandbox {
			return &model.Sandbox{ID: "id-" + name, Name: name, Kind: model.KindNetns, Netns: "/run/netns/" + name,
				PID: 42, NetnsIno: 7, Labels: map[string]string{"k": "v"}, State: model.SandboxReady,
				Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
		}
		update(t, s, func(tx Tx) error {
			for _, name := range []string{"web", "db", "cache"} {
				if err := tx.PutSandbox(mk(name)); err != nil {
					return err
				}
			}
			return nil
		})
		view(t, s, func(tx Tx) error {
			got, err := tx.Sandbox("db")
			if err != nil || !cmp.Equal(got, mk("db")) {
				t.Errorf("Sandbox: %v %s", err, cmp.Diff(mk("db"), got))
			}
			all, _ := tx.Sandboxes()
			if got := names(all, func(s *model.Sandbox) string { return s.Name }); got != "cache,db,web" {
				t.Errorf("Sandboxes: %s", got)
			}
			_, err = tx.Sandbox("nope")
			if !errors.Is(err, model.ErrNotFound) || !strings.Contains(err.Error(), "`pontoon sandbox ls`") {
				t.Errorf("missing sandbox: %v", err)
			}
			return nil
		})
		update(t, s, func(tx Tx) error {
			if err := tx.DeleteSandbox("db"); err != nil {
				return err
			}
			return tx.DeleteSandbox("db") // again: missing is success
		})
		view(t, s, func(tx Tx) error {
			if _, err := tx.Sandbox("db"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("deleted sandbox: %v", err)
			}
			return nil
		})
	})
}

func TestEndpoints(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		eps := []*model.Endpoint{
			{ID: "1", Sandbox: "sb", Network: "net", IfName: "eth10", Addresses: []model.Address{{Addr: netip.MustParsePrefix("10.90.1.2/24"), Gateway: addr("10.90.1.1")}},
				Aliases: []string{"x"}, Ports: []model.PortMapping{{}}, State: model.StateReady},
			{ID: "2", Sandbox: "sb", Network: "z", IfName: "eth2"},
			{ID: "3", Sandbox: "sb", Network: "a", IfName: "eth0"},
			{ID: "4", Sandbox: "sb", Network: "b", IfName: "eth1"},
			{ID: "5", Sandbox: "other", Network: "net", IfName: "eth0"},
			{ID: "6", Sandbox: "sb2", Network: "net", IfName: "eth0"},
			{ID: "7", Sandbox: "s", Network: "net", IfName: "eth0"}, // "s" is a prefix of "sb": scans must not mix them
		}
		update(t, s, func(tx Tx) error {
			for _, e := range eps {
				if err := tx.PutEndpoint(e); err != nil {
					return err
				}
			}
			return nil
		})
		id := func(e *model.Endpoint) string { return e.ID }
		view(t, s, func(tx Tx) error {
			got, err := tx.Endpoint("sb", "net")
			if err != nil || !cmp.Equal(got, eps[0], netipEqual...) {
				t.Errorf("Endpoint: %v %s", err, cmp.Diff(eps[0], got, netipEqual...))
			}
			if _, err := tx.Endpoint("sb", "nope"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("missing endpoint: %v", err)
			}
			all, _ := tx.Endpoints() // by sandbox, then network
			if got := names(all, id); got != "5,7,3,4,1,2,6" {
				t.Errorf("Endpoints order %s", got)
			}
			of, _ := tx.EndpointsOfSandbox("sb") // by interface index: eth2 before eth10
			if got := names(of, func(e *model.Endpoint) string { return e.IfName }); got != "eth0,eth1,eth2,eth10" {
				t.Errorf("EndpointsOfSandbox order %s", got)
			}
			on, _ := tx.EndpointsOnNetwork("net") // by sandbox
			if got := names(on, func(e *model.Endpoint) string { return e.Sandbox }); got != "other,s,sb,sb2" {
				t.Errorf("EndpointsOnNetwork order %s", got)
			}
			if none, err := tx.EndpointsOfSandbox("nobody"); err != nil || len(none) != 0 {
				t.Errorf("no endpoints: %v %v", none, err)
			}
			return nil
		})
		update(t, s, func(tx Tx) error {
			if err := tx.DeleteEndpoint("other", "net"); err != nil {
				return err
			}
			return tx.DeleteEndpoint("other", "net") // missing is success
		})
		view(t, s, func(tx Tx) error {
			on, _ := tx.EndpointsOnNetwork("net")
			if got := names(on, func(e *model.Endpoint) string { return e.Sandbox }); got != "s,sb,sb2" {
				t.Errorf("index after delete: %s", got)
			}
			return nil
		})
	})
}

func TestMeta(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		update(t, s, func(tx Tx) error {
			if v, err := tx.Meta("schema"); v != "" || err != nil {
				t.Errorf("unset meta: %q %v", v, err)
			}
			return tx.SetMeta("schema", "1")
		})
		view(t, s, func(tx Tx) error {
			if v, _ := tx.Meta("schema"); v != "1" {
				t.Errorf("meta %q", v)
			}
			return nil
		})
	})
}

// Every write method fails in a View, and leaves nothing.
func TestViewIsReadOnly(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		ip := addr("10.90.1.5")
		update(t, s, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "n", Name: "n"}) })
		writes := map[string]func(Tx) error{
			"PutNetwork":     func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "m", Name: "m"}) },
			"DeleteNetwork":  func(tx Tx) error { return tx.DeleteNetwork("n") },
			"PutSandbox":     func(tx Tx) error { return tx.PutSandbox(&model.Sandbox{ID: "s", Name: "s"}) },
			"DeleteSandbox":  func(tx Tx) error { return tx.DeleteSandbox("s") },
			"PutEndpoint":    func(tx Tx) error { return tx.PutEndpoint(&model.Endpoint{ID: "s.n", Sandbox: "s", Network: "n"}) },
			"DeleteEndpoint": func(tx Tx) error { return tx.DeleteEndpoint("s", "n") },
			"Reserve":        func(tx Tx) error { return tx.Reserve("n", ip, "o") },
			"Release":        func(tx Tx) error { return tx.Release("n", ip) },
			"SetCursor":      func(tx Tx) error { return tx.SetCursor("n", ip) },
			"SetMeta":        func(tx Tx) error { return tx.SetMeta("k", "v") },
		}
		for name, w := range writes {
			if err := s.View(context.Background(), w); !errors.Is(err, ErrReadOnly) {
				t.Errorf("%s in View: %v, want ErrReadOnly", name, err)
			}
		}
		view(t, s, func(tx Tx) error {
			if ns, _ := tx.Networks(); len(ns) != 1 {
				t.Errorf("View changed networks: %d", len(ns))
			}
			if _, ok, _ := tx.Reservation("n", ip); ok {
				t.Errorf("View reserved")
			}
			return nil
		})
	})
}

// An Update whose fn fails leaves nothing behind — writes, overwrites and
// deletes alike — and fn sees its own writes while it runs.
func TestRollback(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		ip := addr("10.90.1.5")
		update(t, s, func(tx Tx) error {
			if err := tx.PutNetwork(&model.Network{ID: "kept", Name: "kept", MTU: 1500}); err != nil {
				return err
			}
			if err := tx.PutSandbox(&model.Sandbox{ID: "sb", Name: "sb"}); err != nil {
				return err
			}
			if err := tx.PutEndpoint(&model.Endpoint{ID: "sb.kept", Sandbox: "sb", Network: "kept", IfName: "eth0"}); err != nil {
				return err
			}
			if err := tx.Reserve("kept", ip, "a"); err != nil {
				return err
			}
			return tx.SetCursor("kept", ip)
		})
		boom := errors.New("boom")
		err := s.Update(context.Background(), func(tx Tx) error {
			steps := []error{
				tx.PutNetwork(&model.Network{ID: "new", Name: "new"}),
				tx.PutNetwork(&model.Network{ID: "kept", Name: "kept", MTU: 9000}),
				tx.DeleteSandbox("sb"),
				tx.DeleteEndpoint("sb", "kept"),
				tx.PutEndpoint(&model.Endpoint{ID: "sb2.kept", Sandbox: "sb2", Network: "kept", IfName: "eth0"}),
				tx.Release("kept", ip),
				tx.Reserve("kept", addr("10.90.1.6"), "b"),
				tx.Reserve("new", ip, "c"),
				tx.SetCursor("kept", addr("10.90.1.6")),
				tx.SetMeta("k", "v"),
			}
			if err := errors.Join(steps...); err != nil {
				return err
			}
			// Read your own writes, in point reads and in scans.
			if n, err := tx.Network("kept"); err != nil || n.MTU != 9000 {
				t.Errorf("own write: %+v %v", n, err)
			}
			if _, err := tx.Sandbox("sb"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("own delete: %v", err)
			}
			if on, _ := tx.EndpointsOnNetwork("kept"); names(on, func(e *model.Endpoint) string { return e.Sandbox }) != "sb2" {
				t.Errorf("own endpoint writes in scan: %v", on)
			}
			if res, _ := tx.Reservations("kept"); len(res) != 1 || res[addr("10.90.1.6")] != "b" {
				t.Errorf("own reservations: %v", res)
			}
			if ns, _ := tx.Networks(); len(ns) != 2 {
				t.Errorf("own networks: %d", len(ns))
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update returned %v", err)
		}
		view(t, s, func(tx Tx) error {
			if ns, _ := tx.Networks(); len(ns) != 1 || ns[0].Name != "kept" || ns[0].MTU != 1500 {
				t.Errorf("networks after rollback: %+v", ns)
			}
			if _, err := tx.Sandbox("sb"); err != nil {
				t.Errorf("delete not rolled back: %v", err)
			}
			if eps, _ := tx.Endpoints(); len(eps) != 1 || eps[0].Sandbox != "sb" {
				t.Errorf("endpoints after rollback: %+v", eps)
			}
			if on, _ := tx.EndpointsOnNetwork("kept"); len(on) != 1 || on[0].Sandbox != "sb" {
				t.Errorf("endpoint index after rollback: %+v", on)
			}
			if res, _ := tx.Reservations("kept"); len(res) != 1 || res[ip] != "a" {
				t.Errorf("reservations after rollback: %v", res)
			}
			if res, _ := tx.Reservations("new"); len(res) != 0 {
				t.Errorf("reservations of a rolled-back network: %v", res)
			}
			if c, _ := tx.Cursor("kept", false); c != ip {
				t.Errorf("cursor after rollback: %v", c)
			}
			if v, _ := tx.Meta("k"); v != "" {
				t.Errorf("meta after rollback: %q", v)
			}
			return nil
		})
		// A panicking fn leaves nothing either.
		func() {
			defer func() { _ = recover() }()
			_ = s.Update(context.Background(), func(tx Tx) error {
				_ = tx.PutNetwork(&model.Network{ID: "panic", Name: "panic"})
				panic("boom")
			})
		}()
		view(t, s, func(tx Tx) error {
			if _, err := tx.Network("panic"); err == nil {
				t.Errorf("panicking Update left a network")
			}
			return nil
		})
	})
}

func TestReservations(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		a, b := addr("10.90.1.5"), addr("10.90.1.6")
		a6, b6 := addr("fd00:1::5"), addr("fd00:1::6")
		update(t, s, func(tx Tx) error {
			for _, v6 := range []bool{false, true} {
				if c, err := tx.Cursor("n", v6); c.IsValid() || err != nil {
					t.Errorf("unset cursor (v6 %v): %v %v", v6, c, err)
				}
			}
			if _, ok, err := tx.Reservation("n", a); ok || err != nil {
				t.Errorf("unreserved: %v %v", ok, err)
			}
			if err := tx.Reserve("n", a, "ep-a"); err != nil {
				return err
			}
			if err := tx.Reserve("n", a, "ep-a"); err != nil {
				return fmt.Errorf("same owner again: %w", err)
			}
			return errors.Join(
				tx.Reserve("n", b, "ep-b"),
				tx.Reserve("n", a6, "ep-a"), // one endpoint holds one address per family
				tx.Reserve("n", b6, "ep-b"),
				tx.Reserve("other", a, "ep-c"), // per network
				tx.SetCursor("n", b),
				tx.SetCursor("n", a6))
		})
		for _, ip := range []netip.Addr{a, a6} {
			err := s.Update(context.Background(), func(tx Tx) error { return tx.Reserve("n", ip, "ep-x") })
			if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "ep-a") || !strings.Contains(err.Error(), ip.String()) {
				t.Errorf("conflict on %s: %v", ip, err)
			}
		}
		view(t, s, func(tx Tx) error {
			for _, ip := range []netip.Addr{a, a6} {
				if o, ok, _ := tx.Reservation("n", ip); !ok || o != "ep-a" {
					t.Errorf("Reservation(%s): %q %v", ip, o, ok)
				}
			}
			res, _ := tx.Reservations("n")
			if want := map[netip.Addr]string{a: "ep-a", b: "ep-b", a6: "ep-a", b6: "ep-b"}; !cmp.Equal(res, want, netipEqual...) {
				t.Errorf("Reservations: %v", res)
			}
			// One cursor per family: setting the v6 one left the v4 one.
			c4, err4 := tx.Cursor("n", false)
			c6, err6 := tx.Cursor("n", true)
			if c4 != b || c6 != a6 || err4 != nil || err6 != nil {
				t.Errorf("cursors: %v %v, %v %v", c4, err4, c6, err6)
			}
			return nil
		})
		update(t, s, func(tx Tx) error {
			for _, ip := range []netip.Addr{a, a6} {
				if err := tx.Release("n", ip); err != nil {
					return err
				}
				if err := tx.Release("n", ip); err != nil { // missing is success
					return err
				}
				if err := tx.Reserve("n", ip, "ep-x"); err != nil { // free again
					return err
				}
			}
			return nil
		})
		// Addresses that cannot be keys are refused, not a panic, and
		// change nothing.
		for _, bad := range []netip.Addr{{}, addr("fe80::1%eth0")} {
			for name, fn := range map[string]func(Tx) error{
				"Reserve":   func(tx Tx) error { return tx.Reserve("n", bad, "o") },
				"Release":   func(tx Tx) error { return tx.Release("n", bad) },
				"SetCursor": func(tx Tx) error { return tx.SetCursor("n", bad) },
			} {
				if err := s.Update(context.Background(), fn); !errors.Is(err, model.ErrInvalid) {
					t.Errorf("%s(%v): %v", name, bad, err)
				}
			}
		}
		view(t, s, func(tx Tx) error {
			res, _ := tx.Reservations("n")
			c4, _ := tx.Cursor("n", false)
			c6, _ := tx.Cursor("n", true)
			if len(res) != 4 || c4 != b || c6 != a6 {
				t.Errorf("after refused writes: %v, cursors %v %v", res, c4, c6)
			}
			return nil
		})
	})
}

// DeleteNetwork takes the network's reservations and cursor with it, and
// only those: not those of a network whose name it is a prefix of.
func TestDeleteNetworkCleansUp(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		ip, ip6 := addr("10.90.1.5"), addr("fd00:1::5")
		update(t, s, func(tx Tx) error {
			for _, n := range []string{"n", "n2", "n.x"} {
				if err := errors.Join(tx.PutNetwork(&model.Network{ID: n, Name: n}),
					tx.Reserve(n, ip, "o-"+n), tx.SetCursor(n, ip),
					tx.Reserve(n, ip6, "o-"+n), tx.SetCursor(n, ip6)); err != nil {
					return err
				}
			}
			return nil
		})
		update(t, s, func(tx Tx) error { return tx.DeleteNetwork("n") })
		view(t, s, func(tx Tx) error {
			if res, _ := tx.Reservations("n"); len(res) != 0 {
				t.Errorf("DeleteNetwork left reservations %v", res)
			}
			if _, ok, _ := tx.Reservation("n", ip); ok {
				t.Errorf("DeleteNetwork left a reservation")
			}
			for _, v6 := range []bool{false, true} {
				if c, _ := tx.Cursor("n", v6); c.IsValid() {
					t.Errorf("DeleteNetwork left cursor %v", c)
				}
			}
			for _, other := range []string{"n2", "n.x"} {
				if res, _ := tx.Reservations(other); res[ip] != "o-"+other || res[ip6] != "o-"+other {
					t.Errorf("DeleteNetwork(n) touched %s: %v", other, res)
				}
				c4, _ := tx.Cursor(other, false)
				c6, _ := tx.Cursor(other, true)
				if c4 != ip || c6 != ip6 {
					t.Errorf("DeleteNetwork(n) touched the cursors of %s: %v %v", other, c4, c6)
				}
			}
			return nil
		})
		// Re-created, the network starts empty; deleting it in a failed
		// Update keeps its reservations.
		update(t, s, func(tx Tx) error {
			return errors.Join(tx.PutNetwork(&model.Network{ID: "n", Name: "n"}), tx.Reserve("n", ip, "new"))
		})
		_ = s.Update(context.Background(), func(tx Tx) error { _ = tx.DeleteNetwork("n"); return errors.New("boom") })
		view(t, s, func(tx Tx) error {
			if res, _ := tx.Reservations("n"); len(res) != 1 || res[ip] != "new" {
				t.Errorf("re-created network: %v", res)
			}
			return nil
		})
	})
}

func TestBoltReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	path := filepath.Join(dir, "state.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v %v", fi.Mode(), err)
	}
	ip := addr("10.90.1.5")
	update(t, s, func(tx Tx) error {
		return errors.Join(
			tx.PutNetwork(&model.Network{ID: "kept", Name: "kept"}),
			tx.PutSandbox(&model.Sandbox{ID: "sb", Name: "sb"}),
			tx.PutEndpoint(&model.Endpoint{ID: "sb.kept", Sandbox: "sb", Network: "kept", IfName: "eth0"}),
			tx.Reserve("kept", ip, "o"),
			tx.SetCursor("kept", ip),
			tx.SetMeta("schema", "1"))
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	view(t, s, func(tx Tx) error {
		_, err1 := tx.Network("kept")
		_, err2 := tx.Sandbox("sb")
		on, err3 := tx.EndpointsOnNetwork("kept")
		if err := errors.Join(err1, err2, err3); err != nil || len(on) != 1 {
			t.Errorf("after reopen: %v %v", on, err)
		}
		o, _, _ := tx.Reservation("kept", ip)
		c, _ := tx.Cursor("kept", false)
		m, _ := tx.Meta("schema")
		if o != "o" || c != ip || m != "1" {
			t.Errorf("after reopen: owner %q cursor %v meta %q", o, c, m)
		}
		return nil
	})
}

func TestBoltLockedByAnotherDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	s2, err := Open(path, nil)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of the same state file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path+" is locked by another pontoon daemon; stop it or use --root") {
		t.Errorf("second Open: %v", err)
	}
	if d := time.Since(start); d > 10*lockTimeout {
		t.Errorf("second Open took %v: it must give up, not hang", d)
	}
}

// A state file written with the first layout (one flat ipam bucket keyed
// network\x00IP) is moved into per-network buckets when opened, and then
// to the networks' IDs; reservations of a name without a network go.
func TestBoltMigratesFlatReservations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(btx *bolt.Tx) error {
		b, err := btx.CreateBucket([]byte(bIPAM))
		if err != nil {
			return err
		}
		nb, err := btx.CreateBucket([]byte(bNetworks))
		if err != nil {
			return err
		}
		return errors.Join(
			nb.Put([]byte("n"), []byte(`{"id":"id-n","name":"n"}`)),
			nb.Put([]byte("n2"), []byte(`{"id":"id-n2","name":"n2"}`)),
			b.Put([]byte("n\x00\x0a\x5a\x01\x05"), []byte("o1")),
			b.Put([]byte("n2\x00\x0a\x5a\x01\x05"), []byte("o2")),
			b.Put([]byte("gone\x00\x0a\x5a\x01\x05"), []byte("o3")))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	view(t, s, func(tx Tx) error {
		r1, _ := tx.Reservations("id-n")
		r2, _ := tx.Reservations("id-n2")
		r3, _ := tx.Reservations("gone")
		if r1[addr("10.90.1.5")] != "o1" || r2[addr("10.90.1.5")] != "o2" || len(r1) != 1 || len(r2) != 1 || len(r3) != 0 {
			t.Errorf("migrated: %v %v %v", r1, r2, r3)
		}
		return nil
	})
}

// A state file written by the IPv4-only layout (reservation keys and the
// cursor of 4 bytes, the cursor keyed by the network's name alone) opens
// and serves: its network is moved to its ID (layout 2) with its
// reservations and cursor, which read back; IPv6 reservations and a v6
// cursor go in beside them, and the v4 keys stay 4 bytes on disk.
func TestBoltReadsIPv4OnlyLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(btx *bolt.Tx) error {
		for _, name := range []string{"networks", "sandboxes", "sandbox-containers", "endpoints", "endpoints-net", "endpoint-names", "ipam", "cursors", "meta"} {
			if _, err := btx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		ipam, err := btx.Bucket([]byte("ipam")).CreateBucket([]byte("app"))
		if err != nil {
			return err
		}
		return errors.Join(
			btx.Bucket([]byte("networks")).Put([]byte("app"), []byte(`{"id":"x","name":"app","driver":"bridge","bridge":"ptbr-x","subnet":"10.90.1.0/24","gateway":"10.90.1.1"}`)),
			ipam.Put([]byte{10, 90, 1, 2}, []byte("ep-a")),
			ipam.Put([]byte{10, 90, 1, 3}, []byte("ep-b")),
			btx.Bucket([]byte("cursors")).Put([]byte("app"), []byte{10, 90, 1, 3}))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := mustOpen(t, path)
	c6 := addr("fd00:1::2")
	view(t, s, func(tx Tx) error {
		res, err := tx.Reservations("x")
		if want := map[netip.Addr]string{addr("10.90.1.2"): "ep-a", addr("10.90.1.3"): "ep-b"}; err != nil || !cmp.Equal(res, want, netipEqual...) {
			t.Errorf("old reservations: %v %v", res, err)
		}
		if n, err := tx.Network("app"); err != nil || n.ID != "x" {
			t.Errorf("network app after the move: %+v %v", n, err)
		}
		c4, err4 := tx.Cursor("x", false)
		c6, err6 := tx.Cursor("x", true)
		if c4 != addr("10.90.1.3") || err4 != nil || c6.IsValid() || err6 != nil {
			t.Errorf("old cursor: v4 %v %v, v6 %v %v", c4, err4, c6, err6)
		}
		return nil
	})
	update(t, s, func(tx Tx) error {
		return errors.Join(tx.Reserve("x", addr("10.90.1.4"), "ep-c"), tx.SetCursor("x", addr("10.90.1.4")),
			tx.Reserve("x", c6, "ep-c"), tx.SetCursor("x", c6))
	})
	s.Close()

	// On disk: v4 keys and cursor of 4 bytes under the old keys, v6 of 16.
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(btx *bolt.Tx) error {
		var keys []string
		_ = btx.Bucket([]byte("ipam")).Bucket([]byte("x")).ForEach(func(k, v []byte) error {
			keys = append(keys, fmt.Sprintf("%x=%s", k, v))
			return nil
		})
		want := []string{"0a5a0102=ep-a", "0a5a0103=ep-b", "0a5a0104=ep-c", "fd000001000000000000000000000002=ep-c"}
		if !slices.Equal(keys, want) {
			t.Errorf("reservation keys on disk: %v, want %v", keys, want)
		}
		if v := btx.Bucket([]byte("networks")).Get([]byte("x")); v == nil || btx.Bucket([]byte("networks")).Get([]byte("app")) != nil {
			t.Errorf("network record not under its ID on disk")
		}
		if v := btx.Bucket([]byte("network-names")).Get([]byte("app")); string(v) != "x" {
			t.Errorf("name index app → %q, want x", v)
		}
		if v := btx.Bucket([]byte("meta")).Get([]byte(layoutKey)); string(v) != layoutVersion {
			t.Errorf("layout %q on disk, want %s", v, layoutVersion)
		}
		cur := btx.Bucket([]byte("cursors"))
		if v4, v6 := cur.Get([]byte("x")), cur.Get([]byte("x\x00ipv6")); !bytes.Equal(v4, []byte{10, 90, 1, 4}) || !bytes.Equal(v6, c6.AsSlice()) {
			t.Errorf("cursors on disk: %x %x", v4, v6)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s = mustOpen(t, path)
	defer s.Close()
	view(t, s, func(tx Tx) error {
		res, _ := tx.Reservations("x")
		c4, _ := tx.Cursor("x", false)
		c, _ := tx.Cursor("x", true)
		if len(res) != 4 || res[c6] != "ep-c" || c4 != addr("10.90.1.4") || c != c6 {
			t.Errorf("reopened: %v, cursors %v %v", res, c4, c)
		}
		return nil
	})
}

// BenchmarkUpdate measures one small committed write (what an attach
// does: reserve an address, move the cursor, write the endpoint). bolt
// commits without fsync (runtime state, see Open); bolt-fsync is how every
// commit was made before, and still is where the boot ID is unknown. etcd
// is one member on a unix socket (etcd_test.go), its WAL fsynced: two
// reads and one Txn.
//
//	go test -run '^$' -bench Update ./internal/store/
func BenchmarkUpdate(b *testing.B) {
	all := append(slices.Clone(impls), struct {
		name string
		open func(testing.TB) Store
	}{"bolt-fsync", func(t testing.TB) Store {
		s := impls[1].open(t)
		s.(*boltStore).db.NoSync = false
		return s
	}})
	for _, impl := range all {
		b.Run(impl.name, func(b *testing.B) {
			s := impl.open(b)
			base := addr("10.0.0.0").As4()
			for i := 0; b.Loop(); i++ {
				v := base
				v[1], v[2], v[3] = byte(i>>16), byte(i>>8), byte(i)
				ip := netip.AddrFrom4(v)
				if err := s.Update(context.Background(), func(tx Tx) error {
					return errors.Join(
						tx.Reserve("n", ip, fmt.Sprint(i)),
						tx.SetCursor("n", ip),
						tx.PutEndpoint(&model.Endpoint{ID: fmt.Sprint(i), Sandbox: fmt.Sprint("sb", i), Network: "n", IfName: "eth0", Addresses: []model.Address{{Addr: netip.PrefixFrom(ip, 24)}}}))
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Updates run one at a time (or in group commits) and Views beside them;
// under -race this also checks the memory store's locking and the group
// commit's hand-overs. Every writer reserves the next free address it
// reads: none may be handed out twice. 32 writers: what 32 parallel
// attaches make.
func TestConcurrentUpdatesAndViews(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		const writers, each = 32, 10
		var wg sync.WaitGroup
		errs := make(chan error, 2*writers*each) // one per Update and per View
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					errs <- s.Update(context.Background(), func(tx Tx) error {
						c, err := tx.Cursor("n", false)
						if err != nil {
							return err
						}
						if !c.IsValid() {
							c = addr("10.90.0.0")
						}
						c = c.Next()
						return errors.Join(tx.Reserve("n", c, fmt.Sprint(w, "-", i)), tx.SetCursor("n", c))
					})
				}
			})
			wg.Go(func() {
				for range each {
					errs <- s.View(context.Background(), func(tx Tx) error {
						res, err := tx.Reservations("n")
						c, _ := tx.Cursor("n", false)
						// The cursor is the base address plus the count (a
						// 32-bit sum: 320 addresses run past one byte).
						if err != nil || !c.IsValid() {
							return err
						}
						b4, c4 := addr("10.90.0.0").As4(), c.As4()
						if n := int(binary.BigEndian.Uint32(c4[:]) - binary.BigEndian.Uint32(b4[:])); len(res) != n {
							err = fmt.Errorf("view saw %d reservations with cursor %v", len(res), c)
						}
						return err
					})
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		view(t, s, func(tx Tx) error {
			if res, _ := tx.Reservations("n"); len(res) != writers*each {
				t.Errorf("%d reservations, want %d", len(res), writers*each)
			}
			return nil
		})
	})
}

// mustOpen opens the state file at path or fails the test.
func mustOpen(t *testing.T, path string) Store {
	t.Helper()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// withBoot makes Open see the given boot ID for the rest of the test.
func withBoot(t *testing.T, id string) {
	t.Helper()
	old := bootID
	bootID = func() string { return id }
	t.Cleanup(func() { bootID = old })
}

// fillForReboot writes one of each kind of record.
func fillForReboot(t *testing.T, s Store) {
	t.Helper()
	update(t, s, func(tx Tx) error {
		return errors.Join(
			tx.PutNetwork(&model.Network{ID: "kept", Name: "kept", Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("10.90.1.0/24")}}}),
			tx.PutNetwork(&model.Network{ID: "gone", Name: "gone"}),
			tx.PutSandbox(&model.Sandbox{ID: "sb", Name: "sb"}),
			tx.PutEndpoint(&model.Endpoint{ID: "sb.kept", Sandbox: "sb", Network: "kept", IfName: "eth0"}),
			tx.Reserve("kept", addr("10.90.1.5"), "o"),
			tx.SetCursor("kept", addr("10.90.1.5")),
			tx.SetMeta("schema", "1"))
	})
	// A network removed later must not come back from the snapshot.
	update(t, s, func(tx Tx) error { return tx.DeleteNetwork("gone") })
}

// writtenInBoot1 leaves at path a state file filled (fillForReboot) and
// closed during boot "boot-1".
func writtenInBoot1(t *testing.T, path string) {
	t.Helper()
	withBoot(t, "boot-1")
	s := mustOpen(t, path)
	fillForReboot(t, s)
	s.Close()
}

func TestBoltNewBootKeepsOnlyNetworks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	writtenInBoot1(t, path)
	withBoot(t, "boot-2")
	s := mustOpen(t, path)
	defer s.Close()
	view(t, s, func(tx Tx) error {
		nets, _ := tx.Networks()
		sbs, _ := tx.Sandboxes()
		eps, _ := tx.Endpoints()
		res, _ := tx.Reservations("kept")
		c, _ := tx.Cursor("kept", false)
		m, _ := tx.Meta("schema")
		if len(nets) != 1 || nets[0].Name != "kept" || nets[0].Subnets[0].Prefix != netip.MustParsePrefix("10.90.1.0/24") {
			t.Errorf("networks after a new boot: %+v", nets)
		}
		if len(sbs) != 0 || len(eps) != 0 || len(res) != 0 || c.IsValid() {
			t.Errorf("runtime state survived a new boot: %d sandboxes, %d endpoints, %v, cursor %v", len(sbs), len(eps), res, c)
		}
		if m != "1" {
			t.Errorf("meta after a new boot: %q", m)
		}
		return nil
	})
	if _, err := os.Stat(path + previousSuffix); err != nil {
		t.Errorf("the previous boot's file was not kept: %v", err)
	}
}

func TestBoltSameBootKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	withBoot(t, "boot-1")
	s := mustOpen(t, path)
	if !s.(*boltStore).db.NoSync {
		t.Error("runtime commits are fsynced although the boot ID is known")
	}
	fillForReboot(t, s)
	s.Close()
	s = mustOpen(t, path)
	defer s.Close()
	view(t, s, func(tx Tx) error {
		nets, _ := tx.Networks()
		sbs, _ := tx.Sandboxes()
		res, _ := tx.Reservations("kept")
		if len(nets) != 1 || len(sbs) != 1 || len(res) != 1 {
			t.Errorf("same boot lost state: %d networks, %d sandboxes, %v", len(nets), len(sbs), res)
		}
		return nil
	})
}

// A state file torn by a power loss is never read: a new boot starts from
// the snapshot.
func TestBoltNewBootIgnoresTornFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	writtenInBoot1(t, path)
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xff}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	withBoot(t, "boot-2")
	s := mustOpen(t, path) // a torn file is not even read
	defer s.Close()
	view(t, s, func(tx Tx) error {
		if _, err := tx.Network("kept"); err != nil {
			t.Error(err)
		}
		return nil
	})
}

// A state file from before the snapshot existed was fsynced on every
// commit: it is taken whole, and the snapshot written from it.
func TestBoltUpgradeKeepsFsyncedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	writtenInBoot1(t, path)
	os.Remove(path + networksSuffix)
	os.Remove(path + bootSuffix)
	withBoot(t, "boot-2")
	s := mustOpen(t, path)
	defer s.Close()
	view(t, s, func(tx Tx) error {
		sbs, _ := tx.Sandboxes()
		if len(sbs) != 1 {
			t.Errorf("upgrade lost the sandboxes of a whole file: %d", len(sbs))
		}
		return nil
	})
	snap, err := readSnapshot(path + networksSuffix)
	if err != nil || len(snap.Networks) != 1 {
		t.Errorf("snapshot after upgrade: %+v %v", snap, err)
	}
}

// A failed transaction leaves the snapshot as it was.
func TestBoltSnapshotFollowsCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	withBoot(t, "boot-1")
	s := mustOpen(t, path)
	defer s.Close()
	update(t, s, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "a", Name: "a"}) })
	_ = s.Update(context.Background(), func(tx Tx) error {
		_ = tx.PutNetwork(&model.Network{ID: "b", Name: "b"})
		return errors.New("abort")
	})
	snap, err := readSnapshot(path + networksSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Networks["a"]; !ok || len(snap.Networks) != 1 {
		t.Errorf("snapshot %v, want network a only", snap.Networks)
	}
}

func TestBoltSecondDaemonDoesNotSetFileAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	withBoot(t, "boot-1")
	s := mustOpen(t, path)
	defer s.Close()
	fillForReboot(t, s)
	os.Remove(path + bootSuffix) // as if from another boot
	if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(path + previousSuffix); err == nil {
		t.Error("an open state file was set aside")
	}
}

// Updates queued behind a commit share the next one; a function that
// fails leaves none of its writes and gets the error a serial run gives
// (here: the address is taken by an earlier Update), and the others
// commit.
func TestBoltGroupCommit(t *testing.T) {
	s := impls[1].open(t).(*boltStore)
	var mu sync.Mutex
	commits, runs := 0, 0
	run := s.group.Run
	s.group.Run = func(fns []batchItem) []error {
		mu.Lock()
		commits++
		mu.Unlock()
		return run(fns)
	}
	count := func(fn func(Tx) error) func(Tx) error {
		return func(tx Tx) error {
			mu.Lock()
			runs++
			mu.Unlock()
			return fn(tx)
		}
	}
	release, started := make(chan struct{}), make(chan struct{})
	var once sync.Once
	first := make(chan error, 1)
	go func() {
		first <- s.Update(context.Background(), func(tx Tx) error {
			once.Do(func() { close(started) })
			<-release // holds the writer while the others queue
			return tx.Reserve("n", addr("10.1.0.1"), "first")
		})
	}()
	<-started
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(context.Background(), count(func(tx Tx) error {
				if err := tx.Reserve("n", addr(fmt.Sprintf("10.1.1.%d", i)), fmt.Sprint(i)); err != nil {
					return err
				}
				if i%5 == 4 { // after a write of its own, claim what first holds
					return tx.Reserve("n", addr("10.1.0.1"), fmt.Sprint(i))
				}
				return nil
			}))
		})
	}
	waitUntil(t, func() bool { return queued(s) == n })
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if (i%5 == 4) != errors.Is(err, model.ErrConflict) || (i%5 != 4 && err != nil) {
			t.Errorf("Update %d: %v", i, err)
		}
	}
	if commits != 2 {
		t.Errorf("%d batches for 1 + %d Updates, want 2", commits, n)
	}
	if runs <= n {
		t.Errorf("%d runs of %d functions: the failures did not make the batch run again", runs, n)
	}
	view(t, s, func(tx Tx) error {
		res, err := tx.Reservations("n")
		if err != nil {
			return err
		}
		want := map[netip.Addr]string{addr("10.1.0.1"): "first"}
		for i := range n {
			if i%5 != 4 {
				want[addr(fmt.Sprintf("10.1.1.%d", i))] = fmt.Sprint(i)
			}
		}
		if diff := cmp.Diff(want, res, netipEqual...); diff != "" {
			t.Errorf("reservations (-want +got):\n%s", diff)
		}
		return nil
	})
}

// queued is how many Updates wait for the next batch.
func queued(s *boltStore) int { return s.group.Queued() }

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// Records are keyed by ID and found by name through indexes: a record put
// again under its ID with a new name is renamed (the old name is free, its
// reservations stay), a name held by another ID is refused, a network
// removed and created again under its name starts without the old one's
// reservations, and an endpoint with another ID on the same sandbox and
// network replaces the one there, indexes and all.
func TestIDKeys(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		ip := addr("10.90.1.5")
		update(t, s, func(tx Tx) error {
			return errors.Join(tx.PutNetwork(&model.Network{ID: "id-web", Name: "web"}), tx.Reserve("id-web", ip, "ep"),
				tx.PutSandbox(&model.Sandbox{ID: "id-a", Name: "a", ContainerID: "c1"}),
				tx.PutEndpoint(&model.Endpoint{ID: "ep", Sandbox: "a", Network: "web", IfName: "eth0",
					Ports: []model.PortMapping{{Proto: "tcp", HostPort: 8080, HostPortEnd: 8080}}}))
		})
		// Missing IDs and taken names change nothing.
		for name, fn := range map[string]func(Tx) error{
			"network without ID":  func(tx Tx) error { return tx.PutNetwork(&model.Network{Name: "x"}) },
			"sandbox without ID":  func(tx Tx) error { return tx.PutSandbox(&model.Sandbox{Name: "x"}) },
			"endpoint without ID": func(tx Tx) error { return tx.PutEndpoint(&model.Endpoint{Sandbox: "a", Network: "web"}) },
		} {
			if err := s.Update(context.Background(), fn); !errors.Is(err, model.ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", name, err)
			}
		}
		for name, fn := range map[string]func(Tx) error{
			"network": func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "other", Name: "web"}) },
			"sandbox": func(tx Tx) error { return tx.PutSandbox(&model.Sandbox{ID: "other", Name: "a"}) },
		} {
			if err := s.Update(context.Background(), fn); !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "id-") {
				t.Errorf("%s name taken: %v, want ErrConflict naming the holder", name, err)
			}
		}
		// Renames.
		update(t, s, func(tx Tx) error {
			return errors.Join(tx.PutNetwork(&model.Network{ID: "id-web", Name: "front"}),
				tx.PutSandbox(&model.Sandbox{ID: "id-a", Name: "b", ContainerID: "c1"}))
		})
		view(t, s, func(tx Tx) error {
			if _, err := tx.Network("web"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("old network name after the rename: %v", err)
			}
			if _, err := tx.Sandbox("a"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("old sandbox name after the rename: %v", err)
			}
			n, err := tx.Network("front")
			n2, err2 := tx.NetworkByID("id-web")
			if err != nil || err2 != nil || n.ID != "id-web" || n2.Name != "front" {
				t.Errorf("renamed network: %+v %v, by ID %+v %v", n, err, n2, err2)
			}
			sb, err := tx.SandboxByID("id-a")
			if err != nil || sb.Name != "b" {
				t.Errorf("renamed sandbox by ID: %+v %v", sb, err)
			}
			if names, _ := tx.SandboxesOfContainer("c1"); !slices.Equal(names, []string{"b"}) {
				t.Errorf("container index after the rename: %v", names)
			}
			// The endpoint follows both renames, indexes and all.
			if ep, err := tx.Endpoint("b", "front"); err != nil || ep.ID != "ep" {
				t.Errorf("endpoint after the renames: %+v %v", ep, err)
			}
			if _, err := tx.Endpoint("a", "web"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("endpoint under the old names: %v", err)
			}
			if h, _ := tx.NameHolders("front", model.DNSKey("b"), false); !slices.Equal(h, []string{"b"}) {
				t.Errorf("DNS name index after the renames: %v", h)
			}
			if h, _ := tx.EndpointsOnHostPort("tcp", 8080); len(h) != 1 || h[0].Sandbox != "b" || h[0].Network != "front" {
				t.Errorf("port index after the renames: %v", h)
			}
			if o, ok, _ := tx.Reservation("id-web", ip); !ok || o != "ep" {
				t.Errorf("reservation after the rename: %q %v", o, ok)
			}
			if nets, _ := tx.Networks(); len(nets) != 1 || nets[0].Name != "front" {
				t.Errorf("networks after the rename: %v", nets)
			}
			if _, err := tx.NetworkByID("web"); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("NetworkByID of a name: %v, want ErrNotFound", err)
			}
			return nil
		})
		// The freed names can be taken by others at once.
		update(t, s, func(tx Tx) error {
			return errors.Join(tx.PutNetwork(&model.Network{ID: "id-web2", Name: "web"}), tx.PutSandbox(&model.Sandbox{ID: "id-a2", Name: "a"}))
		})
		// An endpoint with another ID on the same pair replaces the old
		// one: its record, name and port index entries go.
		update(t, s, func(tx Tx) error {
			return tx.PutEndpoint(&model.Endpoint{ID: "ep2", Sandbox: "a", Network: "web", IfName: "eth0", Aliases: []string{"x"}})
		})
		update(t, s, func(tx Tx) error {
			return tx.PutEndpoint(&model.Endpoint{ID: "ep3", Sandbox: "a", Network: "web", IfName: "eth1"})
		})
		view(t, s, func(tx Tx) error {
			eps, _ := tx.Endpoints()
			var ids []string
			for _, e := range eps {
				ids = append(ids, e.ID+"@"+e.Sandbox+"/"+e.Network)
			}
			if want := []string{"ep3@a/web", "ep@b/front"}; !slices.Equal(ids, want) {
				t.Errorf("endpoints after replacing: %v, want %v", ids, want)
			}
			if h, _ := tx.NameHolders("web", "x", true); len(h) != 0 {
				t.Errorf("alias of the replaced endpoint still indexed: %v", h)
			}
			if h, _ := tx.EndpointsOnHostPort("tcp", 8080); len(h) != 1 || h[0].ID != "ep" {
				t.Errorf("port index: %v (ep keeps its port)", h)
			}
			on, _ := tx.EndpointsOnNetwork("web")
			of, _ := tx.EndpointsOfSandbox("a")
			if len(on) != 1 || on[0].ID != "ep3" || len(of) != 1 || of[0].ID != "ep3" {
				t.Errorf("indexes after replacing: on web %v, of a %v", on, of)
			}
			return nil
		})
		// Removing and re-creating a network under its name: no old
		// reservations.
		update(t, s, func(tx Tx) error {
			return errors.Join(tx.Reserve("id-web2", ip, "ep3"), tx.DeleteEndpoint("a", "web"), tx.DeleteNetwork("web"))
		})
		update(t, s, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "id-web3", Name: "web"}) })
		view(t, s, func(tx Tx) error {
			if res, _ := tx.Reservations("id-web3"); len(res) != 0 {
				t.Errorf("a new network under an old name has reservations: %v", res)
			}
			if res, _ := tx.Reservations("id-web2"); len(res) != 0 {
				t.Errorf("the removed network's reservations stayed: %v", res)
			}
			return nil
		})
	})
}
