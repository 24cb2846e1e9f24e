package dns

import (
	"net"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// ServeDNS answers one query that arrived on this network's listener.
func (e *netEntry) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	e.srv.respond(w, r, func(src netip.Addr, tcp bool) *mdns.Msg { return e.srv.answer(e, src, tcp, r) })
}

// respond writes the reply answer builds for a query from src: with OPT
// when the query had one, truncated to the client's UDP size, compressed.
func (s *Server) respond(w mdns.ResponseWriter, r *mdns.Msg, answer func(src netip.Addr, tcp bool) *mdns.Msg) {
	s.stats.queries.Add(1)
	src, tcp := remote(w.RemoteAddr())
	m := answer(src, tcp)
	// RFC 6891 §6.1.1: a query with OPT gets a reply with OPT.
	if r.IsEdns0() != nil && m.IsEdns0() == nil {
		m.SetEdns0(ednsSize, false)
	}
	if !tcp {
		m.Truncate(udpSize(r))
	}
	// After Truncate, which clears Compress when the uncompressed answer
	// fits: every answer is compressed, over TCP too.
	m.Compress = true
	s.stats.rcode(m.Rcode)
	_ = w.WriteMsg(m) // a client that went away is not our problem
}

// view is one network as a query sees it: its entry and its configuration,
// loaded once per query.
type view struct {
	e   *netEntry
	cfg *Network
}

// answer builds the reply to r from a client at src of a network's
// listener. It never returns nil.
func (s *Server) answer(e *netEntry, src netip.Addr, tcp bool, r *mdns.Msg) *mdns.Msg {
	cfg := e.cfg.Load()
	if cfg == nil || !src.IsValid() || !cfg.contains(src) {
		s.stats.refusedSource.Add(1)
		return reply(r, mdns.RcodeRefused)
	}
	return s.resolve([]view{{e, cfg}}, tcp, r)
}

// resolve answers r from the zones of nets (one network's listener: one;
// a sandbox's: all of its networks, see answerViews), and forwards what is
// not pontoon's unless every one of nets is internal.
func (s *Server) resolve(nets []view, tcp bool, r *mdns.Msg) *mdns.Msg {
	if r.Opcode != mdns.OpcodeQuery {
		return reply(r, mdns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		return reply(r, mdns.RcodeFormatError)
	}
	internal := true
	for _, v := range nets {
		internal = internal && v.cfg.Internal
	}
	if m, ok := answerViews(nets, internal, r); ok {
		s.stats.local.Add(1)
		return m
	}
	if internal {
		s.stats.refusedInternal.Add(1)
		m := reply(r, mdns.RcodeRefused)
		m.RecursionAvailable = false
		return m
	}
	return s.forward(r, tcp)
}

func reply(r *mdns.Msg, rcode int) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetRcode(r, rcode)
	return m
}

func remote(a net.Addr) (ip netip.Addr, tcp bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
		tcp = true
	}
	return ip.Unmap(), tcp
}

// ednsSize is the UDP payload size pontoon advertises (the DNS flag day
// 2020 value: no IP fragmentation on common paths).
const ednsSize = 1232

// udpSize is the largest UDP answer the client accepts (RFC 6891).
func udpSize(r *mdns.Msg) int {
	if opt := r.IsEdns0(); opt != nil && int(opt.UDPSize()) > mdns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return mdns.MinMsgSize
}
