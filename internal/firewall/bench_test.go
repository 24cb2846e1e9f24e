package firewall

import (
	"context"
	"net/netip"
	"strconv"
	"testing"

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
				Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, byte(i), 0}), 24), Masquerade: i%2 == 0, Internal: i%5 == 0})
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
