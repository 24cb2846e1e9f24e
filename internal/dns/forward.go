package dns

import (
	"context"
	"errors"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// forward sends r to the upstreams, starting with the one that answered
// last, each attempt limited by Options.Timeout, and returns the first
// useful answer. An upstream answering SERVFAIL or REFUSED is skipped (its
// answer is returned if nobody does better); a truncated UDP answer is asked
// again over TCP from the same upstream. When no upstream answers, the
// client gets SERVFAIL — at once when they refuse connections, after one
// Timeout per upstream when they are silent.
func (s *Server) forward(r *mdns.Msg, tcp bool) *mdns.Msg {
	s.stats.forwarded.Add(1)
	select {
	case s.inflight <- struct{}{}:
		defer func() { <-s.inflight }()
	default:
		s.stats.forwardFailed.Add(1)
		return reply(r, mdns.RcodeServerFailure)
	}
	ups := *s.upstreams.Load()
	if len(ups) == 0 {
		s.stats.forwardFailed.Add(1)
		return reply(r, mdns.RcodeServerFailure)
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	// A fresh ID: the client's may be predictable, and the upstream socket
	// is ours.
	q := r.Copy()
	q.Id = mdns.Id()
	start := int(s.preferred.Load()) % len(ups)
	t0 := time.Now()
	var fallback *mdns.Msg
	for i := range ups {
		idx := (start + i) % len(ups)
		up := ups[idx]
		if (*s.own.Load())[up] {
			continue
		}
		resp, err := s.exchange(q, network, up)
		if err == nil && resp.Truncated && network == "udp" {
			s.stats.tcpRetries.Add(1)
			if full, terr := s.exchange(q, "tcp", up); terr == nil {
				resp = full
			} else {
				s.log.Debug("dns: tcp retry failed, passing on the truncated answer", "upstream", up, "err", terr)
			}
		}
		if err != nil {
			s.stats.upstreamErrors.Add(1)
			s.log.Debug("dns: upstream failed", "upstream", up, "name", r.Question[0].Name, "err", err)
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			s.stats.upstreamErrors.Add(1)
			fallback = resp
			continue
		}
		s.preferred.Store(uint32(idx))
		s.stats.latency.observe(time.Since(t0))
		resp.Id = r.Id
		return resp
	}
	s.stats.forwardFailed.Add(1)
	if fallback != nil {
		fallback.Id = r.Id
		return fallback
	}
	return reply(r, mdns.RcodeServerFailure)
}

var errWrongQuestion = errors.New("answer does not match the question")

func (s *Server) exchange(q *mdns.Msg, network, upstream string) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	conn, err := s.dial(ctx, network, upstream)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c := &mdns.Client{Net: network, Timeout: s.opts.Timeout, UDPSize: mdns.MaxMsgSize}
	resp, _, err := c.ExchangeWithConnContext(ctx, q, &mdns.Conn{Conn: conn})
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || resp.Question[0].Qtype != q.Question[0].Qtype ||
		!strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) {
		return nil, errWrongQuestion
	}
	return resp, nil
}

// UpstreamHealth is whether one upstream resolver answered a probe.
type UpstreamHealth struct {
	Upstream string
	RTT      time.Duration
	Err      error // nil: it answered (any answer, even REFUSED, is an answer)
}

// ProbeUpstreams asks every upstream for the root's NS records once (UDP,
// Options.Timeout each, all at once) and reports which answered. Nothing is
// cached or counted.
func (s *Server) ProbeUpstreams() []UpstreamHealth {
	ups := *s.upstreams.Load()
	out := make([]UpstreamHealth, len(ups))
	done := make(chan struct{}, len(ups))
	for i, u := range ups {
		go func() {
			defer func() { done <- struct{}{} }()
			q := new(mdns.Msg)
			q.SetQuestion(".", mdns.TypeNS)
			start := time.Now()
			_, err := s.exchange(q, "udp", u)
			out[i] = UpstreamHealth{Upstream: u, RTT: time.Since(start), Err: err}
		}()
	}
	for range ups {
		<-done
	}
	return out
}
