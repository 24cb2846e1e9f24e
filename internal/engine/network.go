package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"pontoon/internal/ipam"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// CreateNetwork validates spec, picks a subnet when none is given, creates
// the bridge and rewrites the firewall. On any failure nothing is left.
func (e *Engine) CreateNetwork(ctx context.Context, spec model.NetworkSpec) (_ *model.Network, err error) {
	defer e.emitFailed("create-network", spec.Name, "", &err)
	e.netMu.Lock()
	defer e.netMu.Unlock()
	return e.createNetworkLocked(ctx, spec)
}

// createNetworkLocked makes the network a user asks for. An overlay
// network is defined in the cluster, then this host's part of it is made
// (realizeOverlayLocked, which makes it with makeNetworkLocked).
func (e *Engine) createNetworkLocked(ctx context.Context, spec model.NetworkSpec) (*model.Network, error) {
	if err := model.ValidateNetworkName(spec.Name); err != nil {
		return nil, err
	}
	if spec.Driver == model.DriverOverlay {
		return e.createOverlay(ctx, spec)
	}
	return e.makeNetworkLocked(ctx, spec)
}

// makeNetworkLocked makes a network on this host: its record and its
// kernel objects. For an overlay network, spec is this host's part (its
// slices as Subnets, the cluster's side in Overlay).
func (e *Engine) makeNetworkLocked(ctx context.Context, spec model.NetworkSpec) (*model.Network, error) {
	if err := model.ValidateNetworkName(spec.Name); err != nil {
		return nil, err
	}
	if err := spec.CheckSubnets(); err != nil {
		return nil, err
	}
	var nets []*model.Network
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		nets, err = tx.Networks()
		return err
	}); err != nil {
		return nil, err
	}
	for _, n := range nets {
		if n.Name == spec.Name {
			return nil, model.Conflictf("network %q already exists: pick another name or remove it with `pontoon network rm %s`", spec.Name, spec.Name)
		}
	}
	// One prefix per family: the one asked for, or one picked from the
	// family's pool (IPv4 always, IPv6 with --ipv6).
	var prefixes []netip.Prefix
	var taken []netip.Prefix
	for _, v6 := range []bool{false, true} {
		if given, ok := spec.SubnetFor(v6); ok {
			for _, n := range nets {
				for _, s := range n.Subnets {
					if s.Prefix.Overlaps(given.Prefix) {
						return nil, model.Conflictf("subnet %s overlaps %s of network %q: pick a subnet that overlaps no other network", given.Prefix, s.Prefix, n.Name)
					}
				}
			}
			prefixes = append(prefixes, given.Prefix)
			continue
		}
		if v6 && !spec.IPv6 || spec.Driver == model.DriverOverlay {
			continue // an overlay part has its slices, of the cluster's families only
		}
		if taken == nil {
			for _, n := range nets {
				taken = append(taken, n.Prefixes()...)
			}
			host, err := e.link.HostPrefixes()
			if err != nil {
				return nil, fmt.Errorf("list host addresses and routes: %w", err)
			}
			taken = append(taken, host...)
		}
		if spec.Driver == model.DriverMacvlan {
			return nil, model.Invalidf("a macvlan network is on its parent's segment: give that segment's --subnet (and --gateway, the LAN's router); pontoon does not pick one")
		}
		p, err := e.pickSubnet(spec.Name, spec.Driver, v6, taken)
		if err != nil {
			return nil, err
		}
		prefixes = append(prefixes, p)
	}
	n, err := model.BuildNetwork(spec, prefixes, model.NewID())
	if err != nil {
		return nil, err
	}
	drv, err := e.driverFor(n)
	if err != nil {
		return nil, err
	}
	if err := checkCaps(drv, n); err != nil {
		return nil, err
	}
	if err := drv.Validate(n); err != nil {
		return nil, err
	}
	for _, o := range nets {
		if n.Bridge != "" && o.Bridge == n.Bridge {
			return nil, model.Conflictf("bridge %s is already used by network %q: pick another --bridge", n.Bridge, o.Name)
		}
	}
	host, err := e.link.HostNets()
	if err != nil {
		return nil, fmt.Errorf("list host addresses and routes: %w", err)
	}
	if err := checkHostNets(n, host, nets); err != nil {
		return nil, err
	}
	if spec.Bridge != "" {
		idx, err := e.link.LinkIndex(spec.Bridge)
		if err != nil {
			return nil, err
		}
		n.BridgeAdopted = idx != 0
	}
	n.Created = time.Now().UTC()

	if err := e.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutNetwork(n); err != nil {
			return err
		}
		// Addresses the host takes on the network (a macvlan shim's) are
		// never handed to a sandbox.
		for _, a := range n.HostAddrs() {
			if err := tx.Reserve(n.ID, a, hostOwner); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("record network %s: %w", n.Name, err)
	}
	undo := func(cause error) error {
		if err := drv.RemoveNetwork(n); err != nil {
			e.log.Error("rollback: remove the network's kernel objects", "network", n.Name, "bridge", n.Bridge, "err", err)
		}
		if err := e.st.Update(context.WithoutCancel(ctx), func(tx store.Tx) error { return tx.DeleteNetwork(n.Name) }); err != nil {
			e.log.Error("rollback: delete network record", "network", n.Name, "err", err)
		}
		return cause
	}
	if _, v6 := n.Subnet6(); v6 {
		if err := e.ensureIPv6Forward(); err != nil {
			return nil, undo(fmt.Errorf("network %s has an IPv6 subnet: %w", n.Name, err))
		}
	}
	if err := e.hook("network:bridge"); err != nil {
		return nil, undo(err)
	}
	if err := drv.EnsureNetwork(n); err != nil {
		if errors.Is(err, link.ErrNoVLANFiltering) {
			return nil, undo(model.Invalidf("network %s: %v", n.Name, err))
		}
		return nil, undo(fmt.Errorf("create bridge %s for network %s: %w", n.Bridge, n.Name, err))
	}
	if err := e.hook("network:firewall"); err != nil {
		return nil, undo(err)
	}
	if err := e.syncFirewall(ctx); err != nil {
		err = undo(fmt.Errorf("network %s: %w", n.Name, err))
		if serr := e.syncFirewall(ctx); serr != nil {
			e.log.Error("rollback: resync firewall", "err", serr)
		}
		return nil, err
	}
	e.syncResolverNetworks()
	e.emit(Event{Kind: model.EventNetworkCreated, Network: n.Name, Detail: n.SubnetString() + " on " + n.Where()})
	e.log.Info("network created", "network", n.Name, "driver", n.Driver, "subnets", n.SubnetString(), "on", n.Where(), "internal", n.Internal)
	return n, nil
}

// hostOwner owns the reservations of the host's own addresses on a
// network (a macvlan shim's).
const hostOwner = "host"

// pickSubnet picks a free subnet of one family for a network created
// without --subnet: the configured default for the default network, else
// the first free one of the family's pool.
//
// A direct link (driver link) gets a /30 of the pool: two members.
func (e *Engine) pickSubnet(name, driver string, v6 bool, taken []netip.Prefix) (netip.Prefix, error) {
	if v6 {
		pool, bits := e.cfg.Pool6, e.cfg.Pool6Bits
		if len(pool) == 0 {
			def, _ := ipam.PoolFor(ipam.DefaultPools, true)
			pool = def.Prefixes
		}
		p, err := ipam.PickSubnet(pool, bits, taken)
		if err != nil {
			return netip.Prefix{}, model.Exhaustedf("no free IPv6 /%d subnet left in the pool (%v) for network %s: give one with --subnet", bits, pool, name)
		}
		return p, nil
	}
	if name == model.DefaultNetwork && e.cfg.DefaultSubnet.IsValid() {
		free := true
		for _, t := range taken {
			if t.Overlaps(e.cfg.DefaultSubnet) {
				free = false
				break
			}
		}
		if free {
			return e.cfg.DefaultSubnet, nil
		}
	}
	pool, bits := e.cfg.Pool, e.cfg.PoolBits
	if len(pool) == 0 {
		pool = ipam.DefaultPool
	}
	if driver == model.DriverLink {
		bits = 30
	}
	p, err := ipam.PickSubnet(pool, bits, taken)
	if err != nil {
		return netip.Prefix{}, model.Exhaustedf("no free /%d subnet left in the default pool for network %s: give one with --subnet", bits, name)
	}
	return p, nil
}

// ensureIPv6Forward turns IPv6 forwarding on in the daemon's namespace when
// a network has an IPv6 subnet (and the daemon manages forwarding). The
// adapter first sets accept_ra=2 on uplinks that take router
// advertisements, so the host keeps its RA-learned default route; each
// change is logged.
func (e *Engine) ensureIPv6Forward() error {
	if !e.cfg.SetIPForward || !e.hasIPv6Network() {
		return nil
	}
	changes, err := e.link.SetIPv6Forward()
	for _, c := range changes {
		if c.Link == "" { // forwarding itself: expected
			e.log.Info("turned IPv6 forwarding on", "change", c.String(), "why", c.Why)
			continue
		}
		e.log.Warn("changed an uplink's sysctl before turning IPv6 forwarding on", "change", c.String(), "why", c.Why)
	}
	if err != nil {
		return fmt.Errorf("enable IPv6 forwarding: %w", err)
	}
	return nil
}

// hasIPv6Network reports whether some network has an IPv6 subnet.
func (e *Engine) hasIPv6Network() bool {
	found := false
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		nets, err := tx.Networks()
		for _, n := range nets {
			if _, ok := n.Subnet6(); ok {
				found = true
			}
		}
		return err
	})
	return found
}

func bridgeOf(n *model.Network) link.Bridge {
	b := link.Bridge{Name: n.Bridge, MTU: n.MTU}
	if o := n.BridgeOptions; o != nil {
		b.Options = &link.BridgeOptions{
			STP: o.STP, ForwardDelay: o.ForwardDelay, AgeingTime: o.AgeingTime,
			VLANFiltering: o.VLANFiltering, MulticastSnooping: o.MulticastSnooping,
		}
	}
	for _, s := range n.Subnets {
		b.Gateways = append(b.Gateways, netip.PrefixFrom(s.Gateway, s.Prefix.Bits()))
	}
	return b
}

// RemoveNetwork removes a network: refused while it has endpoints unless
// force, which disconnects them first. The default network stays.
//
// An overlay network is removed from the cluster too: every other host
// removes its part when it sees it go.
func (e *Engine) RemoveNetwork(ctx context.Context, name string, force bool) (err error) {
	defer e.emitFailed("remove-network", name, "", &err)
	return e.removeNetwork(ctx, name, force, true)
}

// removeNetwork is RemoveNetwork; cluster false removes only this host's
// part of an overlay network (it was removed from the cluster elsewhere).
func (e *Engine) removeNetwork(ctx context.Context, name string, force, cluster bool) error {
	if name == model.DefaultNetwork {
		return model.Invalidf("network %s is the default network and cannot be removed", name)
	}
	e.netMu.Lock()
	defer e.netMu.Unlock()
	var eps []*model.Endpoint
	var n *model.Network
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		if n, err = tx.Network(name); err != nil {
			return err
		}
		eps, err = tx.EndpointsOnNetwork(name)
		return err
	}); err != nil {
		return err
	}
	var live []string
	for _, ep := range eps {
		if ep.State != model.StateRemoving {
			live = append(live, ep.Sandbox)
		}
	}
	if len(live) > 0 && !force {
		return model.Conflictf("network %s has %d endpoint(s) (sandboxes %s): disconnect them first, or force the removal, which disconnects them (pontoon network rm --force; in the API, ?force=true)", name, len(live), strings.Join(first(live, 5), ", "))
	}
	for _, sb := range live {
		if err := e.Disconnect(ctx, name, sb); err != nil && !errors.Is(err, model.ErrNotFound) {
			return fmt.Errorf("remove network %s: %w", name, err)
		}
	}
	e.reaper.flush()
	if err := e.st.Update(ctx, func(tx store.Tx) error {
		eps, err := tx.EndpointsOnNetwork(name)
		if err != nil {
			return err
		}
		if len(eps) > 0 {
			return model.Conflictf("network %s still has %d endpoint(s) being created: try again", name, len(eps))
		}
		return tx.DeleteNetwork(name)
	}); err != nil {
		return err
	}
	var errs []error
	e.syncResolverNetworks()
	if err := e.syncFirewall(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := e.drv(n).RemoveNetwork(n); err != nil {
		errs = append(errs, fmt.Errorf("remove the kernel objects of network %s (bridge %s): %w", n.Name, n.Bridge, err))
	}
	if cluster && n.Driver == model.DriverOverlay && e.cfg.Cluster != nil {
		if err := e.cfg.Cluster.RemoveNetworkDef(context.WithoutCancel(ctx), name); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s from the cluster: %w", name, err))
		}
	}
	e.emit(Event{Kind: model.EventNetworkRemoved, Network: name})
	e.log.Info("network removed", "network", name)
	return errors.Join(errs...)
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), "…")
	}
	return s
}

func liveEndpoints(eps []*model.Endpoint) []*model.Endpoint {
	out := make([]*model.Endpoint, 0, len(eps))
	for _, ep := range eps {
		if ep.State == model.StateReady {
			out = append(out, ep)
		}
	}
	return out
}

// networkRecord reads a network's record.
func (e *Engine) networkRecord(ctx context.Context, name string) (*model.Network, error) {
	var n *model.Network
	err := e.st.View(ctx, func(tx store.Tx) (err error) {
		n, err = tx.Network(name)
		return err
	})
	return n, err
}
