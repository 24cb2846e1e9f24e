package firewall

import (
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// Rules as data.
//
// Every rule pontoon writes is described once, below, as Go data: its
// table and chain (family, hook, priority), what it matches as structured
// fields, what it does, a short stable name and its comment. Three readers
// share the description:
//
//   - build and buildGuard render it as nft text (the golden files in
//     testdata/ are that text);
//   - the evaluator (eval.go) runs a packet through it without a kernel,
//     for behaviour tests ("a packet from a to c is dropped by isolation");
//   - `pontoon trace` predicts a packet's path with the evaluator and maps
//     the kernel's trace events back to these rules (by chain and comment).
//
// The names are what tests, the trace and the docs use; the comments are
// what `nft list ruleset` shows a person.

// Family is an nftables table family.
type Family string

// Families of pontoon's tables.
const (
	FamilyInet   Family = "inet"
	FamilyBridge Family = "bridge"
)

// Hook is a netfilter hook.
type Hook string

// Hooks, in the order a forwarded packet meets them.
const (
	HookPrerouting  Hook = "prerouting"
	HookInput       Hook = "input"
	HookForward     Hook = "forward"
	HookOutput      Hook = "output"
	HookPostrouting Hook = "postrouting"
)

// Key is a packet field a rule matches on, spelled as nft spells it.
type Key string

// Keys pontoon's rules use.
const (
	KeyIIFName      Key = "iifname"
	KeyOIFName      Key = "oifname"
	KeyEtherType    Key = "ether type"
	KeyEtherSaddr   Key = "ether saddr"
	KeyIPSaddr      Key = "ip saddr"  // IPv4.Saddr()
	KeyIPDaddr      Key = "ip daddr"  // IPv4.Daddr()
	KeyIP6Saddr     Key = "ip6 saddr" // IPv6.Saddr()
	KeyIP6Daddr     Key = "ip6 daddr" // IPv6.Daddr()
	KeyNFProto      Key = "meta nfproto"
	KeyARPSaddrIP   Key = "arp saddr ip"
	KeyCTState      Key = "ct state"
	KeyCTStatus     Key = "ct status"
	KeyFibDaddrType Key = "fib daddr type"
	KeyL4Proto      Key = "meta l4proto"
	KeyTHDport      Key = "th dport"
	KeyUDPSport     Key = "udp sport"
	KeyUDPDport     Key = "udp dport"
	KeyICMPv6Type   Key = "icmpv6 type"
	// KeyNDTarget is the target address of a neighbour advertisement: the
	// 128 bits after the ICMPv6 header's first 8 bytes. nft 1.0.6 has no
	// name for it (icmpv6 taddr came later), so it is a raw payload
	// expression, and the set it is looked up in is declared by typeof.
	KeyNDTarget Key = "@th,64,128"
)

// Match is one condition of a rule: Keys (one field, or several
// concatenated) compared with a set (Set, a lookup) or a literal Value as
// nft writes it (an anonymous set "{ a, b }" is one of them). Not negates
// it; a packet that lacks one of the fields (no input interface in
// postrouting, no IPv4 header in an ARP frame or an IPv6 packet) never
// matches, negated or not — nft adds the same dependency.
type Match struct {
	Keys  []Key
	Not   bool
	Set   string
	Value string
}

// Verb is what a rule does with a packet that matches.
type Verb string

// Verbs of pontoon's rules. Masquerade and DNAT end the chain with accept,
// as the kernel's nat expressions do.
const (
	Accept     Verb = "accept"
	Drop       Verb = "drop"
	Masquerade Verb = "masquerade"
	DNAT       Verb = "dnat"
)

// Action is a rule's statement: a verdict, or NAT. A DNAT looks MapKeys up
// in map Map (address . port values); a key not in the map does not match.
// Family is the DNAT's IP family ("ip", "ip6"): in an inet table the
// kernel applies it only to packets of that family.
type Action struct {
	Verb    Verb
	Family  string
	MapKeys []Key
	Map     string
}

// Rule is one rule of a chain.
type Rule struct {
	// Name is short and stable: tests, traces and docs use it.
	Name    string
	Match   []Match
	Action  Action
	Comment string
	// Why explains a drop to a person: what the rule protects, and what
	// would let the packet through (empty for rules that do not drop).
	Why string
}

// Text is the rule as nft writes it (without its comment).
func (r Rule) Text() string {
	parts := make([]string, 0, len(r.Match)+1)
	for _, m := range r.Match {
		parts = append(parts, m.text())
	}
	parts = append(parts, r.Action.text())
	return strings.Join(parts, " ")
}

func (m Match) text() string {
	s := joinKeys(m.Keys)
	if m.Not {
		s += " !="
	}
	if m.Set != "" {
		return s + " @" + m.Set
	}
	return s + " " + m.Value
}

func (a Action) text() string {
	if a.Verb == DNAT {
		return "dnat " + a.Family + " to " + joinKeys(a.MapKeys) + " map @" + a.Map
	}
	return string(a.Verb)
}

func joinKeys(ks []Key) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, " . ")
}

// Chain is a base chain of one of pontoon's tables, with its rules.
type Chain struct {
	Family   Family
	Name     string
	Type     knftables.BaseChainType
	Hook     Hook
	Priority knftables.BaseChainPriority
	// Policy is the chain's policy; pontoon's are all accept (it never
	// drops by policy: what is not its own passes untouched).
	Policy  knftables.BaseChainPolicy
	Comment string
	Rules   []Rule
}

// knft is the chain's declaration for a transaction.
func (c Chain) knft() *knftables.Chain {
	kc := &knftables.Chain{Name: c.Name, Type: knftables.PtrTo(c.Type),
		Hook: knftables.PtrTo(knftables.BaseChainHook(c.Hook)), Priority: knftables.PtrTo(c.Priority),
		Comment: knftables.PtrTo(c.Comment)}
	if c.Policy != "" {
		kc.Policy = knftables.PtrTo(c.Policy)
	}
	return kc
}

// knftRules are the chain's rules for a transaction.
func (c Chain) knftRules() []*knftables.Rule {
	out := make([]*knftables.Rule, len(c.Rules))
	for i, r := range c.Rules {
		out[i] = &knftables.Rule{Chain: c.Name, Rule: r.Text(), Comment: knftables.PtrTo(r.Comment)}
	}
	return out
}

// Helpers that keep the tables below readable.
func in(set string, keys ...Key) Match    { return Match{Keys: keys, Set: set} }
func notIn(set string, keys ...Key) Match { return Match{Keys: keys, Set: set, Not: true} }
func is(k Key, v string) Match            { return Match{Keys: []Key{k}, Value: v} }
func isNot(k Key, v string) Match         { return Match{Keys: []Key{k}, Value: v, Not: true} }
func verdict(v Verb) Action               { return Action{Verb: v} }

// Rule names (see InetChains and BridgeChains). A rule built for each IP
// family has the same name in both (its comment says the family): the
// name says what it does, the packet which family it was.
const (
	RuleIntra          = "intra"
	RuleNoICC          = "no-icc"
	RuleNoICCPublished = "no-icc-published"
	RuleReplies        = "replies"
	RuleInternalOut    = "internal-out"
	RuleInternalIn     = "internal-in"
	RulePublished      = "published"
	RuleRemoteIn       = "remote-in"
	RuleRemoteOut      = "remote-out"
	RuleRemoteNoNAT    = "remote-no-nat"
	RuleIsolation      = "isolation"
	RuleUnsolicited    = "unsolicited"
	RuleMasquerade     = "masquerade"
	RuleHairpin        = "hairpin"
	RuleLoopbackNAT    = "loopback-nat"
	RulePublishIP      = "publish-ip"
	RulePublishAny     = "publish-any"
	RuleLoopbackGuard  = "loopback-guard"
	RuleNotASandbox    = "not-a-sandbox"
	RuleSpoofedMAC     = "spoofed-mac"
	RuleSpoofedIP      = "spoofed-ip"
	RuleSpoofedARP     = "spoofed-arp"
	RuleNotARouter     = "not-a-router"
	RuleDHCPServer     = "dhcp-server"
	RuleSpoofedND      = "spoofed-nd"
	RuleLinkLocalND    = "link-local-nd"
	RuleNoMLD          = "no-mld"
	RuleNotAPeer       = "not-a-peer"
	RuleOverlaySource  = "overlay-source"
)

// InetChains are the chains of table inet pontoon, in the order a
// transaction adds them.
var InetChains = []Chain{forwardChain(), postroutingChain(), publishChain(chainPrerouting, HookPrerouting,
	"published ports, reached from outside and from sandboxes"), publishChain(chainOutput, HookOutput,
	"published ports, reached from the host itself"), loopbackGuardChain(), inputChain()}

// forwardChain: what may be forwarded to, from and between pontoon's
// bridges. The policy is accept and must stay so: pontoon never drops what
// is not its own (traffic between two non-pontoon interfaces passes
// untouched), and another table on this hook may still drop what we accept
// (see dockeruser.go).
//
// Its rules match interfaces and conntrack state: each judges IPv4 and
// IPv6 alike (br_netfilter passes bridged IPv6 frames here too:
// net.bridge.bridge-nf-call-ip6tables is 1 as well). The exception is
// (i), a network's members on other hosts, known by address, and (j),
// what comes out of an overlay's VXLAN device: built once per family
// (remoteRules, overlaySourceRules).
func forwardChain() Chain {
	return Chain{Family: FamilyInet, Name: chainForward, Type: knftables.FilterType, Hook: HookForward,
		Priority: knftables.FilterPriority, Policy: knftables.AcceptPolicy,
		Comment: "forwarding to, from and between pontoon networks",
		Rules:   slices.Concat(forwardHead[:1], overlaySourceRules(), forwardHead[1:], remoteRules(), forwardTail)}
}

// overlaySourceRules are (j): what comes out of an overlay network's
// VXLAN device was sent by the network's members on other hosts, so its
// (inner) source is in the network's range, and not in this host's own
// slice (set link-sources: device . range less the slice). Anything else
// is dropped, wherever it goes, before a rule accepts it: (a) no longer
// pairs a device with its bridge in that direction (its pair says
// nothing of the source), and (b) would accept a forged reply.
//
// The outer header is gone by the time the inner packet is routed here
// (the input chain checked it: inputChain), so this cannot tell which
// node sent it; but a node sends into its VXLAN device only its own
// sandboxes' traffic (anti-spoofed on their bridge ports) and its own,
// from its slice's address, and forwards nothing else into it ((f):
// a VXLAN device is one of the bridges). A packet from elsewhere means an
// injected frame (an underlay host forging a node's address, which the
// input chain cannot see) or a node not running pontoon's rules.
//
// One hash lookup first (does the packet come out of a VXLAN device?),
// so that other traffic skips the concatenation's. Per family: an IPv6
// packet from a network without an IPv6 range matches no element, and is
// dropped.
func overlaySourceRules() []Rule {
	var rules []Rule
	for _, f := range IPFamilies {
		rules = append(rules, Rule{Name: RuleOverlaySource, Match: []Match{in(setLinks, KeyIIFName), notIn(f.name(setLinkSources), KeyIIFName, f.Saddr())},
			Action: verdict(Drop), Comment: f.comment("(j) out of a VXLAN device only from its network's members on other hosts"),
			Why: "a packet out of an overlay network's VXLAN device comes from the network's sandboxes (or nodes) on other hosts: its source must be in the network's range and outside this host's slice; this one was forged or injected into the tunnel"})
	}
	return rules
}

// inputChain: what reaches the host itself. pontoon judges only two
// things there, and lets everything else through (policy accept; the
// host's own firewall decides the rest):
//
//   - VXLAN packets (UDP to the port of pontoon's VXLAN devices) whose
//     outer source is not a cluster node's underlay address (set
//     vxlan-peers): the kernel hands an encapsulated frame to the device
//     of its VNI whoever sent it, so anyone who reaches that port on any
//     of the host's addresses could inject frames into an overlay
//     network. Matched on the port's set and the peers' alone: a host
//     with no VXLAN overlay has no port in vxlan-ports and the rule
//     matches nothing; with one, the port is this host's VXLAN port
//     (another program's VXLAN on it would have to be a cluster node's).
//     Stateless, no conntrack state accepted before it: a VXLAN packet is
//     its own, never a reply. The host's own encapsulated packets leave
//     through output and postrouting and are not seen here.
//   - (j) again: packets out of a VXLAN device for the host itself (its
//     gateway addresses) come from the network's members too.
//
// At filter priority, after conntrack (which only tracks what it drops,
// unconfirmed) and after prerouting's DNAT: a published port is DNATed to
// a sandbox before this hook, so publishing the VXLAN port itself
// (-p 4789:…/udp) would take the tunnels' packets from the devices.
func inputChain() Chain {
	var rules []Rule
	for _, f := range IPFamilies {
		rules = append(rules, Rule{Name: RuleNotAPeer, Match: []Match{in(f.name(setVXLANPorts), KeyUDPDport), notIn(f.name(setVXLANPeers), f.Saddr())},
			Action: verdict(Drop), Comment: f.comment("VXLAN only from the cluster's nodes"),
			Why: "this host's VXLAN devices take encapsulated packets only from the cluster's nodes (their underlay addresses): from anyone else they would inject frames into an overlay network; send from a node's underlay address, or make the sender a node of the cluster"})
	}
	rules = append(rules, overlaySourceRules()...)
	return Chain{Family: FamilyInet, Name: chainInput, Type: knftables.FilterType, Hook: HookInput,
		Priority: knftables.FilterPriority, Policy: knftables.AcceptPolicy,
		Comment: "VXLAN only from the cluster's nodes; what overlays deliver only from their members", Rules: rules}
}

// remoteRules are (i): a host-gw overlay network's members on other hosts
// are reached through the underlay, which is no link of the network, so
// (f) would drop what they send into the bridge and (c) what an internal
// network sends them. They are known by address and by the interface
// they come through (set remote-members: bridge . uplink . the network's
// range less this host's slice; Network.RemoteVia): a packet arriving on
// N's uplink, from an address of N's range on another host, into N's
// bridge is N's own, and so is one from N's bridge, to such an address,
// out through N's uplink. This host's own slice is nobody's on another
// host: a packet from the uplink claiming a source in it is forged, and
// is not accepted here (out of a VXLAN device (j) dropped it already;
// from the underlay (f), or (c), drops it).
//
// The uplink is part of the key because the address alone proves
// nothing: any host on any of this host's links (a LAN port, a VPN,
// docker0) can send from N's range, and would reach N's sandboxes if the
// range were N's own wherever it came from (issue #13). So a packet from
// N's range on another interface matches no element, nor does one into
// another network's bridge: (f) drops both (unsolicited; isolation), as
// it drops anything from outside the cluster. A sandbox of another
// pontoon network sending from N's range arrives on its own bridge,
// which is no network's uplink ((d) decides).
//
// Each rule first asks, by one hash lookup, whether the packet goes into
// (comes out of) a pontoon bridge, as every element's does: packets that
// do not (between two non-pontoon links, or a sandbox's to the world for
// remote-in) skip the concatenation's lookup. With VXLAN the uplink is
// the network's VXLAN device, one of its links: (a) accepts what goes
// into it already; what comes out of it, (j) checked first, and
// remote-in accepts (the elements say the same as (j): the network's
// range less this host's slice, keyed on the bridge too). After (h): an
// --icc=false network has no elements (its sandboxes do not reach each
// other across hosts either); before (c): an --internal overlay network
// still reaches its own members.
func remoteRules() []Rule {
	var rules []Rule
	for _, f := range IPFamilies {
		rules = append(rules,
			Rule{Name: RuleRemoteIn, Match: []Match{in(setBridges, KeyOIFName), in(f.name(setRemotes), KeyOIFName, KeyIIFName, f.Saddr())},
				Action: verdict(Accept), Comment: f.comment("(i) from a network's members on other hosts, through its uplink")},
			Rule{Name: RuleRemoteOut, Match: []Match{in(setBridges, KeyIIFName), in(f.name(setRemotes), KeyIIFName, KeyOIFName, f.Daddr())},
				Action: verdict(Accept), Comment: f.comment("(i) to a network's members on other hosts, through its uplink")})
	}
	return rules
}

// forwardHead and forwardTail are the forward chain's rules before and
// after (i).
var (
	forwardHead = []Rule{
		// (a) br_netfilter is built into this kernel (6.x) and
		// net.bridge.bridge-nf-call-iptables is 1 in every namespace, so
		// frames bridged between two sandboxes of one network pass this hook
		// too, with iifname = oifname = the bridge. They are the bulk of the
		// traffic and allowed (also on internal networks): accept them
		// first, with one hash lookup. Not on --icc=false networks: their
		// pair is in no-icc instead (see (h)). A network's VXLAN device
		// is paired with its bridge one way only: into the device (to
		// the network's members on other hosts); out of it, (j) checks
		// the source before anything accepts it.
		{Name: RuleIntra, Match: []Match{in(setIntra, KeyIIFName, KeyOIFName)}, Action: verdict(Accept),
			Comment: "(a) inside one network, also bridged frames (br_netfilter)"},
		// (b) Replies to connections a sandbox opened, and ICMP errors about
		// them: the other big share of packets, so second. Safe before (c)
		// and (d): a connection only becomes established once its first
		// packet was accepted, and (c), (d) drop those first packets before
		// conntrack confirms the entry — so no established flow can exist
		// into an internal network or across two networks.
		{Name: RuleReplies, Match: []Match{in(setBridges, KeyOIFName), is(KeyCTState, "established,related")},
			Action: verdict(Accept), Comment: "(b) replies to connections sandboxes opened"},
		// (h) --icc=false networks: bridge port isolation keeps their
		// sandboxes apart on the bridge (no frame from one port reaches
		// another), but a sandbox is root in its namespace and can route
		// to another through the gateway (ip route add B via GATEWAY):
		// the host routes the packet back out of the same bridge, with
		// iifname = oifname = the bridge — what (a) accepts on other
		// networks. Here only what the host let in passes: replies ((b),
		// above) and connections to published ports (DNATed in
		// prerouting: a sandbox reaching another's, or its own, published
		// port through a host address, also on an internal network, as
		// (a) allows elsewhere). Everything else between two sandboxes of
		// the network is dropped, bridged or routed, before (c) and (d)
		// would blame the wrong reason. (The published-port path is the
		// firewall's half only: br_netfilter bridges a DNAT to an address
		// on the same bridge from port to port, and port isolation drops
		// it before this hook — see Reachable.)
		{Name: RuleNoICCPublished, Match: []Match{in(setNoICC, KeyIIFName, KeyOIFName), is(KeyCTStatus, "dnat")},
			Action: verdict(Accept), Comment: "(h) icc=false networks: connections to published ports"},
		{Name: RuleNoICC, Match: []Match{in(setNoICC, KeyIIFName, KeyOIFName)}, Action: verdict(Drop),
			Comment: "(h) icc=false networks: sandboxes apart, also routed through the gateway",
			Why:     "the network has icc=false: its sandboxes do not reach each other, not even routed through the gateway; publish the port and use a host address, or create the network without --icc=false"},
	}
	forwardTail = []Rule{
		// (c) Internal networks: nothing in or out but their own traffic,
		// which (a) accepted. Both directions, so a sandbox there can
		// neither leave nor be reached, whatever the routes say.
		{Name: RuleInternalOut, Match: []Match{in(setInternal, KeyIIFName)}, Action: verdict(Drop),
			Comment: "(c) internal networks send nothing out",
			Why:     "its network is --internal: it reaches only its own network and its gateway; connect the sandbox to a non-internal network to reach further"},
		{Name: RuleInternalIn, Match: []Match{in(setInternal, KeyOIFName)}, Action: verdict(Drop),
			Comment: "(c) internal networks receive nothing from outside",
			Why:     "the destination's network is --internal: only its own sandboxes reach it; connect the source to that network to allow it"},
		// (e) Connections a published port let in: DNAT happened in
		// prerouting, so conntrack says so here. Before (d): a sandbox on
		// another network may use a published port through the host's
		// address, as with Docker. (c) still keeps internal networks out of
		// it.
		{Name: RulePublished, Match: []Match{in(setBridges, KeyOIFName), is(KeyCTStatus, "dnat")},
			Action: verdict(Accept), Comment: "(e) connections to published ports"},
		// (d) Networks are isolated from each other: in from one pontoon
		// bridge, out through another (same-bridge pairs were accepted by
		// (a)).
		{Name: RuleIsolation, Match: []Match{in(setBridges, KeyIIFName), in(setBridges, KeyOIFName)},
			Action: verdict(Drop), Comment: "(d) networks are isolated from each other",
			Why: "the two sandboxes are on different networks, and networks are isolated from each other; connect the source to the destination's network (or publish the port and use the host's address) to allow it"},
		// (f) Anything else from outside into a sandbox: not solicited, not
		// published. Without this, any host on the LAN that routes the
		// subnet to us could reach every sandbox — with IPv6 and routed
		// global subnets, that is anyone on the internet.
		{Name: RuleUnsolicited, Match: []Match{in(setBridges, KeyOIFName)}, Action: verdict(Drop),
			Comment: "(f) no unsolicited traffic into sandboxes",
			Why:     "sandboxes are not reachable from outside their host except through published ports; publish the port (-p HOSTPORT:PORT) and use a host address"},
		// (g) From a (non-internal) bridge out to the world: the policy,
		// accept.
	}
)

// postroutingChain: source NAT for masqueraded subnets, per family.
func postroutingChain() Chain {
	var rules []Rule
	// Leaving through any interface that is not a pontoon bridge: the
	// uplink, but also docker0 or a VPN — whoever is there has no route
	// back to our subnets. Not through a pontoon bridge: inside a network
	// the peer sees the real address (and with br_netfilter bridged frames
	// pass here with oifname = the bridge); across networks (d) dropped
	// it. Only the first packet of a connection reaches a nat chain.
	// Which subnets are in masq-subnets is per subnet (model.Subnet's
	// Masquerade): the engine turns it on by default for IPv4 and ULA
	// subnets, and leaves it to the user for routed global IPv6 ones.
	//
	// But not to the network's own members on other hosts (a host-gw
	// overlay's range, leaving through the underlay): they see the
	// sandbox's own address, as on one host. Keyed on both addresses and
	// the uplink (set remote-pairs: subnet . range . uplink; nat
	// postrouting has no input interface for the bridge): through another
	// interface the range is not the network's, and the packet is
	// masqueraded like anything else leaving the host. (With VXLAN the
	// uplink is the VXLAN device, a pontoon link, which masquerade leaves
	// alone anyway; hairpin, below, never leaves through it: a published
	// port's targets are this host's sandboxes.)
	for _, f := range IPFamilies {
		rules = append(rules, Rule{Name: RuleRemoteNoNAT, Match: []Match{in(f.name(setRemotePairs), f.Saddr(), f.Daddr(), KeyOIFName)},
			Action: verdict(Accept), Comment: f.comment("a network's members on other hosts see the sandbox's own address")})
	}
	for _, f := range IPFamilies {
		rules = append(rules, Rule{Name: RuleMasquerade, Match: []Match{in(f.name(setMasq), f.Saddr()), notIn(setBridges, KeyOIFName)},
			Action: verdict(Masquerade), Comment: f.comment("masqueraded subnets leaving through a non-pontoon interface")})
	}
	// Hairpin: a sandbox reaching a published port (through a host
	// address) must get the replies back through the host, so its source
	// becomes the gateway. Matched on addresses, not on iifname: for a
	// frame br_netfilter bridges back onto the same bridge (bridged DNAT),
	// postrouting sees no input device.
	for _, f := range IPFamilies {
		rules = append(rules, Rule{Name: RuleHairpin, Match: []Match{is(KeyCTStatus, "dnat"), in(f.name(setSubnets), f.Saddr()), in(setBridges, KeyOIFName)},
			Action: verdict(Masquerade), Comment: f.comment("a sandbox reaching a published port")})
	}
	// The host reaching a published port through 127.0.0.1: the sandbox
	// cannot answer 127.0.0.1 (needs route_localnet on the bridge too).
	// Only where the family can (IPv4; ::1 is never DNATed, see loopback6).
	for _, f := range IPFamilies {
		if f.LoopbackDNAT {
			rules = append(rules, Rule{Name: RuleLoopbackNAT, Match: []Match{is(KeyCTStatus, "dnat"), is(f.Saddr(), f.Loopback)},
				Action: verdict(Masquerade), Comment: f.comment("the host reaching a published port through 127.0.0.1")})
		}
	}
	return Chain{Family: FamilyInet, Name: chainPostrouting, Type: knftables.NATType, Hook: HookPostrouting,
		Priority: knftables.SNATPriority, Comment: "source NAT for masqueraded networks", Rules: rules}
}

// publishChain returns a chain of published ports: one static rule per map
// and hook, one map element per port. Traffic to a local address — from
// outside (prerouting) or from the host itself, 127.0.0.1 included
// (output) — is DNATed by a map lookup; a key that is not in a map does not
// match. Each family has its maps (ports-ip, ports-any; ports-ip6,
// ports-any6), and a DNAT of one family leaves the other's packets alone.
func publishChain(name string, hook Hook, comment string) Chain {
	local := is(KeyFibDaddrType, "local")
	var rules []Rule
	for _, f := range IPFamilies {
		// A family's address in the key says which packets the rule is
		// for; the map of every host address has none, so it says so.
		every := []Match{local, is(KeyNFProto, f.NFProto)}
		if !f.LoopbackDNAT {
			// ::1 cannot be DNATed (loopback6): leave it to whoever
			// listens there (the userspace relay), rather than send the
			// connection where it cannot be answered.
			every = append(every, isNot(f.Daddr(), f.Loopback))
		}
		rules = append(rules,
			Rule{Name: RulePublishIP, Match: []Match{local},
				Action:  Action{Verb: DNAT, Family: f.Name, MapKeys: []Key{f.Daddr(), KeyL4Proto, KeyTHDport}, Map: f.name(mapPortsIP)},
				Comment: f.comment("mappings bound to one host address")},
			Rule{Name: RulePublishAny, Match: every,
				Action:  Action{Verb: DNAT, Family: f.Name, MapKeys: []Key{KeyL4Proto, KeyTHDport}, Map: f.name(mapPortsAny)},
				Comment: f.comment("mappings on every host address")})
	}
	return Chain{Family: FamilyInet, Name: name, Type: knftables.NATType, Hook: hook, Priority: knftables.DNATPriority,
		Comment: comment, Rules: rules}
}

// loopbackGuardChain: prerouting DNAT happens before the kernel's martian
// check, so a LAN neighbour that routes packets for 127.0.0.1 at us would
// reach a mapping bound to 127.0.0.1 (Docker's CVE-2020-8558 class). Drop
// them before NAT sees them. (The kernel already drops ::1 arriving on
// another interface than lo, before any hook — RFC 4291's rule, in
// ip6_rcv_core — so the IPv6 rule only says what the kernel does.)
func loopbackGuardChain() Chain {
	var rules []Rule
	for _, f := range IPFamilies {
		rules = append(rules, Rule{Name: RuleLoopbackGuard, Match: []Match{isNot(KeyIIFName, `"lo"`), is(f.Daddr(), f.Loopback)},
			Action: verdict(Drop), Comment: f.Loopback + " from outside is never ours",
			Why: f.Loopback + " is the host's own: it is never accepted from another interface than lo (the CVE-2020-8558 class); use one of the host's other addresses"})
	}
	return Chain{Family: FamilyInet, Name: chainGuard, Type: knftables.FilterType, Hook: HookPrerouting,
		Priority: knftables.RawPriority, Comment: "loopback addresses only from lo", Rules: rules}
}

// BridgeChains are the chains of table bridge pontoon (anti-spoofing; see
// guard.go). Only the bridge family sees frames with the sandbox's bridge
// port as input interface and their Ethernet header intact.
var BridgeChains = []Chain{{Family: FamilyBridge, Name: chainGuardIn, Type: knftables.FilterType, Hook: HookPrerouting,
	Priority: knftables.FilterPriority, Comment: "frames from a sandbox carry its own MAC and address",
	Rules: guardRules()}}

func guardRules() []Rule {
	rules := []Rule{
		{Name: RuleNotASandbox, Match: []Match{notIn(setGuardPorts, KeyIIFName)}, Action: verdict(Accept),
			Comment: "not a sandbox's port"},
		{Name: RuleSpoofedMAC, Match: []Match{notIn(setGuardMAC, KeyIIFName, KeyEtherSaddr)}, Action: verdict(Drop),
			Comment: "source MAC is not the endpoint's",
			Why:     "a sandbox may only send with its own MAC address (anti-spoofing); send from the endpoint's own MAC"},
	}
	for _, f := range IPFamilies {
		ether := is(KeyEtherType, f.Name)
		// No DHCP server on a sandbox's port: its offers and replies would
		// give the other sandboxes, and a VM on a tap, addresses, routes
		// and DNS servers of its choosing. Before the source address
		// check, which a server sending from its own address passes.
		// Clients (DHCPClient → DHCPServer) pass.
		rules = append(rules, Rule{Name: RuleDHCPServer, Match: []Match{ether, is(KeyUDPSport, f.DHCPServer), is(KeyUDPDport, f.DHCPClient)},
			Action: verdict(Drop), Comment: "no " + f.DHCP + " server on a sandbox's port",
			Why: "a sandbox is not its network's " + f.DHCP + " server: its replies would configure the other sandboxes (and VMs on its network's taps)"})
		spoofed := Rule{Name: RuleSpoofedIP, Match: []Match{ether, notIn(f.name(setGuardIP), KeyIIFName, KeyEtherSaddr, f.Saddr())},
			Action: verdict(Drop), Comment: f.comment("source address is not the endpoint's"),
			Why: "a sandbox may only send from its own address (anti-spoofing); send from the endpoint's address, or give the sandbox that address"}
		switch f.Name {
		case IPv4.Name:
			rules = append(rules, spoofed,
				Rule{Name: RuleSpoofedARP, Match: []Match{is(KeyEtherType, "arp"), notIn(setGuardIP, KeyIIFName, KeyEtherSaddr, KeyARPSaddrIP)},
					Action: verdict(Drop), Comment: "ARP sender is not the endpoint",
					Why: "a sandbox may only announce its own address in ARP (anti-spoofing)"})
		case IPv6.Name:
			rules = append(rules, nd6Rules(ether)...)
			rules = append(rules, spoofed)
		}
	}
	return rules
}

// nd6Rules are IPv6's neighbour discovery checks, before its source
// address check. Neighbour discovery is IPv6's ARP, and more: a router
// advertisement or a DHCPv6 reply from a sandbox would give the other
// sandboxes on its network a default route, addresses or DNS servers of
// its choosing (Docker's CVE-2020-13401: containers accepted router
// advertisements from each other). So from a sandbox's port:
//
//   - no router advertisement, no redirect (and no DHCPv6 server reply:
//     guardRules drops DHCP servers of both families);
//   - a neighbour advertisement only for one of its own addresses (the
//     target is what a neighbour advertisement claims; its source is
//     checked too, below);
//   - no multicast listener discovery (MLD): the bridges snoop nothing and
//     have no querier, so reports only cost a flood to every port;
//   - link-local (fe80::/10) and unspecified (::) sources only for
//     neighbour and router solicitations and neighbour advertisements (an
//     interface uses its link-local address, or :: before it has one, for
//     these, whatever its global addresses); every other packet comes from
//     one of its addresses.
//
// A sandbox's own link-local address is one of its addresses when the
// engine lists it in Guarded.IPs: only then may it advertise it (answer a
// neighbour solicitation for it) or send ordinary traffic from it.
func nd6Rules(ether Match) []Rule {
	return []Rule{
		{Name: RuleNotARouter, Match: []Match{ether, is(KeyICMPv6Type, "{ nd-router-advert, nd-redirect }")},
			Action: verdict(Drop), Comment: "router advertisements and redirects come from the host, not from sandboxes",
			Why: "a sandbox is not a router of its network: its router advertisements and redirects would reroute the other sandboxes (the CVE-2020-13401 class)"},
		{Name: RuleSpoofedND, Match: []Match{ether, is(KeyICMPv6Type, "nd-neighbor-advert"), notIn(setGuardTarget6, KeyIIFName, KeyEtherSaddr, KeyNDTarget)},
			Action: verdict(Drop), Comment: "neighbour advertisement for an address not the endpoint's",
			Why: "a sandbox may only advertise its own addresses in neighbour discovery (anti-spoofing)"},
		{Name: RuleNoMLD, Match: []Match{ether, is(KeyICMPv6Type, "{ mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report }")},
			Action: verdict(Drop), Comment: "no multicast listener discovery from sandboxes",
			Why: "pontoon's bridges do no multicast snooping and have no querier, so MLD from a sandbox tells no one anything; flooded to every port, each new IPv6 endpoint's reports would make attaches cost more the more sandboxes a network has"},
		{Name: RuleLinkLocalND, Match: []Match{ether, is(KeyIP6Saddr, "{ ::, fe80::/10 }"),
			is(KeyICMPv6Type, "{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }")},
			Action: verdict(Accept), Comment: "neighbour discovery from link-local or unspecified addresses"},
	}
}

// FindRule returns the rule of pontoon's table family whose chain and
// comment are these (what the kernel's trace events and `nft list` give),
// or false.
func FindRule(family Family, chain, comment string) (Chain, Rule, bool) {
	chains := InetChains
	if family == FamilyBridge {
		chains = BridgeChains
	}
	for _, c := range chains {
		if c.Name != chain {
			continue
		}
		for _, r := range c.Rules {
			if r.Comment == comment {
				return c, r, true
			}
		}
		return c, Rule{}, false
	}
	return Chain{}, Rule{}, false
}
