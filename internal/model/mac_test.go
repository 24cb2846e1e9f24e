package model

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseMAC(t *testing.T) {
	for _, c := range []struct {
		in, want string // want: the MAC, or what the error says
		ok       bool
	}{
		{"02:42:0a:00:00:05", "02:42:0a:00:00:05", true},
		{"02-42-0A-00-00-05", "02:42:0a:00:00:05", true}, // any notation, one canonical form
		{"00:16:3e:12:34:56", "00:16:3e:12:34:56", true}, // a vendor's (Xen) OUI is fine
		{"01:00:5e:00:00:01", "multicast", false},
		{"ff:ff:ff:ff:ff:ff", "multicast", false},
		{"33:33:00:00:00:01", "multicast", false},
		{"00:00:00:00:00:00", "00:00:00:00:00:00 cannot", false},
		{"02:42:0a:00:00", "six bytes", false},
		{"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "six bytes", false}, // InfiniBand, 20 bytes
		{"zz:42:0a:00:00:05", "six bytes", false},
		{"", "six bytes", false},
	} {
		hw, err := ParseMAC(c.in)
		switch {
		case c.ok && (err != nil || hw.String() != c.want):
			t.Errorf("ParseMAC(%q) = %v, %v; want %s", c.in, hw, err, c.want)
		case !c.ok && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("ParseMAC(%q) = %v, %v; want ErrInvalid saying %q", c.in, hw, err, c.want)
		}
	}
	// The suggestion for a multicast MAC is itself accepted.
	_, err := ParseMAC("03:42:0a:00:00:05")
	if err == nil || !strings.Contains(err.Error(), "e.g. 02:42:0a:00:00:05") {
		t.Errorf("ParseMAC(03:…) = %v, want the unicast 02:… suggested", err)
	}
}

func TestSourceRules(t *testing.T) {
	addrs := []Address{
		{Addr: netip.MustParsePrefix("10.91.0.5/24")},
		{Addr: netip.MustParsePrefix("fd00:91::5/64")},
	}
	for _, c := range []struct {
		ep   Endpoint
		want []string
	}{
		{Endpoint{Table: 0, Primary: true, Addresses: addrs}, nil},
		{Endpoint{Table: 102, Addresses: addrs}, []string{"from 10.91.0.5 lookup 102", "from fd00:91::5 lookup 102"}},
		{Endpoint{Table: 101, Addresses: addrs[1:]}, []string{"from fd00:91::5 lookup 101"}},
		{Endpoint{Table: 101}, []string{}}, // no address, no rule
	} {
		if got := c.ep.SourceRules(); !slices.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("table %d, %d addresses: %q, want %q", c.ep.Table, len(c.ep.Addresses), got, c.want)
		}
	}
}
