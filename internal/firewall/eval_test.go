package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// Behaviour of the rules, through the evaluator: which rule decides, and
// what NAT does, with no kernel. The kernel agrees (TestKernelEvaluator*,
// and the e2e trace tests).

var (
	addrA    = netip.MustParseAddr("10.88.0.2") // sandbox a on network pontoon
	addrB    = netip.MustParseAddr("10.88.0.3") // sandbox b on network pontoon
	addrC    = netip.MustParseAddr("10.91.0.2") // sandbox c on network front
	addrI    = netip.MustParseAddr("10.90.1.2") // sandbox i on the internal network back
	uplinkIP = netip.MustParseAddr("198.51.100.1")
	lanIP    = netip.MustParseAddr("203.0.113.2")
	macA     = model.MACFromIP(addrA)
	portA    = "ptv-00000000aa"
)

func evalState() State {
	return State{
		Networks: []Network{defaultNet, frontNet, backNet},
		Ports: []Published{
			{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"}, Targets: []netip.Addr{addrB}},
			{PortMapping: model.PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9090, HostPortEnd: 9090, Port: 90, PortEnd: 90, Proto: "udp"}, Targets: []netip.Addr{addrB}},
		},
		Guards: []Guarded{{Port: portA, MAC: macA, IPs: []netip.Addr{addrA}}},
	}
}

// decided says which rule decided and whether the packet was dropped, as
// "drop by isolation" / "accept by intra" / "accept by policy".
func decided(r Result) string {
	v := "accept"
	if r.Dropped {
		v = "drop"
	}
	if r.By == nil {
		return v + " by policy"
	}
	return v + " by " + r.By.Rule.Name
}

func TestEvaluateForward(t *testing.T) {
	ev := NewEvaluator(evalState())
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		{"a to b: inside one network (bridged, br_netfilter)",
			Packet{Hook: HookForward, IIF: "pontoon0", OIF: "pontoon0", Src: addrA, Dst: addrB, Proto: "tcp", DPort: 80}, "accept by intra"},
		{"a to c on another network",
			Packet{Hook: HookForward, IIF: "pontoon0", OIF: frontNet.Bridge, Src: addrA, Dst: addrC, Proto: "tcp", DPort: 80}, "drop by isolation"},
		{"a to the outside",
			Packet{Hook: HookForward, IIF: "pontoon0", OIF: "uplink0", Src: addrA, Dst: netip.MustParseAddr("198.51.100.2"), Proto: "udp", DPort: 53}, "accept by policy"},
		{"a reply from the outside",
			Packet{Hook: HookForward, IIF: "uplink0", OIF: "pontoon0", Src: netip.MustParseAddr("198.51.100.2"), Dst: addrA, Proto: "udp", SPort: 53, CTState: "established"}, "accept by replies"},
		{"internal network to the outside",
			Packet{Hook: HookForward, IIF: backNet.Bridge, OIF: "uplink0", Src: addrI, Dst: netip.MustParseAddr("198.51.100.2"), Proto: "icmp"}, "drop by internal-out"},
		{"internal network to another network",
			Packet{Hook: HookForward, IIF: backNet.Bridge, OIF: "pontoon0", Src: addrI, Dst: addrA, Proto: "icmp"}, "drop by internal-out"},
		{"another network into the internal one",
			Packet{Hook: HookForward, IIF: "pontoon0", OIF: backNet.Bridge, Src: addrA, Dst: addrI, Proto: "icmp"}, "drop by internal-in"},
		{"internal network inside itself",
			Packet{Hook: HookForward, IIF: backNet.Bridge, OIF: backNet.Bridge, Src: addrI, Dst: addrI.Next(), Proto: "icmp"}, "accept by intra"},
		{"the LAN straight to a sandbox's address",
			Packet{Hook: HookForward, IIF: "uplink0", OIF: "pontoon0", Src: lanIP, Dst: addrA, Proto: "tcp", DPort: 80}, "drop by unsolicited"},
		{"the LAN to a published port (after DNAT)",
			Packet{Hook: HookForward, IIF: "uplink0", OIF: "pontoon0", Src: lanIP, Dst: addrB, Proto: "tcp", DPort: 80, DNATed: true}, "accept by published"},
		{"another network to a published port (after DNAT)",
			Packet{Hook: HookForward, IIF: frontNet.Bridge, OIF: "pontoon0", Src: addrC, Dst: addrB, Proto: "tcp", DPort: 80, DNATed: true}, "accept by published"},
		{"internal network to a published port (after DNAT)",
			Packet{Hook: HookForward, IIF: backNet.Bridge, OIF: "pontoon0", Src: addrI, Dst: addrB, Proto: "tcp", DPort: 80, DNATed: true}, "drop by internal-out"},
		{"neither end pontoon's",
			Packet{Hook: HookForward, IIF: "eth1", OIF: "uplink0", Src: lanIP, Dst: netip.MustParseAddr("198.51.100.2"), Proto: "tcp", DPort: 22}, "accept by policy"},
	} {
		if got := decided(ev.Evaluate(c.p)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// icc=false: two sandboxes of one network, apart on the bridge (port
// isolation), stay apart when one routes to the other through the gateway
// (forward sees iifname = oifname = the bridge); what the host let in
// (replies, published ports through a host address) and the way out still
// pass. The same network with icc=true lets the routed packet through.
func TestEvaluateNoICC(t *testing.T) {
	apart := apartNet
	quiet := Network{Name: "quiet", Bridge: "ptbr-0000a9aa", Subnets: v4(netip.MustParsePrefix("10.96.0.0/24"), false), Internal: true, Isolated: true}
	a, b := netip.MustParseAddr("10.95.0.2"), netip.MustParseAddr("10.95.0.3")
	qa, qb := netip.MustParseAddr("10.96.0.2"), netip.MustParseAddr("10.96.0.3")
	s := State{Networks: []Network{defaultNet, frontNet, apart, quiet},
		Ports: []Published{{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"}, Targets: []netip.Addr{b}}}}
	ev := NewEvaluator(s)
	br, qbr := apart.Bridge, quiet.Bridge
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		{"a to b routed through the gateway", Packet{IIF: br, OIF: br, Src: a, Dst: b, Proto: "tcp", DPort: 80}, "drop by no-icc"},
		{"a to b, ICMP", Packet{IIF: br, OIF: br, Src: a, Dst: b, Proto: "icmp"}, "drop by no-icc"},
		{"a reply between them (a connection the host let in)", Packet{IIF: br, OIF: br, Src: b, Dst: a, Proto: "tcp", SPort: 80, CTState: "established"}, "accept by replies"},
		{"a to b's published port through a host address (after DNAT)", Packet{IIF: br, OIF: br, Src: a, Dst: b, Proto: "tcp", DPort: 80, DNATed: true}, "accept by no-icc-published"},
		{"a to the outside", Packet{IIF: br, OIF: "uplink0", Src: a, Dst: netip.MustParseAddr("198.51.100.2"), Proto: "tcp", DPort: 443}, "accept by policy"},
		{"a reply from the outside", Packet{IIF: "uplink0", OIF: br, Src: netip.MustParseAddr("198.51.100.2"), Dst: a, Proto: "tcp", SPort: 443, CTState: "established"}, "accept by replies"},
		{"a to another network", Packet{IIF: br, OIF: "pontoon0", Src: a, Dst: addrA, Proto: "icmp"}, "drop by isolation"},
		{"another network to b's published port", Packet{IIF: frontNet.Bridge, OIF: br, Src: addrC, Dst: b, Proto: "tcp", DPort: 80, DNATed: true}, "accept by published"},
		{"the LAN straight to a", Packet{IIF: "uplink0", OIF: br, Src: lanIP, Dst: a, Proto: "tcp", DPort: 80}, "drop by unsolicited"},
		{"icc=true: routed through the gateway still passes", Packet{IIF: "pontoon0", OIF: "pontoon0", Src: addrA, Dst: addrB, Proto: "tcp", DPort: 80}, "accept by intra"},
		// Internal and icc=false: no-icc before (c), so the reason given
		// is the right one; a published port through the gateway passes
		// as (a) lets it on other internal networks.
		{"internal, qa to qb routed", Packet{IIF: qbr, OIF: qbr, Src: qa, Dst: qb, Proto: "icmp"}, "drop by no-icc"},
		{"internal, qa to qb's published port through the gateway", Packet{IIF: qbr, OIF: qbr, Src: qa, Dst: qb, Proto: "tcp", DPort: 80, DNATed: true}, "accept by no-icc-published"},
		{"internal, out", Packet{IIF: qbr, OIF: "uplink0", Src: qa, Dst: netip.MustParseAddr("198.51.100.2"), Proto: "icmp"}, "drop by internal-out"},
	} {
		c.p.Hook = HookForward
		if got := decided(ev.Evaluate(c.p)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// The same network with icc=true: the routed packet is intra.
	apart.Isolated = false
	open := NewEvaluator(State{Networks: []Network{apart}})
	if got := decided(open.Evaluate(Packet{Hook: HookForward, IIF: br, OIF: br, Src: a, Dst: b, Proto: "icmp"})); got != "accept by intra" {
		t.Errorf("icc=true, routed through the gateway: %s, want accept by intra", got)
	}
}

// A published port from the LAN: DNAT in prerouting (by the map of every
// host address), accepted in forward as a DNATed connection, no source NAT
// on the way in.
func TestEvaluatePublishedFromLAN(t *testing.T) {
	ev := NewEvaluator(evalState())
	p := Packet{Hook: HookPrerouting, IIF: "uplink0", Src: lanIP, Dst: uplinkIP, Proto: "tcp", SPort: 40000, DPort: 8080, DstLocal: true}
	pre := ev.Evaluate(p)
	if got := decided(pre); got != "accept by publish-any" {
		t.Fatalf("prerouting: %s", got)
	}
	if pre.Packet.Dst != addrB || pre.Packet.DPort != 80 || !pre.Packet.DNATed {
		t.Fatalf("after prerouting: %+v, want dst %s:80 DNATed", pre.Packet, addrB)
	}
	if nat := pre.By.NAT; nat != "dnat 198.51.100.1:8080 → 10.88.0.3:80 (map ports-any)" {
		t.Errorf("NAT shown as %q", nat)
	}
	// The loopback guard ran first (raw priority), and let it pass.
	if len(pre.Steps) != 2 || pre.Steps[0].Chain != chainGuard || pre.Steps[0].Rule != nil || pre.Steps[1].Chain != chainPrerouting {
		t.Errorf("prerouting chains: %+v", pre.Steps)
	}
	fwd := pre.Packet
	fwd.Hook, fwd.OIF = HookForward, "pontoon0"
	if got := decided(ev.Evaluate(fwd)); got != "accept by published" {
		t.Fatalf("forward: %s", got)
	}
	post := fwd
	post.Hook, post.OIFAddr = HookPostrouting, netip.MustParseAddr("10.88.0.1")
	if r := ev.Evaluate(post); decided(r) != "accept by policy" || r.Packet.Src != lanIP {
		t.Fatalf("postrouting: %s, source %s (want no NAT: the sandbox sees the LAN client)", decided(r), r.Packet.Src)
	}

	// A port nobody published: no DNAT, and forward (f) would keep the LAN
	// out of the sandbox anyway.
	p.DPort = 8081
	if r := ev.Evaluate(p); decided(r) != "accept by policy" || r.Packet.Dst != uplinkIP {
		t.Errorf("unpublished port: %s, dst %s", decided(r), r.Packet.Dst)
	}
	// A mapping bound to 127.0.0.1 is not for the LAN: the loopback guard
	// drops what claims to be for it before NAT sees it.
	lo := Packet{Hook: HookPrerouting, IIF: "uplink0", Src: lanIP, Dst: netip.MustParseAddr("127.0.0.1"), Proto: "udp", DPort: 9090, DstLocal: true}
	if got := decided(ev.Evaluate(lo)); got != "drop by loopback-guard" {
		t.Errorf("127.0.0.1 from the LAN: %s", got)
	}
	// From the host itself it is DNATed (chain output, map of one address).
	lo.Hook, lo.IIF = HookOutput, ""
	if r := ev.Evaluate(lo); decided(r) != "accept by publish-ip" || r.Packet.Dst != addrB || r.Packet.DPort != 90 {
		t.Errorf("127.0.0.1 from the host: %s → %s:%d", decided(r), r.Packet.Dst, r.Packet.DPort)
	}
}

// Hairpin: sandbox a reaches b's published port through the host's
// address; the DNATed connection is bridged back onto pontoon0 and its
// source becomes the gateway, so b answers through the host.
func TestEvaluateHairpin(t *testing.T) {
	ev := NewEvaluator(evalState())
	gw := netip.MustParseAddr("10.88.0.1")
	pre := ev.Evaluate(Packet{Hook: HookPrerouting, IIF: "pontoon0", Src: addrA, Dst: uplinkIP, Proto: "tcp", SPort: 40000, DPort: 8080, DstLocal: true})
	if decided(pre) != "accept by publish-any" || pre.Packet.Dst != addrB {
		t.Fatalf("prerouting: %s → %s", decided(pre), pre.Packet.Dst)
	}
	p := pre.Packet
	p.Hook, p.OIF = HookForward, "pontoon0"
	if got := decided(ev.Evaluate(p)); got != "accept by intra" {
		t.Fatalf("forward: %s", got)
	}
	p.Hook, p.IIF, p.OIFAddr = HookPostrouting, "", gw // bridged DNAT: no input device here
	post := ev.Evaluate(p)
	if decided(post) != "accept by hairpin" || post.Packet.Src != gw {
		t.Fatalf("postrouting: %s, source %s, want hairpin masquerade to %s", decided(post), post.Packet.Src, gw)
	}
	// From another network: accepted as a published connection, and
	// masqueraded to the gateway of the target's network.
	q := Packet{Hook: HookForward, IIF: frontNet.Bridge, OIF: "pontoon0", Src: addrC, Dst: addrB, Proto: "tcp", DPort: 80, DNATed: true}
	if got := decided(ev.Evaluate(q)); got != "accept by published" {
		t.Errorf("other network, forward: %s", got)
	}
}

// Masquerade out: a masqueraded subnet leaving through the uplink gets the
// uplink's address; an unmasqueraded network and traffic between bridges
// keep their source; replies never reach the nat chain.
func TestEvaluateMasquerade(t *testing.T) {
	s := evalState()
	s.Networks = append(s.Networks, routedNet)
	ev := NewEvaluator(s)
	out := Packet{Hook: HookPostrouting, IIF: "pontoon0", OIF: "uplink0", Src: addrA, Dst: netip.MustParseAddr("198.51.100.2"), Proto: "udp", DPort: 53, OIFAddr: uplinkIP}
	r := ev.Evaluate(out)
	if decided(r) != "accept by masquerade" || r.Packet.Src != uplinkIP || r.By.NAT != "masquerade 10.88.0.2 → 198.51.100.1" {
		t.Fatalf("out: %s, source %s, NAT %q", decided(r), r.Packet.Src, r.By.NAT)
	}
	routed := out
	routed.IIF, routed.Src = routedNet.Bridge, netip.MustParseAddr("10.93.0.2")
	if r := ev.Evaluate(routed); decided(r) != "accept by policy" || r.Packet.Src != routed.Src {
		t.Errorf("unmasqueraded network: %s, source %s", decided(r), r.Packet.Src)
	}
	bridged := out
	bridged.IIF, bridged.OIF, bridged.Dst = "pontoon0", "pontoon0", addrB
	if r := ev.Evaluate(bridged); decided(r) != "accept by policy" || r.Packet.Src != addrA {
		t.Errorf("inside a network: %s, source %s", decided(r), r.Packet.Src)
	}
	reply := out
	reply.CTState = "established"
	if r := ev.Evaluate(reply); len(r.Steps) != 0 {
		t.Errorf("a reply went through a nat chain: %+v", r.Steps)
	}
}

// Anti-spoofing, in table bridge pontoon: a sandbox's port only carries
// its own MAC and address.
func TestEvaluateAntiSpoofing(t *testing.T) {
	ev := NewEvaluator(evalState())
	forgedMAC := net.HardwareAddr{0x02, 0x42, 10, 88, 0, 99}
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		{"own MAC and address", Packet{EtherSrc: macA, Src: addrA, Dst: addrB, Proto: "icmp"}, "accept by policy"},
		{"forged source address", Packet{EtherSrc: macA, Src: netip.MustParseAddr("10.88.0.99"), Dst: addrB, Proto: "icmp"}, "drop by spoofed-ip"},
		{"another sandbox's address", Packet{EtherSrc: macA, Src: addrB, Dst: addrB, Proto: "icmp"}, "drop by spoofed-ip"},
		{"forged MAC", Packet{EtherSrc: forgedMAC, Src: addrA, Dst: addrB, Proto: "icmp"}, "drop by spoofed-mac"},
		{"ARP for itself", Packet{EtherType: "arp", EtherSrc: macA, ARPSender: addrA}, "accept by policy"},
		{"ARP claiming another address", Packet{EtherType: "arp", EtherSrc: macA, ARPSender: addrB}, "drop by spoofed-arp"},
		// A DHCP server's reply comes from its own address, which the
		// source check passes: dropped by its own rule. A client's
		// request (here a renewal, from its own address) passes.
		{"DHCP server reply (offer) from its own address", Packet{EtherSrc: macA, Src: addrA, Dst: netip.MustParseAddr("255.255.255.255"), Proto: "udp", SPort: 67, DPort: 68}, "drop by dhcp-server"},
		{"DHCP client request from its own address", Packet{EtherSrc: macA, Src: addrA, Dst: netip.MustParseAddr("255.255.255.255"), Proto: "udp", SPort: 68, DPort: 67}, "accept by policy"},
		{"DHCP from port 67 to 67 (to a relay)", Packet{EtherSrc: macA, Src: addrA, Dst: netip.MustParseAddr("10.88.0.1"), Proto: "udp", SPort: 67, DPort: 67}, "accept by policy"},
		// a has no IPv6 address: it may solicit neighbours from its
		// link-local address, and send nothing else over IPv6.
		{"IPv6 from an IPv4-only endpoint", Packet{EtherSrc: macA, Src: netip.MustParseAddr("fd00:1::99"), Dst: netip.MustParseAddr("fd00:1::2"), Proto: "udp", DPort: 53}, "drop by spoofed-ip"},
		{"IPv4-only endpoint soliciting", Packet{EtherSrc: macA, Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("ff02::1:ff00:2"), Proto: "icmpv6", ICMPType: "nd-neighbor-solicit"}, "accept by link-local-nd"},
	} {
		c.p.Family, c.p.Hook, c.p.IIF = FamilyBridge, HookPrerouting, portA
		r := ev.Evaluate(c.p)
		if got := decided(r); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		if len(r.Steps) != 1 || r.Steps[0].Where() != "bridge pontoon anti-spoof" {
			t.Errorf("%s: steps %+v", c.name, r.Steps)
		}
	}
	// A port that is not a sandbox's (the uplink enslaved to a bridge, a
	// VM's tap) is left alone.
	r := ev.Evaluate(Packet{Family: FamilyBridge, Hook: HookPrerouting, IIF: "eth1", EtherSrc: forgedMAC, Src: lanIP, Dst: addrA, Proto: "icmp"})
	if got := decided(r); got != "accept by not-a-sandbox" {
		t.Errorf("foreign port: %s", got)
	}
}

// Every rule's text comes from its description, and FindRule maps a chain
// and comment (what trace events and nft list give) back to it.
func TestRulesAsData(t *testing.T) {
	seen := map[string]bool{}
	names := map[string]int{}
	for fam, chains := range map[Family][]Chain{FamilyInet: InetChains, FamilyBridge: BridgeChains} {
		for _, c := range chains {
			for _, r := range c.Rules {
				// A name may repeat in a chain, once per IP family (the
				// same rule built for each); the comment never does: the
				// trace finds a rule by chain and comment.
				id := c.Name + "/" + r.Name
				if key := c.Name + "/" + r.Comment; seen[key] {
					t.Errorf("comment %q used twice in chain %s", r.Comment, c.Name)
				} else {
					seen[key] = true
				}
				if names[id]++; names[id] > len(IPFamilies) {
					t.Errorf("rule name %s used %d times in one chain", id, names[id])
				}
				_, got, ok := FindRule(fam, c.Name, r.Comment)
				if !ok || got.Name != r.Name {
					t.Errorf("FindRule(%s, %s, %q) = %v, %v", fam, c.Name, r.Comment, got.Name, ok)
				}
				if r.Action.Verb == Drop && r.Why == "" {
					t.Errorf("rule %s drops without saying why", id)
				}
				if strings.Contains(r.Text(), "  ") || strings.HasPrefix(r.Text(), " ") {
					t.Errorf("rule %s renders as %q", id, r.Text())
				}
			}
		}
	}
	if _, _, ok := FindRule(FamilyInet, chainForward, "someone else's"); ok {
		t.Error("FindRule found a rule that is not pontoon's")
	}
}

// BenchmarkEvaluate: one packet through forward on a host with 500
// sandboxes and 1000 published ports (the evaluator's budget is < 1 ms),
// and the cost of indexing that state.
func BenchmarkEvaluate(b *testing.B) {
	s := bigState(500, 1000)
	ev := NewEvaluator(s)
	p := Packet{Hook: HookPrerouting, IIF: "uplink0", Src: lanIP, Dst: uplinkIP, Proto: "tcp", DPort: 20999, DstLocal: true}
	b.Run("packet", func(b *testing.B) {
		for b.Loop() {
			r := ev.Evaluate(p)
			if r.Packet.DPort != 80 {
				b.Fatalf("not DNATed: %+v", r.Packet)
			}
		}
	})
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			NewEvaluator(s)
		}
	})
}

// bigState is a host with sandboxes spread over 10 networks and ports
// published from 20000 up.
func bigState(sandboxes, ports int) State {
	var s State
	for n := range 10 {
		s.Networks = append(s.Networks, Network{Name: fmt.Sprintf("net%d", n), Bridge: fmt.Sprintf("ptbr-%08d", n),
			Subnets: v4(netip.MustParsePrefix(fmt.Sprintf("10.100.%d.0/24", n)), true)})
	}
	for i := range sandboxes {
		ip := netip.AddrFrom4([4]byte{10, 100, byte(i % 10), byte(2 + i/10)})
		s.Guards = append(s.Guards, Guarded{Port: fmt.Sprintf("ptv-%010d", i), MAC: model.MACFromIP(ip), IPs: []netip.Addr{ip}})
	}
	for i := range ports {
		g := s.Guards[i%sandboxes]
		s.Ports = append(s.Ports, Published{PortMapping: model.PortMapping{HostPort: uint16(20000 + i), HostPortEnd: uint16(20000 + i),
			Port: 80, PortEnd: 80, Proto: "tcp"}, Targets: g.IPs})
	}
	return s
}

// An overlay network's VXLAN device is one of its links: traffic between
// it and the network's bridge stays inside the network (to and from the
// network's sandboxes on other hosts), is not masqueraded, and other
// networks do not reach it.
func TestEvaluateNetworkLinks(t *testing.T) {
	web := Network{Name: "web", Bridge: "ptbr-0000aaaa", Links: []string{"ptvx-42"}, Subnets: v4(netip.MustParsePrefix("10.200.1.0/24"), true),
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}, RemoteVia: "ptvx-42"}
	// A link whose network knows no remote members (a daemon without
	// --cluster): nothing that comes out of it is the network's.
	alone := Network{Name: "alone", Bridge: "ptbr-0000bbbb", Links: []string{"ptvx-43"}, Subnets: v4(netip.MustParsePrefix("10.210.1.0/24"), true)}
	ev := NewEvaluator(State{Networks: []Network{defaultNet, web, alone}})
	local, remote := netip.MustParseAddr("10.200.1.2"), netip.MustParseAddr("10.200.2.2")
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		{"to a sandbox on another host", Packet{Hook: HookForward, IIF: web.Bridge, OIF: "ptvx-42", Src: local, Dst: remote, Proto: "tcp", DPort: 80}, "accept by intra"},
		{"from a sandbox on another host", Packet{Hook: HookForward, IIF: "ptvx-42", OIF: web.Bridge, Src: remote, Dst: local, Proto: "tcp", DPort: 80}, "accept by remote-in"},
		{"out of a link whose network has no remote members", Packet{Hook: HookForward, IIF: "ptvx-43", OIF: alone.Bridge, Src: netip.MustParseAddr("10.210.2.2"), Dst: netip.MustParseAddr("10.210.1.2"), Proto: "icmp"}, "drop by overlay-source"},
		{"another network to the overlay", Packet{Hook: HookForward, IIF: "pontoon0", OIF: "ptvx-42", Src: addrA, Dst: remote, Proto: "icmp"}, "drop by isolation"},
		{"the LAN into the overlay", Packet{Hook: HookForward, IIF: "uplink0", OIF: "ptvx-42", Src: lanIP, Dst: remote, Proto: "icmp"}, "drop by unsolicited"},
	} {
		if got := decided(ev.Evaluate(c.p)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// Not masqueraded towards another host's sandboxes.
	r := ev.Evaluate(Packet{Hook: HookPostrouting, IIF: web.Bridge, OIF: "ptvx-42", Src: local, Dst: remote, Proto: "tcp", DPort: 80})
	if r.Packet.Src != local {
		t.Errorf("masqueraded towards another host's sandbox: source %s, want %s (%s)", r.Packet.Src, local, decided(r))
	}
	// … while what leaves the host is.
	r = ev.Evaluate(Packet{Hook: HookPostrouting, IIF: web.Bridge, OIF: "uplink0", OIFAddr: netip.MustParseAddr("198.51.100.1"), Src: local, Dst: lanIP, Proto: "tcp", DPort: 80})
	if r.Packet.Src == local {
		t.Errorf("not masqueraded towards the LAN: %s", decided(r))
	}
	if err := validate(State{Networks: []Network{web, {Name: "other", Bridge: "ptbr-0000bbbb", Links: []string{"ptvx-42"}}}}); err == nil {
		t.Error("two networks sharing a link were accepted")
	}
}
