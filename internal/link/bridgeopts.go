package link

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// BridgeOptions are a bridge's STP, ageing, VLAN and multicast settings
// (model.BridgeOptions without the per-port hairpin, which Veth carries).
// Times are in seconds; 0 means the kernel's default (forward delay 15 s,
// ageing 300 s), which EnsureBridge then sets explicitly.
type BridgeOptions struct {
	STP               bool
	ForwardDelay      int // seconds, 2–30; used only with STP
	AgeingTime        int // seconds
	VLANFiltering     bool
	MulticastSnooping bool
}

// Kernel defaults, in seconds.
const (
	defaultForwardDelay = 15
	defaultAgeingTime   = 300
)

// userHZ is the unit of the bridge's times over netlink: clock_t, in
// USER_HZ (100 on Linux, whatever the kernel's HZ), so centiseconds.
const userHZ = 100

func (o *BridgeOptions) forwardDelay() int {
	if o.ForwardDelay == 0 {
		return defaultForwardDelay
	}
	return o.ForwardDelay
}

func (o *BridgeOptions) ageingTime() int {
	if o.AgeingTime == 0 {
		return defaultAgeingTime
	}
	return o.AgeingTime
}

func boolByte(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

func boolU32(b bool) []byte {
	if b {
		return nl.Uint32Attr(1)
	}
	return nl.Uint32Attr(0)
}

// bridgeOptionsRequest sets all of o on the bridge at index in one
// RTM_NEWLINK (changelink: IFLA_LINKINFO → IFLA_INFO_DATA). netlink.Bridge
// has no field for STP's state nor its forward delay, hence the request by
// hand. The forward delay is set only with STP: without it the kernel
// ignores the delay (ports forward at once), and an adopted bridge keeps
// its own.
//
// vlanOn: the bridge has VLAN filtering on now. A kernel without bridge
// VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING off, as on 6.18 here)
// refuses IFLA_BR_VLAN_FILTERING with EOPNOTSUPP whatever its value, yet
// reports it (0): so it is sent only to turn filtering on, or off where
// it is on.
func bridgeOptionsRequest(index int, o *BridgeOptions, vlanOn bool) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	if o.STP {
		data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(uint32(o.forwardDelay()*userHZ)))
	}
	data.AddRtAttr(nl.IFLA_BR_AGEING_TIME, nl.Uint32Attr(uint32(o.ageingTime()*userHZ)))
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, boolU32(o.STP))
	if o.VLANFiltering || vlanOn {
		data.AddRtAttr(nl.IFLA_BR_VLAN_FILTERING, boolByte(o.VLANFiltering))
	}
	data.AddRtAttr(nl.IFLA_BR_MCAST_SNOOPING, boolByte(o.MulticastSnooping))
	req.AddData(info)
	return req
}

// bridgeData reads a link's IFLA_INFO_DATA attributes (for a bridge, the
// IFLA_BR_* settings) with one RTM_GETLINK.
func (n *netlinkLinks) bridgeData(index int) (map[uint16][]byte, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	echo := map[uint32][]byte{}
	errs, err := n.raw.transact([]*nl.NetlinkRequest{req}, echo)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return nil, err
	}
	data, ok := echo[req.Seq]
	if !ok || len(data) < unix.SizeofIfInfomsg {
		return nil, fmt.Errorf("no answer to RTM_GETLINK for ifindex %d", index)
	}
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return nil, err
	}
	out := map[uint16][]byte{}
	for _, a := range attrs {
		if a.Attr.Type != unix.IFLA_LINKINFO {
			continue
		}
		infos, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return nil, err
		}
		for _, i := range infos {
			if i.Attr.Type != nl.IFLA_INFO_DATA {
				continue
			}
			ds, err := nl.ParseRouteAttr(i.Value)
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				out[d.Attr.Type&^(syscall.NLA_F_NESTED)] = d.Value
			}
		}
	}
	return out, nil
}

// checkBridgeOptions compares a bridge's IFLA_BR_* settings with o.
func checkBridgeOptions(name string, data map[uint16][]byte, o *BridgeOptions) []string {
	var out []string
	u32 := func(t uint16) (uint32, bool) {
		v, ok := data[t]
		if !ok || len(v) < 4 {
			return 0, false
		}
		return nl.NativeEndian().Uint32(v), true
	}
	u8 := func(t uint16) (bool, bool) {
		v, ok := data[t]
		if !ok || len(v) < 1 {
			return false, false
		}
		return v[0] != 0, true
	}
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	// STP state: 0 off, 1 kernel STP, 2 user-space STP (mstpd): both on.
	if s, ok := u32(nl.IFLA_BR_STP_STATE); ok && (s != 0) != o.STP {
		out = append(out, fmt.Sprintf("bridge %s has STP %s, want %s", name, onOff(s != 0), onOff(o.STP)))
	}
	if o.STP {
		if fd, ok := u32(nl.IFLA_BR_FORWARD_DELAY); ok && int(fd) != o.forwardDelay()*userHZ {
			out = append(out, fmt.Sprintf("bridge %s has forward delay %gs, want %ds", name, float64(fd)/userHZ, o.forwardDelay()))
		}
	}
	if ag, ok := u32(nl.IFLA_BR_AGEING_TIME); ok && int(ag) != o.ageingTime()*userHZ {
		out = append(out, fmt.Sprintf("bridge %s has ageing time %gs, want %ds", name, float64(ag)/userHZ, o.ageingTime()))
	}
	if v, ok := u8(nl.IFLA_BR_VLAN_FILTERING); ok && v != o.VLANFiltering {
		out = append(out, fmt.Sprintf("bridge %s has VLAN filtering %s, want %s", name, onOff(v), onOff(o.VLANFiltering)))
	}
	if v, ok := u8(nl.IFLA_BR_MCAST_SNOOPING); ok && v != o.MulticastSnooping {
		out = append(out, fmt.Sprintf("bridge %s has multicast snooping %s, want %s", name, onOff(v), onOff(o.MulticastSnooping)))
	}
	return out
}

// vlanRequests put a bridge port (the host end of an endpoint's veth,
// hostIdx) in VLAN vid, and the bridge (brIdx) with it:
//   - `bridge vlan add vid VID dev PORT pvid untagged`: frames from the
//     sandbox are in VID, frames of VID leave untagged. The port stays an
//     untagged member of VLAN 1 (it only loses VLAN 1 as its PVID), so
//     that what the host sends it — the bridge's own frames are in the
//     bridge's PVID, VLAN 1 — arrives: the gateway, DNS, NAT and published
//     ports keep working for the sandbox.
//   - `bridge vlan add vid VID dev BRIDGE self untagged`: frames of VID
//     for the gateway reach the host, untagged (the bridge's IP stack
//     knows no tags).
//   - `bridge fdb replace MAC dev PORT vlan 1 master static`, when the
//     peer's MAC is known: the bridge learns the sandbox's MAC in VID
//     only, so the host's replies (in VLAN 1) would be flooded to every
//     VLAN-1 port; this entry sends them to the port alone.
//
// All go in the same sendmsg as the port's flags: a VLAN adds no round
// trip to an attach.
func vlanRequests(hostIdx, brIdx, vid int, mac net.HardwareAddr) []*nl.NetlinkRequest {
	vlan := func(index int, flags uint16, self bool) *nl.NetlinkRequest {
		req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
		msg.Index = int32(index)
		req.AddData(msg)
		spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
		if self {
			spec.AddRtAttr(nl.IFLA_BRIDGE_FLAGS, nl.Uint16Attr(nl.BRIDGE_FLAGS_SELF))
		}
		info := &nl.BridgeVlanInfo{Flags: flags, Vid: uint16(vid)}
		spec.AddRtAttr(nl.IFLA_BRIDGE_VLAN_INFO, info.Serialize())
		req.AddData(spec)
		return req
	}
	reqs := []*nl.NetlinkRequest{
		vlan(hostIdx, nl.BRIDGE_VLAN_INFO_PVID|nl.BRIDGE_VLAN_INFO_UNTAGGED, false),
		vlan(brIdx, nl.BRIDGE_VLAN_INFO_UNTAGGED, true),
	}
	if len(mac) == 6 {
		req := nl.NewNetlinkRequest(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
		req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(hostIdx), State: netlink.NUD_NOARP, Flags: netlink.NTF_MASTER})
		req.AddData(nl.NewRtAttr(netlink.NDA_LLADDR, []byte(mac)))
		req.AddData(nl.NewRtAttr(netlink.NDA_VLAN, nl.Uint16Attr(1)))
		reqs = append(reqs, req)
	}
	return reqs
}

// ErrNoVLANFiltering: the kernel was built without bridge VLAN filtering
// (CONFIG_BRIDGE_VLAN_FILTERING).
var ErrNoVLANFiltering = errors.New("this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING is off): create the network without --vlan-filtering, or use a kernel built with it")
