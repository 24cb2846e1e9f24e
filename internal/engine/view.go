package engine

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// The read model (issue #15). One function, Engine.view, builds what
// pontoon knows of the host: the networks, sandboxes and ready endpoints
// of one store transaction and, when asked, what the host side of the
// kernel says of them (drift, per object). Every read of the API is a
// projection of it: GET /v1/topology (and the web page) with Topology,
// `network ls|inspect` with Networks and Network, `sandbox ls|inspect`
// with Sandboxes and Sandbox. So they agree: a sandbox being removed is
// gone from all of them, an endpoint not yet ready is in none.
//
// Reading the kernel costs what the query asks for: nothing for the
// daemon's own reads (the answer of an attach, metrics, DNS), the host
// side for what users read (the host ends: a lookup each for one sandbox,
// one link dump for many; a check per bridge; a stat per namespace; no
// sandbox is entered), and the host-wide checks (the firewall's elements,
// ip_forward, uplinks) for the topology only.
//
// The counters of `sandbox inspect`, `network inspect` and the topology
// come with the host ends' links: the lookup or dump that checks them has
// them too, so they cost no request of their own. They are the host
// end's, turned round to the sandbox's point of view (epStats). The lists
// leave them out: they are the records and their drift.

// kernelReads says how much of the kernel a view reads.
type kernelReads int

const (
	// recordsOnly reads the store only.
	recordsOnly kernelReads = iota
	// hostSide adds the host ends (see readHostSide), each network's
	// bridge check and each sandbox's namespace identity.
	hostSide
	// hostWide adds the firewall's check, ip_forward and the uplinks; for
	// a view of everything only (the firewall is checked against it).
	hostWide
)

// viewQuery says what a view holds: everything, or one network or one
// sandbox with its endpoints.
type viewQuery struct {
	network string
	sandbox string
	kernel  kernelReads
	// stats puts each endpoint's counters in the answer (with hostSide;
	// the inspects and the topology, so that lists stay the records).
	stats bool
}

// view is one snapshot of the read model.
type view struct {
	nets []*netView // in the store's order (by name)
	sbs  []*sbView  // in the store's order (by name)
	// sbNamed finds sandboxes by name (those of sbs).
	sbNamed map[string]*sbView
	// stats: the answers give the endpoints their counters (withStats).
	stats bool
	// Host-wide, with hostWide only.
	host    string
	uplinks []model.TopoUplink
	drift   []string
}

type netView struct {
	n           *model.Network
	bridgeIndex int       // the kernel's (0: not read, or no bridge)
	eps         []*epView // its ready endpoints, by sandbox name
	drift       []string  // the bridge's
}

type sbView struct {
	sb    *model.Sandbox
	eps   []*epView // its ready endpoints, in interface order
	drift []string  // its namespace's
}

type epView struct {
	ep        *model.Endpoint
	hostIndex int      // the kernel's ifindex of the host end, else the record's
	drift     []string // the host end's
	// stats are the host end's counters (hostSide; nil without a host
	// end, or when it is missing).
	stats *link.LinkStats
}

// view builds the read model for q.
func (e *Engine) view(ctx context.Context, q viewQuery) (*view, error) {
	var nets []*model.Network
	var sbs []*model.Sandbox
	var eps []*model.Endpoint
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		switch {
		case q.sandbox != "":
			sb, err := tx.Sandbox(q.sandbox)
			if err != nil {
				return err
			}
			if sb.State == model.SandboxRemoving {
				return model.NotFoundf("sandbox %s is being removed", q.sandbox)
			}
			sbs = []*model.Sandbox{sb}
			if eps, err = tx.EndpointsOfSandbox(q.sandbox); err != nil {
				return err
			}
			// The networks only say which bridge each host end belongs to.
			if q.kernel >= hostSide {
				for _, ep := range eps {
					if n, err := tx.Network(ep.Network); err == nil {
						nets = append(nets, n)
					}
				}
			}
			return nil
		case q.network != "":
			n, err := tx.Network(q.network)
			if err != nil {
				return err
			}
			nets = []*model.Network{n}
			eps, err = tx.EndpointsOnNetwork(q.network)
			return err
		}
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

	v := &view{stats: q.stats && q.kernel >= hostSide}
	byNet := make(map[string]*netView, len(nets))
	for _, n := range nets {
		nv := &netView{n: n}
		if q.sandbox == "" {
			v.nets = append(v.nets, nv)
		}
		byNet[n.Name] = nv
	}
	v.sbNamed = make(map[string]*sbView, len(sbs))
	for _, sb := range sbs {
		if sb.State == model.SandboxRemoving {
			continue
		}
		sv := &sbView{sb: sb}
		v.sbs = append(v.sbs, sv)
		v.sbNamed[sb.Name] = sv
	}
	// Endpoints come by sandbox name (the store's key order), so each
	// network's list is in sandbox order too.
	for _, ep := range eps {
		if ep.State != model.StateReady {
			continue
		}
		ev := &epView{ep: ep, hostIndex: ep.HostIfIndex}
		nv, sv := byNet[ep.Network], v.sbNamed[ep.Sandbox]
		if q.sandbox == "" && nv == nil {
			continue // a record without its network: in no view
		}
		if nv != nil && q.sandbox == "" {
			nv.eps = append(nv.eps, ev)
		}
		if sv != nil {
			sv.eps = append(sv.eps, ev)
		}
	}
	for _, sv := range v.sbs {
		slices.SortStableFunc(sv.eps, func(a, b *epView) int { return compareIfName(a.ep.IfName, b.ep.IfName) })
	}

	if q.kernel >= hostSide {
		if err := e.readHostSide(v, byNet); err != nil {
			return nil, err
		}
	}
	if q.kernel >= hostWide {
		v.host, _ = os.Hostname()
		if ups, err := e.link.Uplinks(); err == nil {
			for _, u := range ups {
				v.uplinks = append(v.uplinks, model.TopoUplink{Name: u.Name, Index: u.Index, MTU: u.MTU})
			}
		}
		if reason := e.fw.Check(ctx, e.firewallState(nets, eps)); reason != "" {
			v.drift = append(v.drift, "firewall: "+reason)
		}
		if e.cfg.SetIPForward {
			if on, err := e.link.IPForward(); err == nil && !on {
				v.drift = append(v.drift, "net.ipv4.ip_forward is 0")
			}
		}
	}
	return v, nil
}

// fewLinks is up to how many host links a view looks up one by one; more
// are read in one dump. A dump of the host's links costs about 15 µs a
// link (7.5 ms with 500 sandboxes), a lookup of one link and its bridge
// about 0.1 ms (docs/benchmarks.md, "ls and inspect from the read model").
// (A variable for tests.)
var fewLinks = 16

// readHostSide marks the view's drift from the host namespace: each host
// end (looked up one by one when there are a few, else in one link dump),
// a check per bridge, the identity of each sandbox's namespace. It enters
// no sandbox.
func (e *Engine) readHostSide(v *view, byNet map[string]*netView) error {
	var names []string
	var eps []*epView
	seen := map[*epView]bool{}
	add := func(evs []*epView) {
		for _, ev := range evs {
			if !seen[ev] {
				seen[ev] = true
				if ev.ep.HostIf == "" {
					continue // no host end: nothing to read on the host
				}
				eps = append(eps, ev)
				names = append(names, ev.ep.HostIf)
			}
		}
	}
	for _, nv := range v.nets {
		if nv.n.Bridge != "" {
			names = append(names, nv.n.Bridge)
		}
		add(nv.eps)
	}
	for _, sv := range v.sbs {
		add(sv.eps)
	}
	have := map[string]link.LinkInfo{}
	if len(names) <= fewLinks {
		for _, name := range names {
			l, ok, err := e.link.Link(name)
			if err != nil {
				return err
			}
			if ok {
				have[name] = l
			}
		}
	} else {
		links, err := e.link.ListLinks()
		if err != nil {
			return err
		}
		for _, l := range links {
			have[l.Name] = l
		}
	}
	for _, nv := range v.nets {
		nv.bridgeIndex = have[nv.n.Bridge].Index
		nv.drift = e.drv(nv.n).CheckNetwork(nv.n)
	}
	for _, ev := range eps {
		nv := byNet[ev.ep.Network]
		if nv == nil {
			continue
		}
		l, ok := have[ev.ep.HostIf]
		if !ok {
			ev.drift = append(ev.drift, "host end "+ev.ep.HostIf+" is missing")
			continue
		}
		ev.hostIndex, ev.stats = l.Index, l.Stats
		if l.Master != portMaster(nv.n) {
			ev.drift = append(ev.drift, "host end "+ev.ep.HostIf+" is not a port of "+nv.n.Bridge)
		}
		if !l.Up {
			ev.drift = append(ev.drift, "host end "+ev.ep.HostIf+" is down")
		}
	}
	for _, sv := range v.sbs {
		sv.drift = e.namespaceDrift(sv.sb)
	}
	return nil
}

// namespaceDrift says whether a sandbox's namespace is still the one it
// recorded (adopted ones) or still pinned (pontoon's own).
func (e *Engine) namespaceDrift(sb *model.Sandbox) []string {
	switch sb.Kind {
	case model.KindPID, model.KindNetns:
		if ino, err := e.ns.Ino(sb.Netns); err != nil || ino != sb.NetnsIno {
			return []string{"namespace " + sb.Netns + " is gone or was replaced"}
		}
	case model.KindPontoon:
		if !e.ns.IsPinned(sb.Netns) {
			return []string{"namespace pin " + sb.Netns + " is gone"}
		}
	}
	return nil
}

// compareIfName orders interface names as the store does: eth2 before
// eth10, other names after the ethN ones.
func compareIfName(a, b string) int {
	ifIndex := func(name string) int {
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "eth")); err == nil && strings.HasPrefix(name, "eth") {
			return n
		}
		return 1 << 30
	}
	if d := ifIndex(a) - ifIndex(b); d != 0 {
		return d
	}
	return strings.Compare(a, b)
}

// networkInfos is the view as `network ls` and `inspect` show it, with
// drift when the view read the kernel.
func (v *view) networkInfos() []*model.NetworkInfo {
	out := make([]*model.NetworkInfo, 0, len(v.nets))
	for _, nv := range v.nets {
		ni := &model.NetworkInfo{Network: *nv.n, Endpoints: make([]*model.Endpoint, 0, len(nv.eps)), Drift: slices.Clone(nv.drift)}
		for _, ev := range nv.eps {
			ni.Endpoints = append(ni.Endpoints, v.withStats(ev))
			for _, d := range ev.drift {
				ni.Drift = append(ni.Drift, "sandbox "+ev.ep.Sandbox+" "+ev.ep.IfName+": "+d)
			}
		}
		out = append(out, ni)
	}
	return out
}

// sandboxInfos is the view as `sandbox ls` and `inspect` show it, with
// drift when the view read the kernel.
func (v *view) sandboxInfos() []*model.SandboxInfo {
	out := make([]*model.SandboxInfo, 0, len(v.sbs))
	for _, sv := range v.sbs {
		si := &model.SandboxInfo{Sandbox: *sv.sb, Endpoints: make([]*model.Endpoint, 0, len(sv.eps)), Drift: slices.Clone(sv.drift)}
		for _, ev := range sv.eps {
			si.Endpoints = append(si.Endpoints, v.withStats(ev))
			for _, d := range ev.drift {
				si.Drift = append(si.Drift, ev.ep.IfName+": "+d)
			}
		}
		out = append(out, si)
	}
	return out
}

// withStats is ev's record, with its counters when the view has them (a
// copy then: the record stays as stored).
func (v *view) withStats(ev *epView) *model.Endpoint {
	if !v.stats || ev.stats == nil {
		return ev.ep
	}
	c := *ev.ep
	c.Stats = epStats(ev.stats)
	return &c
}

// epStats are an endpoint's counters from its host end's (a veth's other
// end, or a VM's tap), as the sandbox sees them: what the host end sent
// the sandbox received, and the other way round. Drops and errors turn
// round with them: a frame the host end could not hand to the sandbox is
// one the sandbox did not receive.
func epStats(h *link.LinkStats) *model.EndpointStats {
	return &model.EndpointStats{
		RxBytes: h.TxBytes, RxPackets: h.TxPackets, RxDropped: h.TxDropped, RxErrors: h.TxErrors,
		TxBytes: h.RxBytes, TxPackets: h.RxPackets, TxDropped: h.RxDropped, TxErrors: h.RxErrors,
	}
}

// Networks lists networks with their ready endpoints, from the records
// only: for the daemon's own reads (metrics, DNS, doctor). The API's is
// ListNetworks.
func (e *Engine) Networks() ([]*model.NetworkInfo, error) {
	return e.listNetworks(context.Background(), recordsOnly)
}

// ListNetworks lists networks with their ready endpoints and drift (the
// bridges and host ends; `network ls`).
func (e *Engine) ListNetworks(ctx context.Context) ([]*model.NetworkInfo, error) {
	return e.listNetworks(ctx, hostSide)
}

func (e *Engine) listNetworks(ctx context.Context, k kernelReads) ([]*model.NetworkInfo, error) {
	v, err := e.view(ctx, viewQuery{kernel: k})
	if err != nil {
		return nil, err
	}
	return v.networkInfos(), nil
}

// Network returns one network with its ready endpoints, from the records
// only. The API's is InspectNetwork.
func (e *Engine) Network(name string) (*model.NetworkInfo, error) {
	return e.oneNetwork(context.Background(), name, recordsOnly)
}

// InspectNetwork returns one network with its ready endpoints, their
// counters, and drift (`network inspect`).
func (e *Engine) InspectNetwork(ctx context.Context, name string) (*model.NetworkInfo, error) {
	info, err := e.oneNetwork(ctx, name, hostSide)
	if err == nil && info.Driver == model.DriverOverlay {
		info.Cluster = e.clusterNetwork(ctx, &info.Network) // cluster_inspect.go
	}
	return info, err
}

func (e *Engine) oneNetwork(ctx context.Context, name string, k kernelReads) (*model.NetworkInfo, error) {
	v, err := e.view(ctx, viewQuery{network: name, kernel: k, stats: true})
	if err != nil {
		return nil, err
	}
	return v.networkInfos()[0], nil
}

// Sandboxes lists sandboxes with their ready endpoints, but not those
// being removed, from the records only: for the daemon's own reads. The
// API's is ListSandboxes.
func (e *Engine) Sandboxes() ([]*model.SandboxInfo, error) {
	return e.listSandboxes(context.Background(), recordsOnly)
}

// ListSandboxes lists sandboxes with their ready endpoints and drift (the
// namespaces and host ends; `sandbox ls`), but not those being removed.
func (e *Engine) ListSandboxes(ctx context.Context) ([]*model.SandboxInfo, error) {
	return e.listSandboxes(ctx, hostSide)
}

func (e *Engine) listSandboxes(ctx context.Context, k kernelReads) ([]*model.SandboxInfo, error) {
	v, err := e.view(ctx, viewQuery{kernel: k})
	if err != nil {
		return nil, err
	}
	return v.sandboxInfos(), nil
}

// Sandbox returns one sandbox with its ready endpoints, from the records
// only (the answer of a create). A sandbox being removed is gone for users
// (its removal finishes in the background). The API's is InspectSandbox.
func (e *Engine) Sandbox(name string) (*model.SandboxInfo, error) {
	return e.oneSandbox(context.Background(), name, recordsOnly)
}

// InspectSandbox returns one sandbox with its ready endpoints, their
// counters, and drift (`sandbox inspect`).
func (e *Engine) InspectSandbox(ctx context.Context, name string) (*model.SandboxInfo, error) {
	return e.oneSandbox(ctx, name, hostSide)
}

func (e *Engine) oneSandbox(ctx context.Context, name string, k kernelReads) (*model.SandboxInfo, error) {
	v, err := e.view(ctx, viewQuery{sandbox: name, kernel: k, stats: true})
	if err != nil {
		return nil, err
	}
	si := v.sandboxInfos()[0]
	si.ResolvConf = e.ResolvConf(name)
	return si, nil
}
