package dns

import (
	"strconv"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Stats are the resolver's counters since New, over all networks.
type Stats struct {
	Queries uint64 `json:"queries"`
	// Answers counts replies by rcode name ("NOERROR", "NXDOMAIN", …).
	Answers map[string]uint64 `json:"answers"`
	// Local: answered from pontoon's records (names, NXDOMAIN, PTR).
	Local uint64 `json:"local"`
	// RefusedSource: REFUSED because the source was outside the subnet
	// (or, inside a sandbox, none of its networks is configured).
	RefusedSource uint64 `json:"refused_source"`
	// RefusedInternal: outside names asked on an internal network.
	RefusedInternal uint64 `json:"refused_internal"`
	// Forwarded: queries sent upstream; ForwardFailed of them got no
	// useful answer (SERVFAIL or the upstream's own failure passed on).
	Forwarded     uint64 `json:"forwarded"`
	ForwardFailed uint64 `json:"forward_failed"`
	// UpstreamErrors: failed attempts (timeouts, refused connections,
	// SERVFAIL/REFUSED answers) — one query may count several.
	UpstreamErrors uint64 `json:"upstream_errors"`
	// TCPRetries: truncated UDP answers asked again over TCP.
	TCPRetries uint64 `json:"tcp_retries"`
	// ForwardLatency: time from the query to the upstream answer that was
	// passed on (failover included), for successful forwards.
	ForwardLatency Latency  `json:"forward_latency"`
	Upstreams      []string `json:"upstreams"`
	// Listening: networks with a running listener on each of their
	// gateways (a network missing here has one SetNetworks could not bind).
	Listening []string `json:"listening"`
	// Sandboxes: sandboxes with a resolver of their own (SetSandbox).
	Sandboxes int `json:"sandboxes"`
}

// Latency is a histogram in the Prometheus style: cumulative buckets by
// upper bound in seconds (the +Inf bucket is Count), with quantiles
// estimated by linear interpolation inside a bucket.
type Latency struct {
	Count      uint64   `json:"count"`
	SumSeconds float64  `json:"sum_seconds"`
	Buckets    []Bucket `json:"buckets"`
	P50Seconds float64  `json:"p50_seconds"`
	P99Seconds float64  `json:"p99_seconds"`
}

// Bucket counts observations ≤ LE seconds.
type Bucket struct {
	LE    float64 `json:"le"`
	Count uint64  `json:"count"`
}

var latencyBounds = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
}

type histogram struct {
	buckets [14]atomic.Uint64 // len(latencyBounds)+1, last is +Inf
	count   atomic.Uint64
	sumNs   atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNs.Add(uint64(d))
	h.count.Add(1)
}

func (h *histogram) snapshot() Latency {
	l := Latency{Count: h.count.Load(), SumSeconds: time.Duration(h.sumNs.Load()).Seconds()}
	raw := make([]uint64, len(h.buckets))
	var total uint64
	for i := range h.buckets {
		raw[i] = h.buckets[i].Load()
		total += raw[i]
	}
	var cum uint64
	for i, b := range latencyBounds {
		cum += raw[i]
		l.Buckets = append(l.Buckets, Bucket{LE: b.Seconds(), Count: cum})
	}
	l.P50Seconds = quantile(raw, total, 0.50)
	l.P99Seconds = quantile(raw, total, 0.99)
	return l
}

func quantile(raw []uint64, total uint64, q float64) float64 {
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum float64
	for i, n := range raw {
		if n == 0 {
			continue
		}
		if cum+float64(n) >= rank {
			if i == len(latencyBounds) { // +Inf: the largest finite bound
				return latencyBounds[i-1].Seconds()
			}
			lo := 0.0
			if i > 0 {
				lo = latencyBounds[i-1].Seconds()
			}
			hi := latencyBounds[i].Seconds()
			return lo + (hi-lo)*(rank-cum)/float64(n)
		}
		cum += float64(n)
	}
	return latencyBounds[len(latencyBounds)-1].Seconds()
}

type counters struct {
	queries, local, refusedSource, refusedInternal atomic.Uint64
	forwarded, forwardFailed, upstreamErrors       atomic.Uint64
	tcpRetries                                     atomic.Uint64
	rcodes                                         [16]atomic.Uint64
	latency                                        histogram
}

func (c *counters) rcode(rc int) {
	if rc >= 0 && rc < len(c.rcodes) {
		c.rcodes[rc].Add(1)
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		Queries:         c.queries.Load(),
		Answers:         map[string]uint64{},
		Local:           c.local.Load(),
		RefusedSource:   c.refusedSource.Load(),
		RefusedInternal: c.refusedInternal.Load(),
		Forwarded:       c.forwarded.Load(),
		ForwardFailed:   c.forwardFailed.Load(),
		UpstreamErrors:  c.upstreamErrors.Load(),
		TCPRetries:      c.tcpRetries.Load(),
		ForwardLatency:  c.latency.snapshot(),
		Upstreams:       s.Upstreams(),
		Listening:       s.listening(),
		Sandboxes:       s.sandboxCount(),
	}
	for rc := range c.rcodes {
		if n := c.rcodes[rc].Load(); n > 0 {
			name, ok := mdns.RcodeToString[rc]
			if !ok {
				name = "RCODE" + strconv.Itoa(rc)
			}
			st.Answers[name] = n
		}
	}
	return st
}
