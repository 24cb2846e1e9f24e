package firewall

import (
	"net/netip"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// A network's members on other hosts (host-gw overlays, issue #13): known
// by address, the network's whole range, and by the interface they come
// through, the underlay (under0); this host has one slice of the range.
// Another link of the host, lan0, is where a spoofer sits.
var (
	// fastNet: 10.201.0.0/16 across the cluster, this host's slice
	// 10.201.1.0/24 on ptbr-0000fa57, reaching the outside (masqueraded).
	fastNet = Network{Name: "fast", Bridge: "ptbr-0000fa57", Subnets: v4(netip.MustParsePrefix("10.201.1.0/24"), true),
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.201.0.0/16")}, RemoteVia: "under0"}
	// fastInternalNet is --internal: only its own members, here and on
	// the other hosts.
	fastInternalNet = Network{Name: "fastin", Bridge: "ptbr-0000fa58", Subnets: v4(netip.MustParsePrefix("10.202.1.0/24"), true),
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.202.0.0/16")}, RemoteVia: "under0", Internal: true}
	// fastApartNet is --icc=false: its sandboxes do not reach each other,
	// not across hosts either.
	fastApartNet = Network{Name: "fastapart", Bridge: "ptbr-0000fa59", Subnets: v4(netip.MustParsePrefix("10.203.1.0/24"), true),
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.203.0.0/16")}, RemoteVia: "under0", Isolated: true}
	fastDual = Network{Name: "fast6", Bridge: "ptbr-0000fa66", Subnets: []model.Subnet{
		{Prefix: netip.MustParsePrefix("10.204.1.0/24"), Masquerade: true},
		{Prefix: netip.MustParsePrefix("fd00:204:1::/64"), Masquerade: true}},
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.204.0.0/16"), netip.MustParsePrefix("fd00:204::/32")}, RemoteVia: "under0"}
	// vxNet is a VXLAN overlay: its members on other hosts come through
	// its VXLAN device, one of its links.
	vxNet = Network{Name: "vx", Bridge: "ptbr-0000fa60", Links: []string{"ptvx-60"}, Subnets: v4(netip.MustParsePrefix("10.205.1.0/24"), true),
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.205.0.0/16")}, RemoteVia: "ptvx-60"}
	// vxApartNet is a VXLAN overlay with --icc=false.
	vxApartNet = Network{Name: "vxapart", Bridge: "ptbr-0000fa61", Links: []string{"ptvx-61"}, Subnets: v4(netip.MustParsePrefix("10.206.3.0/24"), true),
		Remotes: []netip.Prefix{netip.MustParsePrefix("10.206.0.0/16")}, RemoteVia: "ptvx-61", Isolated: true}
	// vxUnderlay: this host is 198.51.100.1 on the underlay, two other
	// nodes are 198.51.100.2 and .3 (given out of order, and one twice).
	vxUnderlay = VXLANUnderlay{Local: netip.MustParseAddr("198.51.100.1"), Port: 4789,
		Peers: []netip.Addr{netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")}}
)

func TestEvaluateRemoteMembers(t *testing.T) {
	ev := NewEvaluator(State{Networks: []Network{fastNet, fastInternalNet, fastApartNet, fastDual, vxNet, defaultNet}})
	local := netip.MustParseAddr("10.201.1.2")  // a sandbox of fast on this host
	remote := netip.MustParseAddr("10.201.2.2") // one of fast on another host
	ip := netip.MustParseAddr
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		{"a remote member into its network's bridge (host-gw, through the underlay)",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastNet.Bridge, Src: remote, Dst: local, Proto: "tcp", DPort: 80}, "accept by remote-in"},
		{"the bridge to a remote member",
			Packet{Hook: HookForward, IIF: fastNet.Bridge, OIF: "under0", Src: local, Dst: remote, Proto: "tcp", DPort: 80}, "accept by remote-out"},
		{"a remote member into ANOTHER network's bridge: isolation",
			Packet{Hook: HookForward, IIF: "under0", OIF: "pontoon0", Src: remote, Dst: addrA, Proto: "tcp", DPort: 80}, "drop by unsolicited"},
		{"a remote member of another network into fast's bridge",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastNet.Bridge, Src: ip("10.202.2.2"), Dst: local, Proto: "icmp"}, "drop by unsolicited"},
		{"outside the cluster into fast's bridge: unsolicited",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastNet.Bridge, Src: lanIP, Dst: local, Proto: "tcp", DPort: 80}, "drop by unsolicited"},
		{"a sandbox of another local network sending from fast's range: not a remote member",
			Packet{Hook: HookForward, IIF: "pontoon0", OIF: fastNet.Bridge, Src: remote, Dst: local, Proto: "icmp"}, "drop by isolation"},
		{"fast to a remote member of another network: out, as to the world (masqueraded, then dropped there)",
			Packet{Hook: HookForward, IIF: fastNet.Bridge, OIF: "under0", Src: local, Dst: ip("10.202.2.2"), Proto: "icmp"}, "accept by policy"},
		{"an internal overlay's remote member in",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastInternalNet.Bridge, Src: ip("10.202.2.2"), Dst: ip("10.202.1.2"), Proto: "icmp"}, "accept by remote-in"},
		{"an internal overlay to its remote member",
			Packet{Hook: HookForward, IIF: fastInternalNet.Bridge, OIF: "under0", Src: ip("10.202.1.2"), Dst: ip("10.202.2.2"), Proto: "icmp"}, "accept by remote-out"},
		{"an internal overlay to the world",
			Packet{Hook: HookForward, IIF: fastInternalNet.Bridge, OIF: "under0", Src: ip("10.202.1.2"), Dst: lanIP, Proto: "icmp"}, "drop by internal-out"},
		{"an --icc=false overlay's remote member: kept apart",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastApartNet.Bridge, Src: ip("10.203.2.2"), Dst: ip("10.203.1.2"), Proto: "icmp"}, "drop by unsolicited"},
		{"IPv6 remote member in",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastDual.Bridge, Src: ip("fd00:204:2::2"), Dst: ip("fd00:204:1::2"), Proto: "icmpv6"}, "accept by remote-in"},
		{"IPv6 to a remote member",
			Packet{Hook: HookForward, IIF: fastDual.Bridge, OIF: "under0", Src: ip("fd00:204:1::2"), Dst: ip("fd00:204:2::2"), Proto: "icmpv6"}, "accept by remote-out"},
		{"IPv6 from outside the cluster",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastDual.Bridge, Src: ip("2001:db8::9"), Dst: ip("fd00:204:1::2"), Proto: "icmpv6"}, "drop by unsolicited"},
		// This host's own slice is nobody's on another host: not a
		// remote member, whatever the uplink says.
		{"fast's own slice from the underlay into its bridge: not a remote member",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastNet.Bridge, Src: ip("10.201.1.77"), Dst: local, Proto: "tcp", DPort: 80}, "drop by unsolicited"},
		{"an internal overlay's own slice from the underlay",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastInternalNet.Bridge, Src: ip("10.202.1.77"), Dst: ip("10.202.1.2"), Proto: "icmp"}, "drop by internal-in"},
		{"an internal overlay to its own slice through the underlay: not a remote member",
			Packet{Hook: HookForward, IIF: fastInternalNet.Bridge, OIF: "under0", Src: ip("10.202.1.2"), Dst: ip("10.202.1.77"), Proto: "icmp"}, "drop by internal-out"},
		{"IPv6: the own slice from the underlay",
			Packet{Hook: HookForward, IIF: "under0", OIF: fastDual.Bridge, Src: ip("fd00:204:1::77"), Dst: ip("fd00:204:1::2"), Proto: "icmpv6"}, "drop by unsolicited"},
		{"a local sandbox to another of fast (bridged)",
			Packet{Hook: HookForward, IIF: fastNet.Bridge, OIF: fastNet.Bridge, Src: local, Dst: local.Next(), Proto: "icmp"}, "accept by intra"},

		// Issue #13: the range is the network's own on its uplink only.
		{"fast's range spoofed on another link (lan0) into fast's bridge",
			Packet{Hook: HookForward, IIF: "lan0", OIF: fastNet.Bridge, Src: remote, Dst: local, Proto: "tcp", DPort: 80}, "drop by unsolicited"},
		{"an internal overlay's range spoofed on another link",
			Packet{Hook: HookForward, IIF: "lan0", OIF: fastInternalNet.Bridge, Src: ip("10.202.2.2"), Dst: ip("10.202.1.2"), Proto: "icmp"}, "drop by internal-in"},
		{"IPv6: the range spoofed on another link",
			Packet{Hook: HookForward, IIF: "lan0", OIF: fastDual.Bridge, Src: ip("fd00:204:2::2"), Dst: ip("fd00:204:1::2"), Proto: "icmpv6"}, "drop by unsolicited"},
		{"fast to its range through another link: out, as to the world",
			Packet{Hook: HookForward, IIF: fastNet.Bridge, OIF: "lan0", Src: local, Dst: remote, Proto: "icmp"}, "accept by policy"},
		{"an internal overlay to its range through another link: not its member there",
			Packet{Hook: HookForward, IIF: fastInternalNet.Bridge, OIF: "lan0", Src: ip("10.202.1.2"), Dst: ip("10.202.2.2"), Proto: "icmp"}, "drop by internal-out"},

		// VXLAN: the uplink is the VXLAN device, a link of the network:
		// (j) checks the source, remote-in accepts it.
		{"vxlan: a remote member through the VXLAN device",
			Packet{Hook: HookForward, IIF: "ptvx-60", OIF: vxNet.Bridge, Src: ip("10.205.2.2"), Dst: ip("10.205.1.2"), Proto: "tcp", DPort: 80}, "accept by remote-in"},
		{"vxlan: the range spoofed on the underlay, unencapsulated",
			Packet{Hook: HookForward, IIF: "under0", OIF: vxNet.Bridge, Src: ip("10.205.2.2"), Dst: ip("10.205.1.2"), Proto: "tcp", DPort: 80}, "drop by unsolicited"},
		{"vxlan: the range spoofed on another link",
			Packet{Hook: HookForward, IIF: "lan0", OIF: vxNet.Bridge, Src: ip("10.205.2.2"), Dst: ip("10.205.1.2"), Proto: "icmp"}, "drop by unsolicited"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := decided(ev.Evaluate(c.p)); got != c.want {
				t.Fatalf("%s, want %s", got, c.want)
			}
		})
	}
}

func TestEvaluateRemoteNAT(t *testing.T) {
	ev := NewEvaluator(State{Networks: []Network{fastNet, fastDual, defaultNet}})
	local, remote := netip.MustParseAddr("10.201.1.2"), netip.MustParseAddr("10.201.2.2")
	under := netip.MustParseAddr("192.0.2.1")
	for _, c := range []struct {
		name    string
		p       Packet
		want    string
		wantSrc netip.Addr
	}{
		{"to a remote member: the sandbox's own address",
			Packet{Hook: HookPostrouting, IIF: fastNet.Bridge, OIF: "under0", OIFAddr: under, Src: local, Dst: remote, Proto: "tcp", DPort: 80}, "accept by remote-no-nat", local},
		{"to the outside: masqueraded",
			Packet{Hook: HookPostrouting, IIF: fastNet.Bridge, OIF: "under0", OIFAddr: under, Src: local, Dst: uplinkIP, Proto: "tcp", DPort: 80}, "accept by masquerade", under},
		{"another network to fast's remote member: masqueraded (not its member)",
			Packet{Hook: HookPostrouting, IIF: "pontoon0", OIF: "under0", OIFAddr: under, Src: addrA, Dst: remote, Proto: "tcp", DPort: 80}, "accept by masquerade", under},
		{"IPv6 to a remote member",
			Packet{Hook: HookPostrouting, IIF: fastDual.Bridge, OIF: "under0", OIFAddr: netip.MustParseAddr("2001:db8::1"), Src: netip.MustParseAddr("fd00:204:1::2"), Dst: netip.MustParseAddr("fd00:204:2::2"), Proto: "tcp", DPort: 80}, "accept by remote-no-nat", netip.MustParseAddr("fd00:204:1::2")},
		{"to the range through another link: not a member there, masqueraded",
			Packet{Hook: HookPostrouting, IIF: fastNet.Bridge, OIF: "lan0", OIFAddr: lanIP, Src: local, Dst: remote, Proto: "tcp", DPort: 80}, "accept by masquerade", lanIP},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ev.Evaluate(c.p)
			if got := decided(r); got != c.want || r.Packet.Src != c.wantSrc {
				t.Fatalf("%s, source %s; want %s, source %s", got, r.Packet.Src, c.want, c.wantSrc)
			}
		})
	}
}

func TestValidateRemotes(t *testing.T) {
	for _, bad := range [][]netip.Prefix{
		{netip.MustParsePrefix("10.201.1.1/16")},
		{netip.MustParsePrefix("10.201.0.0/16"), netip.MustParsePrefix("10.202.0.0/16")},
		{{}},
	} {
		n := fastNet
		n.Remotes = bad
		if err := validate(State{Networks: []Network{n}}); err == nil {
			t.Errorf("remotes %v: no error", bad)
		}
	}
	// The interface they come through: required, a name nft takes, not
	// the network's own bridge.
	for _, via := range []string{"", "under 0", "a-name-too-long-for-linux", fastNet.Bridge} {
		n := fastNet
		n.RemoteVia = via
		err := validate(State{Networks: []Network{n}})
		if err == nil {
			t.Errorf("remote members through %q: no error", via)
			continue
		}
		if !strings.Contains(err.Error(), "network fast") {
			t.Errorf("remote members through %q: %v, want the network named", via, err)
		}
	}
	// Not through another network's bridge or VXLAN device.
	for _, via := range []string{vxNet.Links[0], vxNet.Bridge, defaultNet.Bridge} {
		n := fastNet
		n.RemoteVia = via
		err := validate(State{Networks: []Network{n, vxNet, defaultNet}})
		if err == nil || !strings.Contains(err.Error(), "network fast") || !strings.Contains(err.Error(), via) {
			t.Errorf("remote members through another network's %s: %v, want an error naming network fast and %s", via, err, via)
		}
	}
	// Several networks share one underlay; a VXLAN overlay's is its link.
	if err := validate(State{Networks: []Network{fastNet, fastInternalNet, fastDual, vxNet}}); err != nil {
		t.Error(err)
	}
	// Without remote members, none is needed.
	if err := validate(State{Networks: []Network{{Name: "n", Bridge: "ptbr-n", Subnets: fastNet.Subnets}}}); err != nil {
		t.Error(err)
	}
}
