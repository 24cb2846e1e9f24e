package firewall

import (
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// TestKernelTraffic sends real packets through the ruleset. Everything
// lives in namespaces the test creates:
//
//	a1, a2 ── ptbr-aaaa (10.201.1.1/24, network "front") ─┐
//	b1     ── ptbr-bbbb (10.201.2.1/24, network "back")  ─┤ host ── vout 198.51.100.1/24
//	                                                               │
//	                                           outside: eth0 198.51.100.2/24
//	                                           (route to 10.201.0.0/16 via the host)
//
// The outside namespace runs a TCP server that answers with the peer
// address it sees, so a client learns whether it was masqueraded.
func TestKernelTraffic(t *testing.T) {
	host := testutil.NewNetns(t)
	a1, a2, b1 := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
	outside := testutil.NewNetns(t)

	ip := func(ns, args string) { t.Helper(); runIn(t, ns, append([]string{"ip"}, strings.Fields(args)...)...) }
	ip(host, "link add ptbr-aaaa type bridge")
	ip(host, "addr add 10.201.1.1/24 dev ptbr-aaaa")
	ip(host, "link set ptbr-aaaa up")
	ip(host, "link add ptbr-bbbb type bridge")
	ip(host, "addr add 10.201.2.1/24 dev ptbr-bbbb")
	ip(host, "link set ptbr-bbbb up")
	for _, sb := range []struct{ ns, veth, bridge, addr, gw string }{
		{a1, "ptv-a1", "ptbr-aaaa", "10.201.1.2/24", "10.201.1.1"},
		{a2, "ptv-a2", "ptbr-aaaa", "10.201.1.3/24", "10.201.1.1"},
		{b1, "ptv-b1", "ptbr-bbbb", "10.201.2.2/24", "10.201.2.1"},
	} {
		ip(host, "link add "+sb.veth+" type veth peer name eth0 netns "+sb.ns)
		ip(host, "link set "+sb.veth+" master "+sb.bridge+" up")
		ip(sb.ns, "addr add "+sb.addr+" dev eth0")
		ip(sb.ns, "link set eth0 up")
		ip(sb.ns, "route add default via "+sb.gw)
	}
	ip(host, "link add vout type veth peer name eth0 netns "+outside)
	ip(host, "addr add 198.51.100.1/24 dev vout")
	ip(host, "link set vout up")
	ip(outside, "addr add 198.51.100.2/24 dev eth0")
	ip(outside, "link set eth0 up")
	// The outside can route to the sandboxes' subnets (a LAN neighbour
	// that knows them): what stops it must be the firewall.
	ip(outside, "route add 10.201.0.0/16 via 198.51.100.1")
	// /proc/sys/net shows the namespace of the thread that opens it.
	if err := testutil.InNetns(t, host, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}

	servePeerAddr(t, outside, "198.51.100.2:7777")
	seenFrom := func(ns string) string { t.Helper(); return dialSeen(t, ns, "198.51.100.2:7777") }
	ping := func(ns, addr string) bool {
		t.Helper()
		_, err := tryIn(t, ns, "ping", "-n", "-c1", "-W1", addr)
		return err == nil
	}
	// reach says a packet from ns gets to addr; a first failure is retried
	// (ARP, links coming up), a blocked path costs one second.
	reach := func(what, ns, addr string) {
		t.Helper()
		for range 3 {
			if ping(ns, addr) {
				return
			}
		}
		t.Errorf("%s: ping %s failed, want it to pass", what, addr)
	}
	blocked := func(what, ns, addr string) {
		t.Helper()
		if ping(ns, addr) {
			t.Errorf("%s: ping %s passed, want it dropped", what, addr)
		}
	}
	wantSeen := func(what, ns, want string) {
		t.Helper()
		if got := seenFrom(ns); got != want {
			if want == "" {
				t.Errorf("%s: the outside accepted a connection (from %s), want none", what, got)
			} else {
				t.Errorf("%s: the outside saw %q, want %q", what, got, want)
			}
		}
	}

	front := Network{Name: "front", Bridge: "ptbr-aaaa", Subnets: v4(netip.MustParsePrefix("10.201.1.0/24"), true)}
	back := Network{Name: "back", Bridge: "ptbr-bbbb", Subnets: v4(netip.MustParsePrefix("10.201.2.0/24"), true)}

	t.Log("two masqueraded networks")
	syncIn(t, host, State{Networks: []Network{front, back}})
	reach("same network", a1, "10.201.1.3")
	reach("same network, back", a2, "10.201.1.2")
	reach("sandbox to its gateway", b1, "10.201.2.1")
	blocked("front to back", a1, "10.201.2.2")
	blocked("back to front", b1, "10.201.1.2")
	wantSeen("front goes out masqueraded", a1, "198.51.100.1")
	wantSeen("back goes out masqueraded", b1, "198.51.100.1")
	blocked("outside into a sandbox", outside, "10.201.1.2")

	t.Log("back internal")
	back.Internal = true
	syncIn(t, host, State{Networks: []Network{front, back}})
	wantSeen("internal network to the outside", b1, "")
	blocked("outside into an internal network", outside, "10.201.2.2")
	// (The host's own addresses stay reachable from an internal network:
	// that is input, not forward, as with Docker.)
	wantSeen("front still goes out", a1, "198.51.100.1")

	t.Log("front without masquerade")
	front.Subnets[0].Masquerade = false
	syncIn(t, host, State{Networks: []Network{front, back}})
	wantSeen("unmasqueraded network keeps its address", a1, "10.201.1.2")
	front.Subnets[0].Masquerade = true

	t.Log("Docker's FORWARD policy drop")
	emulateDocker(t, host)
	// Control: Docker's drop does cut pontoon's networks, bridged frames
	// included (br_netfilter) — which is what the DOCKER-USER rules are for.
	blocked("same network, Docker's drop, before Sync", a1, "10.201.1.3")
	syncIn(t, host, State{Networks: []Network{front, back}})
	reach("same network behind Docker", a1, "10.201.1.3")
	wantSeen("front goes out behind Docker", a1, "198.51.100.1")
	blocked("front to back behind Docker", a1, "10.201.2.2")
	wantSeen("internal network behind Docker", b1, "")
	blocked("outside into a sandbox behind Docker", outside, "10.201.1.2")
	reach("internal network, inside", b1, "10.201.2.1")

	t.Log("network removed")
	syncIn(t, host, State{Networks: []Network{back}})
	// front is no longer pontoon's: DOCKER-USER no longer lets it through,
	// and Docker's drop applies.
	blocked("removed network behind Docker", a1, "10.201.1.3")
}

// servePeerAddr serves TCP on addr in namespace ns until t ends, answering
// each connection with the address it came from (what NAT left of it).
func servePeerAddr(t *testing.T, ns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := testutil.InNetns(t, ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
			io.WriteString(c, ap.Addr().String())
			c.Close()
		}
	}()
}

// dialSeen connects from namespace ns to a servePeerAddr server and
// returns the address the server saw; "" when the connection fails.
func dialSeen(t *testing.T, ns, addr string) string {
	t.Helper()
	var seen string
	_ = testutil.InNetns(t, ns, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		b, _ := io.ReadAll(c)
		seen = string(b)
		return nil
	})
	return seen
}
