package cluster

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
)

// Forget releases what a node gone for good still holds: its slices of
// every overlay network (so another node may claim it), its sandboxes'
// names (so no resolver answers with its addresses) and its static
// address reservations. Slices, names and reservations are not lease-bound
// (see the package comment): a node whose daemon stops keeps them for when
// it comes back, and only an operator knows it will not.
//
// A live node (its record exists) is refused with model.ErrConflict; each
// deletion is a transaction that compares the record's absence, so a node
// that joins while Forget runs keeps what it has not lost yet.
func (c *Cluster) Forget(ctx context.Context, node string) (model.ForgottenNode, error) {
	out := model.ForgottenNode{Slices: map[string][]string{}}
	if err := model.ValidateName("node", node); err != nil {
		return out, err
	}
	rctx, cancel := bounded(ctx)
	defer cancel()
	g, err := c.cli.Get(rctx, c.nodeKey(node))
	if err != nil {
		return out, fmt.Errorf("cluster: forget node %s: %w", node, err)
	}
	if len(g.Kvs) > 0 {
		n, _ := decodeNode(g.Kvs[0])
		return out, model.Conflictf("node %s is live (underlay %s, started %s): stop its daemon and wait for its lease to expire before forgetting it", node, n.Underlay, n.Started.Format("2006-01-02T15:04:05Z07:00"))
	}
	absent := clientv3.Compare(clientv3.CreateRevision(c.nodeKey(node)), "=", 0)
	del := func(key string, guards ...clientv3.Cmp) (bool, error) {
		resp, err := c.cli.Txn(rctx).If(append([]clientv3.Cmp{absent}, guards...)...).Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			return false, fmt.Errorf("cluster: forget node %s: delete %s: %w", node, key, err)
		}
		return resp.Succeeded, nil
	}

	// Slices: the per-node index names the slice; the slice key goes only
	// if it still names this node.
	idx, err := c.cli.Get(rctx, c.slicesByNodePrefix(), clientv3.WithPrefix())
	if err != nil {
		return out, fmt.Errorf("cluster: forget node %s: list slices: %w", node, err)
	}
	for _, kv := range idx.Kvs {
		network, holder, _, ok := c.parseSliceIndexKey(string(kv.Key))
		if !ok || holder != node {
			continue
		}
		slice := string(kv.Value)
		sk := c.slicesPrefix(network) + slice
		resp, err := c.cli.Txn(rctx).If(absent).Then(
			clientv3.OpDelete(string(kv.Key)),
			clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(sk), "=", node)}, []clientv3.Op{clientv3.OpDelete(sk)}, nil),
		).Commit()
		if err != nil {
			return out, fmt.Errorf("cluster: forget node %s: release slice %s of %s: %w", node, slice, network, err)
		}
		if !resp.Succeeded {
			return out, model.Conflictf("node %s joined while it was being forgotten: it keeps the rest", node)
		}
		out.Slices[network] = append(out.Slices[network], slice)
	}

	names, _, err := c.Names(rctx)
	if err != nil {
		return out, err
	}
	for _, n := range names {
		if n.Node != node {
			continue
		}
		ok, err := del(c.nameKey(n.Network, n.Sandbox))
		if err != nil {
			return out, err
		}
		if !ok {
			return out, model.Conflictf("node %s joined while it was being forgotten: it keeps the rest", node)
		}
		out.Names++
	}

	st, err := c.cli.Get(rctx, c.prefix+"static/", clientv3.WithPrefix())
	if err != nil {
		return out, fmt.Errorf("cluster: forget node %s: list static addresses: %w", node, err)
	}
	for _, kv := range st.Kvs {
		if owner := string(kv.Value); !strings.HasPrefix(owner, node+"/") {
			continue
		}
		ok, err := del(string(kv.Key), clientv3.Compare(clientv3.Value(string(kv.Key)), "=", string(kv.Value)))
		if err != nil {
			return out, err
		}
		if ok {
			out.Static++
		}
	}
	return out, nil
}
