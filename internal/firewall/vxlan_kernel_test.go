package firewall

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// TestKernelVXLANPeers sends real VXLAN-encapsulated frames to a host
// with a VXLAN overlay network, from a cluster node and from a host of
// the underlay that is no node:
//
//	a1 ── ptbr-aaaa (10.205.1.1/24; vx's slice here, range 10.205.0.0/16) ── host
//	host: ptvx-60 (VNI 60, 10.205.1.0/32, MAC 02:00:00:00:05:01) on eth0 198.51.100.1/24
//	peer: ptvx-60 (VNI 60, 10.205.2.0/32, MAC 02:00:00:00:05:02) on eth0 198.51.100.2/24;
//	      its member 10.205.2.2, and 10.205.1.77 (the host's slice) and 203.0.113.9 (outside the range) on lo
//	spoofer: ptvx-60 (VNI 60, its own MAC) on eth0 198.51.100.3/24, whose FDB sends the host's
//	      VTEP MAC to 198.51.100.1 and whose neighbour entry gives 10.205.1.0 that MAC: the
//	      frames it builds are what the peer's are, but for the outer source; sends from
//	      10.205.2.9 (a member's address) on lo
//	the three eth0s are ports of one bridge (the underlay, namespace sw)
//
// The host programs the peer as pontoon does (route, permanent neighbour,
// FDB entry); the spoofer is in none of its entries. a1 runs a UDP server
// that records who reached it.
func TestKernelVXLANPeers(t *testing.T) {
	testutil.RequireRoot(t)
	host, a1, peer, spoofer, sw := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
	ip := func(ns, args string) { t.Helper(); runIn(t, ns, append([]string{"ip"}, strings.Fields(args)...)...) }
	const hostMAC, peerMAC, spooferMAC = "02:00:00:00:05:01", "02:00:00:00:05:02", "02:00:00:00:05:03"

	// The underlay: one L2 segment.
	ip(sw, "link add ul0 type bridge")
	ip(sw, "link set ul0 up")
	for i, ns := range []string{host, peer, spoofer} {
		port := "p" + strconv.Itoa(i+1)
		ip(sw, "link add "+port+" type veth peer name eth0 netns "+ns)
		ip(sw, "link set "+port+" master ul0 up")
		ip(ns, "addr add 198.51.100."+strconv.Itoa(i+1)+"/24 dev eth0")
		ip(ns, "link set eth0 up")
	}
	// Each end's VXLAN device, learning off, as link.EnsureVXLAN makes it.
	vxlan := func(ns, local, mac, addr string) {
		t.Helper()
		ip(ns, "link add ptvx-60 type vxlan id 60 local "+local+" dev eth0 dstport 4789 nolearning")
		ip(ns, "link set ptvx-60 address "+mac)
		if addr != "" {
			ip(ns, "addr add "+addr+" dev ptvx-60")
		}
		ip(ns, "link set ptvx-60 up")
	}
	// toward: ns reaches slice (gateway gw, VTEP mac) at underlay address
	// under, as link.SetPeers programs a peer.
	toward := func(ns, slice, gw, mac, under string) {
		t.Helper()
		ip(ns, "route add "+slice+" via "+gw+" dev ptvx-60 onlink")
		ip(ns, "neigh add "+gw+" lladdr "+mac+" dev ptvx-60 nud permanent")
		runIn(t, ns, "bridge", "fdb", "add", mac, "dev", "ptvx-60", "dst", under, "self", "permanent")
	}
	vxlan(host, "198.51.100.1", hostMAC, "10.205.1.0/32")
	vxlan(peer, "198.51.100.2", peerMAC, "10.205.2.0/32")
	vxlan(spoofer, "198.51.100.3", spooferMAC, "")
	toward(host, "10.205.2.0/24", "10.205.2.0", peerMAC, "198.51.100.2")
	toward(peer, "10.205.1.0/24", "10.205.1.0", hostMAC, "198.51.100.1")
	toward(spoofer, "10.205.1.0/24", "10.205.1.0", hostMAC, "198.51.100.1")
	for _, a := range []string{"10.205.2.2/32", "10.205.1.77/32", "203.0.113.9/32"} {
		ip(peer, "addr add "+a+" dev lo")
	}
	ip(spoofer, "addr add 10.205.2.9/32 dev lo")

	// The overlay's bridge and sandbox on the host.
	ip(host, "link add ptbr-aaaa type bridge")
	ip(host, "addr add 10.205.1.1/24 dev ptbr-aaaa")
	ip(host, "link set ptbr-aaaa up")
	ip(host, "link add ptv-a1 type veth peer name eth0 netns "+a1)
	ip(host, "link set ptv-a1 master ptbr-aaaa up")
	ip(a1, "addr add 10.205.1.2/24 dev eth0")
	ip(a1, "link set eth0 up")
	ip(a1, "route add default via 10.205.1.1")
	if err := testutil.InNetns(t, host, func() error {
		// Forwarding on; reverse path filtering off (a new namespace's
		// default, said here): a source the host has no route back to
		// (203.0.113.9) must be stopped by the firewall, not the kernel.
		for _, c := range []struct{ name, v string }{
			{"ip_forward", "1"}, {"conf/all/rp_filter", "0"}, {"conf/ptvx-60/rp_filter", "0"},
		} {
			if err := os.WriteFile("/proc/sys/net/ipv4/"+c.name, []byte(c.v), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	udp := serveUDPSources(t, a1, "10.205.1.2:7778")
	plain := serveUDPSources(t, host, "198.51.100.1:7779")
	marker := 0
	// reached reports whether a UDP datagram from ns, sent from address
	// from to to, reached srv (one marker per call, sent up to three
	// times).
	reached := func(srv *udpSources, ns, from, to string) bool {
		t.Helper()
		marker++
		m := from + "#" + strconv.Itoa(marker)
		for range 3 {
			sendUDPFrom(t, ns, from, to, m)
			if srv.await(m, 500*time.Millisecond) {
				return true
			}
		}
		return false
	}
	toA1 := func(ns, from string) bool { t.Helper(); return reached(udp, ns, from, "10.205.1.2:7778") }
	check := func(what string, got, want bool) {
		t.Helper()
		if got != want {
			t.Errorf("%s: passed %v, want %v", what, got, want)
		}
	}

	vx := Network{Name: "vx", Bridge: "ptbr-aaaa", Links: []string{"ptvx-60"}, Subnets: v4(netip.MustParsePrefix("10.205.1.0/24"), true),
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.205.0.0/16")}, RemoteVia: "ptvx-60"}
	under := VXLANUnderlay{Local: netip.MustParseAddr("198.51.100.1"), Port: 4789, Peers: []netip.Addr{netip.MustParseAddr("198.51.100.2")}}

	t.Log("control: without the underlay's check, the spoofer's frames reach a1 (the gap)")
	syncIn(t, host, State{Networks: []Network{vx}})
	check("the peer's member to a1, no check", toA1(peer, "10.205.2.2"), true)
	check("the spoofer's frame to a1, no check", toA1(spoofer, "10.205.2.9"), true)

	t.Log("the cluster's nodes only")
	syncIn(t, host, State{Networks: []Network{vx}, VXLAN: under})
	check("the peer's member to a1", toA1(peer, "10.205.2.2"), true)
	check("the spoofer's frame to a1", toA1(spoofer, "10.205.2.9"), false)
	// Only the VXLAN port: the spoofer's plain UDP to the host passes.
	check("the spoofer's plain UDP to the host", reached(plain, spoofer, "198.51.100.3", "198.51.100.1:7779"), true)
	// Inner sources: the network's range less this host's slice.
	check("the peer, from outside the network's range, to a1", toA1(peer, "203.0.113.9"), false)
	check("the peer, from the host's own slice, to a1", toA1(peer, "10.205.1.77"), false)
	check("the peer's member to a1, after the drops", toA1(peer, "10.205.2.2"), true)

	// Self-healing's check sees a peer missing from the set, or one too
	// many.
	checkIn := func(want State) (reason string) {
		t.Helper()
		withFirewall(t, host, func(fw Interface) error { reason = fw.Check(context.Background(), want); return nil })
		return reason
	}
	if r := checkIn(State{Networks: []Network{vx}, VXLAN: under}); r != "" {
		t.Errorf("Check right after Sync: %q", r)
	}
	if r := checkIn(State{Networks: []Network{vx}, VXLAN: VXLANUnderlay{Local: under.Local, Port: 4789}}); !strings.Contains(r, "vxlan-peers") {
		t.Errorf("Check, a peer too many in the kernel: %q, want vxlan-peers named", r)
	}
	runIn(t, host, "nft", "delete", "element", "inet", TableName, "vxlan-peers", "{ 198.51.100.2 }")
	if r := checkIn(State{Networks: []Network{vx}, VXLAN: under}); !strings.Contains(r, "vxlan-peers holds 0 elements, want 1") {
		t.Errorf("Check, the peer deleted: %q, want vxlan-peers named", r)
	}
	check("the peer's member to a1, the peer deleted from the set", toA1(peer, "10.205.2.2"), false)

	t.Log("control: with the spoofer in vxlan-peers, its frames arrive (UpdateVXLANPeers, no Sync: the peer back, the spoofer added)")
	withSpoofer := under
	withSpoofer.Peers = append(slices.Clone(under.Peers), netip.MustParseAddr("198.51.100.3"))
	update := func(old, new VXLANUnderlay) {
		t.Helper()
		withFirewall(t, host, func(fw Interface) error { return fw.UpdateVXLANPeers(context.Background(), old, new) })
	}
	update(VXLANUnderlay{Local: under.Local, Port: under.Port}, withSpoofer)
	check("the spoofer's frame to a1, spoofer a peer", toA1(spoofer, "10.205.2.9"), true)
	check("the peer's member to a1, the peer added back", toA1(peer, "10.205.2.2"), true)
	t.Log("UpdateVXLANPeers takes the spoofer out again")
	update(withSpoofer, under)
	check("the spoofer's frame to a1, spoofer removed", toA1(spoofer, "10.205.2.9"), false)
	check("the peer's member to a1, spoofer removed", toA1(peer, "10.205.2.2"), true)
	if r := checkIn(State{Networks: []Network{vx}, VXLAN: under}); r != "" {
		t.Errorf("Check after UpdateVXLANPeers: %q", r)
	}
	withFirewall(t, host, func(fw Interface) error {
		if err := fw.UpdateVXLANPeers(context.Background(), under, VXLANUnderlay{Local: netip.MustParseAddr("198.51.100.9"), Port: 4789}); err == nil {
			t.Error("UpdateVXLANPeers with another local address: no error, want one (Sync instead)")
		}
		return nil
	})

	t.Log("control: with a range that holds 203.0.113.9, the peer's frame from it arrives")
	wide := vx
	wide.Remotes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	syncIn(t, host, State{Networks: []Network{wide}, VXLAN: under})
	check("the peer, from 203.0.113.9, range 0.0.0.0/0", toA1(peer, "203.0.113.9"), true)
	check("the peer, from the host's own slice, range 0.0.0.0/0", toA1(peer, "10.205.1.77"), false)

	t.Log("no VXLAN overlay on the host: its port is nobody's business")
	syncIn(t, host, State{Networks: []Network{vx}})
	check("the spoofer's frame, no underlay check", toA1(spoofer, "10.205.2.9"), true)

	// The evaluator agrees with what the kernel did (the inner packets;
	// the outer one at input).
	ev := NewEvaluator(State{Networks: []Network{vx}, VXLAN: under})
	for _, c := range []struct {
		p    Packet
		want string
	}{
		{Packet{Hook: HookInput, IIF: "eth0", Src: netip.MustParseAddr("198.51.100.3"), Dst: netip.MustParseAddr("198.51.100.1"), Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true}, "drop by not-a-peer"},
		{Packet{Hook: HookInput, IIF: "eth0", Src: netip.MustParseAddr("198.51.100.2"), Dst: netip.MustParseAddr("198.51.100.1"), Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true}, "accept by policy"},
		{Packet{Hook: HookForward, IIF: "ptvx-60", OIF: "ptbr-aaaa", Src: netip.MustParseAddr("10.205.2.2"), Dst: netip.MustParseAddr("10.205.1.2"), Proto: "udp", DPort: 7778}, "accept by remote-in"},
		{Packet{Hook: HookForward, IIF: "ptvx-60", OIF: "ptbr-aaaa", Src: netip.MustParseAddr("203.0.113.9"), Dst: netip.MustParseAddr("10.205.1.2"), Proto: "udp", DPort: 7778}, "drop by overlay-source"},
		{Packet{Hook: HookForward, IIF: "ptvx-60", OIF: "ptbr-aaaa", Src: netip.MustParseAddr("10.205.1.77"), Dst: netip.MustParseAddr("10.205.1.2"), Proto: "udp", DPort: 7778}, "drop by overlay-source"},
	} {
		if got := decided(ev.Evaluate(c.p)); got != c.want {
			t.Errorf("evaluator: %v: %s, want %s", c.p, got, c.want)
		}
	}
}
