package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"pontoon/internal/firewall"
	"pontoon/internal/ipam"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/relay"
	"pontoon/internal/store"
)

// checkPorts validates the port mappings of an attach (normalising them in
// place: clients parse the -p syntax, JSON callers may leave ends out) and
// that no two use the same host port.
func checkPorts(ports []model.PortMapping) error {
	var out []model.PortMapping
	for i := range ports {
		if err := ports[i].Normalize(); err != nil {
			return err
		}
		m := ports[i]
		for _, o := range out {
			if o.Overlaps(m) {
				return model.Invalidf("port mappings %s and %s use the same host port", o, m)
			}
		}
		out = append(out, m)
	}
	return nil
}

// guards reports whether the host's anti-spoofing table can guard
// endpoints of network n (nil: gone; its endpoints' elements are removed
// as always): not when another switch forwards their frames (Open
// vSwitch, in user space, never passes the bridge hooks).
func guards(n *model.Network) bool {
	return n == nil || n.Driver != model.DriverOVS
}

// guarded returns an endpoint's anti-spoofing identity.
func guarded(ep *model.Endpoint) []firewall.Guarded {
	if ep.HostIf == "" {
		return nil // no host end: frames never pass the host's bridge
	}
	ips := ep.IPs()
	if _, v6 := ep.Addr6(); v6 {
		// Neighbour discovery answers from the link-local address link
		// gives the sandbox's interface.
		ips = append(ips, link.LinkLocal(mustMAC(ep.MAC)).Addr())
	}
	return []firewall.Guarded{{Port: ep.HostIf, MAC: mustMAC(ep.MAC), IPs: ips}}
}

// published returns an endpoint's mappings as the firewall wants them.
func published(ep *model.Endpoint) []firewall.Published {
	var out []firewall.Published
	for _, m := range ep.Ports {
		if m.HostIP == relay.Loopback {
			continue // the kernel cannot DNAT from [::1]: the relay answers there
		}
		out = append(out, firewall.Published{PortMapping: m, Targets: ep.IPs()})
	}
	return out
}

func validateAttach(a model.AttachSpec) error {
	if err := checkPorts(a.Ports); err != nil {
		return err
	}
	if err := model.ValidateName("network", a.Network); err != nil {
		return err
	}
	for _, al := range a.Aliases {
		if err := model.ValidateName("alias", al); err != nil {
			return err
		}
	}
	if a.IfName != "" {
		if err := model.ValidateIfName("interface name", a.IfName); err != nil {
			return err
		}
		if a.IfName == "lo" {
			return model.Invalidf("interface name lo is taken by the loopback device: pick another")
		}
	}
	if a.MAC != "" {
		if _, err := model.ParseMAC(a.MAC); err != nil {
			return err
		}
	}
	var seen [2]bool
	for _, ip := range a.IPs {
		if !ip.IsValid() || ip.Zone() != "" || ip.Is4In6() {
			return model.Invalidf("address %q is not a plain IPv4 or IPv6 address", ip)
		}
		fam := 0
		if ip.Is6() {
			fam = 1
		}
		if seen[fam] {
			return model.Invalidf("two static addresses of one family given for network %s: a network has one address per family", a.Network)
		}
		seen[fam] = true
	}
	return nil
}

// Connect attaches a sandbox to a network (see the package comment for the
// steps). The sandbox must exist and be ready.
func (e *Engine) Connect(ctx context.Context, sandbox string, a model.AttachSpec) (_ *model.Endpoint, err error) {
	defer e.request()()
	defer e.emitFailed("attach", a.Network, sandbox, &err)
	if err := validateAttach(a); err != nil {
		return nil, err
	}
	if err := model.ValidateName("sandbox", sandbox); err != nil {
		return nil, err
	}
	unlock := e.lockSandbox(sandbox)
	defer unlock()
	return e.attachLocked(ctx, sandbox, a, false)
}

// connectLocked does the attach; creating is true while the sandbox itself
// is being created (it is then in state "creating").
func (e *Engine) connectLocked(ctx context.Context, sandbox string, a model.AttachSpec, creating bool) (*model.Endpoint, error) {
	// An endpoint of this sandbox that is still being torn down holds an
	// interface name and maybe the default route: finish it first.
	t0 := time.Now()
	if e.hasRemoving(sandbox) {
		e.reaper.flush()
	}
	ports := a.Ports // validated by the caller
	// A static address must not be the host's (CreateSandbox checked
	// before it made anything).
	for _, ip := range a.IPs {
		if creating {
			break
		}
		if err := e.checkNotHostAddr(ip); err != nil {
			return nil, fmt.Errorf("connect %s to %s: %w", sandbox, a.Network, err)
		}
	}
	for _, m := range ports {
		if err := e.checkTunnelPort(m); err != nil {
			return nil, fmt.Errorf("connect %s to %s: %w", sandbox, a.Network, err)
		}
	}
	if e.cfg.PortProbe != nil {
		for _, m := range ports {
			if err := e.cfg.PortProbe(m); err != nil {
				return nil, fmt.Errorf("connect %s to %s: %w", sandbox, a.Network, err)
			}
		}
	}
	// On an overlay network, the cluster's part first (cluster_static.go).
	cs, err := e.reserveClusterStatic(ctx, sandbox, a)
	if err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", sandbox, a.Network, err)
	}
	var (
		ep *model.Endpoint
		sb *model.Sandbox
		nw *model.Network
	)
	err = e.st.Update(ctx, func(tx store.Tx) error {
		var err error
		if nw, err = tx.Network(a.Network); err != nil {
			return err
		}
		if err := checkPortsOnNetwork(nw, ports); err != nil {
			return err
		}
		if err := checkEndpointCaps(e.drv(nw), nw, a); err != nil {
			return err
		}
		if err := model.CheckVLAN(nw, a.VLAN); err != nil {
			return err
		}
		if sb, err = tx.Sandbox(sandbox); err != nil {
			return err
		}
		switch {
		case sb.Kind == model.KindHost:
			return model.Invalidf("sandbox %s uses the host's network namespace and cannot be connected to a network", sandbox)
		case sb.Kind == model.KindVM && !creating:
			return model.Invalidf("sandbox %s is a VM's, with one tap device: give the VM another with `pontoon tap create`", sandbox)
		case sb.State == model.SandboxRemoving:
			return model.Conflictf("sandbox %s is being removed", sandbox)
		case sb.State == model.SandboxCreating && !creating:
			return model.Conflictf("sandbox %s is still being created: try again", sandbox)
		}
		if old, err := tx.Endpoint(sandbox, a.Network); err == nil {
			return model.Conflictf("sandbox %s is already connected to network %s (%s, %s): disconnect it first", sandbox, a.Network, old.IfName, old.IPString())
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
		if err := checkNames(tx, nw.Name, sandbox, a.Aliases); err != nil {
			return err
		}
		eps, err := tx.EndpointsOfSandbox(sandbox)
		if err != nil {
			return err
		}
		if err := checkHostPortsFree(tx, ports); err != nil {
			return err
		}
		slot, table, primary := nextSlot(eps)
		ifname := model.IfNameFor(slot)
		if a.IfName != "" {
			for _, o := range eps {
				if o.IfName == a.IfName {
					return model.Conflictf("sandbox %s already has an interface %s (network %s): pick another interface name", sandbox, a.IfName, o.Network)
				}
			}
			ifname = a.IfName
		}
		ep = &model.Endpoint{
			ID: model.NewID(), Network: nw.Name, Sandbox: sandbox, Node: e.cfg.Node,
			IfName: ifname, MTU: nw.MTU, Primary: primary, Aliases: a.Aliases, Ports: ports, VLAN: a.VLAN,
			State: model.StateCreating, Created: time.Now().UTC(),
		}
		if a.Tap != nil {
			o := a.Tap.TapOptions
			ep.Tap, ep.HostIf = &o, a.Tap.Name
		}
		if err := e.drv(nw).Prepare(tx, nw, ep); err != nil {
			return err
		}
		if !primary {
			ep.Table = table
		}
		if a.Claim {
			if err := claim(tx, nw.ID, a.IPs); err != nil {
				return err
			}
		}
		if ep.Addresses, err = e.reserveAddrs(tx, nw, ep.ID, a.IPs, cs); err != nil {
			return err
		}
		if err := pickMAC(tx, nw, ep, a.MAC); err != nil {
			return err
		}
		return tx.PutEndpoint(ep)
	})
	if err != nil {
		cs.release(ctx)
		return nil, fmt.Errorf("connect %s to %s: %w", sandbox, a.Network, err)
	}

	// From here on, a failure must undo the reservation and the record.
	undo := func(cause error) error {
		if len(ep.Ports) > 0 {
			if err := e.fw.Unpublish(ctx, published(ep)); err != nil {
				e.log.Error("rollback: unpublish ports", "sandbox", sandbox, "err", err)
			}
			e.relayUnpublish(ep)
		}
		if err := e.drv(nw).Delete([]*model.Endpoint{ep}); err != nil {
			e.log.Error("rollback: delete veth", "link", ep.HostIf, "err", err)
		}
		if err := e.fw.Unguard(ctx, guarded(ep)); err != nil {
			e.log.Error("rollback: remove anti-spoofing elements", "sandbox", sandbox, "err", err)
		}
		e.flowsGone([]*model.Endpoint{ep})
		// The source rule lives in the sandbox's namespace, not on the link.
		if ep.Table != 0 {
			for _, ip := range ep.IPs() {
				if err := e.link.DeleteRule(sb.Netns, sb.NetnsIno, ip, ep.Table); err != nil {
					e.log.Error("rollback: delete source rule", "sandbox", sandbox, "err", err)
				}
			}
		}
		cs.release(ctx)
		if err := e.st.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
			if err := releaseAddrs(tx, ep); err != nil {
				return err
			}
			return tx.DeleteEndpoint(ep.Sandbox, ep.Network)
		}); err != nil {
			e.log.Error("rollback: delete endpoint record", "sandbox", sandbox, "network", ep.Network, "err", err)
		}
		return fmt.Errorf("connect %s to %s: %w", sandbox, a.Network, cause)
	}
	// The address's previous owner's flows go before it lives again.
	for _, ip := range ep.IPs() {
		e.flows.waitAddr(ip)
	}
	tStore := time.Now()
	// Anti-spoofing before the link exists (the elements name the port):
	// the sandbox never sends a frame unguarded.
	if guards(nw) {
		if err := e.fw.Guard(ctx, guarded(ep)); err != nil {
			return nil, undo(err)
		}
	}
	if err := e.hook("attach:veth"); err != nil {
		return nil, undo(err)
	}
	t1 := time.Now()
	idx, err := e.drv(nw).Plumb(nw, sb, ep)
	if err != nil {
		return nil, undo(err)
	}
	ep.HostIfIndex = idx
	if len(ep.Ports) > 0 {
		if err := e.hook("attach:publish"); err != nil {
			return nil, undo(err)
		}
		if err := e.fw.Publish(ctx, published(ep)); err != nil {
			return nil, undo(err)
		}
		e.relayPublish(ep)
		e.flowsPublished(ep)
	}
	if err := e.hook("attach:ready"); err != nil {
		return nil, undo(err)
	}
	ep.State = model.StateReady
	t2 := time.Now()
	if err := e.st.Update(ctx, func(tx store.Tx) error { return tx.PutEndpoint(ep) }); err != nil {
		return nil, undo(fmt.Errorf("record endpoint: %w", err))
	}
	t3 := time.Now()
	e.resolverAdd(ep)
	e.maybeSyncSandboxResolver(sandbox, nw)
	t4 := time.Now()
	if !creating {
		e.resolv.sync(sandbox)
	}
	e.emitTimed(Event{Kind: model.EventAttached, Network: nw.Name, Sandbox: sandbox, Detail: ep.IfName + " " + ep.IPString()}, t0)
	if len(ep.Ports) > 0 {
		e.emitTimed(Event{Kind: model.EventPublished, Network: nw.Name, Sandbox: sandbox, Detail: portList(ep.Ports)}, t0)
	}
	e.log.Debug("endpoint attached", "sandbox", sandbox, "network", nw.Name, "ip", ep.IPString(), "if", ep.IfName, "host_if", ep.HostIf,
		"reserve", tStore.Sub(t0), "guard", t1.Sub(tStore), "kernel", t2.Sub(t1), "record", t3.Sub(t2), "dns", t4.Sub(t3), "resolvconf", time.Since(t4))
	return ep, nil
}

// reserveAddrs reserves an endpoint's addresses on nw, one per subnet:
// the static address of that family when one is given, else the IPAM's
// next free one (skipping those cs says are reserved across the cluster).
// Inside the store transaction tx.
func (e *Engine) reserveAddrs(tx store.Tx, nw *model.Network, owner string, static []netip.Addr, cs *clusterStatic) ([]model.Address, error) {
	for _, ip := range static {
		if err := model.CheckStaticIP(nw, ip); err != nil {
			return nil, err
		}
	}
	out := make([]model.Address, 0, len(nw.Subnets))
	for _, s := range nw.Subnets {
		var ip netip.Addr
		for _, a := range static {
			if a.Is6() == s.Prefix.Addr().Is6() {
				ip = a
			}
		}
		if ip.IsValid() {
			rs := s
			if nw.Driver == model.DriverLink && ip == s.Gateway {
				rs.Gateway = netip.Addr{} // a member may be the link's gateway
			}
			if err := ipam.ReserveStatic(tx, nw, rs, ip, owner, e.ownerName(tx, nw.Name)); err != nil {
				return nil, err
			}
		} else {
			var err error
			if ip, err = cs.allocate(tx, nw, s, owner); err != nil {
				return nil, err
			}
		}
		gw := s.Gateway
		if ip == gw {
			// A direct link's member that is its gateway routes for the
			// other: it has no default route through itself.
			gw = netip.Addr{}
		}
		out = append(out, model.Address{Addr: netip.PrefixFrom(ip, s.Prefix.Bits()), Gateway: gw})
	}
	return out, nil
}

// checkHostPortsFree refuses mappings whose host ports an endpoint that
// is not being removed publishes already.
func checkHostPortsFree(tx store.Tx, ports []model.PortMapping) error {
	for _, m := range ports {
		o, om, err := portHolder(tx, m, func(o *model.Endpoint) bool { return o.State == model.StateRemoving })
		if err != nil {
			return err
		}
		if o != nil {
			return model.Conflictf("host port %s is already published by sandbox %s (%s): pick another host port", m, o.Sandbox, om)
		}
	}
	return nil
}

// portHolder returns an endpoint, other than those skip names, with a
// mapping that overlaps m, and that mapping; nil if none. It reads the
// store's host port index: its cost is that of m's ports and their
// holders, not of every endpoint on the host.
func portHolder(tx store.Tx, m model.PortMapping, skip func(*model.Endpoint) bool) (*model.Endpoint, model.PortMapping, error) {
	seen := map[string]bool{}
	for p := int(m.HostPort); p <= int(m.HostPortEnd); p++ {
		eps, err := tx.EndpointsOnHostPort(m.Proto, uint16(p))
		if err != nil {
			return nil, model.PortMapping{}, err
		}
		for _, o := range eps {
			if seen[o.ID] || skip(o) {
				continue
			}
			seen[o.ID] = true
			for _, om := range o.Ports {
				if om.Overlaps(m) {
					return o, om, nil
				}
			}
		}
	}
	return nil, model.PortMapping{}, nil
}

// releaseAddrs releases every address of ep, inside a store transaction.
func releaseAddrs(tx store.Tx, ep *model.Endpoint) error {
	if len(ep.IPs()) == 0 {
		return nil
	}
	nw, err := tx.Network(ep.Network)
	if errors.Is(err, model.ErrNotFound) {
		return nil // its reservations went with it
	}
	if err != nil {
		return err
	}
	for _, ip := range ep.IPs() {
		if err := tx.Release(nw.ID, ip); err != nil {
			return err
		}
	}
	return nil
}

// ownerName returns a func that names the holder of an address for error
// messages: the sandbox that owns the endpoint.
func (e *Engine) ownerName(tx store.Tx, network string) func(owner string) string {
	return func(owner string) string {
		eps, err := tx.EndpointsOnNetwork(network)
		if err == nil {
			for _, ep := range eps {
				if ep.ID == owner {
					return "sandbox " + ep.Sandbox
				}
			}
		}
		return "endpoint " + owner
	}
}

// nextSlot returns the lowest free ethN index of a sandbox, the lowest
// policy-routing table no endpoint of it uses, and whether the new endpoint
// is its primary one (no other endpoint carries the default route).
func nextSlot(eps []*model.Endpoint) (slot, table int, primary bool) {
	used := map[int]bool{}
	tables := map[int]bool{}
	primary = true
	for _, ep := range eps {
		if n, err := strconv.Atoi(strings.TrimPrefix(ep.IfName, "eth")); err == nil && strings.HasPrefix(ep.IfName, "eth") {
			used[n] = true
		}
		tables[ep.Table] = true
		if ep.Primary {
			primary = false
		}
	}
	for used[slot] {
		slot++
	}
	table = model.RouteTableFor(1)
	for tables[table] {
		table++
	}
	return slot, table, primary
}

func vethOf(nw *model.Network, sb *model.Sandbox, ep *model.Endpoint) link.Veth {
	return link.Veth{
		HostName: ep.HostIf, Bridge: nw.Bridge, Isolated: !nw.ICC,
		NoHairpin: !nw.BridgeOptions.HairpinOn(), VLAN: ep.VLAN,
		Iface: ifaceOf(nw, sb, ep),
	}
}

// ifaceOf is how an endpoint's interface is configured in its sandbox,
// whatever driver plumbed it.
func ifaceOf(nw *model.Network, sb *model.Sandbox, ep *model.Endpoint) link.Iface {
	if sb.Kind == model.KindDocker {
		// Made on the host for dockerd to move into the container and
		// configure (addresses, routes) from what the driver told it.
		return link.Iface{IfName: model.PeerVethName(ep.ID), MAC: mustMAC(ep.MAC), MTU: ep.MTU}
	}
	return link.Iface{
		Netns: sb.Netns, NetnsIno: sb.NetnsIno, IfName: ep.IfName,
		MAC: mustMAC(ep.MAC), MTU: ep.MTU, Addrs: linkAddrs(ep.Addresses),
		DefaultRoute: ep.Primary && !nw.Internal, Table: ep.Table, Routes: overlayRoutes(nw, ep),
	}
}

// overlayRoutes: on an overlay network, each of its whole subnets
// through the gateway of this host's slice of that family (the other
// hosts' slices are not on-link; an internal network has no default route
// to reach them by).
func overlayRoutes(nw *model.Network, ep *model.Endpoint) []link.Route {
	if nw.Overlay == nil {
		return nil
	}
	var out []link.Route
	for _, a := range ep.Addresses {
		if r, ok := nw.Overlay.Range(a.Addr.Addr()); ok && a.Gateway.IsValid() {
			out = append(out, link.Route{Dst: r, Via: a.Gateway})
		}
	}
	return out
}

// linkAddrs is an endpoint's addresses as link wants them (the same
// shape).
func linkAddrs(as []model.Address) []link.Address {
	out := make([]link.Address, len(as))
	for i, a := range as {
		out[i] = link.Address(a)
	}
	return out
}

func mustMAC(s string) net.HardwareAddr {
	hw, _ := net.ParseMAC(s) // validated before it was stored
	return hw
}

func (e *Engine) hasRemoving(sandbox string) bool {
	found := false
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		eps, err := tx.EndpointsOfSandbox(sandbox)
		for _, ep := range eps {
			if ep.State == model.StateRemoving {
				found = true
			}
		}
		return err
	})
	return found
}

// Disconnect detaches a sandbox from a network. It returns once the
// endpoint carries no more traffic; the veth is deleted in the background.
func (e *Engine) Disconnect(ctx context.Context, network, sandbox string) (err error) {
	defer e.request()()
	defer e.emitFailed("detach", network, sandbox, &err)
	if err := model.ValidateName("sandbox", sandbox); err != nil {
		return err
	}
	if err := model.ValidateName("network", network); err != nil {
		return err
	}
	unlock := e.lockSandbox(sandbox)
	defer unlock()
	return e.disconnectLocked(network, sandbox)
}

func (e *Engine) disconnectLocked(network, sandbox string) error {
	start := time.Now()
	var ep *model.Endpoint
	var nw *model.Network
	err := e.st.Update(context.Background(), func(tx store.Tx) error {
		if _, err := tx.Sandbox(sandbox); err != nil {
			return err
		}
		var err error
		if nw, err = tx.Network(network); err != nil {
			return err
		}
		ep, err = tx.Endpoint(sandbox, network)
		if errors.Is(err, model.ErrNotFound) {
			return model.NotFoundf("sandbox %s is not connected to network %s: see `pontoon sandbox inspect %s`", sandbox, network, sandbox)
		}
		if err != nil {
			return err
		}
		if ep.State == model.StateRemoving {
			return nil
		}
		ep.State = model.StateRemoving
		return tx.PutEndpoint(ep)
	})
	if err != nil {
		return fmt.Errorf("disconnect %s from %s: %w", sandbox, network, err)
	}
	// Names and published ports go first: a query after this returns
	// NXDOMAIN and a connection to the port finds nothing, at once.
	e.resolverRemove(ep)
	e.maybeSyncSandboxResolver(sandbox, nw)
	if len(ep.Ports) > 0 {
		if err := e.fw.Unpublish(context.Background(), published(ep)); err != nil {
			e.log.Warn("unpublish ports; the next firewall sync drops them", "sandbox", sandbox, "err", err)
		}
		e.relayUnpublish(ep)
	}
	e.resolv.sync(sandbox)
	e.heal.expectGone(ep.HostIf)
	if err := e.drv(nw).Disable(ep); err != nil {
		// The reaper deletes the link anyway; say so and go on.
		e.log.Warn("take endpoint down", "link", ep.HostIf, "err", err)
	}
	e.reaper.add(ep)
	e.emitTimed(Event{Kind: model.EventDetached, Network: network, Sandbox: sandbox, Detail: ep.IfName + " " + ep.IPString()}, start)
	if len(ep.Ports) > 0 {
		e.emit(Event{Kind: model.EventUnpublished, Network: network, Sandbox: sandbox, Detail: portList(ep.Ports)})
	}
	e.log.Debug("endpoint detached", "sandbox", sandbox, "network", network, "ip", ep.IPString())
	return nil
}
