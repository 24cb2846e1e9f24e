package engine

import (
	"context"
	"net/netip"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
	"pontoon/internal/relay"
	"pontoon/internal/store"
)

// Ports lists every published mapping (of ready endpoints), optionally of
// one sandbox, with where it is reachable from: firewall.Reachable reads it
// off the rules, given the network as firewallState describes it to them.
func (e *Engine) Ports(sandbox string) ([]model.PortInfo, error) {
	out := []model.PortInfo{}
	err := e.st.View(context.Background(), func(tx store.Tx) error {
		var eps []*model.Endpoint
		var err error
		if sandbox != "" {
			if _, err := tx.Sandbox(sandbox); err != nil {
				return err
			}
			eps, err = tx.EndpointsOfSandbox(sandbox)
		} else {
			eps, err = tx.Endpoints()
		}
		if err != nil {
			return err
		}
		nets := map[string]firewall.Network{}
		for _, ep := range liveEndpoints(eps) {
			if len(ep.Ports) == 0 {
				continue
			}
			fn, ok := nets[ep.Network]
			if !ok {
				n, err := tx.Network(ep.Network)
				if err != nil {
					return err
				}
				fn = e.fwNetwork(n)
				nets[ep.Network] = fn
			}
			for _, m := range ep.Ports {
				r := firewall.Reachable(m, fn)
				if m.HostIP == relay.Loopback && e.cfg.Relay != nil {
					r = firewall.Reach{From: []string{firewall.FromHost}, Text: "host only ([::1], through the daemon's relay)"}
				}
				out = append(out, model.PortInfo{Sandbox: ep.Sandbox, Network: ep.Network, IPs: ep.IPs(),
					Mapping: m, Reachable: r.Text, ReachableFrom: r.From})
			}
		}
		return nil
	})
	return out, err
}

// fwNetwork is what the firewall knows of a network.
func (e *Engine) fwNetwork(n *model.Network) firewall.Network {
	var links []string
	var remotes []netip.Prefix
	var via string
	if n.Overlay != nil && n.Overlay.VXLAN != "" {
		links = []string{n.Overlay.VXLAN} // carries the network to its other hosts
	}
	if d, ok := e.drivers[model.DriverOverlay].(*overlayDriver); ok && len(n.Overlay.Prefixes()) > 0 {
		// Its members on the other hosts, by address and by the interface
		// they come through (the overlay driver says which): required in
		// host-gw mode (their traffic comes and goes through the
		// underlay), harmless with VXLAN (the device is a member link
		// already). From anywhere else the range is nobody's member.
		if via = d.remoteVia(n); via != "" {
			remotes = n.Overlay.Prefixes() // one per family
		}
	}
	return firewall.Network{Name: n.Name, Bridge: n.Bridge, Links: links, Remotes: remotes, RemoteVia: via,
		Internal: n.Internal, Isolated: !n.ICC, Subnets: n.Subnets}
}

// Relay answers published ports on the host's [::1] in user space, where
// the kernel cannot DNAT (relay.Relay; nil in Config: no relay).
type Relay interface {
	Publish(m model.PortMapping, target netip.Addr) error
	Unpublish(m model.PortMapping)
	Sync(ts []relay.Target) error
}

// relayTarget is where a relayed connection of ep goes: its IPv6 address,
// or its IPv4 one on a network without IPv6.
func relayTarget(ep *model.Endpoint) netip.Addr {
	if a, ok := ep.Addr6(); ok {
		return a.Addr.Addr()
	}
	return ep.FirstIP()
}

func (e *Engine) relayPublish(ep *model.Endpoint) {
	if e.cfg.Relay == nil {
		return
	}
	for _, m := range ep.Ports {
		if err := e.cfg.Relay.Publish(m, relayTarget(ep)); err != nil {
			e.log.Warn("published port not answered on [::1]", "sandbox", ep.Sandbox, "mapping", m.String(), "err", err)
		}
	}
}

func (e *Engine) relayUnpublish(ep *model.Endpoint) {
	if e.cfg.Relay == nil {
		return
	}
	for _, m := range ep.Ports {
		e.cfg.Relay.Unpublish(m)
	}
}

// syncRelay makes the [::1] relays match the ready endpoints' mappings.
func (e *Engine) syncRelay() {
	if e.cfg.Relay == nil {
		return
	}
	var ts []relay.Target
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		eps, err := tx.Endpoints()
		for _, ep := range eps {
			if ep.State != model.StateReady {
				continue
			}
			for _, m := range ep.Ports {
				ts = append(ts, relay.Target{Mapping: m, Addr: relayTarget(ep)})
			}
		}
		return err
	})
	if err := e.cfg.Relay.Sync(ts); err != nil {
		e.log.Warn("some published ports are not answered on [::1]", "err", err)
	}
}
