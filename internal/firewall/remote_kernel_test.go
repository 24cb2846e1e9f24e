package firewall

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"pontoon/internal/testutil"
)

// TestKernelRemoteMembers sends real packets between a host-gw overlay
// network's sandbox on this host and a member on another host, which is
// reached through the underlay, no tunnel:
//
//	a1 ── ptbr-aaaa (10.201.1.1/24, "fast", range 10.201.0.0/16) ─┐
//	b1 ── ptbr-bbbb (10.77.1.1/24, "other")                         ├ host ── under0 198.51.100.1/24
//	                                                                  │
//	     peer: eth0 198.51.100.2/24, its member 10.201.2.2 (on lo), routes 10.201.1.0/24 via the host
//
// The peer runs a TCP server (on every address) that answers with the
// peer address it sees: a member sees a1's own address, the world (the
// peer's underlay address) a masqueraded one.
func TestKernelRemoteMembers(t *testing.T) {
	testutil.RequireRoot(t)
	host, a1, b1, peer := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
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
	// The peer routes all of the host's subnets back to it: what stops it
	// must be the firewall.
	ip(peer, "route add 10.201.1.0/24 via 198.51.100.1")
	ip(peer, "route add 10.77.1.0/24 via 198.51.100.1")
	if err := testutil.InNetns(t, host, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	servePeerAddr(t, peer, ":7777")
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
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.201.0.0/16")}}
	other := Network{Name: "other", Bridge: "ptbr-bbbb", Subnets: v4(netip.MustParsePrefix("10.77.1.0/24"), true)}

	t.Log("control: without remote members, (f) drops the peer's member")
	noRemotes := fast
	noRemotes.Remotes = nil
	syncIn(t, host, State{Networks: []Network{noRemotes, other}})
	check("remote member to a1, no remotes", ping(peer, "10.201.2.2", "10.201.1.2"), false)
	if got := seenAt(a1, "10.201.2.2"); got != "198.51.100.1" {
		t.Errorf("a1 to the remote member without remotes: seen as %q, want masqueraded 198.51.100.1", got)
	}

	t.Log("host-gw overlay with its remote members")
	syncIn(t, host, State{Networks: []Network{fast, other}})
	check("remote member to a1", ping(peer, "10.201.2.2", "10.201.1.2"), true)
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

	// The evaluator agrees with what the kernel did.
	ev := NewEvaluator(State{Networks: []Network{fast, other}})
	for _, c := range []struct {
		p    Packet
		want string
	}{
		{Packet{Hook: HookForward, IIF: "under0", OIF: "ptbr-aaaa", Src: netip.MustParseAddr("10.201.2.2"), Dst: netip.MustParseAddr("10.201.1.2"), Proto: "icmp"}, "accept by remote-in"},
		{Packet{Hook: HookForward, IIF: "under0", OIF: "ptbr-bbbb", Src: netip.MustParseAddr("10.201.2.2"), Dst: netip.MustParseAddr("10.77.1.2"), Proto: "icmp"}, "drop by unsolicited"},
		{Packet{Hook: HookForward, IIF: "ptbr-aaaa", OIF: "under0", Src: netip.MustParseAddr("10.201.1.2"), Dst: netip.MustParseAddr("198.51.100.2"), Proto: "tcp"}, "drop by internal-out"},
	} {
		if got := decided(ev.Evaluate(c.p)); got != c.want {
			t.Errorf("evaluator: %v: %s, want %s", c.p, got, c.want)
		}
	}
}
