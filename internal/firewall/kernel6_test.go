package firewall

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// IPv6 through the real kernel, in namespaces the tests create (the
// IPv4 counterparts are traffic_test.go and reach_test.go).

// ip6lab is a host namespace with pontoon bridges and sandboxes, and an
// outside namespace on the host's uplink:
//
//	sandboxes ── ptbr-* (a gateway per family) ─┐
//	                                            host ── vout 2001:db8:f::1/64, 198.51.100.1/24
//	                                                       │
//	                                   outside: eth0 2001:db8:f::2/64, 198.51.100.2/24
//	                                   (routes fd00::/8 and 10.0.0.0/8 via the host)
type ip6lab struct {
	t       *testing.T
	host    string
	outside string
	sb      map[string]string // sandbox name → namespace
}

func newIP6Lab(t *testing.T) *ip6lab {
	l := &ip6lab{t: t, host: testutil.NewNetns(t), outside: testutil.NewNetns(t), sb: map[string]string{}}
	l.ip(l.host, "link add vout type veth peer name eth0 netns "+l.outside)
	l.ip(l.host, "addr add 198.51.100.1/24 dev vout")
	l.ip(l.host, "addr add 2001:db8:f::1/64 dev vout nodad")
	l.ip(l.host, "link set vout up")
	l.ip(l.outside, "addr add 198.51.100.2/24 dev eth0")
	l.ip(l.outside, "addr add 2001:db8:f::2/64 dev eth0 nodad")
	l.ip(l.outside, "link set eth0 up")
	// The outside routes the sandboxes' subnets to the host (a LAN
	// neighbour that knows them, or the internet for a routed global
	// subnet): what keeps it out must be the firewall.
	l.ip(l.outside, "route add 10.0.0.0/8 via 198.51.100.1")
	l.ip(l.outside, "-6 route add fd00::/8 via 2001:db8:f::1")
	l.ip(l.outside, "-6 route add 2001:db8:1::/48 via 2001:db8:f::1")
	l.sysctl(l.host, "net/ipv4/ip_forward", "1")
	l.sysctl(l.host, "net/ipv6/conf/all/forwarding", "1")
	return l
}

func (l *ip6lab) ip(ns, args string) {
	l.t.Helper()
	runIn(l.t, ns, append([]string{"ip"}, strings.Fields(args)...)...)
}

// sysctl writes /proc/sys/NAME in ns (/proc/sys/net shows the namespace
// of the thread that opens it).
func (l *ip6lab) sysctl(ns, name, v string) {
	l.t.Helper()
	if err := testutil.InNetns(l.t, ns, func() error { return os.WriteFile("/proc/sys/"+name, []byte(v), 0o644) }); err != nil {
		l.t.Fatal(err)
	}
}

// bridge makes a bridge with one gateway address per prefix (the first
// host address of each).
func (l *ip6lab) bridge(name string, subnets ...string) {
	l.ip(l.host, "link add "+name+" type bridge")
	for _, s := range subnets {
		p := netip.MustParsePrefix(s)
		l.ip(l.host, "addr add "+netip.PrefixFrom(p.Addr().Next(), p.Bits()).String()+" dev "+name+" nodad")
	}
	l.ip(l.host, "link set "+name+" up")
}

// sandbox makes a namespace on bridge with addresses addrs (one per
// family) and default routes through the bridge's gateways.
func (l *ip6lab) sandbox(name, bridge string, mac net.HardwareAddr, addrs ...string) string {
	ns := testutil.NewNetns(l.t)
	l.sb[name] = ns
	veth := "ptv-" + name
	l.ip(l.host, "link add "+veth+" type veth peer name eth0 netns "+ns)
	l.ip(l.host, "link set "+veth+" master "+bridge+" up")
	runIn(l.t, l.host, "bridge", "link", "set", "dev", veth, "hairpin", "on")
	l.ip(ns, "link set eth0 address "+mac.String())
	for _, a := range addrs {
		l.ip(ns, "addr add "+a+" dev eth0 nodad") // nodad: ignored for IPv4
	}
	l.ip(ns, "link set eth0 up")
	for _, a := range addrs {
		l.ip(ns, "route add default via "+netip.MustParsePrefix(a).Masked().Addr().Next().String())
	}
	return ns
}

// serve runs a TCP server on [::]:port in ns (IPv4 and IPv6) that answers
// each connection with the address it sees the peer as.
func (l *ip6lab) serve(ns string, port int) {
	l.t.Helper()
	var ln net.Listener
	if err := testutil.InNetns(l.t, ns, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort("::", strconv.Itoa(port)))
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
			io.WriteString(c, ap.Addr().Unmap().String())
			c.Close()
		}
	}()
}

// seen connects from ns to addr:port and returns what the server said
// (the address it saw the client as), or "" when no connection was made.
func (l *ip6lab) seen(ns, addr string, port int) string {
	var got string
	_ = testutil.InNetns(l.t, ns, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(port)), time.Second)
		if err != nil {
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		b, _ := io.ReadAll(c)
		got = string(b)
		return nil
	})
	return got
}

func (l *ip6lab) ping(ns, addr string) bool {
	_, err := tryIn(l.t, ns, "ping", "-n", "-c1", "-W1", addr)
	return err == nil
}

// TestKernelTraffic6 sends real IPv6 through the ruleset: isolation
// between networks, internal networks, masquerade per subnet, published
// ports from the outside, the host and sandboxes, and icc=false.
//
//	a1, a2 ── ptbr-aaaa 10.211.1.0/24 + fd00:a::/64   "front" (ULA, masqueraded)
//	b1     ── ptbr-bbbb 10.211.2.0/24 + fd00:b::/64   "back"
//	g1     ── ptbr-gggg 2001:db8:1:1::/64              "global" (routed, not masqueraded)
func TestKernelTraffic6(t *testing.T) {
	l := newIP6Lab(t)
	l.bridge("ptbr-aaaa", "10.211.1.0/24", "fd00:a::/64")
	l.bridge("ptbr-bbbb", "10.211.2.0/24", "fd00:b::/64")
	l.bridge("ptbr-gggg", "2001:db8:1:1::/64")
	a1 := l.sandbox("a1", "ptbr-aaaa", net.HardwareAddr{2, 0x42, 10, 211, 1, 2}, "10.211.1.2/24", "fd00:a::2/64")
	a2 := l.sandbox("a2", "ptbr-aaaa", net.HardwareAddr{2, 0x42, 10, 211, 1, 3}, "10.211.1.3/24", "fd00:a::3/64")
	b1 := l.sandbox("b1", "ptbr-bbbb", net.HardwareAddr{2, 0x42, 10, 211, 2, 2}, "10.211.2.2/24", "fd00:b::2/64")
	g1 := l.sandbox("g1", "ptbr-gggg", net.HardwareAddr{2, 0x42, 10, 211, 3, 2}, "2001:db8:1:1::2/64")
	for _, ns := range []string{l.outside, a1, a2, b1, g1} {
		l.serve(ns, 7777)
	}
	l.serve(a1, 80)

	sub := func(p string, masq bool) model.Subnet {
		return model.Subnet{Prefix: netip.MustParsePrefix(p), Masquerade: masq}
	}
	front := Network{Name: "front", Bridge: "ptbr-aaaa", Subnets: []model.Subnet{sub("10.211.1.0/24", true), sub("fd00:a::/64", true)}}
	back := Network{Name: "back", Bridge: "ptbr-bbbb", Subnets: []model.Subnet{sub("10.211.2.0/24", true), sub("fd00:b::/64", true)}}
	global := Network{Name: "global", Bridge: "ptbr-gggg", Subnets: []model.Subnet{sub("2001:db8:1:1::/64", false)}}
	ports := []Published{{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"},
		Targets: []netip.Addr{netip.MustParseAddr("10.211.1.2"), netip.MustParseAddr("fd00:a::2")}}}
	state := func() State { return State{Networks: []Network{front, back, global}} }

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

	t.Log("three networks, published port published over netlink")
	syncIn(t, l.host, state())
	withFirewall(t, l.host, func(fw Interface) error { return fw.Publish(context.Background(), ports) })
	reach("same network", a1, "fd00:a::3")
	reach("sandbox to its gateway", b1, "fd00:b::1")
	blocked("front to back", a1, "fd00:b::2")
	blocked("back to front", b1, "fd00:a::2")
	blocked("front to global", a1, "2001:db8:1:1::2")
	want("ULA subnet goes out masqueraded", l.seen(a1, "2001:db8:f::2", 7777), "2001:db8:f::1")
	want("IPv4 alongside", l.seen(a1, "198.51.100.2", 7777), "198.51.100.1")
	want("routed global subnet keeps its address", l.seen(g1, "2001:db8:f::2", 7777), "2001:db8:1:1::2")
	blocked("outside into a ULA sandbox", l.outside, "fd00:a::2")
	blocked("outside into a global sandbox", l.outside, "2001:db8:1:1::2")
	want("outside to a global sandbox's server", l.seen(l.outside, "2001:db8:1:1::2", 7777), "")

	// Published: the same mapping answers over both families.
	want("published, from outside over IPv6", l.seen(l.outside, "2001:db8:f::1", 8080), "2001:db8:f::2")
	want("published, from outside over IPv4", l.seen(l.outside, "198.51.100.1", 8080), "198.51.100.2")
	want("published, from the host over its IPv6 address", l.seen(l.host, "2001:db8:f::1", 8080), "2001:db8:f::1")
	want("published, hairpin from a2", l.seen(a2, "2001:db8:f::1", 8080), "fd00:a::1")
	want("published, from another network", l.seen(b1, "2001:db8:f::1", 8080), "fd00:a::1")
	// Written over netlink (Publish) as Sync writes it as text.
	netlinkMap := runIn(t, l.host, "nft", "list", "map", "inet", TableName, "ports-any6")
	s := state()
	s.Ports = ports
	syncIn(t, l.host, s)
	if synced := runIn(t, l.host, "nft", "list", "map", "inet", TableName, "ports-any6"); synced != netlinkMap || !strings.Contains(synced, "tcp . 8080 : fd00:a::2 . 80") {
		t.Errorf("ports-any6 after Publish:\n%s\nafter Sync:\n%s", netlinkMap, synced)
	}

	t.Log("front's ULA subnet not masqueraded")
	front.Subnets[1].Masquerade = false
	syncIn(t, l.host, state())
	want("unmasqueraded IPv6 subnet", l.seen(a1, "2001:db8:f::2", 7777), "fd00:a::2")
	want("its IPv4 subnet still masqueraded", l.seen(a1, "198.51.100.2", 7777), "198.51.100.1")
	front.Subnets[1].Masquerade = true

	t.Log("back internal")
	back.Internal = true
	syncIn(t, l.host, state())
	want("internal network to the outside", l.seen(b1, "2001:db8:f::2", 7777), "")
	blocked("outside into an internal network", l.outside, "fd00:b::2")
	reach("internal network to its gateway", b1, "fd00:b::1")
	want("front still goes out", l.seen(a1, "2001:db8:f::2", 7777), "2001:db8:f::1")

	t.Log("Docker's FORWARD policy drop, in ip6tables too")
	emulateDocker(t, l.host)
	// Control: Docker's drop does cut bridged IPv6 (br_netfilter), which
	// is what the DOCKER-USER rules are for.
	blocked("same network, Docker's drop, before Sync", a1, "fd00:a::3")
	syncIn(t, l.host, state())
	reach("same network behind Docker", a1, "fd00:a::3")
	want("front goes out behind Docker", l.seen(a1, "2001:db8:f::2", 7777), "2001:db8:f::1")
	blocked("front to back behind Docker", a1, "fd00:b::2")
	blocked("outside into a sandbox behind Docker", l.outside, "fd00:a::2")

	t.Log("icc=false on front: bridge port isolation, IPv6 neighbour discovery included")
	for _, v := range []string{"ptv-a1", "ptv-a2"} {
		runIn(t, l.host, "bridge", "link", "set", "dev", v, "isolated", "on")
	}
	runIn(t, a1, "ip", "-6", "neigh", "flush", "dev", "eth0")
	blocked("icc=false, same network", a1, "fd00:a::3")
	want("icc=false, still out", l.seen(a1, "2001:db8:f::2", 7777), "2001:db8:f::1")
}

// TestKernelLoopback6: [::1] and published ports.
//
// The firewall leaves ::1 alone: a connection to [::1]:PORT reaches what
// listens there on the host — nothing (refused at once, not swallowed by
// a DNAT that cannot be answered), or the userspace relay that serves the
// mapping, whose connection to the sandbox the firewall lets through.
// Publish refuses a mapping bound to ::1 and says why. And the kernel
// still cannot do it with NAT (loopback6 in family.go): if a kernel ever
// can, NATRefused fails and says to revisit.
func TestKernelLoopback6(t *testing.T) {
	l := newIP6Lab(t)
	l.bridge("ptbr-aaaa", "10.211.1.0/24", "fd00:a::/64")
	a1 := l.sandbox("a1", "ptbr-aaaa", net.HardwareAddr{2, 0x42, 10, 211, 1, 2}, "10.211.1.2/24", "fd00:a::2/64")
	l.serve(a1, 80)
	front := Network{Name: "front", Bridge: "ptbr-aaaa", Subnets: []model.Subnet{
		{Prefix: netip.MustParsePrefix("10.211.1.0/24"), Masquerade: true}, {Prefix: netip.MustParsePrefix("fd00:a::/64"), Masquerade: true}}}
	m := model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"}
	targets := []netip.Addr{netip.MustParseAddr("10.211.1.2"), netip.MustParseAddr("fd00:a::2")}
	syncIn(t, l.host, State{Networks: []Network{front}, Ports: []Published{{PortMapping: m, Targets: targets}}})

	t.Run("NATRefused", func(t *testing.T) {
		// What would be the obvious rules: DNAT in output, masquerade the
		// ::1 source to the gateway. The SYN reaches the sandbox; its
		// answer dies on the bridge.
		runIn(t, l.host, "nft", "add table ip6 loop6; "+
			"add chain ip6 loop6 out { type nat hook output priority -150; }; "+
			"add rule ip6 loop6 out ip6 daddr ::1 tcp dport 8081 dnat to [fd00:a::2]:80; "+
			"add chain ip6 loop6 post { type nat hook postrouting priority 50; }; "+
			"add rule ip6 loop6 post ct status dnat ip6 saddr ::1 masquerade")
		defer runIn(t, l.host, "nft", "delete", "table", "ip6", "loop6")
		if got := l.seen(l.host, "::1", 8081); got != "" {
			t.Errorf("the kernel answered [::1]:8081 through NAT (the server saw %q): revisit loopback6 in family.go and serve ::1 in the kernel", got)
		}
		// Control: the same sandbox answers through the gateway address.
		if got := l.seen(l.host, "fd00:a::2", 80); got != "fd00:a::1" {
			t.Errorf("control: the sandbox saw %q, want fd00:a::1", got)
		}
	})

	// Nothing listens on [::1]:8080: refused at once.
	if err := testutil.InNetns(t, l.host, func() error {
		c, err := net.DialTimeout("tcp", "[::1]:8080", 2*time.Second)
		if err == nil {
			c.Close()
			t.Error("[::1]:8080 accepted a connection with nothing listening")
		} else if !strings.Contains(err.Error(), "refused") {
			t.Errorf("[::1]:8080: %v, want connection refused (not DNATed into the bridge)", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// 127.0.0.1 still works in the kernel (route_localnet on the bridge).
	l.sysctl(l.host, "net/ipv4/conf/ptbr-aaaa/route_localnet", "1")
	if got := l.seen(l.host, "127.0.0.1", 8080); got != "10.211.1.1" {
		t.Errorf("127.0.0.1:8080: the sandbox saw %q, want the gateway 10.211.1.1", got)
	}

	// The userspace relay: listens on [::1]:8080 in the host, connects to
	// the sandbox's IPv6 address.
	var ln net.Listener
	if err := testutil.InNetns(t, l.host, func() (err error) {
		ln, err = net.Listen("tcp", "[::1]:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var up net.Conn
				if err := testutil.InNetns(t, l.host, func() (err error) {
					up, err = net.DialTimeout("tcp", "[fd00:a::2]:80", time.Second)
					return err
				}); err != nil {
					return
				}
				defer up.Close()
				io.Copy(c, up)
			}()
		}
	}()
	if got := l.seen(l.host, "::1", 8080); got != "fd00:a::1" {
		t.Errorf("[::1]:8080 through the relay: the sandbox saw %q, want the gateway fd00:a::1", got)
	}

	// A mapping bound to ::1 is refused, with the reason, and nothing is
	// written.
	bound := m
	bound.HostIP, bound.HostPort, bound.HostPortEnd = netip.IPv6Loopback(), 8090, 8090
	before := runIn(t, l.host, "nft", "list", "map", "inet", TableName, "ports-ip6")
	withFirewall(t, l.host, func(fw Interface) error {
		err := fw.Publish(context.Background(), []Published{{PortMapping: bound, Targets: targets}})
		if err == nil || !strings.Contains(err.Error(), "userspace relay") {
			t.Errorf("Publish of %s: %v, want a refusal that says what to do", bound, err)
		}
		return nil
	})
	if after := runIn(t, l.host, "nft", "list", "map", "inet", TableName, "ports-ip6"); after != before {
		t.Errorf("a refused Publish changed ports-ip6:\n%s", after)
	}
}

// TestKernelAntiSpoofing6 sends raw frames from a sandbox (an AF_PACKET
// socket on its eth0) and looks at what another sandbox on the bridge
// receives: a forged source address, a neighbour advertisement for another
// sandbox's address, a router advertisement and a DHCPv6 server reply are
// dropped on the sender's bridge port; each has a control that passes.
// Before the endpoints are guarded, every frame passes: the frames are
// well-formed and the receiver would see them.
func TestKernelAntiSpoofing6(t *testing.T) {
	l := newIP6Lab(t)
	l.bridge("ptbr-cccc", "10.211.4.0/24", "fd00:c::/64")
	mac1 := net.HardwareAddr{2, 0x42, 10, 211, 4, 2}
	mac2 := net.HardwareAddr{2, 0x42, 10, 211, 4, 3}
	mac3 := net.HardwareAddr{2, 0x42, 10, 211, 4, 4}
	s1 := l.sandbox("s1", "ptbr-cccc", mac1, "10.211.4.2/24", "fd00:c::2/64")
	l.sandbox("s2", "ptbr-cccc", mac2, "10.211.4.3/24", "fd00:c::3/64")
	s3 := l.sandbox("s3", "ptbr-cccc", mac3, "10.211.4.4/24", "fd00:c::4/64")
	n := Network{Name: "c", Bridge: "ptbr-cccc", Subnets: []model.Subnet{
		{Prefix: netip.MustParsePrefix("10.211.4.0/24"), Masquerade: true}, {Prefix: netip.MustParsePrefix("fd00:c::/64"), Masquerade: true}}}
	// The sandboxes' link-local addresses are the kernel's (EUI-64 of the
	// MAC); the engine lists them in Guarded.IPs.
	ll1 := netip.MustParseAddr("fe80::42:aff:fed3:402")
	guards := []Guarded{
		{Port: "ptv-s1", MAC: mac1, IPs: []netip.Addr{netip.MustParseAddr("10.211.4.2"), netip.MustParseAddr("fd00:c::2"), ll1}},
		{Port: "ptv-s2", MAC: mac2, IPs: []netip.Addr{netip.MustParseAddr("10.211.4.3"), netip.MustParseAddr("fd00:c::3"), netip.MustParseAddr("fe80::42:aff:fed3:403")}},
		{Port: "ptv-s3", MAC: mac3, IPs: []netip.Addr{netip.MustParseAddr("10.211.4.4"), netip.MustParseAddr("fd00:c::4"), netip.MustParseAddr("fe80::42:aff:fed3:404")}},
	}
	own, victim, s3addr := netip.MustParseAddr("fd00:c::2"), netip.MustParseAddr("fd00:c::3"), netip.MustParseAddr("fd00:c::4")
	allNodes, allRouters, dhcpAgents := netip.MustParseAddr("ff02::1"), netip.MustParseAddr("ff02::2"), netip.MustParseAddr("ff02::1:2")
	icmp := func(dst netip.Addr, src netip.Addr, p []byte) []byte {
		return frame6{dstMAC: multicastMAC(dst), srcMAC: mac1, src: src, dst: dst, hopLimit: 255, next: 58, payload: p}.bytes()
	}
	udp := func(dstMAC net.HardwareAddr, src, dst netip.Addr, p []byte) []byte {
		return frame6{dstMAC: dstMAC, srcMAC: mac1, src: src, dst: dst, hopLimit: 64, next: 17, payload: p}.bytes()
	}
	ll3 := netip.MustParseAddr("fe80::42:aff:fed3:404")
	// Each case: a forged frame and its control, by marker. A marker is
	// 6 bytes; the phase digit keeps the phases apart.
	type pair struct {
		what            string
		forged, control func(phase string) []byte
	}
	pairs := []pair{
		{"forged source address",
			func(ph string) []byte {
				return udp(mac3, netip.MustParseAddr("fd00:c::99"), s3addr, udp6(4000, 4000, "FSRC"+ph+"x"))
			},
			func(ph string) []byte { return udp(mac3, own, s3addr, udp6(4000, 4000, "CSRC"+ph+"x")) }},
		{"neighbour advertisement for another sandbox's address",
			func(ph string) []byte { return icmp(allNodes, own, neighAdvert(victim, mac1, "FNA"+ph+"xx")) },
			func(ph string) []byte { return icmp(allNodes, own, neighAdvert(own, mac1, "CNA"+ph+"xx")) }},
		{"the same, from a link-local source",
			func(ph string) []byte {
				return icmp(allNodes, netip.MustParseAddr("fe80::99"), neighAdvert(victim, mac1, "FNL"+ph+"xx"))
			},
			func(ph string) []byte { return icmp(allNodes, ll1, neighAdvert(ll1, mac1, "CNL"+ph+"xx")) }},
		{"router advertisement",
			func(ph string) []byte { return icmp(allNodes, ll1, routerAdvert(mac1, "FRA"+ph+"xx")) },
			func(ph string) []byte { return icmp(allRouters, ll1, routerSolicit(mac1, "CRS"+ph+"xx")) }},
		{"DHCPv6 server reply",
			func(ph string) []byte { return udp(mac3, ll1, ll3, udp6(547, 546, "FDH"+ph+"xx")) },
			func(ph string) []byte {
				return udp(multicastMAC(dhcpAgents), ll1, dhcpAgents, udp6(546, 547, "CDH"+ph+"xx"))
			}},
	}
	marker := func(f func(string) []byte, ph string) string {
		b := f(ph)
		return string(b[len(b)-6:])
	}
	send := func(phase string) (forged, controls []string) {
		t.Helper()
		tx := openPacketSocket(t, s1, "eth0")
		for _, p := range pairs {
			// The forged frame first: it takes the same path as its
			// control, so once the control is in, so is the forged
			// frame if it passed.
			for _, f := range []func(string) []byte{p.forged, p.control} {
				if err := tx.send(f(phase)); err != nil {
					t.Fatalf("%s: send: %v", p.what, err)
				}
			}
			forged, controls = append(forged, marker(p.forged, phase)), append(controls, marker(p.control, phase))
		}
		return forged, controls
	}
	check := func(phase string, wantForged bool) {
		t.Helper()
		rx := openPacketSocket(t, s3, "eth0")
		forged, controls := send(phase)
		want := controls
		if wantForged {
			want = append(slices.Clone(controls), forged...)
		}
		got := rx.await(want, append(slices.Clone(forged), controls...), 5*time.Second)
		for i, p := range pairs {
			if !got[controls[i]] {
				t.Errorf("phase %s, %s: the control frame did not arrive", phase, p.what)
			}
			if got[forged[i]] != wantForged {
				t.Errorf("phase %s, %s: forged frame arrived = %v, want %v", phase, p.what, got[forged[i]], wantForged)
			}
		}
	}

	t.Log("phase 1: the network, no endpoint guarded: every frame passes")
	syncIn(t, l.host, State{Networks: []Network{n}})
	check("1", true)

	t.Log("phase 2: endpoints guarded over netlink (Guard)")
	withFirewall(t, l.host, func(fw Interface) error { return fw.Guard(context.Background(), guards) })
	check("2", false)
	// Control of the whole: s1 still talks to s3 over IPv6 and IPv4.
	if !l.ping(s1, "fd00:c::4") || !l.ping(s1, "10.211.4.4") {
		t.Error("a guarded sandbox cannot ping its neighbour")
	}
	byNetlink := runIn(t, l.host, "nft", "list", "set", "bridge", TableName, setGuardTarget6)

	t.Log("phase 3: the same guards written by Sync (nft text)")
	syncIn(t, l.host, State{Networks: []Network{n}, Guards: guards})
	if bySync := runIn(t, l.host, "nft", "list", "set", "bridge", TableName, setGuardTarget6); bySync != byNetlink {
		t.Errorf("%s after Guard:\n%s\nafter Sync:\n%s", setGuardTarget6, byNetlink, bySync)
	}
	check("3", false)

	t.Log("phase 4: Unguard s1: its frames pass again")
	withFirewall(t, l.host, func(fw Interface) error { return fw.Unguard(context.Background(), guards[:1]) })
	check("4", true)
}
