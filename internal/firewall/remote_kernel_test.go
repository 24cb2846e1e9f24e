package firewall

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// TestKernelRemoteMembers sends real packets between a host-gw overlay
// network's sandbox on this host and a member on another host, which is
// reached through the underlay, no tunnel:
//
//	a1 ── ptbr-aaaa (10.201.1.1/24, "fast", range 10.201.0.0/16) ─┐
//	b1 ── ptbr-bbbb (10.77.1.1/24, "other")                         ├ host ── under0 198.51.100.1/24
//	                                                                  │    └─ lan0   203.0.113.1/24
//	     peer: eth0 198.51.100.2/24, its member 10.201.2.2 (on lo), routes 10.201.1.0/24 via the host;
//	           also 10.201.1.77 on lo, an address of the host's own slice, which no member has
//	     spoofer: eth0 203.0.113.2/24 on another link of the host, sending from fast's range
//	              (10.201.2.9 on lo); also where 10.201.3.0/24 is routed (10.201.3.3 on lo)
//
// The peer runs a TCP server (on every address) that answers with the
// peer address it sees: a member sees a1's own address, the world (the
// peer's underlay address) a masqueraded one. a1 runs a UDP server that
// records who reached it, so that a spoofed packet is seen arriving (or
// not) whatever happens to the reply.
func TestKernelRemoteMembers(t *testing.T) {
	testutil.RequireRoot(t)
	host, a1, b1, peer, spoofer := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
	ip := func(ns, args string) { t.Helper(); runIn(t, ns, append([]string{"ip"}, strings.Fields(args)...)...) }
	for _, br := range []struct{ name, gw string }{{"ptbr-aaaa", "10.201.1.1/24"}, {"ptbr-bbbb", "10.77.1.1/24"}} {
		ip(host, "link add "+br.name+" type bridge")
		ip(host, "addr add "+br.gw+" dev "+br.name)
		ip(host, "link set "+br.name+" up")
	}
	for _, sb := range []struct{ ns, veth, bridge, addr, gw string }{
		{a1, "ptv-a1", "ptbr-aaaa", "10.201.1.2/24", "10.201.1.1"},
		{b1, "ptv-b1", "ptbr-bbbb", "10.77.1.2/24", "10.77.1.1"},
	} {
		ip(host, "link add "+sb.veth+" type veth peer name eth0 netns "+sb.ns)
		ip(host, "link set "+sb.veth+" master "+sb.bridge+" up")
		ip(sb.ns, "addr add "+sb.addr+" dev eth0")
		ip(sb.ns, "link set eth0 up")
		ip(sb.ns, "route add default via "+sb.gw)
	}
	ip(host, "link add under0 type veth peer name eth0 netns "+peer)
	ip(host, "addr add 198.51.100.1/24 dev under0")
	ip(host, "link set under0 up")
	ip(host, "route add 10.201.2.0/24 via 198.51.100.2 dev under0") // host-gw's route
	ip(peer, "addr add 198.51.100.2/24 dev eth0")
	ip(peer, "link set eth0 up")
	ip(peer, "addr add 10.201.2.2/32 dev lo")
	ip(peer, "addr add 10.201.1.77/32 dev lo")
	// The peer routes all of the host's subnets back to it: what stops it
	// must be the firewall.
	ip(peer, "route add 10.201.1.0/24 via 198.51.100.1")
	ip(peer, "route add 10.77.1.0/24 via 198.51.100.1")
	// The spoofer, on another link of the host, routes fast's slice there
	// too, and the host routes a part of fast's range to it.
	ip(host, "link add lan0 type veth peer name eth0 netns "+spoofer)
	ip(host, "addr add 203.0.113.1/24 dev lan0")
	ip(host, "link set lan0 up")
	ip(host, "route add 10.201.3.0/24 via 203.0.113.2 dev lan0")
	ip(spoofer, "addr add 203.0.113.2/24 dev eth0")
	ip(spoofer, "link set eth0 up")
	ip(spoofer, "addr add 10.201.2.9/32 dev lo")
	ip(spoofer, "addr add 10.201.3.3/32 dev lo")
	ip(spoofer, "route add 10.201.1.0/24 via 203.0.113.1")
	if err := testutil.InNetns(t, host, func() error {
		// Reverse path filtering off (a new namespace's default, said
		// here): the spoofed source, whose route is through under0,
		// must be stopped by the firewall, not by the kernel.
		for _, c := range []struct{ name, v string }{
			{"ip_forward", "1"}, {"conf/all/rp_filter", "0"}, {"conf/lan0/rp_filter", "0"},
		} {
			if err := os.WriteFile("/proc/sys/net/ipv4/"+c.name, []byte(c.v), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	servePeerAddr(t, peer, ":7777")
	servePeerAddr(t, spoofer, ":7777")
	udp := serveUDPSources(t, a1, "10.201.1.2:7778")
	// reached reports whether a UDP datagram from ns, sent from address
	// from, reached a1 (one marker per call, sent up to three times).
	marker := 0
	reached := func(ns, from string) bool {
		t.Helper()
		marker++
		m := from + "#" + strconv.Itoa(marker)
		for range 3 {
			sendUDPFrom(t, ns, from, "10.201.1.2:7778", m)
			if udp.await(m, 500*time.Millisecond) {
				return true
			}
		}
		return false
	}
	seenAt := func(ns, to string) string { t.Helper(); return dialSeen(t, ns, to+":7777") }
	ping := func(ns, from, to string) bool {
		t.Helper()
		args := []string{"ping", "-n", "-c1", "-W1", to}
		if from != "" {
			args = append(args, "-I", from)
		}
		for range 3 {
			if _, err := tryIn(t, ns, args...); err == nil {
				return true
			}
		}
		return false
	}
	check := func(what string, got, want bool) {
		t.Helper()
		if got != want {
			t.Errorf("%s: passed %v, want %v", what, got, want)
		}
	}

	fast := Network{Name: "fast", Bridge: "ptbr-aaaa", Subnets: v4(netip.MustParsePrefix("10.201.1.0/24"), true),
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.201.0.0/16")}, RemoteVia: "under0"}
	other := Network{Name: "other", Bridge: "ptbr-bbbb", Subnets: v4(netip.MustParsePrefix("10.77.1.0/24"), true)}

	t.Log("control: without remote members, (f) drops the peer's member")
	noRemotes := fast
	noRemotes.Remotes = nil
	syncIn(t, host, State{Networks: []Network{noRemotes, other}})
	check("remote member to a1, no remotes", ping(peer, "10.201.2.2", "10.201.1.2"), false)
	if got := seenAt(a1, "10.201.2.2"); got != "198.51.100.1" {
		t.Errorf("a1 to the remote member without remotes: seen as %q, want masqueraded 198.51.100.1", got)
	}

	t.Log("control: were lan0 the uplink, the spoofer's packets would reach a1")
	viaLAN := fast
	viaLAN.RemoteVia = "lan0"
	syncIn(t, host, State{Networks: []Network{viaLAN, other}})
	check("fast's range from lan0 to a1, lan0 the uplink", reached(spoofer, "10.201.2.9"), true)
	if got := seenAt(a1, "10.201.3.3"); got != "10.201.1.2" {
		t.Errorf("a1 to fast's range through lan0, lan0 the uplink: seen as %q, want a1's own 10.201.1.2", got)
	}

	t.Log("host-gw overlay with its remote members")
	syncIn(t, host, State{Networks: []Network{fast, other}})
	check("remote member to a1", ping(peer, "10.201.2.2", "10.201.1.2"), true)
	check("remote member to a1 (UDP, through the uplink)", reached(peer, "10.201.2.2"), true)
	// The same path from an address of the host's own slice: no member
	// on another host has one, so it is forged (remote-members holds the
	// range less the slice), and (f) drops it.
	check("the host's own slice from the uplink to a1", reached(peer, "10.201.1.77"), false)
	// Issue #13: the same range on another link is nobody's member.
	check("fast's range spoofed from lan0 to a1", reached(spoofer, "10.201.2.9"), false)
	if got := seenAt(a1, "10.201.3.3"); got != "203.0.113.1" {
		t.Errorf("a1 to fast's range through lan0 (not the uplink): seen as %q, want masqueraded 203.0.113.1", got)
	}
	check("remote member to another network's sandbox", ping(peer, "10.201.2.2", "10.77.1.2"), false)
	check("outside the cluster to a1", ping(peer, "198.51.100.2", "10.201.1.2"), false)
	if got := seenAt(a1, "10.201.2.2"); got != "10.201.1.2" {
		t.Errorf("a1 to the remote member: seen as %q, want a1's own 10.201.1.2", got)
	}
	if got := seenAt(a1, "198.51.100.2"); got != "198.51.100.1" {
		t.Errorf("a1 to the world: seen as %q, want masqueraded 198.51.100.1", got)
	}
	if got := seenAt(b1, "10.201.2.2"); got != "198.51.100.1" {
		t.Errorf("another network to fast's remote member: seen as %q, want masqueraded 198.51.100.1", got)
	}

	t.Log("internal host-gw overlay: its members only")
	fast.Internal = true
	syncIn(t, host, State{Networks: []Network{fast, other}})
	check("remote member to a1 (internal)", ping(peer, "10.201.2.2", "10.201.1.2"), true)
	if got := seenAt(a1, "10.201.2.2"); got != "10.201.1.2" {
		t.Errorf("a1 to the remote member (internal): seen as %q, want 10.201.1.2", got)
	}
	if got := seenAt(a1, "198.51.100.2"); got != "" {
		t.Errorf("internal a1 to the world: connected (seen as %q), want dropped", got)
	}
	check("outside the cluster to a1 (internal)", ping(peer, "198.51.100.2", "10.201.1.2"), false)
	check("remote member to a1 (internal, UDP)", reached(peer, "10.201.2.2"), true)
	check("the host's own slice from the uplink to a1 (internal)", reached(peer, "10.201.1.77"), false)
	check("fast's range spoofed from lan0 to a1 (internal)", reached(spoofer, "10.201.2.9"), false)
	if got := seenAt(a1, "10.201.3.3"); got != "" {
		t.Errorf("internal a1 to fast's range through lan0 (not the uplink): connected (seen as %q), want dropped", got)
	}

	// The evaluator agrees with what the kernel did.
	ev := NewEvaluator(State{Networks: []Network{fast, other}})
	for _, c := range []struct {
		p    Packet
		want string
	}{
		{Packet{Hook: HookForward, IIF: "under0", OIF: "ptbr-aaaa", Src: netip.MustParseAddr("10.201.2.2"), Dst: netip.MustParseAddr("10.201.1.2"), Proto: "icmp"}, "accept by remote-in"},
		{Packet{Hook: HookForward, IIF: "under0", OIF: "ptbr-bbbb", Src: netip.MustParseAddr("10.201.2.2"), Dst: netip.MustParseAddr("10.77.1.2"), Proto: "icmp"}, "drop by unsolicited"},
		{Packet{Hook: HookForward, IIF: "under0", OIF: "ptbr-aaaa", Src: netip.MustParseAddr("10.201.1.77"), Dst: netip.MustParseAddr("10.201.1.2"), Proto: "udp", DPort: 7778}, "drop by internal-in"},
		{Packet{Hook: HookForward, IIF: "ptbr-aaaa", OIF: "under0", Src: netip.MustParseAddr("10.201.1.2"), Dst: netip.MustParseAddr("198.51.100.2"), Proto: "tcp"}, "drop by internal-out"},
		{Packet{Hook: HookForward, IIF: "lan0", OIF: "ptbr-aaaa", Src: netip.MustParseAddr("10.201.2.9"), Dst: netip.MustParseAddr("10.201.1.2"), Proto: "udp", DPort: 7778}, "drop by internal-in"},
		{Packet{Hook: HookForward, IIF: "ptbr-aaaa", OIF: "lan0", Src: netip.MustParseAddr("10.201.1.2"), Dst: netip.MustParseAddr("10.201.3.3"), Proto: "tcp", DPort: 7777}, "drop by internal-out"},
	} {
		if got := decided(ev.Evaluate(c.p)); got != c.want {
			t.Errorf("evaluator: %v: %s, want %s", c.p, got, c.want)
		}
	}
}

// udpSources is a UDP server's record of the datagrams it received.
type udpSources struct {
	mu   sync.Mutex
	seen map[string]bool // payloads
	c    chan struct{}   // a datagram arrived
}

// serveUDPSources receives UDP datagrams on addr in namespace ns until t
// ends, recording each payload.
func serveUDPSources(t *testing.T, ns, addr string) *udpSources {
	t.Helper()
	var pc net.PacketConn
	if err := testutil.InNetns(t, ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	u := &udpSources{seen: map[string]bool{}, c: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.seen[string(buf[:n])] = true
			u.mu.Unlock()
			select {
			case u.c <- struct{}{}:
			default:
			}
		}
	}()
	return u
}

// await reports whether a datagram with payload m arrived, waiting up to d.
func (u *udpSources) await(m string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		u.mu.Lock()
		ok := u.seen[m]
		u.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-u.c:
		case <-deadline:
			return false
		}
	}
}

// sendUDPFrom sends one datagram with payload m from address from (one of
// namespace ns's own) to addr.
func sendUDPFrom(t *testing.T, ns, from, to, m string) {
	t.Helper()
	if err := testutil.InNetns(t, ns, func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(from), 0)),
			net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(m))
		return err
	}); err != nil {
		t.Fatalf("send UDP from %s to %s: %v", from, to, err)
	}
}
