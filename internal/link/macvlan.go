package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
)

// Macvlan endpoints: a sandbox's interface is a macvlan on a host link (the
// parent), with its own MAC on the parent's Ethernet segment, and no host
// end. The plumbing (L2) is here; the interface is configured, checked and
// repaired as every endpoint's is (Iface: configureIface, checkIface,
// repairIface).
//
// Kernel behaviour to know (drivers/net/macvlan.c, 6.18):
//   - The host cannot reach its own macvlans through the parent: frames the
//     parent sends go out of it, never to its macvlans, and frames a macvlan
//     sends reach the parent's segment, never the parent's own stack. A
//     host-side macvlan on the same parent (a shim, EnsureShim) is how the
//     host talks to them.
//   - Modes: bridge (siblings on one parent reach each other inside the
//     kernel), private (they never do), vepa (sibling traffic goes out to
//     the switch, which must send it back: a "hairpin" or reflective relay
//     port), passthru (one macvlan takes the parent over: at most one on
//     the parent, of no other mode, and it has the parent's MAC).
//   - A macvlan's MTU is at most the parent's (EINVAL); its MAC must be
//     unicast and differ from the parent's and from its siblings'
//     (EADDRINUSE when it comes up).
//   - Deleting the parent deletes every macvlan on it, in whatever
//     namespace it is (macvlan_device_event, NETDEV_UNREGISTER). The parent
//     going down takes their carrier: they stay up but carry nothing.
//   - A parent cannot be a bridge or bond port (both want its receive
//     handler: EBUSY); use the bridge or the bond itself.

// Macvlan describes one endpoint that is a macvlan on a host link, made
// directly in the sandbox namespace.
type Macvlan struct {
	Parent string // host link it is on: eth0, bond0, eth0.50
	// Mode is bridge (the default, ""), private, vepa or passthru.
	Mode string
	// Iface is the interface in the sandbox. MTU 0: the parent's. In
	// passthru mode the macvlan has the parent's MAC: give that MAC or
	// none (then the parent's is used for the IPv6 link-local address).
	Iface
}

// ShimPrefix starts the name of every host-side shim (EnsureShim):
// pontoon owns every link whose name starts with it, and garbage
// collection may delete one that no network records.
const ShimPrefix = "ptm-"

// Shim is a host-side macvlan on a macvlan network's parent, in bridge
// mode, through which the host reaches the network's members (it cannot
// through the parent itself).
type Shim struct {
	Name   string // starts with ShimPrefix, at most 15 characters
	Parent string
	// Addrs are the host's addresses on the shim, one per subnet it
	// reaches (10.95.0.2/24, or /32 beside an address the host already
	// has in that subnet on the parent).
	Addrs []netip.Prefix
	// Routes are destinations routed through the shim ("ip route replace
	// ROUTE dev NAME"): the members' addresses or range, when Addrs do not
	// cover them with their connected routes.
	Routes []netip.Prefix
}

// macvlanModes are the modes pontoon makes, by name: the kernel's values
// (IFLA_MACVLAN_MODE) and the netlink library's.
var macvlanModes = map[string]struct {
	kernel uint32
	lib    netlink.MacvlanMode
}{
	"bridge":   {nl.MACVLAN_MODE_BRIDGE, netlink.MACVLAN_MODE_BRIDGE},
	"private":  {nl.MACVLAN_MODE_PRIVATE, netlink.MACVLAN_MODE_PRIVATE},
	"vepa":     {nl.MACVLAN_MODE_VEPA, netlink.MACVLAN_MODE_VEPA},
	"passthru": {nl.MACVLAN_MODE_PASSTHRU, netlink.MACVLAN_MODE_PASSTHRU},
}

// mode is m.Mode with the default filled in.
func (m Macvlan) mode() string {
	if m.Mode == "" {
		return "bridge"
	}
	return m.Mode
}

// modeName is the name of a macvlan's mode as the netlink library reads it.
func modeName(lib netlink.MacvlanMode) string {
	for name, md := range macvlanModes {
		if md.lib == lib {
			return name
		}
	}
	return fmt.Sprintf("mode %d", lib)
}

// checkIfName refuses a name the kernel would (dev_valid_name).
func checkIfName(what, name string) error {
	if name == "" || len(name) > unix.IFNAMSIZ-1 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("%s: invalid interface name %q: give 1 to 15 characters without '/', ':' or blanks", what, name)
	}
	return nil
}

// check refuses a Macvlan that cannot be made whatever the kernel holds.
func (m Macvlan) check() error {
	what := "macvlan " + m.IfName
	if err := checkIfName(what, m.IfName); err != nil {
		return err
	}
	if m.Parent == "" {
		return fmt.Errorf("%s: no parent: give the host link it goes on", what)
	}
	if err := checkIfName(what+": parent", m.Parent); err != nil {
		return err
	}
	if _, ok := macvlanModes[m.mode()]; !ok {
		return fmt.Errorf("%s: unknown mode %q: give bridge, private, vepa or passthru", what, m.Mode)
	}
	if m.Netns == "" {
		return fmt.Errorf("%s: no sandbox namespace given", what)
	}
	if m.MTU < 0 || (m.MTU > 0 && m.MTU < 68) {
		return fmt.Errorf("%s: MTU %d: give at least 68 (IPv6 needs 1280), or 0 for the parent's", what, m.MTU)
	}
	if m.MAC != nil && (len(m.MAC) != 6 || m.MAC[0]&1 != 0 || isZeroMAC(m.MAC)) {
		return fmt.Errorf("%s: MAC %s is not a unicast Ethernet address: give 6 bytes, the first even (02:42:…)", what, m.MAC)
	}
	return nil
}

func isZeroMAC(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}

// resolve checks m against its parent (the host link p) and returns the
// Iface to configure: in passthru mode, with the parent's MAC.
func (m Macvlan) resolve(p netlink.Link) (Iface, error) {
	what := "macvlan " + m.IfName
	a := p.Attrs()
	if a.EncapType != "ether" || a.Flags&net.FlagLoopback != 0 {
		return Iface{}, fmt.Errorf("%s: parent %s is a %s link, not Ethernet: give an Ethernet link (a NIC, bond, bridge or VLAN)", what, m.Parent, a.EncapType)
	}
	if a.MasterIndex != 0 {
		return Iface{}, fmt.Errorf("%s: parent %s is a port of another link (bridge or bond): give that bridge or bond as the parent", what, m.Parent)
	}
	if m.MTU > a.MTU {
		return Iface{}, fmt.Errorf("%s: MTU %d is above parent %s's %d: a macvlan's MTU is at most its parent's; give %d or less, or 0", what, m.MTU, m.Parent, a.MTU, a.MTU)
	}
	ifc := m.Iface
	if m.mode() == "passthru" {
		if ifc.MAC != nil && ifc.MAC.String() != a.HardwareAddr.String() {
			return Iface{}, fmt.Errorf("%s: in passthru mode it has parent %s's MAC %s: give that MAC or none", what, m.Parent, a.HardwareAddr)
		}
		ifc.MAC = a.HardwareAddr
	} else if ifc.MAC != nil && ifc.MAC.String() == a.HardwareAddr.String() {
		return Iface{}, fmt.Errorf("%s: MAC %s is parent %s's: give the macvlan a MAC of its own", what, ifc.MAC, m.Parent)
	}
	if err := ifc.check(what); err != nil {
		return Iface{}, err
	}
	return ifc, nil
}

// parentLink looks up a macvlan's parent in the host namespace.
func (n *netlinkLinks) parentLink(what, name string) (netlink.Link, error) {
	p, err := n.h.LinkByName(name)
	if notFound(err) {
		return nil, fmt.Errorf("%s: parent %s does not exist: give an existing host link (ip link show)", what, name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: look up parent %s: %w", what, name, err)
	}
	return p, nil
}

// parentUp brings a parent up if it is down: its macvlans (and VLANs)
// carry nothing while it is.
func (n *netlinkLinks) parentUp(what string, p netlink.Link) error {
	if p.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := n.h.LinkSetUp(p); err != nil {
		return fmt.Errorf("%s: bring parent %s up: %w", what, p.Attrs().Name, err)
	}
	return nil
}

// AddMacvlan makes the macvlan directly in the sandbox (createMacvlan),
// then configures it (configureIface). Everything that can be checked is
// checked before the kernel is changed; on a later error the macvlan is
// deleted again.
func (n *netlinkLinks) AddMacvlan(m Macvlan) error {
	if err := m.check(); err != nil {
		return err
	}
	what := "macvlan " + m.IfName
	p, err := n.parentLink(what, m.Parent)
	if err != nil {
		return err
	}
	ifc, err := m.resolve(p)
	if err != nil {
		return err
	}
	ns, err := netns.OpenChecked(m.Netns, m.NetnsIno)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer ns.Close()
	if err := n.parentUp(what, p); err != nil {
		return err
	}
	if err := n.createMacvlan(m, ifc, p.Attrs().Index, ns); err != nil {
		return err
	}
	if err := n.configureIface(ns, 0, ifc); err != nil {
		if derr := deleteIn(ns, m.IfName); derr != nil {
			n.log.Error("roll back macvlan", "link", m.IfName, "netns", m.Netns, "err", derr)
		}
		if errors.Is(err, unix.EADDRINUSE) {
			return fmt.Errorf("%w (MAC %s is another macvlan's on %s: give each endpoint its own MAC)", err, ifc.MAC, m.Parent)
		}
		return err
	}
	return nil
}

// createMacvlan makes the macvlan in one RTM_NEWLINK on the host's socket:
// IFLA_LINK names the parent by its ifindex in the host namespace (the
// namespace of the requesting socket), IFLA_NET_NS_FD puts the new link in
// the sandbox at once (no move: no second RCU barrier), with its MAC, MTU
// and mode. It is left down for configureIface.
//
// No NLM_F_ECHO, unlike createVeth: the kernel sends the echo from the new
// link's namespace (rtnl_notify on dev_net), to the requester's port id
// looked up in that namespace — it never reaches a socket in the host.
// configureIface looks the ifindex up on its socket in the sandbox.
func (n *netlinkLinks) createMacvlan(m Macvlan, ifc Iface, parentIdx int, ns vnetns.NsHandle) error {
	err := n.raw.execute(macvlanRequest(ifc.IfName, parentIdx, int(ns), m.mode(), ifc.MTU, sendMAC(m, ifc)))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("create macvlan %s on %s: an interface of that name exists in the sandbox: %w", m.IfName, m.Parent, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("create macvlan %s on %s in mode %s: %w (a parent with a passthru macvlan takes no other, and a passthru macvlan needs a parent without macvlans)", m.IfName, m.Parent, m.mode(), err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("create macvlan %s on %s: %w (the parent is used by something that excludes macvlans: a bridge or bond port, an ipvlan parent)", m.IfName, m.Parent, err)
	}
	return fmt.Errorf("create macvlan %s on %s in %s: %w", m.IfName, m.Parent, m.Netns, err)
}

// sendMAC: a passthru macvlan takes the parent's MAC whatever it is given.
func sendMAC(m Macvlan, ifc Iface) net.HardwareAddr {
	if m.mode() == "passthru" {
		return nil
	}
	return ifc.MAC
}

// macvlanRequest is the RTM_NEWLINK for a macvlan named name on the link
// parentIdx of the requesting socket's namespace, created in the namespace
// nsFd (-1: the requester's), down.
func macvlanRequest(name string, parentIdx, nsFd int, mode string, mtu int, mac net.HardwareAddr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_LINK, nl.Uint32Attr(uint32(parentIdx))))
	if mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	}
	if mac != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(mac)))
	}
	if nsFd >= 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(nsFd))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("macvlan"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_MACVLAN_MODE, nl.Uint32Attr(macvlanModes[mode].kernel))
	req.AddData(info)
	return req
}

// deleteIn deletes the link named name in the namespace ns; a missing link
// is success.
func deleteIn(ns vnetns.NsHandle, name string) error {
	sh, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer sh.Close()
	return deleteByNameOn(sh, name)
}

func deleteByNameOn(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := h.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// DeleteIface deletes the interface ifname in the sandbox at netns (an
// endpoint without a host end: a macvlan). A missing link, or a namespace
// that is gone or is no longer the one with identity ino, is success.
func (n *netlinkLinks) DeleteIface(netnsPath string, ino uint64, ifname string) error {
	sh, err := handleAtPath(netnsPath, ino)
	if errors.Is(err, ErrNetnsGone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s in %s: %w", ifname, netnsPath, err)
	}
	defer sh.Close()
	if err := deleteByNameOn(sh, ifname); err != nil {
		return fmt.Errorf("in %s: %w", netnsPath, err)
	}
	return nil
}

// CheckMacvlan compares the kernel with m and describes each difference:
// parent missing or down, the macvlan missing in the sandbox, not a
// macvlan, on another parent, in another mode, and what checkIface finds.
// It changes nothing.
func (n *netlinkLinks) CheckMacvlan(m Macvlan) []string {
	p, err := n.h.LinkByName(m.Parent)
	if err != nil {
		return []string{fmt.Sprintf("parent %s of macvlan %s is missing", m.Parent, m.IfName)}
	}
	var out []string
	if p.Attrs().Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("parent %s is down", m.Parent))
	}
	sh, err := handleAtPath(m.Netns, m.NetnsIno)
	if err != nil {
		return append(out, fmt.Sprintf("sandbox namespace: %v", err))
	}
	defer sh.Close()
	l, err := sh.LinkByName(m.IfName)
	if err != nil {
		return append(out, fmt.Sprintf("%s is missing in the sandbox", m.IfName))
	}
	if bad := macvlanMismatch(m, l, p); bad != "" {
		return append(out, bad)
	}
	ifc := m.Iface
	if m.mode() == "passthru" && ifc.MAC == nil {
		ifc.MAC = p.Attrs().HardwareAddr
	}
	return append(out, checkIface(sh, l, ifc)...)
}

// macvlanMismatch says how the sandbox's link l is not m's macvlan on
// parent p; "" when it is.
func macvlanMismatch(m Macvlan, l netlink.Link, p netlink.Link) string {
	mv, ok := l.(*netlink.Macvlan)
	if !ok {
		return fmt.Sprintf("%s in the sandbox is a %s, not a macvlan", m.IfName, l.Type())
	}
	// IFLA_LINK of a link in the sandbox is its parent's ifindex in the
	// parent's namespace (IFLA_LINK_NETNSID says which).
	if mv.ParentIndex != p.Attrs().Index || mv.NetNsID < 0 {
		return fmt.Sprintf("%s in the sandbox is not a macvlan on %s", m.IfName, m.Parent)
	}
	if got := modeName(mv.Mode); got != m.mode() {
		return fmt.Sprintf("%s is a macvlan in mode %s, want %s", m.IfName, got, m.mode())
	}
	return ""
}

// RepairMacvlan brings an endpoint back to m and says what it changed: a
// parent that is down is brought up; a missing macvlan, or a link of its
// name that is not m's macvlan, is made again; otherwise only what differs
// in the interface is set (repairIface). A missing parent cannot be
// repaired: its macvlans went with it.
func (n *netlinkLinks) RepairMacvlan(m Macvlan) ([]Fix, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	what := "macvlan " + m.IfName
	p, err := n.parentLink(what, m.Parent)
	if err != nil {
		return nil, err
	}
	ifc, err := m.resolve(p)
	if err != nil {
		return nil, err
	}
	var fx fixes
	fix := fx.add
	if p.Attrs().Flags&net.FlagUp == 0 {
		fix("link", "brought parent "+m.Parent+" up", n.h.LinkSetUp(p))
	}
	sh, err := handleAtPath(m.Netns, m.NetnsIno)
	if err != nil {
		return fx.done, err
	}
	defer sh.Close()
	l, err := sh.LinkByName(m.IfName)
	switch {
	case notFound(err):
		l = nil
	case err != nil:
		return fx.done, fmt.Errorf("look up %s in the sandbox: %w", m.IfName, err)
	default:
		if bad := macvlanMismatch(m, l, p); bad != "" {
			// Not ours, or not as asked (mode, parent): made again.
			if err := sh.LinkDel(l); err != nil && !notFound(err) {
				return fx.done, fmt.Errorf("%s: delete it: %w", bad, err)
			}
			l = nil
		}
	}
	if l == nil {
		if err := n.AddMacvlan(m); err != nil {
			return fx.done, err
		}
		return append(fx.done, Fix{"macvlan", "recreated macvlan " + m.IfName + " on " + m.Parent}), errors.Join(fx.errs...)
	}
	k := len(fx.done)
	repairIface(sh, l, ifc, fix)
	if len(fx.done) > k {
		// As in RepairVeth: neighbour entries left INCOMPLETE or FAILED
		// while the link was broken would hold traffic up for a second.
		n.forgetUnresolved(sh, l.Attrs().Index, nil)
	}
	return fx.done, errors.Join(fx.errs...)
}

// vlanName is the 802.1Q sub-interface name of parent for VLAN id.
func vlanName(parent string, id int) string { return parent + "." + strconv.Itoa(id) }

// checkVLAN refuses a VLAN that cannot be named or numbered.
func checkVLAN(parent string, id int) (string, error) {
	if id < 1 || id > 4094 {
		return "", fmt.Errorf("VLAN %d on %s: give a VLAN ID from 1 to 4094", id, parent)
	}
	if err := checkIfName("VLAN parent", parent); err != nil {
		return "", err
	}
	name := vlanName(parent, id)
	if len(name) > unix.IFNAMSIZ-1 {
		return "", fmt.Errorf("VLAN %d on %s: its link would be named %s, %d characters, and the kernel takes at most 15: give a parent with a shorter name, or create the VLAN link yourself (ip link add link %s name NAME type vlan id %d) and give it as the parent", id, parent, name, len(name), parent, id)
	}
	return name, nil
}

// EnsureVLAN makes the 802.1Q sub-interface <parent>.<id> on the host and
// brings it (and the parent) up. A link of that name that is already a
// VLAN id on parent is reused (created false); any other link of that
// name is an error.
func (n *netlinkLinks) EnsureVLAN(parent string, id int) (string, bool, error) {
	name, err := checkVLAN(parent, id)
	if err != nil {
		return "", false, err
	}
	what := "VLAN " + name
	p, err := n.parentLink(what, parent)
	if err != nil {
		return "", false, err
	}
	created := false
	l, err := n.h.LinkByName(name)
	switch {
	case notFound(err):
		if err := n.parentUp(what, p); err != nil {
			return "", false, err
		}
		v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index}, VlanId: id, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
		if err := n.h.LinkAdd(v); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return "", false, fmt.Errorf("create %s: this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q, module 8021q): load the module, or give an untagged parent: %w", what, err)
			}
			return "", false, fmt.Errorf("create %s on %s: %w", what, parent, err)
		}
		created = true
		if l, err = n.h.LinkByName(name); err != nil {
			return "", false, fmt.Errorf("look up new %s: %w", what, err)
		}
	case err != nil:
		return "", false, fmt.Errorf("look up %s: %w", name, err)
	default:
		v, ok := l.(*netlink.Vlan)
		if !ok || v.ParentIndex != p.Attrs().Index || v.VlanId != id {
			return "", false, fmt.Errorf("%s exists and is not VLAN %d on %s (it is a %s): remove it, or give it as the parent itself", name, id, parent, l.Type())
		}
		if err := n.parentUp(what, p); err != nil {
			return "", false, err
		}
	}
	if err := n.h.LinkSetUp(l); err != nil {
		if created {
			_ = n.h.LinkDel(l)
		}
		return "", false, fmt.Errorf("bring %s up: %w", name, err)
	}
	return name, created, nil
}

// DeleteVLAN deletes a VLAN link of the host (one EnsureVLAN created). A
// missing link is success; a link of that name that is not a VLAN is left
// alone, with an error.
func (n *netlinkLinks) DeleteVLAN(name string) error {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Vlan); !ok {
		return fmt.Errorf("delete VLAN %s: it is a %s, not a VLAN: left alone", name, l.Type())
	}
	if err := n.h.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete VLAN %s: %w", name, err)
	}
	return nil
}

// check refuses a Shim that cannot be made whatever the kernel holds.
func (s Shim) check() error {
	what := "shim " + s.Name
	if err := checkIfName(what, s.Name); err != nil {
		return err
	}
	if !strings.HasPrefix(s.Name, ShimPrefix) {
		return fmt.Errorf("%s: a shim's name starts with %q (pontoon owns such links)", what, ShimPrefix)
	}
	if err := checkIfName(what+": parent", s.Parent); err != nil {
		return err
	}
	if err := checkAddrs(what, s.Addrs); err != nil {
		return err
	}
	for _, r := range s.Routes {
		if !r.IsValid() || r.Addr().Is4In6() {
			return fmt.Errorf("%s: invalid route %s: give a destination prefix (10.95.0.8/29, fd00:95::/64)", what, r)
		}
	}
	return nil
}

// shimRoutes are the routes of a shim with ifindex idx.
func shimRoutes(s Shim, idx int) []*netlink.Route {
	out := make([]*netlink.Route, len(s.Routes))
	for i, r := range s.Routes {
		out[i] = &netlink.Route{LinkIndex: idx, Dst: ipNet(r.Masked()), Scope: familyOf(r.Addr()).connected}
	}
	return out
}

// EnsureShim makes the host's shim on a macvlan network's parent (or takes
// the one of that name back), and gives it its addresses, up, and its
// routes. Like a bridge it makes no IPv6 address of its own and accepts no
// router advertisements; with an IPv6 address it gets the link-local one
// derived from its MAC. Called again it repairs what differs.
func (n *netlinkLinks) EnsureShim(s Shim) error {
	if err := s.check(); err != nil {
		return err
	}
	what := "shim " + s.Name
	p, err := n.parentLink(what, s.Parent)
	if err != nil {
		return err
	}
	if p.Attrs().EncapType != "ether" || p.Attrs().MasterIndex != 0 {
		return fmt.Errorf("%s: parent %s cannot carry macvlans (not Ethernet, or a bridge or bond port)", what, s.Parent)
	}
	l, err := n.h.LinkByName(s.Name)
	switch {
	case notFound(err):
		if err := n.parentUp(what, p); err != nil {
			return err
		}
		if err := n.raw.execute(macvlanRequest(s.Name, p.Attrs().Index, -1, "bridge", 0, nil)); err != nil {
			return fmt.Errorf("create %s on %s: %w", what, s.Parent, err)
		}
		if l, err = n.h.LinkByName(s.Name); err != nil {
			return fmt.Errorf("look up new %s: %w", what, err)
		}
	case err != nil:
		return fmt.Errorf("look up %s: %w", s.Name, err)
	default:
		if bad := shimMismatch(s, l, p); bad != "" {
			return fmt.Errorf("%s: remove it (ip link del %s), and EnsureShim makes it again", bad, s.Name)
		}
		if err := n.parentUp(what, p); err != nil {
			return err
		}
	}
	// A shim's IPv6 is a bridge's: addrgenmode none, no router
	// advertisements, its link-local address from its MAC (bridgeIPv6).
	if err := n.bridgeIPv6(Bridge{Name: s.Name, Gateways: s.Addrs}, l); err != nil {
		return err
	}
	for _, a := range s.Addrs {
		if err := n.h.AddrReplace(l, hostAddr(a)); err != nil {
			return fmt.Errorf("add %s to %s: %w", a, s.Name, addrErr(err, a, s.Name))
		}
	}
	if hasIPv6(s.Addrs) && !hasLinkLocal(n.h, l) {
		ll := LinkLocal(l.Attrs().HardwareAddr)
		if err := n.h.AddrReplace(l, hostAddr(ll)); err != nil {
			return fmt.Errorf("add link-local %s to %s: %w", ll, s.Name, addrErr(err, ll, s.Name))
		}
	}
	if err := n.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", s.Name, err)
	}
	for _, r := range shimRoutes(s, l.Attrs().Index) {
		if err := n.h.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s dev %s: %w", r.Dst, s.Name, err)
		}
	}
	return nil
}

func hasIPv6(ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Addr().Is6() {
			return true
		}
	}
	return false
}

// shimMismatch says how the host link l is not s's shim on parent p; ""
// when it is.
func shimMismatch(s Shim, l, p netlink.Link) string {
	mv, ok := l.(*netlink.Macvlan)
	switch {
	case !ok:
		return fmt.Sprintf("%s exists and is a %s, not a shim", s.Name, l.Type())
	case mv.ParentIndex != p.Attrs().Index:
		return fmt.Sprintf("%s exists and is a macvlan on another parent than %s", s.Name, s.Parent)
	case mv.Mode != netlink.MACVLAN_MODE_BRIDGE:
		return fmt.Sprintf("%s is a macvlan in mode %s, not bridge", s.Name, modeName(mv.Mode))
	}
	return ""
}

// CheckShim compares the kernel with s and describes each difference:
// missing, not a bridge-mode macvlan on the parent, down, an address,
// the link-local address or a route missing. EnsureShim repairs them.
func (n *netlinkLinks) CheckShim(s Shim) []string {
	l, err := n.h.LinkByName(s.Name)
	if err != nil {
		return []string{fmt.Sprintf("shim %s is missing", s.Name)}
	}
	p, err := n.h.LinkByName(s.Parent)
	if err != nil {
		return []string{fmt.Sprintf("parent %s of shim %s is missing", s.Parent, s.Name)}
	}
	if bad := shimMismatch(s, l, p); bad != "" {
		return []string{bad}
	}
	var out []string
	if l.Attrs().Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("shim %s is down", s.Name))
	}
	for _, a := range s.Addrs {
		if !hasAddr(n.h, l, a) {
			out = append(out, fmt.Sprintf("shim %s does not have address %s", s.Name, a))
		}
	}
	if hasIPv6(s.Addrs) && !hasLinkLocal(n.h, l) {
		out = append(out, fmt.Sprintf("shim %s has no IPv6 link-local address", s.Name))
	}
	for _, r := range shimRoutes(s, l.Attrs().Index) {
		if !hasRoute(n.h, r) {
			out = append(out, fmt.Sprintf("no route %s dev %s", r.Dst, s.Name))
		}
	}
	return out
}

// DeleteShim deletes a shim (its addresses and routes go with it). A
// missing link is success; a link of that name that is not a macvlan is
// left alone, with an error.
func (n *netlinkLinks) DeleteShim(name string) error {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Macvlan); !ok {
		return fmt.Errorf("delete shim %s: it is a %s, not a macvlan: left alone", name, l.Type())
	}
	if err := n.h.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete shim %s: %w", name, err)
	}
	return nil
}
