package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
	"pontoon/internal/trace"
)

// Trace answers `pontoon trace`: the path a packet takes, predicted from
// the store and the rules' description (package trace), with the kernel's
// own lookups along the way when the link adapter can make them, and —
// with spec.Live — a real probe whose nftables trace is compared with the
// prediction (trace_live.go).
//
// Everything is validated before anything is sent or armed.
func (e *Engine) Trace(ctx context.Context, spec model.TraceSpec) (*model.Trace, error) {
	pr, wait, v6, err := traceProbe(spec)
	if err != nil {
		return nil, err
	}
	if v6 && spec.Live {
		return nil, model.Invalidf("a live trace follows IPv4 packets only: trace IPv6 with --predict (the prediction and the kernel's lookups cover it)")
	}
	top, err := e.traceTopology(v6)
	if err != nil {
		return nil, err
	}
	var k trace.Kernel
	if l, ok := e.link.(link.Lookups); ok {
		k = kernelLookups{l}
	}
	tr, err := trace.Predict(top, pr, k)
	if err != nil {
		return nil, err
	}
	if spec.Live {
		e.traceLive(ctx, top, pr, tr, wait)
	}
	return tr, nil
}

// Default and longest waits of a live trace.
const (
	traceWaitSandbox = time.Second
	traceWaitLAN     = 10 * time.Second
	traceWaitMax     = time.Minute
)

// traceProbe validates a request into a probe, and says whether it is an
// IPv6 packet: the family of an address in the spec, else spec.IPv6.
func traceProbe(spec model.TraceSpec) (trace.Probe, time.Duration, bool, error) {
	var pr trace.Probe
	to, port, proto, err := trace.ParseDst(spec.Dst)
	if err != nil {
		return pr, 0, false, err
	}
	pr.To, pr.Port, pr.Proto, pr.From, pr.Via = to, port, proto, spec.Src, spec.Via
	var fams []netip.Addr // addresses given, whose family decides
	if spec.FromLAN != "" {
		if spec.Src != "" {
			return pr, 0, false, model.Invalidf("give a source sandbox (%s) or --from-lan (%s), not both", spec.Src, spec.FromLAN)
		}
		a, err := netip.ParseAddr(spec.FromLAN)
		if err != nil || a.Zone() != "" {
			return pr, 0, false, model.Invalidf("--from-lan %q is not an IP address", spec.FromLAN)
		}
		pr.FromLAN = a.Unmap()
		fams = append(fams, pr.FromLAN)
	}
	if spec.SrcIP != "" {
		a, err := netip.ParseAddr(spec.SrcIP)
		if err != nil || a.Zone() != "" {
			return pr, 0, false, model.Invalidf("source address %q is not an IP address", spec.SrcIP)
		}
		pr.SrcIP = a.Unmap()
		fams = append(fams, pr.SrcIP)
	}
	if a, err := netip.ParseAddr(to); err == nil {
		pr.To = a.Unmap().String()
		fams = append(fams, a.Unmap())
	}
	v6 := spec.IPv6
	for i, a := range fams {
		if i == 0 && !spec.IPv6 {
			v6 = a.Is6()
		}
		if a.Is6() != v6 {
			return pr, 0, false, model.Invalidf("trace: %s is not of the packet's family (%s): give addresses of one family", a, map[bool]string{true: "IPv6", false: "IPv4"}[v6])
		}
	}
	wait := traceWaitSandbox
	if pr.FromLAN.IsValid() {
		wait = traceWaitLAN
	}
	if spec.Wait != "" {
		d, err := time.ParseDuration(spec.Wait)
		if err != nil || d <= 0 || d > traceWaitMax {
			return pr, 0, false, model.Invalidf("wait %q: want a duration from 1ms to %s, e.g. 2s", spec.Wait, traceWaitMax)
		}
		wait = d
	}
	return pr, wait, v6, nil
}

// traceTopology reads what Predict needs, for packets of one family (v6:
// IPv6): networks and ready endpoints from the store with that family's
// subnet and address, the firewall's state as Sync would write it, and
// the host's addresses and routes of that family.
func (e *Engine) traceTopology(v6 bool) (*trace.Topology, error) {
	var nets []*model.Network
	var eps []*model.Endpoint
	sbs := map[string]*model.Sandbox{}
	if err := e.st.View(context.Background(), func(tx store.Tx) (err error) {
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		if eps, err = tx.Endpoints(); err != nil {
			return err
		}
		all, err := tx.Sandboxes()
		for _, sb := range all {
			sbs[sb.Name] = sb
		}
		return err
	}); err != nil {
		return nil, err
	}
	top := &trace.Topology{Firewall: firewall.NewEvaluator(e.firewallState(nets, eps))}
	for _, n := range nets {
		s, ok := n.Subnet4()
		if v6 {
			s, ok = n.Subnet6()
		}
		if !ok {
			continue // the network carries no packet of this family
		}
		tn := trace.Network{Name: n.Name, Bridge: n.Bridge, Subnet: s.Prefix, Gateway: s.Gateway,
			Internal: n.Internal, ICC: n.ICC, Masquerade: s.Masquerade}
		if s4, ok := n.Subnet4(); ok {
			tn.MAC = model.MACFromIP(s4.Gateway) // the bridge's MAC comes from its IPv4 gateway
		}
		top.Networks = append(top.Networks, tn)
	}
	for _, ep := range eps {
		if ep.State != model.StateReady {
			continue
		}
		mac, _ := net.ParseMAC(ep.MAC)
		a, ok := ep.Addr4()
		if v6 {
			a, ok = ep.Addr6()
		}
		if !ok {
			continue
		}
		te := trace.Endpoint{Sandbox: ep.Sandbox, Network: ep.Network, IfName: ep.IfName, HostIf: ep.HostIf, HostIfIndex: ep.HostIfIndex,
			IP: a.Addr.Addr(), MAC: mac, Gateway: a.Gateway}
		if n := findNetwork(nets, ep.Network); n != nil {
			te.DefaultRoute = ep.Primary && !n.Internal
		}
		if sb := sbs[ep.Sandbox]; sb != nil {
			te.Netns, te.NetnsIno = sb.Netns, sb.NetnsIno
		}
		top.Endpoints = append(top.Endpoints, te)
	}
	if l, ok := e.link.(link.Lookups); ok {
		addrs, err := l.HostAddrs()
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		for _, a := range addrs {
			if a.Prefix.Addr().Is6() == v6 {
				top.Addrs = append(top.Addrs, trace.HostAddr{Dev: a.Dev, Prefix: a.Prefix})
			}
		}
		routes, err := l.HostRoutes()
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		for _, r := range routes {
			if r.Dst.Addr().Is6() == v6 {
				top.Routes = append(top.Routes, trace.HostRoute{Dst: r.Dst, Dev: r.Dev, Gateway: r.Gateway})
			}
		}
		return top, nil
	}
	// A link adapter without lookups (the fake): the host's addresses and
	// connected routes are all it knows.
	hns, err := e.link.HostNets()
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	for _, h := range hns {
		if h.Prefix.Addr().Is6() != v6 {
			continue
		}
		if h.Kind == link.HostAddress {
			top.Addrs = append(top.Addrs, trace.HostAddr{Dev: h.Link, Prefix: h.Prefix})
		} else {
			top.Routes = append(top.Routes, trace.HostRoute{Dst: h.Prefix, Dev: h.Link})
		}
	}
	return top, nil
}

func findNetwork(nets []*model.Network, name string) *model.Network {
	for _, n := range nets {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// kernelLookups is trace.Kernel over the link adapter's netlink lookups.
type kernelLookups struct{ l link.Lookups }

func routeOf(r link.RouteInfo) trace.Route {
	return trace.Route{Type: r.Type, Dst: r.Dst, Dev: r.Dev, Gateway: r.Gateway, Src: r.Src, Table: r.Table}
}

func (k kernelLookups) SandboxRoute(ep trace.Endpoint, dst netip.Addr) (trace.Route, error) {
	r, err := k.l.RouteGet(ep.Netns, ep.NetnsIno, dst, netip.Addr{}, "")
	return routeOf(r), err
}

func (k kernelLookups) SandboxNeigh(ep trace.Endpoint, addr netip.Addr) (trace.Neigh, error) {
	n, err := k.l.NeighGet(ep.Netns, ep.NetnsIno, ep.IfName, addr)
	return trace.Neigh{MAC: n.MAC, State: n.State}, err
}

func (k kernelLookups) HostPort(ep trace.Endpoint) (trace.Port, error) {
	p, err := k.l.Port(ep.HostIf)
	return trace.Port{Name: p.Name, Index: p.Index, Master: p.Master, Isolated: p.Isolated, Up: p.Up, PeerIndex: p.PeerIndex}, err
}

func (k kernelLookups) FDB(bridge string, mac net.HardwareAddr) (trace.FDBEntry, error) {
	f, err := k.l.FDBGet(bridge, mac)
	return trace.FDBEntry{Port: f.Port, Self: f.Self}, err
}

func (k kernelLookups) HostRoute(dst, src netip.Addr, iif string) (trace.Route, error) {
	r, err := k.l.RouteGet("", 0, dst, src, iif)
	return routeOf(r), err
}

func (k kernelLookups) HostNeigh(dev string, addr netip.Addr) (trace.Neigh, error) {
	n, err := k.l.NeighGet("", 0, dev, addr)
	return trace.Neigh{MAC: n.MAC, State: n.State}, err
}
