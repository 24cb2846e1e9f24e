package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"pontoon/internal/model"
)

// The ruleset of table inet pontoon.
//
// The rules are static: what a network adds is set elements, so a packet
// costs a few hash lookups however many networks there are, and adding a
// network never adds a rule.
//
//	set bridges        ifname            every pontoon bridge
//	set internal       ifname            bridges of --internal networks
//	set intra          ifname . ifname   (bridge . bridge): traffic inside one network
//	set no-icc         ifname . ifname   (bridge . bridge) of --icc=false networks, not in intra
//	set masq-subnets   ipv4_addr, interval   subnets source-NATed when they leave the host
//	set masq-subnets6  ipv6_addr, interval   the same, IPv6
//	set subnets, subnets6                    every network's subnets
//	set remote-members   ifname . ifname . ipv4_addr, interval   bridge . uplink . a network's range outside this host's slice
//	set remote-pairs     ipv4_addr . ipv4_addr . ifname, interval   subnet . its network's members on other hosts . uplink
//	set remote-members6, remote-pairs6       the same, IPv6
//	set links          ifname            overlay networks' VXLAN devices
//	set link-sources   ifname . ipv4_addr, interval   VXLAN device . its network's range outside this host's slice
//	set vxlan-ports    inet_service      the UDP port of pontoon's VXLAN devices (an IPv4 underlay)
//	set vxlan-peers    ipv4_addr         underlay addresses of the cluster's nodes
//	set link-sources6, vxlan-ports6, vxlan-peers6   the same, IPv6
//	map ports-any, ports-any6                proto . port : sandbox . port
//	map ports-ip, ports-ip6                  host addr . proto . port : sandbox . port
//
//	chain forward         filter hook forward priority filter; policy accept
//	chain postrouting     nat hook postrouting priority srcnat
//	chain prerouting      nat hook prerouting priority dstnat (published ports)
//	chain output          nat hook output priority dstnat (published ports, from the host)
//	chain loopback-guard  filter hook prerouting priority raw
//	chain input           filter hook input priority filter; policy accept
//
// Per-family sets and maps are built from one declaration each, for each
// of IPFamilies (family.go). Anti-spoofing is table bridge pontoon
// (guard.go). Sync builds the whole table from State; per-endpoint updates
// (ports, anti-spoofing) add elements between Syncs.
const (
	setBridges     = "bridges"
	setInternal    = "internal"
	setIntra       = "intra"
	setNoICC       = "no-icc"
	setMasq        = "masq-subnets"   // + the family's suffix
	setSubnets     = "subnets"        // every network's subnets; + the family's suffix
	setRemotes     = "remote-members" // bridge . uplink . range less this host's slice (an overlay's members on other hosts); + suffix
	setRemotePairs = "remote-pairs"   // local subnet . remote range . uplink: not masqueraded; + suffix
	setLinks       = "links"          // overlay networks' VXLAN devices
	setLinkSources = "link-sources"   // VXLAN device . the sources it may deliver; + suffix
	setVXLANPorts  = "vxlan-ports"    // the UDP port of pontoon's VXLAN devices; + the underlay's suffix
	setVXLANPeers  = "vxlan-peers"    // the cluster's nodes' underlay addresses; + suffix

	chainForward     = "forward"
	chainPostrouting = "postrouting"
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainGuard       = "loopback-guard"
	chainInput       = "input"

	mapPortsAny = "ports-any" // proto . port → sandbox addr . port, on every local address; + suffix
	mapPortsIP  = "ports-ip"  // host addr . proto . port → sandbox addr . port; + suffix
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
		for _, l := range n.Links {
			if err := validIfName(l); err != nil {
				return fmt.Errorf("network %s: %w", n.Name, err)
			}
			if other, dup := bridges[l]; dup {
				return fmt.Errorf("networks %s and %s share link %s", other, n.Name, l)
			}
			bridges[l] = n.Name
		}
		if len(n.Remotes) > 0 {
			// Without the interface they come through, the network's
			// range would be its own from any link of the host.
			if n.RemoteVia == "" {
				return fmt.Errorf("network %s: remote members %v without the interface they come through (RemoteVia: the underlay, or the VXLAN device)", n.Name, n.Remotes)
			}
			if err := validIfName(n.RemoteVia); err != nil {
				return fmt.Errorf("network %s: remote members' interface: %w", n.Name, err)
			}
			if n.RemoteVia == n.Bridge {
				return fmt.Errorf("network %s: remote members come through its own bridge %s: want the underlay or the VXLAN device", n.Name, n.Bridge)
			}
		}
		remote := map[string]bool{}
		for _, r := range n.Remotes {
			if !r.IsValid() || r != r.Masked() {
				return fmt.Errorf("network %s: remote members %q: want a network prefix", n.Name, r)
			}
			if err := addrError("network "+n.Name+": remote members", r.Addr()); err != nil {
				return err
			}
			f, _ := familyOf(r.Addr())
			if remote[f.Name] {
				return fmt.Errorf("network %s: two %s ranges of remote members: a network has at most one per family", n.Name, f.Label)
			}
			remote[f.Name] = true
		}
		seen := map[string]netip.Prefix{}
		for _, sub := range n.Subnets {
			if !sub.Prefix.IsValid() {
				return fmt.Errorf("network %s: subnet %q is not a prefix", n.Name, sub.Prefix)
			}
			if err := addrError("network "+n.Name+": subnet", sub.Prefix.Addr()); err != nil {
				return err
			}
			f, _ := familyOf(sub.Prefix.Addr())
			if other, dup := seen[f.Name]; dup {
				return fmt.Errorf("network %s: two %s subnets (%s, %s): a network has at most one per family", n.Name, f.Label, other, sub.Prefix)
			}
			seen[f.Name] = sub.Prefix
		}
	}
	// Remote members come through the underlay or their own network's
	// VXLAN device, never through another network's bridge or device,
	// which carry that network's traffic: (i) would make this network's
	// range that network's too.
	for _, n := range s.Networks {
		if owner, ok := bridges[n.RemoteVia]; ok && len(n.Remotes) > 0 && owner != n.Name {
			return fmt.Errorf("network %s: remote members come through %s, which is network %s's: want the underlay or the network's own VXLAN device", n.Name, n.RemoteVia, owner)
		}
	}
	if err := s.VXLAN.validate(); err != nil {
		return err
	}
	for _, p := range s.Ports {
		if _, err := p.elements(); err != nil {
			return err
		}
	}
	for _, g := range s.Guards {
		if err := g.validate(); err != nil {
			return err
		}
	}
	return nil
}

// validIfName accepts interface names that can be written unquoted-safe
// into nft and iptables input: Linux allows almost any byte, pontoon's own
// names are [a-z0-9-], adopted bridges are rarely stranger than [A-Za-z0-9_.@-].
// ValidIfName says whether name can be written into pontoon's nftables
// sets as an interface name (what the kernel accepts is wider: a link
// named with other characters cannot be a bridge, uplink or underlay of
// pontoon's).
func ValidIfName(name string) error { return validIfName(name) }

func validIfName(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("interface name %q: want 1 to 15 bytes", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.@-", r)
		if !ok {
			return fmt.Errorf("interface name %q: only letters, digits and _.@- are supported", name)
		}
	}
	return nil
}

// masquerades reports whether traffic from subnet sub of n is source-NATed
// on the way out. Internal wins: an internal network has no way out to NAT.
func masquerades(n Network, sub model.Subnet) bool { return sub.Masquerade && !n.Internal }

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
		// An --icc=false network's own pair is not intra: rule (a) would
		// accept a sandbox routing to another through the gateway, which
		// bridge port isolation (L2 only) does not see.
		pair := setIntra
		if n.Isolated {
			pair = setNoICC
		}
		// The bridge and the network's further links (a VXLAN device) are
		// all the network's: each in bridges (and internal), and the
		// bridge paired with itself and with each link, both ways.
		members := []string{br}
		for _, l := range n.Links {
			members = append(members, `"`+l+`"`)
		}
		for _, m := range members {
			out = append(out, &knftables.Element{Set: setBridges, Key: []string{m}, Comment: c})
			if n.Internal {
				out = append(out, &knftables.Element{Set: setInternal, Key: []string{m}, Comment: c})
			}
		}
		out = append(out, &knftables.Element{Set: pair, Key: []string{br, br}, Comment: c})
		for _, m := range members[1:] {
			out = append(out, &knftables.Element{Set: setLinks, Key: []string{m}, Comment: c})
			// Into a link: (a) accepts it. Out of one into the bridge:
			// not (a), whose pair says nothing of the source: (j)
			// checks it first (link-sources), then (i) accepts it
			// (remote-members), as the host-gw underlay's; with
			// --icc=false, (h) drops it (no-icc) but for published ports.
			out = append(out, &knftables.Element{Set: pair, Key: []string{br, m}, Comment: c})
			if n.Isolated {
				out = append(out, &knftables.Element{Set: pair, Key: []string{m, br}, Comment: c})
			}
		}
		for _, f := range IPFamilies {
			for _, sub := range n.Subnets {
				if !f.Has(sub.Prefix.Addr()) {
					continue
				}
				key := []string{sub.Prefix.Masked().String()}
				if masquerades(n, sub) {
					out = append(out, &knftables.Element{Set: f.name(setMasq), Key: key, Comment: c})
				}
				out = append(out, &knftables.Element{Set: f.name(setSubnets), Key: key, Comment: c})
			}
			via := `"` + n.RemoteVia + `"`
			// What may come out of the network's VXLAN device (its
			// RemoteVia, one of its links): the network's range but
			// this host's own slice, which is nobody's on another
			// host. Also on --icc=false networks, whose sandboxes on
			// other hosts still reach published ports through this
			// host's gateway address.
			if slices.Contains(n.Links, n.RemoteVia) {
				for _, r := range n.Remotes {
					if !f.Has(r.Addr()) {
						continue
					}
					for _, p := range excludePrefixes(r.Masked(), subnetsOf(n, f)) {
						out = append(out, &knftables.Element{Set: f.name(setLinkSources), Key: []string{via, p.String()}, Comment: c})
					}
				}
			}
			// The network's members on other hosts (overlays): theirs
			// and the bridge's traffic through RemoteVia is the
			// network's own. The range less this host's slice, as in
			// link-sources: nobody on another host has an address of
			// the slice, so a packet from the uplink claiming one is
			// not accepted here (out of a VXLAN device, (j) dropped it
			// already). Not on --icc=false networks
			// (rule no-icc keeps their sandboxes apart, and so does
			// leaving these out).
			if n.Isolated {
				continue
			}
			for _, r := range n.Remotes {
				if !f.Has(r.Addr()) {
					continue
				}
				for _, p := range excludePrefixes(r.Masked(), subnetsOf(n, f)) {
					out = append(out, &knftables.Element{Set: f.name(setRemotes), Key: []string{br, via, p.String()}, Comment: c})
				}
				for _, sub := range n.Subnets {
					if f.Has(sub.Prefix.Addr()) {
						out = append(out, &knftables.Element{Set: f.name(setRemotePairs), Key: []string{sub.Prefix.Masked().String(), r.String(), via}, Comment: c})
					}
				}
			}
		}
	}
	out = append(out, s.VXLAN.elements()...)
	els, _ := portElements(s.Ports) // validate refused what would fail
	for _, e := range els {
		out = append(out, e.knft())
	}
	return out
}

// inetSets declares the sets and maps of table inet pontoon (their
// elements come from inetElements): the family-less ones, then each
// family's.
func inetSets() []knftables.Object {
	out := []knftables.Object{
		&knftables.Set{Name: setBridges, Type: "ifname",
			Comment: knftables.PtrTo("bridges of all pontoon networks")},
		&knftables.Set{Name: setInternal, Type: "ifname",
			Comment: knftables.PtrTo("bridges of internal networks: no traffic in or out but their own")},
		&knftables.Set{Name: setIntra, Type: "ifname . ifname",
			Comment: knftables.PtrTo("bridge . bridge: traffic that stays inside one network")},
		&knftables.Set{Name: setNoICC, Type: "ifname . ifname",
			Comment: knftables.PtrTo("bridge . bridge of --icc=false networks: their sandboxes apart, also routed through the gateway")},
		&knftables.Set{Name: setLinks, Type: "ifname",
			Comment: knftables.PtrTo("VXLAN devices of overlay networks: what comes out of them is checked")},
	}
	for _, f := range IPFamilies {
		addr := f.AddrType
		out = append(out,
			&knftables.Set{Name: f.name(setMasq), Type: addr, Flags: []knftables.SetFlag{knftables.IntervalFlag},
				Comment: knftables.PtrTo(f.comment("subnets masqueraded when they leave the host"))},
			&knftables.Set{Name: f.name(setSubnets), Type: addr, Flags: []knftables.SetFlag{knftables.IntervalFlag},
				Comment: knftables.PtrTo(f.comment("subnets of all pontoon networks"))},
			// Concatenations with intervals (nft_set_pipapo, Linux 5.6;
			// nft 1.0.6 writes and lists them).
			&knftables.Set{Name: f.name(setRemotes), Type: "ifname . ifname . " + addr, Flags: []knftables.SetFlag{knftables.IntervalFlag},
				Comment: knftables.PtrTo(f.comment("bridge . uplink . its network's members on other hosts, who come through that uplink only"))},
			&knftables.Set{Name: f.name(setRemotePairs), Type: addr + " . " + addr + " . ifname", Flags: []knftables.SetFlag{knftables.IntervalFlag},
				Comment: knftables.PtrTo(f.comment("subnet . its network's members on other hosts . uplink: not masqueraded"))},
			&knftables.Set{Name: f.name(setLinkSources), Type: "ifname . " + addr, Flags: []knftables.SetFlag{knftables.IntervalFlag},
				Comment: knftables.PtrTo(f.comment("VXLAN device . its network's range outside this host's slice: the only sources it delivers"))},
			&knftables.Set{Name: f.name(setVXLANPorts), Type: "inet_service",
				Comment: knftables.PtrTo(f.comment("UDP port of pontoon's VXLAN devices, on an underlay of this family"))},
			&knftables.Set{Name: f.name(setVXLANPeers), Type: addr,
				Comment: knftables.PtrTo(f.comment("underlay addresses of the cluster's nodes: the only senders of VXLAN packets"))},
			&knftables.Map{Name: f.name(mapPortsAny), Type: "inet_proto . inet_service : " + addr + " . inet_service",
				Comment: knftables.PtrTo(f.comment("published ports on every host address: proto . port : sandbox . port"))},
			&knftables.Map{Name: f.name(mapPortsIP), Type: addr + " . inet_proto . inet_service : " + addr + " . inet_service",
				Comment: knftables.PtrTo(f.comment("published ports bound to one host address"))})
	}
	return out
}

// subnetsOf are n's subnets of family f (at most one).
func subnetsOf(n Network, f IPFamily) []netip.Prefix {
	var out []netip.Prefix
	for _, sub := range n.Subnets {
		if f.Has(sub.Prefix.Addr()) {
			out = append(out, sub.Prefix.Masked())
		}
	}
	return out
}

// excludePrefixes is r without the addresses of holes, as prefixes,
// shortest first: the halves of r that overlap no hole are kept whole,
// those inside one are left out, the others split again. r minus one
// hole inside it is one prefix per bit between their lengths (a /16 less
// a /24: 8).
func excludePrefixes(r netip.Prefix, holes []netip.Prefix) []netip.Prefix {
	overlapping := false
	for _, h := range holes {
		if h.Contains(r.Addr()) && h.Bits() <= r.Bits() {
			return nil // r is inside a hole
		}
		overlapping = overlapping || r.Overlaps(h)
	}
	if !overlapping || r.Bits() == r.Addr().BitLen() {
		return []netip.Prefix{r}
	}
	lo := netip.PrefixFrom(r.Addr(), r.Bits()+1)
	hi := netip.PrefixFrom(lastAddr(lo).Next(), r.Bits()+1)
	return append(excludePrefixes(lo, holes), excludePrefixes(hi, holes)...)
}

// lastAddr is the last address of prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// validate refuses an underlay the rules would misread: peers or a port
// without this host's address, addresses of another family, this host's
// own address as a peer.
func (u VXLANUnderlay) validate() error {
	if !u.Local.IsValid() {
		if u.Port != 0 || len(u.Peers) > 0 {
			return fmt.Errorf("VXLAN underlay: port %d and peers %v without this host's underlay address: give Local, or none of them (no VXLAN overlay here)", u.Port, u.Peers)
		}
		return nil
	}
	if err := addrError("VXLAN underlay: this host's address", u.Local); err != nil {
		return err
	}
	if u.Port == 0 {
		return fmt.Errorf("VXLAN underlay: no UDP port: give the VXLAN devices' (4789)")
	}
	f, _ := familyOf(u.Local)
	for _, p := range u.Peers {
		if err := addrError("VXLAN underlay: peer", p); err != nil {
			return err
		}
		switch {
		case !f.Has(p):
			return fmt.Errorf("VXLAN underlay: peer %s is not of the family of this host's underlay address %s: the tunnels use one family", p, u.Local)
		case p == u.Local:
			return fmt.Errorf("VXLAN underlay: peer %s is this host's own underlay address", p)
		case p.IsUnspecified() || p.IsMulticast():
			return fmt.Errorf("VXLAN underlay: peer %s is not a unicast address", p)
		}
	}
	return nil
}

// elements are the underlay's: the port in its family's vxlan-ports, the
// peers in vxlan-peers (sorted, each once).
func (u VXLANUnderlay) elements() []*knftables.Element {
	if !u.Local.IsValid() {
		return nil
	}
	f, _ := familyOf(u.Local)
	c := knftables.PtrTo("VXLAN underlay")
	out := []*knftables.Element{{Set: f.name(setVXLANPorts), Key: []string{strconv.Itoa(int(u.Port))}, Comment: c}}
	peers := slices.Clone(u.Peers)
	slices.SortFunc(peers, netip.Addr.Compare)
	for _, p := range slices.Compact(peers) {
		out = append(out, &knftables.Element{Set: f.name(setVXLANPeers), Key: []string{p.String()}, Comment: knftables.PtrTo("cluster node")})
	}
	return out
}
