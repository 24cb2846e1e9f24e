package engine

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pontoon/internal/dns"
	"pontoon/internal/model"
)

// nopResolver stands in for the DNS server: resolv.conf files are written
// only when the engine has one.
type nopResolver struct{}

func (nopResolver) SetNetworks([]dns.Network) error               { return nil }
func (nopResolver) SetRecord(string, dns.Record)                  {}
func (nopResolver) RemoveRecord(string, netip.Addr)               {}
func (nopResolver) ReplaceRecords(network string, _ []dns.Record) {}
func (nopResolver) SetSandbox(string, uint64, []string) error     { return nil }
func (nopResolver) RemoveSandbox(string) error                    { return nil }

// The files are written off the request path; whoever asks for the path
// gets it only once the file matches the sandbox's primary network.
func TestResolvConfFollowsPrimaryNetwork(t *testing.T) {
	etc := t.TempDir()
	e := newEnv(t, func(c *Config) { c.Resolver, c.EtcNetnsDir = nopResolver{}, etc }).e
	ctx := context.Background()
	if _, err := e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	nameserver := func(sb string) string {
		t.Helper()
		info, err := e.Sandbox(sb)
		if err != nil {
			t.Fatal(err)
		}
		if info.ResolvConf == "" {
			return ""
		}
		data, err := os.ReadFile(info.ResolvConf)
		if err != nil {
			t.Fatalf("%s: resolv.conf handed out but not readable: %v", sb, err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if ns, ok := strings.CutPrefix(l, "nameserver "); ok {
				return ns
			}
		}
		t.Fatalf("%s: resolv.conf without a nameserver:\n%s", sb, data)
		return ""
	}

	if _, err := e.CreateSandbox(ctx, model.SandboxSpec{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if ns := nameserver("a"); ns != "" {
		t.Errorf("sandbox without a network has a resolver: %s", ns)
	}
	if _, err := e.Connect(ctx, "a", model.AttachSpec{Network: "back"}); err != nil {
		t.Fatal(err)
	}
	if ns := nameserver("a"); ns != "10.90.1.1" {
		t.Errorf("after connecting back: nameserver %q, want 10.90.1.1", ns)
	}
	if _, err := e.Connect(ctx, "a", model.AttachSpec{Network: model.DefaultNetwork}); err != nil {
		t.Fatal(err)
	}
	if ns := nameserver("a"); ns != "10.90.1.1" {
		t.Errorf("a second network changed the resolver: %q", ns)
	}
	if err := e.Disconnect(ctx, "back", "a"); err != nil {
		t.Fatal(err)
	}
	e.Flush() // the default route (and resolver) move when the old endpoint is gone
	if ns := nameserver("a"); ns != "10.88.0.1" {
		t.Errorf("after the primary network left: nameserver %q, want 10.88.0.1", ns)
	}

	// A burst: every file right, however the queue was worked through.
	for i := range 30 {
		if _, err := e.CreateSandbox(ctx, model.SandboxSpec{Name: fmt.Sprintf("s%d", i), Networks: []model.AttachSpec{{Network: "back"}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 30 {
		if ns := nameserver(fmt.Sprintf("s%d", i)); ns != "10.90.1.1" {
			t.Errorf("s%d: nameserver %q", i, ns)
		}
	}

	// A network with no gateway on the host (a direct link): the sandbox
	// asks the resolver in its own namespace, for all of its networks.
	if _, err := e.CreateNetwork(ctx, model.NetworkSpec{Name: "wire", Driver: model.DriverLink}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Connect(ctx, "a", model.AttachSpec{Network: "wire"}); err != nil {
		t.Fatal(err)
	}
	if ns := nameserver("a"); ns != "127.0.0.11" {
		t.Errorf("on a direct link too: nameserver %q, want 127.0.0.11", ns)
	}
	if err := e.Disconnect(ctx, "wire", "a"); err != nil {
		t.Fatal(err)
	}
	e.Flush()
	if ns := nameserver("a"); ns != "10.88.0.1" {
		t.Errorf("after leaving the direct link: nameserver %q, want 10.88.0.1", ns)
	}

	if err := e.RemoveSandbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	e.Flush()
	if _, err := os.Stat(filepath.Join(etc, "a")); !os.IsNotExist(err) {
		t.Errorf("removed sandbox's resolv.conf directory: %v", err)
	}
}

// Whoever asks for the path never waits for the low-priority worker: with
// no worker at all, asking writes the file.
func TestResolvConfWaiterWritesItself(t *testing.T) {
	etc := t.TempDir()
	e := newEnv(t, func(c *Config) { c.Resolver, c.EtcNetnsDir = nopResolver{}, etc }).e
	e.resolv.stop()
	stalled := &resolvFiles{e: e, queued: map[string]bool{}, busy: map[string]bool{}, exited: make(chan struct{})}
	stalled.cond = sync.NewCond(&stalled.mu)
	close(stalled.exited) // no worker: Close has nothing to wait for
	e.resolv = stalled
	ctx := context.Background()
	info, err := e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(info.ResolvConf)
	if err != nil || !strings.Contains(string(data), "nameserver 10.88.0.1") {
		t.Fatalf("resolv.conf %q handed out: %q, %v", info.ResolvConf, data, err)
	}
	if len(stalled.queued) != 0 || len(stalled.queue) != 1 {
		t.Errorf("queued %v, queue %v: the waiter's write should have left a stale queue entry only", stalled.queued, stalled.queue)
	}
}
