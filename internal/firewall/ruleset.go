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

	tx.Add(&knftables.Set{Name: setBridges, Type: "ifname",
		Comment: knftables.PtrTo("bridges of all pontoon networks")})
	tx.Add(&knftables.Set{Name: setInternal, Type: "ifname",
		Comment: knftables.PtrTo("bridges of internal networks: no traffic in or out but their own")})
	tx.Add(&knftables.Set{Name: setIntra, Type: "ifname . ifname",
		Comment: knftables.PtrTo("bridge . bridge: traffic that stays inside one network")})
	tx.Add(&knftables.Set{Name: setMasq, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag},
		Comment: knftables.PtrTo("subnets masqueraded when they leave the host")})

	tx.Add(&knftables.Set{Name: setSubnets, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag},
		Comment: knftables.PtrTo("subnets of all pontoon networks")})
	tx.Add(&knftables.Map{Name: mapPortsAny, Type: "inet_proto . inet_service : ipv4_addr . inet_service",
		Comment: knftables.PtrTo("published ports on every host address: proto . port : sandbox . port")})
	tx.Add(&knftables.Map{Name: mapPortsIP, Type: "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
		Comment: knftables.PtrTo("published ports bound to one host address")})

	buildForward(tx)
	buildPostrouting(tx)
	buildPublish(tx)

	// Sorted, so that the transaction text (logged) and the fake's dump
	// do not depend on the caller's order.
	nets := slices.Clone(s.Networks)
	slices.SortFunc(nets, func(a, b Network) int { return cmp.Compare(a.Bridge, b.Bridge) })
	for _, n := range nets {
		c := knftables.PtrTo("network " + n.Name)
		// Quoted: unquoted, nft would read "br.10" as a concatenation and
		// "0abc" as something other than a string.
		br := `"` + n.Bridge + `"`
		tx.Add(&knftables.Element{Set: setBridges, Key: []string{br}, Comment: c})
		tx.Add(&knftables.Element{Set: setIntra, Key: []string{br, br}, Comment: c})
		if n.Internal {
			tx.Add(&knftables.Element{Set: setInternal, Key: []string{br}, Comment: c})
		}
		if masquerades(n) {
			tx.Add(&knftables.Element{Set: setMasq, Key: []string{n.Subnet.Masked().String()}, Comment: c})
		}
		if n.Subnet.IsValid() {
			tx.Add(&knftables.Element{Set: setSubnets, Key: []string{n.Subnet.Masked().String()}, Comment: c})
		}
	}
	for _, e := range portElements(s.Ports) {
		tx.Add(e.knft())
	}
}

// buildPublish adds the chains of published ports: one static rule per map
// and hook, one map element per port. Traffic to a local address — from
// outside (prerouting) or from the host itself, 127.0.0.1 included (output)
// — is DNATed by a map lookup; a key that is not in a map does not match.
func buildPublish(tx *knftables.Transaction) {
	for _, ch := range []struct {
		name string
		hook knftables.BaseChainHook
		what string
	}{
		{chainPrerouting, knftables.PreroutingHook, "published ports, reached from outside and from sandboxes"},
		{chainOutput, knftables.OutputHook, "published ports, reached from the host itself"},
	} {
		tx.Add(&knftables.Chain{Name: ch.name, Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(ch.hook), Priority: knftables.PtrTo(knftables.DNATPriority),
			Comment: knftables.PtrTo(ch.what)})
		tx.Add(rule(ch.name, "fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @"+mapPortsIP,
			"mappings bound to one host address"))
		tx.Add(rule(ch.name, "fib daddr type local dnat ip to meta l4proto . th dport map @"+mapPortsAny,
			"mappings on every host address"))
	}
	// Prerouting DNAT happens before the kernel's martian check, so a LAN
	// neighbour that routes packets for 127.0.0.1 at us would reach a
	// mapping bound to 127.0.0.1 (Docker's CVE-2020-8558 class). Drop them
	// before NAT sees them.
	tx.Add(&knftables.Chain{Name: chainGuard, Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(knftables.RawPriority),
		Comment: knftables.PtrTo("loopback addresses only from lo")})
	tx.Add(rule(chainGuard, `iifname != "lo" ip daddr 127.0.0.0/8 drop`, "127.0.0.0/8 from outside is never ours"))
}

func rule(chain, text, comment string) *knftables.Rule {
	return &knftables.Rule{Chain: chain, Rule: text, Comment: knftables.PtrTo(comment)}
}

// buildForward: what may be forwarded to, from and between pontoon's
// bridges. The policy is accept and must stay so: pontoon never drops what
// is not its own (traffic between two non-pontoon interfaces passes
// untouched), and another table on this hook may still drop what we accept
// (see dockeruser.go).
func buildForward(tx *knftables.Transaction) {
	tx.Add(&knftables.Chain{Name: chainForward, Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority),
		Policy:  knftables.PtrTo(knftables.AcceptPolicy),
		Comment: knftables.PtrTo("forwarding to, from and between pontoon networks")})

	// (a) br_netfilter is built into this kernel (6.x) and
	// net.bridge.bridge-nf-call-iptables is 1 in every namespace, so frames
	// bridged between two sandboxes of one network pass this hook too, with
	// iifname = oifname = the bridge. They are the bulk of the traffic and
	// always allowed (also on internal networks): accept them first, with
	// one hash lookup.
	tx.Add(rule(chainForward, "iifname . oifname @"+setIntra+" accept",
		"(a) inside one network, also bridged frames (br_netfilter)"))
	// (b) Replies to connections a sandbox opened, and ICMP errors about
	// them: the other big share of packets, so second. Safe before (c) and
	// (d): a connection only becomes established once its first packet was
	// accepted, and (c), (d) drop those first packets before conntrack
	// confirms the entry — so no established flow can exist into an
	// internal network or across two networks.
	tx.Add(rule(chainForward, "oifname @"+setBridges+" ct state established,related accept",
		"(b) replies to connections sandboxes opened"))
	// (c) Internal networks: nothing in or out but their own traffic, which
	// (a) accepted. Both directions, so a sandbox there can neither leave
	// nor be reached, whatever the routes say.
	tx.Add(rule(chainForward, "iifname @"+setInternal+" drop", "(c) internal networks send nothing out"))
	tx.Add(rule(chainForward, "oifname @"+setInternal+" drop", "(c) internal networks receive nothing from outside"))
	// (e) Connections a published port let in: DNAT happened in prerouting,
	// so conntrack says so here. Before (d): a sandbox on another network
	// may use a published port through the host's address, as with Docker.
	// (c) still keeps internal networks out of it.
	tx.Add(rule(chainForward, "oifname @"+setBridges+" ct status dnat accept",
		"(e) connections to published ports"))
	// (d) Networks are isolated from each other: in from one pontoon bridge,
	// out through another (same-bridge pairs were accepted by (a)).
	tx.Add(rule(chainForward, "iifname @"+setBridges+" oifname @"+setBridges+" drop",
		"(d) networks are isolated from each other"))
	// (f) Anything else from outside into a sandbox: not solicited, not
	// published. Without this, any host on the LAN that routes the subnet
	// to us could reach every sandbox.
	tx.Add(rule(chainForward, "oifname @"+setBridges+" drop",
		"(f) no unsolicited traffic into sandboxes"))
	// (g) From a (non-internal) bridge out to the world: the policy, accept.
}

// buildPostrouting: source NAT for masqueraded networks.
func buildPostrouting(tx *knftables.Transaction) {
	tx.Add(&knftables.Chain{Name: chainPostrouting, Type: knftables.PtrTo(knftables.NATType),
		Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority),
		Comment: knftables.PtrTo("source NAT for masqueraded networks")})
	// Leaving through any interface that is not a pontoon bridge: the
	// uplink, but also docker0 or a VPN — whoever is there has no route back
	// to our subnets. Not through a pontoon bridge: inside a network the
	// peer sees the real address (and with br_netfilter bridged frames pass
	// here with oifname = the bridge); across networks (d) dropped it.
	// Only the first packet of a connection reaches a nat chain.
	tx.Add(rule(chainPostrouting, "ip saddr @"+setMasq+" oifname != @"+setBridges+" masquerade",
		"masqueraded subnets leaving through a non-pontoon interface"))
	// Hairpin: a sandbox reaching a published port (through a host
	// address) must get the replies back through the host, so its source
	// becomes the gateway. Matched on addresses, not on iifname: for a frame
	// br_netfilter bridges back onto the same bridge (bridged DNAT),
	// postrouting sees no input device.
	tx.Add(rule(chainPostrouting, "ct status dnat ip saddr @"+setSubnets+" oifname @"+setBridges+" masquerade",
		"a sandbox reaching a published port"))
	// The host reaching a published port through 127.0.0.1: the sandbox
	// cannot answer 127.0.0.1 (needs route_localnet on the bridge too).
	tx.Add(rule(chainPostrouting, "ct status dnat ip saddr 127.0.0.0/8 masquerade",
		"the host reaching a published port through 127.0.0.1"))
}
