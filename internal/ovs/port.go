package ovs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// ErrExists is returned by AddPort for a port name already in the database.
var ErrExists = errors.New("already exists")

// Port is an existing kernel interface (a veth's host end, say) attached to
// a bridge.
type Port struct {
	Name   string // the kernel interface, in ovs-vswitchd's namespace
	Bridge string
	// VLAN, when not 0, makes the port an access port of that VLAN
	// (1..4094): its traffic is tagged inside the bridge and reaches only
	// ports with the same tag. 0 leaves the port untagged.
	VLAN int
	// ExternalIDs are kept on the Port row for the owner's use, such as
	// the pontoon endpoint id that garbage collection looks for.
	ExternalIDs map[string]string
}

func (p Port) validate() error {
	if err := validName("port", p.Name); err != nil {
		return err
	}
	if err := validName("bridge", p.Bridge); err != nil {
		return fmt.Errorf("port %s: %w", p.Name, err)
	}
	if p.Name == p.Bridge {
		return fmt.Errorf("ovs: port %s: has the name of its bridge, which is the bridge's internal port", p.Name)
	}
	if p.VLAN < 0 || p.VLAN > 4094 {
		return fmt.Errorf("ovs: port %s: VLAN %d out of range 1..4094 (0 for untagged)", p.Name, p.VLAN)
	}
	for k := range p.ExternalIDs {
		if k == "" {
			return fmt.Errorf("ovs: port %s: an external_ids key is empty", p.Name)
		}
	}
	return nil
}

// AddPort attaches kernel interface p.Name to bridge p.Bridge in one
// transaction and waits (bounded) until ovs-vswitchd has opened it. It
// returns the OpenFlow port number. When vswitchd cannot open the
// interface, the port is deleted again and the error carries vswitchd's
// reason (the Interface's error column).
func (c *Client) AddPort(ctx context.Context, p Port) (int, error) {
	if err := p.validate(); err != nil {
		return 0, err
	}
	if old := (&portRow{Name: p.Name}); c.db.Get(ctx, old) == nil {
		return 0, fmt.Errorf("ovs: add port %s: %w (on bridge %s); delete it first", p.Name, ErrExists, c.bridgeOf(old.UUID))
	}
	br, err := c.bridge(p.Bridge)
	if errors.Is(err, client.ErrNotFound) {
		return 0, fmt.Errorf("ovs: add port %s: bridge %s does not exist", p.Name, p.Bridge)
	}
	if err != nil {
		return 0, fmt.Errorf("ovs: add port %s: %w", p.Name, err)
	}
	it := &interfaceRow{UUID: "iface", Name: p.Name}
	pr := &portRow{UUID: "port", Name: p.Name, Interfaces: []string{it.UUID}, ExternalIDs: p.ExternalIDs}
	if p.VLAN != 0 {
		pr.Tag = &p.VLAN
	}
	ops, err := c.create(it, pr)
	if err != nil {
		return 0, fmt.Errorf("ovs: add port %s: %w", p.Name, err)
	}
	mut, err := c.db.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationInsert, Value: []string{pr.UUID}})
	if err != nil {
		return 0, fmt.Errorf("ovs: add port %s: %w", p.Name, err)
	}
	ops = append(ops, mut...)
	res, err := c.transact(ctx, "add port "+p.Name+" to "+p.Bridge, ops)
	if err != nil {
		return 0, err
	}
	if res[len(ops)-1].Count == 0 {
		// The bridge went between the cache read and the transaction; the
		// unreferenced Port and Interface were garbage-collected with it.
		return 0, fmt.Errorf("ovs: add port %s: bridge %s does not exist", p.Name, p.Bridge)
	}
	ifaceUUID := res[0].UUID.GoUUID

	var ofport int
	err = c.await(ctx, "add port "+p.Name+": wait for ovs-vswitchd to attach it", func() (bool, error) {
		row := &interfaceRow{UUID: ifaceUUID}
		if err := c.db.Get(ctx, row); err != nil {
			return false, nil // our own insert not in the cache yet
		}
		if row.Error != nil && *row.Error != "" {
			return false, fmt.Errorf("ovs: add port %s to %s: ovs-vswitchd: %s", p.Name, p.Bridge, *row.Error)
		}
		if row.OFPort != nil && *row.OFPort > 0 {
			ofport = *row.OFPort
			return true, nil
		}
		if row.OFPort != nil && *row.OFPort < 0 {
			return false, fmt.Errorf("ovs: add port %s to %s: ovs-vswitchd could not attach it (ofport %d)", p.Name, p.Bridge, *row.OFPort)
		}
		return false, nil
	})
	if err != nil {
		// Bad input changes nothing: take the port out again.
		if derr := c.DeletePorts(ctx, p.Name); derr != nil {
			err = errors.Join(err, fmt.Errorf("roll back: %w", derr))
		}
		return 0, err
	}
	return ofport, nil
}

// bridgeOf returns the name of the bridge with the port, or "?".
func (c *Client) bridgeOf(portUUID string) string {
	var brs []bridgeRow
	if err := c.db.List(context.Background(), &brs); err != nil {
		return "?"
	}
	for _, b := range brs {
		if slices.Contains(b.Ports, portUUID) {
			return b.Name
		}
	}
	return "?"
}

// DeletePorts detaches the named ports from whatever bridges hold them, in
// one transaction, and waits (bounded) until ovs-vswitchd has let go of
// them. Names not in the database are skipped; the kernel interfaces stay.
func (c *Client) DeletePorts(ctx context.Context, names ...string) error {
	for _, n := range names {
		if err := validName("port", n); err != nil {
			return err
		}
	}
	var brs []bridgeRow
	if err := c.db.List(ctx, &brs); err != nil {
		return fmt.Errorf("ovs: delete ports: %w", err)
	}
	byBridge := map[int][]string{} // index in brs → port UUIDs
	for _, n := range names {
		pr := &portRow{Name: n}
		if err := c.db.Get(ctx, pr); err != nil {
			continue
		}
		for i, b := range brs {
			if b.Name == n {
				return fmt.Errorf("ovs: delete port %s: it is the bridge's internal port; delete the bridge instead", n)
			}
			if slices.Contains(b.Ports, pr.UUID) {
				byBridge[i] = append(byBridge[i], pr.UUID)
			}
		}
	}
	if len(byBridge) == 0 {
		return nil
	}
	var ops []ovsdb.Operation
	for i, uuids := range byBridge {
		b := &brs[i]
		mut, err := c.db.Where(b).Mutate(b, model.Mutation{Field: &b.Ports, Mutator: ovsdb.MutateOperationDelete, Value: uuids})
		if err != nil {
			return fmt.Errorf("ovs: delete ports from %s: %w", b.Name, err)
		}
		ops = append(ops, mut...)
	}
	bump, err := c.bumpCfg()
	if err != nil {
		return fmt.Errorf("ovs: delete ports: %w", err)
	}
	ops = append(ops, bump...)
	res, err := c.transact(ctx, fmt.Sprintf("delete %d ports", len(names)), ops)
	if err != nil {
		return err
	}
	cfg, err := cfgOf(res, len(ops)-1)
	if err != nil {
		return err
	}
	return c.awaitCfg(ctx, "delete ports", cfg)
}

// Ports lists the ports of bridge (without its internal port), sorted by
// name, with their VLAN and external_ids: what garbage collection compares
// with the endpoints it knows.
func (c *Client) Ports(ctx context.Context, bridge string) ([]Port, error) {
	br, err := c.bridge(bridge)
	if errors.Is(err, client.ErrNotFound) {
		return nil, fmt.Errorf("ovs: list ports: bridge %s does not exist", bridge)
	}
	if err != nil {
		return nil, fmt.Errorf("ovs: list ports of %s: %w", bridge, err)
	}
	var out []Port
	for _, u := range br.Ports {
		pr := &portRow{UUID: u}
		if err := c.db.Get(ctx, pr); err != nil {
			return nil, fmt.Errorf("ovs: list ports of %s: port %s: %w", bridge, u, err)
		}
		if pr.Name == bridge {
			continue
		}
		p := Port{Name: pr.Name, Bridge: bridge, ExternalIDs: maps.Clone(pr.ExternalIDs)}
		if pr.Tag != nil {
			p.VLAN = *pr.Tag
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Bridges lists the names of the bridges in OVSDB, sorted (for garbage
// collection: the caller knows which are its own).
func (c *Client) Bridges(ctx context.Context) ([]string, error) {
	var rows []bridgeRow
	if err := c.db.List(ctx, &rows); err != nil {
		return nil, fmt.Errorf("ovs: list bridges: %w", err)
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.Name)
	}
	sort.Strings(out)
	return out, nil
}
