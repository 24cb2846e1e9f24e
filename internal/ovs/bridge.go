package ovs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Bridge is an OVS bridge on the userspace datapath. Its internal
// interface, also called Name, is a tap device in ovs-vswitchd's network
// namespace.
type Bridge struct {
	Name string
	// MTU, when not 0, is requested for the internal interface
	// (mtu_request). Otherwise vswitchd gives it the smallest MTU of the
	// bridge's other ports, 1500 while it has none.
	MTU int
	// MAC, when set, is the bridge's (its internal interface's) MAC
	// (other_config:hwaddr). Otherwise vswitchd picks the lowest of its
	// ports' MACs, which changes as ports come and go — and with it the
	// gateway's MAC in every sandbox's neighbour cache.
	MAC net.HardwareAddr
}

// validName checks an interface name as the kernel does (IFNAMSIZ).
func validName(what, name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("ovs: %s name %q: want 1 to 15 characters without '/', ':' or spaces (a kernel interface name)", what, name)
	}
	return nil
}

func (b Bridge) validate() error {
	if err := validName("bridge", b.Name); err != nil {
		return err
	}
	if b.MTU < 0 || b.MTU > 65535 {
		return fmt.Errorf("ovs: bridge %s: MTU %d out of range 68..65535 (0 leaves it to OVS)", b.Name, b.MTU)
	}
	if b.MTU != 0 && b.MTU < 68 {
		return fmt.Errorf("ovs: bridge %s: MTU %d below IPv4's minimum 68", b.Name, b.MTU)
	}
	return nil
}

// EnsureBridge makes bridge b (datapath netdev) unless it exists, corrects
// its datapath type and MTU request if they differ, and waits (bounded)
// until ovs-vswitchd has made the internal interface (with the MTU, if
// one is requested). It returns that interface's ifindex in vswitchd's
// network namespace.
func (c *Client) EnsureBridge(ctx context.Context, b Bridge) (int, error) {
	if err := b.validate(); err != nil {
		return 0, err
	}
	var mtu *int
	if b.MTU != 0 {
		mtu = &b.MTU
	}
	var ops []ovsdb.Operation
	br, err := c.bridge(b.Name)
	switch {
	case errors.Is(err, client.ErrNotFound):
		ops, err = c.createBridgeOps(b.Name, mtu)
	case err == nil:
		ops, err = c.fixBridgeOps(br, mtu)
	}
	if err != nil {
		return 0, fmt.Errorf("ovs: ensure bridge %s: %w", b.Name, err)
	}
	if b.MAC != nil {
		hw, err := c.hwaddrOps(b.Name, b.MAC.String(), ops)
		if err != nil {
			return 0, fmt.Errorf("ovs: ensure bridge %s: %w", b.Name, err)
		}
		ops = hw
	}
	if len(ops) > 0 {
		if _, err := c.transact(ctx, "ensure bridge "+b.Name, ops); err != nil {
			return 0, err
		}
	}
	var ifindex int
	err = c.await(ctx, "bridge "+b.Name+": wait for its internal interface", func() (bool, error) {
		it := &interfaceRow{Name: b.Name}
		if err := c.db.Get(ctx, it); err != nil {
			return false, nil // our own insert not in the cache yet
		}
		if it.Error != nil && *it.Error != "" {
			return false, fmt.Errorf("ovs: bridge %s: ovs-vswitchd: %s", b.Name, *it.Error)
		}
		if b.MTU != 0 && (it.MTU == nil || *it.MTU != b.MTU) {
			return false, nil
		}
		if it.Ifindex != nil && *it.Ifindex > 0 {
			ifindex = *it.Ifindex
			return true, nil
		}
		return false, nil
	})
	return ifindex, err
}

func (c *Client) bridge(name string) (*bridgeRow, error) {
	br := &bridgeRow{Name: name}
	if err := c.db.Get(context.Background(), br); err != nil {
		return nil, err
	}
	return br, nil
}

// createBridgeOps inserts the internal Interface, its Port, the Bridge and
// the root row's reference to it.
func (c *Client) createBridgeOps(name string, mtu *int) ([]ovsdb.Operation, error) {
	o, err := c.root()
	if err != nil {
		return nil, err
	}
	it := &interfaceRow{UUID: "iface", Name: name, Type: "internal", MTURequest: mtu}
	p := &portRow{UUID: "port", Name: name, Interfaces: []string{it.UUID}}
	br := &bridgeRow{UUID: "bridge", Name: name, Ports: []string{p.UUID}, DatapathType: DatapathType}
	ops, err := c.create(it, p, br)
	if err != nil {
		return nil, err
	}
	mut, err := c.db.Where(o).Mutate(o, model.Mutation{Field: &o.Bridges, Mutator: ovsdb.MutateOperationInsert, Value: []string{br.UUID}})
	if err != nil {
		return nil, err
	}
	return append(ops, mut...), nil
}

// fixBridgeOps updates what differs from the wanted state of an existing
// bridge.
func (c *Client) fixBridgeOps(br *bridgeRow, mtu *int) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	if br.DatapathType != DatapathType {
		br.DatapathType = DatapathType
		u, err := c.db.Where(br).Update(br, &br.DatapathType)
		if err != nil {
			return nil, err
		}
		ops = append(ops, u...)
	}
	it := &interfaceRow{Name: br.Name}
	if err := c.db.Get(context.Background(), it); err != nil {
		return nil, fmt.Errorf("its internal interface: %w", err)
	}
	if !equalPtr(it.MTURequest, mtu) {
		it.MTURequest = mtu
		u, err := c.db.Where(it).Update(it, &it.MTURequest)
		if err != nil {
			return nil, err
		}
		ops = append(ops, u...)
	}
	return ops, nil
}

// hwaddrOps adds to ops setting other_config:hwaddr on bridge name to
// mac, when it differs. A bridge created by ops is updated by name in the
// same transaction.
func (c *Client) hwaddrOps(name, mac string, ops []ovsdb.Operation) ([]ovsdb.Operation, error) {
	br, err := c.bridge(name)
	if err != nil && !errors.Is(err, client.ErrNotFound) {
		return nil, err
	}
	if br != nil && br.OtherConfig["hwaddr"] == mac {
		return ops, nil
	}
	cfg := map[string]string{}
	if br != nil {
		for k, v := range br.OtherConfig {
			cfg[k] = v
		}
	} else {
		br = &bridgeRow{Name: name}
	}
	cfg["hwaddr"] = mac
	br.OtherConfig = cfg
	u, err := c.db.Where(br).Update(br, &br.OtherConfig)
	if err != nil {
		return nil, err
	}
	return append(ops, u...), nil
}

func equalPtr(a, b *int) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// DeleteBridge deletes bridge name with all its ports and waits (bounded)
// until ovs-vswitchd has removed them. A missing bridge is no error.
func (c *Client) DeleteBridge(ctx context.Context, name string) error {
	if err := validName("bridge", name); err != nil {
		return err
	}
	br, err := c.bridge(name)
	if errors.Is(err, client.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ovs: delete bridge %s: %w", name, err)
	}
	o, err := c.root()
	if err != nil {
		return fmt.Errorf("ovs: delete bridge %s: %w", name, err)
	}
	ops, err := c.db.Where(o).Mutate(o, model.Mutation{Field: &o.Bridges, Mutator: ovsdb.MutateOperationDelete, Value: []string{br.UUID}})
	if err != nil {
		return fmt.Errorf("ovs: delete bridge %s: %w", name, err)
	}
	bump, err := c.bumpCfg()
	if err != nil {
		return fmt.Errorf("ovs: delete bridge %s: %w", name, err)
	}
	ops = append(ops, bump...)
	res, err := c.transact(ctx, "delete bridge "+name, ops)
	if err != nil {
		return err
	}
	cfg, err := cfgOf(res, len(ops)-1)
	if err != nil {
		return err
	}
	return c.awaitCfg(ctx, "delete bridge "+name, cfg)
}
