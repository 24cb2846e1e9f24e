package engine

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"

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
	return dns.Network{Name: n.Name, Gateway: n.Gateway, Subnet: n.Subnet, Internal: n.Internal}
}

func dnsRecord(ep *model.Endpoint) dns.Record {
	return dns.Record{Name: ep.Sandbox, Aliases: ep.Aliases, IP: ep.IP}
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
	_ = e.st.View(func(tx store.Tx) error {
		nets, err := tx.Networks()
		if err != nil {
			return err
		}
		for _, n := range nets {
			eps, err := tx.EndpointsOnNetwork(n.Name)
			if err != nil {
				return err
			}
			var rs []dns.Record
			for _, ep := range liveEndpoints(eps) {
				rs = append(rs, dnsRecord(ep))
			}
			e.cfg.Resolver.ReplaceRecords(n.Name, rs)
		}
		return nil
	})
}

func (e *Engine) resolverAdd(ep *model.Endpoint) {
	if e.cfg.Resolver != nil {
		e.cfg.Resolver.SetRecord(ep.Network, dnsRecord(ep))
	}
}

func (e *Engine) resolverRemove(ep *model.Endpoint) {
	if e.cfg.Resolver != nil {
		e.cfg.Resolver.RemoveRecord(ep.Network, ep.IP)
	}
}

// resolvConfPath is where a sandbox's resolv.conf lives: the `ip netns
// exec` convention, /etc/netns/NAME/resolv.conf, under a configurable
// directory so tests never touch the host's /etc.
func (e *Engine) resolvConfPath(sandbox string) string {
	if e.cfg.EtcNetnsDir == "" {
		return ""
	}
	return filepath.Join(e.cfg.EtcNetnsDir, sandbox, "resolv.conf")
}

// writeResolvConf points a sandbox pontoon created at the resolver of its
// primary network (or removes the file when it has none). Adopted
// namespaces belong to their runtime, which manages their /etc.
func (e *Engine) writeResolvConf(sandbox string) {
	p := e.resolvConfPath(sandbox)
	if p == "" || e.cfg.Resolver == nil {
		return
	}
	var sb *model.Sandbox
	var nw *model.Network
	_ = e.st.View(func(tx store.Tx) error {
		var err error
		if sb, err = tx.Sandbox(sandbox); err != nil {
			return err
		}
		eps, err := tx.EndpointsOfSandbox(sandbox)
		if err != nil {
			return err
		}
		for _, ep := range liveEndpoints(eps) {
			if ep.Primary || nw == nil {
				if n, err := tx.Network(ep.Network); err == nil {
					nw = n
				}
			}
		}
		return nil
	})
	if sb == nil || sb.Kind != model.KindPontoon || sb.State == model.SandboxRemoving || nw == nil {
		e.removeResolvConf(sandbox)
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.log.Warn("dns: write resolv.conf", "sandbox", sandbox, "err", err)
		return
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(dns.ResolvConf(dnsNetwork(nw))), 0o644); err == nil {
		err = os.Rename(tmp, p)
		if err != nil {
			e.log.Warn("dns: write resolv.conf", "sandbox", sandbox, "err", err)
		}
	}
}

func (e *Engine) removeResolvConf(sandbox string) {
	p := e.resolvConfPath(sandbox)
	if p == "" {
		return
	}
	if err := os.RemoveAll(filepath.Dir(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("dns: remove resolv.conf", "sandbox", sandbox, "err", err)
	}
}

// ResolvConf returns the path of a sandbox's resolv.conf, or "" when it has
// none.
func (e *Engine) ResolvConf(sandbox string) string {
	p := e.resolvConfPath(sandbox)
	if p == "" {
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
