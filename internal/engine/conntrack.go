package engine

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// Stale connection tracking.
//
// The kernel NATs a flow as its first packet decides and remembers that in
// a conntrack entry; a UDP or SCTP client that keeps sending keeps the
// entry alive for ever. So whenever the owner of a flow changes, the
// entries that still point at the old one are deleted:
//
//   - a UDP or SCTP mapping is published: entries to its host ports (on its
//     host address, if it has one) that do not already go to the new
//     target — made before the mapping existed (to the host itself), or
//     DNATed to a sandbox that had the port before;
//   - a mapping is removed: the entries to its host ports (unless another
//     endpoint publishes them by then);
//   - an endpoint goes away (detach, sandbox removal, rolled-back attach):
//     entries whose reply source is its address (flows sent to it, DNATed
//     or not, any protocol) and whose original source is its address
//     (flows it started: masquerade would hand their replies to whoever
//     gets the address next);
//   - the firewall table was rewritten (start-up, drift repair, network
//     changes): as for a publish, for every mapping. This covers a daemon
//     that died between a publish and its cleanup, and datagrams that came
//     while someone had removed the table.
//
// TCP entries of a mapping are left alone: a TCP flow to a port nobody
// serves is reset and ends, and one DNATed to an endpoint that is gone goes
// with the endpoint's address.
//
// Reading the conntrack table costs ~9 ms on the 2-core test machine, with
// or without entries (the kernel takes a lock for each of the 262144
// buckets of the hash table all namespaces share; BenchmarkDeleteConntrack
// in internal/link). None of it is on a request's path: a background
// worker deletes, starting 10 ms after the first request of a batch (run
// at once, the read slowed the UDP attach that queued it from 2.1 to
// 5.7 ms p50: BenchmarkConntrackCleanup in test/e2e), with one table read
// for everything queued meanwhile. An attach without UDP or SCTP ports
// queues nothing; an address whose clean-up is queued is not plumbed again
// before the clean-up ran (waitAddr), so a new owner's flows are never the
// ones deleted.

// portFlows selects the entries to a mapping's host ports, for its UDP and
// SCTP mappings; keep (if valid) exempts flows that already go to it.
func portFlows(ports []model.PortMapping, keep ...netip.Addr) []link.ConntrackFilter {
	var out []link.ConntrackFilter
	for _, m := range ports {
		if m.Proto != "udp" && m.Proto != "sctp" {
			continue
		}
		out = append(out, link.ConntrackFilter{Proto: m.Proto, OrigDst: m.HostIP,
			OrigDstPort: m.HostPort, OrigDstPortEnd: m.HostPortEnd, KeepReplySrc: keep})
	}
	return out
}

// addressFlows selects the flows sent to an address and those it started.
func addressFlows(ip netip.Addr) []link.ConntrackFilter {
	return []link.ConntrackFilter{{ReplySrc: ip}, {OrigSrc: ip}}
}

// flowsPublished queues the cleanup after ep's mappings were published.
func (e *Engine) flowsPublished(ep *model.Endpoint) {
	if fs := portFlows(ep.Ports, ep.IPs()...); len(fs) > 0 {
		e.flows.add("published "+ep.Sandbox, fs)
	}
}

// flowsGone queues the cleanup for endpoints that are gone (their links
// deleted) or whose attach was rolled back: their addresses' flows, and
// the flows to their mappings' host ports that no other endpoint publishes
// now.
func (e *Engine) flowsGone(eps []*model.Endpoint) {
	var fs []link.ConntrackFilter
	var addrs []netip.Addr
	var names []string
	hasPorts := false
	for _, ep := range eps {
		for _, ip := range ep.IPs() {
			fs = append(fs, addressFlows(ip)...)
			addrs = append(addrs, ip)
		}
		names = append(names, ep.Sandbox)
		hasPorts = hasPorts || len(portFlows(ep.Ports)) > 0
	}
	if hasPorts {
		gone := map[string]bool{}
		for _, ep := range eps {
			gone[ep.ID] = true
		}
		skip := func(o *model.Endpoint) bool { return gone[o.ID] || o.State == model.StateRemoving }
		_ = e.st.View(context.Background(), func(tx store.Tx) error {
			for _, ep := range eps {
				for _, m := range ep.Ports {
					// Unreadable: clean up; a flow of a live mapping is
					// made again by its next packet.
					if o, _, err := portHolder(tx, m, skip); err != nil || o == nil {
						fs = append(fs, portFlows([]model.PortMapping{m})...)
					}
				}
			}
			return nil
		})
	}
	e.flows.add("removed "+strings.Join(names, ","), fs, addrs...)
}

// flowsResync queues a cleanup for every mapping of ready endpoints (after
// the firewall table was rewritten).
func (e *Engine) flowsResync(eps []*model.Endpoint) {
	var fs []link.ConntrackFilter
	for _, ep := range eps {
		if ep.State == model.StateReady {
			fs = append(fs, portFlows(ep.Ports, ep.IPs()...)...)
		}
	}
	if len(fs) > 0 {
		e.flows.add("firewall rewritten", fs)
	}
}

// flowDelay lets the request that queued a clean-up answer before the
// table read, which keeps a CPU busy for its ~9 ms, starts; requests that
// arrive meanwhile join the batch.
const flowDelay = 10 * time.Millisecond

// flowCleaner deletes conntrack entries in the background, one table read
// per batch. Every request while a batch runs joins the next one.
type flowCleaner struct {
	e *Engine

	mu      sync.Mutex
	queue   []link.ConntrackFilter
	why     []string
	addrs   []netip.Addr       // addresses the queued filters clean up after
	pending map[netip.Addr]int // addresses with a cleanup queued or running

	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	running sync.Mutex // held while a batch is processed
}

func newFlowCleaner(e *Engine) *flowCleaner {
	c := &flowCleaner{e: e, pending: map[netip.Addr]int{}, kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go c.loop()
	return c
}

// add queues filters; addrs are the addresses they clean up after (see
// waitAddr).
func (c *flowCleaner) add(why string, fs []link.ConntrackFilter, addrs ...netip.Addr) {
	if len(fs) == 0 {
		return
	}
	c.mu.Lock()
	c.queue = append(c.queue, fs...)
	c.why = append(c.why, why)
	c.addrs = append(c.addrs, addrs...)
	for _, a := range addrs {
		c.pending[a]++
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *flowCleaner) loop() {
	defer close(c.stopped)
	for {
		select {
		case <-c.done:
			c.flush()
			return
		case <-c.kick:
			time.Sleep(flowDelay)
			c.flush()
		}
	}
}

// flush runs everything queued now, in the caller's goroutine.
func (c *flowCleaner) flush() {
	c.running.Lock()
	defer c.running.Unlock()
	c.mu.Lock()
	fs, why, addrs := c.queue, c.why, c.addrs
	c.queue, c.why, c.addrs = nil, nil, nil
	c.mu.Unlock()
	if len(fs) == 0 {
		return
	}
	start := time.Now()
	n, err := c.e.link.DeleteConntrack(fs)
	if err != nil {
		c.e.log.Warn("delete stale conntrack entries; clients of UDP and SCTP ports may keep reaching a previous owner until their flows go idle",
			"why", strings.Join(why, "; "), "deleted", n, "err", err)
	} else {
		c.e.log.Debug("stale conntrack entries deleted", "why", strings.Join(why, "; "), "filters", len(fs), "deleted", n, "took", time.Since(start))
	}
	c.mu.Lock()
	for _, a := range addrs {
		if c.pending[a]--; c.pending[a] <= 0 {
			delete(c.pending, a)
		}
	}
	c.mu.Unlock()
}

// waitAddr returns once no cleanup of addr is queued or running: an
// address is plumbed again only after the flows of its previous owner are
// gone.
func (c *flowCleaner) waitAddr(a netip.Addr) {
	c.mu.Lock()
	n := c.pending[a]
	c.mu.Unlock()
	if n > 0 {
		c.flush()
	}
}

func (c *flowCleaner) stop() {
	close(c.done)
	<-c.stopped
}
