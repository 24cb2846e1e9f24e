package engine

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/model"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// topologyGolden compares the topology's JSON with testdata/NAME; host
// veth and bridge names, which derive from random IDs, are replaced by
// ptv-A, ptbr-B, … in order of appearance.
func topologyGolden(t *testing.T, env *testEnv, name string) {
	t.Helper()
	tp, err := env.e.Topology(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tp.Host = "h1"
	b, _ := json.MarshalIndent(tp, "", "  ")
	seen := map[string]string{}
	got := regexp.MustCompile(`(ptv-[0-9a-f]{10}|ptbr-[0-9a-f]{8})`).ReplaceAllStringFunc(string(b), func(s string) string {
		if _, ok := seen[s]; !ok {
			prefix := s[:strings.IndexByte(s, '-')+1]
			seen[s] = prefix + string(rune('A'+len(seen)))
		}
		return seen[s]
	})
	path := "testdata/" + name
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/engine -run Topology -update writes it)", err)
	}
	if d := cmp.Diff(string(want), got+"\n"); d != "" {
		t.Errorf("%s (-want +got):\n%s", name, d)
	}
}

// The topology of a known setup, and of the same setup drifted: a host
// end down, a bridge without its address, a dead adopted namespace, the
// firewall table gone.
func TestTopologyGolden(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}, Internal: true}); err != nil {
		t.Fatal(err)
	}
	a, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{
		{Network: model.DefaultNetwork, Aliases: []string{"web"}, Ports: tPorts("8080:80")}, {Network: "back", IPs: tIPs("10.90.1.10")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "p", PID: 4242, Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}}); err != nil {
		t.Fatal(err)
	}
	topologyGolden(t, env, "topology.json")

	env.link.Break("down", a.Endpoints[0].HostIf)
	env.link.Break("unaddr", "ptbr-"+bridgeSuffix(t, env, "back"))
	env.ns.mu.Lock()
	env.ns.ext["/proc/4242/ns/net"] = 78 // the PID now names another namespace
	env.ns.mu.Unlock()
	if err := env.fw.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	topologyGolden(t, env, "topology-drifted.json")
}

func bridgeSuffix(t *testing.T, env *testEnv, network string) string {
	t.Helper()
	n, err := env.e.Network(network)
	if err != nil {
		t.Fatal(err)
	}
	return n.Bridge[len("ptbr-"):]
}
