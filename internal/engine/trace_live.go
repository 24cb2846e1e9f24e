package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/probe"
	"pontoon/internal/trace"
)

// How long a live trace waits once the probe's fate is known (an answer, a
// drop, the last predicted chain passed) for the trace events still in
// flight: they are sent as the packet moves, so a few ms is plenty.
const (
	traceSettle = 20 * time.Millisecond
	traceQuiet  = 50 * time.Millisecond
)

// traceLive sends a real probe from the trace's source (or, from the LAN,
// waits for the packet to arrive), with nftables tracing armed for its
// 5-tuple alone, and compares the kernel's trace events with the
// prediction (trace.Compare). The trace tables are deleted when it
// returns, also when ctx ends early (the client went away).
func (e *Engine) traceLive(ctx context.Context, top *trace.Topology, pr trace.Probe, tr *model.Trace, wait time.Duration) {
	live := &model.TraceLive{Events: []string{}, Tables: []string{}}
	tr.Live = live
	start := time.Now()
	defer func() { live.TookMS = float64(time.Since(start).Microseconds()) / 1000 }()
	fail := func(format string, args ...any) {
		live.Answer, live.Error, live.Agrees = "not sent", fmt.Sprintf(format, args...), false
	}
	tracer, ok := e.fw.(firewall.Tracer)
	if !ok || !tracer.CanTrace() {
		fail("live tracing needs the kernel's firewall")
		return
	}
	src, _ := netip.ParseAddr(tr.Probe.Src)
	dst, _ := netip.ParseAddr(tr.Probe.Dst)
	match := firewall.TraceMatch{Dst: dst, Proto: pr.Proto, DPort: pr.Port}
	var p *probe.Probe
	if pr.FromLAN.IsValid() {
		match.Src = pr.FromLAN
		live.Probe = fmt.Sprintf("waiting up to %s for %s from %s to %s", wait, protoPort(pr), pr.FromLAN, dst)
	} else {
		spec := probe.Spec{Src: src, Dst: dst, Proto: pr.Proto, Port: pr.Port}
		if pr.From != "host" {
			ep := top.SourceEndpoint(pr.From, dst)
			if ep == nil {
				fail("sandbox %s has no endpoint to send from", pr.From)
				return
			}
			spec.Netns, spec.Ino = ep.Netns, ep.NetnsIno
			spec.Forged = pr.SrcIP.IsValid() && pr.SrcIP != ep.IP
		}
		var err error
		if p, err = probe.Open(spec); err != nil {
			fail("%v", err)
			return
		}
		defer p.Close()
		match.Src, match.SPort, match.ICMPID = src, p.SrcPort, p.ICMPID
		live.Probe = p.Describe()
		tr.Probe.SrcPort = p.SrcPort
	}
	sess, err := tracer.StartTrace(ctx, match)
	if err != nil {
		fail("%v", err)
		return
	}
	defer func() {
		if err := sess.Stop(); err != nil {
			e.log.Warn("trace tables were not removed: the next daemon start sweeps them", "table", sess.Name(), "err", err)
		}
	}()

	answers := make(chan [2]string, 1)
	if p != nil {
		if err := p.Send(); err != nil {
			answers <- [2]string{probe.AnswerUnreachable, "not sent: " + err.Error()}
		} else {
			go func() {
				a, d := p.Wait(ctx, wait)
				answers <- [2]string{a, d}
			}()
		}
	}
	evs, answer := collect(ctx, sess, tr, match, answers, wait)
	if ctx.Err() != nil {
		live.Error = "interrupted"
	}
	live.Answer = answer[0]
	if answer[1] != "" {
		live.Answer += " (" + answer[1] + ")"
	}
	if pr.FromLAN.IsValid() && len(evs) == 0 {
		live.Answer = fmt.Sprintf("no packet from %s arrived within %s", pr.FromLAN, wait)
	}
	if err := sess.Err(); err != nil {
		live.Error = strings.TrimPrefix(live.Error+"; "+err.Error(), "; ")
	}
	names := e.ifNames()
	obs := traversals(sess, evs, names)
	for _, o := range obs {
		live.Events = append(live.Events, o.Text())
	}
	trace.Compare(tr, obs, answer[0])
	if pr.FromLAN.IsValid() && len(evs) == 0 {
		live.Agrees = false
		live.Differences = append(live.Differences, live.Answer)
	}
}

func protoPort(pr trace.Probe) string {
	if pr.Port == 0 {
		return pr.Proto
	}
	return fmt.Sprintf("%d/%s", pr.Port, pr.Proto)
}

// collect reads the session's events until the probe's fate is known and
// the events in flight arrived, or wait passed, or ctx ended. It keeps the
// events of the probe alone: the first event of the trace table's own
// chain names it (trace id, IPv4 id, ports); later chains are matched on
// the IPv4 id and protocol, plus the source port or ICMP id, which NAT
// leaves alone here.
func collect(ctx context.Context, sess *firewall.TraceSession, tr *model.Trace, m firewall.TraceMatch, answers chan [2]string,
	wait time.Duration) ([]firewall.TraceEvent, [2]string) {
	var (
		out      []firewall.TraceEvent
		answer   = [2]string{probe.AnswerNone, ""}
		deadline = time.NewTimer(wait + traceSettle)
		settle   <-chan time.Time
		ours     = map[uint32]bool{}
		anchored bool
		ipID     uint16
		l4       uint16 // source port or ICMP id
	)
	defer deadline.Stop()
	if answers == nil {
		answers = make(chan [2]string)
	}
	last := lastNftHop(tr)
	for {
		select {
		case <-ctx.Done():
			return out, answer
		case <-deadline.C:
			return out, answer
		case <-settle:
			return out, answer
		case a := <-answers:
			answer = a
			settle = time.After(traceSettle)
		case ev, ok := <-sess.Events():
			if !ok {
				return out, answer
			}
			_, _, proto, id, hasHdr := ev.IPv4()
			switch {
			case !anchored && ev.Table == sess.Name() && hasHdr:
				// The trace table's own chain: only the probe matches it.
				anchored, ipID, l4 = true, id, l4Key(ev, m.Proto)
				ours[ev.ID] = true
			case anchored && hasHdr:
				if proto == protoNumber(m.Proto) && (ipID == 0 || id == ipID) && l4Key(ev, m.Proto) == l4 {
					ours[ev.ID] = true
				} else if ours[ev.ID] {
					delete(ours, ev.ID) // the id now names another packet
				}
			}
			if !ours[ev.ID] {
				continue
			}
			out = append(out, ev)
			if ev.Verdict == "drop" {
				settle = time.After(traceSettle)
			} else if last != "" && string(ev.Family)+" "+ev.Table+" "+ev.Chain == last && settle == nil {
				settle = time.After(traceQuiet)
			}
		}
	}
}

func protoNumber(p string) byte {
	return map[string]byte{"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}[p]
}

// l4Key is what identifies the probe in its transport header: the source
// port, or the ICMP echo identifier.
func l4Key(ev firewall.TraceEvent, proto string) uint16 {
	if proto == "icmp" {
		if len(ev.Transport) >= 6 {
			return uint16(ev.Transport[4])<<8 | uint16(ev.Transport[5])
		}
		return 0
	}
	sport, _, _ := ev.Ports()
	return sport
}

// lastNftHop is the last chain the prediction has the probe cross.
func lastNftHop(tr *model.Trace) string {
	for i := len(tr.Hops) - 1; i >= 0; i-- {
		if h := tr.Hops[i]; h.Kind == model.HopNft {
			return h.Family + " " + h.Table + " " + h.Chain
		}
	}
	return ""
}

// traversals groups the probe's events by base chain: each base chain's
// first event carries the packet's headers; rule events of regular chains
// it jumps to follow it.
func traversals(sess *firewall.TraceSession, evs []firewall.TraceEvent, names func(int) string) []trace.Traversal {
	var out []trace.Traversal
	cur := map[uint32]int{} // trace id → index of its open traversal
	var prevDst netip.Addr
	var prevDPort uint16
	var prevSrc netip.Addr
	for _, ev := range evs {
		if ev.Table == sess.Name() {
			if ev.Network != nil {
				prevSrc, prevDst, _, _, _ = ev.IPv4()
				_, prevDPort, _ = ev.Ports()
			}
			continue // the trace's own table
		}
		i, open := cur[ev.ID]
		if ev.Network != nil || !open || out[i].Family != string(ev.Family) || out[i].Table != ev.Table {
			ci := sess.Chain(ev.Family, ev.Table, ev.Chain)
			t := trace.Traversal{Family: string(ev.Family), Table: ev.Table, Chain: ev.Chain, Hook: string(ci.Hook), Priority: ci.Priority,
				IIF: names(ev.IIF), OIF: names(ev.OIF)}
			// A NAT rewrite shows in the headers of the next chain.
			if s, d, _, _, ok := ev.IPv4(); ok {
				_, dp, _ := ev.Ports()
				if len(out) > 0 && prevDst.IsValid() && (d != prevDst || dp != prevDPort) && out[len(out)-1].NAT == "" {
					out[len(out)-1].NAT = fmt.Sprintf("dnat %s → %s", netip.AddrPortFrom(prevDst, prevDPort), netip.AddrPortFrom(d, dp))
				}
				if len(out) > 0 && prevSrc.IsValid() && s != prevSrc && out[len(out)-1].NAT == "" {
					out[len(out)-1].NAT = fmt.Sprintf("masquerade %s → %s", prevSrc, s)
				}
				prevSrc, prevDst, prevDPort = s, d, dp
			}
			out = append(out, t)
			i = len(out) - 1
			cur[ev.ID] = i
		}
		t := &out[i]
		switch ev.Type {
		case "rule":
			if ev.Handle == 0 {
				continue // the chain's first event: the packet's headers, no rule
			}
			t.Rules = append(t.Rules, trace.LiveRule{Chain: ev.Chain, Handle: ev.Handle, Verdict: ev.Verdict,
				Comment: sess.RuleComment(ev.Family, ev.Table, ev.Chain, ev.Handle)})
			if v := ev.Verdict; v == "accept" || v == "drop" || v == "stolen" || v == "queue" {
				t.Verdict = v
			}
		case "policy":
			t.Policy, t.Verdict = true, ev.Verdict
		}
	}
	return out
}

// ifNames resolves host ifindexes for the trace's text (0: none).
func (e *Engine) ifNames() func(int) string {
	l, lookups := e.link.(link.Lookups)
	cache := map[int]string{0: ""}
	return func(i int) string {
		if n, ok := cache[i]; ok {
			return n
		}
		n := fmt.Sprintf("ifindex %d", i)
		if lookups {
			if name, err := l.LinkName(i); err == nil {
				n = name
			}
		}
		cache[i] = n
		return n
	}
}

// sweepTraces deletes trace tables a daemon that died mid-trace left.
func (e *Engine) sweepTraces(ctx context.Context) error {
	t, ok := e.fw.(firewall.Tracer)
	if !ok {
		return nil
	}
	n, err := t.SweepTraces(ctx)
	if err != nil {
		return fmt.Errorf("trace tables: %w", err)
	}
	if n > 0 {
		e.log.Info("deleted trace tables left by an interrupted trace", "tables", n)
	}
	return nil
}
