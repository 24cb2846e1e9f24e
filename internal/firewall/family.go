package firewall

import (
	"fmt"
	"net/netip"
)

// Dual stack: one description, one rule per family.
//
// Most of pontoon's rules know no address family: the forward chain
// (isolation between networks, internal networks, unsolicited traffic,
// replies, published connections) matches interface names and conntrack
// state, so one rule in table inet pontoon judges IPv4 and IPv6 alike.
// The rules that match an address — masquerade and hairpin, the published
// ports' DNAT, the loopback guard, anti-spoofing — are written once, as a
// function of an IPFamily, and built for each of IPFamilies (kube-proxy's
// ipX). So are the sets and maps they look up: masq-subnets and
// masq-subnets6, ports-any and ports-any6, … The two families differ only
// by the facts below; nothing is a copy of the other.

// IPFamily is everything in which pontoon's IPv4 and IPv6 rules differ.
type IPFamily struct {
	// Name is nft's word for the family: the payload protocol (ip saddr,
	// ip6 saddr), the family of a NAT statement (dnat ip to, dnat ip6 to)
	// and the ether type of its frames.
	Name string
	// NFProto is the family as meta nfproto spells it.
	NFProto string
	// Suffix ends the names of the family's sets and maps. IPv4 has none:
	// its sets keep the names they had before IPv6 (masq-subnets,
	// ports-any), which traces and docs show.
	Suffix string
	// AddrType is nft's type of an address of the family.
	AddrType string
	// Label names the family for people, in comments and messages.
	Label string
	// Xtables is the family's iptables command (for Docker's DOCKER-USER).
	Xtables string
	// Loopback is the host's loopback prefix, as nft writes it.
	Loopback string
	// LoopbackDNAT says whether published ports can answer the host on the
	// loopback address through NAT. True for IPv4 (route_localnet on the
	// bridges lets a 127.0.0.1 source be routed out of them; the loopback-
	// nat rule then masquerades it). False for IPv6: see loopback6 below.
	LoopbackDNAT bool
	// DHCP names the family's DHCP protocol, and DHCPServer and
	// DHCPClient are its UDP ports as nft writes them: a server's replies
	// go from DHCPServer to DHCPClient (RFC 2131, RFC 8415).
	DHCP, DHCPServer, DHCPClient string
}

// The two families, and the order in which rules are built for them.
var (
	IPv4 = IPFamily{Name: "ip", NFProto: "ipv4", Suffix: "", AddrType: "ipv4_addr", Label: "IPv4", Xtables: "iptables",
		Loopback: "127.0.0.0/8", LoopbackDNAT: true, DHCP: "DHCP", DHCPServer: "67", DHCPClient: "68"}
	IPv6 = IPFamily{Name: "ip6", NFProto: "ipv6", Suffix: "6", AddrType: "ipv6_addr", Label: "IPv6", Xtables: "ip6tables",
		Loopback: "::1", LoopbackDNAT: false, DHCP: "DHCPv6", DHCPServer: "547", DHCPClient: "546"}
	IPFamilies = []IPFamily{IPv4, IPv6}
)

// loopback6: published ports on [::1].
//
// The kernel (6.18, tried in throwaway namespaces) cannot serve them with
// NAT, whatever the rules:
//
//  1. DNAT in output sends the connection to the sandbox with source ::1,
//     which the sandbox drops (RFC 4291 2.5.3: ip6_rcv_core drops a
//     loopback source or destination on any device but lo). Masquerading
//     the source to the network's gateway in postrouting gets the SYN
//     there, and the sandbox answers.
//  2. But conntrack undoes that source NAT on the reply in prerouting, so
//     the reply's destination becomes ::1 while it is still on the bridge.
//     The input route lookup for ::1 is strict about the interface (::1 is
//     on lo only), finds nothing, and br_netfilter frees the packet
//     (br_nf_pre_routing_finish_ipv6): the client times out.
//  3. A policy route that makes ::1 local on the bridge (local ::1 dev
//     BRIDGE in a table looked up for iif BRIDGE) fixes 2 — and then the
//     reply is dropped by the same RFC 4291 check as in 1: with
//     br_netfilter (net.bridge.bridge-nf-call-ip6tables=1, the default in
//     every namespace here) prerouting NAT runs in the bridge, before the
//     bridge device's ipv6_rcv checks the header. With br_netfilter off
//     for IPv6 the connection works — but that is a host-wide setting
//     pontoon does not own. IPv4 has no such check (route_localnet is its
//     knob), so 127.0.0.1 works.
//
// Stateless rewriting around conntrack (payload set in a route chain on
// output and in input, marked connections) does carry one literal mapping
// in both directions, but cannot undo a port mapping without conntrack
// when two host ports map to one sandbox port, does not translate ICMPv6
// errors, and needs a mark bit: not worth shipping.
//
// So pontoon's IPv6 DNAT rules leave ::1 alone (they match `ip6 daddr !=
// ::1`), and [::1]:PORT belongs to a userspace relay that listens there
// and connects to the sandbox — as Docker's docker-proxy does. Its
// connection leaves the host from the gateway address like any other the
// host opens, and the firewall lets it through (TestKernelLoopback6). A
// mapping bound to ::1 is refused by the firewall (Publish, Sync): the
// engine serves it with the relay or says why not.

// Saddr and Daddr are the keys of the family's source and destination
// address.
func (f IPFamily) Saddr() Key { return Key(f.Name + " saddr") }
func (f IPFamily) Daddr() Key { return Key(f.Name + " daddr") }

// name is a per-family set or map name.
func (f IPFamily) name(base string) string { return base + f.Suffix }

// comment is a per-family rule's comment: IPv4's as it always was, the
// others' with the family, so that every rule of a chain has its own (the
// trace finds rules by chain and comment).
func (f IPFamily) comment(s string) string {
	if f.Suffix == "" {
		return s
	}
	return s + " (" + f.Label + ")"
}

// Has reports whether a is an address of the family (an IPv4-mapped IPv6
// address is neither: validate refuses it).
func (f IPFamily) Has(a netip.Addr) bool {
	if f.Name == IPv4.Name {
		return a.Is4()
	}
	return a.Is6() && !a.Is4In6()
}

// familyOf returns a's family, or false for an invalid or IPv4-mapped
// address.
func familyOf(a netip.Addr) (IPFamily, bool) {
	for _, f := range IPFamilies {
		if f.Has(a) {
			return f, true
		}
	}
	return IPFamily{}, false
}

// isLoopbackOnly reports whether a is the family's loopback address where
// the family cannot DNAT it (::1).
func isLoopbackOnly(a netip.Addr) bool {
	f, ok := familyOf(a)
	return ok && !f.LoopbackDNAT && a.IsLoopback()
}

// addrError says what is wrong with an address pontoon cannot write into a
// rule, or nil.
func addrError(what string, a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("%s: no address", what)
	case a.Is4In6():
		return fmt.Errorf("%s %s: an IPv4-mapped IPv6 address; give it as IPv4 (%s)", what, a, a.Unmap())
	case a.Zone() != "":
		return fmt.Errorf("%s %s: an address with a zone cannot go into a firewall rule", what, a)
	}
	return nil
}
