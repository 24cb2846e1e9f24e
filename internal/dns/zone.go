package dns

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// zone holds one network's names. Its owner (netEntry) changes it in
// place, one record at a time, under a write lock, and answers from it
// under a read lock: an attach or detach costs the same with 10 or 1000
// sandboxes on the network (rebuilding an immutable copy per change cost
// 0.02 ms with a few dozen records and 0.3–0.37 ms with 500).
type zone struct {
	name  string                  // lower-case network name
	names map[string][]netip.Addr // "db", "db.app" → sorted addresses
	ptr   map[netip.Addr]string   // address → "db.app."
}

func newZone(zname string) *zone {
	return &zone{name: zname, names: map[string][]netip.Addr{}, ptr: map[netip.Addr]string{}}
}

// set adds r: each of its names gets each of its addresses, and each
// address a PTR to its first name. None of r.IPs may be in the zone: unset
// the old record first.
func (z *zone) set(r Record) {
	names := recordNames(r)
	for _, ip := range r.IPs {
		for _, n := range names {
			z.add(n, ip)
			z.add(n+"."+z.name, ip)
		}
		if len(names) > 0 {
			z.ptr[ip] = names[0] + "." + z.name + "."
		}
	}
}

// unset removes r, as set added it.
func (z *zone) unset(r Record) {
	names := recordNames(r)
	for _, ip := range r.IPs {
		for _, n := range names {
			z.drop(n, ip)
			z.drop(n+"."+z.name, ip)
		}
		delete(z.ptr, ip)
	}
}

// add inserts ip into name's sorted addresses (once).
func (z *zone) add(name string, ip netip.Addr) {
	ips := z.names[name]
	i, found := slices.BinarySearchFunc(ips, ip, netip.Addr.Compare)
	if !found {
		z.names[name] = slices.Insert(ips, i, ip)
	}
}

func (z *zone) drop(name string, ip netip.Addr) {
	ips := z.names[name]
	i, found := slices.BinarySearchFunc(ips, ip, netip.Addr.Compare)
	switch {
	case !found:
	case len(ips) == 1:
		delete(z.names, name)
	default:
		z.names[name] = slices.Delete(ips, i, i+1)
	}
}

// recordNames returns the record's normalised names, sandbox name first.
func recordNames(r Record) []string {
	out := make([]string, 0, 1+len(r.Aliases))
	for _, n := range append([]string{r.Name}, r.Aliases...) {
		n = normName(n)
		if n == "" || slices.Contains(out, n) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// localTTL is the TTL, in seconds, of every record pontoon answers from a
// network's zone (A, AAAA, PTR, SOA) and the SOA minimum, i.e. how long a
// negative answer (NXDOMAIN, NODATA) may be cached (RFC 2308 §5: the lower
// of the two). The resolver itself always answers from the current state;
// the TTL only bounds how long a caching client (systemd-resolved, nscd,
// dnsmasq, a CoreDNS in the sandbox) keeps a removed name, or a name that
// did not exist yet. 5 s is the default of CoreDNS's kubernetes plugin:
// short enough that a detached sandbox's name is gone from every cache a
// few seconds later, long enough that a client opening a burst of
// connections asks once instead of once per connection (TTL 0 did that).
// Docker's 600 s would keep a removed name answering for ten minutes.
const localTTL uint32 = 5

// answerLocal answers q from the zone of network cfg. ok is false when the
// name is not pontoon's (it must be forwarded, or refused on an internal
// network).
func answerLocal(z *zone, cfg *Network, r *mdns.Msg) (m *mdns.Msg, ok bool) {
	q := r.Question[0]
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return nil, false
	}
	qn := normName(q.Name)
	if qn == "" {
		return nil, false // the root
	}
	m = new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = !cfg.Internal

	if ip, isRev := reverseAddr(qn); isRev {
		if !ip.IsValid() || !cfg.contains(ip) {
			return nil, false
		}
		target, found := z.ptr[ip]
		switch {
		case !found:
			m.Rcode = mdns.RcodeNameError
			m.Ns = []mdns.RR{z.soa()}
		case q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY:
			m.Answer = []mdns.RR{&mdns.PTR{Hdr: hdr(q.Name, mdns.TypePTR), Ptr: target}}
		default:
			m.Ns = []mdns.RR{z.soa()}
		}
		return m, true
	}

	if ips, found := z.names[qn]; found {
		for _, ip := range ips {
			switch {
			case ip.Is4() && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY):
				m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(q.Name, mdns.TypeA), A: ip.AsSlice()})
			case ip.Is6() && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY):
				m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(q.Name, mdns.TypeAAAA), AAAA: ip.AsSlice()})
			}
		}
		if len(m.Answer) == 0 && strings.HasSuffix(qn, "."+z.name) {
			m.Ns = []mdns.RR{z.soa()} // NODATA, negative-cacheable
		}
		return m, true
	}

	switch {
	case qn == z.name: // the zone apex exists
		if q.Qtype == mdns.TypeSOA {
			m.Answer = []mdns.RR{z.soa()}
		} else {
			m.Ns = []mdns.RR{z.soa()}
		}
	case strings.HasSuffix(qn, "."+z.name):
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{z.soa()}
	case !strings.Contains(qn, "."):
		// Single-label names are pontoon's: stub resolvers (musl with
		// ndots:0, busybox nslookup) send "db" as is, and no public name
		// is a single label worth forwarding.
		m.Rcode = mdns.RcodeNameError
	default:
		return nil, false
	}
	return m, true
}

// answerViews answers r from the zones of nets, each read under its lock,
// as answerLocal does for one network; ok is false when the name is none of
// theirs. Several networks (a sandbox's) answer as one: a name that exists
// on any of them exists (NOERROR wins over NXDOMAIN), a name on several
// answers with the addresses of all (sorted, each once), and PTR answers
// for an address of any of them. internal: every one of nets is.
func answerViews(nets []view, internal bool, r *mdns.Msg) (m *mdns.Msg, ok bool) {
	for _, v := range nets {
		v.e.zmu.RLock()
		one, found := answerLocal(v.e.zone, v.cfg, r)
		v.e.zmu.RUnlock()
		switch {
		case !found:
		case m == nil:
			m = one
		default:
			m = mergeAnswers(m, one)
		}
	}
	if m == nil {
		return nil, false
	}
	m.RecursionAvailable = !internal
	return m, true
}

// mergeAnswers combines two networks' local answers to one question.
func mergeAnswers(a, b *mdns.Msg) *mdns.Msg {
	switch {
	case b.Rcode != mdns.RcodeSuccess:
		return a // a exists, or neither does
	case a.Rcode != mdns.RcodeSuccess:
		return b
	}
	a.Answer = append(a.Answer, b.Answer...)
	if len(a.Answer) == 0 {
		return a // NODATA on both
	}
	a.Ns = nil // no SOA of a NODATA next to answers
	slices.SortStableFunc(a.Answer, compareRR)
	a.Answer = slices.CompactFunc(a.Answer, func(x, y mdns.RR) bool { return compareRR(x, y) == 0 })
	return a
}

// compareRR orders the records of local answers (A, AAAA, PTR, all with
// the question's name as owner): by type, then address or target.
func compareRR(x, y mdns.RR) int {
	if c := cmp.Compare(x.Header().Rrtype, y.Header().Rrtype); c != 0 {
		return c
	}
	switch x := x.(type) {
	case *mdns.A:
		return slices.Compare(x.A.To4(), y.(*mdns.A).A.To4())
	case *mdns.AAAA:
		return slices.Compare(x.AAAA.To16(), y.(*mdns.AAAA).AAAA.To16())
	case *mdns.PTR:
		return cmp.Compare(x.Ptr, y.(*mdns.PTR).Ptr)
	}
	return cmp.Compare(x.String(), y.String())
}

func hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: localTTL}
}

func (z *zone) soa() mdns.RR {
	apex := z.name + "."
	return &mdns.SOA{
		Hdr:     hdr(apex, mdns.TypeSOA),
		Ns:      "ns." + apex,
		Mbox:    "hostmaster." + apex,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  localTTL,
	}
}

// reverseAddr parses a reverse-lookup name (lower-case, no trailing dot):
// "4.3.2.1.in-addr.arpa", or the 32 nibbles, least significant first, of
// an IPv6 address under ip6.arpa (RFC 3596 §2.5). isRev reports either
// suffix; ip is invalid unless the name spells one whole address.
func reverseAddr(qn string) (ip netip.Addr, isRev bool) {
	if rest, ok := strings.CutSuffix(qn, ".in-addr.arpa"); ok {
		return reverse4(rest), true
	}
	if rest, ok := strings.CutSuffix(qn, ".ip6.arpa"); ok {
		return reverse6(rest), true
	}
	return netip.Addr{}, false
}

// reverse4 parses "4.3.2.1" as 1.2.3.4.
func reverse4(rest string) netip.Addr {
	labels := strings.Split(rest, ".")
	if len(labels) != 4 {
		return netip.Addr{}
	}
	slices.Reverse(labels)
	ip, err := netip.ParseAddr(strings.Join(labels, "."))
	if err != nil || !ip.Is4() {
		return netip.Addr{}
	}
	return ip
}

// reverse6 parses "b.a.9.8.….0.0.d.f" (32 one-digit hex labels) as fd00:….
func reverse6(rest string) netip.Addr {
	const nibbles = 32
	if len(rest) != 2*nibbles-1 {
		return netip.Addr{}
	}
	var a [16]byte
	for i := range nibbles {
		if i > 0 && rest[2*i-1] != '.' {
			return netip.Addr{}
		}
		v, ok := hexDigit(rest[2*i])
		if !ok {
			return netip.Addr{}
		}
		// Label i is nibble 31-i of the address: the low half of byte
		// 15-i/2 when i is even.
		a[15-i/2] |= v << (4 * (i % 2))
	}
	return netip.AddrFrom16(a)
}

// hexDigit parses one lower-case hex digit.
func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
