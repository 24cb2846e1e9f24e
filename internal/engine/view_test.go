package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// viewSetup makes networks pontoon and back; sandbox a on both, p (an
// adopted PID) on pontoon, c on back only; and records that no user
// should see: sandbox gone, being removed (its endpoint too), and an
// endpoint of c on pontoon still being created.
func viewSetup(t *testing.T, env *testEnv) {
	t.Helper()
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []model.SandboxSpec{
		{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, Ports: tPorts("8080:80")}, {Network: "back"}}},
		{Name: "p", PID: 4242, Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}},
		{Name: "c", Networks: []model.AttachSpec{{Network: "back", Aliases: []string{"db"}}}},
	} {
		if _, err := env.e.CreateSandbox(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.st.Update(ctx, func(tx store.Tx) error {
		now := time.Now()
		if err := tx.PutSandbox(&model.Sandbox{ID: "g1", Name: "gone", Kind: model.KindPontoon, Netns: "/run/pt/netns/gone", State: model.SandboxRemoving, Created: now}); err != nil {
			return err
		}
		for _, ep := range []*model.Endpoint{
			{ID: "e1", Network: model.DefaultNetwork, Sandbox: "gone", IfName: "eth0", HostIf: "ptv-gone", State: model.StateRemoving, Created: now},
			{ID: "e2", Network: model.DefaultNetwork, Sandbox: "c", IfName: "eth1", HostIf: "ptv-creating", State: model.StateCreating, Created: now},
		} {
			if err := tx.PutEndpoint(ep); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// `ls`, `inspect` and the topology are projections of one view: they show
// the same sandboxes, networks and endpoints, and none of what is being
// created or removed.
func TestReadModelViewsAgree(t *testing.T) {
	env := newEnv(t)
	viewSetup(t, env)
	tp, err := env.e.Topology(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sbs, err := env.e.Sandboxes()
	if err != nil {
		t.Fatal(err)
	}
	nets, err := env.e.Networks()
	if err != nil {
		t.Fatal(err)
	}

	// Sandboxes: name → "network/ifname" of each endpoint, in interface order.
	type eps = map[string][]string
	fromTopo, fromLs, fromInspect := eps{}, eps{}, eps{}
	for _, s := range tp.Sandboxes {
		fromTopo[s.Name] = []string{}
	}
	for _, n := range tp.Networks {
		for _, p := range n.Ports {
			fromTopo[p.Sandbox] = append(fromTopo[p.Sandbox], n.Name+"/"+p.IfName)
		}
	}
	for _, sb := range sbs {
		fromLs[sb.Name] = []string{}
		for _, ep := range sb.Endpoints {
			fromLs[sb.Name] = append(fromLs[sb.Name], ep.Network+"/"+ep.IfName)
		}
		one, err := env.e.Sandbox(sb.Name)
		if err != nil {
			t.Fatal(err)
		}
		fromInspect[sb.Name] = []string{}
		for _, ep := range one.Endpoints {
			fromInspect[sb.Name] = append(fromInspect[sb.Name], ep.Network+"/"+ep.IfName)
		}
	}
	want := eps{"a": {"pontoon/eth0", "back/eth1"}, "c": {"back/eth0"}, "p": {"pontoon/eth0"}}
	if d := cmp.Diff(want, fromLs); d != "" {
		t.Errorf("sandbox ls (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, fromInspect); d != "" {
		t.Errorf("sandbox inspect (-want +got):\n%s", d)
	}
	// The topology lists ports by network, so only the sets agree.
	for name, w := range want {
		if d := cmp.Diff(w, fromTopo[name], cmpSet); d != "" {
			t.Errorf("topology, sandbox %s (-want +got):\n%s", name, d)
		}
	}
	if len(fromTopo) != len(want) {
		t.Errorf("the topology has sandboxes %v, want those of ls", fromTopo)
	}

	// Networks: name → the sandboxes of its endpoints, in name order.
	netsWant := eps{"back": {"a", "c"}, "pontoon": {"a", "p"}}
	netsLs, netsInspect, netsTopo := eps{}, eps{}, eps{}
	for _, n := range nets {
		netsLs[n.Name] = []string{}
		for _, ep := range n.Endpoints {
			netsLs[n.Name] = append(netsLs[n.Name], ep.Sandbox)
		}
		one, err := env.e.Network(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		netsInspect[n.Name] = []string{}
		for _, ep := range one.Endpoints {
			netsInspect[n.Name] = append(netsInspect[n.Name], ep.Sandbox)
		}
	}
	for _, n := range tp.Networks {
		netsTopo[n.Name] = []string{}
		for _, p := range n.Ports {
			netsTopo[n.Name] = append(netsTopo[n.Name], p.Sandbox)
		}
	}
	for what, got := range map[string]eps{"network ls": netsLs, "network inspect": netsInspect, "topology": netsTopo} {
		if d := cmp.Diff(netsWant, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", what, d)
		}
	}

	if _, err := env.e.Sandbox("gone"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("inspect of a sandbox being removed: %v, want not found", err)
	}
	if _, err := env.e.Network("nope"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("inspect of no network: %v, want not found", err)
	}
}

var cmpSet = cmp.Transformer("sort", func(in []string) map[string]bool {
	out := map[string]bool{}
	for _, s := range in {
		out[s] = true
	}
	return out
})

// What the API's ls and inspect say of drift is what the topology says,
// per object; the records-only reads (the answer of a create, metrics)
// say nothing of the kernel.
func TestReadModelDrift(t *testing.T) {
	// A few host links are looked up one by one, more are dumped: both
	// ways say the same.
	bothLinkReads(t, testReadModelDrift)
}

// bothLinkReads runs test once with the host links looked up one by one
// (a few) and once with them dumped (fewLinks 0): the read model must say
// the same either way.
func bothLinkReads(t *testing.T, test func(*testing.T)) {
	for _, few := range []int{fewLinks, 0} {
		t.Run(fmt.Sprintf("fewLinks=%d", few), func(t *testing.T) {
			defer func(old int) { fewLinks = old }(fewLinks)
			fewLinks = few
			test(t)
		})
	}
}

func testReadModelDrift(t *testing.T) {
	env := newEnv(t)
	viewSetup(t, env)
	ctx := context.Background()
	a, err := env.e.Sandbox("a")
	if err != nil {
		t.Fatal(err)
	}
	down := a.Endpoints[1] // a's eth1, on back
	env.link.Break("down", down.HostIf)
	env.link.Break("unaddr", "ptbr-"+bridgeSuffix(t, env, "back"))
	env.ns.mu.Lock()
	env.ns.ext["/proc/4242/ns/net"] = 78 // p's PID now names another namespace
	env.ns.mu.Unlock()

	tp, err := env.e.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var portDrift, bridgeDrift, nsDrift []string
	for _, n := range tp.Networks {
		if n.Name == "back" {
			bridgeDrift = n.Drift
		}
		for _, p := range n.Ports {
			if p.HostIf == down.HostIf {
				portDrift = p.Drift
			}
		}
	}
	for _, s := range tp.Sandboxes {
		if s.Name == "p" {
			nsDrift = s.Drift
		}
	}
	if len(portDrift) == 0 || len(bridgeDrift) == 0 || len(nsDrift) == 0 {
		t.Fatalf("the topology shows no drift: port %v, bridge %v, namespace %v", portDrift, bridgeDrift, nsDrift)
	}
	prefixed := func(p string, ds []string) []string {
		var out []string
		for _, d := range ds {
			out = append(out, p+d)
		}
		return out
	}

	wantSb := map[string][]string{"a": prefixed("eth1: ", portDrift), "p": nsDrift}
	wantNet := map[string][]string{"back": append(slices.Clone(bridgeDrift), prefixed("sandbox a eth1: ", portDrift)...)}
	sbs, err := env.e.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range sbs {
		one, err := env.e.InspectSandbox(ctx, sb.Name)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(wantSb[sb.Name], sb.Drift); d != "" {
			t.Errorf("sandbox ls, %s (-want +got):\n%s", sb.Name, d)
		}
		if d := cmp.Diff(wantSb[sb.Name], one.Drift); d != "" {
			t.Errorf("sandbox inspect %s (-want +got):\n%s", sb.Name, d)
		}
		if rec, _ := env.e.Sandbox(sb.Name); len(rec.Drift) > 0 {
			t.Errorf("the records-only read of %s has drift %v", sb.Name, rec.Drift)
		}
	}
	nets, err := env.e.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		one, err := env.e.InspectNetwork(ctx, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(wantNet[n.Name], n.Drift); d != "" {
			t.Errorf("network ls, %s (-want +got):\n%s", n.Name, d)
		}
		if d := cmp.Diff(wantNet[n.Name], one.Drift); d != "" {
			t.Errorf("network inspect %s (-want +got):\n%s", n.Name, d)
		}
	}
}
