package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Connection tracking.
//
// The kernel decides NAT once per flow, on its first packet, and remembers
// the decision in a conntrack entry. For UDP and SCTP a client that keeps
// sending refreshes the entry for ever, so an entry made before a port
// mapping existed (to the host itself), or one that DNATs to a sandbox that
// is gone, keeps steering the client's packets to the wrong place. The
// engine deletes such entries with DeleteConntrack.
//
// vishvananda/netlink's ConntrackDeleteFilters cannot be used as is: its
// flow parser reads the ports of TCP and UDP tuples only, so an SCTP flow
// reaches a filter with ports 0 and a port filter never matches it. The
// dump and the deletes here are the same netlink exchanges it makes (one
// IPCTNL_MSG_CT_GET dump, one IPCTNL_MSG_CT_DELETE per match, echoing the
// entry's tuple, ID and zone), with a tuple parser that reads every
// protocol's ports; matching is its ConntrackFilter.

// ConntrackFilter selects conntrack entries (IPv4 and IPv6) of the host
// namespace. A filter with an address matches entries of that address's
// family only; one without matches both tables.
// Every field that is set must match; unset fields match anything. A
// filter must set at least one of Proto, OrigSrc, OrigDst and ReplySrc.
type ConntrackFilter struct {
	// Proto is "tcp", "udp" or "sctp"; "" matches every protocol.
	Proto string
	// OrigSrc and OrigDst are the addresses of the original direction
	// (as the first packet had them, before NAT).
	OrigSrc netip.Addr
	OrigDst netip.Addr
	// OrigDstPort to OrigDstPortEnd (inclusive) is the range of original
	// destination ports; OrigDstPortEnd 0 means OrigDstPort alone, and
	// OrigDstPort 0 any port. Needs Proto.
	OrigDstPort    uint16
	OrigDstPortEnd uint16
	// ReplySrc is the reply direction's source: the address that answers
	// (after DNAT, the sandbox the flow was sent to).
	ReplySrc netip.Addr
	// KeepReplySrc exempts entries whose reply source is one of these
	// addresses (an endpoint's, one per family): those flows already go
	// where they should.
	KeepReplySrc []netip.Addr
}

// String describes the filter in conntrack(8)'s terms, for logs and tests.
func (f ConntrackFilter) String() string {
	var s string
	add := func(k, v string) {
		if s != "" {
			s += " "
		}
		s += k + " " + v
	}
	if f.Proto != "" {
		add("-p", f.Proto)
	}
	if f.OrigSrc.IsValid() {
		add("--orig-src", f.OrigSrc.String())
	}
	if f.OrigDst.IsValid() {
		add("--orig-dst", f.OrigDst.String())
	}
	if lo, hi := f.portRange(); lo != 0 {
		if lo == hi {
			add("--dport", fmt.Sprint(lo))
		} else {
			add("--dport", fmt.Sprintf("%d-%d", lo, hi))
		}
	}
	if f.ReplySrc.IsValid() {
		add("--reply-src", f.ReplySrc.String())
	}
	for _, k := range f.KeepReplySrc {
		add("except --reply-src", k.String())
	}
	return s
}

func (f ConntrackFilter) portRange() (lo, hi uint16) {
	if f.OrigDstPortEnd == 0 {
		return f.OrigDstPort, f.OrigDstPort
	}
	return f.OrigDstPort, f.OrigDstPortEnd
}

var protoNumbers = map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// Validate refuses filters that would match more than meant: an empty one
// (every entry), ports without a protocol, an unknown protocol, a reversed
// range, addresses of two families in one filter.
func (f ConntrackFilter) Validate() error {
	if f.Proto != "" {
		if _, ok := protoNumbers[f.Proto]; !ok {
			return fmt.Errorf("conntrack filter %q: unknown protocol %q (want tcp, udp or sctp)", f, f.Proto)
		}
	}
	if f.Proto == "" && !f.OrigSrc.IsValid() && !f.OrigDst.IsValid() && !f.ReplySrc.IsValid() {
		return fmt.Errorf("conntrack filter %q selects every entry: give a protocol or an address", f)
	}
	if f.OrigDstPort == 0 && f.OrigDstPortEnd != 0 {
		return fmt.Errorf("conntrack filter %q: a port range needs its first port", f)
	}
	if lo, hi := f.portRange(); lo != 0 && f.Proto == "" {
		return fmt.Errorf("conntrack filter %q: ports need a protocol", f)
	} else if hi < lo {
		return fmt.Errorf("conntrack filter %q: port range %d-%d is reversed", f, lo, hi)
	}
	fam := 0
	for _, a := range []netip.Addr{f.OrigSrc, f.OrigDst, f.ReplySrc} {
		switch {
		case !a.IsValid():
		case a.Is4In6() || a.Zone() != "":
			return fmt.Errorf("conntrack filter %q: %s is not a plain IPv4 or IPv6 address", f, a)
		case fam == 0:
			fam = a.BitLen()
		case fam != a.BitLen():
			return fmt.Errorf("conntrack filter %q mixes IPv4 and IPv6 addresses: an entry has one family", f)
		}
	}
	return nil
}

// families returns the address families (AF_INET, AF_INET6) whose tables
// the filter can match.
func (f ConntrackFilter) families() []uint8 {
	for _, a := range []netip.Addr{f.OrigSrc, f.OrigDst, f.ReplySrc} {
		switch {
		case a.Is4():
			return []uint8{unix.AF_INET}
		case a.Is6():
			return []uint8{unix.AF_INET6}
		}
	}
	return []uint8{unix.AF_INET, unix.AF_INET6}
}

// flowMatcher is a ConntrackFilter in vishvananda/netlink's terms: its
// ConntrackFilter checks protocol and addresses; ranges and the exemption
// are checked here.
type flowMatcher struct {
	base   *netlink.ConntrackFilter
	lo, hi uint16
	keep   []net.IP
}

func newFlowMatcher(f ConntrackFilter) (*flowMatcher, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	m := &flowMatcher{base: &netlink.ConntrackFilter{}}
	m.lo, m.hi = f.portRange()
	if f.Proto != "" {
		if err := m.base.AddProtocol(protoNumbers[f.Proto]); err != nil {
			return nil, err
		}
	}
	for _, a := range []struct {
		t  netlink.ConntrackFilterType
		ip netip.Addr
	}{{netlink.ConntrackOrigSrcIP, f.OrigSrc}, {netlink.ConntrackOrigDstIP, f.OrigDst}, {netlink.ConntrackReplySrcIP, f.ReplySrc}} {
		if a.ip.IsValid() {
			if err := m.base.AddIP(a.t, a.ip.AsSlice()); err != nil {
				return nil, err
			}
		}
	}
	for _, k := range f.KeepReplySrc {
		m.keep = append(m.keep, k.AsSlice())
	}
	return m, nil
}

func (m *flowMatcher) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if !m.base.MatchConntrackFlow(flow) {
		return false
	}
	if m.lo != 0 && (flow.Forward.DstPort < m.lo || flow.Forward.DstPort > m.hi) {
		return false
	}
	for _, k := range m.keep {
		if k.Equal(flow.Reverse.SrcIP) {
			return false
		}
	}
	return true
}

// ctEntry is one dumped conntrack entry: the parsed flow, and the raw
// attributes a delete request names it by.
type ctEntry struct {
	flow netlink.ConntrackFlow
	key  []byte // CTA_TUPLE_ORIG, CTA_ID and CTA_ZONE as dumped
}

// DeleteConntrack deletes the entries that match any of the filters; see
// Interface.
func (n *netlinkLinks) DeleteConntrack(filters []ConntrackFilter) (int, error) {
	if len(filters) == 0 {
		return 0, nil
	}
	ms := make([]*flowMatcher, 0, len(filters))
	var fams []uint8 // the tables to read, each once
	for _, f := range filters {
		m, err := newFlowMatcher(f)
		if err != nil {
			return 0, err
		}
		ms = append(ms, m)
		for _, fam := range f.families() {
			if !slices.Contains(fams, fam) {
				fams = append(fams, fam)
			}
		}
	}
	n.ctMu.Lock()
	defer n.ctMu.Unlock()
	var entries []ctEntry
	for _, fam := range fams {
		es, err := n.dumpConntrack(fam)
		if err != nil {
			return 0, err
		}
		entries = append(entries, es...)
	}
	deleted, failed := 0, 0
	var firstErr error
	for i := range entries {
		ent := &entries[i]
		matched := false
		for _, m := range ms {
			if m.MatchConntrackFlow(&ent.flow) {
				matched = true
				break
			}
		}
		if !matched {
			continue
		}
		req := n.ctRequest(ent.flow.FamilyType, nl.IPCTNL_MSG_CT_DELETE, unix.NLM_F_ACK)
		req.AddRawData(ent.key)
		if _, err := req.Execute(unix.NETLINK_NETFILTER, 0); err == nil || errors.Is(err, fs.ErrNotExist) {
			deleted++ // ENOENT: it expired, or someone else deleted it
		} else {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if failed > 0 {
		return deleted, fmt.Errorf("delete %d of %d matching conntrack entries failed: %w", failed, failed+deleted, firstErr)
	}
	return deleted, nil
}

func (n *netlinkLinks) ctRequest(family uint8, msg, flags int) *nl.NetlinkRequest {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   unix.SizeofNlMsghdr,
			Type:  uint16(int(netlink.ConntrackTable)<<8 | msg),
			Flags: unix.NLM_F_REQUEST | uint16(flags),
		},
		Sockets: n.ct,
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: family, Version: nl.NFNETLINK_V0})
	return req
}

// dumpConntrack reads the host namespace's conntrack table of one family
// (AF_INET or AF_INET6). A dump the kernel marks interrupted is read again
// (a few times at most).
func (n *netlinkLinks) dumpConntrack(family uint8) ([]ctEntry, error) {
	msgs, err := retryDump(func() ([][]byte, error) {
		return n.ctRequest(family, nl.IPCTNL_MSG_CT_GET, unix.NLM_F_DUMP).Execute(unix.NETLINK_NETFILTER, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("dump conntrack table: %w", err)
	}
	out := make([]ctEntry, 0, len(msgs))
	for _, m := range msgs {
		if e, ok := parseCTEntry(m); ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// parseCTEntry parses one IPCTNL_MSG_CT_NEW message of a dump (nfgenmsg,
// then attributes).
func parseCTEntry(msg []byte) (ctEntry, bool) {
	var e ctEntry
	if len(msg) < nl.SizeofNfgenmsg {
		return e, false
	}
	e.flow.FamilyType = msg[0]
	ok := false
	walkAttrs(msg[nl.SizeofNfgenmsg:], func(typ uint16, val, raw []byte) {
		switch typ {
		case nl.CTA_TUPLE_ORIG:
			ok = parseTuple(val, &e.flow.Forward)
			e.key = append(e.key, raw...)
		case nl.CTA_TUPLE_REPLY:
			parseTuple(val, &e.flow.Reverse)
		case nl.CTA_ID:
			e.key = append(e.key, raw...)
		case nl.CTA_ZONE:
			e.key = append(e.key, raw...)
			if len(val) >= 2 {
				e.flow.Zone = binary.BigEndian.Uint16(val)
			}
		}
	})
	return e, ok
}

// parseTuple reads a CTA_TUPLE_* attribute: addresses, protocol and, for
// every protocol that has them, ports.
func parseTuple(b []byte, t *netlink.IPTuple) bool {
	hasIP := false
	walkAttrs(b, func(typ uint16, val, _ []byte) {
		switch typ {
		case nl.CTA_TUPLE_IP:
			walkAttrs(val, func(typ uint16, val, _ []byte) {
				switch typ {
				case nl.CTA_IP_V4_SRC, nl.CTA_IP_V6_SRC:
					t.SrcIP, hasIP = net.IP(val), true
				case nl.CTA_IP_V4_DST, nl.CTA_IP_V6_DST:
					t.DstIP = net.IP(val)
				}
			})
		case nl.CTA_TUPLE_PROTO:
			walkAttrs(val, func(typ uint16, val, _ []byte) {
				switch {
				case typ == nl.CTA_PROTO_NUM && len(val) >= 1:
					t.Protocol = val[0]
				case typ == nl.CTA_PROTO_SRC_PORT && len(val) >= 2:
					t.SrcPort = binary.BigEndian.Uint16(val)
				case typ == nl.CTA_PROTO_DST_PORT && len(val) >= 2:
					t.DstPort = binary.BigEndian.Uint16(val)
				}
			})
		}
	})
	return hasIP
}

// walkAttrs calls fn for each netlink attribute in b with its type (flags
// masked off), its value and its whole encoding (header, value, padding).
// A truncated attribute ends the walk.
func walkAttrs(b []byte, fn func(typ uint16, val, raw []byte)) {
	for len(b) >= unix.SizeofNlAttr {
		l := int(nl.NativeEndian().Uint16(b[0:2]))
		typ := nl.NativeEndian().Uint16(b[2:4]) & nl.NLA_TYPE_MASK
		if l < unix.SizeofNlAttr || l > len(b) {
			return
		}
		next := min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b))
		fn(typ, b[unix.SizeofNlAttr:l], b[:next])
		b = b[next:]
	}
}
