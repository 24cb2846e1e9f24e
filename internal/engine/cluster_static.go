package engine

// Static addresses on overlay networks, reserved across the cluster.
//
// A static --ip on an overlay network must lie in this host's slice of
// the network. Every node routes a whole slice to the node that holds it
// (one route, one neighbour, one FDB entry per peer: driver_overlay.go),
// and the holder's bridge has the slice on-link; an address of another
// node's slice would need a /32 route on every node, proxy ARP on the
// slice holder's bridge, and a sandbox whose gateway lies outside its own
// prefix. So an address outside the slice is refused with an error that
// names this host's slice and the node whose slice it is in; the sandbox
// belongs on that node.
//
// The address is still reserved in the cluster (ReserveStatic, owner
// "node/sandbox") before the local reservation, because slices change
// hands (a node gone for good, its slices expired and claimed by a new
// node, whose sandboxes keep running elsewhere meanwhile, or a daemon
// whose local state was wiped): the reservation is what says the address
// is in use, whatever the slices say. It goes on rollback, detach and
// removal. A second sandbox asking for the address, on any node, gets a
// conflict naming the holder.
//
// The dynamic allocator skips the addresses reserved in the cluster: the
// attach takes the network's reservations from a cache kept by a watch of
// the cluster's static addresses (followStatics; before its first list,
// one etcd range read) and hands the skip set to the allocation, which
// runs inside the local store's transaction. Claim-on-allocate (a cluster
// write per dynamic address) would close the window between the watch's
// view and a reservation made elsewhere in the same instant, but costs
// every attach a Raft round trip; with static addresses confined to their
// node's slice the window only opens while a slice changes hands, so the
// watch's view is enough.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"pontoon/internal/cluster"
	"pontoon/internal/ipam"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// clusterTimeout bounds the cluster requests of one attach or detach: a
// hung etcd fails the attach instead of hanging it.
const clusterTimeout = 10 * time.Second

// staticOwner is the holder of a cluster-wide static reservation, as
// errors and `network inspect` show it.
func staticOwner(node, sandbox string) string { return node + "/" + sandbox }

// clusterStatic is the cluster's part of one attach to an overlay
// network: the static addresses it reserved across the cluster (released
// on rollback), and the addresses reserved there that the dynamic
// allocator skips. A nil *clusterStatic (no cluster, not an overlay
// network) does nothing.
type clusterStatic struct {
	e        *Engine
	network  string
	owner    string
	reserved []netip.Addr
	avoid    map[netip.Addr]string
}

// overlayNetwork returns network name's record when it is an overlay
// network of this engine's cluster; nil otherwise (a missing network is
// the store transaction's error to report).
func (e *Engine) overlayNetwork(ctx context.Context, name string) *model.Network {
	if e.cfg.Cluster == nil {
		return nil
	}
	var nw *model.Network
	_ = e.st.View(ctx, func(tx store.Tx) error {
		n, err := tx.Network(name)
		if err == nil && n.Driver == model.DriverOverlay && n.Overlay != nil {
			nw = n
		}
		return nil
	})
	return nw
}

// checkOverlayStatic checks static address ip asked for by owner on
// overlay network nw (this node's part of it: its Subnets are this node's
// slices, one per family), given the cluster's reservations. slices is
// called only to name the node whose slice ip is in, for the error.
func checkOverlayStatic(nw *model.Network, self, owner string, ip netip.Addr, reserved map[netip.Addr]string, slices func() map[string][]netip.Prefix) error {
	mine := nw.SubnetString() // this host's slices
	r, ok := nw.Overlay.Range(ip)
	if !ok || !r.Contains(ip) {
		return model.Invalidf("address %s is outside overlay network %s (%s): give an address in this host's slice %s, or leave --ip out", ip, nw.Name, joinPrefixes(nw.Overlay.Prefixes()), mine)
	}
	sub, _ := nw.Subnet4()
	if ip.Is6() {
		sub, _ = nw.Subnet6()
	}
	slice := sub.Prefix // invalid if this host has no slice of ip's family
	if holder, ok := reserved[ip]; ok && holder != owner {
		return model.Conflictf("address %s on network %s is reserved across the cluster by %s (node/sandbox): pick another address in this host's slice %s, or leave --ip out to get a free one", ip, nw.Name, holder, slice)
	}
	if !slice.Contains(ip) {
		where := "no node's slice yet"
		for node, ps := range slices() {
			for _, p := range ps {
				if p.Contains(ip) {
					where = "node " + node + "'s slice " + p.String()
				}
			}
		}
		return model.Invalidf("address %s is outside this host's (%s) slice %s of overlay network %s (it is in %s): a static address must be in the slice of the node its sandbox runs on; give an address in %s, or create the sandbox on that node", ip, self, slice, nw.Name, where, slice)
	}
	return model.CheckStaticIP(nw, ip)
}

// checkClusterStatic checks an attach's static addresses on an overlay
// network against the cluster (CreateSandbox calls it before it makes
// anything): in this host's slice, and not reserved by another sandbox
// on any node. Nothing is reserved here: reserveClusterStatic does that.
func (e *Engine) checkClusterStatic(ctx context.Context, sandbox string, a model.AttachSpec) error {
	if len(a.IPs) == 0 {
		return nil
	}
	nw := e.overlayNetwork(ctx, a.Network)
	if nw == nil {
		return nil
	}
	_, err := e.clusterStaticCheck(ctx, nw, sandbox, a.IPs)
	return err
}

// clusterStaticCheck reads nw's reservations and checks ips against
// them; it returns the reservations.
func (e *Engine) clusterStaticCheck(ctx context.Context, nw *model.Network, sandbox string, ips []netip.Addr) (map[netip.Addr]string, error) {
	cl := e.cfg.Cluster
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	reserved, err := cl.StaticReservations(ctx, nw.Name)
	if err != nil {
		return nil, fmt.Errorf("read the cluster's static addresses of network %s (etcd): %w", nw.Name, err)
	}
	self := cl.NodeName()
	slicesOf := func() map[string][]netip.Prefix {
		s, _ := cl.Slices(ctx, nw.Name)
		return s
	}
	for _, ip := range ips {
		if err := checkOverlayStatic(nw, self, staticOwner(self, sandbox), ip, reserved, slicesOf); err != nil {
			return nil, err
		}
	}
	return reserved, nil
}

// reserveClusterStatic is the cluster step of an attach to an overlay
// network, before the local reservation: it checks and reserves the
// static addresses across the cluster, and reads the addresses reserved
// there for the dynamic allocator to skip. On error nothing stays
// reserved. Not an overlay network: nil, nil.
func (e *Engine) reserveClusterStatic(ctx context.Context, sandbox string, a model.AttachSpec) (*clusterStatic, error) {
	nw := e.overlayNetwork(ctx, a.Network)
	if nw == nil {
		return nil, nil
	}
	cl := e.cfg.Cluster
	if len(a.IPs) == 0 {
		// Only the addresses to skip: static ones are in their holder's
		// own slice, so in this host's only if this host reserved them
		// (or a node that held the slice before). They come from the
		// watch (followStatics): no etcd round trip on the attach path.
		// Until the first list, they are read; while etcd is away an
		// attach goes on with what the watch saw last, or without them
		// (fail-static: this host's slice is its own) rather than fail.
		reserved, ok := e.statics.of(nw.Name)
		if !ok {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var err error
			reserved, err = cl.StaticReservations(rctx, nw.Name)
			cancel()
			if err != nil {
				e.log.Warn("cluster: static addresses unread; allocating from this host's slice without them", "network", nw.Name, "err", err)
			}
		}
		return &clusterStatic{e: e, network: nw.Name, owner: staticOwner(cl.NodeName(), sandbox), avoid: reserved}, nil
	}
	reserved, err := e.clusterStaticCheck(ctx, nw, sandbox, a.IPs)
	if err != nil {
		return nil, err
	}
	cs := &clusterStatic{e: e, network: nw.Name, owner: staticOwner(cl.NodeName(), sandbox), avoid: reserved}
	rctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	for _, ip := range a.IPs {
		if err := cl.ReserveStatic(rctx, nw.Name, ip, cs.owner); err != nil {
			cs.release(ctx)
			return nil, err
		}
		cs.reserved = append(cs.reserved, ip)
	}
	return cs, nil
}

// release gives back what the attach reserved across the cluster (its
// rollback).
func (cs *clusterStatic) release(ctx context.Context) {
	if cs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), clusterTimeout)
	defer cancel()
	for _, ip := range cs.reserved {
		if err := cs.e.cfg.Cluster.ReleaseStatic(ctx, cs.network, ip, cs.owner); err != nil {
			cs.e.log.Error("rollback: release a static address across the cluster", "network", cs.network, "ip", ip.String(), "err", err)
		}
	}
	cs.reserved = nil
}

// allocate is ipam.Allocate that skips the addresses reserved across the
// cluster: each one the allocator offers is held for the attach until a
// free one comes, then given back, all inside the store transaction tx.
// The loop is bounded by the number of addresses to skip.
func (cs *clusterStatic) allocate(tx store.Tx, nw *model.Network, s model.Subnet, owner string) (netip.Addr, error) {
	if cs == nil || len(cs.avoid) == 0 {
		return ipam.Allocate(tx, nw, s, owner)
	}
	var skipped []netip.Addr
	for range len(cs.avoid) + 1 {
		ip, err := ipam.Allocate(tx, nw, s, owner)
		if err != nil {
			return netip.Addr{}, err
		}
		if _, held := cs.avoid[ip]; !held {
			for _, sk := range skipped {
				if err := tx.Release(nw.ID, sk); err != nil {
					return netip.Addr{}, err
				}
			}
			return ip, nil
		}
		skipped = append(skipped, ip)
	}
	return netip.Addr{}, model.Exhaustedf("network %s: every free address of this host's slice %s is reserved across the cluster by a static --ip: free one, or remove a sandbox", nw.Name, s.Prefix)
}

// releaseClusterStatic releases, across the cluster, the static
// addresses of overlay endpoints being torn down. It runs before their
// local reservations go, so that an attach that asks for the address
// again finds it held here until the cluster has let it go (and waits for
// the reaper). An address the endpoint got from the allocator has no
// reservation: that is success.
func (e *Engine) releaseClusterStatic(eps []*model.Endpoint) {
	cl := e.cfg.Cluster
	if cl == nil || len(eps) == 0 {
		return
	}
	overlay := map[string]bool{}
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		for _, ep := range eps {
			if n, err := tx.Network(ep.Network); err == nil {
				overlay[ep.Network] = n.Driver == model.DriverOverlay
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	owner := func(ep *model.Endpoint) string { return staticOwner(cl.NodeName(), ep.Sandbox) }
	for _, ep := range eps {
		if !overlay[ep.Network] {
			continue
		}
		for _, ip := range ep.IPs() {
			err := cl.ReleaseStatic(ctx, ep.Network, ip, owner(ep))
			if err != nil && !errors.Is(err, model.ErrConflict) {
				// It stays reserved: sweepClusterStatic at the next start
				// releases it.
				e.log.Warn("release a static address across the cluster; the next start retries", "network", ep.Network, "ip", ip.String(), "sandbox", ep.Sandbox, "err", err)
			}
		}
	}
}

// sweepClusterStatic releases this node's reservations that no endpoint
// holds any more (the daemon died between the cluster's reservation and
// the local one, or while it released them). Each check runs under the
// holder sandbox's lock, which its attaches hold from their cluster
// reservation to their local record: one in flight is never swept.
func (e *Engine) sweepClusterStatic(ctx context.Context) {
	cl := e.cfg.Cluster
	self := cl.NodeName()
	nets, err := e.Networks()
	if err != nil {
		return
	}
	for _, n := range nets {
		if n.Driver != model.DriverOverlay || ctx.Err() != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, clusterTimeout)
		reserved, err := cl.StaticReservations(rctx, n.Name)
		cancel()
		if err != nil {
			e.log.Warn("cluster: read static addresses to sweep", "network", n.Name, "err", err)
			continue
		}
		for ip, holder := range reserved {
			node, sandbox, ok := strings.Cut(holder, "/")
			if !ok || node != self || model.ValidateName("sandbox", sandbox) != nil {
				continue
			}
			e.sweepOne(ctx, n.Name, ip, holder, sandbox)
		}
	}
}

func (e *Engine) sweepOne(ctx context.Context, network string, ip netip.Addr, holder, sandbox string) {
	unlock := e.lockSandbox(sandbox)
	defer unlock()
	held := false
	_ = e.st.View(ctx, func(tx store.Tx) error {
		ep, err := tx.Endpoint(sandbox, network)
		held = err == nil && slices.Contains(ep.IPs(), ip)
		return nil
	})
	if held {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	if err := e.cfg.Cluster.ReleaseStatic(rctx, network, ip, holder); err != nil {
		e.log.Warn("cluster: release a static address no endpoint holds", "network", network, "ip", ip.String(), "holder", holder, "err", err)
		return
	}
	e.log.Info("cluster: released a static address no endpoint holds", "network", network, "ip", ip.String(), "holder", holder)
}

// staticCache is every overlay network's static addresses as the watch
// last saw them (followStatics): what an attach that allocates an address
// must skip, without asking etcd.
type staticCache struct {
	mu     sync.Mutex
	listed bool // a list has been loaded: of answers
	byNet  map[string]map[netip.Addr]string
}

// of returns a copy of network's reservations, and whether the cache has
// been listed (false: ask etcd).
func (c *staticCache) of(network string) (map[netip.Addr]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.byNet[network]), c.listed
}

func (c *staticCache) set(all map[string]map[netip.Addr]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byNet, c.listed = all, true
}

func (c *staticCache) apply(ev cluster.StaticEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Removed {
		delete(c.byNet[ev.Network], ev.IP)
		if len(c.byNet[ev.Network]) == 0 {
			delete(c.byNet, ev.Network)
		}
		return
	}
	if c.byNet == nil {
		c.byNet = map[string]map[netip.Addr]string{}
	}
	if c.byNet[ev.Network] == nil {
		c.byNet[ev.Network] = map[netip.Addr]string{}
	}
	c.byNet[ev.Network][ev.IP] = ev.Owner
}

// followStatics keeps e.statics current: list, then watch from the list's
// revision; again after a failed watch (keeping what it saw meanwhile:
// fail-static).
func (e *Engine) followStatics(ctx context.Context) {
	cl := e.cfg.Cluster
	for ctx.Err() == nil {
		all, rev, err := cl.AllStaticReservations(ctx)
		if err != nil {
			e.log.Warn("cluster: list static addresses", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		e.statics.set(all)
		ch, err := cl.WatchStatics(ctx, rev)
		if err != nil {
			continue
		}
		for ev := range ch {
			if ev.Err != nil {
				e.log.Warn("cluster: the static address watch ended; listing again", "err", ev.Err)
				break
			}
			e.statics.apply(ev)
		}
	}
}
