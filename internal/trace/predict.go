// Package trace answers "where does this packet go, and which rule decides
// its fate?" — the question the seeds answer by hand with ip route, ip
// neigh, brctl showmacs, the veth's iflink and the TRACE target.
//
// Predict walks a packet through pontoon's desired state with no kernel:
// the sandbox's route and ARP, eth0 and the host end of its veth, the
// bridge port and FDB, the netfilter hooks (firewall's evaluator over the
// rules' description: bridge hooks, then the IP hooks br_netfilter runs
// bridged frames through), the host's routing decision and the
// destination. Given a Kernel, it also asks netlink what each lookup says
// and marks a hop whose answer differs from the prediction. The live trace
// (live.go) sends a real probe and compares the kernel's nftables trace
// events with the prediction.
//
// The package is pure: Topology is built by the engine from its store and
// the host's addresses and routes; Kernel is implemented over package link.
package trace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// Network is what the tracer needs of a network, in the family of the
// packet traced: a Topology is built for one family (IPv4 or IPv6), with
// that family's subnet and gateway of each network that has one.
type Network struct {
	Name       string
	Bridge     string
	Subnet     netip.Prefix
	Gateway    netip.Addr
	Internal   bool
	ICC        bool
	Masquerade bool
	// MAC is the bridge's own MAC (link.bridgeMAC: from the IPv4 gateway
	// when the network has one); nil: derived from Gateway.
	MAC net.HardwareAddr
}

// BridgeMAC is the bridge's own MAC: pontoon derives it from a gateway
// address (link.bridgeMAC), as it does an endpoint's.
func (n Network) BridgeMAC() net.HardwareAddr {
	if n.MAC != nil {
		return n.MAC
	}
	return model.MACFromIP(n.Gateway)
}

// Endpoint is a sandbox's interface on a network.
type Endpoint struct {
	Sandbox      string
	Network      string
	IfName       string // eth0 inside the sandbox
	HostIf       string // the host end of the veth
	HostIfIndex  int
	IP           netip.Addr
	MAC          net.HardwareAddr
	Gateway      netip.Addr
	DefaultRoute bool // its gateway is the sandbox's default route
	// Netns and NetnsIno locate the sandbox's namespace (for Kernel
	// lookups and live probes).
	Netns    string
	NetnsIno uint64
}

// HostAddr is one of the host's addresses (of the topology's family), on
// Dev.
type HostAddr struct {
	Dev    string
	Prefix netip.Prefix
}

// HostRoute is a route of the host's main table: Gateway is invalid for a
// connected route; Dst 0.0.0.0/0 is the default route.
type HostRoute struct {
	Dst     netip.Prefix
	Dev     string
	Gateway netip.Addr
}

// Topology is everything Predict reads: pontoon's state and the host's
// addresses and routes.
type Topology struct {
	Networks  []Network
	Endpoints []Endpoint
	Addrs     []HostAddr
	Routes    []HostRoute
	// Firewall evaluates pontoon's rules for this state.
	Firewall *firewall.Evaluator
}

// Probe is the packet to trace.
type Probe struct {
	// From is a sandbox's name, or "host". Empty with FromLAN.
	From    string
	FromLAN netip.Addr
	// SrcIP forges the source address of a packet from a sandbox.
	SrcIP netip.Addr
	// Via is the host interface a packet from FromLAN arrives on; empty:
	// the one the host routes FromLAN through. An overlay's VXLAN device
	// (ptvx-…) traces the inner packet of a VXLAN frame, whatever its
	// source: what a frame injected into the tunnel would carry.
	Via string
	// To is a sandbox's name, "host", or an address (of the topology's
	// family).
	To      string
	Proto   string
	Port    uint16
	SrcPort uint16 // 0: a made-up ephemeral port (the live probe sets its own)
}

// ParseDst parses DEST[:PORT][/PROTO]. A port without a protocol is TCP;
// no port is ICMP (echo).
func ParseDst(s string) (to string, port uint16, proto string, err error) {
	to, proto, _ = strings.Cut(s, "/")
	hasPort, p := false, ""
	switch {
	case strings.HasPrefix(to, "["):
		// [IPv6]:PORT, or [IPv6] alone.
		h, rest, ok := strings.Cut(to[1:], "]")
		if !ok || rest != "" && !strings.HasPrefix(rest, ":") {
			return "", 0, "", model.Invalidf("destination %q: write an IPv6 address with a port as [ADDRESS]:PORT", s)
		}
		to, hasPort, p = h, rest != "", strings.TrimPrefix(rest, ":")
	case strings.Count(to, ":") == 1: // NAME:PORT or IPv4:PORT; more colons: a bare IPv6 address
		to, p, hasPort = strings.Cut(to, ":")
	}
	if hasPort {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return "", 0, "", model.Invalidf("destination %q: port %q is not a number from 1 to 65535", s, p)
		}
		port = uint16(n)
	}
	if to == "" {
		return "", 0, "", model.Invalidf("destination %q has no sandbox, \"host\" or address: want DEST[:PORT][/PROTO], e.g. b:80/tcp or [fd00:1::5]:80", s)
	}
	switch {
	case proto == "" && port != 0:
		proto = "tcp"
	case proto == "":
		proto = "icmp"
	case proto == "icmp" && port != 0:
		return "", 0, "", model.Invalidf("destination %q: icmp has no port", s)
	case proto != "tcp" && proto != "udp" && proto != "sctp" && proto != "icmp":
		return "", 0, "", model.Invalidf("destination %q: protocol %q is not tcp, udp, sctp or icmp", s, proto)
	case proto != "icmp" && port == 0:
		return "", 0, "", model.Invalidf("destination %q: %s needs a port (DEST:PORT/%s)", s, proto, proto)
	}
	return to, port, proto, nil
}

// ephemeral is the source port a prediction shows when none is given.
const ephemeral = 40000

// walk is one prediction in progress.
type walk struct {
	top   *Topology
	k     Kernel
	pr    Probe
	hops  []model.TraceHop
	pkt   firewall.Packet
	src   *Endpoint // the source endpoint (sandbox sources)
	dstEP *Endpoint // the destination endpoint, when the destination is a sandbox's address
	trace model.Trace
	// decided is the forward (or bridge) step that accepted the packet.
	accepted *firewall.Step
	nats     []string
}

// Predict walks pr through top and returns the hop list and verdict. k
// (may be nil) answers the kernel lookups along the way.
func Predict(top *Topology, pr Probe, k Kernel) (*model.Trace, error) {
	w := &walk{top: top, k: k, pr: pr}
	if err := w.resolve(); err != nil {
		return nil, err
	}
	switch {
	case w.src != nil:
		w.fromSandbox()
	case pr.FromLAN.IsValid():
		w.fromLAN()
	default:
		w.fromHost()
	}
	w.trace.Hops = w.hops
	if w.trace.Hops == nil {
		w.trace.Hops = []model.TraceHop{}
	}
	return &w.trace, nil
}

// resolve finds the source and destination addresses.
func (w *walk) resolve() error {
	pr := w.pr
	if pr.Proto == "" {
		pr.Proto = "icmp"
	}
	if w.top.Firewall == nil {
		return errors.New("trace: topology has no firewall evaluator")
	}
	p := firewall.Packet{Proto: pr.Proto, DPort: pr.Port}
	if pr.Proto != "icmp" {
		p.SPort = pr.SrcPort
		if p.SPort == 0 {
			p.SPort = ephemeral
		}
	}
	probe := model.TraceProbe{Proto: pr.Proto, DstPort: pr.Port, SrcPort: p.SPort}
	var srcEPs []*Endpoint
	switch {
	case pr.FromLAN.IsValid():
		if w.isHostAddr(pr.FromLAN) || w.endpointByIP(pr.FromLAN) != nil {
			return model.Invalidf("--from-lan %s is an address of this host or of a sandbox, not of the LAN", pr.FromLAN)
		}
		p.Src = pr.FromLAN
		probe.From = "LAN " + pr.FromLAN.String()
	case pr.From == "host":
		probe.From = "host"
	case pr.From == "":
		return model.Invalidf("trace needs a source: a sandbox, \"host\", or --from-lan ADDRESS")
	default:
		for i := range w.top.Endpoints {
			if w.top.Endpoints[i].Sandbox == pr.From {
				srcEPs = append(srcEPs, &w.top.Endpoints[i])
			}
		}
		if len(srcEPs) == 0 {
			return model.NotFoundf("no sandbox %q with an endpoint: the source must be a sandbox on a network, \"host\", or --from-lan ADDRESS", pr.From)
		}
		probe.From = "sandbox " + pr.From
	}
	if pr.SrcIP.IsValid() && len(srcEPs) == 0 {
		return model.Invalidf("a forged source address needs a sandbox as source")
	}
	if pr.Via != "" && !pr.FromLAN.IsValid() {
		return model.Invalidf("--via names the interface a packet from --from-lan arrives on: give --from-lan too")
	}
	if pr.Via != "" && !w.isHostIf(pr.Via) {
		return model.NotFoundf("--via %s: the host has no such interface with an address or a route (of this address family)", pr.Via)
	}

	switch to := pr.To; {
	case to == "host":
		p.Dst = w.hostAddrTowards(p.Src, srcEPs)
		if !p.Dst.IsValid() {
			return model.NotFoundf("the host has no address of this family outside pontoon's bridges to trace to")
		}
		probe.To = "host"
	default:
		if a, err := netip.ParseAddr(to); err == nil {
			p.Dst = a
			probe.To = a.String()
			w.dstEP = w.endpointByIP(a)
			break
		}
		var dsts []*Endpoint
		for i := range w.top.Endpoints {
			if w.top.Endpoints[i].Sandbox == to {
				dsts = append(dsts, &w.top.Endpoints[i])
			}
		}
		if len(dsts) == 0 {
			return model.NotFoundf("no sandbox %q with an endpoint (of this address family): the destination is a sandbox, \"host\" or an address", to)
		}
		// The address on a network the source shares, else the first.
		w.dstEP = dsts[0]
		for _, d := range dsts {
			if slices.ContainsFunc(srcEPs, func(s *Endpoint) bool { return s.Network == d.Network }) {
				w.dstEP = d
				break
			}
		}
		p.Dst = w.dstEP.IP
		probe.To = "sandbox " + to
	}
	if len(srcEPs) > 0 {
		w.src = w.sandboxRoute(srcEPs, p.Dst)
		if w.src == nil {
			w.src = srcEPs[0] // no route: fromSandbox says so
		}
		p.Src = w.src.IP
		if pr.SrcIP.IsValid() {
			p.Src = pr.SrcIP
		}
	}
	probe.Src, probe.Dst = addrString(p.Src), p.Dst.String()
	w.pkt, w.pr, w.trace.Probe = p, pr, probe
	return nil
}

// neighWord names the protocol that resolves a's neighbour: ARP for IPv4,
// neighbour discovery (ND) for IPv6.
func neighWord(a netip.Addr) string {
	if a.Is6() {
		return "ND"
	}
	return "ARP"
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// SourceEndpoint is the endpoint a sandbox sends to dst through (nil when
// it has no route there): what Predict starts from, and where a live probe
// leaves.
func (t *Topology) SourceEndpoint(sandbox string, dst netip.Addr) *Endpoint {
	w := &walk{top: t}
	var eps []*Endpoint
	for i := range t.Endpoints {
		if t.Endpoints[i].Sandbox == sandbox {
			eps = append(eps, &t.Endpoints[i])
		}
	}
	if ep := w.sandboxRoute(eps, dst); ep != nil {
		return ep
	}
	if len(eps) > 0 {
		return eps[0]
	}
	return nil
}

// sandboxRoute picks the endpoint a sandbox sends to dst through: the one
// whose subnet holds dst (a connected route), else the one holding the
// default route; nil when the sandbox has no route to dst.
func (w *walk) sandboxRoute(eps []*Endpoint, dst netip.Addr) *Endpoint {
	for _, ep := range eps {
		if n := w.network(ep.Network); n != nil && n.Subnet.Contains(dst) {
			return ep
		}
	}
	for _, ep := range eps {
		if ep.DefaultRoute {
			return ep
		}
	}
	return nil
}

func (w *walk) network(name string) *Network {
	for i := range w.top.Networks {
		if w.top.Networks[i].Name == name {
			return &w.top.Networks[i]
		}
	}
	return nil
}

func (w *walk) networkOfBridge(br string) *Network {
	for i := range w.top.Networks {
		if w.top.Networks[i].Bridge == br {
			return &w.top.Networks[i]
		}
	}
	return nil
}

func (w *walk) endpointByIP(a netip.Addr) *Endpoint {
	for i := range w.top.Endpoints {
		if w.top.Endpoints[i].IP == a {
			return &w.top.Endpoints[i]
		}
	}
	return nil
}

func (w *walk) endpointOn(network string, a netip.Addr) *Endpoint {
	for i := range w.top.Endpoints {
		if ep := &w.top.Endpoints[i]; ep.Network == network && ep.IP == a {
			return ep
		}
	}
	return nil
}

func (w *walk) isHostAddr(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, h := range w.top.Addrs {
		if h.Prefix.Addr() == a {
			return true
		}
	}
	for _, n := range w.top.Networks {
		if n.Gateway == a {
			return true
		}
	}
	return false
}

// addrOn is the address masquerade and the host's own packets use on dev:
// its first address (a bridge's is its gateway).
func (w *walk) addrOn(dev string) netip.Addr {
	for _, h := range w.top.Addrs {
		if h.Dev == dev {
			return h.Prefix.Addr()
		}
	}
	if n := w.networkOfBridge(dev); n != nil {
		return n.Gateway
	}
	return netip.Addr{}
}

// hostAddrTowards is "host" as a destination: the host's address on the
// interface that leads to the source (a LAN client), else on the default
// route's interface — the address a user would type.
func (w *walk) hostAddrTowards(src netip.Addr, _ []*Endpoint) netip.Addr {
	if src.IsValid() {
		if r, ok := w.hostRoute(src); ok {
			if a := w.addrOn(r.Dev); a.IsValid() {
				return a
			}
		}
	}
	unspec := netip.IPv4Unspecified()
	if w.pkt.Dst.Is6() {
		unspec = netip.IPv6Unspecified()
	}
	if r, ok := w.hostRoute(unspec); ok && r.Dst.Bits() == 0 {
		if a := w.addrOn(r.Dev); a.IsValid() {
			return a
		}
	}
	for _, h := range w.top.Addrs {
		if w.networkOfBridge(h.Dev) == nil && !h.Prefix.Addr().IsLoopback() {
			return h.Prefix.Addr()
		}
	}
	return netip.Addr{}
}

// hostRoute is the host's routing decision for dst (longest prefix;
// pontoon's bridges hold their subnets as connected routes).
func (w *walk) hostRoute(dst netip.Addr) (HostRoute, bool) {
	best, found := HostRoute{}, false
	consider := func(r HostRoute) {
		if r.Dst.Contains(dst) && (!found || r.Dst.Bits() > best.Dst.Bits()) {
			best, found = r, true
		}
	}
	for _, n := range w.top.Networks {
		if n.Subnet.IsValid() {
			consider(HostRoute{Dst: n.Subnet.Masked(), Dev: n.Bridge})
		}
	}
	for _, r := range w.top.Routes {
		consider(r)
	}
	return best, found
}

func (w *walk) hop(h model.TraceHop) { w.hops = append(w.hops, h) }

func (w *walk) verdict(result, where, rule, sentence string) {
	w.trace.Verdict = model.TraceVerdict{Result: result, Where: where, Rule: rule, Sentence: sentence}
}

// what is the packet as a person reads it: "10.88.0.2 → 10.88.0.3:80/tcp".
func (w *walk) what() string {
	dst := w.pkt.Dst.String()
	if w.pkt.DPort != 0 {
		dst = netip.AddrPortFrom(w.pkt.Dst, w.pkt.DPort).String()
	}
	return fmt.Sprintf("%s → %s/%s", w.pkt.Src, dst, w.pkt.Proto)
}

// fromSandbox: route and ARP in the sandbox, eth0, the veth, the bridge.
func (w *walk) fromSandbox() {
	ep, sb := w.src, "sandbox "+w.src.Sandbox
	n := w.network(ep.Network)
	if n == nil {
		w.verdict(model.VerdictUnreachable, sb, "", fmt.Sprintf("sandbox %s's endpoint is on network %s, which pontoon does not know", ep.Sandbox, ep.Network))
		return
	}
	direct := n.Subnet.Contains(w.pkt.Dst)
	if w.pkt.Dst == ep.IP || w.pkt.Dst.IsLoopback() {
		w.hop(model.TraceHop{Kind: model.HopRoute, Where: sb, Text: "local " + w.pkt.Dst.String() + " dev lo"})
		w.verdict(model.VerdictDelivered, sb, "", fmt.Sprintf("delivered inside sandbox %s: %s is its own address, the packet never leaves it", ep.Sandbox, w.pkt.Dst))
		return
	}
	if !direct && !ep.DefaultRoute {
		w.hop(model.TraceHop{Kind: model.HopRoute, Where: sb, Text: "no route to " + w.pkt.Dst.String()})
		w.lookupSandboxRoute(ep, "", netip.Addr{})
		why := fmt.Sprintf("sandbox %s has no route to %s", ep.Sandbox, w.pkt.Dst)
		if n.Internal {
			why += fmt.Sprintf(": network %s is --internal, so its sandboxes get no default route; connect %s to a non-internal network to reach further", n.Name, ep.Sandbox)
		} else {
			why += fmt.Sprintf(": its default route is on another network; send from an address of %s's primary network", ep.Sandbox)
		}
		w.verdict(model.VerdictUnreachable, sb, "", "not sent: "+why)
		return
	}
	next := w.pkt.Dst
	text := fmt.Sprintf("%s dev %s src %s", w.pkt.Dst, ep.IfName, ep.IP)
	if !direct {
		next = ep.Gateway
		text = fmt.Sprintf("%s via %s dev %s src %s", w.pkt.Dst, ep.Gateway, ep.IfName, ep.IP)
	}
	w.hop(model.TraceHop{Kind: model.HopRoute, Where: sb, Text: text})
	w.lookupSandboxRoute(ep, ep.IfName, gatewayIf(!direct, ep.Gateway))

	// ARP for the next hop: the gateway is the bridge itself; another
	// address must be a sandbox on the same bridge.
	var nextMAC net.HardwareAddr
	var peer *Endpoint
	switch {
	case next == n.Gateway:
		nextMAC = n.BridgeMAC()
		w.hop(model.TraceHop{Kind: model.HopNeigh, Where: sb, Text: fmt.Sprintf("%s %s is at %s (the gateway: bridge %s itself)", neighWord(next), next, nextMAC, n.Bridge)})
	default:
		peer = w.endpointOn(n.Name, next)
		if peer == nil {
			w.hop(model.TraceHop{Kind: model.HopNeigh, Where: sb, Text: fmt.Sprintf("%s who-has %s on %s: no answer (no sandbox of network %s has that address)", neighWord(next), next, ep.IfName, n.Name)})
			w.lookupSandboxNeigh(ep, next, nil)
			w.verdict(model.VerdictUnreachable, sb, "", fmt.Sprintf("not sent: no sandbox of network %s has %s, so its ARP request goes unanswered", n.Name, next))
			return
		}
		nextMAC = peer.MAC
		if !n.ICC {
			w.hop(model.TraceHop{Kind: model.HopNeigh, Where: sb, Text: fmt.Sprintf("%s who-has %s on %s: no answer (bridge %s does not forward between isolated ports)", neighWord(next), next, ep.IfName, n.Bridge)})
			w.lookupSandboxNeigh(ep, next, nil)
			w.portHops(ep, n)
			w.verdict(model.VerdictDropped, "bridge "+n.Bridge, "port isolation",
				fmt.Sprintf("dropped by bridge %s: network %s has icc=false, so the ports of %s and %s are isolated from each other (bridge port isolation, not a firewall rule: not even ARP passes); create the network without --icc=false to let its sandboxes talk", n.Bridge, n.Name, ep.Sandbox, peer.Sandbox))
			return
		}
		w.hop(model.TraceHop{Kind: model.HopNeigh, Where: sb, Text: fmt.Sprintf("%s %s is at %s (sandbox %s's %s)", neighWord(next), next, nextMAC, peer.Sandbox, peer.IfName)})
	}
	w.lookupSandboxNeigh(ep, next, nextMAC)
	w.portHops(ep, n)

	// Table bridge pontoon (anti-spoofing) sees the frame on the port.
	w.pkt.Family, w.pkt.Hook, w.pkt.IIF, w.pkt.OIF, w.pkt.EtherSrc = firewall.FamilyBridge, firewall.HookPrerouting, ep.HostIf, "", ep.MAC
	if w.nft() {
		return
	}

	// The FDB: the bridge's own MAC goes up to the host's IP stack.
	routed := nextMAC.String() == n.BridgeMAC().String()
	if routed {
		w.hop(model.TraceHop{Kind: model.HopFDB, Where: "host", Text: fmt.Sprintf("bridge %s: %s is its own address: up to the host's IP stack (routed)", n.Bridge, nextMAC)})
	} else {
		w.hop(model.TraceHop{Kind: model.HopFDB, Where: "host", Text: fmt.Sprintf("bridge %s: %s is on port %s (sandbox %s)", n.Bridge, nextMAC, peer.HostIf, peer.Sandbox)})
	}
	w.lookupFDB(n.Bridge, nextMAC, map[bool]string{true: "", false: portOf(peer)}[routed])

	// br_netfilter: the IP hooks see the frame with the bridge as input.
	w.pkt.Family, w.pkt.Hook, w.pkt.IIF, w.pkt.EtherSrc = firewall.FamilyInet, firewall.HookPrerouting, n.Bridge, nil
	w.pkt.DstLocal = w.isHostAddr(w.pkt.Dst)
	if w.nft() {
		return
	}
	if !routed && !w.pkt.DNATed {
		w.bridged(n, peer)
		return
	}
	w.routed(n.Bridge)
}

func gatewayIf(via bool, gw netip.Addr) netip.Addr {
	if via {
		return gw
	}
	return netip.Addr{}
}

func portOf(ep *Endpoint) string {
	if ep == nil {
		return ""
	}
	return ep.HostIf
}

// portHops: eth0 is one end of a veth pair; its other end is a port of the
// network's bridge on the host.
func (w *walk) portHops(ep *Endpoint, n *Network) {
	text := fmt.Sprintf("%s → %s (ifindex %d): the host end of the veth pair", ep.IfName, ep.HostIf, ep.HostIfIndex)
	if ep.HostIfIndex == 0 {
		text = fmt.Sprintf("%s → %s: the host end of the veth pair", ep.IfName, ep.HostIf)
	}
	w.hop(model.TraceHop{Kind: model.HopLink, Where: "host", Text: text})
	iso := ""
	if !n.ICC {
		iso = " (isolated: network " + n.Name + " has icc=false)"
	}
	w.hop(model.TraceHop{Kind: model.HopBridge, Where: "host", Text: fmt.Sprintf("%s is a port of bridge %s%s", ep.HostIf, n.Bridge, iso)})
	w.lookupPort(ep, n)
}

// bridged: a frame between two ports of one bridge (br_netfilter still
// runs forward and postrouting with the bridge as both interfaces).
func (w *walk) bridged(n *Network, peer *Endpoint) {
	w.pkt.Hook, w.pkt.OIF = firewall.HookForward, n.Bridge
	if w.nft() {
		return
	}
	w.pkt.Hook, w.pkt.IIF, w.pkt.OIFAddr = firewall.HookPostrouting, "", n.Gateway
	if w.nft() {
		return
	}
	w.deliverTo(peer, n)
}

// deliverTo: out of the bridge through the peer's port, into its sandbox.
func (w *walk) deliverTo(peer *Endpoint, n *Network) {
	w.hop(model.TraceHop{Kind: model.HopBridge, Where: "host", Text: fmt.Sprintf("bridge %s → port %s", n.Bridge, peer.HostIf)})
	w.hop(model.TraceHop{Kind: model.HopLink, Where: "sandbox " + peer.Sandbox, Text: fmt.Sprintf("%s → %s of sandbox %s", peer.HostIf, peer.IfName, peer.Sandbox)})
	w.hop(model.TraceHop{Kind: model.HopDeliver, Where: "sandbox " + peer.Sandbox, Text: fmt.Sprintf("sandbox %s receives %s on %s", peer.Sandbox, w.what(), peer.IfName)})
	w.verdict(model.VerdictDelivered, "sandbox "+peer.Sandbox, w.acceptedBy(), fmt.Sprintf("delivered to sandbox %s (%s) through bridge %s%s%s", peer.Sandbox, w.dstString(), n.Bridge, w.acceptedClause(), w.natClause()))
}

func (w *walk) dstString() string {
	if w.pkt.DPort != 0 {
		return fmt.Sprintf("%s/%s", netip.AddrPortFrom(w.pkt.Dst, w.pkt.DPort), w.pkt.Proto)
	}
	return fmt.Sprintf("%s, %s", w.pkt.Dst, w.pkt.Proto)
}

func (w *walk) acceptedBy() string {
	if w.accepted == nil || w.accepted.Rule == nil {
		return "policy"
	}
	return w.accepted.Rule.Name
}

func (w *walk) acceptedClause() string {
	if w.accepted == nil {
		return ""
	}
	if w.accepted.Rule == nil {
		return fmt.Sprintf("; %s accepted it by policy", w.accepted.Where())
	}
	return fmt.Sprintf("; pontoon's %s rule accepted it (%s)", w.accepted.Rule.Name, w.accepted.Rule.Comment)
}

func (w *walk) natClause() string {
	if len(w.nats) == 0 {
		return ""
	}
	return "; NAT: " + strings.Join(w.nats, ", ")
}

// routed: the host's IP stack decides, from input interface in.
func (w *walk) routed(in string) {
	if w.pkt.DstLocal && !w.pkt.DNATed {
		w.hop(model.TraceHop{Kind: model.HopRoute, Where: "host", Text: "local " + w.pkt.Dst.String() + ": for the host itself (input)"})
		w.lookupHostRoute(in, "")
		w.pkt.Hook, w.pkt.IIF, w.pkt.OIF = firewall.HookInput, in, ""
		if w.nft() {
			return
		}
		w.deliverHost("")
		return
	}
	r, ok := w.hostRoute(w.pkt.Dst)
	if !ok {
		w.hop(model.TraceHop{Kind: model.HopRoute, Where: "host", Text: "no route to " + w.pkt.Dst.String()})
		w.lookupHostRoute(in, "")
		w.verdict(model.VerdictUnreachable, "host", "", fmt.Sprintf("the host has no route to %s", w.pkt.Dst))
		return
	}
	text := fmt.Sprintf("%s dev %s", w.pkt.Dst, r.Dev)
	if r.Gateway.IsValid() {
		text = fmt.Sprintf("%s via %s dev %s", w.pkt.Dst, r.Gateway, r.Dev)
	}
	w.hop(model.TraceHop{Kind: model.HopRoute, Where: "host", Text: text + ": forwarded"})
	w.lookupHostRoute(in, r.Dev)

	w.pkt.Hook, w.pkt.OIF = firewall.HookForward, r.Dev
	w.pkt.IIF = in
	if w.nft() {
		return
	}
	// A DNATed frame br_netfilter bridges back onto its own bridge shows
	// postrouting no input interface.
	if in == r.Dev {
		w.pkt.IIF = ""
	}
	w.pkt.Hook, w.pkt.OIFAddr = firewall.HookPostrouting, w.addrOn(r.Dev)
	if w.nft() {
		return
	}
	w.outOf(r, in)
}

// deliverHost: the host itself receives the packet (on lo, when the host
// sent it). pontoon's input rules judge VXLAN tunnels and what overlays
// deliver; the rest is the host's business. A VXLAN packet's way goes on
// where the evaluator cannot follow it: the device of its VNI takes the
// frame out of it, and the packet inside arrives on that device as from
// outside (trace it with --from-lan INNER-SOURCE --via DEVICE).
func (w *walk) deliverHost(on string) {
	text, where := "the host receives "+w.what(), fmt.Sprintf("delivered to the host (%s)", w.dstString())
	if on != "" {
		text, where = text+" on "+on, fmt.Sprintf("delivered to the host itself (%s) through %s", w.dstString(), on)
	}
	w.hop(model.TraceHop{Kind: model.HopDeliver, Where: "host", Text: text})
	switch {
	case w.top.Firewall.VXLAN(w.pkt):
		where += ": a VXLAN packet from a node of the cluster, which a VXLAN device of this host takes apart; the frame inside is not traced (trace it with --from-lan SOURCE --via THE-DEVICE)"
	case on == "":
		where += ": pontoon's input rules only judge VXLAN tunnels and what overlays deliver, so what a host process does with it is up to the host"
	}
	w.verdict(model.VerdictDelivered, "host", "policy", where)
}

// outOf: the packet leaves the host's stack through r.Dev (it came in
// on in).
func (w *walk) outOf(r HostRoute, in string) {
	if n := w.networkOfBridge(r.Dev); n != nil {
		peer := w.endpointOn(n.Name, w.pkt.Dst)
		if peer == nil {
			w.hop(model.TraceHop{Kind: model.HopNeigh, Where: "host", Text: fmt.Sprintf("%s who-has %s on %s: no answer (no sandbox of network %s has it)", neighWord(w.pkt.Dst), w.pkt.Dst, n.Bridge, n.Name)})
			w.verdict(model.VerdictUnreachable, "bridge "+n.Bridge, "", fmt.Sprintf("no sandbox of network %s has %s: the host's ARP request on %s goes unanswered", n.Name, w.pkt.Dst, n.Bridge))
			return
		}
		w.hop(model.TraceHop{Kind: model.HopNeigh, Where: "host", Text: fmt.Sprintf("%s %s is at %s on %s (sandbox %s)", neighWord(w.pkt.Dst), w.pkt.Dst, peer.MAC, n.Bridge, peer.Sandbox)})
		w.lookupHostNeigh(n.Bridge, w.pkt.Dst, peer.MAC)
		w.hop(model.TraceHop{Kind: model.HopFDB, Where: "host", Text: fmt.Sprintf("bridge %s: %s is on port %s (sandbox %s)", n.Bridge, peer.MAC, peer.HostIf, peer.Sandbox)})
		w.lookupFDB(n.Bridge, peer.MAC, peer.HostIf)
		if !n.ICC && in == n.Bridge {
			// A DNAT back onto the bridge it came from is bridged port to
			// port by br_netfilter, past the host's routing.
			w.verdict(model.VerdictDropped, "bridge "+n.Bridge, "port isolation",
				fmt.Sprintf("dropped by bridge %s: the connection was DNATed back onto the bridge it came from, which br_netfilter forwards port to port, and network %s has icc=false, so its ports are isolated from each other (bridge port isolation, not a firewall rule): a network with icc=false does not reach its own published ports; sandboxes of other networks do", n.Bridge, n.Name))
			return
		}
		w.deliverTo(peer, n)
		return
	}
	next := w.pkt.Dst
	if r.Gateway.IsValid() {
		next = r.Gateway
	}
	w.hop(model.TraceHop{Kind: model.HopNeigh, Where: "host", Text: fmt.Sprintf("next hop %s on %s", next, r.Dev)})
	w.lookupHostNeigh(r.Dev, next, nil)
	w.hop(model.TraceHop{Kind: model.HopDeliver, Where: "outside", Text: fmt.Sprintf("leaves the host through %s as %s", r.Dev, w.what())})
	w.verdict(model.VerdictLeft, r.Dev, w.acceptedBy(), fmt.Sprintf("left the host through %s towards %s as %s%s%s; beyond the host nothing is traced", r.Dev, next, w.what(), w.acceptedClause(), w.natClause()))
}

// fromLAN: a packet arriving on the interface that leads to the client
// (or on Via).
func (w *walk) fromLAN() {
	dev := w.pr.Via
	if dev == "" {
		r, ok := w.hostRoute(w.pkt.Src)
		if !ok {
			w.verdict(model.VerdictUnreachable, "host", "", fmt.Sprintf("the host has no route back to %s: it would not accept a connection from there (rp_filter), nor answer", w.pkt.Src))
			return
		}
		dev = r.Dev
	}
	w.hop(model.TraceHop{Kind: model.HopLink, Where: "host", Text: fmt.Sprintf("arrives on %s from %s", dev, w.pkt.Src)})
	w.pkt.Family, w.pkt.Hook, w.pkt.IIF = firewall.FamilyInet, firewall.HookPrerouting, dev
	w.pkt.DstLocal = w.isHostAddr(w.pkt.Dst)
	if w.nft() {
		return
	}
	w.routed(dev)
}

// isHostIf reports whether dev is one of the host's interfaces the
// topology knows: a bridge, or one with an address or a route.
func (w *walk) isHostIf(dev string) bool {
	if w.networkOfBridge(dev) != nil {
		return true
	}
	for _, a := range w.top.Addrs {
		if a.Dev == dev {
			return true
		}
	}
	for _, r := range w.top.Routes {
		if r.Dev == dev {
			return true
		}
	}
	return false
}

// fromHost: the host's own packet: routed first, then the output hook
// (where published ports are DNATed), rerouted after a DNAT.
func (w *walk) fromHost() {
	w.pkt.DstLocal = w.isHostAddr(w.pkt.Dst)
	r, ok := w.hostRoute(w.pkt.Dst)
	dev := "lo"
	if !w.pkt.DstLocal {
		if !ok {
			w.hop(model.TraceHop{Kind: model.HopRoute, Where: "host", Text: "no route to " + w.pkt.Dst.String()})
			w.verdict(model.VerdictUnreachable, "host", "", fmt.Sprintf("the host has no route to %s", w.pkt.Dst))
			return
		}
		dev = r.Dev
	}
	w.pkt.Src = w.pkt.Dst
	if !w.pkt.DstLocal {
		w.pkt.Src = w.addrOn(dev)
	}
	w.trace.Probe.Src = addrString(w.pkt.Src)
	w.hop(model.TraceHop{Kind: model.HopRoute, Where: "host", Text: fmt.Sprintf("%s dev %s src %s (the host's own packet)", w.pkt.Dst, dev, w.pkt.Src)})
	w.pkt.Family, w.pkt.Hook, w.pkt.IIF, w.pkt.OIF = firewall.FamilyInet, firewall.HookOutput, "", dev
	if w.nft() {
		return
	}
	if w.pkt.DstLocal && !w.pkt.DNATed {
		w.pkt.Hook, w.pkt.IIF, w.pkt.OIF = firewall.HookInput, "lo", ""
		if w.nft() {
			return
		}
		w.deliverHost("lo")
		return
	}
	r, ok = w.hostRoute(w.pkt.Dst)
	if !ok {
		w.verdict(model.VerdictUnreachable, "host", "", fmt.Sprintf("the host has no route to %s", w.pkt.Dst))
		return
	}
	if w.pkt.DNATed {
		w.hop(model.TraceHop{Kind: model.HopRoute, Where: "host", Text: fmt.Sprintf("%s dev %s (rerouted after DNAT)", w.pkt.Dst, r.Dev)})
	}
	w.pkt.Hook, w.pkt.OIF, w.pkt.OIFAddr = firewall.HookPostrouting, r.Dev, w.addrOn(r.Dev)
	if w.nft() {
		return
	}
	w.outOf(r, "")
}

// nft runs the packet through pontoon's chains on its current hook, adds
// a hop per chain, and reports whether the packet was dropped (then the
// verdict is set).
func (w *walk) nft() bool {
	res := w.top.Firewall.Evaluate(w.pkt)
	for i := range res.Steps {
		st := &res.Steps[i]
		h := model.TraceHop{Kind: model.HopNft, Where: "host", Family: string(st.Family), Table: st.Table, Chain: st.Chain,
			Hook: string(st.Hook), Priority: st.Priority, Verdict: string(st.Verdict), NAT: st.NAT}
		ctx := string(st.Hook)
		if w.pkt.IIF != "" {
			ctx += ", iif " + w.pkt.IIF
		}
		if w.pkt.OIF != "" {
			ctx += ", oif " + w.pkt.OIF
		}
		if st.Rule != nil {
			h.Rule, h.RuleText, h.Comment = st.Rule.Name, st.Rule.Text(), st.Rule.Comment
			h.Text = fmt.Sprintf("%s (%s): rule %s \"%s\" → %s", st.Where(), ctx, st.Rule.Name, h.RuleText, st.Verdict)
		} else {
			h.Text = fmt.Sprintf("%s (%s): policy %s", st.Where(), ctx, st.Verdict)
		}
		if st.NAT != "" {
			h.Text += ", " + st.NAT
			w.nats = append(w.nats, st.NAT)
		}
		w.hop(h)
		if st.Hook == firewall.HookForward && st.Verdict == firewall.Accept {
			w.accepted = st
		}
	}
	w.pkt = res.Packet
	if !res.Dropped {
		return false
	}
	st := res.By
	rule := "policy"
	if st.Rule != nil {
		rule = st.Rule.Name
	}
	w.verdict(model.VerdictDropped, st.Where(), rule, w.dropSentence(st))
	return true
}

// dropSentence says where, why and what would change it, in the words of
// this packet's sandboxes and networks.
func (w *walk) dropSentence(st *firewall.Step) string {
	where := fmt.Sprintf("dropped by pontoon's %s rule in %s", st.Rule.Name, st.Where())
	src, dst := w.srcName(), w.dstName()
	switch st.Rule.Name {
	case firewall.RuleIsolation:
		sn, dn := w.netOf(w.pkt.IIF), w.netOf(w.pkt.OIF)
		return fmt.Sprintf("%s: %s and %s are on different networks (%s, %s), and networks are isolated from each other; connect %s to %s's network (pontoon network connect %s %s) to allow it",
			where, src, dst, sn, dn, src, dst, dn, w.srcSandbox())
	case firewall.RuleInternalOut:
		return fmt.Sprintf("%s: %s's network %s is --internal, so its sandboxes reach only their own network and its gateway; connect %s to a non-internal network to reach %s", where, src, w.netOf(w.pkt.IIF), src, dst)
	case firewall.RuleInternalIn:
		return fmt.Sprintf("%s: %s's network %s is --internal, so only its own sandboxes reach it; connect %s to %s to allow it", where, dst, w.netOf(w.pkt.OIF), src, w.netOf(w.pkt.OIF))
	case firewall.RuleUnsolicited:
		return fmt.Sprintf("%s: %s is not reachable from %s except through a published port; publish it (-p HOSTPORT:%d) and use a host address", where, dst, src, w.pkt.DPort)
	case firewall.RuleSpoofedIP:
		return fmt.Sprintf("%s (anti-spoofing): %s may only send from its own address %s, not %s; send from %s", where, src, w.src.IP, w.pkt.Src, w.src.IP)
	case firewall.RuleSpoofedMAC:
		return fmt.Sprintf("%s (anti-spoofing): %s may only send from its own MAC %s", where, src, w.src.MAC)
	}
	return where + ": " + st.Rule.Why
}

func (w *walk) srcSandbox() string {
	if w.src != nil {
		return w.src.Sandbox
	}
	return "SANDBOX"
}

func (w *walk) srcName() string {
	switch {
	case w.src != nil:
		return w.src.Sandbox
	case w.pr.FromLAN.IsValid():
		return w.pr.FromLAN.String()
	}
	return "the host"
}

func (w *walk) dstName() string {
	if w.dstEP != nil {
		return w.dstEP.Sandbox
	}
	if ep := w.endpointByIP(w.pkt.Dst); ep != nil {
		return ep.Sandbox
	}
	return w.pkt.Dst.String()
}

func (w *walk) netOf(bridge string) string {
	if n := w.networkOfBridge(bridge); n != nil {
		return n.Name
	}
	return bridge
}
