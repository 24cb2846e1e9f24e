package e2e

import (
	"encoding/json"
	"fmt"
	"slices"

	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pontoon/internal/model"
)

// ping6 pings once over IPv6 from a sandbox.
func (h *Host) ping6(sandbox, addr string) bool {
	_, err := h.try("exec", sandbox, "--", "ping", "-6", "-c1", "-W1", addr)
	return err == nil
}

// Two sandboxes on a dual-stack network reach each other over both
// families, by address and by name (AAAA from the network's resolver,
// which answers on its IPv6 gateway too), and TCP over IPv6 shows the real
// source address.
func TestIPv6DualStackBetweenSandboxes(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "app", "--subnet", "10.90.61.0/24", "--subnet", "fd00:61::/64")
	h.P("sandbox", "create", "a", "--network", "app", "--ip", "10.90.61.10", "--ip6", "fd00:61::10")
	h.P("sandbox", "create", "b", "--network", "app")
	if got := h.IP6("a", "app"); got != "fd00:61::10" {
		t.Fatalf("a's IPv6 address %s, want fd00:61::10", got)
	}
	b6 := h.IP6("b", "app")
	if !strings.HasPrefix(b6, "fd00:61::") {
		t.Fatalf("b's IPv6 address %s is not from fd00:61::/64", b6)
	}
	// The sandbox's addresses are usable at once (no DAD), the default
	// route goes via the v6 gateway, and it accepts no router
	// advertisements.
	addrs := h.P("exec", "a", "--", "ip", "-6", "-o", "addr", "show", "dev", "eth0")
	if !strings.Contains(addrs, "fd00:61::10/64") || strings.Contains(addrs, "tentative") {
		t.Fatalf("a's IPv6 addresses:\n%s", addrs)
	}
	if r := h.P("exec", "a", "--", "ip", "-6", "route", "show", "default"); !strings.Contains(r, "via fd00:61::1 dev eth0") {
		t.Fatalf("a's IPv6 default route: %q", r)
	}
	if ra := strings.TrimSpace(h.P("exec", "a", "--", "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra")); ra != "0" {
		t.Fatalf("a accepts router advertisements: accept_ra=%s", ra)
	}
	if !h.ping6("a", b6) || !h.ping6("b", "fd00:61::10") || !h.ping6("a", "fd00:61::1") {
		t.Fatal("IPv6 ping between sandboxes or to the gateway failed")
	}
	h.MustPing("a", h.IP("b", "app"))
	// By name: AAAA answered by the network's resolver.
	if !h.ping6("a", "b") {
		t.Fatalf("ping -6 b by name failed; resolv.conf:\n%s", h.P("exec", "a", "--", "cat", "/etc/resolv.conf"))
	}
	if rc := h.P("exec", "a", "--", "cat", "/etc/resolv.conf"); !strings.Contains(rc, "nameserver 10.90.61.1") || !strings.Contains(rc, "nameserver fd00:61::1") {
		t.Fatalf("resolv.conf lists not both gateways:\n%s", rc)
	}
	out, err := h.lookup("a", "b", "fd00:61::1")
	if err != nil || !strings.Contains(out, b6) {
		t.Fatalf("AAAA of b asked over IPv6: %v\n%s", err, out)
	}
	// PTR in ip6.arpa.
	out, err = h.lookup("b", "fd00:61::10")
	if err != nil || !strings.Contains(out, "a.app") {
		t.Fatalf("reverse lookup of fd00:61::10: %v\n%s", err, out)
	}
	// TCP over IPv6, with the real source.
	srv := ServeTCP(t, h.SandboxNS("b"), "["+b6+"]:7061")
	if _, err := DialFrom(t, h.SandboxNS("a"), "["+b6+"]:7061"); err != nil {
		t.Fatalf("TCP a → [b]:7061: %v", err)
	}
	if p := srv.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], "[fd00:61::10]:") {
		t.Fatalf("b saw %v, want [fd00:61::10]", p)
	}
	// The path of an IPv6 packet, predicted with the kernel's lookups.
	var tr model.Trace
	if err := json.Unmarshal([]byte(h.P("trace", "--predict", "-6", "--format", "json", "a", "b:7061")), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Probe.Dst != b6 || tr.Verdict.Result != model.VerdictDelivered {
		t.Fatalf("trace -6 a b:7061: %+v", tr)
	}
	for _, hop := range tr.Hops {
		if hop.Differs {
			t.Fatalf("the kernel (%s) disagrees with the IPv6 prediction at %+v", hop.Kernel, hop)
		}
	}
	// inspect shows every address per family.
	insp := h.P("sandbox", "inspect", "a")
	for _, want := range []string{"10.90.61.10/24", "fd00:61::10/64", "fd00:61::1"} {
		if !strings.Contains(insp, want) {
			t.Fatalf("sandbox inspect a lacks %s:\n%s", want, insp)
		}
	}
	// A bad --ip6 changes nothing.
	for _, bad := range [][]string{
		{"--ip6", "fd00:62::5"},  // another subnet
		{"--ip6", "fd00:61::1"},  // the gateway
		{"--ip6", "fd00:61::"},   // subnet-router anycast
		{"--ip6", "10.90.61.50"}, // the other family
	} {
		args := append([]string{"sandbox", "create", "bad", "--network", "app"}, bad...)
		if _, err := h.TryP(args...); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
	if _, err := h.TryP("sandbox", "inspect", "bad"); err == nil {
		t.Fatal("a refused sandbox exists")
	}
}

// `network create --ipv6` picks a ULA /64 from the pool; networks are
// isolated from each other over IPv6 as over IPv4; an internal network
// reaches only itself; icc=false keeps its members apart over IPv6.
func TestIPv6IsolationInternalAndICC(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "n1", "--ipv6")
	h.P("network", "create", "n2", "--ipv6")
	var nets []*model.NetworkInfo
	if err := json.Unmarshal([]byte(h.P("network", "inspect", "--format", "json", "n1", "n2")), &nets); err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		s6, ok := n.Subnet6()
		if !ok || s6.Prefix.Bits() != 64 || !s6.Prefix.Addr().IsPrivate() || !s6.Masquerade {
			t.Fatalf("network %s: IPv6 subnet %+v, want a masqueraded ULA /64", n.Name, s6)
		}
	}
	if nets[0].Subnets[1].Prefix == nets[1].Subnets[1].Prefix {
		t.Fatal("two networks got the same IPv6 subnet")
	}
	h.P("sandbox", "create", "x", "--network", "n1")
	h.P("sandbox", "create", "x2", "--network", "n1")
	h.P("sandbox", "create", "y", "--network", "n2")
	if !h.ping6("x", h.IP6("x2", "n1")) {
		t.Fatal("ping -6 inside n1 failed")
	}
	if h.ping6("x", h.IP6("y", "n2")) || h.ping6("y", h.IP6("x", "n1")) {
		t.Fatal("IPv6 crosses from one network to another")
	}
	srv := ServeTCP(t, h.SandboxNS("y"), "["+h.IP6("y", "n2")+"]:7062")
	if _, err := DialFrom(t, h.SandboxNS("x"), srv.Addr); err == nil {
		t.Fatal("TCP over IPv6 crosses networks")
	}

	h.P("network", "create", "int", "--subnet", "10.90.63.0/24", "--subnet", "fd00:63::/64", "--internal")
	h.P("sandbox", "create", "i1", "--network", "int")
	h.P("sandbox", "create", "i2", "--network", "int")
	if !h.ping6("i1", h.IP6("i2", "int")) || !h.ping6("i1", "fd00:63::1") {
		t.Fatal("an internal network's members do not reach each other or their gateway over IPv6")
	}
	if h.ping6("i1", RouterIP6) || h.ping6("i1", HostUplinkIP6) {
		t.Fatal("an internal network reaches out over IPv6")
	}

	h.P("network", "create", "quiet", "--subnet", "10.90.64.0/24", "--subnet", "fd00:64::/64", "--icc=false")
	h.P("sandbox", "create", "p", "--network", "quiet")
	h.P("sandbox", "create", "q", "--network", "quiet")
	if h.ping6("p", h.IP6("q", "quiet")) {
		t.Fatal("icc=false: members reach each other over IPv6")
	}
	if !h.ping6("p", "fd00:64::1") || !h.ping6("p", RouterIP6) {
		t.Fatal("icc=false: a member does not reach its gateway or the outside over IPv6")
	}
}

// Traffic from a ULA subnet leaves masqueraded as the host's IPv6 address
// (NAT66); a global subnet is routed with --masquerade=false by default
// and keeps its source.
func TestIPv6NAT66AndRoutedGlobal(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "ula", "--subnet", "10.90.65.0/24", "--subnet", "fd00:65::/64")
	h.P("network", "create", "glob", "--subnet", "10.90.66.0/24", "--subnet", "2001:db8:66::/64")
	h.P("sandbox", "create", "u", "--network", "ula")
	h.P("sandbox", "create", "g", "--network", "glob")
	srv := ServeTCP(t, h.Outside, "["+LANClientIP6+"]:7065")
	if _, err := DialFrom(t, h.SandboxNS("u"), srv.Addr); err != nil {
		t.Fatalf("ULA sandbox → outside: %v", err)
	}
	if p := srv.Peers(); !strings.HasPrefix(p[len(p)-1], "["+HostUplinkIP6+"]:") {
		t.Fatalf("the outside saw %s, want the host's address %s (NAT66)", p[len(p)-1], HostUplinkIP6)
	}
	// The outside routes the global subnet to the host.
	h.In(h.Outside, "ip", "-6", "route", "add", "2001:db8:66::/64", "via", HostUplinkIP6)
	if _, err := DialFrom(t, h.SandboxNS("g"), srv.Addr); err != nil {
		t.Fatalf("global sandbox → outside: %v", err)
	}
	if p := srv.Peers(); !strings.HasPrefix(p[len(p)-1], "["+h.IP6("g", "glob")+"]:") {
		t.Fatalf("the outside saw %s, want the sandbox's own global address %s", p[len(p)-1], h.IP6("g", "glob"))
	}
}

// A published port answers on the host's IPv6 address from the LAN, on
// [::1] and the host's own IPv6 address from the host, and from another
// sandbox (hairpin) — and a mapping on [::1] only answers there.
func TestIPv6PublishedPorts(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "app", "--subnet", "10.90.67.0/24", "--subnet", "fd00:67::/64")
	h.P("sandbox", "create", "web", "--network", "app", "-p", "8080:80", "-p", "[::1]:8081:81")
	h.P("sandbox", "create", "cli", "--network", "app")
	webNS := h.SandboxNS("web")
	srv := ServeTCP(t, webNS, "[::]:80")
	srv81 := ServeTCP(t, webNS, "[::]:81")
	web6 := h.IP6("web", "app")

	// From the LAN over IPv6: the sandbox sees the client's real address.
	if _, err := DialFrom(t, h.Outside, "["+HostUplinkIP6+"]:8080"); err != nil {
		t.Fatalf("LAN → [host]:8080: %v", err)
	}
	if p := srv.Peers(); !strings.HasPrefix(p[len(p)-1], "["+RouterIP6+"]:") {
		t.Fatalf("web saw %s, want the LAN client's address %s", p[len(p)-1], RouterIP6)
	}
	// And over IPv4, to the sandbox's IPv4 address.
	if _, err := DialFrom(t, h.Outside, HostUplinkIP+":8080"); err != nil {
		t.Fatalf("LAN → host:8080 over IPv4: %v", err)
	}
	// From the host: [::1], its IPv6 address, and 127.0.0.1.
	for _, a := range []string{"[::1]:8080", "[" + HostUplinkIP6 + "]:8080", "127.0.0.1:8080"} {
		if _, err := DialFrom(t, h.NS, a); err != nil {
			t.Fatalf("host → %s: %v", a, err)
		}
	}
	// Hairpin: another sandbox on the network, through the host's address.
	if _, err := DialFrom(t, h.SandboxNS("cli"), "["+HostUplinkIP6+"]:8080"); err != nil {
		t.Fatalf("sandbox → [host]:8080 (hairpin): %v", err)
	}
	// The sandbox itself through its own published port.
	if _, err := DialFrom(t, webNS, "["+HostUplinkIP6+"]:8080"); err != nil {
		t.Fatalf("web → [host]:8080 (own port): %v", err)
	}
	// A mapping on [::1] answers there, not from the LAN.
	if _, err := DialFrom(t, h.NS, "[::1]:8081"); err != nil || len(srv81.Peers()) != 1 {
		t.Fatalf("host → [::1]:8081: %v", err)
	}
	if _, err := DialFrom(t, h.Outside, "["+HostUplinkIP6+"]:8081"); err == nil {
		t.Fatal("a mapping on [::1] answers from the LAN")
	}
	// `port` lists the mapping with both of the sandbox's addresses.
	if out := h.P("port", "web"); !strings.Contains(out, web6) || !strings.Contains(out, "[::1]:8081:81/tcp") {
		t.Fatalf("pontoon port web:\n%s", out)
	}
}

// A sandbox on two dual-stack networks answers on each through the
// interface the request came in on, over IPv6 too (source policy routing
// per family).
func TestIPv6DualHomedPolicyRouting(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "left", "--subnet", "10.90.68.0/24", "--subnet", "fd00:68::/64")
	h.P("network", "create", "right", "--subnet", "10.90.69.0/24", "--subnet", "fd00:69::/64")
	h.P("sandbox", "create", "dual", "--network", "left", "--network", "right")
	h.P("sandbox", "create", "l", "--network", "left")
	h.P("sandbox", "create", "r", "--network", "right")
	for _, c := range []struct{ from, net string }{{"l", "left"}, {"r", "right"}} {
		if !h.ping6(c.from, h.IP6("dual", c.net)) {
			t.Fatalf("ping -6 %s → dual on %s failed", c.from, c.net)
		}
	}
	// Reach dual's right address from the LAN through the host: the
	// reply must leave through eth1 (right), whose gateway routes it.
	srv := ServeTCP(t, h.SandboxNS("dual"), "[::]:7069")
	for _, c := range []struct{ from, net string }{{"l", "left"}, {"r", "right"}} {
		if _, err := DialFrom(t, h.SandboxNS(c.from), "["+h.IP6("dual", c.net)+"]:7069"); err != nil {
			t.Fatalf("TCP %s → dual on %s: %v", c.from, c.net, err)
		}
	}
	if len(srv.Peers()) != 2 {
		t.Fatalf("dual saw %v", srv.Peers())
	}
	rules := h.P("exec", "dual", "--", "ip", "-6", "rule")
	if !strings.Contains(rules, "from "+h.IP6("dual", "right")) {
		t.Fatalf("no IPv6 source rule for the secondary interface:\n%s", rules)
	}
	// Detach right: its IPv6 rule goes too.
	h.P("network", "disconnect", "right", "dual")
	if _, ok := within(5*time.Second, func() (string, bool) {
		out := h.P("exec", "dual", "--", "ip", "-6", "rule")
		return out, !strings.Contains(out, "fd00:69::")
	}); !ok {
		t.Fatalf("the detached network's IPv6 source rule is left:\n%s", h.P("exec", "dual", "--", "ip", "-6", "rule"))
	}
}

// SIGKILL the daemon during parallel dual-stack attaches: after the
// restart no address of either family is held twice, and new sandboxes
// get fresh ones.
func TestIPv6KillDuringParallelAttaches(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "ds", "--subnet", "10.90.70.0/24", "--subnet", "fd00:70::/64")
	var wg sync.WaitGroup
	var ok atomic.Int64
	wg.Go(func() {
		parallel(40, 40, func(i int) {
			if _, err := h.TryP("sandbox", "create", fmt.Sprintf("d%02d", i), "--network", "ds"); err == nil {
				ok.Add(1)
			}
		})
	})
	for deadline := time.Now().Add(30 * time.Second); ok.Load() < 8 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	h.Kill()
	wg.Wait()
	h.Start()
	for i := range 10 {
		h.P("sandbox", "create", fmt.Sprintf("after%02d", i), "--network", "ds")
	}
	seen := map[netip.Addr]string{}
	for _, sb := range checkConsistent(t, h) {
		for _, ep := range sb.Endpoints {
			if ep.Network != "ds" {
				continue
			}
			if len(ep.Addresses) != 2 {
				t.Fatalf("%s has addresses %v, want one per family", sb.Name, ep.Addresses)
			}
			for _, ip := range ep.IPs() {
				if o, dup := seen[ip]; dup {
					t.Fatalf("address %s given to %s and %s", ip, o, sb.Name)
				}
				seen[ip] = sb.Name
			}
		}
	}
	t.Logf("%d addresses, %d created before the kill", len(seen), ok.Load())
	// The survivors talk over IPv6.
	h.MustPing("after00", h.IP("after09", "ds"))
	if !h.ping6("after00", h.IP6("after09", "ds")) {
		t.Fatal("ping -6 between sandboxes created after the restart failed")
	}
}

// BenchmarkIPv6Throughput: iperf3 over IPv6 against IPv4 on the same
// dual-stack sandboxes (bridge), and through an IPv6 published port
// against straight to the sandbox's IPv6 address, from the outside
// namespace and from the host ([::1]):
//
//	go test ./test/e2e -run XXX -bench IPv6Throughput -benchtime 1x
func BenchmarkIPv6Throughput(b *testing.B) {
	for b.Loop() {
		h := NewHost(b)
		h.P("network", "create", "ds", "--subnet", "10.90.72.0/24", "--subnet", "fd00:72::/64")
		h.P("sandbox", "create", "web", "--network", "ds", "-p", "15201:5201")
		h.P("sandbox", "create", "client", "--network", "ds")
		web := h.SandboxNS("web")
		web4, web6 := h.IP("web", "ds"), h.IP6("web", "ds")
		// Straight to the sandbox from outside: a route, and an accept for
		// this one address ahead of pontoon's "nothing unsolicited" drop.
		h.In(h.Outside, "ip", "-6", "route", "add", "fd00:72::/64", "via", HostUplinkIP6)
		h.In(h.NS, "nft", "insert", "rule", "inet", "pontoon", "forward", "ip6", "daddr", web6, "accept")
		var v6S, v4S, outPortS, outDirectS, hostLoS, hostDirectS []float64
		for range 5 {
			v6S = append(v6S, iperf3Gbps(b, h, web, h.SandboxNS("client"), web6, 5201))
			v4S = append(v4S, iperf3Gbps(b, h, web, h.SandboxNS("client"), web4, 5201))
			outPortS = append(outPortS, iperf3Gbps(b, h, web, h.Outside, HostUplinkIP6, 15201))
			outDirectS = append(outDirectS, iperf3Gbps(b, h, web, h.Outside, web6, 5201))
			hostLoS = append(hostLoS, iperf3Gbps(b, h, web, h.NS, "::1", 15201))
			hostDirectS = append(hostDirectS, iperf3Gbps(b, h, web, h.NS, web6, 5201))
		}
		med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
		v6, v4, outPort, outDirect, hostLo, hostDirect := med(v6S), med(v4S), med(outPortS), med(outDirectS), med(hostLoS), med(hostDirectS)
		fmt.Printf("\niperf3, median of 5 runs of 3 s (Gbit/s)\n")
		fmt.Printf("sandbox → sandbox over IPv6 %.2f   over IPv4 %.2f   ratio %.2f\n", v6, v4, v6/v4)
		fmt.Printf("outside → [host]:port %.2f   outside → [sandbox] %.2f   ratio %.2f\n", outPort, outDirect, outPort/outDirect)
		fmt.Printf("host → [::1]:port %.2f   host → [sandbox] %.2f   ratio %.2f\n", hostLo, hostDirect, hostLo/hostDirect)
	}
}
