package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// gatedLink holds DeleteVeths, while hold is set, until release is
// closed: the kernel's RCU wait made as long as a test wants.
type gatedLink struct {
	*link.Fake
	hold    atomic.Bool
	release chan struct{}
	once    sync.Once
}

func (g *gatedLink) DeleteVeths(names []string) error {
	if g.hold.Load() {
		<-g.release
	}
	return g.Fake.DeleteVeths(names)
}

func (g *gatedLink) open() { g.once.Do(func() { close(g.release) }) }

func sandboxState(t *testing.T, st store.Store, name string) (model.SandboxState, []model.EndpointState) {
	t.Helper()
	var state model.SandboxState
	var eps []model.EndpointState
	if err := st.View(context.Background(), func(tx store.Tx) error {
		sb, err := tx.Sandbox(name)
		if err != nil {
			return err
		}
		state = sb.State
		all, err := tx.EndpointsOfSandbox(name)
		for _, ep := range all {
			eps = append(eps, ep.State)
		}
		return err
	}); err != nil {
		t.Fatalf("read sandbox %s: %v", name, err)
	}
	return state, eps
}

// RemoveSandbox returns before the veths are deleted: the sandbox is then
// recorded as removing, gone for users and off its bridge, and its address
// still held. The next operation on its name waits for the removal; the
// address is free once the veth is gone.
func TestRemoveSandboxInBackground(t *testing.T) {
	gl := &gatedLink{Fake: link.NewFake(), release: make(chan struct{})}
	env := newEnv(t, func(c *Config) { c.Link = gl })
	env.link = gl.Fake
	t.Cleanup(gl.open) // runs before the engine's Close, which finishes the removal
	gl.hold.Store(true)
	ctx := context.Background()
	const ip = "10.88.0.50"
	info, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, IPs: tIPs(ip)}}})
	if err != nil {
		t.Fatal(err)
	}
	hostIf := info.Endpoints[0].HostIf
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b"}); err != nil {
		t.Fatal(err)
	}

	returned := make(chan error, 1)
	go func() { returned <- env.e.RemoveSandbox(ctx, "a") }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		gl.open()
		t.Fatal("RemoveSandbox waited for the veth deletion")
	}
	if _, err := env.e.Sandbox("a"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("inspect during the removal: %v, want not found", err)
	}
	all, _ := env.e.Sandboxes()
	for _, sb := range all {
		if sb.Name == "a" {
			t.Fatal("ls lists a during its removal")
		}
	}
	if st, eps := sandboxState(t, env.st, "a"); st != model.SandboxRemoving || len(eps) != 1 || eps[0] != model.StateRemoving {
		t.Fatalf("records during the removal: sandbox %s, endpoints %v", st, eps)
	}
	if dump := env.link.Dump(); !strings.Contains(dump, "veth "+hostIf+" master pontoon0 down") {
		t.Fatalf("the host end still carries traffic during the removal:\n%s", dump)
	}
	// The address is still on a (dead) link: a static claim on it waits
	// for the veth's deletion, as does the next operation on the name.
	claim := make(chan error, 1)
	go func() {
		_, err := env.e.Connect(ctx, "b", model.AttachSpec{Network: model.DefaultNetwork, IPs: tIPs(ip)})
		claim <- err
	}()
	again := make(chan error, 1)
	go func() {
		_, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a"})
		again <- err
	}()
	select {
	case err := <-claim:
		t.Fatalf("static %s during the removal returned %v before the veth was deleted", ip, err)
	case err := <-again:
		t.Fatalf("create a during its removal returned %v before the removal finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	gl.open()
	if err := <-again; err != nil {
		t.Fatalf("create a after its removal: %v", err)
	}
	if err := <-claim; err != nil {
		t.Fatalf("static %s after the removal: %v", ip, err)
	}
	info, _ = env.e.Sandbox("b")
	if v := env.link.Veths(); len(v) != 1 || v[0] != info.Endpoints[0].HostIf {
		t.Fatalf("veths %v, want b's only", v)
	}
}

// A background removal that fails (the veth could not be deleted) leaves
// the records "removing" and the address held; the next start finishes it.
func TestRemoveSandboxFailureFinishesAtStart(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	const ip = "10.88.0.60"
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, IPs: tIPs(ip)}}}); err != nil {
		t.Fatal(err)
	}
	env.link.InjectError("DeleteVeths", errors.New("injected"))
	if err := env.e.RemoveSandbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	env.e.Flush()
	if st, _ := sandboxState(t, env.st, "a"); st != model.SandboxRemoving {
		t.Fatalf("sandbox %s after a failed teardown, want removing", st)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, IPs: tIPs(ip)}}}); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("static %s while its veth lives: %v, want a conflict", ip, err)
	}
	env.link.InjectError("DeleteVeths", nil)
	// "Restart": a new engine on the same store and kernel.
	e2, err := New(Config{Store: env.st, Link: env.link, Firewall: env.fw, Netns: env.ns, NetnsDir: "/run/pt/netns"})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.st.View(ctx, func(tx store.Tx) error { _, err := tx.Sandbox("a"); return err }); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("record of a after the restart: %v", err)
	}
	if v := env.link.Veths(); len(v) != 0 {
		t.Fatalf("veths left: %v", v)
	}
	if pins, _ := env.ns.Pins("/run/pt/netns"); len(pins) != 0 {
		t.Fatalf("pins left: %v", pins)
	}
	if _, err := e2.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, IPs: tIPs(ip)}}}); err != nil {
		t.Fatalf("static %s after the restart: %v", ip, err)
	}
}

// The CNI verbs: ADD creates or connects, ADD in a new namespace starts
// afresh, DEL detaches and removes the sandbox with its last interface, a
// second DEL succeeds.
func TestCNIVerbs(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	env.ns.ext["/var/run/netns/c1"] = 501
	add := func(netns, network, ifname string) (*model.Endpoint, error) {
		return env.e.AddContainer(ctx, model.SandboxSpec{Name: "cni-c1", ContainerID: "c1", Netns: netns,
			Networks: []model.AttachSpec{{Network: network, IfName: ifname}}})
	}
	ep0, err := add("/var/run/netns/c1", model.DefaultNetwork, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	ep1, err := add("/var/run/netns/c1", "back", "net1")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := env.e.Sandbox("cni-c1")
	if err != nil || sb.Kind != model.KindNetns || sb.ContainerID != "c1" || len(sb.Endpoints) != 2 || !ep0.Primary || ep1.Primary || ep1.IfName != "net1" {
		t.Fatalf("after two ADDs: %v %+v", err, sb)
	}
	// Another container may not take the sandbox.
	if _, err := env.e.AddContainer(ctx, model.SandboxSpec{Name: "cni-c1", ContainerID: "c2", Netns: "/var/run/netns/c1",
		Networks: []model.AttachSpec{{Network: model.DefaultNetwork, IfName: "eth9"}}}); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("ADD of another container into cni-c1: %v", err)
	}
	// A container has one sandbox, whatever its name.
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "other", ContainerID: "c1"}); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("a second sandbox for container c1: %v", err)
	}
	// DEL of one interface keeps the sandbox, DEL of the last removes it.
	if err := env.e.DelContainer(ctx, "cni-c1", "back", "net1"); err != nil {
		t.Fatal(err)
	}
	if sb, err := env.e.Sandbox("cni-c1"); err != nil || len(sb.Endpoints) != 1 {
		t.Fatalf("after the first DEL: %v %+v", err, sb)
	}
	// The namespace path now names another namespace, without a DEL: the
	// old attachment is dropped, the new one made.
	env.ns.ext["/var/run/netns/c1"] = 502
	ep, err := add("/var/run/netns/c1", model.DefaultNetwork, "eth0")
	if err != nil {
		t.Fatalf("ADD in a new namespace at the same path: %v", err)
	}
	if sb, err := env.e.Sandbox("cni-c1"); err != nil || sb.NetnsIno != 502 || len(sb.Endpoints) != 1 || sb.Endpoints[0].ID != ep.ID {
		t.Fatalf("after the ADD in the new namespace: %v %+v", err, sb)
	}
	for i := range 2 {
		if err := env.e.DelContainer(ctx, "cni-c1", model.DefaultNetwork, "eth0"); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if _, err := env.e.Sandbox("cni-c1"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("sandbox after the last DEL: %v", err)
	}
	// A sandbox being removed holds its container no more.
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "other", ContainerID: "c1"}); err != nil {
		t.Fatalf("a new sandbox for container c1 after its DEL: %v", err)
	}
	env.e.Flush()
	if v := env.link.Veths(); len(v) != 0 {
		t.Fatalf("veths left: %v", v)
	}
}

// A detach and a sandbox removal take their host ends down and delete
// them: those notifications are pontoon's own and cost no healing pass
// (each lists every link and reads every endpoint), while the same
// notification for a link pontoon did not remove still does.
func TestOwnRemovalsCostNoHealPass(t *testing.T) {
	env := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := env.e.StartHealing(ctx); err != nil {
		t.Fatal(err)
	}
	// Adopted namespaces, as CNI's: the healer watches no namespace of
	// theirs (the fake would hand it the host's events too).
	def := []model.AttachSpec{{Network: model.DefaultNetwork}}
	env.ns.ext["/run/netns/a"], env.ns.ext["/run/netns/b"] = 601, 602
	a, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Netns: "/run/netns/a", Networks: def})
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Netns: "/run/netns/b", Networks: def})
	if err != nil {
		t.Fatal(err)
	}
	quiet := func() uint64 { // the passes the start and the creates asked for are done
		t.Helper()
		for last := env.e.HealStatus().Passes; ; {
			time.Sleep(300 * time.Millisecond)
			now := env.e.HealStatus().Passes
			if now == last && now > 0 {
				return now
			}
			last = now
		}
	}
	before := quiet()
	if err := env.e.Disconnect(ctx, model.DefaultNetwork, "a"); err != nil {
		t.Fatal(err)
	}
	if err := env.e.RemoveSandbox(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{a.Endpoints[0].HostIf, b.Endpoints[0].HostIf} {
		// What the kernel sends: down, deleted, and deleted again.
		env.link.Emit(link.Event{Kind: link.LinkChanged, Name: name, Up: false})
		env.link.Emit(link.Event{Kind: link.LinkDeleted, Name: name})
		env.link.Emit(link.Event{Kind: link.LinkChanged, Name: name, Up: false})
		env.link.Emit(link.Event{Kind: link.LinkDeleted, Name: name})
	}
	env.e.Flush()
	if after := quiet(); after != before {
		t.Fatalf("pontoon's own detach and removal cost %d healing pass(es)", after-before)
	}
	env.link.Emit(link.Event{Kind: link.LinkDeleted, Name: model.HostVethPrefix + "0000000000"})
	waitFor(t, "a pass after an unexpected deletion", func() bool { return env.e.HealStatus().Passes > before })
}

// A runtime that keeps a namespace and attaches its next container there
// right after the DEL of the previous one: the new eth0 waits for the old
// one's deletion instead of finding the name taken.
func TestAddWaitsForRemovalInSameNamespace(t *testing.T) {
	gl := &gatedLink{Fake: link.NewFake(), release: make(chan struct{})}
	env := newEnv(t, func(c *Config) { c.Link = gl })
	env.link = gl.Fake
	t.Cleanup(gl.open)
	ctx := context.Background()
	env.ns.ext["/var/run/netns/pod"] = 700
	add := func(ctr string) (*model.Endpoint, error) {
		return env.e.AddContainer(ctx, model.SandboxSpec{Name: model.CNISandboxName(ctr), ContainerID: ctr, Netns: "/var/run/netns/pod",
			Networks: []model.AttachSpec{{Network: model.DefaultNetwork, IfName: "eth0"}}})
	}
	if _, err := add("c1"); err != nil {
		t.Fatal(err)
	}
	gl.hold.Store(true)
	if err := env.e.DelContainer(ctx, "cni-c1", model.DefaultNetwork, "eth0"); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { _, err := add("c2"); second <- err }()
	select {
	case err := <-second:
		t.Fatalf("ADD of c2 returned %v while c1's eth0 was still in the namespace", err)
	case <-time.After(100 * time.Millisecond):
	}
	gl.open()
	if err := <-second; err != nil {
		t.Fatalf("ADD of c2 after c1's removal: %v", err)
	}
}
