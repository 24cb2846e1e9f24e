package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// `sandbox inspect` gives each endpoint with a host end that end's
// counters turned round (what the host end sent, the sandbox received);
// an endpoint without a host end, or whose host end is missing, has none,
// nor do the lists, the records-only reads or the stored records.
func TestInspectSandboxStats(t *testing.T) {
	for _, few := range []int{fewLinks, 0} {
		t.Run(fmt.Sprintf("fewLinks=%d", few), func(t *testing.T) {
			defer func(old int) { fewLinks = old }(fewLinks)
			fewLinks = few
			testInspectSandboxStats(t)
		})
	}
}

func testInspectSandboxStats(t *testing.T) {
	env := newEnv(t)
	viewSetup(t, env)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "wire", Driver: model.DriverLink}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Connect(ctx, "a", model.AttachSpec{Network: "wire"}); err != nil {
		t.Fatal(err)
	}
	rec, err := env.e.Sandbox("a")
	if err != nil {
		t.Fatal(err)
	}
	eth0, eth1 := rec.Endpoints[0], rec.Endpoints[1]
	if !env.link.SetStats(eth0.HostIf, link.LinkStats{
		RxBytes: 1000, RxPackets: 10, RxDropped: 1, RxErrors: 2,
		TxBytes: 3000, TxPackets: 30, TxDropped: 3, TxErrors: 4,
	}) {
		t.Fatalf("no host end %s", eth0.HostIf)
	}

	got, err := env.e.InspectSandbox(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	stats := map[string]*model.EndpointStats{}
	for _, ep := range got.Endpoints {
		stats[ep.IfName] = ep.Stats
	}
	want := map[string]*model.EndpointStats{
		"eth0": {RxBytes: 3000, RxPackets: 30, RxDropped: 3, RxErrors: 4, TxBytes: 1000, TxPackets: 10, TxDropped: 1, TxErrors: 2},
		"eth1": {},  // a new host end counted nothing yet
		"eth2": nil, // a link network's end: no host end to count on
	}
	if d := cmp.Diff(want, stats); d != "" {
		t.Errorf("inspect a: counters (-want +got):\n%s", d)
	}

	// Only inspect: not the lists, not the records.
	sbs, err := env.e.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nets, err := env.e.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	back, err := env.e.InspectNetwork(ctx, "back")
	if err != nil {
		t.Fatal(err)
	}
	rec, _ = env.e.Sandbox("a")
	lists := []*model.SandboxInfo{rec}
	lists = append(lists, sbs...)
	for _, sb := range lists {
		for _, ep := range sb.Endpoints {
			if ep.Stats != nil {
				t.Errorf("sandbox %s %s has counters outside inspect: %+v", sb.Name, ep.IfName, ep.Stats)
			}
		}
	}
	for _, n := range append(nets, back) {
		for _, ep := range n.Endpoints {
			if ep.Stats != nil {
				t.Errorf("network %s, %s %s has counters: %+v", n.Name, ep.Sandbox, ep.IfName, ep.Stats)
			}
		}
	}
	if err := env.st.View(ctx, func(tx store.Tx) error {
		ep, err := tx.Endpoint("a", model.DefaultNetwork)
		if err == nil && ep.Stats != nil {
			t.Errorf("the stored record has counters: %+v", ep.Stats)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// A missing host end: drift, and no counters rather than zeros.
	env.link.Break("delete", eth1.HostIf)
	got, err = env.e.InspectSandbox(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if ep := got.Endpoints[1]; ep.IfName != "eth1" || ep.Stats != nil || len(got.Drift) == 0 {
		t.Errorf("inspect a with eth1's host end gone: %s stats %+v, drift %v; want no counters and drift", ep.IfName, ep.Stats, got.Drift)
	}
}
