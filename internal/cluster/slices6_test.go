package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/store/etcdtest"
)

// The slices of a dual-stack network: one per family per node, each kept
// by its own index.

func TestParseSliceIndexKey(t *testing.T) {
	c := &Cluster{prefix: prefix}
	for _, x := range []struct {
		key           string
		network, node string
		v6, ok        bool
	}{
		{prefix + "slices-by-node/web/h1", "web", "h1", false, true},
		{prefix + "slices-by-node/web/h1/ipv6", "web", "h1", true, true},
		{prefix + "slices-by-node/web", "", "", false, false},
		{prefix + "slices-by-node/web/h1/ipv4", "", "", false, false},
		{prefix + "slices-by-node/web/ipv6", "", "", false, false},
		{prefix + "slices/web/h1", "", "", false, false},
	} {
		network, node, v6, ok := c.parseSliceIndexKey(x.key)
		if network != x.network || node != x.node || v6 != x.v6 || ok != x.ok {
			t.Errorf("parseSliceIndexKey(%q) = %q, %q, %v, %v; want %q, %q, %v, %v", x.key, network, node, v6, ok, x.network, x.node, x.v6, x.ok)
		}
		if ok {
			if back := c.sliceIndexKey(network, node, v6); back != x.key {
				t.Errorf("sliceIndexKey(%q, %q, %v) = %q, want %q", network, node, v6, back, x.key)
			}
		}
	}
}

// A node claims a slice of each family; a restart gets both back, a
// second node the next ones; release, expiry and forgetting take both.
func TestClaimSliceDualStack(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	v4, v6 := netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd00:20::/48")
	claim := func(cl *Cluster, node string) []netip.Prefix {
		t.Helper()
		var out []netip.Prefix
		for _, sub := range []netip.Prefix{v4, v6} {
			p, err := cl.ClaimSlice(ctx, "ov", sub, 0, node)
			if err != nil {
				t.Fatalf("%s claims a slice of %s: %v", node, sub, err)
			}
			out = append(out, p)
		}
		return out
	}
	a := join(t, c.cli, node("a1", "198.51.100.1"), 5*time.Second)
	b := join(t, etcdtest.NewClient(t, c.cli), node("b2", "198.51.100.2"), 5*time.Second)
	pa, pb := claim(a.Cluster, "a1"), claim(b.Cluster, "b2")
	if fmt.Sprint(pa) != "[10.20.0.0/24 fd00:20::/64]" || fmt.Sprint(pb) != "[10.20.1.0/24 fd00:20:0:1::/64]" {
		t.Fatalf("a1 got %v, b2 %v: want the first slices of each family in order", pa, pb)
	}
	// The IPv6 slice has its own index; the IPv4 one the key it always had.
	for _, x := range []struct {
		key, want string
	}{{prefix + "slices-by-node/ov/a1", "10.20.0.0/24"}, {prefix + "slices-by-node/ov/a1/ipv6", "fd00:20::/64"}} {
		r, err := c.cli.Get(ctx, x.key)
		if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != x.want {
			t.Errorf("%s: %v, %v; want %s", x.key, r.Kvs, err, x.want)
		}
	}
	sl, err := c.Slices(ctx, "ov")
	if err != nil || fmt.Sprint(sl) != "map[a1:[10.20.0.0/24 fd00:20::/64] b2:[10.20.1.0/24 fd00:20:0:1::/64]]" {
		t.Errorf("Slices: %v, %v", sl, err)
	}
	// a1 restarts: both slices back, in either order of claims.
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := b.ClaimSlice(ctx, "ov", v6, 0, "c3"); err != nil || p.String() != "fd00:20:0:2::/64" {
		t.Fatalf("c3 while a1 is away: %v, %v", p, err)
	}
	a = join(t, etcdtest.NewClient(t, c.cli), node("a1", "198.51.100.1"), 5*time.Second)
	if p, err := a.ClaimSlice(ctx, "ov", v6, 0, "a1"); err != nil || p != pa[1] {
		t.Errorf("a1's IPv6 slice after a restart: %v, %v; want %v", p, err, pa[1])
	}
	if p, err := a.ClaimSlice(ctx, "ov", v4, 0, "a1"); err != nil || p != pa[0] {
		t.Errorf("a1's IPv4 slice after a restart: %v, %v; want %v", p, err, pa[0])
	}
	// Reclaim, per family.
	if err := a.ReclaimSlice(ctx, "ov", pa[1], "a1"); err != nil {
		t.Errorf("reclaim its own IPv6 slice: %v", err)
	}
	// Release takes both slices and both indexes.
	if err := b.ReleaseSlice(ctx, "ov", "b2"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.cli.Get(ctx, prefix+"slices-by-node/ov/b2", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 0 {
		t.Errorf("b2's indexes after release: %v, %v", r.Kvs, err)
	}
	if got := claim(c, "d4"); fmt.Sprint(got) != "[10.20.1.0/24 fd00:20:0:1::/64]" {
		t.Errorf("d4 after b2 released: %v, want b2's old slices", got)
	}
	// Expiry: d4 (no record) loses both, a1 (live) keeps both.
	released, err := c.ExpireSlices(ctx, "ov", nil)
	if err != nil || fmt.Sprint(released) != "map[c3:[fd00:20:0:2::/64] d4:[10.20.1.0/24 fd00:20:0:1::/64]]" {
		t.Errorf("ExpireSlices: %v, %v", released, err)
	}
	if r, err := c.cli.Get(ctx, prefix+"slices-by-node/ov/d4", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 0 {
		t.Errorf("d4's indexes after expiry: %v, %v", r.Kvs, err)
	}
	// Forget: both of a dead node's slices, one entry per network.
	claim(c, "e5")
	got, err := c.Forget(ctx, "e5")
	if err != nil || fmt.Sprint(got.Slices) != "map[ov:[10.20.1.0/24 fd00:20:0:1::/64]]" {
		t.Errorf("Forget e5: %+v, %v", got, err)
	}
	if sl, _ := c.Slices(ctx, "ov"); fmt.Sprint(sl) != "map[a1:[10.20.0.0/24 fd00:20::/64]]" {
		t.Errorf("slices at the end: %v", sl)
	}
}

// Records from before overlays were dual-stack (the IPv4 index without a
// suffix, which is what an IPv4 claim still writes): a node that comes
// back with a dual-stack network of the same range gets its IPv4 slice
// back, and an IPv6 one beside it.
func TestClaimSliceKeepsRecordsFromBefore(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	for k, v := range map[string]string{
		prefix + "slices/web/10.200.7.0/24":   "h1",
		prefix + "slices-by-node/web/h1":      "10.200.7.0/24",
		prefix + "slices/web/10.200.0.0/24":   "h2",
		prefix + "slices-by-node/web/h2":      "10.200.0.0/24",
		prefix + "slices/other/10.201.0.0/24": "h1",
		prefix + "slices-by-node/other/h1":    "10.201.0.0/24",
	} {
		if _, err := c.cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	p4, err := c.ClaimSlice(ctx, "web", netip.MustParsePrefix("10.200.0.0/16"), 24, "h1")
	if err != nil || p4.String() != "10.200.7.0/24" {
		t.Errorf("h1's IPv4 slice: %v, %v; want the one its record has, 10.200.7.0/24", p4, err)
	}
	p6, err := c.ClaimSlice(ctx, "web", netip.MustParsePrefix("fd00:200::/48"), 64, "h1")
	if err != nil || p6.String() != "fd00:200::/64" {
		t.Errorf("h1's IPv6 slice: %v, %v", p6, err)
	}
	tp, err := c.ReadTopology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tp.Slices); got != "map[other:map[h1:[10.201.0.0/24]] web:map[h1:[10.200.7.0/24 fd00:200::/64] h2:[10.200.0.0/24]]]" {
		t.Errorf("topology slices: %s", got)
	}
}

// FollowTopology keeps each family of a node's slices apart: an index of
// one family that goes takes that slice only.
func TestFollowTopologyDualStack(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	a := join(t, c.cli, node("a1", "198.51.100.1"), 5*time.Second)
	got := make(chan Topology, 64)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.FollowTopology(fctx, func(t Topology) { got <- t }, func(err error) { t.Logf("follow: %v", err) })
	until := func(what string, ok func([]netip.Prefix) bool) {
		t.Helper()
		deadline := time.After(waitTimeout)
		for {
			select {
			case tp := <-got:
				if ok(tp.Slices["web"]["a1"]) {
					return
				}
			case <-deadline:
				t.Fatalf("no topology with %s", what)
			}
		}
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.200.0.0/24"), netip.MustParsePrefix("fd00:200::/64")}
	// IPv6 first: the topology still lists IPv4 first.
	for _, sub := range []string{"fd00:200::/48", "10.200.0.0/16"} {
		if _, err := a.ClaimSlice(ctx, "web", netip.MustParsePrefix(sub), 0, "a1"); err != nil {
			t.Fatal(err)
		}
	}
	until("a1's two slices", func(ps []netip.Prefix) bool { return slices.Equal(ps, want) })
	if _, err := c.cli.Delete(ctx, c.sliceIndexKey("web", "a1", true)); err != nil {
		t.Fatal(err)
	}
	until("a1's IPv4 slice only", func(ps []netip.Prefix) bool { return slices.Equal(ps, want[:1]) })
	if _, err := c.cli.Delete(ctx, c.sliceIndexKey("web", "a1", false)); err != nil {
		t.Fatal(err)
	}
	until("a1 without slices", func(ps []netip.Prefix) bool { return ps == nil })
}
