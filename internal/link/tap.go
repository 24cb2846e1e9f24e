package link

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Tap describes a VM's tap device on a network's bridge: a persistent
// tap (IFF_TAP) that a hypervisor opens by name later. Until a process
// has it open the tap has no carrier: it is up, on the bridge, but its
// port is disabled and carries nothing (see AddTap).
type Tap struct {
	Name   string // the tap, e.g. ptt-1a2b3c4d
	Bridge string
	MTU    int // 0: the kernel's default (1500)
	// MAC is the VM's MAC, for the record and for a VLAN port's FDB
	// entry (see vlanRequests); it is not set on the tap itself (the
	// tap's own MAC is the host side's, never the VM's).
	MAC net.HardwareAddr
	// Owner and Group: who may open the tap besides CAP_NET_ADMIN (the
	// kernel's tun_not_capable: a process must match both when both are
	// set). -1: none. With neither, any process that can open
	// /dev/net/tun (mode 0666 on Debian) may attach to the tap and put
	// frames on the bridge: the zero value, 0 and 0, leaves it to root.
	Owner, Group int
	// MultiQueue: IFF_MULTI_QUEUE, for a hypervisor that opens one queue
	// per vCPU (QEMU's queues=N). Fixed for the tap's lifetime: opening
	// it with the other setting fails (EINVAL).
	MultiQueue bool
	Isolated   bool // bridge port isolation (network with icc=false)
	// NoHairpin: the port is not in hairpin mode (see Veth.NoHairpin).
	NoHairpin bool
	// VLAN ≠ 0: the port's PVID, untagged, on a VLAN-filtering bridge
	// (see vlanRequests).
	VLAN int
}

// check refuses a Tap that cannot be made, before anything is.
func (t Tap) check() error {
	if err := checkLinkName("tap", t.Name); err != nil {
		return err
	}
	what := "tap " + t.Name
	if t.MTU < 0 {
		return fmt.Errorf("%s: MTU %d is negative: give 0 for the default or the network's MTU", what, t.MTU)
	}
	if t.Owner < -1 || t.Group < -1 {
		return fmt.Errorf("%s: owner %d, group %d: give a uid and gid, or -1 for none", what, t.Owner, t.Group)
	}
	if t.VLAN < 0 || t.VLAN > 4094 {
		return fmt.Errorf("%s: VLAN %d is out of range: give 1–4094, or 0 for none", what, t.VLAN)
	}
	if t.MAC != nil && len(t.MAC) != 6 {
		return fmt.Errorf("%s: MAC %s is not an Ethernet MAC: give six bytes, or none", what, t.MAC)
	}
	return nil
}

// checkLinkName refuses a name the kernel would refuse (dev_valid_name) or
// read as a template ("tap%d": the kernel picks the number), or one
// longer than IFNAMSIZ-1 bytes.
func checkLinkName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: no name given: give an interface name of 1–15 bytes", kind)
	case len(name) > unix.IFNAMSIZ-1:
		return fmt.Errorf("%s %q: name is %d bytes, Linux allows at most %d: give a shorter name", kind, name, len(name), unix.IFNAMSIZ-1)
	case name == "." || name == ".." || strings.ContainsAny(name, "/:% \t\n\r\v\f"):
		return fmt.Errorf("%s %q: not a valid interface name (no '/', ':', '%%', white space, '.' or '..'): give another name", kind, name)
	}
	return nil
}

// tunDevice is the tun/tap clone device.
const tunDevice = "/dev/net/tun"

// ifFlags are the TUNSETIFF flags of the tap: a tap without packet
// information (frames as they are on the wire), multi-queue if asked.
// IFF_NO_PI is the creator's choice only: every later TUNSETIFF (the
// hypervisor's) sets the tap's NO_PI and VNET_HDR flags again (tun_set_iff),
// which is why CheckTap does not look at them.
func (t Tap) ifFlags() uint16 {
	f := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if t.MultiQueue {
		f |= unix.IFF_MULTI_QUEUE
	}
	return f
}

// AddTap creates the tap, joins it to the bridge with the port's flags,
// and brings it up.
//
// Not through netlink.LinkAdd(&netlink.Tuntap{…}) (vishvananda/netlink
// v1.3.1), which does the same ioctls but: always sets an owner and a
// group (0 when not given — it has no "none", and TUNSETOWNER refuses
// -1 with EINVAL); leaks the /dev/net/tun fd when TUNSETOWNER or
// TUNSETGROUP fails, so that a half-made, non-persistent tap lives as
// long as the daemon; attaches to an existing tap of that name instead of
// failing (no IFF_TUN_EXCL); returns Queues open fds the caller must
// close; and opens /dev/net/tun in the calling thread's namespace, which
// is not necessarily the adapter's.
//
// The tap is made persistent last: until then it lives only as long as
// the fd AddTap holds, so on any error closing that fd removes it and
// nothing is left behind (tun_chr_close unregisters a non-persistent
// tap before close returns).
func (n *netlinkLinks) AddTap(t Tap) (int, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	brIdx := 0
	if t.Bridge != "" {
		var err error
		if brIdx, err = n.bridgeIndex(t.Bridge); err != nil {
			return 0, fmt.Errorf("add tap %s: %w (create the network first)", t.Name, err)
		}
	}
	fd, idx, err := n.newTap(t)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if err := n.configureTap(t, idx, brIdx); err != nil {
		// The bridge may have been recreated under us (new ifindex).
		n.forgetBridge(t.Bridge)
		return 0, err
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return 0, fmt.Errorf("make tap %s persistent: %w", t.Name, err)
	}
	return idx, nil
}

// newTap creates the tap, not yet persistent, with its owner and group,
// and returns the fd that holds it and its ifindex. The fd is opened in
// the adapter's namespace: a tun file belongs to the namespace it was
// opened in (tun_chr_open), and TUNSETIFF creates the tap there.
func (n *netlinkLinks) newTap(t Tap) (fd, index int, err error) {
	type opened struct{ fd, index int }
	o, err := doIn(n.self, func() (opened, error) {
		fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return opened{}, fmt.Errorf("create tap %s: open %s: %w (is the tun module loaded?)", t.Name, tunDevice, err)
		}
		idx, err := setTap(fd, t)
		if err != nil {
			unix.Close(fd) // not persistent: the tap goes with it
			return opened{}, err
		}
		return opened{fd, idx}, nil
	})
	return o.fd, o.index, err
}

// setTap makes the tun file fd the new tap t (TUNSETIFF with
// IFF_TUN_EXCL: a link of that name is an error, not a tap to share),
// sets its owner and group, and returns its ifindex. It runs in the
// adapter's namespace (for SIOCGIFINDEX).
func setTap(fd int, t Tap) (int, error) {
	ifr, err := unix.NewIfreq(t.Name)
	if err != nil {
		return 0, fmt.Errorf("create tap %s: %w", t.Name, err)
	}
	ifr.SetUint16(t.ifFlags() | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return 0, fmt.Errorf("create tap %s: an interface with this name exists: %w", t.Name, err)
		}
		return 0, fmt.Errorf("create tap %s: %w", t.Name, err)
	}
	// -1 is no owner: the kernel has none until one is set, and refuses
	// to set -1 (EINVAL).
	if t.Owner >= 0 {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, t.Owner); err != nil {
			return 0, fmt.Errorf("set owner %d of tap %s: %w", t.Owner, t.Name, err)
		}
	}
	if t.Group >= 0 {
		if err := unix.IoctlSetInt(fd, unix.TUNSETGROUP, t.Group); err != nil {
			return 0, fmt.Errorf("set group %d of tap %s: %w", t.Group, t.Name, err)
		}
	}
	// The tun fd answers no SIOCGIFINDEX; a socket of this namespace does.
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("find tap %s: %w", t.Name, err)
	}
	defer unix.Close(s)
	q, _ := unix.NewIfreq(t.Name)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, q); err != nil {
		return 0, fmt.Errorf("find tap %s: %w", t.Name, err)
	}
	return int(q.Uint32()), nil
}

// configureTap makes the new tap a port of the bridge exactly like a
// veth's host end (configureVeth): master and MTU, then in the same
// sendmsg the port's flags, addrgenmode none and its VLAN; then, only if
// all of that worked, up — a port is never up with the wrong flags.
//
// Without a bridge (Bridge "": another switch, Open vSwitch, takes the
// tap as its port) the master and port flags are left out.
func (n *netlinkLinks) configureTap(t Tap, idx, brIdx int) error {
	if brIdx == 0 {
		reqs := []*nl.NetlinkRequest{addrGenModeNoneRequest(idx)}
		if t.MTU > 0 {
			reqs = append(reqs, tapMasterRequest(idx, 0, t.MTU))
		}
		errs, err := n.raw.transact(reqs, nil)
		if err = errors.Join(append(errs, err)...); err != nil {
			return fmt.Errorf("configure tap %s: %w", t.Name, err)
		}
		if err := n.raw.execute(linkUpRequest(idx)); err != nil {
			return fmt.Errorf("bring tap %s up: %w", t.Name, err)
		}
		return nil
	}
	reqs := []*nl.NetlinkRequest{tapMasterRequest(idx, brIdx, t.MTU), brportRequest(idx, t.Isolated, !t.NoHairpin), addrGenModeNoneRequest(idx)}
	if t.VLAN != 0 {
		reqs = append(reqs, vlanRequests(idx, brIdx, t.VLAN, t.MAC)...)
	}
	errs, err := n.raw.transact(reqs, nil)
	switch {
	case err != nil:
		return fmt.Errorf("configure tap %s: %w", t.Name, err)
	case errs[0] != nil:
		if errors.Is(errs[0], unix.EXFULL) {
			return fmt.Errorf("join tap %s to bridge %s: the bridge has the kernel's maximum of 1023 ports: %w", t.Name, t.Bridge, errs[0])
		}
		return fmt.Errorf("join tap %s to bridge %s (MTU %d): %w", t.Name, t.Bridge, t.MTU, errs[0])
	case errs[1] != nil:
		return fmt.Errorf("set bridge port flags of %s: %w", t.Name, errs[1])
	case errs[2] != nil:
		return fmt.Errorf("set addrgenmode none on %s: %w", t.Name, errs[2])
	}
	for _, e := range errs[3:] {
		if e != nil {
			return fmt.Errorf("put %s in VLAN %d (is VLAN filtering on on bridge %s?): %w", t.Name, t.VLAN, t.Bridge, e)
		}
	}
	if err := n.raw.execute(linkUpRequest(idx)); err != nil {
		return fmt.Errorf("bring tap %s up: %w", t.Name, err)
	}
	return nil
}

// tapMasterRequest joins a link to a bridge and sets its MTU (0: left
// as it is) in one RTM_NEWLINK.
func tapMasterRequest(idx, brIdx, mtu int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	req.AddData(msg)
	if mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	}
	if brIdx != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(brIdx))))
	}
	return req
}

// tapState is what the kernel says about a link, read raw: the netlink
// library reads a tap with no owner as owner 0 (root), which is not the
// same thing.
type tapState struct {
	index, mtu, master int
	up, carrier        bool
	kind               string // IFLA_INFO_KIND: "tun" for taps and tuns
	tunType            int    // unix.IFF_TAP or unix.IFF_TUN
	multiQueue         bool
	persist            bool
	owner, group       int // -1: none
}

// linkState reads one link by name (RTM_GETLINK); ok is false when there
// is no such link.
func (n *netlinkLinks) linkState(name string) (st tapState, ok bool, err error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	echo := map[uint32][]byte{}
	errs, err := n.raw.transact([]*nl.NetlinkRequest{req}, echo)
	if err == nil {
		err = errs[0]
	}
	if notFound(err) {
		return tapState{}, false, nil
	}
	if err != nil {
		return tapState{}, false, fmt.Errorf("look up %s: %w", name, err)
	}
	data, got := echo[req.Seq]
	if !got || len(data) < unix.SizeofIfInfomsg {
		return tapState{}, false, fmt.Errorf("look up %s: the kernel sent no link", name)
	}
	return parseTapState(data)
}

func parseTapState(data []byte) (tapState, bool, error) {
	msg := nl.DeserializeIfInfomsg(data)
	st := tapState{index: int(msg.Index), up: msg.Flags&unix.IFF_UP != 0, carrier: msg.Flags&unix.IFF_LOWER_UP != 0, owner: -1, group: -1}
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return tapState{}, false, fmt.Errorf("parse link %d: %w", st.index, err)
	}
	u32 := func(b []byte) int {
		if len(b) < 4 {
			return 0
		}
		return int(nl.NativeEndian().Uint32(b))
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFLA_MTU:
			st.mtu = u32(a.Value)
		case unix.IFLA_MASTER:
			st.master = u32(a.Value)
		case unix.IFLA_LINKINFO:
			info, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return tapState{}, false, fmt.Errorf("parse link %d: %w", st.index, err)
			}
			for _, i := range info {
				switch i.Attr.Type {
				case nl.IFLA_INFO_KIND:
					st.kind = strings.TrimRight(string(i.Value), "\x00")
				case nl.IFLA_INFO_DATA:
					tun, err := nl.ParseRouteAttr(i.Value)
					if err != nil {
						return tapState{}, false, fmt.Errorf("parse link %d: %w", st.index, err)
					}
					parseTunData(&st, tun, u32)
				}
			}
		}
	}
	return st, true, nil
}

// parseTunData reads a tun's IFLA_INFO_DATA (tun_fill_info): the owner
// and group attributes are there only when set.
func parseTunData(st *tapState, data []syscall.NetlinkRouteAttr, u32 func([]byte) int) {
	u8 := func(b []byte) int {
		if len(b) < 1 {
			return 0
		}
		return int(b[0])
	}
	for _, d := range data {
		switch d.Attr.Type {
		case nl.IFLA_TUN_TYPE:
			st.tunType = u8(d.Value)
		case nl.IFLA_TUN_MULTI_QUEUE:
			st.multiQueue = u8(d.Value) != 0
		case nl.IFLA_TUN_PERSIST:
			st.persist = u8(d.Value) != 0
		case nl.IFLA_TUN_OWNER:
			st.owner = u32(d.Value)
		case nl.IFLA_TUN_GROUP:
			st.group = u32(d.Value)
		}
	}
}

// fixedDiffs describes the differences between a tap and t that cannot
// be changed in place: type, multi-queue, persistence, owner and group
// (TUNSETOWNER needs the tap open, which a running VM's non-multi-queue
// tap refuses, and no owner cannot be set back).
func (st tapState) fixedDiffs(t Tap) []string {
	var out []string
	if st.tunType != unix.IFF_TAP {
		out = append(out, fmt.Sprintf("%s is a tun (layer 3), not a tap", t.Name))
	}
	if st.multiQueue != t.MultiQueue {
		out = append(out, fmt.Sprintf("tap %s has multi-queue %v, want %v", t.Name, st.multiQueue, t.MultiQueue))
	}
	if !st.persist {
		out = append(out, fmt.Sprintf("tap %s is not persistent (it goes when the process holding it closes it)", t.Name))
	}
	if st.owner != t.Owner {
		out = append(out, fmt.Sprintf("tap %s has owner %s, want %s", t.Name, idString(st.owner), idString(t.Owner)))
	}
	if st.group != t.Group {
		out = append(out, fmt.Sprintf("tap %s has group %s, want %s", t.Name, idString(st.group), idString(t.Group)))
	}
	return out
}

func idString(id int) string {
	if id < 0 {
		return "none"
	}
	return fmt.Sprint(id)
}

// CheckTap compares the kernel with t. A tap without carrier (no process
// has it open: the VM is not running) is no difference.
func (n *netlinkLinks) CheckTap(t Tap) []string {
	st, ok, err := n.linkState(t.Name)
	if err != nil {
		return []string{err.Error()}
	}
	if !ok {
		return []string{fmt.Sprintf("tap %s is missing", t.Name)}
	}
	if st.kind != "tun" {
		return []string{fmt.Sprintf("%s is a %s, not a tap", t.Name, kindString(st.kind))}
	}
	out := st.fixedDiffs(t)
	if t.Bridge != "" {
		if br, err := n.bridgeIndex(t.Bridge); err != nil || st.master != br {
			out = append(out, fmt.Sprintf("tap %s is not a port of bridge %s", t.Name, t.Bridge))
		}
	}
	if !st.up {
		out = append(out, fmt.Sprintf("tap %s is down", t.Name))
	}
	if t.MTU > 0 && st.mtu != t.MTU {
		out = append(out, fmt.Sprintf("tap %s has MTU %d, want %d", t.Name, st.mtu, t.MTU))
	}
	if p, err := n.h.LinkGetProtinfo(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: st.index}}); err == nil {
		if p.Isolated != t.Isolated {
			out = append(out, fmt.Sprintf("tap %s has port isolation %v, want %v", t.Name, p.Isolated, t.Isolated))
		}
		if p.Hairpin == t.NoHairpin {
			out = append(out, fmt.Sprintf("tap %s has hairpin mode %v, want %v", t.Name, p.Hairpin, !t.NoHairpin))
		}
	}
	return out
}

func kindString(kind string) string {
	if kind == "" {
		return "device"
	}
	return kind
}

// RepairTap brings a tap back to t and says what it changed: a missing
// tap is made again; one whose type, multi-queue flag, persistence, owner
// or group differ is deleted and made again (a VM that has it open loses
// it: it must reopen it); otherwise bridge port, port flags, MTU and up
// are set in place. A link of that name that is not a tun/tap is left
// alone: an error.
func (n *netlinkLinks) RepairTap(t Tap) (int, []Fix, error) {
	if err := t.check(); err != nil {
		return 0, nil, err
	}
	st, ok, err := n.linkState(t.Name)
	if err != nil {
		return 0, nil, err
	}
	if !ok {
		n.forgetBridge(t.Bridge)
		idx, err := n.AddTap(t)
		if err != nil {
			return 0, nil, err
		}
		return idx, []Fix{{"tap", "recreated tap " + t.Name}}, nil
	}
	if st.kind != "tun" {
		return 0, nil, fmt.Errorf("repair tap %s: %s is a %s, not a tap: remove it or give the tap another name", t.Name, t.Name, kindString(st.kind))
	}
	if diffs := st.fixedDiffs(t); len(diffs) > 0 {
		if err := n.del.execute(delLinkIndexRequest(st.index)); err != nil && !notFound(err) {
			return 0, nil, fmt.Errorf("repair tap %s: delete it to make it again: %w", t.Name, err)
		}
		n.forgetBridge(t.Bridge)
		idx, err := n.AddTap(t)
		if err != nil {
			return 0, nil, err
		}
		return idx, []Fix{{"tap", "recreated tap " + t.Name + " (" + strings.Join(diffs, "; ") + ")"}}, nil
	}
	var fx fixes
	fix := fx.add
	brIdx := 0
	if t.Bridge != "" {
		n.forgetBridge(t.Bridge)
		var err error
		if brIdx, err = n.bridgeIndex(t.Bridge); err != nil {
			return st.index, nil, fmt.Errorf("repair tap %s: %w", t.Name, err)
		}
	}
	if st.master != brIdx || (t.MTU > 0 && st.mtu != t.MTU) {
		fix("port", fmt.Sprintf("joined %s to bridge %s (MTU %d)", t.Name, t.Bridge, t.MTU), n.raw.execute(tapMasterRequest(st.index, brIdx, t.MTU)))
	}
	if brIdx != 0 {
		if p, err := n.h.LinkGetProtinfo(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: st.index}}); err != nil || p.Isolated != t.Isolated || p.Hairpin == t.NoHairpin {
			fix("port", "set bridge port flags of "+t.Name, n.raw.execute(brportRequest(st.index, t.Isolated, !t.NoHairpin)))
		}
	}
	if !st.up {
		fix("port", "brought "+t.Name+" up", n.raw.execute(linkUpRequest(st.index)))
	}
	return st.index, fx.done, errors.Join(fx.errs...)
}
