package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// toOldLayout rewrites the daemon's state file (with the daemon stopped)
// the way a pontoon from before subnets and addresses were plural wrote
// it: networks with top-level subnet, gateway, ip_range and masquerade;
// endpoints with ip, prefix_len and gateway; and every record keyed by its
// name (layout 1: toNameKeys).
func toOldLayout(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rewrite := func(tx *bolt.Tx, bucket string, fn func(map[string]any)) {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			t.Fatalf("no bucket %s in %s", bucket, path)
		}
		type kv struct{ k, v []byte }
		var all []kv
		if err := b.ForEach(func(k, v []byte) error {
			if v != nil {
				all = append(all, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			var m map[string]any
			if err := json.Unmarshal(r.v, &m); err != nil {
				t.Fatal(err)
			}
			fn(m)
			out, _ := json.Marshal(m)
			if err := b.Put(r.k, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		rewrite(tx, "networks", func(m map[string]any) {
			s := m["subnets"].([]any)[0].(map[string]any)
			delete(m, "subnets")
			m["subnet"], m["gateway"], m["masquerade"] = s["subnet"], s["gateway"], s["masquerade"]
			if r, ok := s["ip_range"]; ok {
				m["ip_range"] = r
			}
		})
		rewrite(tx, "endpoints", func(m map[string]any) {
			a := m["addresses"].([]any)[0].(map[string]any)
			delete(m, "addresses")
			ip, bits, _ := strings.Cut(a["addr"].(string), "/")
			m["ip"], m["gateway"] = ip, a["gateway"]
			m["prefix_len"] = json.Number(bits)
		})
		return toNameKeys(tx)
	}); err != nil {
		t.Fatal(err)
	}
}

// toNameKeys moves a state file to layout 1: networks and sandboxes keyed
// by name, endpoints by "sandbox NUL network", reservations and cursors by
// the network's name, no name indexes and no layout mark.
func toNameKeys(tx *bolt.Tx) error {
	type rec struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Sandbox string `json:"sandbox"`
		Network string `json:"network"`
	}
	names := map[string]string{} // network ID → name
	for _, bucket := range []string{"networks", "sandboxes", "endpoints"} {
		b := tx.Bucket([]byte(bucket))
		type kv struct{ k, v []byte }
		var all []kv
		if err := b.ForEach(func(k, v []byte) error {
			all = append(all, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		}); err != nil {
			return err
		}
		for _, r := range all {
			var m rec
			if err := json.Unmarshal(r.v, &m); err != nil {
				return err
			}
			key := m.Name
			switch bucket {
			case "networks":
				names[m.ID] = m.Name
			case "endpoints":
				key = m.Sandbox + "\x00" + m.Network
				if err := tx.Bucket([]byte("endpoints-net")).Put([]byte(m.Network+"\x00"+m.Sandbox), []byte{}); err != nil {
					return err
				}
			}
			if err := errors.Join(b.Delete(r.k), b.Put([]byte(key), r.v)); err != nil {
				return err
			}
		}
	}
	ipam, cursors := tx.Bucket([]byte("ipam")), tx.Bucket([]byte("cursors"))
	for id, name := range names {
		if old := ipam.Bucket([]byte(id)); old != nil {
			nb, err := ipam.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			if err := old.ForEach(func(k, v []byte) error { return nb.Put(k, v) }); err != nil {
				return err
			}
			if err := ipam.DeleteBucket([]byte(id)); err != nil {
				return err
			}
		}
		for _, sfx := range []string{"", "\x00ipv6"} {
			if v := cursors.Get([]byte(id + sfx)); v != nil {
				v = append([]byte(nil), v...)
				if err := errors.Join(cursors.Delete([]byte(id+sfx)), cursors.Put([]byte(name+sfx), v)); err != nil {
					return err
				}
			}
		}
	}
	for _, b := range []string{"network-names", "sandbox-names", "endpoint-keys"} {
		if err := tx.DeleteBucket([]byte(b)); err != nil {
			return fmt.Errorf("drop %s: %w", b, err)
		}
	}
	return tx.Bucket([]byte("meta")).Delete([]byte("store.layout"))
}

// A state file written by the IPv4-only layout, which keyed records by
// name, opens and serves: the networks and endpoints it holds keep their
// addresses and their reservations (a static --ip of a held address is
// refused, naming the holder), their traffic flows, and new sandboxes get
// fresh addresses next to them.
func TestUpgradeFromIPv4OnlyLayout(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "app", "--subnet", "10.90.71.0/24", "--ip-range", "10.90.71.128/25", "--masquerade=false")
	h.P("sandbox", "create", "a", "--network", "app")
	ipA := h.IP("a", "app")
	h.Stop()
	toOldLayout(t, filepath.Join(h.Root, "pontoon.db"))
	h.Start()
	if !strings.Contains(h.Log(), "records keyed by ID") {
		t.Fatalf("the daemon did not say it moved the state file to ID keys:\n%s", h.Log())
	}

	if got := h.IP("a", "app"); got != ipA {
		t.Fatalf("a's address after the upgrade %s, want %s", got, ipA)
	}
	insp := h.P("network", "inspect", "app")
	if !strings.Contains(insp, "10.90.71.0/24  gateway 10.90.71.1  ip-range 10.90.71.128/25  masquerade false") {
		t.Fatalf("network inspect app after the upgrade:\n%s", insp)
	}
	if out := h.PFail("sandbox", "create", "c", "--network", "app", "--ip", ipA); !strings.Contains(out, "sandbox a") {
		t.Fatalf("static --ip %s of a after the upgrade: %s, want a conflict naming sandbox a", ipA, out)
	}
	h.P("sandbox", "create", "b", "--network", "app")
	if ipB := h.IP("b", "app"); ipB == ipA || !strings.HasPrefix(ipB, "10.90.71.") {
		t.Fatalf("b got %s (a has %s)", ipB, ipA)
	}
	h.MustPing("b", ipA)
	h.MustPing("a", h.IP("b", "app"))
	// The upgraded network takes an IPv6 address family only by being
	// created anew; its records are written in today's layout from now on.
	h.P("network", "disconnect", "app", "a")
	h.P("network", "connect", "app", "a", "--ip", ipA)
	h.MustPing("b", ipA)
}
