package firewall

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The VXLAN underlay's checks, evaluated: the outer packet at input (who
// may send to the VXLAN port), the inner one out of the device (which
// sources it may deliver). The evaluator sees each separately: what the
// kernel does between them (decapsulation, the VNI's device) is no rule's.
func TestEvaluateVXLAN(t *testing.T) {
	ev := NewEvaluator(State{Networks: []Network{vxNet, vxApartNet, fastNet, defaultNet}, VXLAN: vxUnderlay})
	ip := netip.MustParseAddr
	local, remote := ip("10.205.1.2"), ip("10.205.2.2") // vx's sandbox here, one on another host
	hostAddr := vxUnderlay.Local
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		// The outer packet, to this host's VXLAN port.
		{"a cluster node's VXLAN packet",
			Packet{Hook: HookInput, IIF: "under0", Src: ip("198.51.100.2"), Dst: hostAddr, Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true}, "accept by policy"},
		{"the other node's",
			Packet{Hook: HookInput, IIF: "under0", Src: ip("198.51.100.3"), Dst: hostAddr, Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true}, "accept by policy"},
		{"a VXLAN packet from a host of the underlay that is no node",
			Packet{Hook: HookInput, IIF: "under0", Src: ip("198.51.100.9"), Dst: hostAddr, Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true}, "drop by not-a-peer"},
		{"a VXLAN packet from another link, to a gateway address",
			Packet{Hook: HookInput, IIF: "lan0", Src: lanIP, Dst: ip("10.205.1.1"), Proto: "udp", SPort: 4789, DPort: 4789, DstLocal: true}, "drop by not-a-peer"},
		{"established: a VXLAN packet is never a reply",
			Packet{Hook: HookInput, IIF: "under0", Src: ip("198.51.100.9"), Dst: hostAddr, Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true, CTState: "established"}, "drop by not-a-peer"},
		{"a stranger's UDP to another port",
			Packet{Hook: HookInput, IIF: "under0", Src: ip("198.51.100.9"), Dst: hostAddr, Proto: "udp", SPort: 40000, DPort: 4790, DstLocal: true}, "accept by policy"},
		{"a stranger's TCP to the VXLAN port number",
			Packet{Hook: HookInput, IIF: "under0", Src: ip("198.51.100.9"), Dst: hostAddr, Proto: "tcp", SPort: 40000, DPort: 4789, DstLocal: true}, "accept by policy"},
		{"IPv6 to the VXLAN port: the underlay is IPv4, no IPv6 tunnel to guard",
			Packet{Hook: HookInput, IIF: "under0", Src: ip("2001:db8::9"), Dst: ip("2001:db8::1"), Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true}, "accept by policy"},

		// The inner packet, out of the VXLAN device.
		{"a remote member into the bridge",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: remote, Dst: local, Proto: "tcp", DPort: 80}, "accept by remote-in"},
		{"a remote member's reply",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: remote, Dst: local, Proto: "tcp", SPort: 80, DPort: 40000, CTState: "established"}, "accept by replies"},
		{"out of the device from outside the network's range",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: lanIP, Dst: local, Proto: "tcp", DPort: 80}, "drop by overlay-source"},
		{"… also as a reply to a connection a sandbox opened",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: lanIP, Dst: local, Proto: "tcp", SPort: 443, DPort: 40000, CTState: "established"}, "drop by overlay-source"},
		{"out of the device from this host's own slice",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: ip("10.205.1.9"), Dst: local, Proto: "tcp", DPort: 80}, "drop by overlay-source"},
		{"… also as a reply: (j) drops it before (b)",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: ip("10.205.1.9"), Dst: local, Proto: "tcp", SPort: 80, DPort: 40000, CTState: "established"}, "drop by overlay-source"},
		{"out of the device, from the range, to another network: (j) passes it, (d) drops it",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: "pontoon0", Src: remote, Dst: addrA, Proto: "icmp"}, "drop by isolation"},
		{"out of the device, from the range, to the world: (j) passes it, as on one host",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: "under0", Src: remote, Dst: ip("192.0.2.7"), Proto: "tcp", DPort: 443}, "accept by policy"},
		{"out of the device from another overlay's range",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: ip("10.206.2.2"), Dst: local, Proto: "icmp"}, "drop by overlay-source"},
		{"out of the device, IPv6: the network has no IPv6 range",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: ip("fd00:205::2"), Dst: ip("fd00:205:1::2"), Proto: "icmpv6"}, "drop by overlay-source"},
		{"out of the device, to the world: not the network's member",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: "under0", Src: lanIP, Dst: ip("192.0.2.7"), Proto: "tcp", DPort: 443}, "drop by overlay-source"},
		{"out of the device for the host itself (its gateway), from the range",
			Packet{Hook: HookInput, IIF: "ptvx-60", Src: remote, Dst: ip("10.205.1.1"), Proto: "icmp", DstLocal: true}, "accept by policy"},
		{"out of the device for the host itself, forged",
			Packet{Hook: HookInput, IIF: "ptvx-60", Src: lanIP, Dst: ip("10.205.1.1"), Proto: "icmp", DstLocal: true}, "drop by overlay-source"},
		{"the bridge into the device: (a), the fast path",
			Packet{Hook: HookForward, IIF: vxNet.Bridge, OIF: "ptvx-60", Src: local, Dst: remote, Proto: "tcp", DPort: 80}, "accept by intra"},
		{"bridged inside the network: (a)",
			Packet{Hook: HookForward, IIF: vxNet.Bridge, OIF: vxNet.Bridge, Src: local, Dst: local.Next(), Proto: "tcp", DPort: 80}, "accept by intra"},
		{"a host-gw overlay's member through the underlay: not a VXLAN device",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastNet.Bridge, Src: ip("10.201.2.2"), Dst: ip("10.201.1.2"), Proto: "icmp"}, "accept by remote-in"},

		// --icc=false: the range passes (j), then (h) keeps the
		// sandboxes apart but for published ports.
		{"icc=false: a remote member",
			Packet{Hook: HookForward, IIF: "ptvx-61", OIF: vxApartNet.Bridge, Src: ip("10.206.2.2"), Dst: ip("10.206.3.2"), Proto: "icmp"}, "drop by no-icc"},
		{"icc=false: a remote member to a published port (this host's gateway, DNATed)",
			Packet{Hook: HookForward, IIF: "ptvx-61", OIF: vxApartNet.Bridge, Src: ip("10.206.2.2"), Dst: ip("10.206.3.2"), Proto: "tcp", DPort: 80, DNATed: true}, "accept by no-icc-published"},
		{"icc=false: forged, to a published port",
			Packet{Hook: HookForward, IIF: "ptvx-61", OIF: vxApartNet.Bridge, Src: lanIP, Dst: ip("10.206.3.2"), Proto: "tcp", DPort: 80, DNATed: true}, "drop by overlay-source"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := decided(ev.Evaluate(c.p)); got != c.want {
				t.Fatalf("%s, want %s", got, c.want)
			}
		})
	}

	// No VXLAN overlay here: the VXLAN port is anybody's.
	none := NewEvaluator(State{Networks: []Network{fastNet, defaultNet}})
	p := Packet{Hook: HookInput, IIF: "under0", Src: ip("198.51.100.9"), Dst: hostAddr, Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true}
	if got := decided(none.Evaluate(p)); got != "accept by policy" {
		t.Errorf("no VXLAN overlay: a stranger's packet to 4789: %s, want accept by policy", got)
	}
	// A cluster of one node: an overlay, nobody to take tunnels from.
	alone := NewEvaluator(State{Networks: []Network{vxNet}, VXLAN: VXLANUnderlay{Local: hostAddr, Port: 4789}})
	p.Src = ip("198.51.100.2")
	if got := decided(alone.Evaluate(p)); got != "drop by not-a-peer" {
		t.Errorf("no peers: a packet to 4789: %s, want drop by not-a-peer", got)
	}
	// An IPv6 underlay is checked with the IPv6 sets, and leaves IPv4 alone.
	six := NewEvaluator(State{Networks: []Network{vxNet}, VXLAN: VXLANUnderlay{Local: ip("2001:db8::1"), Port: 4789, Peers: []netip.Addr{ip("2001:db8::2")}}})
	for _, c := range []struct {
		src  string
		want string
	}{{"2001:db8::2", "accept by policy"}, {"2001:db8::9", "drop by not-a-peer"}, {"198.51.100.9", "accept by policy"}} {
		p := Packet{Hook: HookInput, IIF: "under0", Src: ip(c.src), Dst: ip("2001:db8::1"), Proto: "udp", SPort: 40000, DPort: 4789, DstLocal: true}
		if c.src == "198.51.100.9" {
			p.Dst = hostAddr
		}
		if got := decided(six.Evaluate(p)); got != c.want {
			t.Errorf("IPv6 underlay, from %s: %s, want %s", c.src, got, c.want)
		}
	}
}

// link-sources holds the range less this host's slice, as prefixes the
// kernel's interval set takes.
func TestLinkSources(t *testing.T) {
	dual := vxNet
	dual.Subnets = append(dual.Subnets, v4(netip.MustParsePrefix("fd00:205:0:1::/64"), true)...)
	dual.Remotes = append(dual.Remotes, netip.MustParsePrefix("fd00:205::/48"))
	var got4, got6 []string
	for _, e := range inetElements(State{Networks: []Network{dual}}) {
		switch e.Set {
		case setLinkSources:
			got4 = append(got4, strings.Join(e.Key, " . "))
		case setLinkSources + IPv6.Suffix:
			got6 = append(got6, strings.Join(e.Key, " . "))
		}
	}
	want4 := []string{`"ptvx-60" . 10.205.0.0/24`, `"ptvx-60" . 10.205.2.0/23`, `"ptvx-60" . 10.205.4.0/22`, `"ptvx-60" . 10.205.8.0/21`,
		`"ptvx-60" . 10.205.16.0/20`, `"ptvx-60" . 10.205.32.0/19`, `"ptvx-60" . 10.205.64.0/18`, `"ptvx-60" . 10.205.128.0/17`}
	slices.Sort(got4)
	slices.Sort(want4)
	if !slices.Equal(got4, want4) {
		t.Errorf("link-sources: %q, want %q", got4, want4)
	}
	if len(got6) != 16 || !slices.Contains(got6, `"ptvx-60" . fd00:205::/64`) || !slices.Contains(got6, `"ptvx-60" . fd00:205:0:8000::/49`) {
		t.Errorf("link-sources6: %q, want fd00:205::/48 less fd00:205:0:1::/64 (16 prefixes)", got6)
	}

	for _, c := range []struct {
		r     string
		holes []string
		want  []string
	}{
		{"10.0.0.0/8", nil, []string{"10.0.0.0/8"}},
		{"10.0.0.0/8", []string{"10.0.0.0/8"}, nil},
		{"10.0.0.0/24", []string{"10.0.0.0/8"}, nil},
		{"10.0.0.0/8", []string{"192.0.2.0/24"}, []string{"10.0.0.0/8"}},
		{"10.0.0.0/30", []string{"10.0.0.2/32"}, []string{"10.0.0.0/31", "10.0.0.3/32"}},
	} {
		var holes []netip.Prefix
		for _, h := range c.holes {
			holes = append(holes, netip.MustParsePrefix(h))
		}
		var got []string
		for _, p := range excludePrefixes(netip.MustParsePrefix(c.r), holes) {
			got = append(got, p.String())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s less %v: %v, want %v", c.r, c.holes, got, c.want)
		}
	}
}

func TestValidateVXLAN(t *testing.T) {
	ip := netip.MustParseAddr
	for _, c := range []struct {
		u    VXLANUnderlay
		want string
	}{
		{VXLANUnderlay{Port: 4789}, "without this host's underlay address"},
		{VXLANUnderlay{Peers: []netip.Addr{ip("198.51.100.2")}}, "without this host's underlay address"},
		{VXLANUnderlay{Local: ip("198.51.100.1")}, "no UDP port"},
		{VXLANUnderlay{Local: ip("198.51.100.1"), Port: 4789, Peers: []netip.Addr{ip("2001:db8::2")}}, "not of the family"},
		{VXLANUnderlay{Local: ip("198.51.100.1"), Port: 4789, Peers: []netip.Addr{ip("198.51.100.1")}}, "this host's own"},
		{VXLANUnderlay{Local: ip("198.51.100.1"), Port: 4789, Peers: []netip.Addr{{}}}, "no address"},
		{VXLANUnderlay{Local: ip("198.51.100.1"), Port: 4789, Peers: []netip.Addr{ip("0.0.0.0")}}, "not a unicast"},
		{VXLANUnderlay{Local: ip("::ffff:198.51.100.1"), Port: 4789}, "IPv4-mapped"},
	} {
		f := NewFake()
		err := f.Sync(context.Background(), State{Networks: []Network{vxNet}, VXLAN: c.u})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.u, err, c.want)
		}
		if f.Fake.Table != nil {
			t.Errorf("%+v: refused, but the table was written", c.u)
		}
	}
	if err := validate(State{VXLAN: vxUnderlay}); err != nil {
		t.Errorf("a valid underlay: %v", err)
	}
}
