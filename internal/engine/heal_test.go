package engine

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// waitFor polls cond for up to 2 s (the healer works in the background).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not repaired: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The healer's logic over fakes: each breakage the fakes can make is
// repaired from the store, counted, and explicit removals stay removed.
func TestHealerRepairsFromTheStore(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.SetIPForward = true })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := env.e.StartHealing(ctx); err != nil {
		t.Fatal(err)
	}
	def := []model.AttachSpec{{Network: model.DefaultNetwork}}
	a, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: def})
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: def})
	if err != nil {
		t.Fatal(err)
	}
	want := env.link.Dump()
	same := func() bool { return env.link.Dump() == want }

	env.link.Break("delete", model.DefaultBridge)
	waitFor(t, "bridge deleted", func() bool { return strings.Contains(env.link.Dump(), "bridge "+model.DefaultBridge) })
	env.link.Break("delete", a.Endpoints[0].HostIf)
	waitFor(t, "veth deleted", same)
	env.link.Break("down", b.Endpoints[0].HostIf)
	waitFor(t, "veth down", same)
	env.link.Break("unaddr", model.DefaultBridge)
	waitFor(t, "bridge address", same)
	env.link.Break("noforward", "")
	waitFor(t, "ip_forward", func() bool { on, _ := env.link.IPForward(); return on })
	tx := env.fw.Fake.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := env.fw.Fake.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	env.fw.Emit(firewall.Event{})
	// The table is whole a moment before the repair is counted.
	waitFor(t, "firewall", func() bool {
		return env.e.FirewallDrift(ctx) == "" && env.e.HealStatus().Repairs[RepairFirewall] > 0
	})

	st := env.e.HealStatus()
	for _, k := range []string{RepairBridge, RepairVeth, RepairSysctl, RepairFirewall} {
		if st.Repairs[k] == 0 {
			t.Errorf("no %s repair counted: %v", k, st.Repairs)
		}
	}
	if len(st.Unrepaired) > 0 {
		t.Errorf("unrepaired: %v", st.Unrepaired)
	}

	// Explicit removals stay removed, even after a full pass.
	if err := env.e.Disconnect(ctx, model.DefaultNetwork, "b"); err != nil {
		t.Fatal(err)
	}
	if err := env.e.RemoveSandbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	env.e.Flush()
	env.e.HealNow(ctx)
	if v := env.link.Veths(); len(v) != 0 {
		t.Fatalf("veths after explicit removals and a heal pass: %v", v)
	}
}

// A sandbox adopted by PID whose namespace is gone is released: address,
// record and veth.
func TestHealerReleasesDeadAdoptedNamespace(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	sb, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "p", PID: 4242, Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}})
	if err != nil {
		t.Fatal(err)
	}
	ip := sb.Endpoints[0].FirstIP().String()
	// The process exits; its PID is taken by another process in another
	// namespace.
	env.ns.mu.Lock()
	env.ns.ext["/proc/4242/ns/net"] = 78
	env.ns.mu.Unlock()
	env.link.Break("delete", sb.Endpoints[0].HostIf)
	env.e.HealNow(ctx)
	if _, err := env.e.Sandbox("p"); err == nil {
		t.Fatal("sandbox p still exists after its namespace was replaced")
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "q", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, IPs: tIPs(ip)}}}); err != nil {
		t.Fatalf("address %s not free: %v", ip, err)
	}
	if env.e.HealStatus().Repairs[ReleaseGone] != 1 {
		t.Errorf("release not counted: %v", env.e.HealStatus().Repairs)
	}
	if slices.Contains(env.link.Veths(), sb.Endpoints[0].HostIf) {
		t.Error("the released endpoint's veth was made again")
	}
}
