package trace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// The e2e host of test/e2e, as a Topology: networks pontoon (a, b; b
// publishes 8080:80), other (c), quiet (icc=false: q1, q2) and back
// (--internal: i); the uplink 198.51.100.1/24 with the router .2 as the
// default gateway.
func testTopology() *Topology {
	nets := []Network{
		{Name: "pontoon", Bridge: "pontoon0", Subnet: pfx("10.88.0.0/16"), Gateway: ip("10.88.0.1"), ICC: true, Masquerade: true},
		{Name: "other", Bridge: "ptbr-00000001", Subnet: pfx("10.95.0.0/24"), Gateway: ip("10.95.0.1"), ICC: true, Masquerade: true},
		{Name: "quiet", Bridge: "ptbr-00000002", Subnet: pfx("10.94.0.0/24"), Gateway: ip("10.94.0.1"), Masquerade: true},
		{Name: "back", Bridge: "ptbr-00000003", Subnet: pfx("10.91.7.0/24"), Gateway: ip("10.91.7.1"), Internal: true, ICC: true, Masquerade: true},
	}
	ep := func(sb, network, addr string, idx int) Endpoint {
		a := ip(addr)
		var gw netip.Addr
		for _, n := range nets {
			if n.Name == network {
				gw = n.Gateway
			}
		}
		return Endpoint{Sandbox: sb, Network: network, IfName: "eth0", HostIf: "ptv-" + sb, HostIfIndex: idx, IP: a,
			MAC: model.MACFromIP(a), Gateway: gw, DefaultRoute: network != "back"}
	}
	eps := []Endpoint{ep("a", "pontoon", "10.88.0.2", 10), ep("b", "pontoon", "10.88.0.3", 11), ep("c", "other", "10.95.0.2", 12),
		ep("q1", "quiet", "10.94.0.2", 13), ep("q2", "quiet", "10.94.0.3", 14), ep("i", "back", "10.91.7.2", 15)}
	fs := firewall.State{Ports: []firewall.Published{
		{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"}, Targets: []netip.Addr{ip("10.88.0.3")}},
		{PortMapping: model.PortMapping{HostPort: 8081, HostPortEnd: 8081, Port: 80, PortEnd: 80, Proto: "tcp"}, Targets: []netip.Addr{ip("10.94.0.3")}},
	}}
	for _, n := range nets {
		fs.Networks = append(fs.Networks, firewall.Network{Name: n.Name, Bridge: n.Bridge, Subnets: []model.Subnet{{Prefix: n.Subnet, Gateway: n.Gateway, Masquerade: n.Masquerade}}, Internal: n.Internal, Isolated: !n.ICC})
	}
	for _, e := range eps {
		fs.Guards = append(fs.Guards, firewall.Guarded{Port: e.HostIf, MAC: e.MAC, IPs: []netip.Addr{e.IP}})
	}
	return &Topology{Networks: nets, Endpoints: eps,
		Addrs:    []HostAddr{{Dev: "uplink0", Prefix: pfx("198.51.100.1/24")}, {Dev: "pontoon0", Prefix: pfx("10.88.0.1/16")}},
		Routes:   []HostRoute{{Dst: pfx("198.51.100.0/24"), Dev: "uplink0"}, {Dst: pfx("0.0.0.0/0"), Dev: "uplink0", Gateway: ip("198.51.100.2")}},
		Firewall: firewall.NewEvaluator(fs)}
}

func ip(s string) netip.Addr      { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix   { return netip.MustParsePrefix(s) }
func lan(s string) (p Probe)      { p.FromLAN = ip(s); return p }
func from(sb string) (p Probe)    { p.From = sb; return p }
func (p Probe) to(d string) Probe { p.To, p.Port, p.Proto, _ = ParseDst(d); return p }

func predict(t *testing.T, pr Probe, k Kernel) *model.Trace {
	t.Helper()
	tr, err := Predict(testTopology(), pr, k)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// path lists the hops as "kind where: text", nft hops as "chain: rule
// (verdict)", for comparing whole paths.
func path(tr *model.Trace) []string {
	var out []string
	for _, h := range tr.Hops {
		if h.Kind == model.HopNft {
			r := h.Rule
			if r == "" {
				r = "policy"
			}
			s := h.Family + " " + h.Table + " " + h.Chain + ": " + r + " " + h.Verdict
			if h.NAT != "" {
				s += " (" + h.NAT + ")"
			}
			out = append(out, s)
			continue
		}
		out = append(out, h.Kind+" "+h.Where+": "+h.Text)
	}
	return append(out, "=> "+tr.Verdict.Result+" by "+tr.Verdict.Rule+" at "+tr.Verdict.Where)
}

func wantPath(t *testing.T, tr *model.Trace, want []string) {
	t.Helper()
	if diff := cmp.Diff(want, path(tr)); diff != "" {
		t.Errorf("path (-want +got):\n%s", diff)
	}
}

func TestPredictSandboxToSandbox(t *testing.T) {
	tr := predict(t, from("a").to("b:80/tcp"), nil)
	wantPath(t, tr, []string{
		"route sandbox a: 10.88.0.3 dev eth0 src 10.88.0.2",
		"neigh sandbox a: ARP 10.88.0.3 is at 02:42:0a:58:00:03 (sandbox b's eth0)",
		"link host: eth0 → ptv-a (ifindex 10): the host end of the veth pair",
		"bridge host: ptv-a is a port of bridge pontoon0",
		"bridge pontoon anti-spoof: policy accept",
		"fdb host: bridge pontoon0: 02:42:0a:58:00:03 is on port ptv-b (sandbox b)",
		"inet pontoon loopback-guard: policy accept",
		"inet pontoon prerouting: policy accept",
		"inet pontoon forward: intra accept",
		"inet pontoon postrouting: policy accept",
		"bridge host: bridge pontoon0 → port ptv-b",
		"link sandbox b: ptv-b → eth0 of sandbox b",
		"deliver sandbox b: sandbox b receives 10.88.0.2 → 10.88.0.3:80/tcp on eth0",
		"=> delivered by intra at sandbox b",
	})
	if tr.Probe.From != "sandbox a" || tr.Probe.Src != "10.88.0.2" || tr.Probe.Dst != "10.88.0.3" || tr.Probe.DstPort != 80 {
		t.Errorf("probe %+v", tr.Probe)
	}
}

func TestPredictIsolation(t *testing.T) {
	tr := predict(t, from("a").to("c:80"), nil)
	wantPath(t, tr, []string{
		"route sandbox a: 10.95.0.2 via 10.88.0.1 dev eth0 src 10.88.0.2",
		"neigh sandbox a: ARP 10.88.0.1 is at 02:42:0a:58:00:01 (the gateway: bridge pontoon0 itself)",
		"link host: eth0 → ptv-a (ifindex 10): the host end of the veth pair",
		"bridge host: ptv-a is a port of bridge pontoon0",
		"bridge pontoon anti-spoof: policy accept",
		"fdb host: bridge pontoon0: 02:42:0a:58:00:01 is its own address: up to the host's IP stack (routed)",
		"inet pontoon loopback-guard: policy accept",
		"inet pontoon prerouting: policy accept",
		"route host: 10.95.0.2 dev ptbr-00000001: forwarded",
		"inet pontoon forward: isolation drop",
		"=> dropped by isolation at inet pontoon forward",
	})
	s := tr.Verdict.Sentence
	for _, want := range []string{"dropped by pontoon's isolation rule in inet pontoon forward", "a and c are on different networks (pontoon, other)", "pontoon network connect other a"} {
		if !strings.Contains(s, want) {
			t.Errorf("sentence lacks %q: %s", want, s)
		}
	}
}

func TestPredictPortIsolation(t *testing.T) {
	tr := predict(t, from("q1").to("q2"), nil)
	if tr.Verdict.Result != model.VerdictDropped || tr.Verdict.Rule != "port isolation" || tr.Verdict.Where != "bridge ptbr-00000002" {
		t.Fatalf("verdict %+v", tr.Verdict)
	}
	if !strings.Contains(tr.Verdict.Sentence, "icc=false") || !strings.Contains(tr.Verdict.Sentence, "not a firewall rule") {
		t.Errorf("sentence: %s", tr.Verdict.Sentence)
	}
	for _, h := range tr.Hops {
		if h.Kind == model.HopNft {
			t.Errorf("an isolated frame reached a netfilter hook: %+v", h)
		}
	}
	// The gateway is not an isolated port: q1 still reaches the outside.
	if tr := predict(t, from("q1").to("198.51.100.2"), nil); tr.Verdict.Result != model.VerdictLeft {
		t.Errorf("q1 to the outside: %+v", tr.Verdict)
	}
}

func TestPredictAntiSpoofing(t *testing.T) {
	pr := from("a").to("b:80/tcp")
	pr.SrcIP = ip("10.88.0.99")
	tr := predict(t, pr, nil)
	wantPath(t, tr, []string{
		"route sandbox a: 10.88.0.3 dev eth0 src 10.88.0.2",
		"neigh sandbox a: ARP 10.88.0.3 is at 02:42:0a:58:00:03 (sandbox b's eth0)",
		"link host: eth0 → ptv-a (ifindex 10): the host end of the veth pair",
		"bridge host: ptv-a is a port of bridge pontoon0",
		"bridge pontoon anti-spoof: spoofed-ip drop",
		"=> dropped by spoofed-ip at bridge pontoon anti-spoof",
	})
	if !strings.Contains(tr.Verdict.Sentence, "not 10.88.0.99") {
		t.Errorf("sentence: %s", tr.Verdict.Sentence)
	}
}

func TestPredictMasqueradeOut(t *testing.T) {
	tr := predict(t, from("a").to("198.51.100.2:53/udp"), nil)
	wantPath(t, tr, []string{
		"route sandbox a: 198.51.100.2 via 10.88.0.1 dev eth0 src 10.88.0.2",
		"neigh sandbox a: ARP 10.88.0.1 is at 02:42:0a:58:00:01 (the gateway: bridge pontoon0 itself)",
		"link host: eth0 → ptv-a (ifindex 10): the host end of the veth pair",
		"bridge host: ptv-a is a port of bridge pontoon0",
		"bridge pontoon anti-spoof: policy accept",
		"fdb host: bridge pontoon0: 02:42:0a:58:00:01 is its own address: up to the host's IP stack (routed)",
		"inet pontoon loopback-guard: policy accept",
		"inet pontoon prerouting: policy accept",
		"route host: 198.51.100.2 dev uplink0: forwarded",
		"inet pontoon forward: policy accept",
		"inet pontoon postrouting: masquerade accept (masquerade 10.88.0.2 → 198.51.100.1)",
		"neigh host: next hop 198.51.100.2 on uplink0",
		"deliver outside: leaves the host through uplink0 as 198.51.100.1 → 198.51.100.2:53/udp",
		"=> left by policy at uplink0",
	})
	if !strings.Contains(tr.Verdict.Sentence, "masquerade 10.88.0.2 → 198.51.100.1") {
		t.Errorf("sentence: %s", tr.Verdict.Sentence)
	}
}

func TestPredictPublishedFromLAN(t *testing.T) {
	tr := predict(t, lan("203.0.113.2").to("host:8080/tcp"), nil)
	wantPath(t, tr, []string{
		"link host: arrives on uplink0 from 203.0.113.2",
		"inet pontoon loopback-guard: policy accept",
		"inet pontoon prerouting: publish-any accept (dnat 198.51.100.1:8080 → 10.88.0.3:80 (map ports-any))",
		"route host: 10.88.0.3 dev pontoon0: forwarded",
		"inet pontoon forward: published accept",
		"inet pontoon postrouting: policy accept",
		"neigh host: ARP 10.88.0.3 is at 02:42:0a:58:00:03 on pontoon0 (sandbox b)",
		"fdb host: bridge pontoon0: 02:42:0a:58:00:03 is on port ptv-b (sandbox b)",
		"bridge host: bridge pontoon0 → port ptv-b",
		"link sandbox b: ptv-b → eth0 of sandbox b",
		"deliver sandbox b: sandbox b receives 203.0.113.2 → 10.88.0.3:80/tcp on eth0",
		"=> delivered by published at sandbox b",
	})
	if tr.Probe.Dst != "198.51.100.1" {
		t.Errorf("host from the LAN resolved to %s, want the uplink's address", tr.Probe.Dst)
	}
	// Without a published port, the LAN does not reach a sandbox.
	tr = predict(t, lan("203.0.113.2").to("10.88.0.2:80"), nil)
	if tr.Verdict.Rule != firewall.RuleUnsolicited {
		t.Errorf("LAN to a sandbox's address: %+v", tr.Verdict)
	}
}

func TestPredictHairpin(t *testing.T) {
	tr := predict(t, from("a").to("host:8080"), nil)
	got := path(tr)
	for _, want := range []string{
		"inet pontoon prerouting: publish-any accept (dnat 198.51.100.1:8080 → 10.88.0.3:80 (map ports-any))",
		"route host: 10.88.0.3 dev pontoon0: forwarded",
		"inet pontoon forward: intra accept",
		"inet pontoon postrouting: hairpin accept (masquerade 10.88.0.2 → 10.88.0.1)",
		"deliver sandbox b: sandbox b receives 10.88.0.1 → 10.88.0.3:80/tcp on eth0",
		"=> delivered by intra at sandbox b",
	} {
		if !contains(got, want) {
			t.Errorf("hairpin path lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
	// From another network, through the host's address: accepted as a
	// published connection, masqueraded to pontoon0's gateway.
	got = path(predict(t, from("c").to("host:8080"), nil))
	for _, want := range []string{"inet pontoon forward: published accept", "inet pontoon postrouting: hairpin accept (masquerade 10.95.0.2 → 10.88.0.1)"} {
		if !contains(got, want) {
			t.Errorf("c → host:8080 lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

func TestPredictInternal(t *testing.T) {
	tr := predict(t, from("i").to("198.51.100.2"), nil)
	if tr.Verdict.Result != model.VerdictUnreachable || !strings.Contains(tr.Verdict.Sentence, "--internal") {
		t.Errorf("i to the outside: %+v", tr.Verdict)
	}
	// Its gateway (the host) is reachable: delivered to the host.
	if tr := predict(t, from("i").to("10.91.7.1:53/udp"), nil); tr.Verdict.Result != model.VerdictDelivered || tr.Verdict.Where != "host" {
		t.Errorf("i to its gateway: %+v", tr.Verdict)
	}
	// Nothing from outside gets in, even with a route to it.
	tr = predict(t, lan("203.0.113.2").to("10.91.7.2:80"), nil)
	if tr.Verdict.Rule != firewall.RuleInternalIn {
		t.Errorf("LAN to i: %+v", tr.Verdict)
	}
}

func TestPredictFromHost(t *testing.T) {
	tr := predict(t, from("host").to("b:80"), nil)
	if tr.Verdict.Result != model.VerdictDelivered || tr.Probe.Src != "10.88.0.1" {
		t.Errorf("host to b: %+v from %s", tr.Verdict, tr.Probe.Src)
	}
	got := path(predict(t, from("host").to("127.0.0.1:8080"), nil))
	if !contains(got, "inet pontoon output: publish-any accept (dnat 127.0.0.1:8080 → 10.88.0.3:80 (map ports-any))") ||
		!contains(got, "inet pontoon postrouting: loopback-nat accept (masquerade 127.0.0.1 → 10.88.0.1)") {
		t.Errorf("host to its own published port:\n%s", strings.Join(got, "\n"))
	}
}

func TestPredictErrors(t *testing.T) {
	for _, c := range []struct {
		pr   Probe
		kind error
	}{
		{from("nobody").to("b"), model.ErrNotFound},
		{from("a").to("nobody:80"), model.ErrNotFound},
		{Probe{To: "b"}, model.ErrInvalid},
		{lan("10.88.0.3").to("b"), model.ErrInvalid},
		{func() Probe { p := from("host").to("b"); p.SrcIP = ip("10.88.0.9"); return p }(), model.ErrInvalid},
	} {
		if _, err := Predict(testTopology(), c.pr, nil); !errors.Is(err, c.kind) {
			t.Errorf("%+v: error %v, want %v", c.pr, err, c.kind)
		}
	}
	for _, bad := range []string{"b:0", "b:x", ":80", "b:80/gre", "b/udp", "b:80/icmp"} {
		if _, _, _, err := ParseDst(bad); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("ParseDst(%q) = %v, want invalid", bad, err)
		}
	}
	to, port, proto, err := ParseDst("b:53/udp")
	if to != "b" || port != 53 || proto != "udp" || err != nil {
		t.Errorf("ParseDst(b:53/udp) = %s %d %s %v", to, port, proto, err)
	}
}

// fakeKernel answers lookups as a healthy kernel would, except where told.
type fakeKernel struct{ wrongRouteDev bool }

func (f fakeKernel) SandboxRoute(ep Endpoint, dst netip.Addr) (Route, error) {
	dev := ep.IfName
	if f.wrongRouteDev {
		dev = "eth1"
	}
	return Route{Type: "unicast", Dst: dst, Dev: dev, Src: ep.IP}, nil
}
func (fakeKernel) SandboxNeigh(Endpoint, netip.Addr) (Neigh, error) { return Neigh{}, nil }
func (fakeKernel) HostPort(ep Endpoint) (Port, error) {
	return Port{Name: ep.HostIf, Index: ep.HostIfIndex, Master: "pontoon0", Up: true, PeerIndex: 2}, nil
}
func (fakeKernel) FDB(string, net.HardwareAddr) (FDBEntry, error) {
	return FDBEntry{Port: "ptv-b"}, nil
}
func (fakeKernel) HostRoute(dst, src netip.Addr, iif string) (Route, error) {
	return Route{Type: "unicast", Dst: dst, Dev: "pontoon0"}, nil
}
func (fakeKernel) HostNeigh(string, netip.Addr) (Neigh, error) { return Neigh{}, nil }

// The kernel's answers are attached to the hops; one that contradicts the
// prediction is marked.
func TestPredictKernelLookups(t *testing.T) {
	tr := predict(t, from("a").to("b:80"), fakeKernel{})
	var asked int
	for _, h := range tr.Hops {
		if h.Kernel != "" {
			asked++
		}
		if h.Differs {
			t.Errorf("healthy kernel differs at %s: %s", h.Text, h.Kernel)
		}
	}
	if asked != 4 { // route, neigh, port, fdb
		t.Errorf("%d lookups, want 4: %+v", asked, tr.Hops)
	}
	if h := tr.Hops[1]; h.Kernel != "10.88.0.3 dev eth0: no entry yet (ARP resolves it on the first packet)" {
		t.Errorf("neigh lookup: %q", h.Kernel)
	}
	tr = predict(t, from("a").to("b:80"), fakeKernel{wrongRouteDev: true})
	if h := tr.Hops[0]; !h.Differs || h.Kernel != "10.88.0.3 dev eth1 src 10.88.0.2" {
		t.Errorf("route lookup on a drifted sandbox: %+v", h)
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// BenchmarkPredict: a whole prediction (every hook on the way, the
// evaluator indexed once) on a host with 500 sandboxes and 1000 published
// ports, without kernel lookups; and the hairpin, which crosses the most
// chains.
func BenchmarkPredict(b *testing.B) {
	top := testTopology()
	fs := firewall.State{}
	for _, n := range top.Networks {
		fs.Networks = append(fs.Networks, firewall.Network{Name: n.Name, Bridge: n.Bridge, Subnets: []model.Subnet{{Prefix: n.Subnet, Gateway: n.Gateway, Masquerade: n.Masquerade}}, Internal: n.Internal})
	}
	for i := range 500 {
		a := netip.AddrFrom4([4]byte{10, 88, byte(1 + i/250), byte(2 + i%250)})
		e := Endpoint{Sandbox: fmt.Sprintf("s%d", i), Network: "pontoon", IfName: "eth0", HostIf: fmt.Sprintf("ptv-%010d", i), IP: a,
			MAC: model.MACFromIP(a), Gateway: ip("10.88.0.1"), DefaultRoute: true}
		top.Endpoints = append(top.Endpoints, e)
		fs.Guards = append(fs.Guards, firewall.Guarded{Port: e.HostIf, MAC: e.MAC, IPs: []netip.Addr{e.IP}})
		for j := range 2 {
			fs.Ports = append(fs.Ports, firewall.Published{PortMapping: model.PortMapping{HostPort: uint16(20000 + 2*i + j), HostPortEnd: uint16(20000 + 2*i + j),
				Port: 80, PortEnd: 80, Proto: "tcp"}, Targets: []netip.Addr{a}})
		}
	}
	top.Firewall = firewall.NewEvaluator(fs)
	for _, c := range []struct{ name, to string }{{"bridge", "s1:80"}, {"hairpin", "host:20999"}} {
		b.Run(c.name, func(b *testing.B) {
			pr := from("s0").to(c.to)
			for b.Loop() {
				if tr, err := Predict(top, pr, nil); err != nil || tr.Verdict.Result != model.VerdictDelivered {
					b.Fatalf("%v %+v", err, tr)
				}
			}
		})
	}
}

// A network with icc=false does not reach its own published port: the
// DNAT back onto its bridge is bridged port to port, and isolation drops
// it. A sandbox of another network does reach it.
func TestPredictNoICCPublished(t *testing.T) {
	tr := predict(t, from("q1").to("198.51.100.1:8081"), nil)
	if tr.Verdict.Result != model.VerdictDropped || !strings.Contains(tr.Verdict.Sentence, "does not reach its own published ports") {
		t.Errorf("q1 → its network's published port: %s: %s\n%s", tr.Verdict.Result, tr.Verdict.Sentence, strings.Join(path(tr), "\n"))
	}
	tr = predict(t, from("a").to("198.51.100.1:8081"), nil)
	if tr.Verdict.Result != model.VerdictDelivered {
		t.Errorf("a → quiet's published port: %s: %s", tr.Verdict.Result, tr.Verdict.Sentence)
	}
}
