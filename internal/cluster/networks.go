package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
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
	Name   string       `json:"name"`
	Driver string       `json:"driver"` // overlay
	Subnet netip.Prefix `json:"subnet"` // the whole network's, e.g. 10.200.0.0/16
	// SliceBits is the prefix length of each node's slice (24).
	SliceBits int  `json:"slice_bits"`
	VNI       int  `json:"vni"` // the VXLAN network identifier
	MTU       int  `json:"mtu,omitempty"`
	Internal  bool `json:"internal,omitempty"`
	// Mode is how the nodes reach each other's slices: "" (vxlan, a VXLAN
	// device) or "host-gw" (a route per node through its underlay
	// address; the nodes share an L2 segment). See model.OverlayModes.
	Mode string `json:"mode,omitempty"`
	// Node that created it, and when (for people).
	CreatedBy string    `json:"created_by"`
	Created   time.Time `json:"created"`
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
	if !d.Subnet.IsValid() || d.SliceBits < d.Subnet.Bits() || d.VNI < 1 || d.VNI > 1<<24-1 {
		return model.Invalidf("cluster network %s: subnet %s, slices /%d, VNI %d: want a subnet, slices no larger than it, a VNI of 1 to 16777215", d.Name, d.Subnet, d.SliceBits, d.VNI)
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
		switch {
		case o.Name == d.Name && o.Subnet == d.Subnet && o.VNI == d.VNI && o.SliceBits == d.SliceBits && o.Mode == d.Mode:
			return nil
		case o.Name == d.Name:
			return model.Conflictf("cluster network %s exists (subnet %s, VNI %d, made by %s): pick another name", o.Name, o.Subnet, o.VNI, o.CreatedBy)
		case o.VNI == d.VNI:
			return model.Conflictf("VNI %d is cluster network %s's: give another with --vni", d.VNI, o.Name)
		case o.Subnet.Overlaps(d.Subnet):
			return model.Conflictf("subnet %s overlaps %s of cluster network %s: pick a subnet no other network has", d.Subnet, o.Subnet, o.Name)
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
