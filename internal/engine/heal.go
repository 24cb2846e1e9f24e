package engine

// Self-healing: the one reconciler.
//
// The store is the truth; the kernel is brought back to it whenever drift
// is seen. The healer learns of drift from kernel events — rtnetlink link,
// address, route, rule and IPv4 setting notifications of the host
// namespace and of every namespace pontoon created, and nftables
// notifications — and, as a backstop, from a periodic pass. Events only
// mark what may have drifted; after a burst settles, one pass checks those
// objects against the store and repairs what differs, in place (a bridge is
// made again and its ports rejoin it; a veth pair is made again with the
// same names, address and MAC; a missing address, route or rule is added
// back). One failure does not stop the rest: each object's failure is kept
// for doctor until a later pass repairs it.
//
// It never fights an explicit action: the API changes the store first
// (an endpoint is "removing" before its link goes down), and the healer
// reads the store under the same locks the API takes (netMu for networks,
// the sandbox's lock for endpoints), so it only ever repairs what the store
// still wants. On a bridge given with --bridge, it repairs only what
// pontoon set there (address, up, ports), and never makes the bridge again.
//
// Namespaces pontoon adopted (--netns, --pid, CNI) are not watched: an open
// netlink socket in a namespace keeps it alive, and pontoon must not keep a
// runtime's namespace alive. Their death shows up as the host end of their
// veth vanishing (the namespace took the peer with it); the healer then
// finds that the namespace's identity is gone and releases the sandbox —
// its addresses, firewall elements and DNS names — and removes its record.
// A later CNI DEL for it succeeds (DEL of an unknown container is success).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

const (
	// healSettle lets a burst of events (a bridge with 50 ports going away
	// is ~150 notifications) settle before a pass.
	healSettle = 20 * time.Millisecond
	// healMinGap bounds how often passes run under a stream of events.
	healMinGap = 100 * time.Millisecond
	// DefaultHealPeriod is the backstop: a pass over the host objects,
	// the firewall and the identity of adopted namespaces.
	DefaultHealPeriod = 30 * time.Second
	// sweepEvery: every this many periodic passes, the inside of every
	// sandbox that is not watched is checked too (addresses, routes,
	// rules): adopted namespaces report no events to pontoon.
	sweepEvery = 10
)

// Repair kinds, as counted in HealStatus.
const (
	RepairBridge    = "bridge"
	RepairVeth      = "veth"
	RepairPort      = "port"
	RepairLink      = "link"
	RepairAddress   = "address"
	RepairRoute     = "route"
	RepairRule      = "rule"
	RepairSysctl    = "sysctl"
	RepairFirewall  = "firewall"
	RepairNamespace = "namespace" // a pontoon namespace made again
	ReleaseGone     = "released"  // a sandbox whose adopted namespace died, released
)

// HealStatus is what the healer did since the daemon started and what it
// could not repair.
type HealStatus struct {
	Running bool              `json:"running"`
	Repairs map[string]uint64 `json:"repairs"`
	// Unrepaired maps an object ("bridge pontoon0", "sandbox a eth0 on
	// pontoon") to what is wrong with it, for objects the last pass could
	// not repair.
	Unrepaired map[string]string `json:"unrepaired,omitempty"`
	Passes     uint64            `json:"passes"`
	LastPass   time.Time         `json:"last_pass,omitzero"`
}

type healer struct {
	e      *Engine
	period time.Duration

	mu         sync.Mutex
	running    bool
	dirty      dirtySet
	repairs    map[string]uint64
	unrepaired map[string]string
	passes     uint64
	lastPass   time.Time
	bridges    map[string]bool // names of the networks' bridges (events are filtered by name)
	// leaving holds host ends that pontoon itself takes down and deletes
	// (detaches, sandbox removals), with when their deletion was notified
	// (the kernel notifies it more than once).
	leaving map[string]time.Time
	watches map[string]*sandboxWatch
	kick    chan struct{}
}

type dirtySet struct {
	host, firewall, foreign, forward, all, sweep, watches bool
	sandboxes                                             map[string]bool
}

type sandboxWatch struct {
	ino    uint64
	cancel context.CancelFunc
}

func newHealer(e *Engine) *healer {
	p := e.cfg.HealPeriod
	if p <= 0 {
		p = DefaultHealPeriod
	}
	return &healer{e: e, period: p, repairs: map[string]uint64{}, unrepaired: map[string]string{},
		bridges: map[string]bool{}, leaving: map[string]time.Time{}, watches: map[string]*sandboxWatch{}, kick: make(chan struct{}, 1),
		dirty: dirtySet{sandboxes: map[string]bool{}}}
}

// StartHealing starts the reconciler; it runs until ctx ends. Call it after
// Reconcile. Without it, drift is only reported (doctor, sandbox check).
func (e *Engine) StartHealing(ctx context.Context) error {
	h := e.heal
	hostEvents, err := e.link.Watch(ctx, "", 0)
	if err != nil {
		return fmt.Errorf("watch the host's links: %w", err)
	}
	fwEvents, err := e.fw.Watch(ctx)
	if err != nil {
		e.log.Warn("cannot watch nftables; firewall drift is found by the periodic check only", "err", err)
	}
	h.mu.Lock()
	h.running = true
	h.dirty.all, h.dirty.watches = true, true
	h.mu.Unlock()
	go func() {
		for ev := range hostEvents {
			h.hostEvent(ev)
		}
	}()
	if fwEvents != nil {
		go func() {
			for ev := range fwEvents {
				h.mark(func(d *dirtySet) {
					d.firewall = true
					d.foreign = d.foreign || ev.Foreign
				})
			}
		}()
	}
	go h.loop(ctx)
	h.signal()
	return nil
}

// HealStatus returns the healer's counts and open problems.
func (e *Engine) HealStatus() HealStatus {
	h := e.heal
	h.mu.Lock()
	defer h.mu.Unlock()
	return HealStatus{Running: h.running, Repairs: maps.Clone(h.repairs), Unrepaired: maps.Clone(h.unrepaired),
		Passes: h.passes, LastPass: h.lastPass}
}

// HealNow runs a full pass now, in the caller's goroutine (doctor, tests).
func (e *Engine) HealNow(ctx context.Context) {
	e.heal.pass(ctx, dirtySet{all: true, sweep: true, watches: true})
}

func (h *healer) signal() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *healer) mark(f func(*dirtySet)) {
	h.mu.Lock()
	f(&h.dirty)
	h.mu.Unlock()
	h.signal()
}

// sandboxChanged tells the healer that a sandbox was created or removed, so
// that it watches (or stops watching) its namespace.
func (h *healer) sandboxChanged() {
	h.mu.Lock()
	run := h.running
	h.dirty.watches = true
	h.mu.Unlock()
	if run {
		h.signal()
	}
}

// unwatch closes the watch on a sandbox's namespace: a watch holds the
// namespace, which must be free to go when the sandbox is removed.
func (h *healer) unwatch(name string) {
	h.mu.Lock()
	w := h.watches[name]
	delete(h.watches, name)
	h.mu.Unlock()
	if w != nil {
		w.cancel()
	}
}

// maxLeaving bounds leaving, and leavingLinger is how long an entry stays
// after the link's deletion was notified.
const (
	maxLeaving    = 4096
	leavingLinger = 10 * time.Second
)

// expectGone tells the healer that pontoon takes these host ends down and
// deletes them (a detach, a sandbox removal): their notifications are not
// drift. Without it each detach cost a host pass, which lists every link
// and reads every endpoint: ~5 ms of CPU with 500 attachments.
func (h *healer) expectGone(names ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		return // no events are read
	}
	now := time.Now()
	for n, gone := range h.leaving {
		if !gone.IsZero() && now.Sub(gone) > leavingLinger {
			delete(h.leaving, n)
		}
	}
	if len(h.leaving)+len(names) > maxLeaving {
		clear(h.leaving) // lost notifications must not let it grow
	}
	for _, n := range names {
		h.leaving[n] = time.Time{}
	}
}

// hostEvent marks what a host notification may have broken. Events that
// pontoon's own attaches cause (a veth created up on its bridge) and
// detaches (a port taken down, then deleted: expectGone) mark nothing.
func (h *healer) hostEvent(ev link.Event) {
	switch ev.Kind {
	case link.LinkDeleted, link.LinkChanged:
		h.mu.Lock()
		ours := h.bridges[ev.Name] || strings.HasPrefix(ev.Name, model.HostVethPrefix) || strings.HasPrefix(ev.Name, model.BridgePrefix)
		gone, leaving := h.leaving[ev.Name]
		if leaving && ev.Kind == link.LinkDeleted && gone.IsZero() {
			h.leaving[ev.Name] = time.Now()
		}
		h.mu.Unlock()
		if !ours || leaving && (ev.Kind == link.LinkDeleted || !ev.Up) {
			return
		}
		if ev.Kind == link.LinkChanged && ev.Up && (ev.Master != 0 || !strings.HasPrefix(ev.Name, model.HostVethPrefix)) {
			return
		}
		h.mark(func(d *dirtySet) { d.host = true })
	case link.AddrDeleted, link.RouteDeleted:
		h.mark(func(d *dirtySet) { d.host = true })
	case link.ConfChanged:
		h.mark(func(d *dirtySet) { d.forward = true })
	case link.Overflow:
		h.mark(func(d *dirtySet) { d.all = true })
	}
}

func (h *healer) loop(ctx context.Context) {
	ticker := time.NewTicker(h.period)
	defer ticker.Stop()
	defer func() {
		h.mu.Lock()
		h.running = false
		ws := h.watches
		h.watches = map[string]*sandboxWatch{}
		h.mu.Unlock()
		for _, w := range ws {
			w.cancel()
		}
	}()
	ticks := 0
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
		case <-ticker.C:
			ticks++
			h.mark(func(d *dirtySet) {
				d.all, d.watches = true, true
				d.sweep = d.sweep || ticks%sweepEvery == 0
			})
		}
		wait := healSettle
		if gap := healMinGap - time.Since(last); gap > wait {
			wait = gap
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		h.mu.Lock()
		d := h.dirty
		h.dirty = dirtySet{sandboxes: map[string]bool{}}
		h.mu.Unlock()
		last = time.Now()
		h.pass(ctx, d)
	}
}

// pass checks what d marks and repairs what differs from the store.
func (h *healer) pass(ctx context.Context, d dirtySet) {
	e := h.e
	suspects := d.sandboxes
	if suspects == nil {
		suspects = map[string]bool{}
	}
	if d.host || d.all {
		bridgesRepaired := false
		for name := range h.healHost(ctx, &bridgesRepaired) {
			suspects[name] = true
		}
		if bridgesRepaired {
			d.firewall = true
		}
	}
	if d.firewall || d.all {
		h.healFirewall(ctx, d.foreign)
	}
	if (d.forward || d.all) && e.cfg.SetIPForward {
		h.healForward()
	}
	if d.all || d.sweep {
		// Adopted namespaces: check that they still live (a stat each);
		// with sweep, every sandbox's inside too.
		var sbs []*model.Sandbox
		_ = e.st.View(ctx, func(tx store.Tx) (err error) {
			sbs, err = tx.Sandboxes()
			return err
		})
		h.mu.Lock()
		watched := map[string]bool{}
		for name := range h.watches {
			watched[name] = true
		}
		h.mu.Unlock()
		for _, sb := range sbs {
			switch {
			case d.sweep && !watched[sb.Name]:
				// A watched namespace reports its own drift (and a lost
				// event as Overflow, which marks it).
				suspects[sb.Name] = true
			case sb.Kind == model.KindPID || sb.Kind == model.KindNetns:
				if ino, err := e.ns.Ino(sb.Netns); err != nil || ino != sb.NetnsIno {
					suspects[sb.Name] = true // healSandbox releases it
				}
			case sb.Kind == model.KindPontoon && !e.ns.IsPinned(sb.Netns):
				suspects[sb.Name] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(suspects)) {
		if ctx.Err() != nil {
			return
		}
		h.healSandbox(ctx, name)
	}
	if d.watches || d.all {
		h.syncWatches(ctx)
	}
	h.mu.Lock()
	h.passes++
	h.lastPass = time.Now()
	h.mu.Unlock()
}

func (h *healer) count(kind string, n int) {
	h.mu.Lock()
	h.repairs[kind] += uint64(n)
	h.mu.Unlock()
}

func (h *healer) failed(object, problem string) {
	h.mu.Lock()
	changed := h.unrepaired[object] != problem
	h.unrepaired[object] = problem
	h.mu.Unlock()
	if changed {
		h.e.emit(Event{Kind: model.EventProblem, Op: object, Detail: problem})
	}
}

func (h *healer) ok(object string) {
	h.mu.Lock()
	delete(h.unrepaired, object)
	h.mu.Unlock()
}

// healHost checks every network's bridge and every ready endpoint's host
// end (one link dump) and repairs the bridges. It returns the sandboxes
// whose host ends are missing, down or off their bridge: healSandbox
// decides whether to re-plumb them or, when their namespace died, to
// release them.
func (h *healer) healHost(ctx context.Context, bridgesRepaired *bool) map[string]bool {
	e := h.e
	var nets []*model.Network
	var eps []*model.Endpoint
	var sbs []*model.Sandbox
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		if sbs, err = tx.Sandboxes(); err != nil {
			return err
		}
		eps, err = tx.Endpoints()
		return err
	}); err != nil {
		e.log.Error("self-healing: read the store", "err", err)
		return nil
	}
	names := map[string]bool{}
	byName := map[string]*model.Network{}
	for _, n := range nets {
		names[n.Bridge] = true
		byName[n.Name] = n
	}
	h.mu.Lock()
	h.bridges = names
	h.mu.Unlock()
	for _, n := range nets {
		obj := "bridge " + n.Bridge
		problems := e.drv(n).CheckNetwork(n)
		if len(problems) == 0 {
			h.ok(obj)
			continue
		}
		if h.repairBridge(ctx, n, problems) {
			*bridgesRepaired = true
		}
	}
	links, err := e.link.ListLinks()
	if err != nil {
		e.log.Error("self-healing: list links", "err", err)
		return nil
	}
	have := map[string]link.LinkInfo{}
	for _, l := range links {
		have[l.Name] = l
	}
	ready := map[string]bool{}
	for _, sb := range sbs {
		ready[sb.Name] = sb.State == model.SandboxReady && sb.Kind != model.KindHost
	}
	suspects := map[string]bool{}
	for _, ep := range eps {
		nw := byName[ep.Network]
		if ep.State != model.StateReady || !ready[ep.Sandbox] || nw == nil {
			continue
		}
		if ep.HostIf == "" {
			// No host end to read off the host's links (a direct link, a
			// macvlan): its driver checks it in the sandbox.
			suspects[ep.Sandbox] = true
			continue
		}
		if l, ok := have[ep.HostIf]; !ok || !l.Up || l.Master != portMaster(nw) {
			suspects[ep.Sandbox] = true
		}
	}
	return suspects
}

// repairBridge makes a network's bridge whole again under netMu (network
// create and remove hold it), if the network still exists. It reports
// whether it changed anything.
func (h *healer) repairBridge(ctx context.Context, n *model.Network, problems []string) bool {
	e := h.e
	obj := "bridge " + n.Bridge
	e.netMu.Lock()
	defer e.netMu.Unlock()
	cur, err := h.network(n.Name)
	if err != nil || cur.ID != n.ID {
		return false // removed (or replaced) meanwhile: not ours to repair
	}
	problems = e.drv(cur).CheckNetwork(cur)
	if len(problems) == 0 {
		h.ok(obj)
		return false
	}
	if cur.BridgeAdopted && strings.HasSuffix(problems[0], " is missing") {
		// Not pontoon's bridge: whoever deleted it meant to.
		msg := fmt.Sprintf("bridge %s of network %s (given with --bridge) is gone; pontoon does not make bridges it did not create: recreate it, or remove the network", cur.Bridge, cur.Name)
		h.failed(obj, msg)
		return false
	}
	start := time.Now()
	if err := e.drv(cur).EnsureNetwork(cur); err != nil {
		h.failed(obj, fmt.Sprintf("%s; repair failed: %v", strings.Join(problems, "; "), err))
		e.log.Error("self-healing: repair bridge", "network", cur.Name, "bridge", cur.Bridge, "why", strings.Join(problems, "; "), "err", err)
		return false
	}
	h.ok(obj)
	h.count(RepairBridge, 1)
	e.emitTimed(Event{Kind: model.EventRepaired, Op: RepairBridge, Network: cur.Name, Detail: cur.Bridge + ": " + strings.Join(problems, "; ")}, start)
	e.log.Info("self-healing: repaired bridge", "network", cur.Name, "bridge", cur.Bridge, "why", strings.Join(problems, "; "), "took", time.Since(start).String())
	return true
}

func (h *healer) network(name string) (*model.Network, error) {
	var n *model.Network
	err := h.e.st.View(context.Background(), func(tx store.Tx) (err error) {
		n, err = tx.Network(name)
		return err
	})
	return n, err
}

// healSandbox checks one sandbox under its lock: that its namespace is
// still the one recorded (else it is released, or for a pontoon sandbox
// whose pin vanished, made again), then every ready endpoint, repairing
// what differs.
func (h *healer) healSandbox(ctx context.Context, name string) {
	e := h.e
	unlock := e.lockSandbox(name)
	defer unlock()
	var sb *model.Sandbox
	var eps []*model.Endpoint
	nets := map[string]*model.Network{}
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		if sb, err = tx.Sandbox(name); err != nil {
			return err
		}
		if eps, err = tx.EndpointsOfSandbox(name); err != nil {
			return err
		}
		for _, ep := range eps {
			if n, err := tx.Network(ep.Network); err == nil {
				nets[n.Name] = n
			}
		}
		return nil
	}); err != nil {
		return // removed meanwhile
	}
	if sb.State != model.SandboxReady || sb.Kind == model.KindHost {
		return
	}
	obj := "sandbox " + sb.Name
	switch sb.Kind {
	case model.KindPID, model.KindNetns:
		if ino, err := e.ns.Ino(sb.Netns); err != nil || ino != sb.NetnsIno {
			h.release(sb, eps)
			return
		}
	case model.KindDocker:
		if e.dockerGone(sb, eps) {
			h.release(sb, eps)
			return
		}
	case model.KindPontoon:
		if !e.ns.IsPinned(sb.Netns) {
			start := time.Now()
			if err := h.recreateNamespace(sb); err != nil {
				h.failed(obj, err.Error())
				e.log.Error("self-healing: recreate namespace", "sandbox", sb.Name, "err", err)
				return
			}
			h.count(RepairNamespace, 1)
			e.emitTimed(Event{Kind: model.EventRepaired, Op: RepairNamespace, Sandbox: sb.Name, Detail: "its pin " + sb.Netns + " was gone"}, start)
			e.log.Info("self-healing: made the namespace of sandbox again", "sandbox", sb.Name, "netns", sb.Netns, "why", "its pin is gone", "took", time.Since(start).String())
		}
	}
	h.ok(obj)
	for _, ep := range eps {
		nw := nets[ep.Network]
		if ep.State != model.StateReady || nw == nil {
			continue
		}
		h.healEndpoint(sb, nw, ep)
	}
}

func (h *healer) healEndpoint(sb *model.Sandbox, nw *model.Network, ep *model.Endpoint) {
	e := h.e
	obj := fmt.Sprintf("sandbox %s %s on %s", sb.Name, ep.IfName, nw.Name)
	problems := e.drv(nw).CheckEndpoint(nw, sb, ep)
	if len(problems) == 0 {
		h.ok(obj)
		return
	}
	start := time.Now()
	idx, fixes, err := e.drv(nw).RepairEndpoint(nw, sb, ep)
	for _, f := range fixes {
		h.count(f.Kind, 1)
	}
	what := make([]string, 0, len(fixes))
	for _, f := range fixes {
		what = append(what, f.What)
	}
	if errors.Is(err, link.ErrNetnsGone) && sb.Kind != model.KindPontoon {
		h.release(sb, []*model.Endpoint{ep})
		return
	}
	if err != nil {
		h.failed(obj, fmt.Sprintf("%s; repair failed: %v", strings.Join(problems, "; "), err))
		e.log.Error("self-healing: repair endpoint", "sandbox", sb.Name, "network", nw.Name, "if", ep.IfName,
			"why", strings.Join(problems, "; "), "repaired", strings.Join(what, "; "), "err", err)
		return
	}
	if idx != 0 && idx != ep.HostIfIndex {
		ep.HostIfIndex = idx
		if err := e.st.Update(context.Background(), func(tx store.Tx) error {
			cur, err := tx.Endpoint(ep.Sandbox, ep.Network)
			if err != nil || cur.ID != ep.ID {
				return err
			}
			cur.HostIfIndex = idx
			return tx.PutEndpoint(cur)
		}); err != nil {
			e.log.Warn("self-healing: record the new ifindex", "sandbox", sb.Name, "err", err)
		}
	}
	h.ok(obj)
	for _, f := range fixes {
		e.emitTimed(Event{Kind: model.EventRepaired, Op: f.Kind, Network: nw.Name, Sandbox: sb.Name, Detail: f.What}, start)
	}
	e.log.Info("self-healing: repaired endpoint", "sandbox", sb.Name, "network", nw.Name, "if", ep.IfName, "host_if", ep.HostIf,
		"why", strings.Join(problems, "; "), "repaired", strings.Join(what, "; "), "took", time.Since(start).String())
}

// release removes a sandbox whose adopted namespace is gone or was
// replaced: its endpoints' addresses, firewall elements and DNS names are
// freed and its record deleted. Nothing is entered: the host ends are
// deleted from the host (most are gone with the namespace already).
// Callers hold the sandbox's lock.
func (h *healer) release(sb *model.Sandbox, eps []*model.Endpoint) {
	e := h.e
	start := time.Now()
	if err := e.removeSandbox(sb, eps); err != nil {
		h.failed("sandbox "+sb.Name, fmt.Sprintf("its namespace %s is gone; releasing it failed: %v", sb.Netns, err))
		e.log.Error("self-healing: release sandbox whose namespace is gone", "sandbox", sb.Name, "err", err)
		return
	}
	h.ok("sandbox " + sb.Name)
	h.count(ReleaseGone, 1)
	e.emitTimed(Event{Kind: model.EventReleased, Sandbox: sb.Name, Detail: "its namespace " + sb.Netns + " is gone"}, start)
	e.log.Info("self-healing: released sandbox: its namespace is gone", "sandbox", sb.Name, "kind", string(sb.Kind), "netns", sb.Netns,
		"endpoints", len(eps), "took", time.Since(start).String())
}

// recreateNamespace makes a pontoon sandbox's namespace again after its pin
// vanished (someone unmounted it): the old namespace and its veths are
// gone or unreachable, so the endpoints are made again in the new one.
func (h *healer) recreateNamespace(sb *model.Sandbox) error {
	e := h.e
	h.unwatch(sb.Name)
	_ = e.ns.Delete(sb.Netns) // a leftover file that is no pin
	if err := e.ns.Create(sb.Netns); err != nil {
		return fmt.Errorf("recreate namespace %s: %w", sb.Netns, err)
	}
	ino, err := e.ns.Ino(sb.Netns)
	if err != nil {
		return err
	}
	sb.NetnsIno = ino
	if err := e.st.Update(context.Background(), func(tx store.Tx) error { return tx.PutSandbox(sb) }); err != nil {
		return err
	}
	e.syncSandboxResolver(sb.Name) // into the new namespace
	return nil
}

// healFirewall restores pontoon's tables when they lost something the store
// wants, or re-checks the DOCKER-USER rules when Docker's chains changed.
func (h *healer) healFirewall(ctx context.Context, foreign bool) {
	e := h.e
	reason := e.fw.Check(ctx, h.wantFirewall())
	if reason != "" {
		// An endpoint may have gone between reading the store and the
		// kernel: look again before rewriting the table.
		reason = e.fw.Check(ctx, h.wantFirewall())
	}
	if reason == "" && !foreign {
		h.ok("firewall")
		return
	}
	start := time.Now()
	if err := e.SyncFirewall(ctx); err != nil {
		h.failed("firewall", fmt.Sprintf("%s; restore failed: %v", reason, err))
		e.log.Error("self-healing: restore firewall", "why", reason, "err", err)
		return
	}
	h.ok("firewall")
	if reason == "" {
		e.log.Debug("Docker's filter chains changed: DOCKER-USER rules re-checked", "took", time.Since(start).String())
		return
	}
	h.count(RepairFirewall, 1)
	e.emitTimed(Event{Kind: model.EventRepaired, Op: RepairFirewall, Detail: reason}, start)
	e.log.Info("self-healing: restored pontoon's firewall state", "why", reason, "took", time.Since(start).String())
}

func (h *healer) wantFirewall() firewall.State {
	var nets []*model.Network
	var eps []*model.Endpoint
	_ = h.e.st.View(context.Background(), func(tx store.Tx) (err error) {
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		eps, err = tx.Endpoints()
		return err
	})
	return h.e.firewallState(nets, eps)
}

// healForward turns forwarding back on: IPv4's always (the daemon manages
// it), IPv6's while a network has an IPv6 subnet.
func (h *healer) healForward() {
	e := h.e
	h.healSysctl("net.ipv4.ip_forward", "sandboxes had no way out", e.link.IPForward, e.link.SetIPForward)
	if e.hasIPv6Network() {
		h.healSysctl("net.ipv6.conf.all.forwarding", "IPv6 sandboxes had no way out", func() (bool, error) {
			st, err := e.link.IPv6Host()
			return st.Forwarding, err
		}, e.ensureIPv6Forward)
	}
}

// healSysctl turns a forwarding switch back on when it reads 0.
func (h *healer) healSysctl(name, why string, read func() (bool, error), set func() error) {
	e := h.e
	obj := "sysctl " + name
	on, err := read()
	if err != nil || on {
		if err == nil {
			h.ok(obj)
		}
		return
	}
	if err := set(); err != nil {
		h.failed(obj, fmt.Sprintf("is 0 and cannot be set: %v", err))
		return
	}
	h.ok(obj)
	h.count(RepairSysctl, 1)
	e.emit(Event{Kind: model.EventRepaired, Op: RepairSysctl, Detail: name + " was 0"})
	e.log.Info("self-healing: turned "+name+" back on", "why", "it was 0: "+why)
}

// syncWatches watches the namespace of every ready sandbox pontoon created
// (and only those: see the file comment), and stops watching the others.
func (h *healer) syncWatches(ctx context.Context) {
	e := h.e
	var sbs []*model.Sandbox
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		sbs, err = tx.Sandboxes()
		return err
	}); err != nil {
		return
	}
	want := map[string]*model.Sandbox{}
	for _, sb := range sbs {
		if sb.Kind == model.KindPontoon && sb.State == model.SandboxReady {
			want[sb.Name] = sb
		}
	}
	h.mu.Lock()
	var stop []*sandboxWatch
	for name, w := range h.watches {
		if sb, ok := want[name]; !ok || sb.NetnsIno != w.ino {
			stop = append(stop, w)
			delete(h.watches, name)
		}
	}
	var start []*model.Sandbox
	for name, sb := range want {
		if _, ok := h.watches[name]; !ok {
			start = append(start, sb)
		}
	}
	h.mu.Unlock()
	for _, w := range stop {
		w.cancel()
	}
	for _, sb := range start {
		wctx, cancel := context.WithCancel(ctx)
		events, err := e.link.Watch(wctx, sb.Netns, sb.NetnsIno)
		if err != nil {
			cancel()
			e.log.Debug("self-healing: cannot watch sandbox namespace; the periodic check covers it", "sandbox", sb.Name, "err", err)
			continue
		}
		h.mu.Lock()
		if old := h.watches[sb.Name]; old != nil {
			old.cancel()
		}
		h.watches[sb.Name] = &sandboxWatch{ino: sb.NetnsIno, cancel: cancel}
		h.mu.Unlock()
		name := sb.Name
		go func() {
			for ev := range events {
				if sandboxDrift(ev) {
					h.mark(func(d *dirtySet) { d.sandboxes[name] = true })
				}
			}
		}()
	}
}

// sandboxDrift reports whether a notification from inside a sandbox may
// mean drift: something removed or taken down. New addresses and routes
// (pontoon's own attaches) are not.
func sandboxDrift(ev link.Event) bool {
	switch ev.Kind {
	case link.LinkDeleted, link.AddrDeleted, link.RouteDeleted, link.RuleDeleted, link.Overflow:
		return true
	case link.LinkChanged:
		return !ev.Up
	}
	return false
}
