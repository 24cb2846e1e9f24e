package engine

import (
	"context"
	"testing"
	"time"

	"pontoon/internal/model"
)

// The feed after a scripted set of operations, in order, with replay; a
// subscriber that never reads holds up nothing and is told what it lost.
func TestEvents(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	_, slow := env.e.Subscribe(0, false) // never read
	defer slow.Close()
	_, sub := env.e.Subscribe(0, false)
	defer sub.Close()
	start := env.e.events.next
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "app", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: "app", Ports: tPorts("8080:80")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Connect(ctx, "a", model.AttachSpec{Network: "nope"}); err == nil {
		t.Fatal("connect to a missing network succeeded")
	}
	if err := env.e.Disconnect(ctx, "app", "a"); err != nil {
		t.Fatal(err)
	}
	if err := env.e.RemoveSandbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := env.e.RemoveNetwork(ctx, "app", false); err != nil {
		t.Fatal(err)
	}
	want := []string{
		model.EventFirewallSynced, model.EventNetworkCreated,
		model.EventAttached, model.EventPublished, model.EventSandboxCreated,
		model.EventFailed,
		model.EventDetached, model.EventUnpublished,
		model.EventSandboxRemoved,
		model.EventFirewallSynced, model.EventNetworkRemoved,
	}
	var got []string
	for len(got) < len(want) {
		select {
		case ev := <-sub.C:
			got = append(got, ev.Kind)
			if ev.Kind == model.EventFailed && (ev.Op != "attach" || ev.Sandbox != "a" || ev.Network != "nope") {
				t.Errorf("failed event: %+v", ev)
			}
			if ev.Kind == model.EventAttached && ev.Seconds <= 0 {
				t.Errorf("attach not timed: %+v", ev)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("events so far %v, want %v", got, want)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	// Replay from the first of them gives the same sequence.
	past, again := env.e.Subscribe(start, true)
	again.Close()
	if len(past) != len(want) || past[0].Kind != want[0] || past[len(past)-1].Kind != want[len(want)-1] {
		t.Fatalf("replay: %d events %+v", len(past), past)
	}
	// Flood past a subscriber's buffer: emit never blocks, the loss is counted.
	for range subscriberBuffer + 10 {
		env.e.emit(model.Event{Kind: "test"})
	}
	if n := slow.Lost(); n < 10 {
		t.Fatalf("a reader that never reads lost %d events, want ≥ 10", n)
	}
}
