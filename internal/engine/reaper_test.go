package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// countingFirewall counts Unguard calls per port.
type countingFirewall struct {
	*firewall.Fake
	mu       sync.Mutex
	unguards map[string]int
}

func (c *countingFirewall) Unguard(ctx context.Context, gs []firewall.Guarded) error {
	c.mu.Lock()
	for _, g := range gs {
		c.unguards[g.Port]++
	}
	c.mu.Unlock()
	return c.Fake.Unguard(ctx, gs)
}

// A sandbox removed right after a detach (what a CNI DEL does) tears the
// endpoint down once: deleting its elements again would be refused by the
// kernel, at the cost of an RCU grace period per refused transaction.
func TestDetachThenRemoveTearsDownOnce(t *testing.T) {
	var fw *countingFirewall
	e := newEnv(t, func(c *Config) {
		fw = &countingFirewall{Fake: c.Firewall.(*firewall.Fake), unguards: map[string]int{}}
		c.Firewall = fw
	}).e
	ctx := context.Background()
	for i := range 5 {
		name := fmt.Sprintf("c%d", i)
		info, err := e.CreateSandbox(ctx, model.SandboxSpec{Name: name, Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}})
		if err != nil {
			t.Fatal(err)
		}
		port := info.Endpoints[0].HostIf
		if err := e.Disconnect(ctx, model.DefaultNetwork, name); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			e.Flush() // the reaper finished the endpoint before the removal
		}
		if err := e.RemoveSandbox(ctx, name); err != nil {
			t.Fatal(err)
		}
		e.Flush()
		fw.mu.Lock()
		n := fw.unguards[port]
		fw.mu.Unlock()
		if n != 1 {
			t.Errorf("%s: port %s unguarded %d times, want 1", name, port, n)
		}
	}
}
