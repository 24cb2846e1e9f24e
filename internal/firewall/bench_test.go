package firewall

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// BenchmarkSync: one Sync (one nft transaction rebuilding the table, plus
// the DOCKER-USER probe) with n networks, real nft in a test namespace.
func BenchmarkSync(b *testing.B) {
	ns := testutil.NewNetns(b)
	for _, n := range []int{1, 10, 100} {
		var s State
		for i := range n {
			s.Networks = append(s.Networks, Network{Name: "n" + strconv.Itoa(i), Bridge: "ptbr-" + strconv.Itoa(i),
				Subnets: v4(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, byte(i), 0}), 24), i%2 == 0), Internal: i%5 == 0})
		}
		b.Run(strconv.Itoa(n)+"-networks", func(b *testing.B) {
			withFirewall(b, ns, func(fw Interface) error {
				for b.Loop() {
					if err := fw.Sync(context.Background(), s); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}

// BenchmarkPublish: publishing and then unpublishing one port mapping (two
// netlink transactions) with n mappings already published, real kernel in
// a test namespace. Flat in n: one map element per port, static rules.
//
//	go test ./internal/firewall -run '^$' -bench Publish -benchtime 2000x
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{0, 1000, 5000} {
		b.Run(strconv.Itoa(n)+"-published", func(b *testing.B) {
			ns := testutil.NewNetns(b)
			s := State{Networks: []Network{{Name: "pontoon", Bridge: "pontoon0", Subnets: v4(netip.MustParsePrefix("10.88.0.0/16"), true)}}}
			if n > 0 {
				s.Ports = []Published{{PortMapping: model.PortMapping{HostPort: 10000, HostPortEnd: uint16(10000 + n - 1),
					Port: 10000, PortEnd: uint16(10000 + n - 1), Proto: "tcp"}, Targets: []netip.Addr{netip.MustParseAddr("10.88.0.2")}}}
			}
			one := []Published{{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"},
				Targets: []netip.Addr{netip.MustParseAddr("10.88.0.3")}}}
			withFirewall(b, ns, func(fw Interface) error {
				if err := fw.Sync(context.Background(), s); err != nil {
					return err
				}
				b.ResetTimer()
				for b.Loop() {
					if err := fw.Publish(context.Background(), one); err != nil {
						return err
					}
					if err := fw.Unpublish(context.Background(), one); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}

// BenchmarkGuard: adding and removing one endpoint's anti-spoofing
// elements (two netlink transactions), real kernel in a test namespace.
//
//	go test ./internal/firewall -run '^$' -bench Guard -benchtime 2000x
func BenchmarkGuard(b *testing.B) {
	ns := testutil.NewNetns(b)
	g := []Guarded{{Port: "ptv-0123456789", MAC: net.HardwareAddr{2, 0x42, 10, 88, 0, 2}, IPs: []netip.Addr{netip.MustParseAddr("10.88.0.2")}}}
	withFirewall(b, ns, func(fw Interface) error {
		if err := fw.Sync(context.Background(), State{Networks: []Network{{Name: "pontoon", Bridge: "pontoon0", Subnets: v4(netip.MustParsePrefix("10.88.0.0/16"), false)}}}); err != nil {
			return err
		}
		b.ResetTimer()
		for b.Loop() {
			if err := fw.Guard(context.Background(), g); err != nil {
				return err
			}
			if err := fw.Unguard(context.Background(), g); err != nil {
				return err
			}
		}
		return nil
	})
}
