package store

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/model"
)

var netipEqual = []cmp.Option{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

// Every test runs against both implementations: they must agree.
func forEach(t *testing.T, fn func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) { fn(t, NewMemory()) })
	t.Run("bolt", func(t *testing.T) {
		s, err := Open(filepath.Join(t.TempDir(), "state.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fn(t, s)
	})
}

func TestObjects(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		n := &model.Network{Name: "net", Subnet: netip.MustParsePrefix("10.90.1.0/24"), Labels: map[string]string{"a": "b"}}
		sb := &model.Sandbox{Name: "sb", Kind: model.KindPontoon}
		eps := []*model.Endpoint{
			{ID: "1", Sandbox: "sb", Network: "net", IfName: "eth10", IP: netip.MustParseAddr("10.90.1.2")},
			{ID: "2", Sandbox: "sb", Network: "z", IfName: "eth2"},
			{ID: "3", Sandbox: "sb", Network: "a", IfName: "eth0"},
			{ID: "4", Sandbox: "other", Network: "net", IfName: "eth0"},
		}
		if err := s.Update(func(tx Tx) error {
			if err := tx.PutNetwork(n); err != nil {
				return err
			}
			if err := tx.PutSandbox(sb); err != nil {
				return err
			}
			for _, e := range eps {
				if err := tx.PutEndpoint(e); err != nil {
					return err
				}
			}
			return tx.SetMeta("schema", "1")
		}); err != nil {
			t.Fatal(err)
		}
		_ = s.View(func(tx Tx) error {
			got, err := tx.Network("net")
			if err != nil || !cmp.Equal(got, n, netipEqual...) {
				t.Fatalf("network: %v %s", err, cmp.Diff(n, got, netipEqual...))
			}
			if _, err := tx.Network("nope"); !errors.Is(err, model.ErrNotFound) || !strings.Contains(err.Error(), "pontoon network ls") {
				t.Fatalf("missing network: %v", err)
			}
			if _, err := tx.Sandbox("nope"); !errors.Is(err, model.ErrNotFound) {
				t.Fatalf("missing sandbox: %v", err)
			}
			of, _ := tx.EndpointsOfSandbox("sb")
			var names []string
			for _, e := range of {
				names = append(names, e.IfName)
			}
			if strings.Join(names, ",") != "eth0,eth2,eth10" {
				t.Fatalf("order %v", names)
			}
			on, _ := tx.EndpointsOnNetwork("net")
			if len(on) != 2 || on[0].Sandbox != "other" || on[1].Sandbox != "sb" {
				t.Fatalf("on network: %+v", on)
			}
			if v, _ := tx.Meta("schema"); v != "1" {
				t.Fatalf("meta %q", v)
			}
			if err := tx.PutSandbox(sb); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("write in View: %v", err)
			}
			return nil
		})
		if err := s.Update(func(tx Tx) error { return tx.DeleteEndpoint("other", "net") }); err != nil {
			t.Fatal(err)
		}
		_ = s.View(func(tx Tx) error {
			on, _ := tx.EndpointsOnNetwork("net")
			if len(on) != 1 {
				t.Fatalf("index not updated: %+v", on)
			}
			return nil
		})
	})
}

func TestRollbackAndReservations(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		ip := netip.MustParseAddr("10.90.1.5")
		boom := errors.New("boom")
		err := s.Update(func(tx Tx) error {
			_ = tx.PutNetwork(&model.Network{Name: "n"})
			_ = tx.Reserve("n", ip, "a")
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		_ = s.View(func(tx Tx) error {
			if _, err := tx.Network("n"); err == nil {
				t.Fatal("failed Update left a network")
			}
			if _, ok, _ := tx.Reservation("n", ip); ok {
				t.Fatal("failed Update left a reservation")
			}
			return nil
		})
		if err := s.Update(func(tx Tx) error {
			if err := tx.PutNetwork(&model.Network{Name: "n"}); err != nil {
				return err
			}
			if err := tx.Reserve("n", ip, "a"); err != nil {
				return err
			}
			if err := tx.Reserve("n", ip, "a"); err != nil {
				return err // same owner: fine
			}
			return tx.SetCursor("n", ip)
		}); err != nil {
			t.Fatal(err)
		}
		err = s.Update(func(tx Tx) error { return tx.Reserve("n", ip, "b") })
		if !errors.Is(err, model.ErrConflict) {
			t.Fatalf("double reservation: %v", err)
		}
		if err := s.Update(func(tx Tx) error { return tx.DeleteNetwork("n") }); err != nil {
			t.Fatal(err)
		}
		_ = s.View(func(tx Tx) error {
			res, _ := tx.Reservations("n")
			c, _ := tx.Cursor("n")
			if len(res) != 0 || c.IsValid() {
				t.Fatalf("DeleteNetwork left %v / cursor %v", res, c)
			}
			return nil
		})
	})
}

func TestBoltReopenAndLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx Tx) error { return tx.PutNetwork(&model.Network{Name: "kept"}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); err == nil || !strings.Contains(err.Error(), "locked by another pontoon daemon") {
		t.Fatalf("second open: %v", err)
	}
	s.Close()
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.View(func(tx Tx) error { _, err := tx.Network("kept"); return err }); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
}
