package dns

import (
	"net"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// Networks without gateways, as link and macvlan networks are declared.
var (
	pairNet  = Network{Name: "pair", Subnets: prefixes("10.60.0.0/24", "fd00:60::/64")}
	macNet   = Network{Name: "mac", Subnets: prefixes("10.61.0.0/24")}
	closedNt = Network{Name: "closed", Subnets: prefixes("10.62.0.0/24"), Internal: true}
)

// newSandboxTestServer is newTestServer plus three gateway-less networks
// holding records; "a" is a name on both pair and mac, "both" one with the
// same address on two networks (overlapping records, answered once).
func newSandboxTestServer(t *testing.T) *Server {
	t.Helper()
	s := newTestServer(t, emptyResolvConf(t))
	configure(s, pairNet, macNet, closedNt)
	s.ReplaceRecords("pair", []Record{
		{Name: "a", IPs: addrs("10.60.0.2", "fd00:60::2")},
		{Name: "b", Aliases: []string{"both"}, IPs: addrs("10.60.0.3")},
	})
	s.ReplaceRecords("mac", []Record{
		{Name: "a", IPs: addrs("10.61.0.2")},
		{Name: "m", Aliases: []string{"both"}, IPs: addrs("10.61.0.4")},
		// pair's b's address (outside mac's subnet), and the alias both:
		// "both" has 10.60.0.3 on each network.
		{Name: "dup", Aliases: []string{"both"}, IPs: addrs("10.60.0.3")},
	})
	s.SetRecord("closed", Record{Name: "c", IPs: addrs("10.62.0.2")})
	return s
}

// sandboxQuery asks a sandbox resolver listing nets, as its listener
// would be asked from inside the sandbox.
func sandboxQuery(t *testing.T, s *Server, nets []string, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	sb := &sandbox{srv: s, path: "/test"}
	sb.nets.Store(&nets)
	r := new(mdns.Msg)
	r.SetQuestion(name, qtype)
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
	sb.ServeDNS(w, r)
	if w.msg == nil || w.msg.Id != r.Id {
		t.Fatalf("%s: no reply, or not to this query: %v", name, w.msg)
	}
	return w.msg
}

func TestSandboxAnswers(t *testing.T) {
	s := newSandboxTestServer(t)
	both := []string{"pair", "mac"}
	for _, tt := range []struct {
		nets  []string
		name  string
		qtype uint16
		rcode int
		want  string
		soa   bool // a SOA in the authority section
	}{
		// A name on two networks: the addresses of both, sorted, whatever
		// the order the networks are listed in.
		{both, "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2,A 10.61.0.2", false},
		{[]string{"mac", "pair"}, "A.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2,A 10.61.0.2", false},
		// AAAA: pair's only; no SOA of mac's next to it.
		{both, "a.", mdns.TypeAAAA, mdns.RcodeSuccess, "AAAA fd00:60::2", false},
		// An alias on both, and an address two records share: once.
		{both, "both.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.3,A 10.61.0.4", false},
		{both, "dup.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.3", false},
		// A network's own name space: only its answer.
		{both, "a.mac.", mdns.TypeA, mdns.RcodeSuccess, "A 10.61.0.2", false},
		{both, "a.pair.", mdns.TypeAAAA, mdns.RcodeSuccess, "AAAA fd00:60::2", false},
		{both, "b.mac.", mdns.TypeA, mdns.RcodeNameError, "", true},
		{both, "m.", mdns.TypeAAAA, mdns.RcodeSuccess, "", false}, // NODATA
		{both, "m.mac.", mdns.TypeAAAA, mdns.RcodeSuccess, "", true},
		// Listed on one network only: the other's names do not exist.
		{[]string{"pair"}, "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2", false},
		{[]string{"pair"}, "m.", mdns.TypeA, mdns.RcodeNameError, "", false},
		{both, "secret.", mdns.TypeA, mdns.RcodeNameError, "", false}, // other's, not listed
		{both, "c.", mdns.TypeA, mdns.RcodeNameError, "", false},
		// PTR for addresses of any of the networks.
		{both, "2.0.61.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, "PTR a.mac.", false},
		{both, rev6("fd00:60::2"), mdns.TypePTR, mdns.RcodeSuccess, "PTR a.pair.", false},
		{both, "9.0.61.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, "", true},
		// 10.60.0.3 is b on pair and dup on mac, but in pair's subnet
		// only: PTR answers for a network's own subnets.
		{both, "3.0.60.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, "PTR b.pair.", false},
		// mac is not listed: its addresses are not this sandbox's to
		// answer (forwarded: no upstreams here, so SERVFAIL).
		{[]string{"pair"}, "2.0.61.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeServerFailure, "", false},
		// Outside names: forwarded unless every network is internal.
		{both, "example.org.", mdns.TypeA, mdns.RcodeServerFailure, "", false},
		{[]string{"closed"}, "example.org.", mdns.TypeA, mdns.RcodeRefused, "", false},
		{[]string{"closed", "pair"}, "example.org.", mdns.TypeA, mdns.RcodeServerFailure, "", false},
		{[]string{"closed"}, "c.", mdns.TypeA, mdns.RcodeSuccess, "A 10.62.0.2", false},
		// A gateway network's names are answered the same way (the
		// source check is its listener's, not the zone's).
		{[]string{"app", "pair"}, "db.", mdns.TypeA, mdns.RcodeSuccess, "A 10.88.0.2", false},
		// No listed network is configured: refused.
		{[]string{"gone"}, "a.", mdns.TypeA, mdns.RcodeRefused, "", false},
		{[]string{"gone", "pair"}, "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2", false},
	} {
		m := sandboxQuery(t, s, tt.nets, tt.name, tt.qtype)
		got := strings.Join(answers(m), ",")
		if m.Rcode != tt.rcode || got != tt.want || (len(m.Ns) > 0) != tt.soa {
			t.Errorf("%v %s %s: %s [%s] ns=%v; want %s [%s] soa=%v", tt.nets, tt.name, mdns.TypeToString[tt.qtype],
				mdns.RcodeToString[m.Rcode], got, m.Ns, mdns.RcodeToString[tt.rcode], tt.want, tt.soa)
		}
		if m.Rcode == mdns.RcodeSuccess || m.Rcode == mdns.RcodeNameError {
			if !m.Authoritative {
				t.Errorf("%v %s: local answer not authoritative", tt.nets, tt.name)
			}
			checkTTLs(t, tt.name, m)
		}
	}
	// Recursion is available unless every network is internal.
	if m := sandboxQuery(t, s, []string{"closed"}, "c.", mdns.TypeA); m.RecursionAvailable {
		t.Error("RA set by a resolver of internal networks only")
	}
	if m := sandboxQuery(t, s, []string{"closed", "mac"}, "c.", mdns.TypeA); !m.RecursionAvailable {
		t.Error("RA clear next to a network with a way out")
	}
	// A network gone from SetNetworks stops answering at once; a
	// network set again (a new entry) is found by its name.
	configure(s, pairNet) // keep it configured through SetNetworks below
	if err := s.SetNetworks([]Network{pairNet}); err != nil {
		t.Fatal(err)
	}
	if m := sandboxQuery(t, s, both, "a.", mdns.TypeA); strings.Join(answers(m), ",") != "A 10.60.0.2" {
		t.Errorf("after mac was removed: %v", answers(m))
	}
	if err := s.SetNetworks([]Network{pairNet, macNet}); err != nil {
		t.Fatal(err)
	}
	s.SetRecord("mac", Record{Name: "a", IPs: addrs("10.61.0.7")})
	if m := sandboxQuery(t, s, both, "a.", mdns.TypeA); strings.Join(answers(m), ",") != "A 10.60.0.2,A 10.61.0.7" {
		t.Errorf("after mac came back: %v", answers(m))
	}
}

// A sandbox's bad input changes nothing.
func TestSetSandboxValidation(t *testing.T) {
	s := newSandboxTestServer(t)
	for _, tt := range []struct {
		path string
		nets []string
		want string
	}{
		{"", []string{"pair"}, "without a network namespace path"},
		{"/nonexistent/ns", []string{"pair", ""}, "without a name"},
		{"/nonexistent/ns", []string{"pair"}, "gone"},
		{t.TempDir(), []string{"pair"}, "not a network namespace"},
	} {
		err := s.SetSandbox(tt.path, 0, tt.nets)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("SetSandbox(%q, %q): %v, want an error saying %q", tt.path, tt.nets, err, tt.want)
		}
	}
	if n := s.Stats().Sandboxes; n != 0 {
		t.Errorf("%d sandboxes after failed calls", n)
	}
	// Removing what is not there is fine.
	if err := s.RemoveSandbox("/nonexistent/ns"); err != nil {
		t.Error(err)
	}
}
