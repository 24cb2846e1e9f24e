package engine

import (
	"errors"
	"fmt"
	"net/netip"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// macvlanDriver gives each member a macvlan of the network's parent link
// (or of its 802.1Q sub-interface), made directly in the sandbox: members
// sit on the parent's own segment with addresses of the LAN, reach the
// LAN's hosts and router directly, and never pass the host's bridge or
// forward hooks. So the host's firewall enforces nothing for them: no
// isolation, --internal, anti-spoofing or published ports (Caps). What
// keeps members apart is the mode: private stops frames between them
// inside the parent; vepa sends them to the external switch. The host
// itself cannot reach its own macvlans through the parent (the kernel
// delivers frames between a macvlan and its parent's host only for
// broadcasts); --shim gives the host a macvlan of its own with an address
// of the network and a route to the members' range through it.
type macvlanDriver struct {
	link link.Interface
	st   store.Store
}

func (*macvlanDriver) Name() string { return model.DriverMacvlan }

func (*macvlanDriver) Caps() model.DriverCaps { return model.DriverCaps{DNS: true} }

func (*macvlanDriver) Prefixes() []string { return []string{model.ShimPrefix} }

// Validate checks the parent before the network is recorded and decides
// whether pontoon makes the VLAN sub-interface (and so removes it).
func (d *macvlanDriver) Validate(n *model.Network) error {
	o := n.Macvlan
	idx, err := d.link.LinkIndex(o.Parent)
	if err != nil {
		return err
	}
	if idx == 0 {
		return model.Invalidf("parent %s of macvlan network %s does not exist on the host: give an existing link (see `ip link`)", o.Parent, n.Name)
	}
	if o.VLAN != 0 {
		vidx, err := d.link.LinkIndex(o.Link)
		if err != nil {
			return err
		}
		o.LinkCreated = vidx == 0
	}
	if o.Shim {
		o.ShimAddrs = nil
		for _, s := range n.Subnets {
			// The last address pontoon may hand out is the host's (not
			// the subnet's IPv4 broadcast address).
			last := model.Broadcast(s.AllocRange())
			if last.Is4() && last == model.Broadcast(s.Prefix) {
				last = last.Prev()
			}
			o.ShimAddrs = append(o.ShimAddrs, last)
		}
	}
	return nil
}

func (d *macvlanDriver) shim(n *model.Network) link.Shim {
	s := link.Shim{Name: model.ShimName(n.ID), Parent: n.Macvlan.Link}
	for _, a := range n.Macvlan.ShimAddrs {
		s.Addrs = append(s.Addrs, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, sub := range n.Subnets {
		s.Routes = append(s.Routes, sub.AllocRange())
	}
	return s
}

func (d *macvlanDriver) EnsureNetwork(n *model.Network) error {
	o := n.Macvlan
	if o.VLAN != 0 {
		if _, _, err := d.link.EnsureVLAN(o.Parent, o.VLAN); err != nil {
			return err
		}
	}
	if o.Shim {
		return d.link.EnsureShim(d.shim(n))
	}
	return nil
}

func (d *macvlanDriver) RemoveNetwork(n *model.Network) error {
	o := n.Macvlan
	var errs []error
	if o.Shim {
		errs = append(errs, d.link.DeleteShim(model.ShimName(n.ID)))
	}
	if o.LinkCreated {
		errs = append(errs, d.link.DeleteVLAN(o.Link))
	}
	return errors.Join(errs...)
}

func (d *macvlanDriver) CheckNetwork(n *model.Network) []string {
	o := n.Macvlan
	var out []string
	l, ok, err := d.link.Link(o.Link)
	switch {
	case err != nil:
		out = append(out, fmt.Sprintf("look up %s: %v", o.Link, err))
	case !ok:
		out = append(out, fmt.Sprintf("parent %s is missing", o.Link))
	case !l.Up:
		out = append(out, fmt.Sprintf("parent %s is down", o.Link))
	}
	if o.Shim {
		out = append(out, d.link.CheckShim(d.shim(n))...)
	}
	return out
}

// Prepare: a passthru macvlan takes the parent over: one member.
func (*macvlanDriver) Prepare(tx store.Tx, n *model.Network, ep *model.Endpoint) error {
	ep.HostIf = ""
	if n.Macvlan.Mode != "passthru" {
		return nil
	}
	eps, err := tx.EndpointsOnNetwork(n.Name)
	if err != nil {
		return err
	}
	for _, o := range eps {
		if o.ID != ep.ID && o.State != model.StateRemoving {
			return model.Conflictf("network %s is a passthru macvlan of %s and has its one member, %s: passthru gives the parent to one sandbox; use mode bridge for more", n.Name, n.Macvlan.Link, o.Sandbox)
		}
	}
	return nil
}

func (d *macvlanDriver) macvlan(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) link.Macvlan {
	return link.Macvlan{Parent: n.Macvlan.Link, Mode: n.Macvlan.Mode, Iface: ifaceOf(n, sb, ep)}
}

func (d *macvlanDriver) Plumb(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, error) {
	return 0, d.link.AddMacvlan(d.macvlan(n, sb, ep))
}

// Disable deletes the macvlan at once: it has no host end to take down.
func (d *macvlanDriver) Disable(ep *model.Endpoint) error {
	return d.Delete([]*model.Endpoint{ep})
}

func (d *macvlanDriver) Delete(eps []*model.Endpoint) error {
	var errs []error
	for _, ep := range eps {
		sb := sandboxOf(d.st, ep.Sandbox)
		if sb == nil || sb.Kind == model.KindHost {
			continue
		}
		if err := d.link.DeleteIface(sb.Netns, sb.NetnsIno, ep.IfName); err != nil && !errors.Is(err, link.ErrNetnsGone) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *macvlanDriver) CheckEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) []string {
	return d.link.CheckMacvlan(d.macvlan(n, sb, ep))
}

func (d *macvlanDriver) RepairEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, []link.Fix, error) {
	fixed, err := d.link.RepairMacvlan(d.macvlan(n, sb, ep))
	return 0, fixed, err
}
