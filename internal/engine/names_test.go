package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/model"
)

// TestNamesDifferingOnlyInCase: on one network, a sandbox name must not be
// another member's name or alias up to case (DNS would answer both
// addresses for both), and an alias must not be another member's name.
// Every way onto a network is refused alike and changes nothing.
func TestNamesDifferingOnlyInCase(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "app", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	on := func(aliases ...string) []model.AttachSpec {
		return []model.AttachSpec{{Network: "app", Aliases: aliases}}
	}
	for _, spec := range []model.SandboxSpec{
		{Name: "MyWeb", Networks: on("front")},
		{Name: "p1", Networks: on("pool")},
		{Name: "p2", Networks: on("POOL")},                                             // a shared alias, in any case
		{Name: "solo", Networks: on("SOLO")},                                           // its own name, another case
		{Name: "elsewhere"},                                                            // on the default network only
		{Name: "myweb", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}}, // another network
	} {
		if _, err := env.e.CreateSandbox(ctx, spec); err != nil {
			t.Fatalf("create %s: %v", spec.Name, err)
		}
	}

	refused := func(what string, wantIn []string, op func() error) {
		t.Helper()
		before := env.snapshot(t)
		err := op()
		if !errors.Is(err, model.ErrConflict) {
			t.Fatalf("%s: %v, want a conflict", what, err)
		}
		for _, w := range wantIn {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", what, err, w)
			}
		}
		if diff := cmp.Diff(before, env.snapshot(t)); diff != "" {
			t.Errorf("%s changed state (-before +after):\n%s", what, diff)
		}
	}
	create := func(spec model.SandboxSpec) func() error {
		return func() error { _, err := env.e.CreateSandbox(ctx, spec); return err }
	}
	connect := func(sandbox string, aliases ...string) func() error {
		return func() error {
			_, err := env.e.Connect(ctx, sandbox, model.AttachSpec{Network: "app", Aliases: aliases})
			return err
		}
	}
	refused("sandbox create MYWEB", []string{"MYWEB", "sandbox MyWeb", "app", "case"}, create(model.SandboxSpec{Name: "MYWEB", Networks: on()}))
	refused("adopt a netns as mYwEb", []string{"sandbox MyWeb"}, create(model.SandboxSpec{Name: "mYwEb", PID: 4242, Networks: on()}))
	refused("network connect myweb", []string{"sandbox MyWeb"}, connect("myweb"))
	// A sandbox name equal to another member's alias, up to case.
	refused("sandbox create FRONT", []string{"alias front of sandbox MyWeb"}, create(model.SandboxSpec{Name: "FRONT", Networks: on()}))
	refused("sandbox create Pool", []string{"alias", "pool"}, create(model.SandboxSpec{Name: "Pool", Networks: on()}))
	// An alias equal to another member's name: exactly (accepted before)
	// and up to case.
	refused("--alias MyWeb", []string{"alias MyWeb", "sandbox MyWeb"}, create(model.SandboxSpec{Name: "x", Networks: on("MyWeb")}))
	refused("--alias myweb", []string{"alias myweb", "sandbox MyWeb"}, create(model.SandboxSpec{Name: "x", Networks: on("ok", "myweb")}))
	refused("connect --alias P1", []string{"sandbox p1"}, connect("elsewhere", "P1"))
	// The resolver also answers every name under the network: "myweb.app"
	// is MyWeb's second name.
	refused("sandbox create MyWeb.App", []string{"sandbox MyWeb", "MyWeb also answers as MyWeb.app"}, create(model.SandboxSpec{Name: "MyWeb.App", Networks: on()}))
	refused("--alias solo.app", []string{"sandbox solo"}, connect("elsewhere", "solo.app"))

	// Shared aliases stay allowed, and a different name is fine.
	if _, err := env.e.Connect(ctx, "elsewhere", model.AttachSpec{Network: "app", Aliases: []string{"Pool"}}); err != nil {
		t.Fatalf("sharing alias pool: %v", err)
	}
	// Once MyWeb leaves the network its names are free.
	if err := env.e.Disconnect(ctx, "app", "MyWeb"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Connect(ctx, "myweb", model.AttachSpec{Network: "app", Aliases: []string{"FRONT"}}); err != nil {
		t.Fatalf("myweb after MyWeb left: %v", err)
	}
	refused("MyWeb back", []string{"sandbox myweb"}, connect("MyWeb"))
}

// Two attaches racing for names that differ only in case: one wins.
func TestNameRace(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "app", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	names := []string{"race", "Race", "RACE", "rAcE"}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			_, errs[i] = env.e.CreateSandbox(ctx, model.SandboxSpec{Name: n, Networks: []model.AttachSpec{{Network: "app"}}})
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, model.ErrConflict):
			t.Errorf("%s: %v", names[i], err)
		}
	}
	sbs, err := env.e.Sandboxes()
	if won != 1 || err != nil || len(sbs) != 1 {
		t.Fatalf("%d of %d won; sandboxes %d (%v)", won, len(names), len(sbs), err)
	}
}
