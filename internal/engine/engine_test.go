package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// fakeNS is an in-memory Namespaces.
type fakeNS struct {
	mu   sync.Mutex
	pins map[string]uint64 // path → identity of the namespace pinned there
	ext  map[string]uint64 // adopted namespaces that "exist"
	next uint64
	fail error
}

func newFakeNS() *fakeNS {
	return &fakeNS{pins: map[string]uint64{}, ext: map[string]uint64{}, next: 1000}
}

func (f *fakeNS) Create(p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if f.pins[p] != 0 {
		return fmt.Errorf("pin %s exists", p)
	}
	f.next++
	f.pins[p] = f.next
	return nil
}

func (f *fakeNS) Delete(p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pins, p)
	return nil
}

func (f *fakeNS) IsPinned(p string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pins[p] != 0
}

func (f *fakeNS) Pins(dir string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.pins {
		if strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeNS) Ino(p string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ino, ok := f.ext[p]; ok {
		return ino, nil
	}
	if ino, ok := f.pins[p]; ok {
		return ino, nil
	}
	return 0, errors.New("not a namespace")
}

type testEnv struct {
	e    *Engine
	st   store.Store
	link *link.Fake
	fw   *firewall.Fake
	ns   *fakeNS
}

// newEnv returns a reconciled engine over fakes; opts may change its
// configuration first.
func newEnv(t *testing.T, opts ...func(*Config)) *testEnv {
	t.Helper()
	env := &testEnv{st: store.NewMemory(), link: link.NewFake(), fw: firewall.NewFake(), ns: newFakeNS()}
	env.ns.ext["/proc/4242/ns/net"] = 77
	cfg := Config{Store: env.st, Link: env.link, Firewall: env.fw, Netns: env.ns, NetnsDir: "/run/pt/netns",
		DefaultSubnet: netip.MustParsePrefix("10.88.0.0/16")}
	for _, o := range opts {
		o(&cfg)
	}
	env.st = cfg.Store
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	env.e = e
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return env
}

// snapshot describes everything the engine owns: store, links, pins,
// firewall. Two equal snapshots mean nothing changed.
func (env *testEnv) snapshot(t *testing.T) string {
	t.Helper()
	env.e.Flush()
	var b strings.Builder
	err := env.st.View(context.Background(), func(tx store.Tx) error {
		nets, _ := tx.Networks()
		for _, n := range nets {
			fmt.Fprintf(&b, "network %s %s %s\n", n.Name, n.Subnets[0].Prefix, n.Bridge)
			res, _ := tx.Reservations(n.ID)
			var ips []string
			for ip, o := range res {
				ips = append(ips, ip.String()+"="+o[:6])
			}
			sort.Strings(ips)
			fmt.Fprintf(&b, "  reserved %v\n", ips)
		}
		sbs, _ := tx.Sandboxes()
		for _, s := range sbs {
			fmt.Fprintf(&b, "sandbox %s %s %s\n", s.Name, s.Kind, s.State)
		}
		eps, _ := tx.Endpoints()
		for _, ep := range eps {
			fmt.Fprintf(&b, "endpoint %s/%s %s %s %s\n", ep.Sandbox, ep.Network, ep.IfName, ep.FirstIP(), ep.State)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range env.link.Pairs() {
		b.WriteString("pair " + p + "\n")
	}
	// Rules live in their namespace: a deleted namespace took them along.
	for _, line := range strings.Split(env.link.Dump(), "\n") {
		if ns, ok := strings.CutPrefix(line, "rule "); ok {
			ns, _, _ = strings.Cut(ns, "|")
			if _, ext := env.ns.ext[ns]; !env.ns.IsPinned(ns) && !ext {
				continue
			}
		}
		b.WriteString(line + "\n")
	}
	pins, _ := env.ns.Pins("/run/pt/netns")
	fmt.Fprintf(&b, "pins %v\n", pins)
	fmt.Fprintf(&b, "firewall\n%s\n%s", env.fw.Fake.Dump(), env.fw.Bridge.Dump())
	return b.String()
}

func TestAttachDetach(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	sb, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}, {Network: "back", IPs: tIPs("10.90.1.10")}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sb.Endpoints) != 2 {
		t.Fatalf("endpoints %+v", sb.Endpoints)
	}
	e0, e1 := sb.Endpoints[0], sb.Endpoints[1]
	if e0.IfName != "eth0" || !e0.Primary || e0.Table != 0 || e0.FirstIP().String() != "10.88.0.2" {
		t.Fatalf("eth0: %+v", e0)
	}
	if e1.IfName != "eth1" || e1.Primary || e1.Table != 101 || e1.FirstIP().String() != "10.90.1.10" || e1.MAC != "02:42:0a:5a:01:0a" {
		t.Fatalf("eth1: %+v", e1)
	}
	dump := env.link.Dump()
	for _, want := range []string{
		"veth " + e0.HostIf + " master pontoon0 up peer eth0 netns /run/pt/netns/a addr 10.88.0.2/16 mac 02:42:0a:58:00:02 default via 10.88.0.1",
		"peer eth1 netns /run/pt/netns/a addr 10.90.1.10/24 mac 02:42:0a:5a:01:0a table 101",
		"rule /run/pt/netns/a|10.90.1.10|101",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("link state lacks %q:\n%s", want, dump)
		}
	}
	if err := env.e.Disconnect(ctx, "back", "a"); err != nil {
		t.Fatal(err)
	}
	env.e.Flush()
	if strings.Contains(env.link.Dump(), e1.HostIf) || strings.Contains(env.link.Dump(), "rule ") {
		t.Fatalf("after disconnect:\n%s", env.link.Dump())
	}
	// The address is free again, and the next attach gets eth1 back.
	ep, err := env.e.Connect(ctx, "a", model.AttachSpec{Network: "back", IPs: tIPs("10.90.1.10")})
	if err != nil || ep.IfName != "eth1" {
		t.Fatalf("reconnect: %v %+v", err, ep)
	}
	if err := env.e.RemoveSandbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// Gone for users at once; the veths go in the background.
	if _, err := env.e.Sandbox("a"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("inspect after rm: %v", err)
	}
	env.e.Flush()
	if v := env.link.Veths(); len(v) != 0 {
		t.Fatalf("veths left: %v", v)
	}
}

// A failure injected at every step of every multi-step operation leaves
// exactly the state that was there before.
func TestRollbackAtEveryStep(t *testing.T) {
	type op struct {
		name  string
		steps []string // every point where this operation can fail
		run   func(e *Engine) error
	}
	ctx := context.Background()
	ops := []op{
		{"create network", []string{"network:bridge", "network:firewall", "EnsureBridge"}, func(e *Engine) error {
			_, err := e.CreateNetwork(ctx, model.NetworkSpec{Name: "n2", Subnets: []model.Subnet{{Prefix: tPrefix("10.91.0.0/24")}}})
			return err
		}},
		{"create sandbox on two networks", []string{"sandbox:netns", "attach:veth", "attach:ready", "sandbox:ready", "AddVeth"}, func(e *Engine) error {
			_, err := e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}, {Network: "back"}}})
			return err
		}},
		{"adopt by pid", []string{"attach:veth", "attach:ready", "sandbox:ready", "AddVeth"}, func(e *Engine) error {
			_, err := e.CreateSandbox(ctx, model.SandboxSpec{Name: "p", PID: 4242, Networks: []model.AttachSpec{{Network: "back"}}})
			return err
		}},
		{"connect with published ports", []string{"attach:veth", "attach:publish", "attach:ready", "AddVeth"}, func(e *Engine) error {
			_, err := e.Connect(ctx, "a", model.AttachSpec{Network: "back", Ports: tPorts("8080:80", "127.0.0.1:9090:90/udp")})
			return err
		}},
		{"connect", []string{"attach:veth", "attach:ready", "AddVeth"}, func(e *Engine) error {
			_, err := e.Connect(ctx, "a", model.AttachSpec{Network: "back", IPs: tIPs("10.90.1.20")})
			return err
		}},
	}
	linkOps := []string{"EnsureBridge", "AddVeth"}
	for _, o := range ops {
		for _, step := range o.steps {
			t.Run(o.name+"/"+step, func(t *testing.T) {
				env := newEnv(t)
				if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
					t.Fatal(err)
				}
				if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}}); err != nil {
					t.Fatal(err)
				}
				before := env.snapshot(t)
				injected := errors.New("injected failure")
				hit := false
				if slices.Contains(linkOps, step) {
					env.link.InjectError(step, injected)
					hit = true
				} else {
					env.e.testHook = func(s string) error {
						if s == step {
							hit = true
							return injected
						}
						return nil
					}
				}
				err := o.run(env.e)
				env.e.testHook = nil
				env.link.InjectError(step, nil)
				if !hit {
					t.Fatalf("%s never reached step %s", o.name, step)
				}
				if err == nil {
					t.Fatalf("failure injected at %s was swallowed", step)
				}
				if !errors.Is(err, injected) && !strings.Contains(err.Error(), "injected failure") {
					t.Fatalf("error %v does not carry the cause", err)
				}
				if diff := cmp.Diff(before, env.snapshot(t)); diff != "" {
					t.Fatalf("state changed after a failed %s at %s (-before +after):\n%s", o.name, step, diff)
				}
			})
		}
	}
}

// Start-up reconciliation: a crash left an endpoint "creating" with its
// veth, an unknown veth, bridge and pin; a ready endpoint lost its veth.
func TestReconcileAfterCrash(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	def := []model.AttachSpec{{Network: model.DefaultNetwork}}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: def}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: def}); err != nil {
		t.Fatal(err)
	}
	// b's veth vanished behind our back.
	sbB, _ := env.e.Sandbox("b")
	_ = env.link.DeleteVeths([]string{sbB.Endpoints[0].HostIf})
	// A crash during an attach of a to "back": reservation, record, veth.
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	env.e.testHook = func(s string) error {
		if s == "attach:ready" {
			panic("crash")
		}
		return nil
	}
	func() {
		defer func() { _ = recover() }()
		_, _ = env.e.Connect(ctx, "a", model.AttachSpec{Network: "back"})
	}()
	env.e.testHook = nil
	// Garbage with pontoon's names.
	_, _ = env.link.EnsureBridge(link.Bridge{Name: model.BridgePrefix + "deadbeef"})
	_, _ = env.link.AddVeth(link.Veth{HostName: model.HostVethPrefix + "0000000000", Bridge: "pontoon0", Iface: link.Iface{Netns: "/x", IfName: "eth0"}})
	_ = env.ns.Create("/run/pt/netns/ghost")

	// "Restart": a new engine on the same store and kernel.
	e2, err := New(Config{Store: env.st, Link: env.link, Firewall: env.fw, Netns: env.ns, NetnsDir: "/run/pt/netns"})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	env.e = e2
	sa, _ := e2.Sandbox("a")
	if len(sa.Endpoints) != 1 {
		t.Fatalf("a has %+v", sa.Endpoints)
	}
	sb, _ := e2.Sandbox("b")
	var want []string
	for _, s := range []*model.SandboxInfo{sa, sb} {
		want = append(want, s.Endpoints[0].HostIf)
	}
	sort.Strings(want)
	if got := env.link.Veths(); !slices.Equal(got, want) {
		t.Fatalf("veths %v, want exactly %v (b's rebuilt, the crashed one and garbage gone)", got, want)
	}
	if strings.Contains(env.link.Dump(), "deadbeef") {
		t.Fatal("garbage bridge left")
	}
	pins, _ := env.ns.Pins("/run/pt/netns")
	if !slices.Equal(pins, []string{"/run/pt/netns/a", "/run/pt/netns/b"}) {
		t.Fatalf("pins %v", pins)
	}
	_ = env.st.View(ctx, func(tx store.Tx) error {
		nw, err := tx.Network("back")
		if err != nil {
			t.Fatal(err)
		}
		res, _ := tx.Reservations(nw.ID)
		if len(res) != 0 {
			t.Fatalf("the crashed attach still holds %v", res)
		}
		return nil
	})
}

// Tailscale-style: operations applied in random order, checking after each
// that store and kernel agree and no address is held twice.
func TestRandomTransitions(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "small", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.2.0/29")}}}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	nets := []string{model.DefaultNetwork, "small"}
	for i := 0; i < 400; i++ {
		sb, nw := names[r.IntN(len(names))], nets[r.IntN(len(nets))]
		switch r.IntN(4) {
		case 0:
			_, _ = env.e.CreateSandbox(ctx, model.SandboxSpec{Name: sb})
		case 1:
			_ = env.e.RemoveSandbox(ctx, sb)
		case 2:
			_, _ = env.e.Connect(ctx, sb, model.AttachSpec{Network: nw})
		case 3:
			_ = env.e.Disconnect(ctx, nw, sb)
		}
		if r.IntN(3) == 0 {
			env.e.Flush()
		}
		checkInvariants(t, env, i)
	}
}

func checkInvariants(t *testing.T, env *testEnv, step int) {
	t.Helper()
	env.e.Flush()
	_ = env.st.View(context.Background(), func(tx store.Tx) error {
		eps, _ := tx.Endpoints()
		var hostIfs []string
		held := map[string]bool{}
		for _, ep := range eps {
			if ep.State != model.StateReady {
				t.Fatalf("step %d: endpoint %s/%s is %s after flush", step, ep.Sandbox, ep.Network, ep.State)
			}
			hostIfs = append(hostIfs, ep.HostIf)
			k := ep.Network + "/" + ep.FirstIP().String()
			if held[k] {
				t.Fatalf("step %d: %s held twice", step, k)
			}
			held[k] = true
		}
		sort.Strings(hostIfs)
		if got := env.link.Veths(); !slices.Equal(got, hostIfs) {
			t.Fatalf("step %d: veths %v, store %v", step, got, hostIfs)
		}
		nets, _ := tx.Networks()
		n := 0
		for _, nw := range nets {
			res, _ := tx.Reservations(nw.ID)
			for ip := range res {
				if !held[nw.Name+"/"+ip.String()] {
					t.Fatalf("step %d: reservation %s/%s has no endpoint", step, nw.Name, ip)
				}
			}
			n += len(res)
		}
		if n != len(eps) {
			t.Fatalf("step %d: %d reservations for %d endpoints", step, n, len(eps))
		}
		return nil
	})
}

// Detaching a sandbox's primary network moves the default route to the
// next network with a way out (internal ones never get it).
func TestPrimaryMovesOnDetach(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	for _, spec := range []model.NetworkSpec{
		{Name: "int", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.3.0/24")}}, Internal: true},
		{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}},
	} {
		if _, err := env.e.CreateNetwork(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{
		{Network: model.DefaultNetwork}, {Network: "int"}, {Network: "back"}}}); err != nil {
		t.Fatal(err)
	}
	if err := env.e.Disconnect(ctx, model.DefaultNetwork, "a"); err != nil {
		t.Fatal(err)
	}
	env.e.Flush()
	sb, _ := env.e.Sandbox("a")
	for _, ep := range sb.Endpoints {
		if ep.Primary != (ep.Network == "back") {
			t.Errorf("%s (%s) primary=%v, want only back", ep.IfName, ep.Network, ep.Primary)
		}
	}
	if !strings.Contains(env.link.Dump(), "peer eth2 netns /run/pt/netns/a addr 10.90.1.2/24 mac 02:42:0a:5a:01:02 default via 10.90.1.1") {
		t.Fatalf("no default route through back:\n%s", env.link.Dump())
	}
}

// Sandboxes and endpoints are node-local records: they carry the node
// that holds them (Config.Node).
func TestRecordsCarryTheirNode(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Node = "h1" })
	ctx := context.Background()
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}}); err != nil {
		t.Fatal(err)
	}
	_ = env.st.View(ctx, func(tx store.Tx) error {
		sb, err := tx.Sandbox("a")
		if err != nil || sb.Node != "h1" {
			t.Errorf("sandbox a: %+v %v, want node h1", sb, err)
		}
		eps, err := tx.EndpointsOfSandbox("a")
		if err != nil || len(eps) != 1 || eps[0].Node != "h1" {
			t.Errorf("endpoints of a: %v %v, want one on node h1", eps, err)
		}
		return nil
	})
}
