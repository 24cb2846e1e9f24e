package cluster

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/store/etcdtest"
)

// Forget releases a dead node's slices, names and static addresses, and
// nothing of another node's; a live node is refused.
func TestForget(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	a := join(t, cli, node("a1", "198.51.100.1"), 5*time.Second)
	b := join(t, etcdtest.NewClient(t, cli), node("b2", "198.51.100.2"), 5*time.Second)
	subnet := netip.MustParsePrefix("10.200.0.0/16")
	for _, n := range []string{"a1", "b2"} {
		for _, network := range []string{"web", "db"} {
			if _, err := a.ClaimSlice(ctx, network, subnet, 24, n); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.PutName(ctx, Name{Network: "web", Sandbox: "s-" + n, Node: n, IPs: []netip.Addr{netip.MustParseAddr("10.200.0.9")}}); err != nil {
			t.Fatal(err)
		}
	}
	bSlice, _ := a.Slices(ctx, "web")
	if err := a.ReserveStatic(ctx, "web", bSlice["b2"][0].Addr().Next().Next(), "b2/s-b2"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Forget(ctx, "b2"); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("forget a live node: %v", err)
	}
	b.cancel() // b2's daemon dies; its lease expires
	deadline := time.Now().Add(waitTimeout)
	for {
		nodes, _, err := a.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b2 still live: %v", names(nodes))
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, err := a.Forget(ctx, "b2")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Slices) != 2 || got.Names != 1 || got.Static != 1 {
		t.Errorf("forgot %+v, want 2 slices, 1 name, 1 static address", got)
	}
	for _, network := range []string{"web", "db"} {
		sl, _ := a.Slices(ctx, network)
		if _, ok := sl["b2"]; ok || len(sl["a1"]) != 1 {
			t.Errorf("slices of %s after forgetting b2: %v", network, sl)
		}
	}
	ns, _, _ := a.Names(ctx)
	if len(ns) != 1 || ns[0].Node != "a1" {
		t.Errorf("names after forgetting b2: %+v", ns)
	}
	if st, _ := a.StaticReservations(ctx, "web"); len(st) != 0 {
		t.Errorf("static addresses after forgetting b2: %v", st)
	}
	// The freed slice goes to the next claimant.
	if p, err := a.ClaimSlice(ctx, "web", subnet, 24, "c3"); err != nil || p != bSlice["b2"][0] {
		t.Errorf("c3 claimed %v, %v; want b2's old slice %v", p, err, bSlice["b2"])
	}
}

// A node that was forgotten while away takes its slice back when it
// returns; a slice another node holds meanwhile is refused.
func TestReclaimSlice(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	subnet := netip.MustParsePrefix("10.200.0.0/16")
	s1, err := c.ClaimSlice(ctx, "web", subnet, 24, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ReclaimSlice(ctx, "web", s1, "a1"); err != nil {
		t.Fatalf("reclaim its own slice: %v", err)
	}
	if _, err := c.Forget(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReclaimSlice(ctx, "web", s1, "a1"); err != nil {
		t.Fatalf("reclaim a released slice: %v", err)
	}
	if got, err := c.ClaimSlice(ctx, "web", subnet, 24, "a1"); err != nil || got != s1 {
		t.Errorf("a1's slice after reclaiming: %v, %v; want %v", got, err, s1)
	}
	if err := c.ReclaimSlice(ctx, "web", s1, "b2"); !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "a1") {
		t.Errorf("reclaim a1's slice for b2: %v", err)
	}
}
