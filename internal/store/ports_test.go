package store

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"pontoon/internal/model"
)

// onPort renders who holds a host port: "web/app db/app".
func onPort(t *testing.T, tx Tx, proto string, port uint16) string {
	t.Helper()
	eps, err := tx.EndpointsOnHostPort(proto, port)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range eps {
		out = append(out, e.Sandbox+"/"+e.Network)
	}
	return strings.Join(out, " ")
}

func pm(hostIP string, port, end uint16, proto string) model.PortMapping {
	m := model.PortMapping{HostPort: port, HostPortEnd: end, Port: port, PortEnd: end, Proto: proto}
	if hostIP != "" {
		m.HostIP = netip.MustParseAddr(hostIP)
	}
	return m
}

func TestEndpointsOnHostPort(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		update(t, s, func(tx Tx) error {
			for _, e := range []*model.Endpoint{
				{ID: "1", Sandbox: "web", Network: "app", Ports: []model.PortMapping{pm("", 8080, 8080, "tcp"), pm("", 53, 53, "udp")}},
				{ID: "2", Sandbox: "db", Network: "app", Ports: []model.PortMapping{pm("127.0.0.1", 8080, 8082, "tcp")}},
				{ID: "3", Sandbox: "db", Network: "back", Ports: []model.PortMapping{pm("10.0.0.1", 65535, 65535, "tcp")}},
				{ID: "4", Sandbox: "plain", Network: "app"},
			} {
				if err := tx.PutEndpoint(e); err != nil {
					return err
				}
			}
			return nil
		})
		view(t, s, func(tx Tx) error {
			for _, c := range []struct {
				proto string
				port  uint16
				want  string
			}{
				{"tcp", 8080, "db/app web/app"},
				{"tcp", 8081, "db/app"}, // inside db's range
				{"tcp", 8083, ""},
				{"udp", 53, "web/app"},
				{"tcp", 53, ""}, // another protocol
				{"tcp", 65535, "db/back"},
				{"sctp", 8080, ""},
			} {
				if got := onPort(t, tx, c.proto, c.port); got != c.want {
					t.Errorf("%s/%d: %q, want %q", c.proto, c.port, got, c.want)
				}
			}
			return nil
		})
		// Replacing an endpoint replaces its entries; deleting it drops
		// them; a failed transaction leaves them as they were.
		update(t, s, func(tx Tx) error {
			return tx.PutEndpoint(&model.Endpoint{ID: "2", Sandbox: "db", Network: "app", Ports: []model.PortMapping{pm("", 9090, 9090, "tcp")}})
		})
		_ = s.Update(context.Background(), func(tx Tx) error {
			if err := tx.DeleteEndpoint("web", "app"); err != nil {
				return err
			}
			return model.Conflictf("rolled back")
		})
		view(t, s, func(tx Tx) error {
			for port, want := range map[uint16]string{8080: "web/app", 8081: "", 8082: "", 9090: "db/app"} {
				if got := onPort(t, tx, "tcp", port); got != want {
					t.Errorf("tcp/%d after replace and a rolled-back delete: %q, want %q", port, got, want)
				}
			}
			return nil
		})
		update(t, s, func(tx Tx) error { return tx.DeleteEndpoint("web", "app") })
		view(t, s, func(tx Tx) error {
			if got := onPort(t, tx, "tcp", 8080) + "|" + onPort(t, tx, "udp", 53); got != "|" {
				t.Errorf("after delete: %q", got)
			}
			return nil
		})
	})
}

// A state file written before the host port index gets it built when
// opened.
func TestBoltIndexesPortsOfOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := mustOpen(t, path)
	update(t, s, func(tx Tx) error {
		return tx.PutEndpoint(&model.Endpoint{ID: "1", Sandbox: "web", Network: "app", Ports: []model.PortMapping{pm("", 8080, 8081, "tcp")}})
	})
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(btx *bolt.Tx) error { return btx.DeleteBucket([]byte(bEpPorts)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = mustOpen(t, path)
	defer s.Close()
	view(t, s, func(tx Tx) error {
		if got := onPort(t, tx, "tcp", 8081); got != "web/app" {
			t.Errorf("after reopening: %q", got)
		}
		return nil
	})
}

// BenchmarkEndpointsOnHostPort: who publishes a host port, among 1000
// endpoints each publishing one, from the index and, for comparison, by
// reading every endpoint (what each attach with a published port did
// before the index).
//
//	go test -run '^$' -bench EndpointsOnHostPort ./internal/store/
func BenchmarkEndpointsOnHostPort(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(context.Background(), func(tx Tx) error {
		for i := range 1000 {
			if err := tx.PutEndpoint(&model.Endpoint{ID: fmt.Sprint(i), Sandbox: fmt.Sprintf("sb%04d", i), Network: "app",
				IfName: "eth0", State: model.StateReady, Ports: []model.PortMapping{pm("", uint16(10000+i), uint16(10000+i), "tcp")}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	want := pm("", 10500, 10500, "tcp")
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			_ = s.View(context.Background(), func(tx Tx) error {
				_, err := tx.EndpointsOnHostPort("tcp", 10500)
				return err
			})
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			_ = s.View(context.Background(), func(tx Tx) error {
				eps, err := tx.Endpoints()
				for _, e := range eps {
					for _, m := range e.Ports {
						_ = m.Overlaps(want)
					}
				}
				return err
			})
		}
	})
}
