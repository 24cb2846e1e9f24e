package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// toOldLayout rewrites the daemon's state file (with the daemon stopped)
// the way a pontoon from before subnets and addresses were plural wrote
// it: networks with top-level subnet, gateway, ip_range and masquerade;
// endpoints with ip, prefix_len and gateway.
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
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A state file written by the IPv4-only layout opens and serves: the
// networks and endpoints it holds keep their addresses, their traffic
// flows, and new sandboxes get fresh addresses next to them.
func TestUpgradeFromIPv4OnlyLayout(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "app", "--subnet", "10.90.71.0/24", "--ip-range", "10.90.71.128/25", "--masquerade=false")
	h.P("sandbox", "create", "a", "--network", "app")
	ipA := h.IP("a", "app")
	h.Stop()
	toOldLayout(t, filepath.Join(h.Root, "pontoon.db"))
	h.Start()

	if got := h.IP("a", "app"); got != ipA {
		t.Fatalf("a's address after the upgrade %s, want %s", got, ipA)
	}
	insp := h.P("network", "inspect", "app")
	if !strings.Contains(insp, "10.90.71.0/24  gateway 10.90.71.1  ip-range 10.90.71.128/25  masquerade false") {
		t.Fatalf("network inspect app after the upgrade:\n%s", insp)
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
