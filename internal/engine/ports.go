package engine

import (
	"pontoon/internal/firewall"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// Ports lists every published mapping (of ready endpoints), optionally of
// one sandbox, with where it is reachable from: firewall.Reachable reads it
// off the rules, given the network as firewallState describes it to them.
func (e *Engine) Ports(sandbox string) ([]model.PortInfo, error) {
	out := []model.PortInfo{}
	err := e.st.View(func(tx store.Tx) error {
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
				fn = fwNetwork(n)
				nets[ep.Network] = fn
			}
			for _, m := range ep.Ports {
				r := firewall.Reachable(m, fn)
				out = append(out, model.PortInfo{Sandbox: ep.Sandbox, Network: ep.Network, IP: ep.IP.String(),
					Mapping: m, Reachable: r.Text, ReachableFrom: r.From})
			}
		}
		return nil
	})
	return out, err
}

// fwNetwork is what the firewall knows of a network.
func fwNetwork(n *model.Network) firewall.Network {
	return firewall.Network{Name: n.Name, Bridge: n.Bridge, Internal: n.Internal,
		Subnets: []model.Subnet{{Prefix: n.Subnet, Gateway: n.Gateway, IPRange: n.IPRange, Masquerade: n.Masquerade}}}
}
