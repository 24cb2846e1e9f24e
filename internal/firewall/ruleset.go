package firewall

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// The ruleset of table inet pontoon.
//
// The rules are static: what a network adds is set elements, so a packet
// costs a few hash lookups however many networks there are, and adding a
// network never adds a rule.
//
//	set bridges       ifname            every pontoon bridge
//	set internal      ifname            bridges of --internal networks
//	set intra         ifname . ifname   (bridge . bridge): traffic inside one network
//	set masq-subnets  ipv4_addr, interval   subnets source-NATed when they leave the host
//
//	chain forward      filter hook forward priority filter; policy accept
//	chain postrouting  nat hook postrouting priority srcnat
//
// Room for what comes later, without changing what is here:
//   - published ports: a `nat` prerouting/output chain with
//     `dnat ip to ip daddr . meta l4proto . th dport map @published-ports`;
//     rule (e) below already accepts what such a DNAT lets in.
//   - anti-spoofing: a set of `ifname . ipv4_addr` (host veth . address)
//     elements checked where the veth is still the input interface (bridge
//     family, or prerouting); one element per endpoint.
//
// Both will be elements too, so Sync keeps building the whole table from
// State and per-endpoint updates can add elements between Syncs.
const (
	setBridges  = "bridges"
	setInternal = "internal"
	setIntra    = "intra"
	setMasq     = "masq-subnets"
	setSubnets  = "subnets" // every network's subnet

	chainForward     = "forward"
	chainPostrouting = "postrouting"
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainGuard       = "loopback-guard"

	mapPortsAny = "ports-any" // proto . port → sandbox addr . port, on every local address
	mapPortsIP  = "ports-ip"  // host addr . proto . port → sandbox addr . port
)

const tableComment = "managed by pontoon: rebuilt from its state on every change; do not edit"

// validate rejects states the kernel would refuse halfway, or that would
// make rules mean something else, before anything is touched.
func validate(s State) error {
	bridges := map[string]string{}
	for _, n := range s.Networks {
		if n.Name == "" {
			return fmt.Errorf("network with bridge %q has no name", n.Bridge)
		}
		if err := validIfName(n.Bridge); err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
		if other, dup := bridges[n.Bridge]; dup {
			return fmt.Errorf("networks %s and %s share bridge %s", other, n.Name, n.Bridge)
		}
		bridges[n.Bridge] = n.Name
		if masquerades(n) && (!n.Subnet.IsValid() || !n.Subnet.Addr().Is4()) {
			return fmt.Errorf("network %s: masquerade needs an IPv4 subnet, got %q", n.Name, n.Subnet)
		}
	}
	return nil
}

// validIfName accepts interface names that can be written unquoted-safe
// into nft and iptables input: Linux allows almost any byte, pontoon's own
// names are [a-z0-9-], adopted bridges are rarely stranger than [A-Za-z0-9_.@-].
func validIfName(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("bridge name %q: want 1 to 15 bytes", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.@-", r)
		if !ok {
			return fmt.Errorf("bridge name %q: only letters, digits and _.@- are supported", name)
		}
	}
	return nil
}

// masquerades reports whether traffic of n is source-NATed on the way out.
// Internal wins: an internal network has no way out to NAT.
func masquerades(n Network) bool { return n.Masquerade && !n.Internal }

// build adds to tx everything that makes table inet pontoon equal to s,
// whatever was there before.
//
// The table is added (so that the delete cannot fail when it is missing —
// Debian 12's nft 1.0.6 has no `destroy`), deleted and created again, all in
// the one transaction the caller runs: the kernel swaps the old table for
// the new one atomically, so no packet ever sees a half-built table. This
// is "flush + add", but stronger than `flush table`, which only removes
// rules: it also removes chains and sets an older pontoon (or a person)
// left behind, and lets a newer pontoon change a set's type or a chain's
// priority. Connections keep their conntrack (and NAT) state across it.
func build(tx *knftables.Transaction, s State) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo(tableComment)})

	for _, o := range inetSets() {
		tx.Add(o)
	}

	// The chains and their rules are data (rules.go).
	for _, c := range InetChains {
		tx.Add(c.knft())
		for _, r := range c.knftRules() {
			tx.Add(r)
		}
	}
	for _, e := range inetElements(s) {
		tx.Add(e)
	}
}

// inetElements are the set and map elements of table inet pontoon for s:
// what build writes, and what the evaluator looks packets up in.
func inetElements(s State) []*knftables.Element {
	var out []*knftables.Element
	// Sorted, so that the transaction text (logged) and the fake's dump
	// do not depend on the caller's order.
	nets := slices.Clone(s.Networks)
	slices.SortFunc(nets, func(a, b Network) int { return cmp.Compare(a.Bridge, b.Bridge) })
	for _, n := range nets {
		c := knftables.PtrTo("network " + n.Name)
		// Quoted: unquoted, nft would read "br.10" as a concatenation and
		// "0abc" as something other than a string.
		br := `"` + n.Bridge + `"`
		out = append(out, &knftables.Element{Set: setBridges, Key: []string{br}, Comment: c},
			&knftables.Element{Set: setIntra, Key: []string{br, br}, Comment: c})
		if n.Internal {
			out = append(out, &knftables.Element{Set: setInternal, Key: []string{br}, Comment: c})
		}
		if masquerades(n) {
			out = append(out, &knftables.Element{Set: setMasq, Key: []string{n.Subnet.Masked().String()}, Comment: c})
		}
		if n.Subnet.IsValid() {
			out = append(out, &knftables.Element{Set: setSubnets, Key: []string{n.Subnet.Masked().String()}, Comment: c})
		}
	}
	for _, e := range portElements(s.Ports) {
		out = append(out, e.knft())
	}
	return out
}

// inetSets declares the sets and maps of table inet pontoon (their
// elements come from inetElements).
func inetSets() []knftables.Object {
	return []knftables.Object{
		&knftables.Set{Name: setBridges, Type: "ifname",
			Comment: knftables.PtrTo("bridges of all pontoon networks")},
		&knftables.Set{Name: setInternal, Type: "ifname",
			Comment: knftables.PtrTo("bridges of internal networks: no traffic in or out but their own")},
		&knftables.Set{Name: setIntra, Type: "ifname . ifname",
			Comment: knftables.PtrTo("bridge . bridge: traffic that stays inside one network")},
		&knftables.Set{Name: setMasq, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag},
			Comment: knftables.PtrTo("subnets masqueraded when they leave the host")},
		&knftables.Set{Name: setSubnets, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag},
			Comment: knftables.PtrTo("subnets of all pontoon networks")},
		&knftables.Map{Name: mapPortsAny, Type: "inet_proto . inet_service : ipv4_addr . inet_service",
			Comment: knftables.PtrTo("published ports on every host address: proto . port : sandbox . port")},
		&knftables.Map{Name: mapPortsIP, Type: "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
			Comment: knftables.PtrTo("published ports bound to one host address")},
	}
}
