package firewall

import (
	"net"
	"net/netip"
	"testing"

	"pontoon/internal/model"
)

// TestKernelNoICC: on an icc=false network, bridge port isolation keeps
// the sandboxes apart on the bridge, and the forward chain keeps them
// apart when they route to each other through the gateway (rule no-icc).
// The way out and its replies still pass, and the firewall lets published
// ports through (port isolation does not: see below). With icc=true the
// routed path passes as before.
//
//	a, b ── ptbr-iiii 10.212.1.0/24 + fd00:12::/64 "apart" (ports isolated)
//	host ── vout 198.51.100.1, 2001:db8:f::1 ── outside
//
// a and b each add a host route to the other through the gateway, as a
// root user in a sandbox can, and ignore ICMP redirects (the host sends
// one when it forwards a packet back out of the interface it came in on;
// obeying it would send the next packet straight to the isolated port and
// hide what the firewall does). Both route, so that a ping's reply could
// come back the same way: without rule no-icc, a pings b.
func TestKernelNoICC(t *testing.T) {
	l := newIP6Lab(t)
	l.bridge("ptbr-iiii", "10.212.1.0/24", "fd00:12::/64")
	a := l.sandbox("a", "ptbr-iiii", net.HardwareAddr{2, 0x42, 10, 212, 1, 2}, "10.212.1.2/24", "fd00:12::2/64")
	b := l.sandbox("b", "ptbr-iiii", net.HardwareAddr{2, 0x42, 10, 212, 1, 3}, "10.212.1.3/24", "fd00:12::3/64")
	isolate := func(on string) {
		t.Helper()
		for _, v := range []string{"ptv-a", "ptv-b"} {
			runIn(t, l.host, "bridge", "link", "set", "dev", v, "isolated", on)
		}
	}
	isolate("on")
	l.serve(l.outside, 7777)
	l.serve(a, 80)
	l.serve(b, 80)

	n := Network{Name: "apart", Bridge: "ptbr-iiii", Isolated: true, Subnets: []model.Subnet{
		{Prefix: netip.MustParsePrefix("10.212.1.0/24"), Masquerade: true}, {Prefix: netip.MustParsePrefix("fd00:12::/64"), Masquerade: true}}}
	published := func(port uint16, target ...string) Published {
		p := Published{PortMapping: model.PortMapping{HostPort: port, HostPortEnd: port, Port: 80, PortEnd: 80, Proto: "tcp"}}
		for _, t := range target {
			p.Targets = append(p.Targets, netip.MustParseAddr(t))
		}
		return p
	}
	s := State{Networks: []Network{n}, Ports: []Published{
		published(8080, "10.212.1.3", "fd00:12::3"), // b's
		published(8081, "10.212.1.2", "fd00:12::2"), // a's own
	}}
	syncIn(t, l.host, s)

	want := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: the server saw %q, want %q", what, got, want)
		}
	}
	reach := func(what, ns, addr string) {
		t.Helper()
		for range 3 { // a first miss may be neighbour discovery
			if l.ping(ns, addr) {
				return
			}
		}
		t.Errorf("%s: ping %s failed, want it to pass", what, addr)
	}
	blocked := func(what, ns, addr string) {
		t.Helper()
		if l.ping(ns, addr) {
			t.Errorf("%s: ping %s passed, want it dropped", what, addr)
		}
	}

	// Control of the set-up: on the bridge, the ports are isolated.
	blocked("on the bridge, IPv4", a, "10.212.1.3")
	blocked("on the bridge, IPv6", a, "fd00:12::3")

	for _, sb := range []struct{ ns, peer4, peer6 string }{{a, "10.212.1.3", "fd00:12::3"}, {b, "10.212.1.2", "fd00:12::2"}} {
		l.sysctl(sb.ns, "net/ipv4/conf/all/accept_redirects", "0")
		l.sysctl(sb.ns, "net/ipv4/conf/eth0/accept_redirects", "0")
		l.sysctl(sb.ns, "net/ipv6/conf/all/accept_redirects", "0")
		l.sysctl(sb.ns, "net/ipv6/conf/eth0/accept_redirects", "0")
		l.ip(sb.ns, "route add "+sb.peer4+"/32 via 10.212.1.1")
		l.ip(sb.ns, "-6 route add "+sb.peer6+"/128 via fd00:12::1")
	}

	t.Log("icc=false: routed through the gateway")
	blocked("a to b through the gateway, IPv4", a, "10.212.1.3")
	blocked("a to b through the gateway, IPv6", a, "fd00:12::3")
	want("a to b's server through the gateway, IPv4", l.seen(a, "10.212.1.3", 80), "")
	want("a to b's server through the gateway, IPv6", l.seen(a, "fd00:12::3", 80), "")
	want("b to a's server through the gateway", l.seen(b, "10.212.1.2", 80), "")

	// Published ports from the network's own sandboxes do not connect,
	// whatever the firewall says: with br_netfilter, a DNAT to an address
	// on the same bridge is bridged (br_nf_pre_routing_finish: "bridged
	// DNAT"), from a's port to the target's, and port isolation drops the
	// frame (even back to a's own port). Reachable says so; if this starts
	// to connect, update it. Below, without port isolation, the firewall
	// alone lets these connections through.
	want("a to b's published port, uplink IPv4 (port isolation)", l.seen(a, "198.51.100.1", 8080), "")
	want("a to its own published port (port isolation)", l.seen(a, "198.51.100.1", 8081), "")
	// The outside, and the replies from it.
	want("a to the outside, IPv4", l.seen(a, "198.51.100.2", 7777), "198.51.100.1")
	want("a to the outside, IPv6", l.seen(a, "2001:db8:f::2", 7777), "2001:db8:f::1")
	reach("a to its gateway", a, "10.212.1.1")

	t.Log("icc=false, ports not isolated: the firewall alone")
	// If port isolation is lost (a port re-added before the engine sets
	// it), rule no-icc still drops IP between the sandboxes, bridged
	// (br_netfilter) or routed; published ports pass (no-icc-published),
	// b sees the gateway (hairpin masquerade).
	isolate("off")
	runIn(t, a, "ip", "route", "del", "10.212.1.3/32")
	blocked("a to b on the bridge, no port isolation", a, "10.212.1.3")
	l.ip(a, "route add 10.212.1.3/32 via 10.212.1.1")
	blocked("a to b through the gateway, no port isolation", a, "10.212.1.3")
	want("a to b's published port, uplink IPv4", l.seen(a, "198.51.100.1", 8080), "10.212.1.1")
	want("a to b's published port, uplink IPv6", l.seen(a, "2001:db8:f::1", 8080), "fd00:12::1")
	want("a to b's published port, gateway", l.seen(a, "10.212.1.1", 8080), "10.212.1.1")
	want("a to its own published port", l.seen(a, "198.51.100.1", 8081), "10.212.1.1")

	t.Log("icc=true: the routed path passes, as on any network")
	n.Isolated = false
	s.Networks = []Network{n}
	syncIn(t, l.host, s)
	reach("a to b through the gateway, IPv4", a, "10.212.1.3")
	reach("a to b through the gateway, IPv6", a, "fd00:12::3")
	want("a to b's server through the gateway", l.seen(a, "10.212.1.3", 80), "10.212.1.2")

	// Back to icc=false over the same live state: the Sync alone cuts it.
	isolate("on")
	n.Isolated = true
	s.Networks = []Network{n}
	syncIn(t, l.host, s)
	blocked("icc=false again", a, "10.212.1.3")
}
