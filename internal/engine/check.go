package engine

import (
	"context"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// CheckSandbox compares a sandbox's kernel state with the store: the
// namespace is there, each endpoint's veth exists with its address, MAC and
// routes, and its host end is on the right bridge. It changes nothing.
func (e *Engine) CheckSandbox(ctx context.Context, name string) ([]api.Problem, error) {
	var sb *model.Sandbox
	var eps []*model.Endpoint
	nets := map[string]*model.Network{}
	if err := e.st.View(ctx, func(tx store.Tx) error {
		var err error
		if sb, err = tx.Sandbox(name); err != nil {
			return err
		}
		if eps, err = tx.EndpointsOfSandbox(name); err != nil {
			return err
		}
		for _, ep := range eps {
			n, err := tx.Network(ep.Network)
			if err != nil {
				return err
			}
			nets[n.Name] = n
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []api.Problem
	switch sb.Kind {
	case model.KindPontoon:
		if !e.ns.IsPinned(sb.Netns) {
			return []api.Problem{{Problem: "namespace pin " + sb.Netns + " is gone"}}, nil
		}
	case model.KindPID, model.KindNetns:
		if ino, err := e.ns.Ino(sb.Netns); err != nil || ino != sb.NetnsIno {
			return []api.Problem{{Problem: "namespace " + sb.Netns + " is gone or was replaced"}}, nil
		}
	}
	for _, ep := range eps {
		if ep.State != model.StateReady {
			continue
		}
		nw := nets[ep.Network]
		for _, p := range e.drv(nw).CheckEndpoint(nw, sb, ep) {
			out = append(out, api.Problem{Network: ep.Network, IfName: ep.IfName, Problem: p})
		}
	}
	return out, nil
}

// CheckBridge compares a network's bridge with the store. It changes
// nothing.
func (e *Engine) CheckBridge(n *model.Network) []string {
	return e.drv(n).CheckNetwork(n)
}

// FirewallDrift says what the store wants of the firewall that the kernel
// lacks ("" when nothing). It changes nothing.
func (e *Engine) FirewallDrift(ctx context.Context) string {
	return e.fw.Check(ctx, e.heal.wantFirewall())
}
