package engine

import (
	"context"
	"os"
	"slices"
	"strings"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// Topology builds the picture of the host from the store and the kernel:
// every network with its bridge and ports, each port's veth pair and
// sandbox, addresses, published ports and DNS names, with drift marked
// where the kernel disagrees with the store. It reads the host side only
// (one link dump, a bridge check per network, one firewall check), never
// enters a sandbox: `doctor` and `sandbox check` look inside.
func (e *Engine) Topology(ctx context.Context) (*model.Topology, error) {
	var nets []*model.Network
	var sbs []*model.Sandbox
	var eps []*model.Endpoint
	if err := e.st.View(func(tx store.Tx) (err error) {
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		if sbs, err = tx.Sandboxes(); err != nil {
			return err
		}
		eps, err = tx.Endpoints()
		return err
	}); err != nil {
		return nil, err
	}
	links, err := e.link.ListLinks()
	if err != nil {
		return nil, err
	}
	have := map[string]link.LinkInfo{}
	for _, l := range links {
		have[l.Name] = l
	}
	t := &model.Topology{Networks: []*model.TopoNetwork{}, Sandboxes: []*model.TopoSandbox{}}
	t.Host, _ = os.Hostname()
	if ups, err := e.link.Uplinks(); err == nil {
		for _, u := range ups {
			t.Uplinks = append(t.Uplinks, model.TopoUplink{Name: u.Name, Index: u.Index, MTU: u.MTU})
		}
	}
	byNet := map[string]*model.TopoNetwork{}
	for _, n := range nets {
		tn := &model.TopoNetwork{Name: n.Name, Driver: n.Driver, Subnets: n.Subnets,
			Internal: n.Internal, Bridge: n.Bridge, BridgeIndex: have[n.Bridge].Index, Ports: []*model.TopoPort{},
			Drift: e.link.CheckBridge(bridgeOf(n))}
		t.Networks = append(t.Networks, tn)
		byNet[n.Name] = tn
	}
	bySb := map[string]*model.TopoSandbox{}
	for _, sb := range sbs {
		ts := &model.TopoSandbox{Name: sb.Name, Kind: string(sb.Kind), Netns: sb.Netns, Networks: []string{}}
		switch sb.Kind {
		case model.KindPID, model.KindNetns:
			if ino, err := e.ns.Ino(sb.Netns); err != nil || ino != sb.NetnsIno {
				ts.Drift = append(ts.Drift, "namespace "+sb.Netns+" is gone or was replaced")
			}
		case model.KindPontoon:
			if !e.ns.IsPinned(sb.Netns) {
				ts.Drift = append(ts.Drift, "namespace pin "+sb.Netns+" is gone")
			}
		}
		t.Sandboxes = append(t.Sandboxes, ts)
		bySb[sb.Name] = ts
	}
	for _, ep := range eps {
		tn, ts := byNet[ep.Network], bySb[ep.Sandbox]
		if ep.State != model.StateReady || tn == nil || ts == nil {
			continue
		}
		p := &model.TopoPort{Sandbox: ep.Sandbox, HostIf: ep.HostIf, HostIndex: ep.HostIfIndex, IfName: ep.IfName,
			IPs: ep.IPs(), MAC: ep.MAC, Names: append([]string{ep.Sandbox}, ep.Aliases...)}
		for _, m := range ep.Ports {
			p.Published = append(p.Published, m.String())
		}
		l, ok := have[ep.HostIf]
		switch {
		case !ok:
			p.Drift = append(p.Drift, "host end "+ep.HostIf+" is missing")
		default:
			p.HostIndex = l.Index
			if l.Master != tn.Bridge {
				p.Drift = append(p.Drift, "host end "+ep.HostIf+" is not a port of "+tn.Bridge)
			}
			if !l.Up {
				p.Drift = append(p.Drift, "host end "+ep.HostIf+" is down")
			}
		}
		tn.Ports = append(tn.Ports, p)
		ts.Networks = append(ts.Networks, ep.Network)
	}
	for _, tn := range t.Networks {
		slices.SortFunc(tn.Ports, func(a, b *model.TopoPort) int { return strings.Compare(a.Sandbox, b.Sandbox) })
	}
	for _, ts := range t.Sandboxes {
		slices.Sort(ts.Networks)
	}
	if reason := e.fw.Check(ctx, e.heal.wantFirewall()); reason != "" {
		t.Drift = append(t.Drift, "firewall: "+reason)
	}
	if e.cfg.SetIPForward {
		if on, err := e.link.IPForward(); err == nil && !on {
			t.Drift = append(t.Drift, "net.ipv4.ip_forward is 0")
		}
	}
	t.Healing = e.HealStatus().Repairs
	return t, nil
}
