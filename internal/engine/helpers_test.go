package engine

import (
	"net/netip"

	"pontoon/internal/model"
)

// Shorthands for specs in tests: the API carries typed values.

func tPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func tAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

func tIPs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func tPorts(ss ...string) []model.PortMapping {
	var out []model.PortMapping
	for _, s := range ss {
		m, err := model.ParsePortMapping(s)
		if err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}
