package engine

import (
	"context"
	"sync"
	"time"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// reaper deletes detached endpoints' veths in batches and then releases
// their addresses and records. Deleting a veth waits for an RCU grace period
// in the kernel (~20 ms here); link.DeleteVeths pays it once per batch.
//
// Crash safety: an endpoint in the queue is recorded as "removing" in the
// store, so a daemon that dies with a non-empty queue finishes the job in
// Reconcile at the next start. The address stays reserved until the link is
// gone, so it is never on two live links.
type reaper struct {
	e *Engine

	mu      sync.Mutex
	queue   []*model.Endpoint
	kick    chan struct{}
	done    chan struct{}
	running sync.Mutex // held while a batch is processed
	stopped chan struct{}
}

// batchDelay lets detaches that arrive together share one batch.
const batchDelay = 2 * time.Millisecond

func newReaper(e *Engine) *reaper {
	r := &reaper{e: e, kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go r.loop()
	return r
}

func (r *reaper) add(eps ...*model.Endpoint) {
	r.mu.Lock()
	r.queue = append(r.queue, eps...)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *reaper) loop() {
	defer close(r.stopped)
	for {
		select {
		case <-r.done:
			r.flush()
			return
		case <-r.kick:
			time.Sleep(batchDelay)
			r.flush()
		}
	}
}

// flush processes the whole queue now, in the caller's goroutine.
func (r *reaper) flush() {
	r.running.Lock()
	defer r.running.Unlock()
	r.mu.Lock()
	batch := r.queue
	r.queue = nil
	r.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	r.e.teardown(batch)
}

func (r *reaper) stop() {
	close(r.done)
	<-r.stopped
}

// teardown deletes the veths of endpoints in state removing, then their
// policy rules, addresses and records. On a kernel error the records stay
// "removing" and the next Reconcile retries.
func (e *Engine) teardown(eps []*model.Endpoint) {
	if eps = e.stillRecorded(eps); len(eps) == 0 {
		return
	}
	start := time.Now()
	if err := e.deleteEndpoints(eps); err != nil {
		e.log.Error("delete veths; will retry at next start", "count", len(eps), "err", err)
		return
	}
	e.log.Debug("veths deleted", "count", len(eps), "took", time.Since(start))
	e.flowsGone(eps)
	// The ports are gone: their anti-spoofing elements go too (before the
	// names can be reused — they cannot, they derive from endpoint IDs).
	var gs []firewall.Guarded
	for _, ep := range eps {
		gs = append(gs, guarded(ep)...)
	}
	if err := e.fw.Unguard(context.Background(), gs); err != nil {
		e.log.Warn("remove anti-spoofing elements; the next firewall sync drops them", "err", err)
	}
	// A secondary endpoint's source rule lives in the sandbox's namespace,
	// not on the link: remove it where the namespace outlives the endpoint.
	for _, ep := range eps {
		if ep.Table == 0 {
			continue
		}
		var sb *model.Sandbox
		_ = e.st.View(context.Background(), func(tx store.Tx) (err error) {
			sb, err = tx.Sandbox(ep.Sandbox)
			return err
		})
		if sb == nil || sb.Kind == model.KindHost || sb.Kind == model.KindPontoon && sb.State == model.SandboxRemoving {
			continue
		}
		for _, ip := range ep.IPs() {
			if err := e.link.DeleteRule(sb.Netns, sb.NetnsIno, ip, ep.Table); err != nil {
				e.log.Warn("delete source rule", "sandbox", ep.Sandbox, "ip", ip.String(), "table", ep.Table, "err", err)
			}
		}
	}
	e.releaseClusterStatic(eps)
	err := e.st.Update(context.Background(), func(tx store.Tx) error {
		for _, ep := range eps {
			cur, err := tx.Endpoint(ep.Sandbox, ep.Network)
			if err != nil || cur.ID != ep.ID {
				continue // already gone
			}
			if err := releaseAddrs(tx, ep); err != nil {
				return err
			}
			if err := tx.DeleteEndpoint(ep.Sandbox, ep.Network); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.log.Error("release detached endpoints; will retry at next start", "count", len(eps), "err", err)
		return
	}
	for _, ep := range eps {
		if ep.Primary {
			e.promote(ep.Sandbox)
		}
	}
}

// stillRecorded drops, from a batch, endpoints a previous batch finished
// and duplicates. An endpoint is queued twice when its sandbox is removed
// right after a detach (a CNI DEL does both); tearing it down again would
// try to delete anti-spoofing elements that are gone, and every refused
// nftables transaction costs the kernel an RCU grace period (~10 ms; a
// CNI DEL took 60–90 ms instead of ~15).
func (e *Engine) stillRecorded(eps []*model.Endpoint) []*model.Endpoint {
	seen := map[string]bool{}
	var out []*model.Endpoint
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		for _, ep := range eps {
			if seen[ep.ID] {
				continue
			}
			seen[ep.ID] = true
			if cur, err := tx.Endpoint(ep.Sandbox, ep.Network); err == nil && cur.ID == ep.ID {
				out = append(out, ep)
			}
		}
		return nil
	})
	return out
}

// promote gives a sandbox that lost its primary endpoint a new one: the
// lowest remaining interface on a network with a way out takes the
// default route, as Docker moves the gateway. Its source rule and table
// stay; they are harmless for the primary.
func (e *Engine) promote(sandbox string) {
	var sb *model.Sandbox
	var next *model.Endpoint
	var nw *model.Network
	err := e.st.Update(context.Background(), func(tx store.Tx) error {
		var err error
		if sb, err = tx.Sandbox(sandbox); err != nil || sb.State != model.SandboxReady {
			return err
		}
		eps, err := tx.EndpointsOfSandbox(sandbox)
		if err != nil {
			return err
		}
		for _, ep := range eps {
			if ep.Primary && ep.State != model.StateRemoving {
				return nil // it has one
			}
		}
		for _, ep := range eps {
			if ep.State != model.StateReady {
				continue
			}
			n, err := tx.Network(ep.Network)
			if err != nil || n.Internal {
				continue
			}
			next, nw = ep, n
			break
		}
		if next == nil {
			return nil
		}
		next.Primary = true
		return tx.PutEndpoint(next)
	})
	if err != nil || next == nil {
		return
	}
	for _, s := range nw.Subnets {
		if err := e.link.SetDefaultRoute(sb.Netns, sb.NetnsIno, next.IfName, s.Gateway); err != nil {
			e.log.Warn("move the default route to the next network", "sandbox", sandbox, "if", next.IfName, "gateway", s.Gateway, "err", err)
			return
		}
	}
	e.resolv.sync(sandbox)
	e.log.Info("default route moved", "sandbox", sandbox, "network", next.Network, "if", next.IfName)
}
