package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The names of a cluster network's sandboxes, so that each node's resolver
// answers for the sandboxes of the other nodes too:
//
//	prefix + "names/" + network + "/" + sandbox → JSON record (Name)   not lease-bound
//
// A node writes its own sandboxes' records when they attach and deletes
// them when they detach.

// Name is one sandbox's names on a cluster network.
type Name struct {
	Network string       `json:"-"`
	Sandbox string       `json:"-"`
	Node    string       `json:"node"`
	IPs     []netip.Addr `json:"ips"`
	Aliases []string     `json:"aliases,omitempty"`
}

func (c *Cluster) nameKey(network, sandbox string) string {
	return c.prefix + "names/" + network + "/" + sandbox
}
func (c *Cluster) namesPrefix() string { return c.prefix + "names/" }

// PutName records a sandbox's names on a network.
func (c *Cluster) PutName(ctx context.Context, n Name) error {
	val, err := json.Marshal(n)
	if err != nil {
		return err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	if _, err := c.cli.Put(ctx, c.nameKey(n.Network, n.Sandbox), string(val)); err != nil {
		return fmt.Errorf("cluster: record the names of %s on %s: %w", n.Sandbox, n.Network, err)
	}
	return nil
}

// DeleteName removes a sandbox's names from a network; missing is success.
func (c *Cluster) DeleteName(ctx context.Context, network, sandbox string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if _, err := c.cli.Delete(ctx, c.nameKey(network, sandbox)); err != nil {
		return fmt.Errorf("cluster: remove the names of %s on %s: %w", sandbox, network, err)
	}
	return nil
}

func (c *Cluster) decodeName(key, val []byte) (Name, error) {
	var n Name
	rest := strings.TrimPrefix(string(key), c.namesPrefix())
	network, sandbox, ok := strings.Cut(rest, "/")
	if !ok {
		return n, fmt.Errorf("cluster: name record %s: not network/sandbox", key)
	}
	if val != nil {
		if err := json.Unmarshal(val, &n); err != nil {
			return n, fmt.Errorf("cluster: name record %s: %w (delete it with etcdctl del %s)", key, err, key)
		}
	}
	n.Network, n.Sandbox = network, sandbox
	return n, nil
}

// Names lists every cluster network's names, with the revision of the
// list (to watch from).
func (c *Cluster) Names(ctx context.Context) ([]Name, int64, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	r, err := c.cli.Get(ctx, c.namesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: list names: %w", err)
	}
	out := make([]Name, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		n, err := c.decodeName(kv.Key, kv.Value)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, n)
	}
	return out, r.Header.Revision, nil
}

// NameEvent is a sandbox's names recorded or (Removed, with the last
// record) removed, or, with Err, the end of the watch.
type NameEvent struct {
	Name     Name
	Removed  bool
	Revision int64
	Err      error
}

// WatchNames streams the changes to the names after fromRev, until ctx
// ends or the watch fails (a last event with Err; a compacted fromRev
// wraps store.ErrCompacted: list again).
func (c *Cluster) WatchNames(ctx context.Context, fromRev int64) (<-chan NameEvent, error) {
	return watchPrefix(ctx, c, c.namesPrefix(), fromRev, "name", func(ev *clientv3.Event) (NameEvent, error) {
		ne := NameEvent{Revision: ev.Kv.ModRevision, Removed: ev.Type == clientv3.EventTypeDelete}
		val := ev.Kv.Value
		if ne.Removed {
			val = nil
			if ev.PrevKv != nil {
				val = ev.PrevKv.Value
			}
		}
		n, err := c.decodeName(ev.Kv.Key, val)
		ne.Name = n
		return ne, err
	}, func(err error) NameEvent { return NameEvent{Err: err} }), nil
}
