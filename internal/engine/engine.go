// Package engine turns requests (create a network, attach a sandbox, …) into
// store transactions and kernel changes, as transactions with rollback.
//
// The life of an attach (see ../shared/DESIGN.md):
//
//  1. validate the request completely (read-only transaction);
//  2. one store transaction reserves the IP and records the endpoint as
//     "creating";
//  3. the veth pair is created with its peer directly in the sandbox
//     namespace, addressed and routed there; the host end joins the bridge;
//  4. the store marks the endpoint "ready".
//
// Any failure undoes 3→2 in reverse. If the daemon dies between 2 and 4,
// Reconcile (run at start-up, before serving) rolls the endpoint back: the
// host veth's name is derived from the endpoint's ID, so the record alone
// says what to delete, and the IP stays reserved until it is.
//
// A detach marks the endpoint "removing" and takes the host end down and out
// of the bridge (traffic stops at once); a reaper deletes the veths in
// batches — one kernel RCU wait per batch instead of one per veth — and only
// then releases the addresses, so an address is never on two live links.
//
// Removing a sandbox works the same way: the request returns once the
// sandbox is recorded "removing" and carries no traffic; the namespace pin,
// the veths and the record go in the background.
//
// Locking: the store runs write transactions one at a time (bbolt's single
// writer; concurrent ones share a commit, but run in order in it), which is
// what keeps IPAM and the endpoint/network relations consistent. On top of
// that, operations on one sandbox are serialised by a per-sandbox mutex (a
// background removal holds it until it is done), and network create/remove
// by netMu (they also rewrite the firewall). Nothing else is held across a
// kernel call: parallel attaches of different sandboxes queue only for the
// kernel's RTNL (docs/benchmarks.md, "Parallel attach and detach").
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// Namespaces is what the engine needs from package netns (faked in unit
// tests).
type Namespaces interface {
	Create(path string) error
	Delete(path string) error
	IsPinned(path string) bool
	Pins(dir string) ([]string, error)
	// Ino returns an identity (device<<32 ^ inode) of the namespace at path,
	// or an error when path is not a network namespace.
	Ino(path string) (uint64, error)
}

// Config configures an Engine.
type Config struct {
	Store    store.Store
	Link     link.Interface
	Firewall firewall.Interface
	Netns    Namespaces
	Log      *slog.Logger

	// NetnsDir is where the namespaces of pontoon's sandboxes are pinned.
	NetnsDir string
	// Node names this host in the node-local records it writes
	// (model.Sandbox.Node, model.Endpoint.Node): the cluster's node name,
	// else the daemon's --node-name, else the host name.
	Node string
	// DefaultSubnet is the default network's subnet unless it overlaps an
	// address or route of the host; then one is picked from Pool.
	DefaultSubnet netip.Prefix
	// Pool is where subnets for networks created without --subnet come
	// from, PoolBits long each.
	Pool     []netip.Prefix
	PoolBits int
	// Pool6 is where IPv6 subnets for networks created with --ipv6 and no
	// IPv6 --subnet come from, Pool6Bits long each (default: /64s of
	// ipam.DefaultPool6, a ULA /48).
	Pool6     []netip.Prefix
	Pool6Bits int
	// Relay answers published ports on [::1] (nil: they are not).
	Relay Relay
	// SetIPForward enables net.ipv4.ip_forward in the daemon's namespace.
	SetIPForward bool
	// Resolver serves names per network (nil: no DNS).
	Resolver Resolver
	// PortProbe reports an error naming the holder when a host process
	// already uses a port a mapping wants (nil: no check).
	PortProbe func(m model.PortMapping) error
	// EtcNetnsDir holds each sandbox's resolv.conf as NAME/resolv.conf
	// (the `ip netns exec` convention; default /etc/netns in the daemon).
	EtcNetnsDir string
	// Cluster is the cluster this daemon is a node of (nil: a single
	// host); overlay networks need it.
	Cluster Cluster
	// OVSDB is Open vSwitch's database endpoint for the ovs driver
	// ("unix:/run/openvswitch/db.sock"); "": the driver refuses networks
	// and says how to start OVS.
	OVSDB string
	// HealPeriod is how often the self-healing backstop pass runs
	// (0: DefaultHealPeriod). Events trigger passes in between.
	HealPeriod time.Duration
}

// Engine is the single writer of pontoon's state.
type Engine struct {
	cfg  Config
	st   store.Store
	link link.Interface
	fw   firewall.Interface
	// drivers are the network drivers by name (driver.go).
	drivers map[string]Driver
	// statics are the cluster's static addresses, by watch
	// (cluster_static.go).
	statics staticCache
	ns      Namespaces
	log     *slog.Logger
	netMu   sync.Mutex
	// fwVXLANSynced is the VXLAN underlay the firewall was last synced
	// with (syncVXLANPeers); guarded by netMu.
	fwVXLANSynced firewall.VXLANUnderlay

	sbMu  sync.Mutex
	sbLck map[string]*sync.Mutex
	// removals holds, by sandbox name, the background removals under way
	// (closed when done); guarded by sbMu.
	removals map[string]*removal

	// inFlight counts requests that attach or detach (Connect,
	// Disconnect, CreateSandbox, RemoveSandbox): background work nobody
	// waits for (resolv.conf files) defers to them.
	inFlight atomic.Int64

	// resolveIn holds the sandboxes with a resolver in their own
	// namespace (dns.go), guarded by resolveInMu.
	resolveInMu sync.Mutex
	resolveIn   map[string]bool

	reaper    *reaper
	flows     *flowCleaner // stale conntrack entries (conntrack.go)
	resolv    *resolvFiles
	heal      *healer
	events    *eventHub
	garbage   atomic.Uint64 // kernel objects collected as garbage
	closeOnce sync.Once

	// testHook, when set, is called at named points of multi-step
	// operations; returning an error there injects a failure (unit tests).
	testHook func(step string) error
	// nameW writes this node's name records to the cluster (nil until
	// StartCluster, or without a cluster).
	nameW atomic.Pointer[nameWriter]
}

// New returns an engine. Call Reconcile before serving requests.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Link == nil || cfg.Firewall == nil || cfg.Netns == nil {
		return nil, errors.New("engine: store, link, firewall and netns are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Pool6Bits == 0 {
		cfg.Pool6Bits = 64
	}
	if cfg.PoolBits == 0 {
		cfg.PoolBits = 24
	}
	e := &Engine{
		cfg: cfg, st: cfg.Store, link: cfg.Link, fw: cfg.Firewall, ns: cfg.Netns,
		drivers: map[string]Driver{
			model.DriverBridge:  bridgeDriver{cfg.Link},
			model.DriverLink:    &linkDriver{link: cfg.Link, st: cfg.Store},
			model.DriverMacvlan: &macvlanDriver{link: cfg.Link, st: cfg.Store},
			model.DriverOVS:     &ovsDriver{link: cfg.Link, endpoint: cfg.OVSDB},
			model.DriverOverlay: &overlayDriver{bridgeDriver: bridgeDriver{cfg.Link}, cl: cfg.Cluster, hgw: hostGW{log: cfg.Log}, log: cfg.Log},
		},
		log: cfg.Log, sbLck: map[string]*sync.Mutex{}, removals: map[string]*removal{},
		resolveIn: map[string]bool{},
	}
	e.reaper = newReaper(e)
	e.flows = newFlowCleaner(e)
	e.resolv = newResolvFiles(e)
	e.heal = newHealer(e)
	e.events = newEventHub()
	return e, nil
}

// Close finishes the sandbox removals under way, then stops the background
// reaper and resolv.conf writer after finishing their queues. It does not
// touch other sandboxes: stopping the daemon never interrupts their
// traffic. Closing twice is harmless.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		e.waitRemovals()
		e.reaper.stop()
		e.flows.stop() // after the reaper, which feeds it
		e.resolv.stop()
		if d, ok := e.drivers[model.DriverOVS].(*ovsDriver); ok {
			d.close()
		}
	})
}

// Flush finishes pending background work now: sandbox removals, teardowns
// of detached endpoints, conntrack clean-ups, then resolv.conf files.
func (e *Engine) Flush() {
	e.waitRemovals()
	e.reaper.flush()
	e.flows.flush()
	e.resolv.flush()
}

// request counts a request in flight until the returned func is called.
func (e *Engine) request() func() {
	e.inFlight.Add(1)
	return func() { e.inFlight.Add(-1) }
}

func (e *Engine) lockSandbox(name string) func() {
	e.sbMu.Lock()
	m, ok := e.sbLck[name]
	if !ok {
		m = &sync.Mutex{}
		e.sbLck[name] = m
	}
	e.sbMu.Unlock()
	m.Lock()
	return m.Unlock
}

func (e *Engine) hook(step string) error {
	if e.testHook != nil {
		return e.testHook(step)
	}
	return nil
}

// firewallState builds the firewall's desired state from the store.
func (e *Engine) firewallState(nets []*model.Network, eps []*model.Endpoint) firewall.State {
	var s firewall.State
	byName := make(map[string]*model.Network, len(nets))
	for _, n := range nets {
		byName[n.Name] = n
	}
	for _, ep := range eps {
		if ep.State == model.StateReady {
			s.Ports = append(s.Ports, published(ep)...)
			if guards(byName[ep.Network]) {
				s.Guards = append(s.Guards, guarded(ep)...)
			}
		}
	}
	for _, n := range nets {
		if !n.HasHostGateway() {
			continue // its traffic never passes the host
		}
		s.Networks = append(s.Networks, e.fwNetwork(n))
	}
	s.VXLAN = e.fwVXLAN(nets)
	return s
}

// syncFirewall rewrites pontoon's table from the store (one transaction).
func (e *Engine) syncFirewall(ctx context.Context) error {
	var nets []*model.Network
	var eps []*model.Endpoint
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		eps, err = tx.Endpoints()
		return err
	}); err != nil {
		return err
	}
	start := time.Now()
	s := e.firewallState(nets, eps)
	if err := e.fw.Sync(ctx, s); err != nil {
		e.emitTimed(Event{Kind: model.EventFailed, Op: "firewall-sync", Detail: err.Error()}, start)
		return fmt.Errorf("firewall: %w", err)
	}
	e.fwVXLANSynced = s.VXLAN
	e.emitTimed(Event{Kind: model.EventFirewallSynced, Detail: fmt.Sprintf("%d networks", len(nets))}, start)
	e.flowsResync(eps)
	return nil
}

// SyncFirewall is syncFirewall for callers outside the engine (doctor,
// self-healing).
func (e *Engine) SyncFirewall(ctx context.Context) error {
	e.netMu.Lock()
	defer e.netMu.Unlock()
	return e.syncFirewall(ctx)
}
