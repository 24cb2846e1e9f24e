package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/ovs"
	"pontoon/internal/store"
)

// ovsDriver is an Open vSwitch bridge per network (the userspace datapath:
// this kernel family has no openvswitch module), a veth pair per endpoint
// whose host end is an OVS port (an access port with the endpoint's VLAN),
// and the bridge's internal port as the network's gateway. The daemon
// talks to OVSDB through its Go client (internal/ovs), never an ovs-vsctl
// process.
//
// What passes the host's IP stack works as on a Linux bridge: traffic in
// and out of the network goes through the internal port, so isolation
// between networks, --internal, NAT, published ports and names on the
// gateway are the firewall's and the resolver's as for the bridge driver.
// Frames between members are switched inside ovs-vswitchd and never pass
// the host's bridge hooks: no anti-spoofing and no --icc=false (Caps).
type ovsDriver struct {
	link     link.Interface
	endpoint string // OVSDB, e.g. unix:/run/openvswitch/db.sock; "": not configured

	mu     sync.Mutex
	client *ovs.Client
}

// ovsTimeout bounds one OVSDB operation, the wait for vswitchd included.
const ovsTimeout = 15 * time.Second

func (*ovsDriver) Name() string { return model.DriverOVS }

func (*ovsDriver) Caps() model.DriverCaps {
	return model.DriverCaps{Isolation: true, Ports: true, DNS: true, Hairpin: true, Taps: true}
}

func (*ovsDriver) Prefixes() []string { return nil }

// ovs returns the OVSDB client, connecting on first use (and again after a
// failure): a daemon may start before Open vSwitch does.
func (d *ovsDriver) ovs(ctx context.Context) (*ovs.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil && d.client.Connected() {
		return d.client, nil
	}
	if d.client != nil {
		// ovsdb-server went away (restarted, say): connect again.
		d.client.Close()
		d.client = nil
	}
	if d.endpoint == "" {
		return nil, model.Invalidf("the ovs driver needs Open vSwitch: start ovsdb-server and ovs-vswitchd (Debian: openvswitch-switch), and the daemon with --ovsdb unix:/run/openvswitch/db.sock")
	}
	c, err := ovs.Dial(ctx, d.endpoint)
	if err != nil {
		return nil, err
	}
	d.client = c
	return c, nil
}

func (d *ovsDriver) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil {
		d.client.Close()
		d.client = nil
	}
}

func (d *ovsDriver) Validate(n *model.Network) error {
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	_, err := d.ovs(ctx)
	return err
}

func (d *ovsDriver) gateway(n *model.Network) link.Bridge {
	b := bridgeOf(n)
	b.Options, b.External = nil, true
	return b
}

func (d *ovsDriver) EnsureNetwork(n *model.Network) error {
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	c, err := d.ovs(ctx)
	if err != nil {
		return err
	}
	// The gateway's MAC pinned as a Linux bridge's is: vswitchd would
	// otherwise take the lowest of its ports' MACs as they come and go.
	if _, err := c.EnsureBridge(ctx, ovs.Bridge{Name: n.Bridge, MTU: n.MTU, MAC: link.BridgeMAC(d.gateway(n))}); err != nil {
		return err
	}
	_, err = d.link.EnsureBridge(d.gateway(n))
	return err
}

func (d *ovsDriver) RemoveNetwork(n *model.Network) error {
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	c, err := d.ovs(ctx)
	if err != nil {
		return err
	}
	return c.DeleteBridge(ctx, n.Bridge)
}

func (d *ovsDriver) CheckNetwork(n *model.Network) []string {
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	c, err := d.ovs(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	out, err := c.CheckBridge(ctx, ovs.Bridge{Name: n.Bridge, MTU: n.MTU})
	if err != nil {
		return []string{fmt.Sprintf("OVS bridge %s: %v", n.Bridge, err)}
	}
	if len(out) > 0 {
		return out // the internal port's check would only echo it
	}
	return d.link.CheckBridge(d.gateway(n))
}

// Prepare names the host end: a veth's, or a VM's tap (as the bridge
// driver names it).
func (*ovsDriver) Prepare(tx store.Tx, n *model.Network, ep *model.Endpoint) error {
	return bridgeDriver{}.Prepare(tx, n, ep)
}

// tap is a VM endpoint's tap, an OVS port like a veth's host end.
func (d *ovsDriver) tap(n *model.Network, ep *model.Endpoint) link.Tap {
	t := tapOf(n, ep)
	t.Bridge, t.Isolated, t.NoHairpin = "", false, false
	return t
}

func (d *ovsDriver) veth(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) link.Veth {
	return link.Veth{HostName: ep.HostIf, Iface: ifaceOf(n, sb, ep)}
}

func (d *ovsDriver) port(n *model.Network, ep *model.Endpoint) ovs.Port {
	return ovs.Port{Name: ep.HostIf, Bridge: n.Bridge, VLAN: ep.VLAN,
		ExternalIDs: map[string]string{"pontoon-endpoint": ep.ID, "pontoon-sandbox": ep.Sandbox}}
}

func (d *ovsDriver) Plumb(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	c, err := d.ovs(ctx)
	if err != nil {
		return 0, err
	}
	var idx int
	if ep.Tap != nil {
		idx, err = d.link.AddTap(d.tap(n, ep))
	} else {
		idx, err = d.link.AddVeth(d.veth(n, sb, ep))
	}
	if err != nil {
		return 0, err
	}
	if _, err := c.AddPort(ctx, d.port(n, ep)); err != nil {
		if derr := d.link.DeleteVeths([]string{ep.HostIf}); derr != nil {
			err = errors.Join(err, derr)
		}
		return 0, err
	}
	return idx, nil
}

// Disable takes the host end down: vswitchd then forwards nothing to or
// from it. The port goes with Delete.
func (d *ovsDriver) Disable(ep *model.Endpoint) error { return d.link.DisableVeth(ep.HostIf) }

func (d *ovsDriver) Delete(eps []*model.Endpoint) error {
	names := make([]string, 0, len(eps))
	for _, ep := range eps {
		names = append(names, ep.HostIf)
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	if c, err := d.ovs(ctx); err != nil {
		errs = append(errs, err)
	} else if err := c.DeletePorts(ctx, names...); err != nil {
		errs = append(errs, err)
	}
	// The veths go even when OVSDB could not be told: a port whose
	// device is gone carries nothing, and the next start collects it.
	errs = append(errs, d.link.DeleteVeths(names))
	return errors.Join(errs...)
}

func (d *ovsDriver) CheckEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) []string {
	var out []string
	if ep.Tap != nil {
		out = d.link.CheckTap(d.tap(n, ep))
	} else {
		out = d.link.CheckVeth(d.veth(n, sb, ep))
	}
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	c, err := d.ovs(ctx)
	if err != nil {
		return append(out, err.Error())
	}
	po, err := c.CheckPort(ctx, d.port(n, ep))
	if err != nil {
		return append(out, fmt.Sprintf("OVS port %s: %v", ep.HostIf, err))
	}
	return append(out, po...)
}

func (d *ovsDriver) RepairEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, []link.Fix, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	c, err := d.ovs(ctx)
	if err != nil {
		return 0, nil, err
	}
	var idx int
	var fixed []link.Fix
	if ep.Tap != nil {
		idx, fixed, err = d.link.RepairTap(d.tap(n, ep))
	} else {
		idx, fixed, err = d.link.RepairVeth(d.veth(n, sb, ep))
	}
	if err != nil {
		return idx, fixed, err
	}
	// A veth made again is a new device: vswitchd holds the old one's
	// port. Put the port back as it should be.
	if po, err := c.CheckPort(ctx, d.port(n, ep)); err != nil || len(po) > 0 || len(fixed) > 0 {
		_ = c.DeletePorts(ctx, ep.HostIf)
		if _, err := c.AddPort(ctx, d.port(n, ep)); err != nil {
			return idx, fixed, err
		}
		fixed = append(fixed, link.Fix{Kind: "port", What: "added " + ep.HostIf + " to OVS bridge " + n.Bridge + " again"})
	}
	return idx, fixed, nil
}

// collectGarbage deletes what pontoon made in OVS and no record explains:
// bridges named like pontoon's (ptbr-…) of networks that are gone, and
// ports of pontoon's endpoints (external_ids pontoon-endpoint) that are
// gone. Without OVS reachable there is nothing to collect now.
func (d *ovsDriver) collectGarbage(known map[string]bool, log interface {
	Info(msg string, args ...any)
}) error {
	if d.endpoint == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), ovsTimeout)
	defer cancel()
	c, err := d.ovs(ctx)
	if err != nil {
		return nil // OVS not running: nothing of it to collect
	}
	brs, err := c.Bridges(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, br := range brs {
		if !strings.HasPrefix(br, model.BridgePrefix) {
			continue // not pontoon's
		}
		if !known[br] {
			log.Info("garbage: deleting OVS bridge unknown to the store", "bridge", br)
			errs = append(errs, c.DeleteBridge(ctx, br))
			continue
		}
		ports, err := c.Ports(ctx, br)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var gone []string
		for _, p := range ports {
			if p.ExternalIDs["pontoon-endpoint"] != "" && !known[p.Name] {
				gone = append(gone, p.Name)
			}
		}
		if len(gone) > 0 {
			log.Info("garbage: deleting OVS ports unknown to the store", "bridge", br, "count", len(gone))
			errs = append(errs, c.DeletePorts(ctx, gone...))
		}
	}
	return errors.Join(errs...)
}
