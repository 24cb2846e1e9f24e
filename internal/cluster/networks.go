package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
)

// A cluster network's definition: what every node needs to make its own
// part of it (its slice, its bridge and VXLAN device). Created on any
// node, visible on all:
//
//	prefix + "networks/" + name → JSON record (NetworkDef)   not lease-bound

// NetworkDef is a cluster-scoped network.
type NetworkDef struct {
	Name   string `json:"name"`
	Driver string `json:"driver"` // overlay
	// Subnets are the whole network's, at most one per family, IPv4
	// first (10.200.0.0/16, fd00:200::/48), each with the prefix length
	// of each node's slice of it (24, 64). See MarshalJSON for how they
	// are stored.
	Subnets  []model.OverlaySubnet `json:"subnets"`
	VNI      int                   `json:"vni"` // the VXLAN network identifier
	MTU      int                   `json:"mtu,omitempty"`
	Internal bool                  `json:"internal,omitempty"`
	// Mode is how the nodes reach each other's slices: "" (vxlan, a VXLAN
	// device) or "host-gw" (a route per node through its underlay
	// address; the nodes share an L2 segment). See model.OverlayModes.
	Mode string `json:"mode,omitempty"`
	// Node that created it, and when (for people).
	CreatedBy string    `json:"created_by"`
	Created   time.Time `json:"created"`
}

// v4Def is how a definition was stored before overlays were dual-stack:
// one IPv4 subnet, top-level.
type v4Def struct {
	Subnet    netip.Prefix `json:"subnet,omitzero"`
	SliceBits int          `json:"slice_bits,omitempty"`
}

// MarshalJSON stores d with its subnets; a definition with one IPv4
// subnet and nothing else also carries it as the older layout had it
// (subnet, slice_bits), so that a node still running a pontoon from
// before dual-stack overlays makes its part of an IPv4-only network as it
// did. One with IPv6 has no such fields: such a node cannot read it and
// says so (no subnet), rather than make half of it.
func (d NetworkDef) MarshalJSON() ([]byte, error) {
	type plain NetworkDef // without this method
	v := struct {
		plain
		v4Def
	}{plain: plain(d)}
	if len(d.Subnets) == 1 && d.Subnets[0].Prefix.Addr().Is4() {
		v.v4Def = v4Def{Subnet: d.Subnets[0].Prefix, SliceBits: d.Subnets[0].SliceBits}
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads a definition, also one stored before overlays were
// dual-stack (subnet and slice_bits only).
func (d *NetworkDef) UnmarshalJSON(b []byte) error {
	type plain NetworkDef
	var v struct {
		plain
		v4Def
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*d = NetworkDef(v.plain)
	if len(d.Subnets) == 0 && v.Subnet.IsValid() {
		d.Subnets = []model.OverlaySubnet{{Prefix: v.Subnet, SliceBits: v.SliceBits}}
	}
	return nil
}

// SubnetString renders d's subnets for people: "10.200.0.0/16, fd00:200::/48".
func (d NetworkDef) SubnetString() string {
	out := make([]string, len(d.Subnets))
	for i, s := range d.Subnets {
		out[i] = s.Prefix.String()
	}
	return strings.Join(out, ", ")
}

// checkSubnets validates d's subnets: one or two, at most one per family,
// each a network prefix with slices no larger than it; it sorts them IPv4
// first.
func (d *NetworkDef) checkSubnets() error {
	if len(d.Subnets) == 0 {
		return model.Invalidf("cluster network %s has no subnet: give one per family, e.g. 10.200.0.0/16 and fd00:200::/48", d.Name)
	}
	var seen [2]bool
	for _, s := range d.Subnets {
		p := s.Prefix
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() || p != p.Masked() {
			return model.Invalidf("cluster network %s: subnet %s is not a network prefix: give one such as 10.200.0.0/16 or fd00:200::/48", d.Name, p)
		}
		if s.SliceBits < p.Bits() || s.SliceBits > p.Addr().BitLen() {
			return model.Invalidf("cluster network %s: slices of /%d do not fit subnet %s: give a prefix length from %d to %d", d.Name, s.SliceBits, p, p.Bits(), p.Addr().BitLen())
		}
		i := 0
		if p.Addr().Is6() {
			i = 1
		}
		if seen[i] {
			return model.Invalidf("cluster network %s: two subnets of one family (%s): give at most one IPv4 and one IPv6", d.Name, d.SubnetString())
		}
		seen[i] = true
	}
	d.Subnets = slices.Clone(d.Subnets)
	slices.SortStableFunc(d.Subnets, func(a, b model.OverlaySubnet) int { return a.Prefix.Addr().BitLen() - b.Prefix.Addr().BitLen() })
	return nil
}

// overlaps returns a subnet of d's and one of o's that overlap.
func (d NetworkDef) overlaps(o NetworkDef) (mine, theirs netip.Prefix, ok bool) {
	for _, a := range d.Subnets {
		for _, b := range o.Subnets {
			if a.Prefix.Overlaps(b.Prefix) {
				return a.Prefix, b.Prefix, true
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}

func (c *Cluster) networkKey(name string) string { return c.prefix + "networks/" + name }
func (c *Cluster) networksPrefix() string        { return c.prefix + "networks/" }

// DefineNetwork records a cluster network if no network of that name, and
// none with its VNI, exists; ErrConflict (wrapped) names the one that
// does. A definition equal to the one recorded is success (a retry).
func (c *Cluster) DefineNetwork(ctx context.Context, d NetworkDef) error {
	if err := model.ValidateNetworkName(d.Name); err != nil {
		return err
	}
	if err := d.checkSubnets(); err != nil {
		return err
	}
	if d.VNI < 1 || d.VNI > 1<<24-1 {
		return model.Invalidf("cluster network %s: VNI %d: give 1 to 16777215", d.Name, d.VNI)
	}
	if err := model.CheckOverlayMode(d.Mode); err != nil {
		return fmt.Errorf("cluster network %s: %w", d.Name, err)
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	others, _, err := c.Networks(ctx)
	if err != nil {
		return err
	}
	for _, o := range others {
		mine, theirs, overlap := d.overlaps(o)
		switch {
		case o.Name == d.Name && slices.Equal(o.Subnets, d.Subnets) && o.VNI == d.VNI && o.Mode == d.Mode:
			return nil
		case o.Name == d.Name:
			return model.Conflictf("cluster network %s exists (subnets %s, VNI %d, made by %s): pick another name", o.Name, o.SubnetString(), o.VNI, o.CreatedBy)
		case o.VNI == d.VNI:
			return model.Conflictf("VNI %d is cluster network %s's: give another with --vni", d.VNI, o.Name)
		case overlap:
			return model.Conflictf("subnet %s overlaps %s of cluster network %s: pick a subnet no other network has", mine, theirs, o.Name)
		}
	}
	val, err := json.Marshal(d)
	if err != nil {
		return err
	}
	key := c.networkKey(d.Name)
	r, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("cluster: define network %s: %w", d.Name, err)
	}
	if !r.Succeeded {
		return model.Conflictf("cluster network %s was just made by another node: list the networks again", d.Name)
	}
	return nil
}

// RemoveNetworkDef removes a cluster network's definition; a missing one
// is success. Each node removes its own part when it sees it go.
func (c *Cluster) RemoveNetworkDef(ctx context.Context, name string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if _, err := c.cli.Delete(ctx, c.networkKey(name)); err != nil {
		return fmt.Errorf("cluster: remove network %s: %w", name, err)
	}
	return nil
}

// Networks lists the cluster networks, sorted by name, with the revision
// of the list (to watch from).
func (c *Cluster) Networks(ctx context.Context) ([]NetworkDef, int64, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	r, err := c.cli.Get(ctx, c.networksPrefix(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: list networks: %w", err)
	}
	out := make([]NetworkDef, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		var d NetworkDef
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return nil, 0, fmt.Errorf("cluster: network record %s: %w (delete it with etcdctl del %s)", kv.Key, err, kv.Key)
		}
		out = append(out, d)
	}
	return out, r.Header.Revision, nil
}

// NetworkEvent is a cluster network defined (Def set) or removed (Removed
// with Def.Name), or, with Err set, the end of the watch.
type NetworkEvent struct {
	Def      NetworkDef
	Removed  bool
	Revision int64
	Err      error
}

// WatchNetworks streams the changes to the cluster's networks after
// fromRev, until ctx ends or the watch fails (a last event with Err; a
// compacted fromRev wraps store.ErrCompacted: list again).
func (c *Cluster) WatchNetworks(ctx context.Context, fromRev int64) (<-chan NetworkEvent, error) {
	return watchPrefix(ctx, c, c.networksPrefix(), fromRev, "network", func(ev *clientv3.Event) (NetworkEvent, error) {
		ne := NetworkEvent{Revision: ev.Kv.ModRevision}
		if ev.Type == clientv3.EventTypeDelete {
			ne.Removed = true
			if ev.PrevKv != nil {
				_ = json.Unmarshal(ev.PrevKv.Value, &ne.Def)
			}
			if ne.Def.Name == "" {
				ne.Def.Name = string(ev.Kv.Key[len(c.networksPrefix()):])
			}
		} else if err := json.Unmarshal(ev.Kv.Value, &ne.Def); err != nil {
			return ne, fmt.Errorf("cluster: network record %s: %w", ev.Kv.Key, err)
		}
		return ne, nil
	}, func(err error) NetworkEvent { return NetworkEvent{Err: err} }), nil
}
