package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"pontoon/internal/model"
)

// holders renders who holds key on network: "web(name) pool(alias)".
func holders(t *testing.T, tx Tx, network, key string) string {
	t.Helper()
	var out []string
	for _, alias := range []bool{false, true} {
		hs, err := tx.NameHolders(network, key, alias)
		if err != nil {
			t.Fatal(err)
		}
		kind := "(name)"
		if alias {
			kind = "(alias)"
		}
		for _, h := range hs {
			out = append(out, h+kind)
		}
	}
	return strings.Join(out, " ")
}

func TestNameHolders(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		update(t, s, func(tx Tx) error {
			for _, e := range []*model.Endpoint{
				{ID: "1", Sandbox: "MyWeb", Network: "app", Aliases: []string{"Pool", "front"}},
				{ID: "2", Sandbox: "db", Network: "app", Aliases: []string{"pool", "POOL"}},
				{ID: "3", Sandbox: "myweb", Network: "other"},
				{ID: "4", Sandbox: "web", Network: "app"},
				{ID: "5", Sandbox: "db", Network: "app2"}, // "app2" starts with "app"
			} {
				if err := tx.PutEndpoint(e); err != nil {
					return err
				}
			}
			return nil
		})
		view(t, s, func(tx Tx) error {
			for key, want := range map[string]string{
				"myweb": "MyWeb(name)",            // by DNS key, not by spelling
				"pool":  "MyWeb(alias) db(alias)", // db's two spellings are one entry
				"front": "MyWeb(alias)",
				"web":   "web(name)", // not a prefix match of "myweb"
				"db":    "db(name)",  // app2's db is not app's
				"nope":  "",
			} {
				if got := holders(t, tx, "app", key); got != want {
					t.Errorf("holders of %s on app: %q, want %q", key, got, want)
				}
			}
			if got := holders(t, tx, "other", "myweb"); got != "myweb(name)" {
				t.Errorf("holders of myweb on other: %q", got)
			}
			return nil
		})
		// Replacing an endpoint replaces its entries; deleting it drops them;
		// a failed transaction leaves them as they were.
		update(t, s, func(tx Tx) error {
			return tx.PutEndpoint(&model.Endpoint{ID: "1", Sandbox: "MyWeb", Network: "app", Aliases: []string{"front"}})
		})
		_ = s.Update(context.Background(), func(tx Tx) error {
			if err := tx.DeleteEndpoint("db", "app"); err != nil {
				return err
			}
			return model.Conflictf("rolled back")
		})
		view(t, s, func(tx Tx) error {
			if got := holders(t, tx, "app", "pool"); got != "db(alias)" {
				t.Errorf("pool after replace and a rolled-back delete: %q", got)
			}
			return nil
		})
		update(t, s, func(tx Tx) error { return tx.DeleteEndpoint("db", "app") })
		view(t, s, func(tx Tx) error {
			for key, want := range map[string]string{"pool": "", "db": "", "front": "MyWeb(alias)", "myweb": "MyWeb(name)"} {
				if got := holders(t, tx, "app", key); got != want {
					t.Errorf("holders of %s after delete: %q, want %q", key, got, want)
				}
			}
			if got := holders(t, tx, "app2", "db"); got != "db(name)" {
				t.Errorf("app2's db after app's went: %q", got)
			}
			return nil
		})
	})
}

// A state file written before the name index gets it built when opened.
func TestBoltIndexesNamesOfOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := mustOpen(t, path)
	update(t, s, func(tx Tx) error {
		return tx.PutEndpoint(&model.Endpoint{ID: "1", Sandbox: "MyWeb", Network: "app", Aliases: []string{"Pool"}})
	})
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(btx *bolt.Tx) error { return btx.DeleteBucket([]byte(bEpNames)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = mustOpen(t, path)
	defer s.Close()
	view(t, s, func(tx Tx) error {
		if got := holders(t, tx, "app", "myweb") + " " + holders(t, tx, "app", "pool"); got != "MyWeb(name) MyWeb(alias)" {
			t.Errorf("after reopening: %q", got)
		}
		return nil
	})
}

// BenchmarkNameHolders: who holds a name on a network of 1000 endpoints,
// from the index and, for comparison, by reading every endpoint there (what
// a check without the index would do on each attach).
//
//	go test -run '^$' -bench NameHolders ./internal/store/
func BenchmarkNameHolders(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(context.Background(), func(tx Tx) error {
		for i := range 1000 {
			if err := tx.PutEndpoint(&model.Endpoint{ID: fmt.Sprint(i), Sandbox: fmt.Sprintf("sb%04d", i), Network: "app",
				IfName: "eth0", Aliases: []string{"pool"}, State: model.StateReady}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			_ = s.View(context.Background(), func(tx Tx) error {
				for _, alias := range []bool{false, true} {
					if _, err := tx.NameHolders("app", "sb0500", alias); err != nil {
						return err
					}
				}
				return nil
			})
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			_ = s.View(context.Background(), func(tx Tx) error {
				eps, err := tx.EndpointsOnNetwork("app")
				for _, e := range eps {
					_ = model.DNSKey(e.Sandbox) == "sb0500"
				}
				return err
			})
		}
	})
}
