package engine

import (
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
}

func dnsNetwork(n *model.Network) dns.Network {
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
	if err := e.st.View(func(tx store.Tx) (err error) {
		nets, err = tx.Networks()
		return err
	}); err != nil {
		e.log.Error("dns: list networks", "err", err)
		return
	}
	var dn []dns.Network
	for _, n := range nets {
		if !n.HasHostGateway() {
			continue // no gateway on the host to listen on
		}
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
}

func (e *Engine) resolverRemove(ep *model.Endpoint) {
	if e.cfg.Resolver != nil {
		e.cfg.Resolver.RemoveRecord(ep.Network, ep.FirstIP())
	}
}
