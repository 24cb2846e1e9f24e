package link

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// VXLAN overlay (issue #13, "Many hosts"): the kernel half of an L3 VXLAN
// data plane, flannel's design with learning off. Per overlay network each
// host has a slice of each of the network's ranges (10.200.1.0/24 of
// 10.200.0.0/16, fd00:200:0:1::/64 of fd00:200::/48) on a local bridge
// whose gateway is the slice's first address, and one VXLAN device that
// carries each slice's network address as a host prefix (10.200.1.0/32,
// fd00:200:0:1::/128). For each remote node's slice (S, its network
// address G; the node's VXLAN devices' MAC M, its underlay address U) the
// host has exactly
//
//	S via G dev VX onlink        (route, main table)
//	G lladdr M dev VX permanent  (neighbour)
//	M dst U dev VX self permanent (FDB)
//
// so a packet for a remote sandbox is routed to G, G resolves to M without
// ARP or neighbour discovery, and M resolves to U without flooding:
// nothing is learnt, nothing is broadcast, and the control plane (the
// store) is the only source of truth. A node with a slice of each family
// is two peers with the same M and U: a route and a neighbour per family,
// one FDB entry (the FDB is keyed by MAC, whatever the family inside).
//
// Kernel behaviour to know (drivers/net/vxlan, 6.18):
//   - onlink: G is not in any subnet of the VXLAN device (it has a /32), so
//     without RTNH_F_ONLINK the kernel refuses the route: ENETUNREACH
//     ("network is unreachable", fib_check_nh finds no route to G).
//   - The neighbour entry is NUD_PERMANENT: never probed, never aged, never
//     replaced by a reply. A NUD_REACHABLE entry would be probed after
//     base_reachable_time, and the probe (ARP, broadcast) has nowhere to go
//     on a VXLAN device without a default FDB entry: the entry would fail.
//   - With learning off (IFLA_VXLAN_LEARNING 0) the device never adds FDB
//     entries from what it receives, and without an all-zeros FDB entry
//     (no remote given at creation) a frame to an unknown MAC is dropped,
//     not flooded. A frame is delivered to the device of its VNI only.
//   - The VNI, the destination port and the underlay device cannot be
//     changed on an existing device (vxlan_nl2conf: EOPNOTSUPP):
//     EnsureVXLAN deletes and makes it again, which takes its routes,
//     neighbours and FDB entries with it (the ifindex it returns changes:
//     call SetPeers again).
//   - MTU: the encapsulation adds 50 bytes on an IPv4 underlay (outer
//     Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8), 70 on IPv6; the kernel
//     refuses an MTU above the underlay's minus that (EINVAL). It is the
//     same whatever the family inside: an IPv6 packet of the device's MTU
//     fits as an IPv4 one does.
//   - IPv6 inside: the device forwards IPv6 only while IPv6 is on for it
//     (disable_ipv6 0; ip6_rcv_core drops what arrives on a device with
//     it off, ip6_output what leaves). EnsureVXLAN gives it its IPv6
//     slice's network address (IFA_F_NODAD): on a device where IPv6 is
//     off the kernel refuses that address (EACCES) and the error says
//     so, instead of a network whose IPv6 silently goes nowhere. The
//     address is also the local bridge's subnet-router anycast address
//     (the kernel joins it on the bridge once forwarding is on); a
//     unicast and an anycast address may coincide, and both are local.
//     Router advertisements are turned off on the device as on bridges
//     (accept_ra=0, autoconf=0). An onlink IPv6 route's gateway needs no
//     address of its prefix on the device (ip6_route_check_nh_onlink
//     only refuses a gateway another device's route covers).
//   - The device's MAC is what remote nodes program: it must not change
//     when the device is made again. pontoon gives every VXLAN device of a
//     host the same MAC, the node's VTEP MAC (VTEPMAC derives it from the
//     underlay address; the node records it in etcd and its peers program
//     the recorded one). One MAC for several devices is fine: each VXLAN
//     device has its own FDB and its own neighbour table, a frame is
//     handed to the device of its VNI only (vxlan_vs_find_vni), and the
//     MAC is checked against that device alone. Isolation between the
//     networks is the VNI's and the firewall's, never the MAC's: a frame
//     that reaches a device is routed like any packet of its network.

// VXLANPort is the IANA VXLAN port, VXLAN.Port's default.
const VXLANPort = 4789

// VXLAN describes one overlay network's VXLAN device on this host.
type VXLAN struct {
	Name  string     // at most 15 characters
	VNI   int        // 1 … 16777215
	Local netip.Addr // this host's underlay address: the outer source
	Dev   string     // the underlay link the tunnel goes out of
	Port  int        // UDP destination port; 0: VXLANPort
	// MTU 0: the underlay's minus the encapsulation (50 on IPv4, 70 on
	// IPv6).
	MTU int
	// MAC is the node's VTEP MAC, the same on all of its VXLAN devices;
	// nil: VTEPMAC(Local).
	MAC net.HardwareAddr
	// Addrs are the network addresses of this host's slices, at most one
	// per family, as host prefixes: 10.200.1.0/32, fd00:200:0:1::/128.
	// None: no address.
	Addrs []netip.Prefix
}

// Peer is one slice of a remote node of an overlay network. A node with a
// slice of each family is two peers with the same VTEPMAC and Underlay.
type Peer struct {
	VXLAN    string           // the device; "": the one SetPeers is given
	Slice    netip.Prefix     // the remote node's slice: 10.200.2.0/24
	Gateway  netip.Addr       // the slice's network address: 10.200.2.0
	VTEPMAC  net.HardwareAddr // the remote node's VTEP MAC (that of all its VXLAN devices)
	Underlay netip.Addr       // the remote node's underlay address
}

// vxlanOverhead is what VXLAN encapsulation adds in front of a frame,
// outer Ethernet header included, on an underlay of local's family.
func vxlanOverhead(local netip.Addr) int {
	if local.Is4() {
		return 50
	}
	return 70
}

// VTEPMAC is the MAC pontoon gives a node's VXLAN devices, all of them:
// derived from the node's underlay address alone (SHA-256), locally
// administered and unicast. It depends on nothing a node keeps on disk,
// so it survives a lost state directory and a re-created device, and it
// differs between nodes (between underlay addresses). A node writes it
// into its record in etcd when it joins; the other nodes program the
// recorded MAC, and derive it only for a record that lacks one.
func VTEPMAC(underlay netip.Addr) net.HardwareAddr {
	h := sha256.New()
	h.Write([]byte("pontoon vtep"))
	h.Write(underlay.Unmap().AsSlice())
	sum := h.Sum(nil)
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

func (v VXLAN) port() int {
	if v.Port == 0 {
		return VXLANPort
	}
	return v.Port
}

func (v VXLAN) mac() net.HardwareAddr {
	if v.MAC != nil {
		return v.MAC
	}
	return VTEPMAC(v.Local)
}

// check refuses a VXLAN that cannot be made whatever the kernel holds.
func (v VXLAN) check() error {
	what := "vxlan " + v.Name
	if err := checkIfName("vxlan", v.Name); err != nil {
		return err
	}
	if v.VNI < 1 || v.VNI > 1<<24-1 {
		return fmt.Errorf("%s: VNI %d: give 1 to 16777215", what, v.VNI)
	}
	if !v.Local.IsValid() || v.Local.IsUnspecified() || v.Local.Is4In6() || v.Local.IsMulticast() {
		return fmt.Errorf("%s: local address %s: give this host's unicast underlay address (192.0.2.1)", what, v.Local)
	}
	if v.Dev == "" {
		return fmt.Errorf("%s: no underlay device: give the link the tunnel goes out of (eth0)", what)
	}
	if err := checkIfName(what+": underlay", v.Dev); err != nil {
		return err
	}
	if v.Port < 0 || v.Port > 65535 {
		return fmt.Errorf("%s: port %d: give 1 to 65535, or 0 for %d", what, v.Port, VXLANPort)
	}
	if v.MTU < 0 || (v.MTU > 0 && v.MTU < 68) || v.MTU > 65535 {
		return fmt.Errorf("%s: MTU %d: give 68 to 65535 (IPv6 needs 1280), or 0 for the underlay's minus %d", what, v.MTU, vxlanOverhead(v.Local))
	}
	if v.MAC != nil && (len(v.MAC) != 6 || v.MAC[0]&1 != 0 || isZeroMAC(v.MAC)) {
		return fmt.Errorf("%s: MAC %s is not a unicast Ethernet address: give 6 bytes, the first even, or none", what, v.MAC)
	}
	var fams [2]bool
	for _, a := range v.Addrs {
		if !a.IsValid() || a.Bits() != a.Addr().BitLen() || a.Addr().Is4In6() || a.Addr().IsUnspecified() || a.Addr().Zone() != "" {
			return fmt.Errorf("%s: address %s: give each slice's network address as a /32 or /128: 10.200.1.0/32, fd00:200:0:1::/128", what, a)
		}
		i := 0
		if a.Addr().Is6() {
			i = 1
		}
		if fams[i] {
			return fmt.Errorf("%s: two %s addresses (%v): give one per family, that of this host's slice", what, familyOf(a.Addr()).name, v.Addrs)
		}
		fams[i] = true
	}
	return nil
}

// has6 reports whether the device carries IPv6 (it has an IPv6 address).
func (v VXLAN) has6() bool {
	return slices.ContainsFunc(v.Addrs, func(a netip.Prefix) bool { return a.Addr().Is6() })
}

// checkPeers refuses a peer list that cannot be programmed on device vx
// (local: its underlay address, mac: its MAC): each peer complete and of
// one family, no two for the same slice, gateway or VTEP.
func checkPeers(vx string, local netip.Addr, mac net.HardwareAddr, peers []Peer) error {
	gws := map[netip.Addr]int{}
	macs := map[macKey]int{}
	for i, p := range peers {
		what := fmt.Sprintf("vxlan %s: peer %d (%s)", vx, i, p.Slice)
		switch {
		case p.VXLAN != "" && p.VXLAN != vx:
			return fmt.Errorf("%s is for vxlan %s: give SetPeers each device's peers", what, p.VXLAN)
		case !p.Slice.IsValid() || p.Slice != p.Slice.Masked() || p.Slice.Addr().Is4In6():
			return fmt.Errorf("%s: slice %s: give the remote node's slice as a network (10.200.2.0/24)", what, p.Slice)
		case !p.Gateway.IsValid() || !p.Slice.Contains(p.Gateway):
			return fmt.Errorf("%s: gateway %s is not in the slice: give the slice's network address (%s)", what, p.Gateway, p.Slice.Addr())
		case len(p.VTEPMAC) != 6 || p.VTEPMAC[0]&1 != 0 || isZeroMAC(p.VTEPMAC):
			return fmt.Errorf("%s: VTEP MAC %s is not a unicast Ethernet address: give the remote VXLAN device's MAC", what, p.VTEPMAC)
		case mac != nil && p.VTEPMAC.String() == mac.String():
			return fmt.Errorf("%s: VTEP MAC %s is this host's own device's", what, p.VTEPMAC)
		case !p.Underlay.IsValid() || p.Underlay.IsUnspecified() || p.Underlay.IsMulticast() || p.Underlay.Is4In6():
			return fmt.Errorf("%s: underlay address %s: give the remote node's unicast underlay address", what, p.Underlay)
		case local.IsValid() && p.Underlay.Is4() != local.Is4():
			return fmt.Errorf("%s: underlay address %s is not of the family of the device's local address %s", what, p.Underlay, local)
		case local == p.Underlay:
			return fmt.Errorf("%s: underlay address %s is this host's own", what, p.Underlay)
		}
		for j, q := range peers[:i] {
			if q.Slice.Overlaps(p.Slice) {
				return fmt.Errorf("%s overlaps peer %d's slice %s: give each node its own slice", what, j, q.Slice)
			}
		}
		if j, ok := gws[p.Gateway]; ok {
			return fmt.Errorf("%s: gateway %s is peer %d's too", what, p.Gateway, j)
		}
		// One MAC, one node: peers may share a MAC (a node's slices of
		// both families) only with its underlay address, which the one
		// FDB entry of that MAC points to.
		if j, ok := macs[keyOf(p.VTEPMAC)]; ok && peers[j].Underlay != p.Underlay {
			return fmt.Errorf("%s: VTEP MAC %s is peer %d's too, at underlay %s: give each node its own VTEP MAC", what, p.VTEPMAC, j, peers[j].Underlay)
		}
		gws[p.Gateway] = i
		if _, ok := macs[keyOf(p.VTEPMAC)]; !ok {
			macs[keyOf(p.VTEPMAC)] = i
		}
	}
	return nil
}

// EnsureVXLAN makes the VXLAN device v describes, or brings an existing one
// back to it: learning off, addrgenmode none, MAC, MTU, Addr as its only
// address, up. A link of that name that is not a VXLAN device is an error;
// a VXLAN device with another VNI, local address, underlay device, port
// or with learning on is deleted and made again (its peers' entries go
// with it: call SetPeers again). It returns the device's ifindex.
func (n *netlinkLinks) EnsureVXLAN(v VXLAN) (int, error) {
	if err := v.check(); err != nil {
		return 0, err
	}
	what := "vxlan " + v.Name
	under, err := n.h.LinkByName(v.Dev)
	if notFound(err) {
		return 0, fmt.Errorf("%s: underlay device %s does not exist: give an existing host link (ip link show)", what, v.Dev)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: look up underlay %s: %w", what, v.Dev, err)
	}
	maxMTU := under.Attrs().MTU - vxlanOverhead(v.Local)
	mtu := v.MTU
	if mtu == 0 {
		mtu = maxMTU
	}
	if mtu > maxMTU {
		return 0, fmt.Errorf("%s: MTU %d is above underlay %s's %d minus the %d bytes of encapsulation: give %d or less, or 0", what, mtu, v.Dev, under.Attrs().MTU, vxlanOverhead(v.Local), maxMTU)
	}
	l, err := n.h.LinkByName(v.Name)
	switch {
	case notFound(err):
		l = nil
	case err != nil:
		return 0, fmt.Errorf("look up %s: %w", v.Name, err)
	case l.Type() != "vxlan":
		return 0, fmt.Errorf("%s exists and is a %s, not a VXLAN device: pick another name or remove it", v.Name, l.Type())
	default:
		if bad := vxlanMismatch(v, l.(*netlink.Vxlan), under.Attrs().Index); bad != "" {
			n.log.Warn("vxlan device differs in what cannot be changed: making it again", "link", v.Name, "why", bad)
			if err := n.h.LinkDel(l); err != nil && !notFound(err) {
				return 0, fmt.Errorf("%s: %s: delete it to make it again: %w", what, bad, err)
			}
			l = nil
		}
	}
	mac := v.mac()
	if l == nil {
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: v.Name, MTU: mtu, HardwareAddr: mac},
			VxlanId:      v.VNI,
			VtepDevIndex: under.Attrs().Index,
			SrcAddr:      net.IP(v.Local.AsSlice()),
			Port:         v.port(),
			Learning:     false,
		}
		if err := n.h.LinkAdd(vx); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return 0, fmt.Errorf("create %s: %w (another VXLAN device of this host has VNI %d on port %d: one device per VNI and port)", what, err, v.VNI, v.port())
			}
			return 0, fmt.Errorf("create %s (VNI %d, local %s, dev %s): %w", what, v.VNI, v.Local, v.Dev, err)
		}
		if l, err = n.h.LinkByName(v.Name); err != nil {
			return 0, fmt.Errorf("look up new %s: %w", what, err)
		}
	}
	a := l.Attrs()
	// addrgenmode none before it is up: the kernel would give the device
	// a link-local address (and run DAD for it) that nothing uses.
	if err := n.raw.execute(addrGenModeNoneRequest(a.Index)); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return 0, fmt.Errorf("set addrgenmode none on %s: %w", v.Name, err)
	}
	if a.HardwareAddr.String() != mac.String() {
		if err := n.h.LinkSetHardwareAddr(l, mac); err != nil {
			return 0, fmt.Errorf("set MAC of %s to %s: %w", v.Name, mac, err)
		}
	}
	if a.MTU != mtu {
		if err := n.h.LinkSetMTU(l, mtu); err != nil {
			return 0, fmt.Errorf("set MTU of %s to %d: %w", v.Name, mtu, err)
		}
	}
	addrs, err := n.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("list addresses of %s: %w", v.Name, err)
	}
	have := map[netip.Prefix]bool{}
	for _, ad := range addrs {
		p, ok := toPrefix(ad.IPNet)
		if ok && slices.Contains(v.Addrs, p) {
			have[p] = true
			continue
		}
		// A stale slice address (the node's lease changed) would keep
		// attracting the old slice's traffic.
		if err := n.h.AddrDel(l, &ad); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return 0, fmt.Errorf("remove address %s from %s: %w", ad.IPNet, v.Name, err)
		}
	}
	if v.has6() {
		// Before its IPv6 address: no RA may give the host a route
		// through the device (see the bridge's, bridgeIPv6).
		if err := n.inSelf(func() error { return noAutoconf(v.Name) }); err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
	}
	for _, p := range v.Addrs {
		if have[p] {
			continue
		}
		if err := n.h.AddrReplace(l, hostAddr(p)); err != nil {
			return 0, fmt.Errorf("add %s to %s: %w", p, v.Name, addrErr(err, p, v.Name))
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := n.h.LinkSetUp(l); err != nil {
			return 0, fmt.Errorf("bring %s up: %w", v.Name, err)
		}
	}
	return a.Index, nil
}

// vxlanMismatch says how the existing device l differs from v in what
// only making it again changes; "" when it does not.
func vxlanMismatch(v VXLAN, l *netlink.Vxlan, underIdx int) string {
	local, _ := addrOf(l.SrcAddr)
	switch {
	case l.VxlanId != v.VNI:
		return fmt.Sprintf("%s has VNI %d, want %d", v.Name, l.VxlanId, v.VNI)
	case local != v.Local:
		return fmt.Sprintf("%s has local address %s, want %s", v.Name, local, v.Local)
	case l.VtepDevIndex != underIdx:
		return fmt.Sprintf("%s is not on underlay %s", v.Name, v.Dev)
	case l.Port != v.port():
		return fmt.Sprintf("%s has port %d, want %d", v.Name, l.Port, v.port())
	case l.Learning:
		return fmt.Sprintf("%s has learning on", v.Name)
	case l.FlowBased:
		return fmt.Sprintf("%s is a flow-based (external) device", v.Name)
	case l.Group != nil && !l.Group.IsUnspecified():
		return fmt.Sprintf("%s has a remote or group %s", v.Name, l.Group)
	}
	return ""
}

// DeleteVXLAN deletes a VXLAN device (its routes, neighbours and FDB
// entries go with it). A missing link is success; a link that is not a
// VXLAN device is left alone, with an error.
func (n *netlinkLinks) DeleteVXLAN(name string) error {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete vxlan %s: look it up: %w", name, err)
	}
	if l.Type() != "vxlan" {
		return fmt.Errorf("delete vxlan %s: it is a %s, not a VXLAN device: left alone", name, l.Type())
	}
	if err := n.del.execute(delLinkIndexRequest(l.Attrs().Index)); err != nil && !notFound(err) {
		return fmt.Errorf("delete vxlan %s: %w", name, err)
	}
	return nil
}

// CheckVXLAN compares the kernel with v (exists, is a VXLAN device with
// that VNI, local address, underlay, port, learning off, MAC, MTU,
// address, up) and describes each difference; nil when they match.
func (n *netlinkLinks) CheckVXLAN(v VXLAN) []string {
	l, err := n.h.LinkByName(v.Name)
	if err != nil {
		return []string{fmt.Sprintf("vxlan %s is missing", v.Name)}
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return []string{fmt.Sprintf("%s is a %s, not a VXLAN device", v.Name, l.Type())}
	}
	under, err := n.h.LinkByName(v.Dev)
	if err != nil {
		return []string{fmt.Sprintf("underlay %s of vxlan %s is missing", v.Dev, v.Name)}
	}
	var out []string
	if bad := vxlanMismatch(v, vx, under.Attrs().Index); bad != "" {
		out = append(out, bad)
	}
	a := l.Attrs()
	if mac := v.mac(); a.HardwareAddr.String() != mac.String() {
		out = append(out, fmt.Sprintf("%s has MAC %s, want %s", v.Name, a.HardwareAddr, mac))
	}
	mtu := v.MTU
	if mtu == 0 {
		mtu = under.Attrs().MTU - vxlanOverhead(v.Local)
	}
	if a.MTU != mtu {
		out = append(out, fmt.Sprintf("%s has MTU %d, want %d", v.Name, a.MTU, mtu))
	}
	if a.Flags&net.FlagUp == 0 {
		out = append(out, v.Name+" is down")
	}
	addrs, err := n.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return append(out, fmt.Sprintf("list addresses of %s: %v", v.Name, err))
	}
	have := map[netip.Prefix]bool{}
	for _, ad := range addrs {
		if p, ok := toPrefix(ad.IPNet); ok && slices.Contains(v.Addrs, p) {
			have[p] = true
		} else {
			out = append(out, fmt.Sprintf("%s has address %s, not pontoon's", v.Name, ad.IPNet))
		}
	}
	for _, p := range v.Addrs {
		if !have[p] {
			out = append(out, fmt.Sprintf("%s does not have address %s", v.Name, p))
		}
	}
	return out
}

// vxlanState is what the kernel holds for a VXLAN device that SetPeers
// manages: its routes with a gateway in the main table, its permanent
// neighbours, and its permanent unicast FDB entries.
type vxlanState struct {
	routes map[netip.Prefix]vxRoute
	neighs map[netip.Addr]macKey
	fdb    map[macKey][]netip.Addr // MAC → its remotes (one, normally)
}

// macKey is an Ethernet MAC as a map key.
type macKey [6]byte

func keyOf(mac net.HardwareAddr) (k macKey) {
	copy(k[:], mac)
	return k
}

func (k macKey) String() string { return net.HardwareAddr(k[:]).String() }

// peerState is the state peers want: what vxlanState holds when they are
// programmed.
func peerState(peers []Peer) vxlanState {
	st := vxlanState{routes: make(map[netip.Prefix]vxRoute, len(peers)), neighs: make(map[netip.Addr]macKey, len(peers)), fdb: make(map[macKey][]netip.Addr, len(peers))}
	for _, p := range peers {
		st.routes[p.Slice] = vxRoute{gw: p.Gateway, onlink: true}
		st.neighs[p.Gateway] = keyOf(p.VTEPMAC)
		st.fdb[keyOf(p.VTEPMAC)] = []netip.Addr{p.Underlay}
	}
	return st
}

type vxRoute struct {
	gw     netip.Addr
	onlink bool
}

// readVXLAN dumps the device's routes, neighbours and FDB entries: three
// dumps, each filtered by the kernel to the device where the socket's
// strict checking allows (NETLINK_GET_STRICT_CHK, 4.20), and in any case
// here.
func (n *netlinkLinks) readVXLAN(idx int) (vxlanState, error) {
	st := peerState(nil)
	s, err := n.raw.get()
	if err != nil {
		return st, err
	}
	fd := s.GetFd()
	strict := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1) == nil
	defer func() {
		if strict {
			if unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 0) != nil {
				s.Close()
				return
			}
		}
		if err != nil {
			s.Close() // a broken-off dump may leave answers behind
			return
		}
		n.raw.put(s)
	}()

	// Routes: rtmsg all zeros but the family (strict checking refuses
	// anything else), the table and the device as attributes.
	req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_DUMP)
	req.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_UNSPEC}})
	req.AddData(nl.NewRtAttr(unix.RTA_TABLE, nl.Uint32Attr(unix.RT_TABLE_MAIN)))
	req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(idx))))
	err = dump(s, req, func(m []byte) {
		if r, dst, ok := parseVXRoute(m, idx); ok {
			st.routes[dst] = r
		}
	})
	if err != nil {
		return st, fmt.Errorf("dump routes: %w", err)
	}

	// Neighbours of both families: the device as NDA_IFINDEX (ndm_ifindex
	// must be 0 with strict checking).
	req = nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
	req.AddData(&netlink.Ndmsg{Family: unix.AF_UNSPEC})
	req.AddData(nl.NewRtAttr(netlink.NDA_IFINDEX, nl.Uint32Attr(uint32(idx))))
	err = dump(s, req, func(m []byte) {
		nb, derr := netlink.NeighDeserialize(m)
		if derr != nil || nb.LinkIndex != idx || nb.Family == unix.AF_BRIDGE || nb.State&netlink.NUD_PERMANENT == 0 {
			return
		}
		if a, ok := addrOf(nb.IP); ok && len(nb.HardwareAddr) == 6 {
			st.neighs[a] = keyOf(nb.HardwareAddr)
		}
	})
	if err != nil {
		return st, fmt.Errorf("dump neighbours: %w", err)
	}

	// FDB: the device as ndm_ifindex (the bridge port filter of strict
	// checking; without it the kernel dumps every device's).
	req = nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
	req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(idx)})
	err = dump(s, req, func(m []byte) {
		nb, derr := netlink.NeighDeserialize(m)
		if derr != nil || nb.LinkIndex != idx || nb.Family != unix.AF_BRIDGE || nb.State&netlink.NUD_PERMANENT == 0 {
			return
		}
		if len(nb.HardwareAddr) != 6 || nb.HardwareAddr[0]&1 != 0 || isZeroMAC(nb.HardwareAddr) {
			return // flood and multicast entries are not pontoon's
		}
		if a, ok := addrOf(nb.IP); ok {
			k := keyOf(nb.HardwareAddr)
			st.fdb[k] = append(st.fdb[k], a)
		}
	})
	if err != nil {
		return st, fmt.Errorf("dump FDB: %w", err)
	}
	return st, nil
}

// parseVXRoute reads one route of a dump: a unicast route of the main
// table through device idx with a gateway (one pontoon made: the kernel's
// own routes on the device have none).
func parseVXRoute(m []byte, idx int) (vxRoute, netip.Prefix, bool) {
	msg := nl.DeserializeRtMsg(m)
	if msg.Type != unix.RTN_UNICAST || msg.Flags&unix.RTM_F_CLONED != 0 {
		return vxRoute{}, netip.Prefix{}, false
	}
	attrs, err := nl.ParseRouteAttr(m[msg.Len():])
	if err != nil {
		return vxRoute{}, netip.Prefix{}, false
	}
	table, oif := uint32(msg.Table), 0
	var dst, gw []byte
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_TABLE:
			table = nl.NativeEndian().Uint32(a.Value)
		case unix.RTA_OIF:
			oif = int(nl.NativeEndian().Uint32(a.Value))
		case unix.RTA_DST:
			dst = a.Value
		case unix.RTA_GATEWAY:
			gw = a.Value
		}
	}
	g, ok := netip.AddrFromSlice(gw)
	if table != unix.RT_TABLE_MAIN || oif != idx || !ok {
		return vxRoute{}, netip.Prefix{}, false
	}
	d := netip.IPv4Unspecified()
	if msg.Family == unix.AF_INET6 {
		d = netip.IPv6Unspecified()
	}
	if len(dst) > 0 {
		if d, ok = netip.AddrFromSlice(dst); !ok {
			return vxRoute{}, netip.Prefix{}, false
		}
	}
	return vxRoute{gw: g, onlink: msg.Flags&unix.RTNH_F_ONLINK != 0}, netip.PrefixFrom(d, int(msg.Dst_len)), true
}

// dump sends a dump request on s and passes each answer's payload to fn,
// until the kernel says it is done. An interrupted dump (the table changed
// meanwhile: NLM_F_DUMP_INTR) is done again, a few times.
func dump(s *nl.NetlinkSocket, req *nl.NetlinkRequest, fn func([]byte)) error {
	for try := 0; ; try++ {
		var got [][]byte
		intr, err := dumpOnce(s, req, func(m []byte) { got = append(got, m) })
		if err != nil {
			return err
		}
		if !intr || try == 4 {
			for _, m := range got {
				fn(m)
			}
			if intr {
				return netlink.ErrDumpInterrupted
			}
			return nil
		}
		req.Seq = nl.NewNetlinkRequest(0, 0).Seq // a fresh sequence number
	}
}

func dumpOnce(s *nl.NetlinkSocket, req *nl.NetlinkRequest, fn func([]byte)) (intr bool, err error) {
	if err := unix.Sendto(s.GetFd(), req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("netlink send: %w", err)
	}
	for {
		msgs, from, err := s.Receive()
		if err != nil {
			return false, fmt.Errorf("netlink receive: %w", err)
		}
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq {
				continue // a late answer to an earlier exchange
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				intr = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(nl.NativeEndian().Uint32(m.Data[0:4])); e != 0 {
						return false, unix.Errno(-e)
					}
				}
				return intr, nil
			default:
				fn(m.Data)
			}
		}
	}
}

// vxlanDevice looks up a VXLAN device for SetPeers and CheckPeers.
func (n *netlinkLinks) vxlanDevice(name string) (*netlink.Vxlan, error) {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return nil, fmt.Errorf("vxlan %s does not exist: make it first (EnsureVXLAN)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up vxlan %s: %w", name, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("%s is a %s, not a VXLAN device", name, l.Type())
	}
	return vx, nil
}

// SetPeers makes the device's routes, permanent neighbours and permanent
// FDB entries exactly those of peers: it reads what the device has (three
// dumps), then sends what differs in one batch, adds and replacements
// (FDB, neighbour, route: each usable once the one before is there) before
// deletions (route, neighbour, FDB). Entries that are not pontoon's
// (routes without a gateway, neighbours and FDB entries that are not
// permanent, flood entries) are left alone. Bad input changes nothing. It
// goes on after a failed request and returns them all.
func (n *netlinkLinks) SetPeers(vxlan string, peers []Peer) error {
	vx, err := n.vxlanDevice(vxlan)
	if err != nil {
		return err
	}
	local, _ := addrOf(vx.SrcAddr)
	if err := checkPeers(vxlan, local, vx.HardwareAddr, peers); err != nil {
		return err
	}
	idx := vx.Index
	st, err := n.readVXLAN(idx)
	if err != nil {
		return fmt.Errorf("vxlan %s: %w", vxlan, err)
	}
	var reqs []*nl.NetlinkRequest
	var whats []string
	add := func(r *nl.NetlinkRequest, what string) { reqs, whats = append(reqs, r), append(whats, what) }
	want := peerState(peers)
	// Adds and replacements; one FDB entry per MAC, however many slices
	// its node has.
	fdbDone := map[macKey]bool{}
	for _, p := range peers {
		if fdbDone[keyOf(p.VTEPMAC)] {
			continue
		}
		fdbDone[keyOf(p.VTEPMAC)] = true
		if have := st.fdb[keyOf(p.VTEPMAC)]; len(have) != 1 || have[0] != p.Underlay {
			if len(have) > 1 {
				// Replace changes only the first remote: start afresh.
				add(fdbDelRequest(idx, p.VTEPMAC), fmt.Sprintf("delete FDB %s", p.VTEPMAC))
			}
			add(fdbRequest(idx, p.VTEPMAC, p.Underlay), fmt.Sprintf("FDB %s dst %s", p.VTEPMAC, p.Underlay))
		}
	}
	for _, p := range peers {
		if have, ok := st.neighs[p.Gateway]; !ok || have != keyOf(p.VTEPMAC) {
			add(neighRequest(idx, p.Gateway, p.VTEPMAC), fmt.Sprintf("neighbour %s lladdr %s", p.Gateway, p.VTEPMAC))
		}
	}
	for _, p := range peers {
		if have, ok := st.routes[p.Slice]; !ok || have.gw != p.Gateway || !have.onlink {
			add(vxRouteRequest(unix.RTM_NEWROUTE, idx, p.Slice, p.Gateway), fmt.Sprintf("route %s via %s onlink", p.Slice, p.Gateway))
		}
	}
	// Deletions of what no peer wants.
	for dst, r := range st.routes {
		if _, ok := want.routes[dst]; !ok {
			add(vxRouteRequest(unix.RTM_DELROUTE, idx, dst, r.gw), fmt.Sprintf("delete route %s via %s", dst, r.gw))
		}
	}
	for gw := range st.neighs {
		if _, ok := want.neighs[gw]; !ok {
			add(neighDelRequest(idx, gw), fmt.Sprintf("delete neighbour %s", gw))
		}
	}
	for mac := range st.fdb {
		if _, ok := want.fdb[mac]; !ok {
			add(fdbDelRequest(idx, mac[:]), fmt.Sprintf("delete FDB %s", mac))
		}
	}
	if len(reqs) == 0 {
		return nil
	}
	errs, err := n.raw.transact(reqs, nil)
	if err != nil {
		return fmt.Errorf("vxlan %s: program peers: %w", vxlan, err)
	}
	var all []error
	for i, e := range errs {
		// Something already gone is what a delete wanted.
		if e == nil || (reqs[i].Type == unix.RTM_DELROUTE || reqs[i].Type == unix.RTM_DELNEIGH) && (errors.Is(e, unix.ESRCH) || errors.Is(e, unix.ENOENT)) {
			continue
		}
		all = append(all, fmt.Errorf("vxlan %s: %s: %w", vxlan, whats[i], e))
	}
	return errors.Join(all...)
}

// CheckPeers compares the device's routes, neighbours and FDB entries with
// peers and describes each difference, missing and extra; nil when they
// match. It changes nothing.
func (n *netlinkLinks) CheckPeers(vxlan string, peers []Peer) []string {
	vx, err := n.vxlanDevice(vxlan)
	if err != nil {
		return []string{err.Error()}
	}
	st, err := n.readVXLAN(vx.Index)
	if err != nil {
		return []string{fmt.Sprintf("vxlan %s: %v", vxlan, err)}
	}
	return st.diff(vxlan, peers)
}

// diff describes how st differs from peers, in `ip` words: what is
// missing or different in peers' order, then what is extra, sorted.
func (st vxlanState) diff(vx string, peers []Peer) []string {
	var out []string
	fdbSeen := map[macKey]bool{}
	for _, p := range peers {
		switch r, ok := st.routes[p.Slice]; {
		case !ok:
			out = append(out, fmt.Sprintf("no route %s via %s dev %s onlink", p.Slice, p.Gateway, vx))
		case r.gw != p.Gateway || !r.onlink:
			out = append(out, fmt.Sprintf("route %s dev %s is via %s (onlink %v), want via %s onlink", p.Slice, vx, r.gw, r.onlink, p.Gateway))
		}
		switch mac, ok := st.neighs[p.Gateway]; {
		case !ok:
			out = append(out, fmt.Sprintf("no neighbour %s lladdr %s dev %s permanent", p.Gateway, p.VTEPMAC, vx))
		case mac != keyOf(p.VTEPMAC):
			out = append(out, fmt.Sprintf("neighbour %s dev %s has lladdr %s, want %s", p.Gateway, vx, mac, p.VTEPMAC))
		}
		if fdbSeen[keyOf(p.VTEPMAC)] {
			continue // the node's other slice: its FDB entry is described
		}
		fdbSeen[keyOf(p.VTEPMAC)] = true
		switch dsts := st.fdb[keyOf(p.VTEPMAC)]; {
		case len(dsts) == 0:
			out = append(out, fmt.Sprintf("no FDB entry %s dst %s dev %s permanent", p.VTEPMAC, p.Underlay, vx))
		case len(dsts) > 1 || dsts[0] != p.Underlay:
			out = append(out, fmt.Sprintf("FDB entry %s dev %s has dst %v, want %s", p.VTEPMAC, vx, dsts, p.Underlay))
		}
	}
	want := peerState(peers)
	var extra []string
	for dst, r := range st.routes {
		if _, ok := want.routes[dst]; !ok {
			extra = append(extra, fmt.Sprintf("route %s via %s dev %s is no peer's", dst, r.gw, vx))
		}
	}
	for gw, mac := range st.neighs {
		if _, ok := want.neighs[gw]; !ok {
			extra = append(extra, fmt.Sprintf("neighbour %s lladdr %s dev %s is no peer's", gw, mac, vx))
		}
	}
	for mac, dsts := range st.fdb {
		if _, ok := want.fdb[mac]; !ok {
			extra = append(extra, fmt.Sprintf("FDB entry %s dst %v dev %s is no peer's", mac, dsts, vx))
		}
	}
	slices.Sort(extra) // maps: a stable order
	return append(out, extra...)
}

// fdbRequest is `bridge fdb replace MAC dev IDX dst DST self permanent`.
func fdbRequest(idx int, mac net.HardwareAddr, dst netip.Addr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(idx), State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF})
	req.AddData(nl.NewRtAttr(netlink.NDA_LLADDR, []byte(mac)))
	req.AddData(nl.NewRtAttr(netlink.NDA_DST, dst.AsSlice()))
	return req
}

// fdbDelRequest is `bridge fdb del MAC dev IDX self`: the entry with all
// its remotes.
func fdbDelRequest(idx int, mac net.HardwareAddr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_DELNEIGH, unix.NLM_F_ACK)
	req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(idx), Flags: netlink.NTF_SELF})
	req.AddData(nl.NewRtAttr(netlink.NDA_LLADDR, []byte(mac)))
	return req
}

// neighRequest is `ip neigh replace GW lladdr MAC dev IDX nud permanent`.
func neighRequest(idx int, gw netip.Addr, mac net.HardwareAddr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	req.AddData(&netlink.Ndmsg{Family: uint8(familyOf(gw).af), Index: uint32(idx), State: netlink.NUD_PERMANENT})
	req.AddData(nl.NewRtAttr(netlink.NDA_DST, gw.AsSlice()))
	req.AddData(nl.NewRtAttr(netlink.NDA_LLADDR, []byte(mac)))
	return req
}

// neighDelRequest is `ip neigh del GW dev IDX`.
func neighDelRequest(idx int, gw netip.Addr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_DELNEIGH, unix.NLM_F_ACK)
	req.AddData(&netlink.Ndmsg{Family: uint8(familyOf(gw).af), Index: uint32(idx)})
	req.AddData(nl.NewRtAttr(netlink.NDA_DST, gw.AsSlice()))
	return req
}

// vxRouteRequest is `ip route replace DST via GW dev IDX onlink`
// (RTM_NEWROUTE) or `ip route del DST via GW dev IDX` (RTM_DELROUTE), in
// the main table.
func vxRouteRequest(typ, idx int, dst netip.Prefix, gw netip.Addr) *nl.NetlinkRequest {
	flags := unix.NLM_F_ACK
	msg := nl.NewRtMsg() // main table, boot protocol, universe scope, unicast
	if typ == unix.RTM_NEWROUTE {
		flags |= unix.NLM_F_CREATE | unix.NLM_F_REPLACE
		msg.Flags = unix.RTNH_F_ONLINK
	} else {
		msg = nl.NewRtDelMsg()
	}
	req := nl.NewNetlinkRequest(typ, flags)
	msg.Family = uint8(familyOf(dst.Addr()).af)
	msg.Dst_len = uint8(dst.Bits())
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.RTA_DST, dst.Addr().AsSlice()))
	req.AddData(nl.NewRtAttr(unix.RTA_GATEWAY, gw.AsSlice()))
	req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(idx))))
	return req
}
