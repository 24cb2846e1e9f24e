package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/store"
)

// Topology is what a node needs to program its peers: the live nodes and
// every overlay network's slices, as of one etcd revision.
type Topology struct {
	Revision int64
	Nodes    map[string]Node // by name; live ones only
	// Slices are each network's slices by node: network → node → its
	// slices, at most one per family, IPv4 first.
	Slices map[string]map[string][]netip.Prefix
}

// clone copies t deeply enough that the follower can go on changing its
// own copy.
func (t Topology) clone() Topology {
	out := Topology{Revision: t.Revision, Nodes: maps.Clone(t.Nodes), Slices: make(map[string]map[string][]netip.Prefix, len(t.Slices))}
	for n, s := range t.Slices {
		c := make(map[string][]netip.Prefix, len(s))
		for node, ps := range s {
			c[node] = slices.Clone(ps)
		}
		out.Slices[n] = c
	}
	return out
}

func (c *Cluster) slicesByNodePrefix() string { return c.prefix + "slices-by-node/" }

// ReadTopology lists the nodes and the slices in one etcd transaction (one
// revision: a watch from it misses nothing and repeats nothing). Unlike
// Nodes it asks for no lease TTLs, so it costs one request however many
// nodes there are.
func (c *Cluster) ReadTopology(ctx context.Context) (Topology, error) {
	rctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).Then(
		clientv3.OpGet(c.nodesPrefix(), clientv3.WithPrefix()),
		clientv3.OpGet(c.slicesByNodePrefix(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return Topology{}, fmt.Errorf("cluster: read nodes and slices: %w", err)
	}
	t := Topology{Revision: resp.Header.Revision, Nodes: map[string]Node{}, Slices: map[string]map[string][]netip.Prefix{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		n, err := decodeNode(kv)
		if err != nil {
			return Topology{}, err
		}
		t.Nodes[n.Name] = n
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		c.applySlice(&t, string(kv.Key), string(kv.Value), false)
	}
	return t, nil
}

// applySlice applies one slices-by-node key (network/node[/ipv6] → slice)
// to t; a key or value that does not parse, or a slice of another family
// than its key's, is ignored (ClaimSlice replaces it).
func (c *Cluster) applySlice(t *Topology, key, val string, removed bool) {
	network, node, v6, ok := c.parseSliceIndexKey(key)
	if !ok {
		return
	}
	if removed {
		if rest := dropSlice(t.Slices[network][node], v6); len(rest) > 0 {
			t.Slices[network][node] = rest
		} else {
			delete(t.Slices[network], node)
		}
		if len(t.Slices[network]) == 0 {
			delete(t.Slices, network)
		}
		return
	}
	p, err := netip.ParsePrefix(val)
	if err != nil || p.Addr().Is6() != v6 {
		return
	}
	if t.Slices[network] == nil {
		t.Slices[network] = map[string][]netip.Prefix{}
	}
	t.Slices[network][node] = addSlice(t.Slices[network][node], p)
}

// FollowTopology keeps a node's view of the nodes and slices current by
// watch, not by polling: it reads the topology once, calls changed with it,
// then watches the node and slice keys from that revision and calls changed
// after each batch of changes etcd delivers (so a node that joins, leaves,
// or whose lease expires is seen within one round trip). When the watch
// fails (etcd unreachable, a compaction, a member without a leader) it
// calls failed with the error and keeps the last topology — the caller's
// data plane stays as it is (fail-static) — then reads and watches again,
// backing off from 250 ms to 5 s, and calls changed once it can. It
// returns when ctx ends. changed and failed run on FollowTopology's
// goroutine, one at a time; changed gets its own copy.
func (c *Cluster) FollowTopology(ctx context.Context, changed func(Topology), failed func(error)) {
	backoff := 250 * time.Millisecond
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		return true
	}
	for ctx.Err() == nil {
		t, err := c.ReadTopology(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failed(err)
			if !wait() {
				return
			}
			continue
		}
		changed(t.clone())
		err = c.watchTopology(ctx, &t, changed)
		if ctx.Err() != nil {
			return
		}
		failed(err)
		if !errors.Is(err, store.ErrCompacted) && !wait() {
			return
		}
		if errors.Is(err, store.ErrCompacted) {
			backoff = 250 * time.Millisecond
		}
	}
}

// watchTopology applies the changes after t.Revision to t, calling changed
// after each watch response, until the watch fails (the error says why).
func (c *Cluster) watchTopology(ctx context.Context, t *Topology, changed func(Topology)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// One watch of the whole prefix, filtered here: a node record and its
	// slices arrive in the order etcd committed them.
	wch := c.cli.Watch(wctx, c.prefix, clientv3.WithPrefix(), clientv3.WithRev(t.Revision+1))
	nodes, slices := c.nodesPrefix(), c.slicesByNodePrefix()
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("%w: etcd compacted revision %d while it was watched: reading the topology again", store.ErrCompacted, resp.CompactRevision)
			}
			return fmt.Errorf("cluster: watch of nodes and slices: %w", err)
		}
		touched := false
		for _, e := range resp.Events {
			key := string(e.Kv.Key)
			switch {
			case strings.HasPrefix(key, nodes):
				name := strings.TrimPrefix(key, nodes)
				if e.Type == clientv3.EventTypeDelete {
					delete(t.Nodes, name)
				} else if n, err := decodeNode(e.Kv); err == nil {
					n.LastSeen = time.Now()
					t.Nodes[name] = n
				}
				touched = true
			case strings.HasPrefix(key, slices):
				c.applySlice(t, key, string(e.Kv.Value), e.Type == clientv3.EventTypeDelete)
				touched = true
			}
		}
		t.Revision = max(t.Revision, resp.Header.Revision)
		if touched {
			changed(t.clone())
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("cluster: watch of nodes and slices ended (etcd unreachable, or its member lost its leader)")
}
