package firewall

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// The evaluator runs a packet through pontoon's rules (rules.go) as the
// kernel would, with no kernel: the set and map contents are the elements
// build writes for the same State, and the chains are visited by hook and
// priority. It knows only pontoon's tables; other tables on the same hooks
// are the live trace's business.

// Packet is what the evaluator needs to know of a packet at one hook.
type Packet struct {
	// Family says which tables see it: FamilyBridge for a frame on a
	// bridge port (table bridge pontoon), FamilyInet at the IP hooks.
	Family Family
	Hook   Hook
	// IIF and OIF are the input and output interfaces as the hook sees
	// them ("" when it has none: no OIF in prerouting, no IIF for a packet
	// the host sends). br_netfilter shows a bridged frame to the IP hooks
	// with the bridge as IIF (and OIF, in forward and postrouting).
	IIF, OIF string
	// EtherType is "ip", "arp" or "ip6" (empty: the family of Src); EtherSrc
	// the source MAC and ARPSender an ARP frame's sender address (bridge
	// hooks).
	EtherType string
	EtherSrc  net.HardwareAddr
	ARPSender netip.Addr

	// Src and Dst are IPv4 or IPv6 addresses: the rules built for each
	// family (family.go) see the packets of theirs.
	Src, Dst     netip.Addr
	Proto        string // tcp, udp, sctp, icmp, icmpv6
	SPort, DPort uint16
	// ICMPType is an ICMPv6 message's type as nft names it
	// (nd-neighbor-advert, nd-router-advert, …); NDTarget a neighbour
	// advertisement's target address.
	ICMPType string
	NDTarget netip.Addr

	// CTState is the connection's conntrack state: "new" (the default),
	// "established" or "related". Only new connections reach nat chains.
	CTState string
	// DNATed: conntrack records a destination NAT for the connection
	// (ct status dnat), as after a published port's DNAT in prerouting.
	DNATed bool
	// DstLocal: the destination is one of the host's addresses (fib daddr
	// type local).
	DstLocal bool
	// OIFAddr is the address masquerade picks on OIF (the kernel's choice:
	// OIF's primary address).
	OIFAddr netip.Addr
}

// Step is one base chain a packet went through.
type Step struct {
	Family   Family
	Table    string
	Chain    string
	Hook     Hook
	Priority int
	// Rule is the rule that decided the chain's verdict; nil when the
	// chain's policy did.
	Rule    *Rule
	Verdict Verb // Accept or Drop
	// NAT describes a rewrite ("dnat to 10.88.0.2:80", "masquerade to
	// 198.51.100.1"), if any.
	NAT string
}

// Where names the chain as nft does: "inet pontoon forward".
func (s Step) Where() string { return string(s.Family) + " " + s.Table + " " + s.Chain }

// Result is what the evaluator predicts for a packet at one hook.
type Result struct {
	Steps   []Step
	Dropped bool
	// By is the step whose rule decided: the drop, or else the last rule
	// that accepted (nil when only policies did).
	By *Step
	// Packet is the packet after any NAT.
	Packet Packet
}

// Evaluator holds the contents of pontoon's sets and maps for one State,
// indexed for lookups. It is read-only once made: safe for concurrent use.
type Evaluator struct {
	sets   map[string]*evalSet // "family set" → contents
	chains map[Family]map[Hook][]Chain
}

type evalSet struct {
	keys     map[string]bool
	values   map[string][]string // maps
	ranges   [][]string          // interval sets: each element's fields (a prefix, an address or a name)
	interval bool
}

// NewEvaluator indexes the elements build (and buildGuard) would write for
// s.
func NewEvaluator(s State) *Evaluator {
	e := &Evaluator{sets: map[string]*evalSet{}, chains: map[Family]map[Hook][]Chain{}}
	for _, o := range inetSets() {
		switch v := o.(type) {
		case *knftables.Set:
			e.sets[setID(FamilyInet, v.Name)] = &evalSet{keys: map[string]bool{}, interval: slices.Contains(v.Flags, knftables.IntervalFlag)}
		case *knftables.Map:
			e.sets[setID(FamilyInet, v.Name)] = &evalSet{keys: map[string]bool{}, values: map[string][]string{}}
		}
	}
	for _, name := range guardSetNames() {
		e.sets[setID(FamilyBridge, name)] = &evalSet{keys: map[string]bool{}}
	}
	add := func(fam Family, el *knftables.Element) {
		name := el.Set
		if name == "" {
			name = el.Map
		}
		set := e.sets[setID(fam, name)]
		key := elementKey(el.Key)
		if set.interval {
			set.ranges = append(set.ranges, strings.Split(key, " . "))
			return
		}
		set.keys[key] = true
		if set.values != nil {
			set.values[key] = el.Value
		}
	}
	for _, el := range inetElements(s) {
		add(FamilyInet, el)
	}
	for _, g := range s.Guards {
		for _, el := range guardElements(g) {
			add(FamilyBridge, el)
		}
	}
	for fam, chains := range map[Family][]Chain{FamilyInet: InetChains, FamilyBridge: BridgeChains} {
		byHook := map[Hook][]Chain{}
		for _, c := range chains {
			byHook[c.Hook] = append(byHook[c.Hook], c)
		}
		for h := range byHook {
			slices.SortStableFunc(byHook[h], func(a, b Chain) int { return cmp.Compare(priority(a), priority(b)) })
		}
		e.chains[fam] = byHook
	}
	return e
}

// Evaluate is NewEvaluator(s).Evaluate(p).
func Evaluate(s State, p Packet) Result { return NewEvaluator(s).Evaluate(p) }

func setID(f Family, name string) string { return string(f) + " " + name }

// elementKey is an element's key as the evaluator compares it: the
// concatenation's fields unquoted, joined by " . ".
func elementKey(parts []string) string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = strings.Trim(p, `"`)
	}
	return strings.Join(out, " . ")
}

func priority(c Chain) int {
	f := knftables.InetFamily
	if c.Family == FamilyBridge {
		f = knftables.BridgeFamily
	}
	n, err := knftables.ParsePriority(f, string(c.Priority))
	if err != nil {
		panic(fmt.Sprintf("chain %s: priority %q: %v", c.Name, c.Priority, err)) // a typo in rules.go
	}
	return n
}

// Evaluate runs p through pontoon's base chains of p.Family on p.Hook, by
// priority: in each, the first rule that matches decides (accept ends the
// chain, drop the packet; NAT rewrites the packet and accepts), else the
// policy. Nat chains see only new connections.
func (e *Evaluator) Evaluate(p Packet) Result {
	if p.Family == "" {
		p.Family = FamilyInet
	}
	res := Result{Packet: p}
	by := -1
	for _, c := range e.chains[p.Family][p.Hook] {
		if c.Type == knftables.NATType && !isNew(res.Packet) {
			continue
		}
		step := Step{Family: c.Family, Table: TableName, Chain: c.Name, Hook: c.Hook, Priority: priority(c), Verdict: Accept}
		for i := range c.Rules {
			r := &c.Rules[i]
			nat, ok := e.apply(r, &res.Packet)
			if !ok {
				continue
			}
			step.Rule, step.NAT = r, nat
			if r.Action.Verb == Drop {
				step.Verdict = Drop
			}
			break
		}
		if c.Policy == knftables.DropPolicy && step.Rule == nil {
			step.Verdict = Drop
		}
		res.Steps = append(res.Steps, step)
		if step.Rule != nil || step.Verdict == Drop {
			by = len(res.Steps) - 1
		}
		if step.Verdict == Drop {
			res.Dropped = true
			break
		}
	}
	if by >= 0 {
		res.By = &res.Steps[by]
	}
	return res
}

// VXLAN reports whether p is a VXLAN packet to this host's devices: UDP to
// the port of pontoon's VXLAN devices, on an underlay of p's family (set
// vxlan-ports). What happens to it after the input hook is no rule's: the
// kernel hands it to the VXLAN socket, the device of its VNI takes the
// frame out of it, and the packet inside arrives on that device and goes
// through prerouting and forward (or input) again, as a packet of its
// own. The evaluator sees one header at a time: it cannot follow a packet
// from one to the other (the VNI and the inner frame are not fields of a
// Packet), nor tell a node's packet from one whose outer source an
// underlay host forged (vxlan-peers trusts the address). Evaluate the
// inner packet with IIF the VXLAN device.
func (e *Evaluator) VXLAN(p Packet) bool {
	if p.Proto != "udp" {
		return false
	}
	for _, f := range IPFamilies {
		if f.Name == packetFamily(&p) {
			return e.sets[setID(FamilyInet, f.name(setVXLANPorts))].keys[strconv.Itoa(int(p.DPort))]
		}
	}
	return false
}

func isNew(p Packet) bool { return p.CTState == "" || p.CTState == "new" }

// apply reports whether r matches p and, for NAT rules, rewrites p and
// describes the rewrite.
func (e *Evaluator) apply(r *Rule, p *Packet) (string, bool) {
	for _, m := range r.Match {
		if !e.match(m, p) {
			return "", false
		}
	}
	switch r.Action.Verb {
	case Masquerade:
		if !p.OIFAddr.IsValid() || p.OIFAddr.Is4() != p.Src.Is4() {
			return "masquerade (to " + p.OIF + "'s address)", true
		}
		from := p.Src
		p.Src = p.OIFAddr
		return fmt.Sprintf("masquerade %s → %s", from, p.Src), true
	case DNAT:
		if packetFamily(p) != r.Action.Family {
			return "", false // the kernel's NAT leaves the other family alone
		}
		key, ok := e.key(r.Action.MapKeys, p)
		if !ok {
			return "", false
		}
		val, ok := e.sets[setID(p.Family, r.Action.Map)].values[key]
		if !ok || len(val) != 2 {
			return "", false // not in the map: the rule does not match
		}
		addr, err1 := netip.ParseAddr(val[0])
		port, err2 := strconv.ParseUint(val[1], 10, 16)
		if err1 != nil || err2 != nil {
			return "", false
		}
		from := netip.AddrPortFrom(p.Dst, p.DPort)
		p.Dst, p.DPort, p.DNATed = addr, uint16(port), true
		return fmt.Sprintf("dnat %s → %s (map %s)", from, netip.AddrPortFrom(addr, uint16(port)), r.Action.Map), true
	}
	return "", true
}

func (e *Evaluator) match(m Match, p *Packet) bool {
	key, ok := e.key(m.Keys, p)
	if !ok {
		return false // a missing field never matches, negated or not
	}
	var hit bool
	if m.Set != "" {
		set := e.sets[setID(p.Family, m.Set)]
		if set.interval {
			fields := strings.Split(key, " . ")
			hit = slices.ContainsFunc(set.ranges, func(r []string) bool { return inRange(r, fields) })
		} else {
			hit = set.keys[key]
		}
	} else {
		hit = literal(m.Keys[0], m.Value, key)
	}
	return hit != m.Not
}

// inRange reports whether a packet's fields fall in an interval set's
// element, field by field: an address in a prefix (or equal to an
// address), anything else equal (an interface name). A concatenation
// with intervals (ifname . ipv4_addr) is matched as the kernel's pipapo
// set does.
func inRange(element, fields []string) bool {
	if len(element) != len(fields) {
		return false
	}
	for i, el := range element {
		if el == fields[i] {
			continue
		}
		a, err := netip.ParseAddr(fields[i])
		if err != nil {
			return false
		}
		pr, err := netip.ParsePrefix(el)
		if err != nil || !pr.Contains(a) {
			return false
		}
	}
	return true
}

// literal compares a field's value with a literal as nft writes it: a
// value, a prefix (an address field in it), a list of conntrack states or
// status bits, or an anonymous set "{ a, b }" of any of them.
func literal(k Key, lit, v string) bool {
	if inner, ok := strings.CutPrefix(lit, "{"); ok {
		for _, el := range strings.Split(strings.TrimSuffix(inner, "}"), ",") {
			if literal(k, strings.TrimSpace(el), v) {
				return true
			}
		}
		return false
	}
	switch k {
	case KeyCTState, KeyCTStatus: // a list of states, or of status bits
		for _, s := range strings.Split(v, ",") {
			if slices.Contains(strings.Split(lit, ","), s) {
				return true
			}
		}
		return false
	}
	if a, err := netip.ParseAddr(v); err == nil {
		if pr, err := netip.ParsePrefix(lit); err == nil {
			return pr.Contains(a)
		}
		if b, err := netip.ParseAddr(lit); err == nil {
			return a == b
		}
	}
	return strings.Trim(lit, `"`) == v
}

// key returns the packet's value for a concatenation of keys, or false
// when the packet lacks one of them.
func (e *Evaluator) key(ks []Key, p *Packet) (string, bool) {
	parts := make([]string, len(ks))
	for i, k := range ks {
		v, ok := field(k, p)
		if !ok {
			return "", false
		}
		parts[i] = v
	}
	return strings.Join(parts, " . "), true
}

// packetFamily is the IP family of p as nft names it ("ip", "ip6"), or ""
// for a frame that carries neither (ARP).
func packetFamily(p *Packet) string {
	switch p.EtherType {
	case "ip", "ip6":
		return p.EtherType
	case "":
		a := p.Src
		if !a.IsValid() {
			a = p.Dst
		}
		if f, ok := familyOf(a); ok {
			return f.Name
		}
	}
	return ""
}

func field(k Key, p *Packet) (string, bool) {
	fam := packetFamily(p)
	addr := func(f IPFamily, a netip.Addr) (string, bool) { return a.String(), fam == f.Name && f.Has(a) }
	l4 := fam != "" && p.Proto != ""
	icmp6 := fam == IPv6.Name && p.Proto == "icmpv6"
	switch k {
	case KeyIIFName:
		return p.IIF, p.IIF != ""
	case KeyOIFName:
		return p.OIF, p.OIF != ""
	case KeyEtherType:
		if p.EtherType == "" {
			return cmp.Or(fam, IPv4.Name), true
		}
		return p.EtherType, true
	case KeyEtherSaddr:
		return p.EtherSrc.String(), len(p.EtherSrc) == 6
	case KeyARPSaddrIP:
		return p.ARPSender.String(), p.EtherType == "arp" && p.ARPSender.IsValid()
	case KeyIPSaddr:
		return addr(IPv4, p.Src)
	case KeyIPDaddr:
		return addr(IPv4, p.Dst)
	case KeyIP6Saddr:
		return addr(IPv6, p.Src)
	case KeyIP6Daddr:
		return addr(IPv6, p.Dst)
	case KeyNFProto:
		for _, f := range IPFamilies {
			if f.Name == fam {
				return f.NFProto, true
			}
		}
		return "", false
	case KeyL4Proto:
		return p.Proto, l4
	case KeyTHDport:
		return strconv.Itoa(int(p.DPort)), l4 && (p.Proto == "tcp" || p.Proto == "udp" || p.Proto == "sctp")
	case KeyUDPSport:
		return strconv.Itoa(int(p.SPort)), l4 && p.Proto == "udp"
	case KeyUDPDport:
		return strconv.Itoa(int(p.DPort)), l4 && p.Proto == "udp"
	case KeyICMPv6Type:
		return p.ICMPType, icmp6 && p.ICMPType != ""
	case KeyNDTarget:
		return ndTarget(p.NDTarget), icmp6 && p.NDTarget.Is6()
	case KeyCTState:
		if p.CTState == "" {
			return "new", true
		}
		return p.CTState, true
	case KeyCTStatus:
		if p.DNATed {
			return "dnat", true
		}
		return "", true
	case KeyFibDaddrType:
		if p.DstLocal {
			return "local", true
		}
		return "unicast", true
	}
	return "", false
}
