package engine

import (
	"context"
	"time"

	"pontoon/internal/cluster"
	"pontoon/internal/model"
)

// nameOp is one change of this node's name records in the cluster: a put
// (Name set) or a delete (Name's network and sandbox only).
type nameOp struct {
	name   cluster.Name
	delete bool
}

// nameQueueLen bounds the changes waiting for etcd; beyond it a change is
// dropped with a warning (the next start publishes this node's names
// again and deletes the stale ones).
const nameQueueLen = 4096

// nameWriter writes this node's name records to the cluster in the order
// the engine made the changes, off the attach path: an attach does not
// wait for an etcd round trip to publish its names, and a failed write is
// retried (backing off up to 5 s) before the next one, so a delete never
// overtakes the put it undoes.
type nameWriter struct {
	ops chan nameOp
}

func (e *Engine) startNameWriter(ctx context.Context) {
	w := &nameWriter{ops: make(chan nameOp, nameQueueLen)}
	e.nameW.Store(w)
	go func() {
		cl := e.cfg.Cluster
		for {
			var op nameOp
			select {
			case <-ctx.Done():
				return
			case op = <-w.ops:
			}
			for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				var err error
				if op.delete {
					err = cl.DeleteName(wctx, op.name.Network, op.name.Sandbox)
				} else {
					err = cl.PutName(wctx, op.name)
				}
				cancel()
				if err == nil || ctx.Err() != nil {
					break
				}
				e.log.Warn("cluster: write a sandbox's names; trying again", "sandbox", op.name.Sandbox, "network", op.name.Network, "delete", op.delete, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
			}
		}
	}()
}

// writeName queues op, or writes it at once before the writer runs.
func (e *Engine) writeName(op nameOp) {
	w := e.nameW.Load()
	if w == nil {
		cl := e.cfg.Cluster
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if op.delete {
			err = cl.DeleteName(ctx, op.name.Network, op.name.Sandbox)
		} else {
			err = cl.PutName(ctx, op.name)
		}
		if err != nil {
			e.log.Warn("cluster: write a sandbox's names; the next start writes them again", "sandbox", op.name.Sandbox, "network", op.name.Network, "err", err)
		}
		return
	}
	select {
	case w.ops <- op:
	default:
		e.log.Warn("cluster: too many name changes waiting for etcd; this one waits for the next start", "sandbox", op.name.Sandbox, "network", op.name.Network)
	}
}

// publishName records an overlay endpoint's names in the cluster, for the
// other nodes' resolvers; unpublishName removes them. Both are queued
// (nameWriter): the names resolve on this node at once regardless.
func (e *Engine) publishName(ep *model.Endpoint) {
	cl := e.cfg.Cluster
	if cl == nil {
		return
	}
	e.writeName(nameOp{name: cluster.Name{Network: ep.Network, Sandbox: ep.Sandbox, Node: cl.NodeName(), IPs: ep.IPs(), Aliases: ep.Aliases}})
}

func (e *Engine) unpublishName(ep *model.Endpoint) {
	if e.cfg.Cluster == nil {
		return
	}
	e.writeName(nameOp{name: cluster.Name{Network: ep.Network, Sandbox: ep.Sandbox}, delete: true})
}

// resyncNames makes this node's name records in the cluster those of its
// overlay endpoints: published again (a write lost while the daemon was
// down or etcd away), and deleted where the endpoint is gone. Called at
// start, before the writer runs.
func (e *Engine) resyncNames(ctx context.Context) {
	cl := e.cfg.Cluster
	nets, err := e.Networks()
	if err != nil {
		return
	}
	local := map[string]bool{}
	for _, n := range nets {
		if n.Driver != model.DriverOverlay {
			continue
		}
		for _, ep := range n.Endpoints {
			local[ep.Network+"/"+ep.Sandbox] = true
			e.publishName(ep)
		}
	}
	names, _, err := cl.Names(ctx)
	if err != nil {
		e.log.Warn("cluster: list names to remove this node's stale ones", "err", err)
		return
	}
	for _, n := range names {
		if n.Node == cl.NodeName() && !local[n.Network+"/"+n.Sandbox] {
			e.writeName(nameOp{name: n, delete: true})
		}
	}
}
