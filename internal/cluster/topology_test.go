package cluster

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"pontoon/internal/store/etcdtest"
)

// FollowTopology sees a node join, claim a slice, and go (leave, and a
// lease that expires), each as a change, without polling.
func TestFollowTopology(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	a := join(t, cli, node("a1", "198.51.100.1"), 5*time.Second)
	if _, err := a.ClaimSlice(ctx, "web", netip.MustParsePrefix("10.200.0.0/16"), 24, "a1"); err != nil {
		t.Fatal(err)
	}
	got := make(chan Topology, 64)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.FollowTopology(fctx, func(t Topology) { got <- t }, func(err error) { t.Logf("follow: %v", err) })
	// until waits for a topology that satisfies ok.
	until := func(what string, ok func(Topology) bool) Topology {
		t.Helper()
		deadline := time.After(waitTimeout)
		for {
			select {
			case tp := <-got:
				if ok(tp) {
					return tp
				}
			case <-deadline:
				t.Fatalf("no topology with %s", what)
			}
		}
	}
	first := until("a1 and its slice", func(tp Topology) bool {
		_, ok := tp.Nodes["a1"]
		return ok && slices.Equal(tp.Slices["web"]["a1"], []netip.Prefix{netip.MustParsePrefix("10.200.0.0/24")})
	})
	if first.Revision == 0 {
		t.Error("topology without a revision")
	}

	if n := first.Nodes["a1"]; n.VTEPMAC != "02:00:00:00:00:01" {
		t.Errorf("a1's record has VTEP MAC %q, want the one it joined with, 02:00:00:00:00:01", n.VTEPMAC)
	}

	bcli := etcdtest.NewClient(t, cli)
	start := time.Now()
	bn := node("b2", "198.51.100.2")
	bn.VTEPMAC = "02:AA:BB:CC:DD:02" // stored normalised
	bn.Instance = "b2-instance"
	b := join(t, bcli, bn, 2*time.Second)
	if _, err := b.ClaimSlice(ctx, "web", netip.MustParsePrefix("10.200.0.0/16"), 24, "b2"); err != nil {
		t.Fatal(err)
	}
	tp := until("b2 and its slice", func(tp Topology) bool {
		n, ok := tp.Nodes["b2"]
		return ok && n.Underlay == netip.MustParseAddr("198.51.100.2") && len(tp.Slices["web"]["b2"]) == 1
	})
	t.Logf("b2 seen after %v", time.Since(start))
	if slices.Equal(tp.Slices["web"]["b2"], tp.Slices["web"]["a1"]) {
		t.Errorf("two nodes with slice %s", tp.Slices["web"]["b2"])
	}
	if got := tp.Nodes["b2"].VTEPMAC; got != "02:aa:bb:cc:dd:02" {
		t.Errorf("b2's VTEP MAC in the topology: %q, want its record's, 02:aa:bb:cc:dd:02", got)
	}
	// b2 joins again over its own record with another MAC (its underlay
	// address changed, say): the followers see the new one.
	bn.VTEPMAC = "02:aa:bb:cc:dd:22"
	b = join(t, bcli, bn, 2*time.Second)
	until("b2's new VTEP MAC", func(tp Topology) bool { return tp.Nodes["b2"].VTEPMAC == "02:aa:bb:cc:dd:22" })
	// A node that dies: its lease expires and its record goes; its slice
	// stays (not lease-bound).
	b.cancel() // stop keeping the lease alive, as a killed daemon would
	tp = until("b2 gone", func(tp Topology) bool { _, ok := tp.Nodes["b2"]; return !ok })
	if len(tp.Slices["web"]["b2"]) != 1 {
		t.Error("b2's slice went with its lease")
	}
	// A released slice goes from the topology.
	if err := a.ReleaseSlice(ctx, "web", "b2"); err != nil {
		t.Fatal(err)
	}
	until("b2's slice released", func(tp Topology) bool { _, ok := tp.Slices["web"]["b2"]; return !ok })
}
