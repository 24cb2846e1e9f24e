package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"pontoon/internal/model"
)

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestPickSubnet(t *testing.T) {
	pool := pfx("10.89.0.0/16", "10.90.0.0/16")
	ula := DefaultULA.String()
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
		{"the last /24 of the IPv4 space", pfx("255.255.255.0/24"), 24, nil, "255.255.255.0/24"},
		{"past the end of the IPv4 space", pfx("255.255.254.0/23"), 24, pfx("255.255.254.0/24", "255.255.255.128/25"), ""},

		{"v6: first /64 of the ULA /48", []netip.Prefix{DefaultULA}, 64, nil, strings.Replace(ula, "/48", "/64", 1)},
		{"v6: skips taken /64s, host addresses and routes", pfx("fd00:1::/48"), 64,
			pfx("fd00:1::/64", "fd00:1:0:1::5/128", "fd00:1:0:2::/80", "10.89.0.0/16"), "fd00:1:0:3::/64"},
		{"v6: jumps a larger taken prefix", pfx("fd00:1::/48"), 64, pfx("fd00:1::/56"), "fd00:1:0:100::/64"},
		{"v6: a route covering the whole pool entry", pfx("fd00:1::/48", "fd00:2::/48"), 64, pfx("fd00::/16"), ""},
		{"v6: a huge pool costs what taken does", pfx("fd00::/8"), 64, pfx("fd00::/9", "fd80::/64"), "fd80:0:0:1::/64"},
		{"v6: the last /64 of the address space", pfx("ffff:ffff:ffff:ffff::/63"), 64,
			pfx("ffff:ffff:ffff:fffe::/64"), "ffff:ffff:ffff:ffff::/64"},
		{"v6: past the end of the address space", pfx("ffff:ffff:ffff:fffe::/63"), 64, pfx("ffff:ffff:ffff:fffe::/64", "ffff:ffff:ffff:ffff::1/128"), ""},
		{"a pool of both families gives one of the family bits fits", pfx("10.89.0.0/16", "fd00:1::/48"), 64, nil, "fd00:1::/64"},
		{"v4 pool entries cannot hold a /64", pfx("10.89.0.0/16"), 64, nil, ""},
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
}

func TestDefaultPlan(t *testing.T) {
	for _, p := range append(DefaultPool, DefaultSubnet) {
		if !netip.MustParsePrefix("10.0.0.0/8").Contains(p.Addr()) || p.Bits() > DefaultPoolBits {
			t.Errorf("default plan: %v", p)
		}
		if p != DefaultSubnet && p.Overlaps(DefaultSubnet) || p.Overlaps(netip.MustParsePrefix("10.96.0.0/12")) {
			t.Errorf("pool entry %v overlaps the default subnet or 10.96.0.0/12", p)
		}
	}
	// The documented ULA, derived as documented, and unique local.
	if DefaultULA != netip.MustParsePrefix("fd2b:225b:c0de::/48") {
		t.Errorf("DefaultULA = %v, not the documented fd2b:225b:c0de::/48", DefaultULA)
	}
	if !netip.MustParsePrefix("fd00::/8").Contains(DefaultULA.Addr()) || DefaultULA.Bits() != 48 || DefaultULA.Masked() != DefaultULA {
		t.Errorf("DefaultULA %v is not a unique local /48", DefaultULA)
	}
	if ULA48("other host") == DefaultULA {
		t.Error("ULA48 ignores its seed")
	}
	for _, p := range DefaultPools {
		if err := p.Check(); err != nil {
			t.Errorf("default pool %v: %v", p, err)
		}
	}
	for _, v6 := range []bool{false, true} {
		p, ok := PoolFor(DefaultPools, v6)
		if !ok || p.Is6() != v6 {
			t.Errorf("PoolFor(v6 %v) = %v %v", v6, p, ok)
		}
	}
	if p, ok := PoolFor(DefaultPools[:1], true); ok {
		t.Errorf("PoolFor a family with no pool: %v", p)
	}
	p, _ := PoolFor(DefaultPools, true)
	if got, err := p.Pick(nil); err != nil || got != netip.MustParsePrefix("fd2b:225b:c0de::/64") {
		t.Errorf("first default v6 subnet: %v %v", got, err)
	}
}

func TestPoolCheck(t *testing.T) {
	for _, tc := range []struct {
		pool Pool
		msg  string // "" = valid
	}{
		{Pool{pfx("10.89.0.0/16"), 24}, ""},
		{Pool{pfx("fd00:1::/48", "fd00:2::/48"), 64}, ""},
		{Pool{nil, 24}, "address pool is empty"},
		{Pool{pfx("10.89.0.0/16"), 31}, "subnet size /31 is out of range: use 8 to 30"},
		{Pool{pfx("fd00:1::/48"), 80}, "subnet size /80 is out of range: use 8 to 64"},
		{Pool{pfx("10.89.0.0/16", "fd00:1::/48"), 24}, "fd00:1::/48 is not of the family of 10.89.0.0/16"},
		{Pool{pfx("10.89.0.1/16"), 24}, "has host bits set: did you mean 10.89.0.0/16?"},
		{Pool{pfx("fd00:1::/48", "fd00:2::/72"), 64}, "fd00:2::/72 is smaller than the subnet size /64"},
		{Pool{[]netip.Prefix{{}}, 24}, "is not a prefix"},
	} {
		err := tc.pool.Check()
		if tc.msg == "" && err != nil || tc.msg != "" && (!errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%v: %v, want %q", tc.pool, err, tc.msg)
		}
	}
}
