package engine

import (
	"context"
	"slices"

	"pontoon/internal/model"
)

// Topology builds the picture of the host from the read model: every
// network with its bridge and ports, each port's veth pair and sandbox,
// addresses, published ports, DNS names and counters, with drift marked
// where the kernel disagrees with the store. It reads the host side only
// (one link dump, which has the counters too, a bridge check per network,
// one firewall check), never enters a sandbox: `doctor` and `sandbox
// check` look inside.
func (e *Engine) Topology(ctx context.Context) (*model.Topology, error) {
	v, err := e.view(ctx, viewQuery{kernel: hostWide, stats: true})
	if err != nil {
		return nil, err
	}
	return v.topology(e.HealStatus().Repairs), nil
}

// topology is the view as the picture of the host (model.Topology).
func (v *view) topology(healing map[string]uint64) *model.Topology {
	t := &model.Topology{Host: v.host, Networks: make([]*model.TopoNetwork, 0, len(v.nets)),
		Sandboxes: make([]*model.TopoSandbox, 0, len(v.sbs)), Drift: v.drift, Healing: healing, Uplinks: v.uplinks}
	for _, nv := range v.nets {
		n := nv.n
		tn := &model.TopoNetwork{Name: n.Name, Driver: n.Driver, Subnets: n.Subnets, Internal: n.Internal,
			Bridge: n.Bridge, BridgeIndex: nv.bridgeIndex, Ports: make([]*model.TopoPort, 0, len(nv.eps)), Drift: nv.drift}
		for _, ev := range nv.eps {
			if v.sbNamed[ev.ep.Sandbox] == nil {
				continue // a record without its sandbox
			}
			ep := ev.ep
			p := &model.TopoPort{Sandbox: ep.Sandbox, HostIf: ep.HostIf, HostIndex: ev.hostIndex, IfName: ep.IfName,
				IPs: ep.IPs(), MAC: ep.MAC, Names: append([]string{ep.Sandbox}, ep.Aliases...), Drift: ev.drift}
			if v.stats && ev.stats != nil {
				p.Stats = epStats(ev.stats)
			}
			for _, m := range ep.Ports {
				p.Published = append(p.Published, m.String())
			}
			tn.Ports = append(tn.Ports, p)
		}
		t.Networks = append(t.Networks, tn)
	}
	for _, sv := range v.sbs {
		ts := &model.TopoSandbox{Name: sv.sb.Name, Kind: string(sv.sb.Kind), Netns: sv.sb.Netns, Networks: []string{}, Drift: sv.drift}
		for _, ev := range sv.eps {
			ts.Networks = append(ts.Networks, ev.ep.Network)
		}
		slices.Sort(ts.Networks)
		t.Sandboxes = append(t.Sandboxes, ts)
	}
	return t
}
