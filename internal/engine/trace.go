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
	pr, wait, err := traceProbe(spec)
	if err != nil {
		return nil, err
	}
	top, err := e.traceTopology()
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

// traceProbe validates a request into a probe.
func traceProbe(spec model.TraceSpec) (trace.Probe, time.Duration, error) {
	var pr trace.Probe
	to, port, proto, err := trace.ParseDst(spec.Dst)
	if err != nil {
		return pr, 0, err
	}
	pr.To, pr.Port, pr.Proto, pr.From = to, port, proto, spec.Src
	if spec.FromLAN != "" {
		if spec.Src != "" {
			return pr, 0, model.Invalidf("give a source sandbox (%s) or --from-lan (%s), not both", spec.Src, spec.FromLAN)
		}
		a, err := netip.ParseAddr(spec.FromLAN)
		if err != nil || !a.Is4() {
			return pr, 0, model.Invalidf("--from-lan %q is not an IPv4 address", spec.FromLAN)
		}
		pr.FromLAN = a
	}
	if spec.SrcIP != "" {
		a, err := netip.ParseAddr(spec.SrcIP)
		if err != nil || !a.Is4() {
			return pr, 0, model.Invalidf("source address %q is not an IPv4 address", spec.SrcIP)
		}
		pr.SrcIP = a
	}
	wait := traceWaitSandbox
	if pr.FromLAN.IsValid() {
		wait = traceWaitLAN
	}
	if spec.Wait != "" {
		d, err := time.ParseDuration(spec.Wait)
		if err != nil || d <= 0 || d > traceWaitMax {
			return pr, 0, model.Invalidf("wait %q: want a duration from 1ms to %s, e.g. 2s", spec.Wait, traceWaitMax)
		}
		wait = d
	}
	return pr, wait, nil
}

// traceTopology reads what Predict needs: networks and ready endpoints
// from the store, the firewall's state as Sync would write it, and the
// host's addresses and routes.
func (e *Engine) traceTopology() (*trace.Topology, error) {
	var nets []*model.Network
	var eps []*model.Endpoint
	sbs := map[string]*model.Sandbox{}
	if err := e.st.View(func(tx store.Tx) (err error) {
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
	top := &trace.Topology{Firewall: firewall.NewEvaluator(firewallState(nets, eps))}
	// The tracer follows IPv4 packets: it knows each network's IPv4
	// subnet and each endpoint's IPv4 address.
	for _, n := range nets {
		s, _ := n.Subnet4()
		top.Networks = append(top.Networks, trace.Network{Name: n.Name, Bridge: n.Bridge, Subnet: s.Prefix, Gateway: s.Gateway,
			Internal: n.Internal, ICC: n.ICC, Masquerade: s.Masquerade})
	}
	for _, ep := range eps {
		if ep.State != model.StateReady {
			continue
		}
		mac, _ := net.ParseMAC(ep.MAC)
		a4, _ := ep.Addr4()
		te := trace.Endpoint{Sandbox: ep.Sandbox, Network: ep.Network, IfName: ep.IfName, HostIf: ep.HostIf, HostIfIndex: ep.HostIfIndex,
			IP: a4.Addr.Addr(), MAC: mac, Gateway: a4.Gateway}
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
			top.Addrs = append(top.Addrs, trace.HostAddr{Dev: a.Dev, Prefix: a.Prefix})
		}
		routes, err := l.HostRoutes()
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		for _, r := range routes {
			top.Routes = append(top.Routes, trace.HostRoute{Dst: r.Dst, Dev: r.Dev, Gateway: r.Gateway})
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
