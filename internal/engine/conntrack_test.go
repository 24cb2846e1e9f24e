package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/link"
	"pontoon/internal/model"
)

// ctCalls waits for the background clean-ups and returns the filters of
// every DeleteConntrack call since the last look, as conntrack(8)
// arguments, sorted.
func ctCalls(env *testEnv) []string {
	env.e.Flush()
	var out []string
	for _, call := range env.link.ConntrackCalls() {
		for _, f := range call {
			out = append(out, f.String())
		}
	}
	slices.Sort(out)
	return out
}

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestConntrackCleanup(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	ctCalls(env) // start-up
	create := func(name string, ports ...string) netip.Addr {
		t.Helper()
		info, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: name, Networks: []model.AttachSpec{{Network: model.DefaultNetwork, Ports: tPorts(ports...)}}})
		if err != nil {
			t.Fatal(err)
		}
		return info.Endpoints[0].FirstIP()
	}

	// An attach without UDP or SCTP ports asks nothing of conntrack.
	create("plain")
	create("web", "8080:80")
	if got := ctCalls(env); len(got) != 0 {
		t.Errorf("attaches without UDP/SCTP ports deleted conntrack entries: %q", got)
	}

	// Publishing: entries to the host ports, except those going to the
	// new target already; TCP is left alone.
	v1 := create("v1", "5090:5090/udp", "127.0.0.1:6000-6002:7000-7002/sctp", "8081:80")
	want := sortedStrings(
		"-p udp --dport 5090 except --reply-src "+v1.String(),
		"-p sctp --orig-dst 127.0.0.1 --dport 6000-6002 except --reply-src "+v1.String())
	if diff := cmp.Diff(want, ctCalls(env)); diff != "" {
		t.Errorf("after publish (-want +got):\n%s", diff)
	}

	// Removal: the address's flows both ways, and the host ports.
	if err := env.e.RemoveSandbox(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	want = sortedStrings("--reply-src "+v1.String(), "--orig-src "+v1.String(),
		"-p udp --dport 5090", "-p sctp --orig-dst 127.0.0.1 --dport 6000-6002")
	if diff := cmp.Diff(want, ctCalls(env)); diff != "" {
		t.Errorf("after sandbox rm (-want +got):\n%s", diff)
	}

	// Detach: the same.
	v2 := create("v2", "5090:5090/udp")
	ctCalls(env)
	if err := env.e.Disconnect(ctx, model.DefaultNetwork, "v2"); err != nil {
		t.Fatal(err)
	}
	want = sortedStrings("--reply-src "+v2.String(), "--orig-src "+v2.String(), "-p udp --dport 5090")
	if diff := cmp.Diff(want, ctCalls(env)); diff != "" {
		t.Errorf("after detach (-want +got):\n%s", diff)
	}

	// An endpoint without ports: its address's flows.
	plain, _ := env.e.Sandbox("plain")
	if err := env.e.RemoveSandbox(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	ip := plain.Endpoints[0].FirstIP().String()
	if diff := cmp.Diff(sortedStrings("--reply-src "+ip, "--orig-src "+ip), ctCalls(env)); diff != "" {
		t.Errorf("after removing a sandbox without ports (-want +got):\n%s", diff)
	}

	// A rewrite of the firewall table (start-up, drift repair) sweeps
	// every mapping of ready endpoints.
	v3 := create("v3", "5091:5091/udp", "5092:92/tcp")
	ctCalls(env)
	if err := env.e.SyncFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"-p udp --dport 5091 except --reply-src " + v3.String()}, ctCalls(env)); diff != "" {
		t.Errorf("after a firewall rewrite (-want +got):\n%s", diff)
	}

	// A failure of the kernel call is logged, not returned: the request
	// already succeeded.
	env.link.InjectError("DeleteConntrack", errors.New("injected failure"))
	if err := env.e.RemoveSandbox(ctx, "v3"); err != nil {
		t.Fatalf("remove with a failing conntrack clean-up: %v", err)
	}
	env.e.Flush()
	env.link.InjectError("DeleteConntrack", nil)
}

// A rolled-back attach cleans up after its address and ports like a
// removal.
func TestConntrackRollback(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	ctCalls(env)
	env.e.testHook = func(s string) error {
		if s == "attach:ready" {
			return errors.New("injected failure")
		}
		return nil
	}
	_, err := env.e.Connect(ctx, "a", model.AttachSpec{Network: model.DefaultNetwork, IPs: tIPs("10.88.0.77"), Ports: tPorts("5090:5090/udp")})
	env.e.testHook = nil
	if err == nil {
		t.Fatal("injected failure swallowed")
	}
	want := sortedStrings("-p udp --dport 5090 except --reply-src 10.88.0.77", // published, then
		"--reply-src 10.88.0.77", "--orig-src 10.88.0.77", "-p udp --dport 5090") // rolled back
	if diff := cmp.Diff(want, ctCalls(env)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The host ports of a removed mapping that another endpoint publishes by
// the time of the clean-up are left to that endpoint's flows.
func TestConntrackRemovedPortTaken(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "new", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, Ports: tPorts("5090:5090/udp")}}}); err != nil {
		t.Fatal(err)
	}
	ctCalls(env)
	old := &model.Endpoint{ID: "old", Sandbox: "old", Addresses: []model.Address{{Addr: tPrefix("10.88.9.9/16")}}, Ports: []model.PortMapping{
		{HostPort: 5090, HostPortEnd: 5090, Port: 5090, PortEnd: 5090, Proto: "udp"},
		{HostPort: 5091, HostPortEnd: 5091, Port: 5091, PortEnd: 5091, Proto: "udp"}}}
	env.e.flowsGone([]*model.Endpoint{old})
	want := sortedStrings("--reply-src 10.88.9.9", "--orig-src 10.88.9.9", "-p udp --dport 5091")
	if diff := cmp.Diff(want, ctCalls(env)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// orderedLink logs AddVeth and the end of DeleteConntrack in order; the
// conntrack clean-up of slowAddr takes 100 ms.
type orderedLink struct {
	*link.Fake
	slowAddr netip.Addr
	mu       sync.Mutex
	log      []string
}

func (o *orderedLink) AddVeth(v link.Veth) (int, error) {
	o.mu.Lock()
	o.log = append(o.log, "plumb "+v.Addrs[0].Addr.Addr().String())
	o.mu.Unlock()
	return o.Fake.AddVeth(v)
}

func (o *orderedLink) DeleteConntrack(fs []link.ConntrackFilter) (int, error) {
	for _, f := range fs {
		if f.ReplySrc == o.slowAddr {
			time.Sleep(100 * time.Millisecond)
			o.mu.Lock()
			o.log = append(o.log, "forget "+f.ReplySrc.String())
			o.mu.Unlock()
		}
	}
	return o.Fake.DeleteConntrack(fs)
}

// An address is plumbed again only after its previous owner's flows were
// deleted (a static address, taken again at once).
func TestConntrackAddressReuseWaits(t *testing.T) {
	ol := &orderedLink{slowAddr: netip.MustParseAddr("10.88.0.50")}
	env := newEnv(t, func(c *Config) {
		ol.Fake = c.Link.(*link.Fake)
		c.Link = ol
	})
	ctx := context.Background()
	spec := model.AttachSpec{Network: model.DefaultNetwork, IPs: tIPs("10.88.0.50")}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{spec}}); err != nil {
		t.Fatal(err)
	}
	if err := env.e.Disconnect(ctx, model.DefaultNetwork, "a"); err != nil {
		t.Fatal(err)
	}
	// The reconnect finishes the detach first (same sandbox): the clean-up
	// is queued and slow.
	if _, err := env.e.Connect(ctx, "a", spec); err != nil {
		t.Fatal(err)
	}
	ol.mu.Lock()
	got := strings.Join(ol.log, ", ")
	ol.mu.Unlock()
	if want := "plumb 10.88.0.50, forget 10.88.0.50, plumb 10.88.0.50"; got != want {
		t.Errorf("order: %s; want %s", got, want)
	}
}

// Clean-ups queued while one runs share the next table read.
func TestConntrackBatches(t *testing.T) {
	var calls int
	var mu sync.Mutex
	block := make(chan struct{})
	cl := &countingLink{onDelete: func() {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			<-block
		}
	}}
	env := newEnv(t, func(c *Config) {
		cl.Fake = c.Link.(*link.Fake)
		c.Link = cl
	})
	env.e.Flush()
	mu.Lock()
	calls = 0
	mu.Unlock()
	ctx := context.Background()
	for i := range 5 {
		if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: fmt.Sprintf("s%d", i), Networks: []model.AttachSpec{
			{Network: model.DefaultNetwork, Ports: tPorts(fmt.Sprintf("%d:53/udp", 5300+i))}}}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// The first clean-up is under way (and blocked); wait until
			// the worker is in it.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
				mu.Lock()
				n := calls
				mu.Unlock()
				if n == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the first clean-up never started")
				}
			}
		}
	}
	close(block)
	env.e.Flush()
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("%d table reads for 5 publishes, 4 of them while the first ran; want 2", calls)
	}
}

type countingLink struct {
	*link.Fake
	onDelete func()
}

func (c *countingLink) DeleteConntrack(fs []link.ConntrackFilter) (int, error) {
	c.onDelete()
	return c.Fake.DeleteConntrack(fs)
}
