package engine

import (
	"context"
	"sync"
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
	bothLinkReads(t, testInspectSandboxStats)
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

	// Only the inspects: not the lists, not the records.
	sbs, err := env.e.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nets, err := env.e.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	back, err := env.e.Network("back")
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

// linkReadCounter counts the reads of the host's links the read model makes.
type linkReadCounter struct {
	*link.Fake
	mu      sync.Mutex
	lookups int // Link
	dumps   int // ListLinks
}

func (c *linkReadCounter) Link(name string) (link.LinkInfo, bool, error) {
	c.mu.Lock()
	c.lookups++
	c.mu.Unlock()
	return c.Fake.Link(name)
}

func (c *linkReadCounter) ListLinks(prefixes ...string) ([]link.LinkInfo, error) {
	c.mu.Lock()
	c.dumps++
	c.mu.Unlock()
	return c.Fake.ListLinks(prefixes...)
}

func (c *linkReadCounter) reset() (lookups, dumps int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lookups, dumps = c.lookups, c.dumps
	c.lookups, c.dumps = 0, 0
	return lookups, dumps
}

// `network inspect` and the topology give each endpoint with a host end
// the same counters as `sandbox inspect` (turned round), from the reads
// that check the host ends for drift: no read of their own.
func TestInspectNetworkAndTopologyStats(t *testing.T) {
	bothLinkReads(t, func(t *testing.T) { testInspectNetworkAndTopologyStats(t, fewLinks) })
}

func testInspectNetworkAndTopologyStats(t *testing.T, few int) {
	var cl *linkReadCounter
	env := newEnv(t, func(cfg *Config) {
		cl = &linkReadCounter{Fake: cfg.Link.(*link.Fake)}
		cfg.Link = cl
	})
	viewSetup(t, env)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "wire", Driver: model.DriverLink}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Connect(ctx, "c", model.AttachSpec{Network: "wire"}); err != nil {
		t.Fatal(err)
	}
	// Distinct counters on each host end of network back: a's and c's.
	hostIf := map[string]string{} // sandbox → host end on back
	back, err := env.e.Network("back")
	if err != nil {
		t.Fatal(err)
	}
	for i, ep := range back.Endpoints {
		hostIf[ep.Sandbox] = ep.HostIf
		n := uint64(i + 1)
		if !env.link.SetStats(ep.HostIf, link.LinkStats{
			RxBytes: 1000 * n, RxPackets: 10 * n, RxDropped: n, RxErrors: 2 * n,
			TxBytes: 3000 * n, TxPackets: 30 * n, TxDropped: 3 * n, TxErrors: 4 * n,
		}) {
			t.Fatalf("no host end %s", ep.HostIf)
		}
	}
	want := map[string]*model.EndpointStats{
		"a": {RxBytes: 3000, RxPackets: 30, RxDropped: 3, RxErrors: 4, TxBytes: 1000, TxPackets: 10, TxDropped: 1, TxErrors: 2},
		"c": {RxBytes: 6000, RxPackets: 60, RxDropped: 6, RxErrors: 8, TxBytes: 2000, TxPackets: 20, TxDropped: 2, TxErrors: 4},
	}

	cl.reset()
	got, err := env.e.InspectNetwork(ctx, "back")
	if err != nil {
		t.Fatal(err)
	}
	stats := map[string]*model.EndpointStats{}
	for _, ep := range got.Endpoints {
		stats[ep.Sandbox] = ep.Stats
	}
	if d := cmp.Diff(want, stats); d != "" {
		t.Errorf("inspect back: counters (-want +got):\n%s", d)
	}
	// The same reads as the drift check alone: a lookup for the bridge and
	// each host end, or one dump.
	lookups, dumps := cl.reset()
	if wantL, wantD := 3, 0; few == 0 {
		if lookups != 0 || dumps != 1 {
			t.Errorf("inspect back read %d links and %d dumps; want 0 and 1", lookups, dumps)
		}
	} else if lookups != wantL || dumps != wantD {
		t.Errorf("inspect back read %d links and %d dumps; want %d (bridge and two host ends) and %d", lookups, dumps, wantL, wantD)
	}

	// A network without host ends: no counters.
	wire, err := env.e.InspectNetwork(ctx, "wire")
	if err != nil {
		t.Fatal(err)
	}
	if len(wire.Endpoints) != 1 || wire.Endpoints[0].Stats != nil {
		t.Errorf("inspect wire: endpoints %+v; want c's, without counters", wire.Endpoints)
	}

	// The topology: the same counters on back's ports, zeros on the
	// default network's (new host ends), none on wire's.
	cl.reset()
	tp, err := env.e.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lookups, dumps := cl.reset(); dumps > 1 || (few == 0 && lookups != 0) {
		t.Errorf("topology read %d links and %d dumps; want at most one dump, and no lookup with fewLinks=0", lookups, dumps)
	}
	topo := map[string]*model.EndpointStats{}
	for _, n := range tp.Networks {
		for _, p := range n.Ports {
			topo[n.Name+"/"+p.Sandbox] = p.Stats
		}
	}
	wantTopo := map[string]*model.EndpointStats{
		"back/a": want["a"], "back/c": want["c"],
		model.DefaultNetwork + "/a": {}, model.DefaultNetwork + "/p": {},
		"wire/c": nil,
	}
	if d := cmp.Diff(wantTopo, topo); d != "" {
		t.Errorf("topology: counters (-want +got):\n%s", d)
	}

	// A missing host end: drift, and no counters rather than zeros.
	env.link.Break("delete", hostIf["c"])
	got, err = env.e.InspectNetwork(ctx, "back")
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range got.Endpoints {
		if ep.Sandbox == "c" && (ep.Stats != nil || len(got.Drift) == 0) {
			t.Errorf("inspect back with c's host end gone: stats %+v, drift %v; want no counters and drift", ep.Stats, got.Drift)
		}
	}
	tp, err = env.e.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tp.Networks {
		for _, p := range n.Ports {
			if n.Name == "back" && p.Sandbox == "c" && (p.Stats != nil || len(p.Drift) == 0) {
				t.Errorf("topology with c's host end gone: stats %+v, drift %v; want no counters and drift", p.Stats, p.Drift)
			}
		}
	}
}
