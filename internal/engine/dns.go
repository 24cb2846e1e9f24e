package engine

import (
	"context"
	"net/netip"

	"pontoon/internal/dns"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// Resolver is what the engine needs from the embedded DNS server
// (dns.Server); nil in Config means no name resolution.
type Resolver interface {
	SetNetworks(nets []dns.Network) error
	SetRecord(network string, r dns.Record)
	RemoveRecord(network string, ip netip.Addr)
	ReplaceRecords(network string, rs []dns.Record)
	// SetSandbox serves the names of networks inside a sandbox's
	// namespace, at 127.0.0.11 (for sandboxes on networks with no gateway
	// on the host); RemoveSandbox stops that.
	SetSandbox(netns string, ino uint64, networks []string) error
	RemoveSandbox(netns string) error
}

// dnsNetwork is a network as the resolver knows it: its gateways, where it
// listens; or, for a network with none on the host (a direct link, a
// macvlan), its subnets, whose sandboxes ask the resolver in their own
// namespace (syncSandboxResolver).
func dnsNetwork(n *model.Network) dns.Network {
	if !n.HasHostGateway() {
		return dns.Network{Name: n.Name, Subnets: n.Prefixes(), Internal: n.Internal}
	}
	gws := make([]netip.Prefix, 0, len(n.Subnets))
	for _, s := range n.Subnets {
		gws = append(gws, netip.PrefixFrom(s.Gateway, s.Prefix.Bits()))
	}
	return dns.Network{Name: n.Name, Gateways: gws, Internal: n.Internal}
}

func dnsRecord(ep *model.Endpoint) dns.Record {
	return dns.Record{Name: ep.Sandbox, Aliases: ep.Aliases, IPs: ep.IPs()}
}

// syncResolverNetworks starts and stops per-network resolvers to match the
// store. Called with netMu held, after bridges exist (a resolver listens on
// its gateway address).
func (e *Engine) syncResolverNetworks() {
	if e.cfg.Resolver == nil {
		return
	}
	var nets []*model.Network
	if err := e.st.View(context.Background(), func(tx store.Tx) (err error) {
		nets, err = tx.Networks()
		return err
	}); err != nil {
		e.log.Error("dns: list networks", "err", err)
		return
	}
	var dn []dns.Network
	for _, n := range nets {
		dn = append(dn, dnsNetwork(n))
	}
	if err := e.cfg.Resolver.SetNetworks(dn); err != nil {
		e.log.Error("dns: some network resolvers could not start", "err", err)
	}
}

// syncResolverRecords replaces every network's records with the store's
// ready endpoints (start-up).
func (e *Engine) syncResolverRecords() {
	if e.cfg.Resolver == nil {
		return
	}
	nets, err := e.Networks()
	if err != nil {
		e.log.Error("dns: list networks", "err", err)
		return
	}
	for _, n := range nets {
		rs := make([]dns.Record, 0, len(n.Endpoints))
		for _, ep := range n.Endpoints {
			rs = append(rs, dnsRecord(ep))
		}
		e.cfg.Resolver.ReplaceRecords(n.Name, rs)
	}
}

func (e *Engine) resolverAdd(ep *model.Endpoint) {
	if e.cfg.Resolver != nil {
		e.cfg.Resolver.SetRecord(ep.Network, dnsRecord(ep))
	}
	if e.cfg.Cluster != nil && e.isOverlay(ep.Network) {
		e.publishName(ep)
	}
}

// isOverlay reports whether network is an overlay network, whose names
// go to the cluster (a store read: only asked with a cluster).
func (e *Engine) isOverlay(network string) bool {
	n, err := e.networkRecord(context.Background(), network)
	return err == nil && n.Driver == model.DriverOverlay
}

func (e *Engine) resolverRemove(ep *model.Endpoint) {
	if e.cfg.Resolver != nil {
		e.cfg.Resolver.RemoveRecord(ep.Network, ep.FirstIP())
	}
	if e.cfg.Cluster != nil && e.isOverlay(ep.Network) {
		e.unpublishName(ep)
	}
}

// sandboxNets lists the networks of a sandbox's live endpoints, and
// whether one of them has no gateway on the host: such a sandbox asks the
// resolver in its own namespace, for all of its networks' names.
func sandboxNets(tx store.Tx, sandbox string) (names []string, inSandbox bool, err error) {
	eps, err := tx.EndpointsOfSandbox(sandbox)
	if err != nil {
		return nil, false, err
	}
	for _, ep := range eps {
		if ep.State == model.StateRemoving {
			continue
		}
		n, err := tx.Network(ep.Network)
		if err != nil {
			continue
		}
		names = append(names, n.Name)
		if !n.HasHostGateway() {
			inSandbox = true
		}
	}
	return names, inSandbox, nil
}

// syncSandboxResolver starts, updates or stops the resolver inside a
// sandbox's namespace to match its networks (after an attach or detach).
func (e *Engine) syncSandboxResolver(sandbox string) {
	if e.cfg.Resolver == nil {
		return
	}
	e.resolveInMu.Lock()
	defer e.resolveInMu.Unlock()
	e.syncSandboxResolverLocked(sandbox)
}

// maybeSyncSandboxResolver is syncSandboxResolver after an attach to or a
// detach from nw (nil: the sandbox's removal): skipped, without reading
// the store, for a sandbox that has no resolver of its own and a network
// with a gateway on the host (the common case, on every bridge attach).
func (e *Engine) maybeSyncSandboxResolver(sandbox string, nw *model.Network) {
	if e.cfg.Resolver == nil {
		return
	}
	e.resolveInMu.Lock()
	defer e.resolveInMu.Unlock()
	if (nw == nil || nw.HasHostGateway()) && !e.resolveIn[sandbox] {
		return
	}
	e.syncSandboxResolverLocked(sandbox)
}

func (e *Engine) syncSandboxResolverLocked(sandbox string) {
	var sb *model.Sandbox
	var nets []string
	var inSandbox bool
	if err := e.st.View(context.Background(), func(tx store.Tx) (err error) {
		if sb, err = tx.Sandbox(sandbox); err != nil {
			return err
		}
		nets, inSandbox, err = sandboxNets(tx, sandbox)
		return err
	}); err != nil || sb.Kind == model.KindHost || sb.Kind == model.KindVM {
		return
	}
	if !inSandbox || sb.State == model.SandboxRemoving {
		if e.resolveIn[sandbox] {
			if err := e.cfg.Resolver.RemoveSandbox(sb.Netns); err != nil {
				e.log.Warn("dns: stop the resolver in a sandbox", "sandbox", sandbox, "err", err)
			}
			delete(e.resolveIn, sandbox)
		}
		return
	}
	if err := e.cfg.Resolver.SetSandbox(sb.Netns, sb.NetnsIno, nets); err != nil {
		e.log.Warn("dns: start the resolver in a sandbox; its names do not resolve", "sandbox", sandbox, "err", err)
		return
	}
	e.resolveIn[sandbox] = true
}

// syncSandboxResolvers starts the resolvers inside sandboxes that need one
// (start-up).
func (e *Engine) syncSandboxResolvers() {
	if e.cfg.Resolver == nil {
		return
	}
	var want []string
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		sbs, err := tx.Sandboxes()
		for _, sb := range sbs {
			if _, in, _ := sandboxNets(tx, sb.Name); in {
				want = append(want, sb.Name)
			}
		}
		return err
	})
	for _, name := range want {
		e.syncSandboxResolver(name)
	}
}
