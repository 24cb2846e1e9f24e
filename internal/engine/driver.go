package engine

import (
	"context"
	"errors"
	"slices"
	"strings"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// Driver is what differs between network drivers (../shared/DESIGN.md,
// "Seams for what comes next"): the engine calls its network's driver to
// make and remove the network's kernel objects and an endpoint's, to check
// and repair them, and to know which host links are its own. Everything
// else — the store, IPAM, names, ports, the firewall's sets, events — is
// the engine's, the same for every driver.
//
// Drivers: bridge (here), link (driver_link.go), macvlan
// (driver_macvlan.go). Each declares what it honours in Caps; the engine
// leaves out what a driver does not (anti-spoofing elements for an
// endpoint without a host end, the firewall's sets for a network without
// a bridge).
type Driver interface {
	// Name is the driver's name, as in Network.Driver.
	Name() string
	// Caps says what a network of this driver honours; the engine refuses
	// a network option a driver cannot honour, before anything is made.
	Caps() model.DriverCaps

	// Validate checks the host for what a new network needs (a macvlan's
	// parent) and fills in what the driver decides at creation (whether it
	// makes a VLAN sub-interface), before the network is recorded. It
	// changes nothing in the kernel.
	Validate(n *model.Network) error

	// EnsureNetwork makes the network's kernel objects exist and match n
	// (idempotent: also the repair). RemoveNetwork removes them (never a
	// device pontoon did not create); missing is success.
	EnsureNetwork(n *model.Network) error
	RemoveNetwork(n *model.Network) error
	// CheckNetwork describes each way the kernel differs from n; nil when
	// it matches. It changes nothing.
	CheckNetwork(n *model.Network) []string

	// Prepare fills an endpoint's driver-specific parts (the name of its
	// host end, when it has one) and refuses an endpoint the network
	// cannot take, inside the attach's store transaction: it has no side
	// effects and is safe to retry.
	Prepare(tx store.Tx, n *model.Network, ep *model.Endpoint) error

	// Plumb makes an endpoint's link in its sandbox and configures it
	// (addresses, routes, rules, MAC, MTU), returning the host end's
	// ifindex (0 when it has none). On error it leaves nothing.
	Plumb(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, error)
	// Disable takes an endpoint out of service at once (fast, no RCU
	// wait); Delete removes endpoints' links in one batch. Missing is
	// success for both.
	Disable(ep *model.Endpoint) error
	Delete(eps []*model.Endpoint) error
	// CheckEndpoint describes how the kernel differs from ep; nil when it
	// matches. RepairEndpoint puts it back, returning the host end's
	// ifindex and what it fixed.
	CheckEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) []string
	RepairEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, []link.Fix, error)

	// Prefixes are the name prefixes of the host links the driver
	// creates: a link with one of them that no record explains is
	// garbage (collected at start-up).
	Prefixes() []string
}

// drivers are the network drivers by name.
func (e *Engine) driverFor(n *model.Network) (Driver, error) {
	d, ok := e.drivers[n.Driver]
	if !ok {
		names := make([]string, 0, len(e.drivers))
		for name := range e.drivers {
			names = append(names, name)
		}
		slices.Sort(names)
		return nil, model.Invalidf("driver %q is not supported: use one of %s", n.Driver, strings.Join(names, ", "))
	}
	return d, nil
}

// drv is driverFor for networks already in the store, whose driver was
// checked when they were created.
func (e *Engine) drv(n *model.Network) Driver {
	if d, err := e.driverFor(n); err == nil {
		return d
	}
	return e.drivers[model.DriverBridge]
}

// checkCaps refuses a network whose options its driver cannot honour.
func checkCaps(d Driver, n *model.Network) error {
	c := d.Caps()
	switch {
	case !n.ICC && !c.ICC:
		return model.Invalidf("driver %s cannot keep sandboxes of a network from each other (--icc=false): use the bridge driver", d.Name())
	case n.Internal && !c.Isolation:
		return model.Invalidf("driver %s cannot make a network --internal: its frames never pass the host's firewall", d.Name())
	}
	return nil
}

// checkEndpointCaps refuses an endpoint option its network's driver
// cannot honour.
func checkEndpointCaps(d Driver, n *model.Network, a model.AttachSpec) error {
	if len(a.Ports) > 0 && !d.Caps().Ports {
		return model.Invalidf("network %s (driver %s) cannot publish ports: its traffic never passes the host's NAT; publish from a bridge network", n.Name, d.Name())
	}
	if a.Tap != nil && !d.Caps().Taps {
		return model.Invalidf("network %s (driver %s) cannot take a VM's tap device: a tap is a port of a bridge; use a bridge or ovs network", n.Name, d.Name())
	}
	return nil
}

// bridgeDriver is a Linux bridge per network, a veth pair per endpoint.
type bridgeDriver struct{ link link.Interface }

func (bridgeDriver) Name() string { return model.DriverBridge }

func (bridgeDriver) Caps() model.DriverCaps {
	return model.DriverCaps{Isolation: true, ICC: true, AntiSpoofing: true, Ports: true, DNS: true, Hairpin: true, Taps: true}
}

func (bridgeDriver) Validate(*model.Network) error { return nil }

func (d bridgeDriver) EnsureNetwork(n *model.Network) error {
	_, err := d.link.EnsureBridge(bridgeOf(n))
	return err
}

func (d bridgeDriver) RemoveNetwork(n *model.Network) error {
	if n.BridgeAdopted {
		return nil
	}
	return d.link.DeleteBridge(n.Bridge)
}

func (d bridgeDriver) CheckNetwork(n *model.Network) []string { return d.link.CheckBridge(bridgeOf(n)) }

// Prepare names the host end: a veth's, or a VM's tap (the name asked
// for, else ptt- and a hash).
func (bridgeDriver) Prepare(_ store.Tx, _ *model.Network, ep *model.Endpoint) error {
	if ep.Tap != nil {
		if ep.HostIf == "" {
			ep.HostIf = model.TapName(ep.ID)
		}
		return nil
	}
	ep.HostIf = model.HostVethName(ep.ID)
	return nil
}

func (d bridgeDriver) Plumb(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, error) {
	if ep.Tap != nil {
		return d.link.AddTap(tapOf(n, ep))
	}
	return d.link.AddVeth(vethOf(n, sb, ep))
}

// tapOf is a VM endpoint's tap as link makes it: a port of the bridge like
// a veth's host end.
func tapOf(n *model.Network, ep *model.Endpoint) link.Tap {
	return link.Tap{
		Name: ep.HostIf, Bridge: n.Bridge, MTU: ep.MTU, MAC: mustMAC(ep.MAC),
		Owner: ep.Tap.Owner, Group: ep.Tap.Group, MultiQueue: ep.Tap.MultiQueue,
		Isolated: !n.ICC, NoHairpin: !n.BridgeOptions.HairpinOn(), VLAN: ep.VLAN,
	}
}

func (d bridgeDriver) Disable(ep *model.Endpoint) error { return d.link.DisableVeth(ep.HostIf) }

func (d bridgeDriver) Delete(eps []*model.Endpoint) error {
	names := make([]string, 0, len(eps))
	for _, ep := range eps {
		names = append(names, ep.HostIf)
	}
	return d.link.DeleteVeths(names)
}

func (d bridgeDriver) CheckEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) []string {
	if ep.Tap != nil {
		return d.link.CheckTap(tapOf(n, ep))
	}
	return d.link.CheckVeth(vethOf(n, sb, ep))
}

func (d bridgeDriver) RepairEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, []link.Fix, error) {
	if ep.Tap != nil {
		return d.link.RepairTap(tapOf(n, ep))
	}
	return d.link.RepairVeth(vethOf(n, sb, ep))
}

func (bridgeDriver) Prefixes() []string {
	return []string{model.HostVethPrefix, model.BridgePrefix, model.TapPrefix}
}

// portMaster is the kernel master of an endpoint's host end on network n:
// its Linux bridge, or none when another switch (Open vSwitch, in user
// space) owns the port.
func portMaster(n *model.Network) string {
	if n.Driver == model.DriverOVS {
		return ""
	}
	return n.Bridge
}

// sandboxOf reads a sandbox record; nil when there is none.
func sandboxOf(st store.Store, name string) *model.Sandbox {
	var sb *model.Sandbox
	_ = st.View(context.Background(), func(tx store.Tx) (err error) {
		sb, err = tx.Sandbox(name)
		return err
	})
	return sb
}

// byDriver groups endpoints by the driver of their network (one store
// read for all of them). An endpoint whose network is gone goes to the
// bridge driver, which owns every endpoint made before drivers existed.
func (e *Engine) byDriver(eps []*model.Endpoint) map[Driver][]*model.Endpoint {
	out := map[Driver][]*model.Endpoint{}
	nets := map[string]*model.Network{}
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		for _, ep := range eps {
			if _, ok := nets[ep.Network]; !ok {
				n, _ := tx.Network(ep.Network)
				nets[ep.Network] = n
			}
		}
		return nil
	})
	for _, ep := range eps {
		d := e.drivers[model.DriverBridge]
		if n := nets[ep.Network]; n != nil {
			d = e.drv(n)
		}
		out[d] = append(out[d], ep)
	}
	return out
}

// disableEndpoints takes endpoints out of service at once (detach, sandbox
// removal); the reaper deletes their links later.
func (e *Engine) disableEndpoints(eps []*model.Endpoint) {
	for d, group := range e.byDriver(eps) {
		for _, ep := range group {
			e.heal.expectGone(ep.HostIf)
			if err := d.Disable(ep); err != nil {
				// The reaper deletes the link anyway; say so and go on.
				e.log.Warn("take endpoint down", "sandbox", ep.Sandbox, "link", ep.HostIf, "err", err)
			}
		}
	}
}

// deleteEndpoints removes endpoints' links, a batch per driver.
func (e *Engine) deleteEndpoints(eps []*model.Endpoint) error {
	var errs []error
	for d, group := range e.byDriver(eps) {
		if err := d.Delete(group); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
