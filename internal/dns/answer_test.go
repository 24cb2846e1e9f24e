package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fakeWriter is a dns.ResponseWriter that records the reply and reports a
// chosen client address.
type fakeWriter struct {
	remote net.Addr
	msg    *mdns.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(10, 88, 0, 1), Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr        { return w.remote }
func (w *fakeWriter) WriteMsg(m *mdns.Msg) error  { w.msg = m; return nil }
func (w *fakeWriter) Write(b []byte) (int, error) { return 0, errors.New("raw write") }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

var (
	appNet   = Network{Name: "app", Gateways: prefixes("10.88.0.1/24", "fd00:88::1/64")}
	otherNet = Network{Name: "other", Gateways: prefixes("fd00:99::1/64", "10.99.0.1/24")} // not sorted
	internal = Network{Name: "vault", Gateways: prefixes("10.77.0.1/24", "fd00:77::1/64"), Internal: true}
)

// emptyResolvConf gives a server without upstreams, without reading /etc.
func emptyResolvConf(t *testing.T) Options {
	t.Helper()
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("# nothing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Options{ResolvConf: p, StubResolvConf: p + ".stub"}
}

// configure registers networks without listeners, as SetNetworks does
// before binding.
func configure(s *Server, nets ...Network) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range nets {
		e := s.entryLocked(n.Name)
		e.configured = true
		e.cfg.Store(&n)
	}
}

func newTestServer(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	configure(s, appNet, otherNet, internal)
	s.ReplaceRecords("app", []Record{
		{Name: "db", Aliases: []string{"database", "DB-Primary"}, IPs: addrs("fd00:88::2", "10.88.0.2")},
		{Name: "Web", IPs: addrs("10.88.0.3")},
		{Name: "six", Aliases: []string{"web"}, IPs: addrs("fd00:88::6")},
		{Name: "legacy", IPs: addrs("10.88.0.5")},
	})
	s.SetRecord("other", Record{Name: "secret", IPs: addrs("10.99.0.2", "fd00:99::2")})
	s.SetRecord("vault", Record{Name: "keys", IPs: addrs("10.77.0.2")})
	return s
}

// query sends one question to network's handler as if from src.
func query(t *testing.T, s *Server, network, src, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	s.mu.Lock()
	e := s.nets[network]
	s.mu.Unlock()
	if e == nil {
		t.Fatalf("no network %s", network)
	}
	r := new(mdns.Msg)
	r.SetQuestion(name, qtype)
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP(src), Port: 40000}}
	e.ServeDNS(w, r)
	if w.msg == nil {
		t.Fatalf("%s %s: no reply", name, mdns.TypeToString[qtype])
	}
	if w.msg.Id != r.Id {
		t.Fatalf("%s: reply ID %d, query %d", name, w.msg.Id, r.Id)
	}
	return w.msg
}

// answers renders the answer section as "A 10.88.0.2", "PTR db.app.".
func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, "A "+rr.A.String())
		case *mdns.AAAA:
			out = append(out, "AAAA "+rr.AAAA.String())
		case *mdns.PTR:
			out = append(out, "PTR "+rr.Ptr)
		case *mdns.SOA:
			out = append(out, "SOA "+rr.Hdr.Name)
		default:
			out = append(out, rr.String())
		}
	}
	return out
}

func TestAnswers(t *testing.T) {
	s := newTestServer(t, emptyResolvConf(t))
	const client, client6 = "10.88.0.50", "fd00:88::50"
	tests := []struct {
		network, src, name string
		qtype              uint16
		rcode              int
		aa                 bool
		want               []string
	}{
		{"app", client, "db.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.2"}},
		{"app", client, "db", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.2"}},
		{"app", client, "DB.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.2"}},
		{"app", client, "database.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.2"}},
		{"app", client, "db-primary.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.2"}},
		{"app", client, "db.app.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.2"}},
		{"app", client, "Database.APP.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.2"}},
		{"app", client, "web.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.3"}},
		// A and AAAA from the same record; a shared alias has both
		// endpoints' addresses, each under its type.
		{"app", client, "db.", mdns.TypeAAAA, mdns.RcodeSuccess, true, []string{"AAAA fd00:88::2"}},
		{"app", client, "Database.app.", mdns.TypeAAAA, mdns.RcodeSuccess, true, []string{"AAAA fd00:88::2"}},
		{"app", client, "db.", mdns.TypeANY, mdns.RcodeSuccess, true, []string{"A 10.88.0.2", "AAAA fd00:88::2"}},
		{"app", client, "web.", mdns.TypeAAAA, mdns.RcodeSuccess, true, []string{"AAAA fd00:88::6"}},
		{"app", client, "web.", mdns.TypeANY, mdns.RcodeSuccess, true, []string{"A 10.88.0.3", "AAAA fd00:88::6"}},
		{"app", client, "six.app.", mdns.TypeAAAA, mdns.RcodeSuccess, true, []string{"AAAA fd00:88::6"}},
		// An existing name without that type: NODATA, not NXDOMAIN.
		{"app", client, "six.", mdns.TypeA, mdns.RcodeSuccess, true, nil},
		{"app", client, "legacy.app.", mdns.TypeAAAA, mdns.RcodeSuccess, true, nil},
		{"app", client, "db.app.", mdns.TypeMX, mdns.RcodeSuccess, true, nil},
		// Over IPv6 transport, the same answers.
		{"app", client6, "db.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.88.0.2"}},
		{"app", client6, "db.", mdns.TypeAAAA, mdns.RcodeSuccess, true, []string{"AAAA fd00:88::2"}},
		{"app", client6, "nope.app.", mdns.TypeAAAA, mdns.RcodeNameError, true, nil},
		// pontoon's zone: authoritative NXDOMAIN.
		{"app", client, "nope.", mdns.TypeA, mdns.RcodeNameError, true, nil},
		{"app", client, "nope.app.", mdns.TypeA, mdns.RcodeNameError, true, nil},
		{"app", client, "x.db.app.", mdns.TypeA, mdns.RcodeNameError, true, nil},
		{"app", client, "app.", mdns.TypeA, mdns.RcodeSuccess, true, nil},
		{"app", client, "app.", mdns.TypeSOA, mdns.RcodeSuccess, true, []string{"SOA app."}},
		// Other networks' sandboxes are not visible.
		{"app", client, "secret.", mdns.TypeA, mdns.RcodeNameError, true, nil},
		{"app", client, "keys.", mdns.TypeA, mdns.RcodeNameError, true, nil},
		{"other", "10.99.0.9", "db.", mdns.TypeA, mdns.RcodeNameError, true, nil},
		{"other", "10.99.0.9", "secret.other.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.99.0.2"}},
		// "secret.other." asked on app is not app's: forwarded (no upstream
		// here: SERVFAIL, not an answer).
		{"app", client, "secret.other.", mdns.TypeA, mdns.RcodeServerFailure, false, nil},
		{"app", client, "example.org.", mdns.TypeA, mdns.RcodeServerFailure, false, nil},
		// PTR inside the subnet: answer or authoritative NXDOMAIN.
		{"app", client, "2.0.88.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, true, []string{"PTR db.app."}},
		{"app", client, "3.0.88.10.IN-ADDR.ARPA.", mdns.TypePTR, mdns.RcodeSuccess, true, []string{"PTR web.app."}},
		{"app", client, "9.0.88.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, true, nil},
		{"app", client, "2.0.88.10.in-addr.arpa.", mdns.TypeA, mdns.RcodeSuccess, true, nil},
		// ip6.arpa: the 32 nibbles of fd00:88::2, of fd00:88::6, of an
		// address without a record; upper case too.
		{"app", client, rev6("fd00:88::2"), mdns.TypePTR, mdns.RcodeSuccess, true, []string{"PTR db.app."}},
		{"app", client6, strings.ToUpper(rev6("fd00:88::6")), mdns.TypePTR, mdns.RcodeSuccess, true, []string{"PTR six.app."}},
		{"app", client6, rev6("fd00:88::9"), mdns.TypePTR, mdns.RcodeNameError, true, nil},
		{"app", client6, rev6("fd00:88::2"), mdns.TypeAAAA, mdns.RcodeSuccess, true, nil},
		// PTR outside the subnets (another network's too), or a partial
		// reverse name: forwarded.
		{"app", client, "2.0.99.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeServerFailure, false, nil},
		{"app", client, rev6("fd00:99::2"), mdns.TypePTR, mdns.RcodeServerFailure, false, nil},
		{"app", client, rev6("fd00:88::2")[2:], mdns.TypePTR, mdns.RcodeServerFailure, false, nil},
		{"app", client, "0.88.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeServerFailure, false, nil},
		// ::ffff:10.88.0.2 spelled in ip6.arpa is no address of app's.
		{"app", client, "2.0.0.0.8.5.a.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.", mdns.TypePTR, mdns.RcodeServerFailure, false, nil},
		// Sources outside the subnets are refused, even for local names.
		{"app", "10.99.0.2", "db.", mdns.TypeA, mdns.RcodeRefused, false, nil},
		{"app", "fd00:99::2", "db.", mdns.TypeAAAA, mdns.RcodeRefused, false, nil},
		{"app", "fe80::2", "db.", mdns.TypeAAAA, mdns.RcodeRefused, false, nil},
		{"other", "fd00:99::9", "secret.", mdns.TypeAAAA, mdns.RcodeSuccess, true, []string{"AAAA fd00:99::2"}},
		{"app", "198.51.100.7", "example.org.", mdns.TypeA, mdns.RcodeRefused, false, nil},
		// Internal networks resolve their names and refuse the rest.
		{"vault", "10.77.0.9", "keys.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.77.0.2"}},
		{"vault", "10.77.0.9", "keys.vault.", mdns.TypeA, mdns.RcodeSuccess, true, []string{"A 10.77.0.2"}},
		{"vault", "10.77.0.9", "example.org.", mdns.TypeA, mdns.RcodeRefused, false, nil},
		{"vault", "10.77.0.9", "8.8.8.8.in-addr.arpa.", mdns.TypePTR, mdns.RcodeRefused, false, nil},
	}
	for _, tt := range tests {
		m := query(t, s, tt.network, tt.src, tt.name, tt.qtype)
		got := answers(m)
		if m.Rcode != tt.rcode || m.Authoritative != tt.aa || !slices.Equal(got, tt.want) {
			t.Errorf("%s from %s: %s %s = %s aa=%v %v; want %s aa=%v %v", tt.network, tt.src, tt.name,
				mdns.TypeToString[tt.qtype], mdns.RcodeToString[m.Rcode], m.Authoritative, got,
				mdns.RcodeToString[tt.rcode], tt.aa, tt.want)
		}
		if m.Authoritative {
			checkTTLs(t, tt.name, m)
		}
	}
	// The internal network does not advertise recursion.
	if m := query(t, s, "vault", "10.77.0.9", "keys.", mdns.TypeA); m.RecursionAvailable {
		t.Error("internal network answers with RA set")
	}
}

// checkTTLs fails unless every record of a local answer, answer and
// authority sections alike, has TTL localTTL, and an SOA's minimum (the
// negative-caching TTL) is localTTL too.
func checkTTLs(t *testing.T, what string, m *mdns.Msg) {
	t.Helper()
	if localTTL == 0 {
		t.Fatal("localTTL is 0: clients would re-ask for every connection")
	}
	for _, rr := range append(slices.Clone(m.Answer), m.Ns...) {
		if ttl := rr.Header().Ttl; ttl != localTTL {
			t.Errorf("%s: %s has TTL %d, want %d", what, rr, ttl, localTTL)
		}
		if soa, ok := rr.(*mdns.SOA); ok && soa.Minttl != localTTL {
			t.Errorf("%s: SOA minimum %d, want %d", what, soa.Minttl, localTTL)
		}
	}
}

func TestRecordUpdates(t *testing.T) {
	s := newTestServer(t, emptyResolvConf(t))
	const c = "10.88.0.50"
	a := func(name string) []string { return answers(query(t, s, "app", c, name, mdns.TypeA)) }

	s.SetRecord("app", Record{Name: "cache", Aliases: []string{"redis"}, IPs: addrs("10.88.0.4")})
	if got := a("redis.app."); !slices.Equal(got, []string{"A 10.88.0.4"}) {
		t.Fatalf("after SetRecord: %v", got)
	}
	// Replacing the endpoint's record drops its old alias.
	s.SetRecord("app", Record{Name: "cache", IPs: addrs("10.88.0.4")})
	if m := query(t, s, "app", c, "redis.", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("old alias: %s", mdns.RcodeToString[m.Rcode])
	}
	// A shared alias returns every endpoint, sorted.
	s.SetRecord("app", Record{Name: "web2", Aliases: []string{"web"}, IPs: addrs("10.88.0.10")})
	if got := a("web."); !slices.Equal(got, []string{"A 10.88.0.3", "A 10.88.0.10"}) {
		t.Fatalf("shared alias: %v", got)
	}
	s.RemoveRecord("app", netip.MustParseAddr("10.88.0.4"))
	s.RemoveRecord("app", netip.MustParseAddr("10.88.0.4")) // idempotent
	s.RemoveRecord("nonet", netip.MustParseAddr("10.88.0.4"))
	for _, n := range []string{"cache.", "cache.app.", "4.0.88.10.in-addr.arpa."} {
		qt := mdns.TypeA
		if strings.HasSuffix(n, "arpa.") {
			qt = mdns.TypePTR
		}
		if m := query(t, s, "app", c, n, qt); m.Rcode != mdns.RcodeNameError || !m.Authoritative {
			t.Errorf("%s after RemoveRecord: %s", n, mdns.RcodeToString[m.Rcode])
		}
	}
	// An address identifies the endpoint: a record sharing one replaces
	// the old record whole, its other address and names too.
	s.SetRecord("app", Record{Name: "dual", Aliases: []string{"d"}, IPs: addrs("10.88.0.30", "fd00:88::30")})
	if got := answers(query(t, s, "app", c, "d.", mdns.TypeANY)); !slices.Equal(got, []string{"A 10.88.0.30", "AAAA fd00:88::30"}) {
		t.Fatalf("dual: %v", got)
	}
	s.SetRecord("app", Record{Name: "dual", IPs: addrs("10.88.0.31", "fd00:88::30")})
	if got := answers(query(t, s, "app", c, "dual.", mdns.TypeANY)); !slices.Equal(got, []string{"A 10.88.0.31", "AAAA fd00:88::30"}) {
		t.Fatalf("dual after its v4 address changed: %v", got)
	}
	for _, n := range []string{"d.", "30.0.88.10.in-addr.arpa."} {
		if m := query(t, s, "app", c, n, mdns.TypeANY); m.Rcode != mdns.RcodeNameError {
			t.Errorf("%s after the record was replaced: %s %v", n, mdns.RcodeToString[m.Rcode], answers(m))
		}
	}
	// Removing by either address removes both, and both PTRs.
	s.RemoveRecord("app", netip.MustParseAddr("fd00:88::30"))
	for _, n := range []string{"dual.", "31.0.88.10.in-addr.arpa.", rev6("fd00:88::30")} {
		if m := query(t, s, "app", c, n, mdns.TypeANY); m.Rcode != mdns.RcodeNameError {
			t.Errorf("%s after RemoveRecord by the v6 address: %s %v", n, mdns.RcodeToString[m.Rcode], answers(m))
		}
	}
	// Invalid and mapped addresses: dropped and unmapped.
	s.SetRecord("app", Record{Name: "mapped", IPs: []netip.Addr{{}, netip.MustParseAddr("::ffff:10.88.0.40")}})
	if got := a("mapped."); !slices.Equal(got, []string{"A 10.88.0.40"}) {
		t.Errorf("mapped: %v", got)
	}
	s.SetRecord("app", Record{Name: "none", IPs: []netip.Addr{{}}})
	if m := query(t, s, "app", c, "none.", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
		t.Errorf("record without a valid address: %s", mdns.RcodeToString[m.Rcode])
	}

	// ReplaceRecords: a later record sharing an address replaces the
	// earlier one, as SetRecord would.
	s.ReplaceRecords("app", []Record{
		{Name: "first", IPs: addrs("10.88.0.21", "fd00:88::21")},
		{Name: "only", IPs: addrs("10.88.0.20", "fd00:88::21")},
	})
	if m := query(t, s, "app", c, "first.", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
		t.Errorf("first after ReplaceRecords: %s", mdns.RcodeToString[m.Rcode])
	}
	if got := answers(query(t, s, "app", c, rev6("fd00:88::21"), mdns.TypePTR)); !slices.Equal(got, []string{"PTR only.app."}) {
		t.Errorf("PTR after ReplaceRecords: %v", got)
	}
	s.ReplaceRecords("app", []Record{{Name: "only", IPs: addrs("10.88.0.20")}})
	if m := query(t, s, "app", c, "db.", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
		t.Errorf("db after ReplaceRecords: %s", mdns.RcodeToString[m.Rcode])
	}
	if got := a("only."); !slices.Equal(got, []string{"A 10.88.0.20"}) {
		t.Errorf("only: %v", got)
	}
}

func TestNetworkRemovedRefuses(t *testing.T) {
	s := newTestServer(t, emptyResolvConf(t))
	s.mu.Lock()
	e := s.nets["app"]
	s.mu.Unlock()
	// SetNetworks without app: its entry and records go; a query still in
	// flight on the old listener is refused rather than answered stale.
	if err := s.SetNetworks(nil); err != nil {
		t.Fatal(err)
	}
	r := new(mdns.Msg)
	r.SetQuestion("db.", mdns.TypeA)
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP("10.88.0.5")}}
	e.ServeDNS(w, r)
	if w.msg.Rcode != mdns.RcodeRefused {
		t.Fatalf("got %s", mdns.RcodeToString[w.msg.Rcode])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.nets) != 0 {
		t.Fatalf("entries left: %v", s.nets)
	}
}

func TestSetNetworksValidation(t *testing.T) {
	s := newTestServer(t, emptyResolvConf(t))
	for _, tt := range []struct {
		n    Network
		want string
	}{
		{Network{Name: "app"}, "no gateway"},
		{Network{Name: "app", Gateways: appNet.Gateways, Subnets: prefixes("10.88.0.0/24")}, "both gateways and subnets"},
		{Network{Name: "app", Subnets: []netip.Prefix{{}}}, "invalid subnet"},
		{Network{Name: "app", Subnets: prefixes("10.88.0.0/24", "10.89.0.0/24")}, "two subnets of one family"},
		{Network{Name: "app", Gateways: []netip.Prefix{{}}}, "invalid gateway"},
		{Network{Name: "app", Gateways: prefixes("10.88.0.1/24", "10.89.0.1/24")}, "two gateways of one family"},
		{Network{Name: "app", Gateways: prefixes("fd00:88::1/64", "::ffff:10.88.0.1/120", "fd00:89::1/64")}, "two gateways of one family"},
		{Network{Name: "app", Gateways: prefixes("0.0.0.0/0")}, "refusing to listen on 0.0.0.0"},
		{Network{Name: "app", Gateways: prefixes("::/64")}, "refusing to listen on ::"},
		{Network{Name: "app", Gateways: prefixes("fe80::1/64")}, "refusing to listen on fe80::1"},
		{Network{Name: "app", Gateways: prefixes("127.0.0.1/8")}, "refusing to listen on 127.0.0.1"},
		{Network{Name: "app", Gateways: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("::ffff:10.88.0.1"), 64)}}, "invalid gateway"},
		// Last: app is not listed, so it goes.
		{Network{Gateways: appNet.Gateways}, "without a name"},
	} {
		// (Only invalid networks here: this test runs in the machine's
		// namespace, where nothing may be bound.)
		err := s.SetNetworks([]Network{tt.n})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one saying %q", tt.n, err, tt.want)
		}
		// A bad configuration of app leaves app as it was.
		if tt.n.Name != "app" {
			continue
		}
		if m := query(t, s, "app", "fd00:88::9", "db.", mdns.TypeAAAA); m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("%+v: app no longer answers after a bad SetNetworks: %v", tt.n, m)
		}
	}
	// Subnets: masked, unmapped, IPv4 first.
	n, err := normNetwork(Network{Name: "x", Subnets: prefixes("fd00:1::5/64", "::ffff:10.1.0.7/120")})
	if err != nil || !slices.Equal(n.Subnets, prefixes("10.1.0.0/24", "fd00:1::/64")) {
		t.Errorf("normNetwork: %v %v", n.Subnets, err)
	}
	// An IPv4-mapped gateway is taken as the IPv4 address it is.
	n, err = normNetwork(Network{Name: "x", Gateways: prefixes("fd00:1::1/64", "::ffff:10.1.0.1/120")})
	if err != nil || !slices.Equal(n.Gateways, prefixes("10.1.0.1/24", "fd00:1::1/64")) {
		t.Errorf("normNetwork: %v %v", n.Gateways, err)
	}
}

// rev6 is the ip6.arpa name of an IPv6 address, as the library spells it.
func rev6(s string) string {
	r, err := mdns.ReverseAddr(s)
	if err != nil || !strings.HasSuffix(r, ".ip6.arpa.") {
		panic(fmt.Sprintf("ReverseAddr(%s) = %q, %v", s, r, err))
	}
	return r
}

func TestReverseAddr(t *testing.T) {
	good := []string{"fd00:88::2", "2001:db8::1234:5678:9abc:def0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fd00::a58:2"}
	for _, a := range good {
		name := normName(rev6(a))
		ip, isRev := reverseAddr(name)
		if !isRev || ip != netip.MustParseAddr(a) {
			t.Errorf("%s: %v %v, want %s", name, ip, isRev, a)
		}
	}
	if ip, isRev := reverseAddr("2.0.88.10.in-addr.arpa"); !isRev || ip != netip.MustParseAddr("10.88.0.2") {
		t.Errorf("in-addr.arpa: %v %v", ip, isRev)
	}
	full := normName(rev6("fd00:88::2")) // 2.0.0.0.….d.f.ip6.arpa
	nibbles := strings.TrimSuffix(full, ".ip6.arpa")
	malformed := []string{
		".ip6.arpa",
		nibbles[2:] + ".ip6.arpa",         // 31 nibbles
		"0." + full,                       // 33
		"g" + full[1:],                    // not hex
		"A" + full[1:],                    // upper case (names arrive lower-cased)
		"20" + full[1:],                   // a two-digit label
		"2." + nibbles[4:] + "..ip6.arpa", // an empty label
		"2-" + full[2:],                   // no dot between labels
		strings.ReplaceAll(nibbles, ".", "") + strings.Repeat("0", 31) + ".ip6.arpa", // right length, no dots
		"02.0.88.10.in-addr.arpa",  // leading zero
		"0.88.10.in-addr.arpa",     // partial
		"256.0.88.10.in-addr.arpa", // out of range
		"1.2.0.88.10.in-addr.arpa", // five labels
	}
	for _, name := range malformed {
		if ip, isRev := reverseAddr(name); !isRev || ip.IsValid() {
			t.Errorf("%q: %v %v, want a reverse name that is no address", name, ip, isRev)
		}
	}
	for _, name := range []string{"ip6.arpa", "ip6.arpa.example", "x.ip6-arpa", "in-addr.arpa", "db.app"} {
		if _, isRev := reverseAddr(name); isRev {
			t.Errorf("%q taken for a reverse name", name)
		}
	}
}

func TestStats(t *testing.T) {
	s := newTestServer(t, emptyResolvConf(t))
	query(t, s, "app", "10.88.0.9", "db.", mdns.TypeA)
	query(t, s, "app", "10.88.0.9", "nope.", mdns.TypeA)
	query(t, s, "app", "10.9.9.9", "db.", mdns.TypeA)
	query(t, s, "app", "10.88.0.9", "example.org.", mdns.TypeA)
	query(t, s, "vault", "10.77.0.9", "example.org.", mdns.TypeA)
	st := s.Stats()
	if st.Queries != 5 || st.Local != 2 || st.RefusedSource != 1 || st.RefusedInternal != 1 ||
		st.Forwarded != 1 || st.ForwardFailed != 1 {
		t.Errorf("stats %+v", st)
	}
	want := map[string]uint64{"NOERROR": 1, "NXDOMAIN": 1, "REFUSED": 2, "SERVFAIL": 1}
	for k, v := range want {
		if st.Answers[k] != v {
			t.Errorf("answers %v, want %v", st.Answers, want)
		}
	}
}

func TestLatencyHistogram(t *testing.T) {
	var h histogram
	for range 98 {
		h.observe(3 * time.Millisecond)
	}
	h.observe(300 * time.Millisecond)
	h.observe(10 * time.Second)
	l := h.snapshot()
	if l.Count != 100 || len(l.Buckets) != len(latencyBounds) || l.Buckets[len(l.Buckets)-1].Count != 99 {
		t.Fatalf("%+v", l)
	}
	if l.P50Seconds <= 0.002 || l.P50Seconds > 0.005 {
		t.Errorf("p50 %v", l.P50Seconds)
	}
	if l.P99Seconds <= 0.2 || l.P99Seconds > 0.5 {
		t.Errorf("p99 %v", l.P99Seconds)
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	plain := writeFile(t, dir, "plain", "# comment\nsearch corp.example\nnameserver 192.0.2.1\nnameserver  2001:db8::53 \nnameserver fe80::1%eth0\nnameserver bogus\noptions edns0\n")
	stubOnly := writeFile(t, dir, "stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n")
	resolved := writeFile(t, dir, "resolved", "nameserver 192.0.2.10\nnameserver 127.0.0.1\nnameserver 192.0.2.11\n")
	mixed := writeFile(t, dir, "mixed", "nameserver 127.0.0.1\nnameserver 192.0.2.7\n")
	empty := writeFile(t, dir, "empty", "search example\n")
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name, path, stub string
		want             []string
		err              bool
	}{
		{"plain", plain, resolved, []string{"192.0.2.1:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53"}, false},
		{"systemd stub", stubOnly, resolved, []string{"192.0.2.10:53", "192.0.2.11:53"}, false},
		{"stub without resolved file keeps loopback", stubOnly, missing, []string{"127.0.0.53:53"}, false},
		{"stub with empty resolved file", stubOnly, empty, []string{"127.0.0.53:53"}, false},
		{"mixed keeps order", mixed, resolved, []string{"127.0.0.1:53", "192.0.2.7:53"}, false},
		{"no nameserver", empty, resolved, nil, true},
		{"missing", missing, resolved, nil, true},
	}
	for _, tt := range tests {
		got, err := UpstreamsFromResolvConf(tt.path, tt.stub)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, %v; want %v, err=%v", tt.name, got, err, tt.want, tt.err)
		}
	}

	// Through New: the server picks them up, and ReloadUpstreams re-reads.
	conf := writeFile(t, dir, "live", "nameserver 127.0.0.53\n")
	s, err := New(Options{ResolvConf: conf, StubResolvConf: resolved})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Upstreams(); !slices.Equal(got, []string{"192.0.2.10:53", "192.0.2.11:53"}) {
		t.Errorf("New: %v", got)
	}
	writeFile(t, dir, "live", "nameserver 192.0.2.99\n")
	if err := s.ReloadUpstreams(); err != nil {
		t.Fatal(err)
	}
	if got := s.Upstreams(); !slices.Equal(got, []string{"192.0.2.99:53"}) {
		t.Errorf("after reload: %v", got)
	}
}

func TestParseUpstreams(t *testing.T) {
	got, err := ParseUpstreams([]string{"192.0.2.1", "192.0.2.2:5353", "[2001:db8::1]:53", "2001:db8::2"})
	want := []string{"192.0.2.1:53", "192.0.2.2:5353", "[2001:db8::1]:53", "[2001:db8::2]:53"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"example.org", "192.0.2.1:x", ""} {
		if _, err := ParseUpstreams([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := New(Options{Upstreams: []string{"nope"}}); err == nil {
		t.Error("New accepted a bad upstream")
	}
}

func TestResolvConf(t *testing.T) {
	for _, tt := range []struct {
		gws  []netip.Prefix
		want string
	}{
		{prefixes("10.88.0.1/24"), "nameserver 10.88.0.1\n"},
		{prefixes("fd00:88::1/64"), "nameserver fd00:88::1\n"},
		// IPv4 first, whatever the order given.
		{prefixes("fd00:88::1/64", "10.88.0.1/24"), "nameserver 10.88.0.1\nnameserver fd00:88::1\n"},
		{prefixes("::ffff:10.88.0.1/120", "fd00:88::1/64"), "nameserver 10.88.0.1\nnameserver fd00:88::1\n"},
	} {
		got := ResolvConf(Network{Name: "App", Gateways: tt.gws})
		want := "# Generated by pontoon for network App.\n" + tt.want + "search app\noptions ndots:0\n"
		if got != want {
			t.Errorf("%v: got\n%s\nwant\n%s", tt.gws, got, want)
		}
	}
	// A sandbox with its own resolver: 127.0.0.11, the rest as above.
	for _, n := range []Network{pairNet, {Name: "App", Gateways: prefixes("10.88.0.1/24")}} {
		got := SandboxResolvConf(n)
		want := "# Generated by pontoon for network " + n.Name + ".\nnameserver 127.0.0.11\nsearch " + strings.ToLower(n.Name) + "\noptions ndots:0\n"
		if got != want {
			t.Errorf("sandbox: got\n%s\nwant\n%s", got, want)
		}
	}
	if got := SandboxResolvConf(closedNt); !strings.Contains(got, "Internal") || !strings.Contains(got, "nameserver 127.0.0.11\n") {
		t.Errorf("sandbox, internal: %s", got)
	}
	if got := ResolvConf(internal); !strings.Contains(got, "nameserver 10.77.0.1\nnameserver fd00:77::1\n") || !strings.Contains(got, "Internal") {
		t.Errorf("internal: %s", got)
	}
}

// pipeUpstream is a fake upstream reached through net.Pipe (so without
// sockets): dns.Conn frames pipe traffic like TCP whatever the network.
type pipeUpstream struct {
	answer    func(network string, q *mdns.Msg) *mdns.Msg
	udp, tcps atomic.Int32
}

func (u *pipeUpstream) dial(network string) net.Conn {
	client, server := net.Pipe()
	if network == "udp" {
		u.udp.Add(1)
	} else {
		u.tcps.Add(1)
	}
	go func() {
		defer server.Close()
		server.SetDeadline(time.Now().Add(5 * time.Second))
		var n uint16
		if err := binary.Read(server, binary.BigEndian, &n); err != nil {
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(server, b); err != nil {
			return
		}
		q := new(mdns.Msg)
		if q.Unpack(b) != nil {
			return
		}
		out, err := u.answer(network, q).Pack()
		if err != nil {
			return
		}
		binary.Write(server, binary.BigEndian, uint16(len(out)))
		server.Write(out)
	}()
	return client
}

func TestForwardFailoverAndTCPRetry(t *testing.T) {
	up := &pipeUpstream{answer: func(network string, q *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		if q.Question[0].Name == "big.example." && network == "udp" {
			m.Truncated = true
			return m
		}
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 80)})
		return m
	}}
	var attempts atomic.Int32
	o := emptyResolvConf(t)
	o.Upstreams = []string{"192.0.2.1:53", "192.0.2.2:53"}
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		attempts.Add(1)
		if addr == "192.0.2.1:53" {
			return nil, syscall.ECONNREFUSED
		}
		return up.dial(network), nil
	}
	s := newTestServer(t, o)
	m := query(t, s, "app", "10.88.0.9", "example.org.", mdns.TypeA)
	if m.Rcode != mdns.RcodeSuccess || !slices.Equal(answers(m), []string{"A 192.0.2.80"}) {
		t.Fatalf("forwarded: %v", m)
	}
	// The upstream that answered is tried first next time.
	attempts.Store(0)
	query(t, s, "app", "10.88.0.9", "example.net.", mdns.TypeA)
	if n := attempts.Load(); n != 1 {
		t.Errorf("second query made %d attempts, want 1", n)
	}
	m = query(t, s, "app", "10.88.0.9", "big.example.", mdns.TypeA)
	if m.Truncated || len(m.Answer) != 1 || up.tcps.Load() != 1 {
		t.Fatalf("tcp retry: tc=%v answers=%d tcp dials=%d", m.Truncated, len(m.Answer), up.tcps.Load())
	}
	st := s.Stats()
	if st.Forwarded != 3 || st.TCPRetries != 1 || st.UpstreamErrors != 1 || st.ForwardLatency.Count != 3 {
		t.Errorf("stats %+v", st)
	}

	// Every upstream failing: SERVFAIL without waiting.
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) { return nil, syscall.ECONNREFUSED }
	s2 := newTestServer(t, o)
	t0 := time.Now()
	if m := query(t, s2, "app", "10.88.0.9", "example.org.", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("all down: %s", mdns.RcodeToString[m.Rcode])
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("SERVFAIL took %v", d)
	}
}

func TestForwardSkipsOwnAddress(t *testing.T) {
	o := emptyResolvConf(t)
	o.Upstreams = []string{"10.88.0.1:53"}
	var dials atomic.Int32
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return nil, syscall.ECONNREFUSED
	}
	s := newTestServer(t, o)
	s.own.Store(&map[string]bool{"10.88.0.1:53": true}) // as SetNetworks does
	if m := query(t, s, "app", "10.88.0.9", "example.org.", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure || dials.Load() != 0 {
		t.Fatalf("%s after %d dials", mdns.RcodeToString[m.Rcode], dials.Load())
	}
}

func TestEDNSReply(t *testing.T) {
	s := newTestServer(t, emptyResolvConf(t))
	s.mu.Lock()
	e := s.nets["app"]
	s.mu.Unlock()
	r := new(mdns.Msg)
	r.SetQuestion("db.", mdns.TypeA)
	r.SetEdns0(4096, false)
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP("10.88.0.9")}}
	e.ServeDNS(w, r)
	if opt := w.msg.IsEdns0(); opt == nil || opt.UDPSize() != ednsSize {
		t.Fatalf("reply OPT %v", opt)
	}
}

// addPool gives 45 endpoints on app the shared alias "pool" (10.88.0.100-144).
func addPool(s *Server) {
	for i := range 45 {
		s.SetRecord("app", Record{Name: fmt.Sprintf("p%d", i), Aliases: []string{"pool"},
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 88, 0, byte(100 + i)})}})
	}
}

// checkCompressed packs m as the server's WriteMsg does and checks, on the
// wire, that every answer's owner name is a pointer and carries localTTL,
// and that compression saved exactly what spelling the owner name in every
// record would have cost.
func checkCompressed(t *testing.T, what string, m *mdns.Msg, wantAnswers int) {
	t.Helper()
	raw, err := m.Pack()
	if err != nil {
		t.Fatalf("%s: pack: %v", what, err)
	}
	rrs, err := wireAnswers(raw)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(rrs) != wantAnswers {
		t.Fatalf("%s: %d answers on the wire, want %d", what, len(rrs), wantAnswers)
	}
	spelledOut, wrongTTL := 0, 0
	for _, rr := range rrs {
		if !rr.pointer {
			spelledOut++
		}
		if rr.ttl != localTTL {
			wrongTTL++
		}
	}
	if spelledOut > 0 || wrongTTL > 0 {
		t.Errorf("%s: of %d answers, %d spell out their owner name and %d have a TTL other than %d",
			what, len(rrs), spelledOut, wrongTTL, localTTL)
	}
	plain := m.Copy()
	plain.Compress = false
	spelled, err := plain.Pack()
	if err != nil {
		t.Fatal(err)
	}
	owner := len(mdns.CanonicalName(m.Question[0].Name)) + 1 // wire length of the name
	if saved := len(spelled) - len(raw); saved != wantAnswers*(owner-2) {
		t.Errorf("%s: %d bytes compressed, %d spelled out: saved %d, want %d", what, len(raw), len(spelled),
			saved, wantAnswers*(owner-2))
	}
}

// RFC 1123 §6.1.2.4: answers are compressed, over TCP as over UDP.
func TestCompressedAnswers(t *testing.T) {
	s := newTestServer(t, emptyResolvConf(t))
	addPool(s)
	s.mu.Lock()
	e := s.nets["app"]
	s.mu.Unlock()
	ask := func(remote net.Addr, name string, edns bool) *mdns.Msg {
		r := new(mdns.Msg)
		r.SetQuestion(name, mdns.TypeA)
		if edns {
			r.SetEdns0(4096, false)
		}
		w := &fakeWriter{remote: remote}
		e.ServeDNS(w, r)
		if w.msg == nil || w.msg.Rcode != mdns.RcodeSuccess {
			t.Fatalf("%s from %s: %v", name, remote, w.msg)
		}
		return w.msg
	}
	tcp := &net.TCPAddr{IP: net.ParseIP("10.88.0.9"), Port: 40000}
	udp := &net.UDPAddr{IP: net.ParseIP("10.88.0.9"), Port: 40000}
	for _, name := range []string{"pool.", "Pool.App."} {
		m := ask(tcp, name, false)
		if m.Truncated {
			t.Fatalf("%s over TCP: truncated", name)
		}
		checkCompressed(t, name+" over TCP", m, 45)
		// UDP with a buffer the answer fits in: compressed as well (it
		// used to be sent spelled out whenever it fitted).
		m = ask(udp, name, true)
		if m.Truncated {
			t.Fatalf("%s over UDP with EDNS 4096: truncated", name)
		}
		checkCompressed(t, name+" over UDP", m, 45)
	}
	// UDP with 512 bytes: truncated, compressed, as many as fit.
	m := ask(udp, "pool.", false)
	if !m.Truncated || len(m.Answer) == 0 || len(m.Answer) >= 45 {
		t.Fatalf("pool over UDP/512: tc=%v with %d answers", m.Truncated, len(m.Answer))
	}
	checkCompressed(t, "pool over UDP/512", m, len(m.Answer))
	// One small answer is compressed too.
	checkCompressed(t, "db over TCP", ask(tcp, "db.", false), 1)
}
