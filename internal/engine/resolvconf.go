package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"pontoon/internal/dns"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// resolvFiles keeps sandboxes' resolv.conf files in step with the store,
// off the request path: creating a directory and a file costs 0.5–2 ms on
// this VM class's ext4 (more than the rest of an attach; in a burst of
// parallel attaches the inode allocations took a third of the machine's
// CPU, docs/benchmarks.md), and only a process started in the sandbox
// reads the file. Requests queue a sandbox's name; a worker makes its file
// match the store as it is then (written, or removed). The worker defers to
// requests: while any is in flight it waits, for at most resolvMaxDefer per
// file, and its thread runs at the lowest priority (SCHED_IDLE). In a burst
// the requests get the CPU and the files follow when it ends. (SCHED_IDLE
// alone was not enough: this kernel does not preempt kernel code, and an
// inode allocation on this VM's ext4, which has no journal and so skips
// recently deleted inodes one by one, runs for milliseconds.) Whoever
// hands the path out (Sandbox, hence `pontoon exec` and `run`) first waits
// for that sandbox's queued write — and does it itself, at its own
// priority, if the worker has not started it: nobody waits for the idle
// thread.
type resolvFiles struct {
	e      *Engine
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []resolvItem    // sandboxes to write, in order (may hold names no longer queued)
	queued map[string]bool // sandboxes whose write has not started
	busy   map[string]bool // sandboxes being written now
	closed bool
	exited chan struct{}
}

type resolvItem struct {
	sandbox string
	at      time.Time // when it was queued
}

// resolvMaxDefer bounds how long the worker defers a file to requests in
// flight; resolvPoll is how often it looks whether they are done.
const (
	resolvMaxDefer = time.Second
	resolvPoll     = 5 * time.Millisecond
)

func newResolvFiles(e *Engine) *resolvFiles {
	r := &resolvFiles{e: e, queued: map[string]bool{}, busy: map[string]bool{}, exited: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	go r.run()
	return r
}

// sync queues sandbox's file to be made to match the store.
func (r *resolvFiles) sync(sandbox string) {
	if r.e.resolvConfPath(sandbox) == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.e.writeResolvConf(sandbox) // after Close: nobody to hand it to
		return
	}
	// A write already queued (not started) reads the store when it runs:
	// it covers this change too.
	if !r.queued[sandbox] {
		r.queued[sandbox] = true
		r.queue = append(r.queue, resolvItem{sandbox, time.Now()})
	}
	r.cond.Broadcast()
}

// write writes sandbox's file; r.mu is held on entry and on return.
func (r *resolvFiles) write(sandbox string) {
	delete(r.queued, sandbox)
	r.busy[sandbox] = true
	r.mu.Unlock()
	r.e.writeResolvConf(sandbox)
	r.mu.Lock()
	delete(r.busy, sandbox)
	r.cond.Broadcast()
}

// wait returns once every write queued for sandbox so far is done; it
// writes the file itself when the worker has not started it.
func (r *resolvFiles) wait(sandbox string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for !r.closed {
		switch {
		case r.busy[sandbox]:
			r.cond.Wait()
		case r.queued[sandbox]:
			r.write(sandbox)
		default:
			return
		}
	}
}

// flush returns once everything queued so far is done.
func (r *resolvFiles) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for (len(r.queued) > 0 || len(r.busy) > 0) && !r.closed {
		r.cond.Wait()
	}
}

func (r *resolvFiles) run() {
	defer close(r.exited)
	idlePriority(r.e.log)
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for len(r.queue) == 0 && !r.closed {
			r.cond.Wait()
		}
		if len(r.queue) == 0 {
			return
		}
		it := r.queue[0]
		sb := it.sandbox
		if !r.queued[sb] {
			r.queue = r.queue[1:]
			continue // written by a waiter meanwhile
		}
		for !r.closed && r.e.inFlight.Load() > 0 && time.Since(it.at) < resolvMaxDefer {
			r.mu.Unlock()
			time.Sleep(resolvPoll)
			r.mu.Lock()
		}
		r.queue = r.queue[1:]
		for r.busy[sb] { // a waiter writes it; then write it again
			r.cond.Wait()
		}
		if r.queued[sb] {
			r.write(sb)
		}
	}
}

// stop finishes the queue and ends the worker.
func (r *resolvFiles) stop() {
	r.mu.Lock()
	r.closed = true
	r.cond.Broadcast()
	r.mu.Unlock()
	<-r.exited
}

// resolvConfPath is where a sandbox's resolv.conf lives: the `ip netns
// exec` convention, /etc/netns/NAME/resolv.conf, under a configurable
// directory so tests never touch the host's /etc.
func (e *Engine) resolvConfPath(sandbox string) string {
	if e.cfg.EtcNetnsDir == "" {
		return ""
	}
	return filepath.Join(e.cfg.EtcNetnsDir, sandbox, "resolv.conf")
}

// writeResolvConf points a sandbox pontoon created at the resolver of its
// primary network (or removes the file when it has none, or is gone).
// Adopted namespaces belong to their runtime, which manages their /etc.
// Called by resolvFiles' worker; requests call e.resolv.sync.
func (e *Engine) writeResolvConf(sandbox string) {
	p := e.resolvConfPath(sandbox)
	if p == "" || e.cfg.Resolver == nil {
		return
	}
	var sb *model.Sandbox
	var nw *model.Network
	inSandbox, allInternal := false, true
	_ = e.st.View(context.Background(), func(tx store.Tx) error {
		var err error
		if sb, err = tx.Sandbox(sandbox); err != nil {
			return err
		}
		eps, err := tx.EndpointsOfSandbox(sandbox)
		if err != nil {
			return err
		}
		for _, ep := range liveEndpoints(eps) {
			n, err := tx.Network(ep.Network)
			if err != nil {
				continue
			}
			if ep.Primary || nw == nil {
				nw = n
			}
			inSandbox = inSandbox || !n.HasHostGateway()
			allInternal = allInternal && n.Internal
		}
		return nil
	})
	if sb == nil || sb.Kind != model.KindPontoon || sb.State == model.SandboxRemoving || nw == nil {
		e.removeResolvConf(sandbox)
		return
	}
	content := []byte(dns.ResolvConf(dnsNetwork(nw)))
	if inSandbox {
		// A network with no gateway on the host: the resolver listens
		// inside the sandbox, for all of its networks.
		dn := dnsNetwork(nw)
		dn.Internal = allInternal
		content = []byte(dns.SandboxResolvConf(dn))
	}
	// Most attaches leave the primary network, and so the file, as it was.
	// Rewriting it anyway costs a millisecond or more: ext4 flushes a file
	// renamed over another (auto_da_alloc).
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, content) {
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.log.Warn("dns: write resolv.conf", "sandbox", sandbox, "err", err)
		return
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, content, 0o644); err == nil {
		err = os.Rename(tmp, p)
		if err != nil {
			e.log.Warn("dns: write resolv.conf", "sandbox", sandbox, "err", err)
		}
	}
}

func (e *Engine) removeResolvConf(sandbox string) {
	p := e.resolvConfPath(sandbox)
	if p == "" {
		return
	}
	if err := os.RemoveAll(filepath.Dir(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("dns: remove resolv.conf", "sandbox", sandbox, "err", err)
	}
}

// ResolvConf returns the path of a sandbox's resolv.conf, or "" when it has
// none. It waits for the sandbox's queued writes.
func (e *Engine) ResolvConf(sandbox string) string {
	p := e.resolvConfPath(sandbox)
	if p == "" {
		return ""
	}
	e.resolv.wait(sandbox)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
