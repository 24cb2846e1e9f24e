package dns

import (
	"net"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// ServeDNS answers one query that arrived on this network's listener.
func (e *netEntry) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	s := e.srv
	s.stats.queries.Add(1)
	src, tcp := remote(w.RemoteAddr())
	m := s.answer(e, src, tcp, r)
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

// answer builds the reply to r from a client at src. It never returns nil.
func (s *Server) answer(e *netEntry, src netip.Addr, tcp bool, r *mdns.Msg) *mdns.Msg {
	cfg := e.cfg.Load()
	if cfg == nil || !src.IsValid() || !cfg.contains(src) {
		s.stats.refusedSource.Add(1)
		return reply(r, mdns.RcodeRefused)
	}
	if r.Opcode != mdns.OpcodeQuery {
		return reply(r, mdns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		return reply(r, mdns.RcodeFormatError)
	}
	e.zmu.RLock()
	m, ok := answerLocal(e.zone, cfg, r)
	e.zmu.RUnlock()
	if ok {
		s.stats.local.Add(1)
		return m
	}
	if cfg.Internal {
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
