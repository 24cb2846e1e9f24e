package ipam

import (
	"errors"
	"net/netip"
	"testing"

	"pontoon/internal/model"
)

func TestPickSubnet(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	pool := pfx("10.89.0.0/16", "10.90.0.0/16")
	for _, tc := range []struct {
		name  string
		pool  []netip.Prefix
		bits  int
		taken []netip.Prefix
		want  string // "" = ErrNoSubnet
	}{
		{"first of an empty pool", pool, 24, nil, "10.89.0.0/24"},
		{"skips taken, partial overlaps and host routes", pool, 24,
			pfx("10.89.0.0/24", "10.89.1.128/25", "10.89.2.7/32"), "10.89.3.0/24"},
		{"jumps a whole pool entry", pool, 24, pfx("10.89.0.0/16"), "10.90.0.0/24"},
		{"jumps a larger taken prefix", pool, 24, pfx("10.89.0.0/20"), "10.89.16.0/24"},
		{"a /16 for the default network", pool, 16, pfx("10.89.5.0/24"), "10.90.0.0/16"},
		{"pool entries smaller than bits are skipped", pfx("10.89.0.0/25", "10.90.0.0/16"), 24, nil, "10.90.0.0/24"},
		{"full", pool[:1], 24, pfx("10.0.0.0/8"), ""},
		{"the default pool leaves out the Kubernetes service range", DefaultPool, 24, pfx("10.89.0.0/16", "10.90.0.0/15", "10.92.0.0/14"), "10.112.0.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PickSubnet(tc.pool, tc.bits, tc.taken)
			if tc.want == "" {
				if !errors.Is(err, ErrNoSubnet) || !errors.Is(err, model.ErrExhausted) {
					t.Fatalf("got %v %v, want ErrNoSubnet", p, err)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("got %v %v, want %s", p, err, tc.want)
			}
		})
	}
	for _, p := range append(DefaultPool, DefaultSubnet) {
		if !netip.MustParsePrefix("10.0.0.0/8").Contains(p.Addr()) || p.Bits() > DefaultPoolBits {
			t.Errorf("default plan: %v", p)
		}
		if p != DefaultSubnet && p.Overlaps(DefaultSubnet) || p.Overlaps(netip.MustParsePrefix("10.96.0.0/12")) {
			t.Errorf("pool entry %v overlaps the default subnet or 10.96.0.0/12", p)
		}
	}
}
