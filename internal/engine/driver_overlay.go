package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"time"

	"pontoon/internal/cluster"
	"pontoon/internal/dns"
	"pontoon/internal/link"
	"pontoon/internal/model"
)

// Cluster is what the engine needs of the cluster this daemon is a node of
// (internal/cluster, on etcd; nil in Config: a single host). The daemon
// joins and hands the membership over.
type Cluster interface {
	// NodeName is this node's name; Underlay its link towards the other
	// nodes and its address there (the VXLAN tunnels' endpoints).
	NodeName() string
	Underlay() (dev string, addr netip.Addr)
	DefineNetwork(ctx context.Context, d cluster.NetworkDef) error
	RemoveNetworkDef(ctx context.Context, name string) error
	Networks(ctx context.Context) ([]cluster.NetworkDef, int64, error)
	WatchNetworks(ctx context.Context, fromRev int64) (<-chan cluster.NetworkEvent, error)
	ClaimSlice(ctx context.Context, network string, subnet netip.Prefix, size int, node string) (netip.Prefix, error)
	Slices(ctx context.Context, network string) (map[string]netip.Prefix, error)
	Nodes(ctx context.Context) ([]cluster.Node, int64, error)
	PutName(ctx context.Context, n cluster.Name) error
	DeleteName(ctx context.Context, network, sandbox string) error
	Names(ctx context.Context) ([]cluster.Name, int64, error)
	WatchNames(ctx context.Context, fromRev int64) (<-chan cluster.NameEvent, error)
}

// overlayDriver is a network across the cluster's hosts, flannel's L3
// design with learning off: on each host a Linux bridge for the host's
// slice of the subnet (its gateway the slice's first address), endpoints
// as on the bridge driver, and one VXLAN device (ptvx-VNI) with the
// slice's network address; per other host one route to its slice through
// its VXLAN address (onlink), one neighbour entry for that address with
// its VTEP's MAC, and one FDB entry sending that MAC to its underlay
// address. Traffic between the network's sandboxes on different hosts is
// routed by both hosts and crosses no NAT; the firewall counts the VXLAN
// device as one of the network's links.
type overlayDriver struct {
	bridgeDriver
	cl  Cluster
	hgw hostGW // host-gw mode (driver_hostgw.go)
}

func (*overlayDriver) Name() string { return model.DriverOverlay }

func (*overlayDriver) Caps() model.DriverCaps {
	return model.DriverCaps{Isolation: true, ICC: true, AntiSpoofing: true, Ports: true, DNS: true, Hairpin: true, Taps: true}
}

func (d *overlayDriver) Validate(n *model.Network) error {
	if d.cl == nil {
		return model.Invalidf("an overlay network spans the hosts of a cluster: start the daemon with --cluster (etcd), --node-name and --underlay")
	}
	if n.Overlay == nil || n.Overlay.VXLAN == "" && !n.Overlay.HostGW() {
		return model.Invalidf("network %s: overlay networks are made through the cluster (network create --driver overlay)", n.Name)
	}
	return nil
}

// vxlanOf is this host's VXLAN device of network n.
func (d *overlayDriver) vxlanOf(n *model.Network) link.VXLAN {
	dev, addr := d.cl.Underlay()
	slice := n.Subnets[0].Prefix
	return link.VXLAN{Name: n.Overlay.VXLAN, VNI: n.Overlay.VNI, Local: addr, Dev: dev, MTU: n.MTU,
		Addr: netip.PrefixFrom(slice.Masked().Addr(), slice.Addr().BitLen())}
}

// peers are the other hosts' slices of network n, each through its VTEP.
func (d *overlayDriver) peers(ctx context.Context, n *model.Network) ([]link.Peer, error) {
	slices, err := d.cl.Slices(ctx, n.Name)
	if err != nil {
		return nil, err
	}
	nodes, _, err := d.cl.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	self := d.cl.NodeName()
	var out []link.Peer
	for _, node := range nodes {
		s, ok := slices[node.Name]
		if node.Name == self || !ok || !node.Underlay.IsValid() {
			continue
		}
		out = append(out, link.Peer{VXLAN: n.Overlay.VXLAN, Slice: s, Gateway: s.Masked().Addr(),
			VTEPMAC: link.VXLANMAC(n.Overlay.VNI, node.Underlay), Underlay: node.Underlay})
	}
	return out, nil
}

func (d *overlayDriver) EnsureNetwork(n *model.Network) error {
	if err := d.bridgeDriver.EnsureNetwork(n); err != nil {
		return err
	}
	if n.Overlay.HostGW() {
		return d.syncPeers(n)
	}
	if _, err := d.link.EnsureVXLAN(d.vxlanOf(n)); err != nil {
		return err
	}
	return d.syncPeers(n)
}

// syncPeers makes the VXLAN device's peers those the cluster has now.
func (d *overlayDriver) syncPeers(n *model.Network) error {
	if n.Overlay.HostGW() {
		return d.syncHostGW(n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peers, err := d.peers(ctx, n)
	if err != nil {
		return err
	}
	return d.link.SetPeers(n.Overlay.VXLAN, peers)
}

func (d *overlayDriver) RemoveNetwork(n *model.Network) error {
	if n.Overlay.HostGW() {
		return errors.Join(d.removeHostGW(n), d.bridgeDriver.RemoveNetwork(n))
	}
	return errors.Join(d.link.DeleteVXLAN(n.Overlay.VXLAN), d.bridgeDriver.RemoveNetwork(n))
}

func (d *overlayDriver) CheckNetwork(n *model.Network) []string {
	if n.Overlay.HostGW() {
		return append(d.bridgeDriver.CheckNetwork(n), d.checkHostGW(n)...)
	}
	return append(d.bridgeDriver.CheckNetwork(n), d.link.CheckVXLAN(d.vxlanOf(n))...)
}

func (*overlayDriver) Prefixes() []string { return []string{model.VXLANPrefix} }

// defaultVNI derives a network's VNI from its name (a cluster network
// with another VNI can be asked for with --vni).
func defaultVNI(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32()%(1<<24-2)) + 1
}

// createOverlay defines an overlay network in the cluster and makes this
// host's part of it. Called with netMu held.
func (e *Engine) createOverlay(ctx context.Context, spec model.NetworkSpec) (*model.Network, error) {
	cl := e.cfg.Cluster
	if cl == nil {
		return nil, model.Invalidf("an overlay network spans the hosts of a cluster: start the daemon with --cluster (etcd), --node-name and --underlay")
	}
	sub, ok := spec.SubnetFor(false)
	if !ok || len(spec.Subnets) != 1 {
		return nil, model.Invalidf("an overlay network needs its IPv4 --subnet (e.g. 10.200.0.0/16), of which each host gets a slice; IPv6 overlays are not supported yet")
	}
	d := cluster.NetworkDef{Name: spec.Name, Driver: model.DriverOverlay, Subnet: sub.Prefix, SliceBits: 24,
		VNI: defaultVNI(spec.Name), MTU: spec.MTU, Internal: spec.Internal, CreatedBy: cl.NodeName(), Created: time.Now().UTC()}
	if o := spec.Overlay; o != nil {
		if o.VNI != 0 {
			d.VNI = o.VNI
		}
		if o.SliceBits != 0 {
			d.SliceBits = o.SliceBits
		}
		if err := model.CheckOverlayMode(o.Mode); err != nil {
			return nil, err
		}
		if o.Mode != model.OverlayVXLAN {
			d.Mode = o.Mode // vxlan, the default, is recorded as ""
		}
	}
	if d.SliceBits < sub.Prefix.Bits() || d.SliceBits > 30 {
		return nil, model.Invalidf("slices of /%d do not fit subnet %s: give --slice-size from %d to 30", d.SliceBits, sub.Prefix, sub.Prefix.Bits())
	}
	if err := cl.DefineNetwork(ctx, d); err != nil {
		return nil, err
	}
	n, err := e.realizeOverlayLocked(ctx, d)
	if err != nil {
		// The definition goes with it: no host has made its part yet
		// but this one, which failed.
		if rerr := cl.RemoveNetworkDef(context.WithoutCancel(ctx), d.Name); rerr != nil {
			e.log.Error("rollback: remove the cluster network", "network", d.Name, "err", rerr)
		}
		return nil, err
	}
	return n, nil
}

// realizeOverlayLocked makes this host's part of a cluster network: its
// slice, a network record for it, the bridge and the VXLAN device. One
// that exists is returned as it is. Called with netMu held.
func (e *Engine) realizeOverlayLocked(ctx context.Context, d cluster.NetworkDef) (*model.Network, error) {
	if n, err := e.networkRecord(ctx, d.Name); err == nil {
		return n, nil
	}
	cl := e.cfg.Cluster
	slice, err := cl.ClaimSlice(ctx, d.Name, d.Subnet, d.SliceBits, cl.NodeName())
	if err != nil {
		return nil, fmt.Errorf("overlay network %s: claim this host's slice: %w", d.Name, err)
	}
	dev, _ := cl.Underlay()
	mtu := d.MTU
	if l, ok, err := e.link.Link(dev); err == nil && ok && d.Mode == model.OverlayHostGW {
		mtu = hostGWMTU(mtu, l.MTU) // nothing in front of a packet
	} else if err == nil && ok && l.MTU > 50 {
		if mtu == 0 || mtu > l.MTU-50 {
			mtu = l.MTU - 50 // VXLAN's 50 bytes of headers
		}
	}
	spec := model.NetworkSpec{Name: d.Name, Driver: model.DriverOverlay, Internal: d.Internal, MTU: mtu,
		Subnets: []model.Subnet{{Prefix: slice}},
		Overlay: &model.OverlayOptions{Subnet: d.Subnet, VNI: d.VNI, SliceBits: d.SliceBits, VXLAN: model.VXLANName(d.VNI), Mode: d.Mode}}
	if d.Mode == model.OverlayHostGW {
		spec.Overlay.VXLAN = "" // no VXLAN device
	}
	return e.createNetworkLocked(ctx, spec)
}

// StartCluster makes this host's part of every cluster network and keeps
// following them (new ones made, removed ones removed), and keeps the
// overlay networks' peers in step with the cluster's nodes and slices,
// until ctx ends. Without a cluster it does nothing.
func (e *Engine) StartCluster(ctx context.Context) error {
	cl := e.cfg.Cluster
	if cl == nil {
		return nil
	}
	defs, rev, err := cl.Networks(ctx)
	if err != nil {
		return err
	}
	for _, d := range defs {
		e.netMu.Lock()
		if _, err := e.realizeOverlayLocked(ctx, d); err != nil {
			e.log.Error("cluster: make this host's part of a network", "network", d.Name, "err", err)
		}
		e.netMu.Unlock()
	}
	// This node's sandboxes' names, again (a record lost while the
	// daemon was down), then the other nodes' as they come and go.
	if nets, err := e.Networks(); err == nil {
		for _, n := range nets {
			if n.Driver == model.DriverOverlay {
				for _, ep := range n.Endpoints {
					e.publishName(ep)
				}
			}
		}
	}
	go e.followNetworks(ctx, rev)
	go e.followPeers(ctx)
	go e.followNames(ctx)
	return nil
}

// publishName records an overlay endpoint's names in the cluster, for the
// other nodes' resolvers; unpublishName removes them. Failures are
// logged: the names resolve on this node regardless.
func (e *Engine) publishName(ep *model.Endpoint) {
	cl := e.cfg.Cluster
	if cl == nil {
		return
	}
	n := cluster.Name{Network: ep.Network, Sandbox: ep.Sandbox, Node: cl.NodeName(), IPs: ep.IPs(), Aliases: ep.Aliases}
	if err := cl.PutName(context.Background(), n); err != nil {
		e.log.Warn("cluster: publish a sandbox's names; other nodes do not resolve them", "sandbox", ep.Sandbox, "network", ep.Network, "err", err)
	}
}

func (e *Engine) unpublishName(ep *model.Endpoint) {
	cl := e.cfg.Cluster
	if cl == nil {
		return
	}
	if err := cl.DeleteName(context.Background(), ep.Network, ep.Sandbox); err != nil {
		e.log.Warn("cluster: remove a sandbox's names", "sandbox", ep.Sandbox, "network", ep.Network, "err", err)
	}
}

// followNames puts the other nodes' sandboxes' names into this node's
// resolver as they come and go (list, then watch from the list's
// revision; again after a failed watch).
func (e *Engine) followNames(ctx context.Context) {
	cl := e.cfg.Cluster
	if e.cfg.Resolver == nil {
		return
	}
	self := cl.NodeName()
	record := func(n cluster.Name) dns.Record {
		return dns.Record{Name: n.Sandbox, Aliases: n.Aliases, IPs: n.IPs}
	}
	for ctx.Err() == nil {
		names, rev, err := cl.Names(ctx)
		if err != nil {
			e.log.Warn("cluster: list names", "err", err)
			time.Sleep(time.Second)
			continue
		}
		for _, n := range names {
			if n.Node != self {
				e.cfg.Resolver.SetRecord(n.Network, record(n))
			}
		}
		ch, err := cl.WatchNames(ctx, rev)
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		for ev := range ch {
			if ev.Err != nil {
				e.log.Warn("cluster: the name watch ended; listing again", "err", ev.Err)
				break
			}
			if ev.Name.Node == self {
				continue
			}
			if ev.Removed {
				for _, ip := range ev.Name.IPs {
					e.cfg.Resolver.RemoveRecord(ev.Name.Network, ip)
				}
				continue
			}
			e.cfg.Resolver.SetRecord(ev.Name.Network, record(ev.Name))
		}
	}
}

// followNetworks applies the cluster's network definitions as they come
// and go; on a failed watch it lists again.
func (e *Engine) followNetworks(ctx context.Context, rev int64) {
	cl := e.cfg.Cluster
	for ctx.Err() == nil {
		ch, err := cl.WatchNetworks(ctx, rev)
		if err != nil {
			e.log.Warn("cluster: watch networks; listing again", "err", err)
			time.Sleep(time.Second)
			if _, rev, err = cl.Networks(ctx); err != nil {
				continue
			}
			continue
		}
		for ev := range ch {
			if ev.Err != nil {
				e.log.Warn("cluster: the network watch ended; listing again", "err", ev.Err)
				break
			}
			rev = ev.Revision
			e.netMu.Lock()
			if ev.Removed {
				e.netMu.Unlock()
				if err := e.removeLocalOverlay(ctx, ev.Def.Name); err != nil {
					e.log.Warn("cluster: remove this host's part of a network", "network", ev.Def.Name, "err", err)
				}
				continue
			}
			if _, err := e.realizeOverlayLocked(ctx, ev.Def); err != nil {
				e.log.Error("cluster: make this host's part of a network", "network", ev.Def.Name, "err", err)
			}
			e.netMu.Unlock()
		}
		if ctx.Err() == nil {
			var defs []cluster.NetworkDef
			if defs, rev, err = cl.Networks(ctx); err == nil {
				for _, d := range defs {
					e.netMu.Lock()
					_, _ = e.realizeOverlayLocked(ctx, d)
					e.netMu.Unlock()
				}
			}
		}
	}
}

// removeLocalOverlay removes this host's part of a cluster network that
// was removed elsewhere; refused while it has endpoints here.
func (e *Engine) removeLocalOverlay(ctx context.Context, name string) error {
	n, err := e.networkRecord(ctx, name)
	if err != nil || n.Driver != model.DriverOverlay {
		return nil
	}
	return e.removeNetwork(ctx, name, false, false)
}

// followPeers keeps every overlay network's peers in step with the
// cluster's nodes and slices (a poll, once a second; a watch of nodes and
// slices is the next step).
func (e *Engine) followPeers(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	d, _ := e.drivers[model.DriverOverlay].(*overlayDriver)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		nets, err := e.Networks()
		if err != nil {
			continue
		}
		for _, n := range nets {
			if n.Driver != model.DriverOverlay || n.Overlay == nil {
				continue
			}
			if err := d.syncPeers(&n.Network); err != nil {
				e.log.Warn("cluster: program the overlay's peers", "network", n.Name, "err", err)
			}
		}
	}
}

// Nodes lists the cluster's nodes with their slices of the overlay
// networks; ErrInvalid without a cluster.
func (e *Engine) Nodes(ctx context.Context) ([]model.ClusterNode, error) {
	cl := e.cfg.Cluster
	if cl == nil {
		return nil, model.Invalidf("this daemon is no node of a cluster: start it with --cluster, --node-name and --underlay")
	}
	nodes, _, err := cl.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	defs, _, err := cl.Networks(ctx)
	if err != nil {
		return nil, err
	}
	byNode := map[string]map[string]netip.Prefix{}
	for _, d := range defs {
		sl, err := cl.Slices(ctx, d.Name)
		if err != nil {
			return nil, err
		}
		for node, p := range sl {
			if byNode[node] == nil {
				byNode[node] = map[string]netip.Prefix{}
			}
			byNode[node][d.Name] = p
		}
	}
	out := make([]model.ClusterNode, 0, len(nodes))
	for _, n := range nodes {
		s := byNode[n.Name]
		if s == nil {
			s = map[string]netip.Prefix{}
		}
		out = append(out, model.ClusterNode{Name: n.Name, Underlay: n.Underlay, Slices: s, Started: n.Started, LastSeen: n.LastSeen, Self: n.Name == cl.NodeName()})
	}
	return out, nil
}
