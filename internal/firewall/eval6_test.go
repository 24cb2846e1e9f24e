package firewall

import (
	"net"
	"net/netip"
	"testing"

	"pontoon/internal/model"
)

// IPv6 through the same rules: the evaluator reads the per-family rules
// (family.go) as it reads IPv4's, so these are the IPv4 tests' questions
// asked with IPv6 packets.

var (
	addr6A   = netip.MustParseAddr("fd00:1::2")     // sandbox a6 on dualNet
	addr6B   = netip.MustParseAddr("fd00:1::3")     // sandbox b6 on dualNet
	addr6G   = netip.MustParseAddr("2001:db8:1::2") // sandbox g on globalNet (routed, not masqueraded)
	gw6      = netip.MustParseAddr("fd00:1::1")
	uplink6  = netip.MustParseAddr("2001:db8::1")
	lan6     = netip.MustParseAddr("2001:db8::99")
	mac6A    = net.HardwareAddr{0x02, 0x42, 10, 90, 2, 2}
	port6A   = "ptv-00000000a6"
	ll6A     = netip.MustParseAddr("fe80::42:aff:fe5a:202")
	internal = Network{Name: "quiet", Bridge: "ptbr-0000q000", Internal: true, Subnets: []model.Subnet{
		{Prefix: netip.MustParsePrefix("fd00:9::/64"), Masquerade: true}}}
)

func evalState6() State {
	return State{
		Networks: []Network{defaultNet, dualNet, globalNet, internal},
		Ports: []Published{
			{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"},
				Targets: []netip.Addr{netip.MustParseAddr("10.90.2.3"), addr6B}},
			{PortMapping: model.PortMapping{HostIP: uplink6, HostPort: 5353, HostPortEnd: 5353, Port: 53, PortEnd: 53, Proto: "udp"},
				Targets: []netip.Addr{netip.MustParseAddr("10.90.2.3"), addr6B}},
		},
		Guards: []Guarded{{Port: port6A, MAC: mac6A, IPs: []netip.Addr{netip.MustParseAddr("10.90.2.2"), addr6A, ll6A}}},
	}
}

func TestEvaluateForward6(t *testing.T) {
	ev := NewEvaluator(evalState6())
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		{"inside one network (bridged)", Packet{IIF: dualNet.Bridge, OIF: dualNet.Bridge, Src: addr6A, Dst: addr6B, Proto: "tcp", DPort: 80}, "accept by intra"},
		{"to another network", Packet{IIF: dualNet.Bridge, OIF: globalNet.Bridge, Src: addr6A, Dst: addr6G, Proto: "tcp", DPort: 80}, "drop by isolation"},
		{"out to the world", Packet{IIF: dualNet.Bridge, OIF: "uplink0", Src: addr6A, Dst: lan6, Proto: "udp", DPort: 53}, "accept by policy"},
		{"a reply", Packet{IIF: "uplink0", OIF: dualNet.Bridge, Src: lan6, Dst: addr6A, Proto: "udp", SPort: 53, CTState: "established"}, "accept by replies"},
		// A routed global subnet is reachable by address from anywhere
		// that routes it: only (f) keeps the internet out.
		{"the LAN straight to a global address", Packet{IIF: "uplink0", OIF: globalNet.Bridge, Src: lan6, Dst: addr6G, Proto: "tcp", DPort: 22}, "drop by unsolicited"},
		{"internal network out", Packet{IIF: internal.Bridge, OIF: "uplink0", Src: netip.MustParseAddr("fd00:9::2"), Dst: lan6, Proto: "icmpv6"}, "drop by internal-out"},
		{"into the internal network", Packet{IIF: dualNet.Bridge, OIF: internal.Bridge, Src: addr6A, Dst: netip.MustParseAddr("fd00:9::2"), Proto: "icmpv6"}, "drop by internal-in"},
	} {
		c.p.Hook = HookForward
		if got := decided(ev.Evaluate(c.p)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// icc=false judges IPv6 as IPv4: routed through the gateway, dropped;
	// to a published port after DNAT, accepted.
	s := evalState6()
	s.Networks[1].Isolated = true // dualNet
	iso := NewEvaluator(s)
	routed := Packet{Hook: HookForward, IIF: dualNet.Bridge, OIF: dualNet.Bridge, Src: addr6A, Dst: addr6B, Proto: "tcp", DPort: 80}
	if got := decided(iso.Evaluate(routed)); got != "drop by no-icc" {
		t.Errorf("icc=false, routed through the gateway: %s, want drop by no-icc", got)
	}
	routed.DNATed = true
	if got := decided(iso.Evaluate(routed)); got != "accept by no-icc-published" {
		t.Errorf("icc=false, published port after DNAT: %s, want accept by no-icc-published", got)
	}
}

// Masquerade is per subnet: dualNet's ULA subnet is masqueraded,
// globalNet's routed subnet is not, and an internal network never is.
func TestEvaluateMasquerade6(t *testing.T) {
	ev := NewEvaluator(evalState6())
	out := Packet{Hook: HookPostrouting, IIF: dualNet.Bridge, OIF: "uplink0", Src: addr6A, Dst: lan6, Proto: "udp", DPort: 53, OIFAddr: uplink6}
	r := ev.Evaluate(out)
	if decided(r) != "accept by masquerade" || r.Packet.Src != uplink6 || r.By.Rule.Comment != IPv6.comment("masqueraded subnets leaving through a non-pontoon interface") {
		t.Fatalf("ULA out: %s (%+v), source %s", decided(r), r.By, r.Packet.Src)
	}
	global := out
	global.IIF, global.Src = globalNet.Bridge, addr6G
	if r := ev.Evaluate(global); decided(r) != "accept by policy" || r.Packet.Src != addr6G {
		t.Errorf("global subnet: %s, source %s (want it unchanged)", decided(r), r.Packet.Src)
	}
	// globalNet's IPv4 subnet is masqueraded all the same.
	v4 := out
	v4.IIF, v4.Src, v4.Dst, v4.OIFAddr = globalNet.Bridge, netip.MustParseAddr("10.92.0.2"), netip.MustParseAddr("198.51.100.2"), uplinkIP
	if r := ev.Evaluate(v4); decided(r) != "accept by masquerade" || r.Packet.Src != uplinkIP {
		t.Errorf("global network's IPv4: %s, source %s", decided(r), r.Packet.Src)
	}
	in := out
	in.IIF, in.Src = internal.Bridge, netip.MustParseAddr("fd00:9::2")
	if r := ev.Evaluate(in); decided(r) != "accept by policy" {
		t.Errorf("internal network: %s (forward drops it anyway; no masquerade element either)", decided(r))
	}
}

// Published ports over IPv6: the LAN and the host reach the IPv6 target
// through the host's IPv6 addresses; IPv4 clients the IPv4 target; [::1]
// is left alone.
func TestEvaluatePublished6(t *testing.T) {
	ev := NewEvaluator(evalState6())
	pre := ev.Evaluate(Packet{Hook: HookPrerouting, IIF: "uplink0", Src: lan6, Dst: uplink6, Proto: "tcp", SPort: 40000, DPort: 8080, DstLocal: true})
	if decided(pre) != "accept by publish-any" || pre.Packet.Dst != addr6B || pre.Packet.DPort != 80 {
		t.Fatalf("LAN over IPv6: %s → [%s]:%d", decided(pre), pre.Packet.Dst, pre.Packet.DPort)
	}
	if nat := pre.By.NAT; nat != "dnat [2001:db8::1]:8080 → [fd00:1::3]:80 (map ports-any6)" {
		t.Errorf("NAT shown as %q", nat)
	}
	fwd := pre.Packet
	fwd.Hook, fwd.OIF = HookForward, dualNet.Bridge
	if got := decided(ev.Evaluate(fwd)); got != "accept by published" {
		t.Errorf("forward: %s", got)
	}
	v4 := ev.Evaluate(Packet{Hook: HookPrerouting, IIF: "uplink0", Src: lanIP, Dst: uplinkIP, Proto: "tcp", DPort: 8080, DstLocal: true})
	if v4.Packet.Dst != netip.MustParseAddr("10.90.2.3") {
		t.Errorf("IPv4 client: %s → %s, want the IPv4 target", decided(v4), v4.Packet.Dst)
	}
	bound := ev.Evaluate(Packet{Hook: HookPrerouting, IIF: "uplink0", Src: lan6, Dst: uplink6, Proto: "udp", DPort: 5353, DstLocal: true})
	if decided(bound) != "accept by publish-ip" || bound.Packet.Dst != addr6B {
		t.Errorf("bound to the IPv6 host address: %s → %s", decided(bound), bound.Packet.Dst)
	}
	// The host through its own IPv6 address: chain output.
	host := ev.Evaluate(Packet{Hook: HookOutput, OIF: "lo", Src: uplink6, Dst: uplink6, Proto: "tcp", DPort: 8080, DstLocal: true})
	if decided(host) != "accept by publish-any" || host.Packet.Dst != addr6B {
		t.Errorf("host over IPv6: %s → %s", decided(host), host.Packet.Dst)
	}
	// [::1]: not DNATed (the kernel could not answer it; see loopback6).
	lo := ev.Evaluate(Packet{Hook: HookOutput, OIF: "lo", Src: netip.IPv6Loopback(), Dst: netip.IPv6Loopback(), Proto: "tcp", DPort: 8080, DstLocal: true})
	if decided(lo) != "accept by policy" || lo.Packet.DNATed {
		t.Errorf("[::1] from the host: %s, DNATed %v", decided(lo), lo.Packet.DNATed)
	}
	// ::1 from outside: the guard (the kernel drops it before that).
	if got := decided(ev.Evaluate(Packet{Hook: HookPrerouting, IIF: "uplink0", Src: lan6, Dst: netip.IPv6Loopback(), Proto: "tcp", DPort: 8080, DstLocal: true})); got != "drop by loopback-guard" {
		t.Errorf("::1 from the LAN: %s", got)
	}
	// Hairpin: a6 through the host's address to b6 on its own bridge.
	hp := ev.Evaluate(Packet{Hook: HookPrerouting, IIF: dualNet.Bridge, Src: addr6A, Dst: uplink6, Proto: "tcp", DPort: 8080, DstLocal: true})
	p := hp.Packet
	p.Hook, p.IIF, p.OIF, p.OIFAddr = HookPostrouting, "", dualNet.Bridge, gw6
	if r := ev.Evaluate(p); decided(r) != "accept by hairpin" || r.Packet.Src != gw6 {
		t.Errorf("hairpin: %s, source %s", decided(r), r.Packet.Src)
	}
}

// Anti-spoofing for IPv6 on a dual-stack endpoint's port.
func TestEvaluateAntiSpoofing6(t *testing.T) {
	ev := NewEvaluator(evalState6())
	other := addr6B
	allNodes := netip.MustParseAddr("ff02::1")
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		{"own address", Packet{Src: addr6A, Dst: addr6B, Proto: "tcp", DPort: 80}, "accept by policy"},
		{"own link-local address", Packet{Src: ll6A, Dst: netip.MustParseAddr("fe80::1"), Proto: "udp", DPort: 53}, "accept by policy"},
		{"forged source", Packet{Src: netip.MustParseAddr("fd00:1::99"), Dst: addr6B, Proto: "tcp", DPort: 80}, "drop by spoofed-ip"},
		{"another sandbox's source", Packet{Src: other, Dst: addr6B, Proto: "tcp", DPort: 80}, "drop by spoofed-ip"},
		{"another link-local source, not ND", Packet{Src: netip.MustParseAddr("fe80::99"), Dst: netip.MustParseAddr("fe80::1"), Proto: "udp", DPort: 53}, "drop by spoofed-ip"},
		{"neighbour advertisement for itself", Packet{Src: addr6A, Dst: allNodes, Proto: "icmpv6", ICMPType: "nd-neighbor-advert", NDTarget: addr6A}, "accept by policy"},
		{"neighbour advertisement for its link-local", Packet{Src: ll6A, Dst: allNodes, Proto: "icmpv6", ICMPType: "nd-neighbor-advert", NDTarget: ll6A}, "accept by link-local-nd"},
		{"neighbour advertisement for another", Packet{Src: addr6A, Dst: allNodes, Proto: "icmpv6", ICMPType: "nd-neighbor-advert", NDTarget: other}, "drop by spoofed-nd"},
		{"forged advertisement from a link-local source", Packet{Src: netip.MustParseAddr("fe80::99"), Dst: allNodes, Proto: "icmpv6", ICMPType: "nd-neighbor-advert", NDTarget: other}, "drop by spoofed-nd"},
		{"duplicate address detection", Packet{Src: netip.IPv6Unspecified(), Dst: netip.MustParseAddr("ff02::1:ff00:2"), Proto: "icmpv6", ICMPType: "nd-neighbor-solicit"}, "accept by link-local-nd"},
		{"router solicitation", Packet{Src: ll6A, Dst: netip.MustParseAddr("ff02::2"), Proto: "icmpv6", ICMPType: "nd-router-solicit"}, "accept by link-local-nd"},
		{"router advertisement", Packet{Src: ll6A, Dst: allNodes, Proto: "icmpv6", ICMPType: "nd-router-advert"}, "drop by not-a-router"},
		{"redirect", Packet{Src: ll6A, Dst: netip.MustParseAddr("fe80::3"), Proto: "icmpv6", ICMPType: "nd-redirect"}, "drop by not-a-router"},
		{"DHCPv6 server reply", Packet{Src: ll6A, Dst: netip.MustParseAddr("fe80::3"), Proto: "udp", SPort: 547, DPort: 546}, "drop by dhcp-server"},
		{"DHCPv6 client request", Packet{Src: ll6A, Dst: netip.MustParseAddr("ff02::1:2"), Proto: "udp", SPort: 546, DPort: 547}, "accept by policy"},
		{"echo from ::", Packet{Src: netip.IPv6Unspecified(), Dst: addr6B, Proto: "icmpv6", ICMPType: "echo-request"}, "drop by spoofed-ip"},
		{"its IPv4 address still", Packet{Src: netip.MustParseAddr("10.90.2.2"), Dst: netip.MustParseAddr("10.90.2.3"), Proto: "icmp"}, "accept by policy"},
	} {
		c.p.Family, c.p.Hook, c.p.IIF, c.p.EtherSrc = FamilyBridge, HookPrerouting, port6A, mac6A
		if got := decided(ev.Evaluate(c.p)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
