package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
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
	// VTEPMAC is this node's VTEP MAC as its record in etcd has it (the
	// one the other nodes program): all of its VXLAN devices carry it.
	VTEPMAC() net.HardwareAddr
	DefineNetwork(ctx context.Context, d cluster.NetworkDef) error
	RemoveNetworkDef(ctx context.Context, name string) error
	Networks(ctx context.Context) ([]cluster.NetworkDef, int64, error)
	WatchNetworks(ctx context.Context, fromRev int64) (<-chan cluster.NetworkEvent, error)
	ClaimSlice(ctx context.Context, network string, subnet netip.Prefix, size int, node string) (netip.Prefix, error)
	Slices(ctx context.Context, network string) (map[string][]netip.Prefix, error)
	Nodes(ctx context.Context) ([]cluster.Node, int64, error)
	// ReadTopology and FollowTopology give the nodes and slices the
	// overlay's peers are made of: once, and by watch (cluster.Cluster).
	ReadTopology(ctx context.Context) (cluster.Topology, error)
	FollowTopology(ctx context.Context, changed func(cluster.Topology), failed func(error))
	// Health says what keeps this node from the cluster ("" when nothing
	// does): etcd unreachable, the membership lost and being renewed.
	// The data plane stays as it was meanwhile (fail-static).
	Health() string
	PutName(ctx context.Context, n cluster.Name) error
	DeleteName(ctx context.Context, network, sandbox string) error
	Names(ctx context.Context) ([]cluster.Name, int64, error)
	WatchNames(ctx context.Context, fromRev int64) (<-chan cluster.NameEvent, error)
	// Static addresses reserved across the cluster (cluster_static.go).
	ReserveStatic(ctx context.Context, network string, ip netip.Addr, owner string) error
	ReleaseStatic(ctx context.Context, network string, ip netip.Addr, owner string) error
	StaticReservations(ctx context.Context, network string) (map[netip.Addr]string, error)
	AllStaticReservations(ctx context.Context) (map[string]map[netip.Addr]string, int64, error)
	WatchStatics(ctx context.Context, fromRev int64) (<-chan cluster.StaticEvent, error)
	// Forget releases what a dead node holds (cluster.Cluster.Forget).
	Forget(ctx context.Context, node string) (model.ForgottenNode, error)
	ReclaimSlice(ctx context.Context, network string, slice netip.Prefix, node string) error
}

// overlayDriver is a network across the cluster's hosts, flannel's L3
// design with learning off: on each host a Linux bridge for the host's
// slice of each of the network's subnets (one per family; its gateway in
// each the slice's first address), endpoints as on the bridge driver,
// and one VXLAN device (ptvx-VNI) with each slice's network address; per
// other host and family one route to its slice through that slice's
// network address (onlink) and one neighbour entry for that address with
// its VTEP MAC, and per other host one FDB entry sending that MAC to its
// underlay address, which is IPv4 whatever the families inside. A node
// has one VTEP MAC, on all of its VXLAN devices, written into its record
// when it joins: peers are programmed with the MAC of their record, never
// with one derived here (peerMAC). Traffic between the network's
// sandboxes on different hosts is routed by both hosts and crosses no
// NAT; the firewall counts the VXLAN device as one of the network's
// links.
type overlayDriver struct {
	bridgeDriver
	cl  Cluster
	hgw hostGW // host-gw mode (driver_hostgw.go)
	// topo is the cluster's nodes and slices as FollowTopology last saw
	// them (nil until the first read): peers are programmed from it, and
	// it stays as it is while etcd is unreachable.
	topo atomic.Pointer[cluster.Topology]
	// mu serialises making or removing a network's part on this host
	// (EnsureNetwork, RemoveNetwork) with programming its peers from a
	// new topology (followPeers): peers programmed into a device that is
	// half made fail ("network is down") and would wait for the next
	// change of the cluster to be tried again.
	mu  sync.Mutex
	log *slog.Logger
	// derived are the nodes whose record has no usable VTEP MAC, by
	// name: peerMAC logs each once. clashing are the nodes left out of
	// the peers because their VTEP MAC or underlay address is another's
	// (peersOf), by name: logged once each.
	derived, clashing sync.Map
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

// vxlanOf is this host's VXLAN device of network n, with this node's
// VTEP MAC (its record's; self-healing checks the device against it) and
// the network address of each of its slices.
func (d *overlayDriver) vxlanOf(n *model.Network) link.VXLAN {
	dev, addr := d.cl.Underlay()
	v := link.VXLAN{Name: n.Overlay.VXLAN, VNI: n.Overlay.VNI, Local: addr, Dev: dev, MTU: n.MTU, MAC: d.cl.VTEPMAC()}
	for _, s := range n.Subnets {
		v.Addrs = append(v.Addrs, netip.PrefixFrom(s.Prefix.Masked().Addr(), s.Prefix.Addr().BitLen()))
	}
	return v
}

// nodeVTEPMAC is node's VTEP MAC: its record's. A record without one, or
// with one that is no unicast Ethernet address, should not exist
// (cluster.Join refuses both; a record written by hand might have
// them): then the MAC is derived from the node's underlay address, as
// the node derives its own (link.VTEPMAC), and recorded is false.
func nodeVTEPMAC(node cluster.Node) (mac net.HardwareAddr, recorded bool) {
	if hw, err := net.ParseMAC(node.VTEPMAC); err == nil && len(hw) == 6 && hw[0]&1 == 0 && hw.String() != "00:00:00:00:00:00" {
		return hw, true
	}
	if !node.Underlay.IsValid() {
		return nil, false
	}
	return link.VTEPMAC(node.Underlay), false
}

// peerMAC is nodeVTEPMAC, logging once per node that its record has no
// usable VTEP MAC.
func (d *overlayDriver) peerMAC(node cluster.Node) net.HardwareAddr {
	mac, recorded := nodeVTEPMAC(node)
	if recorded {
		d.derived.Delete(node.Name) // fixed: say so again if it breaks again
		return mac
	}
	if _, seen := d.derived.LoadOrStore(node.Name, true); !seen && d.log != nil {
		d.log.Warn("cluster: a node's record has no usable VTEP MAC; programming the one derived from its underlay address (restart that node's daemon to rewrite its record)",
			"node", node.Name, "record_vtep_mac", node.VTEPMAC, "underlay", node.Underlay.String(), "derived", mac.String())
	}
	return mac
}

// topology is the cluster's nodes and slices as last seen (read once when
// there is none yet).
func (d *overlayDriver) topology(ctx context.Context) (*cluster.Topology, error) {
	if t := d.topo.Load(); t != nil {
		return t, nil
	}
	read, err := d.cl.ReadTopology(ctx)
	if err != nil {
		return nil, err
	}
	d.topo.CompareAndSwap(nil, &read)
	return d.topo.Load(), nil
}

// peersOf are network n's peers in topology t, in node name order: one
// per slice of each other live node (IPv4 first), each with the VTEP MAC
// of the node's record. A node whose VTEP MAC or underlay address is this
// node's, or an earlier node's (a hand-made record, two nodes on one
// address), is left out and logged once: one bad record must not make
// the whole list unprogrammable (link.SetPeers refuses clashes) and cut
// every node off the network.
func (d *overlayDriver) peersOf(t *cluster.Topology, n *model.Network) []link.Peer {
	self := d.cl.NodeName()
	var out []link.Peer
	held := t.Slices[n.Name]
	_, selfUnderlay := d.cl.Underlay()
	taken := map[string]string{d.cl.VTEPMAC().String(): self, selfUnderlay.String(): self} // MAC or underlay → node
	for _, name := range slices.Sorted(maps.Keys(t.Nodes)) {
		node := t.Nodes[name]
		if name == self || !node.Underlay.IsValid() {
			continue
		}
		mac := d.peerMAC(node)
		clash := ""
		for _, k := range []string{mac.String(), node.Underlay.String()} {
			if other, ok := taken[k]; ok && clash == "" {
				clash = other
			}
		}
		if clash != "" {
			if _, seen := d.clashing.LoadOrStore(name, true); !seen && d.log != nil {
				d.log.Error("cluster: a node's record has the VTEP MAC or underlay address of another node; leaving it out of the overlay's peers (fix or remove its record: pontoon node rm, after stopping it)",
					"node", name, "vtep_mac", mac.String(), "underlay", node.Underlay.String(), "same_as", clash, "network", n.Name)
			}
			continue
		}
		d.clashing.Delete(name)
		taken[mac.String()], taken[node.Underlay.String()] = name, name
		for _, s := range n.Overlay.SlicesIn(held[name]) {
			out = append(out, link.Peer{VXLAN: n.Overlay.VXLAN, Slice: s, Gateway: s.Addr(),
				VTEPMAC: mac, Underlay: node.Underlay})
		}
	}
	return out
}

func (d *overlayDriver) EnsureNetwork(n *model.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
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

// applyLatest programs network n's peers from the latest topology, once
// its part on this host is made (a network being made gets them from
// EnsureNetwork, which holds d.mu meanwhile). A failure is logged:
// self-healing checks the peers against the topology and repairs them.
func (d *overlayDriver) applyLatest(n *model.Network, log *slog.Logger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !n.Overlay.HostGW() {
		if _, ok, err := d.link.Link(n.Overlay.VXLAN); err != nil || !ok {
			return // not made yet, or being removed
		}
	}
	t := d.topo.Load()
	if err := d.applyPeers(t, n); err != nil {
		log.Warn("cluster: program the overlay's peers; self-healing tries again", "network", n.Name, "err", err)
		return
	}
	log.Debug("cluster: programmed the overlay's peers", "network", n.Name, "revision", t.Revision, "nodes", len(t.Nodes))
}

// syncPeers makes network n's peers those of the topology last seen.
func (d *overlayDriver) syncPeers(n *model.Network) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t, err := d.topology(ctx)
	if err != nil {
		return err
	}
	return d.applyPeers(t, n)
}

// applyPeers programs network n's peers in topology t: VXLAN routes,
// neighbours and FDB entries, or host-gw routes.
func (d *overlayDriver) applyPeers(t *cluster.Topology, n *model.Network) error {
	if n.Overlay.HostGW() {
		return d.syncHostGW(t, n)
	}
	return d.link.SetPeers(n.Overlay.VXLAN, d.peersOf(t, n))
}

func (d *overlayDriver) RemoveNetwork(n *model.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n.Overlay.HostGW() {
		return errors.Join(d.removeHostGW(n), d.bridgeDriver.RemoveNetwork(n))
	}
	return errors.Join(d.link.DeleteVXLAN(n.Overlay.VXLAN), d.bridgeDriver.RemoveNetwork(n))
}

// CheckNetwork checks the bridge, the VXLAN device and the peers (routes,
// neighbours, FDB entries) against the topology last seen: self-healing
// puts back what someone removed (EnsureNetwork).
func (d *overlayDriver) CheckNetwork(n *model.Network) []string {
	if n.Overlay.HostGW() {
		out := d.bridgeDriver.CheckNetwork(n)
		if t := d.topo.Load(); t != nil && len(out) == 0 {
			out = append(out, d.checkHostGW(t, n)...)
		}
		return out
	}
	out := append(d.bridgeDriver.CheckNetwork(n), d.link.CheckVXLAN(d.vxlanOf(n))...)
	if t := d.topo.Load(); t != nil && len(out) == 0 {
		out = append(out, d.link.CheckPeers(n.Overlay.VXLAN, d.peersOf(t, n))...)
	}
	return out
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
	subs, err := overlaySubnets(spec)
	if err != nil {
		return nil, err
	}
	d := cluster.NetworkDef{Name: spec.Name, Driver: model.DriverOverlay, Subnets: subs,
		VNI: defaultVNI(spec.Name), MTU: spec.MTU, Internal: spec.Internal, CreatedBy: cl.NodeName(), Created: time.Now().UTC()}
	if o := spec.Overlay; o != nil {
		if o.VNI != 0 {
			d.VNI = o.VNI
		}
		if err := model.CheckOverlayMode(o.Mode); err != nil {
			return nil, err
		}
		if o.Mode != model.OverlayVXLAN {
			d.Mode = o.Mode // vxlan, the default, is recorded as ""
		}
	}
	if err := e.checkOverlayDef(d); err != nil {
		return nil, err
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

// sliceFlag is the flag of network create that sets the size of the
// hosts' slices of a subnet of the family.
func sliceFlag(v6 bool) string {
	if v6 {
		return "--slice-size6"
	}
	return "--slice-size"
}

// overlaySubnets are the subnets an overlay network is asked for with
// (spec's, at most one per family, and those spec.Overlay adds), IPv4
// first, each with the size of the hosts' slices of it: the one
// spec.Overlay gives, or model.DefaultSliceBits. A slice must be a subnet
// pontoon can run on one host (model.CheckPrefix): at most a /30 or a
// /124.
func overlaySubnets(spec model.NetworkSpec) ([]model.OverlaySubnet, error) {
	if err := spec.CheckSubnets(); err != nil {
		return nil, err
	}
	var out []model.OverlaySubnet
	for _, s := range spec.Subnets {
		if s.Gateway.IsValid() || s.IPRange.IsValid() {
			return nil, model.Invalidf("an overlay network's gateways are its hosts' (the first address of each host's slice), and each host hands out addresses from its whole slice: give no --gateway or --ip-range")
		}
		out = append(out, model.OverlaySubnet{Prefix: s.Prefix})
	}
	if spec.Overlay != nil {
		for _, o := range spec.Overlay.Subnets {
			if !o.Prefix.IsValid() {
				return nil, model.Invalidf("a slice size (/%d) without its subnet: give the subnet it is a size of", o.SliceBits)
			}
			i := slices.IndexFunc(out, func(s model.OverlaySubnet) bool { return s.Prefix.Addr().Is6() == o.Prefix.Addr().Is6() })
			switch {
			case i < 0:
				if err := model.CheckPrefix("subnet", o.Prefix); err != nil {
					return nil, err
				}
				out = append(out, o)
			case out[i].Prefix != o.Prefix:
				return nil, model.Invalidf("slices of /%d asked for subnet %s, but the network's %s subnet is %s: give the size of a subnet of the network", o.SliceBits, o.Prefix, familyName(o.Prefix.Addr()), out[i].Prefix)
			default:
				out[i].SliceBits = o.SliceBits
			}
		}
	}
	if len(out) == 0 {
		return nil, model.Invalidf("an overlay network needs its --subnet, at most one per family (e.g. 10.200.0.0/16 and fd00:200::/48), of which each host gets a slice")
	}
	slices.SortStableFunc(out, func(a, b model.OverlaySubnet) int { return a.Prefix.Addr().BitLen() - b.Prefix.Addr().BitLen() })
	has6 := out[len(out)-1].Prefix.Addr().Is6()
	if spec.IPv6 && !has6 {
		return nil, model.Invalidf("an overlay network's IPv6 subnet is given, not picked from the pool (the pool's /64s are one host's slice each): give --subnet fd00:…/48, of which each host gets a /64")
	}
	for i, s := range out {
		v6 := s.Prefix.Addr().Is6()
		if s.SliceBits == 0 {
			s.SliceBits = model.DefaultSliceBits(v6)
		}
		hi := 30
		if v6 {
			hi = 124
		}
		if s.SliceBits < s.Prefix.Bits() || s.SliceBits > hi {
			lo := min(s.Prefix.Bits(), hi)
			return nil, model.Invalidf("slices of /%d do not fit subnet %s: give %s from %d to %d", s.SliceBits, s.Prefix, sliceFlag(v6), lo, hi)
		}
		out[i] = s
	}
	return out, nil
}

// familyName is "IPv4" or "IPv6".
func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// checkOverlayDef refuses an overlay network this node cannot make:
// over an underlay that is not IPv4, or an IPv6 subnet in host-gw mode.
func (e *Engine) checkOverlayDef(d cluster.NetworkDef) error {
	dev, addr := e.cfg.Cluster.Underlay()
	if !addr.Is4() {
		return model.Invalidf("network %s: this node's underlay address %s (%s) is not IPv4: overlay networks run over an IPv4 underlay only (an IPv6 underlay is not supported yet): give --underlay a link with an IPv4 address", d.Name, addr, dev)
	}
	if d.Mode != model.OverlayHostGW {
		return nil
	}
	for _, s := range d.Subnets {
		if s.Prefix.Addr().Is6() {
			// Checked on Linux 6.18: `ip -6 route add … via inet 10.0.0.6`
			// is "IPv6 does not support RTA_VIA attribute", and through a
			// nexthop object "IPv6 routes can not use an IPv4 nexthop". The
			// other way round (IPv4 via an IPv6 next hop, RFC 5549) exists.
			return model.Invalidf("network %s: host-gw mode cannot carry IPv6 subnet %s: it routes each node's slice via the node's underlay address, which is IPv4, and Linux takes no IPv4 next hop for an IPv6 route; use --mode vxlan (the default) for an IPv6 or dual-stack overlay, or leave the IPv6 --subnet out", d.Name, s.Prefix)
		}
	}
	return nil
}

// realizeOverlayLocked makes this host's part of a cluster network: its
// slice of each of the network's subnets, a network record for it, the
// bridge and the VXLAN device. One that exists is returned as it is.
// Called with netMu held.
func (e *Engine) realizeOverlayLocked(ctx context.Context, d cluster.NetworkDef) (*model.Network, error) {
	cl := e.cfg.Cluster
	if n, err := e.networkRecord(ctx, d.Name); err == nil {
		// Made before: its slices are in use here; take them back in etcd
		// if they were released meanwhile (node rm while this node was
		// away).
		for _, s := range n.Subnets {
			if err := cl.ReclaimSlice(ctx, d.Name, s.Prefix.Masked(), cl.NodeName()); err != nil {
				e.log.Error("cluster: keep this node's slice", "network", d.Name, "slice", s.Prefix.Masked().String(), "err", err)
			}
		}
		return n, nil
	}
	if len(d.Subnets) == 0 {
		return nil, model.Invalidf("overlay network %s has no subnet in its cluster definition (written by hand, or by a pontoon this one cannot read): remove it and create it again", d.Name)
	}
	if err := e.checkOverlayDef(d); err != nil {
		return nil, err
	}
	var mine []model.Subnet
	for _, s := range d.Subnets {
		slice, err := cl.ClaimSlice(ctx, d.Name, s.Prefix, s.SliceBits, cl.NodeName())
		if err != nil {
			return nil, fmt.Errorf("overlay network %s: claim this host's slice of %s: %w", d.Name, s.Prefix, err)
		}
		mine = append(mine, model.Subnet{Prefix: slice})
	}
	dev, _ := cl.Underlay()
	mtu := d.MTU
	l, ok, err := e.link.Link(dev)
	if err == nil && ok && d.Mode == model.OverlayHostGW {
		mtu = hostGWMTU(mtu, l.MTU) // nothing in front of a packet
	} else if err == nil && ok && l.MTU > 50 {
		if mtu == 0 || mtu > l.MTU-50 {
			mtu = l.MTU - 50 // VXLAN's 50 bytes of headers, whatever the family inside
		}
	}
	if has6 := d.Subnets[len(d.Subnets)-1].Prefix.Addr().Is6(); has6 && mtu != 0 && mtu < 1280 {
		return nil, model.Invalidf("overlay network %s has an IPv6 subnet, which needs an MTU of 1280 or more, but this host's underlay %s (MTU %d) leaves it %d: raise the underlay's MTU, or leave IPv6 out", d.Name, dev, l.MTU, mtu)
	}
	spec := model.NetworkSpec{Name: d.Name, Driver: model.DriverOverlay, Internal: d.Internal, MTU: mtu, Subnets: mine,
		Overlay: &model.OverlayOptions{Subnets: d.Subnets, VNI: d.VNI, VXLAN: model.VXLANName(d.VNI), Mode: d.Mode}}
	if d.Mode == model.OverlayHostGW {
		spec.Overlay.VXLAN = "" // no VXLAN device
	}
	return e.makeNetworkLocked(ctx, spec)
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
	e.pruneOverlays(ctx, defs)
	// This node's sandboxes' names, again (a record lost while the
	// daemon was down, a stale one deleted), then written in order off
	// the attach path; the other nodes' names as they come and go.
	e.resyncNames(ctx)
	e.startNameWriter(ctx)
	go e.sweepClusterStatic(ctx)
	go e.followNetworks(ctx, rev)
	go e.followPeers(ctx)
	go e.followNames(ctx)
	go e.followStatics(ctx)
	return nil
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
	// known are the other nodes' names now in the resolver, so that a
	// list after a broken watch also removes those deleted meanwhile.
	known := map[string]cluster.Name{}
	key := func(n cluster.Name) string { return n.Network + "/" + n.Sandbox }
	remove := func(n cluster.Name) {
		for _, ip := range n.IPs {
			e.cfg.Resolver.RemoveRecord(n.Network, ip)
		}
		delete(known, key(n))
	}
	for ctx.Err() == nil {
		names, rev, err := cl.Names(ctx)
		if err != nil {
			e.log.Warn("cluster: list names", "err", err)
			time.Sleep(time.Second)
			continue
		}
		listed := map[string]bool{}
		for _, n := range names {
			if n.Node != self {
				listed[key(n)] = true
				if old, ok := known[key(n)]; ok {
					remove(old) // its addresses may have changed
				}
				e.cfg.Resolver.SetRecord(n.Network, record(n))
				known[key(n)] = n
			}
		}
		for k, n := range known {
			if !listed[k] {
				remove(n)
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
				remove(ev.Name)
				continue
			}
			e.cfg.Resolver.SetRecord(ev.Name.Network, record(ev.Name))
			known[key(ev.Name)] = ev.Name
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
				e.pruneOverlays(ctx, defs)
			}
		}
	}
}

// pruneOverlays removes this host's part of the overlay networks that are
// no longer defined in the cluster (removed while this daemon was down or
// its watch broken).
func (e *Engine) pruneOverlays(ctx context.Context, defs []cluster.NetworkDef) {
	defined := map[string]bool{}
	for _, d := range defs {
		defined[d.Name] = true
	}
	nets, err := e.Networks()
	if err != nil {
		return
	}
	for _, n := range nets {
		if n.Driver != model.DriverOverlay || defined[n.Name] {
			continue
		}
		if err := e.removeLocalOverlay(ctx, n.Name); err != nil {
			e.log.Warn("cluster: remove this host's part of a network no longer in the cluster", "network", n.Name, "err", err)
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
// cluster's nodes and slices, by watch (cluster.FollowTopology): a node
// that joins, leaves, claims a slice or whose lease expires is programmed
// here within one etcd round trip. While etcd is unreachable the peers
// stay as they are (fail-static); the topology is read again once it is
// back.
func (e *Engine) followPeers(ctx context.Context) {
	d, _ := e.drivers[model.DriverOverlay].(*overlayDriver)
	changed := func(t cluster.Topology) {
		d.topo.Store(&t)
		// The firewall takes VXLAN from the peers only: let a new node's
		// packets in before the devices can send to it, so that its
		// first replies are not dropped (a 1 s retry for whoever waits
		// on them).
		e.syncVXLANPeers(ctx)
		nets, err := e.Networks()
		if err != nil {
			return
		}
		for _, n := range nets {
			if n.Driver != model.DriverOverlay || n.Overlay == nil {
				continue
			}
			d.applyLatest(&n.Network, e.log)
		}
	}
	failed := func(err error) {
		e.log.Warn("cluster: lost the watch of nodes and slices; the overlays' peers stay as they are until it is back", "err", err)
	}
	d.cl.FollowTopology(ctx, changed, failed)
}

// ClusterHealth says whether this daemon is a node of a cluster, and its
// trouble with it ("": none).
func (e *Engine) ClusterHealth() (member bool, health string) {
	if e.cfg.Cluster == nil {
		return false, ""
	}
	return true, e.cfg.Cluster.Health()
}

// Nodes lists the cluster's nodes with their slices of the overlay
// networks; ErrInvalid without a cluster. When etcd does not answer, it
// lists the nodes as this node last saw them, and this node's Health says
// so (fail-static: its peers are those).
func (e *Engine) Nodes(ctx context.Context) ([]model.ClusterNode, error) {
	cl := e.cfg.Cluster
	if cl == nil {
		return nil, model.Invalidf("this daemon is no node of a cluster: start it with --cluster, --node-name and --underlay")
	}
	health := cl.Health()
	var nodes []cluster.Node
	err := errors.New(health)
	if health == "" {
		// A short bound: while etcd is away, the list as last seen now
		// rather than an answer in ten seconds.
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		ctx = qctx
		nodes, _, err = cl.Nodes(ctx)
	}
	var t *cluster.Topology
	// Slices of removed networks, and of a network's former subnets, stay
	// in etcd: not shown.
	defined := map[string]*model.OverlayOptions{}
	if err == nil {
		var defs []cluster.NetworkDef
		if defs, _, err = cl.Networks(ctx); err == nil {
			for _, d := range defs {
				defined[d.Name] = &model.OverlayOptions{Subnets: d.Subnets}
			}
			read, rerr := cl.ReadTopology(ctx)
			t, err = &read, rerr
		}
	}
	if err != nil {
		d, _ := e.drivers[model.DriverOverlay].(*overlayDriver)
		if t = d.topo.Load(); t == nil {
			return nil, fmt.Errorf("cluster: etcd does not answer and this node has not read the cluster yet: %w", err)
		}
		nodes, defined = nil, nil
		for _, name := range slices.Sorted(maps.Keys(t.Nodes)) {
			nodes = append(nodes, t.Nodes[name])
		}
		if health == "" {
			health = "degraded: etcd does not answer (" + err.Error() + "); the nodes as last seen"
		}
	}
	self := slices.IndexFunc(nodes, func(n cluster.Node) bool { return n.Name == cl.NodeName() })
	if self < 0 {
		// This node's record is gone (its membership lost, being
		// renewed): it is still one, with its slices and its trouble.
		_, addr := cl.Underlay()
		nodes = append(nodes, cluster.Node{Name: cl.NodeName(), Underlay: addr, VTEPMAC: cl.VTEPMAC().String()})
		if health == "" {
			health = "degraded: this node's record is not in etcd (its lease expired); joining again"
		}
	}
	out := make([]model.ClusterNode, 0, len(nodes))
	for _, n := range nodes {
		s := map[string][]netip.Prefix{}
		for network, held := range t.Slices {
			p, ok := held[n.Name]
			if defined != nil {
				p = defined[network].SlicesIn(p) // nil for a network not defined
			}
			if ok && len(p) > 0 {
				s[network] = p
			}
		}
		cn := model.ClusterNode{Name: n.Name, Underlay: n.Underlay, VTEPMAC: vtepMAC(n), Slices: s, Started: n.Started, LastSeen: n.LastSeen, Self: n.Name == cl.NodeName()}
		if cn.Self {
			cn.Health = health
		}
		out = append(out, cn)
	}
	return out, nil
}
