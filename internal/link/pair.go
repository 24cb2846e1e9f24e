package link

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
)

// Pair is a direct link: one veth pair whose ends are interfaces in two
// sandboxes (the seeds' "two namespaces joined by one veth", no bridge and
// nothing on the host). The pair's MTU is A's.
type Pair struct {
	A, B Iface
}

func (p Pair) check() error {
	if err := p.A.check("link end " + p.A.IfName); err != nil {
		return err
	}
	if err := p.B.check("link end " + p.B.IfName); err != nil {
		return err
	}
	if p.A.Netns == p.B.Netns {
		return fmt.Errorf("direct link %s–%s: both ends are in %s: give two sandboxes", p.A.IfName, p.B.IfName, p.A.Netns)
	}
	return nil
}

// pairRequest is the RTM_NEWLINK that makes the pair with each end
// directly in its sandbox (IFLA_NET_NS_FD on the link and on the peer):
// nothing is created on the host and nothing is moved.
func pairRequest(p Pair, nsA, nsB int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(p.A.IfName)))
	if p.A.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(p.A.MTU))))
	}
	if p.A.MAC != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(p.A.MAC)))
	}
	req.AddData(nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(nsA))))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(p.B.IfName))
	if p.A.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(p.A.MTU)))
	}
	if p.B.MAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(p.B.MAC))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(nsB)))
	req.AddData(info)
	return req
}

// AddPair creates the pair and configures both ends (configureIface). On
// error it deletes what it made.
func (n *netlinkLinks) AddPair(p Pair) error {
	if err := p.check(); err != nil {
		return err
	}
	nsA, err := netns.OpenChecked(p.A.Netns, p.A.NetnsIno)
	if err != nil {
		return fmt.Errorf("add direct link %s: %w", p.A.IfName, err)
	}
	defer nsA.Close()
	nsB, err := netns.OpenChecked(p.B.Netns, p.B.NetnsIno)
	if err != nil {
		return fmt.Errorf("add direct link %s: %w", p.B.IfName, err)
	}
	defer nsB.Close()
	if err := n.raw.execute(pairRequest(p, int(nsA), int(nsB))); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create direct link %s–%s: one of the sandboxes has an interface of that name: %w", p.A.IfName, p.B.IfName, err)
		}
		return fmt.Errorf("create direct link %s (%s) – %s (%s): %w", p.A.IfName, p.A.Netns, p.B.IfName, p.B.Netns, err)
	}
	err = func() error {
		for _, end := range []struct {
			ns  vnetns.NsHandle
			ifc Iface
		}{{nsA, p.A}, {nsB, p.B}} {
			h, err := handleAt(end.ns)
			if err != nil {
				return err
			}
			l, err := h.LinkByName(end.ifc.IfName)
			h.Close()
			if err != nil {
				return fmt.Errorf("find %s in %s: %w", end.ifc.IfName, end.ifc.Netns, err)
			}
			if err := n.configureIface(end.ns, l.Attrs().Index, end.ifc); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		if derr := deleteIn(nsA, p.A.IfName); derr != nil {
			n.log.Error("roll back direct link", "link", p.A.IfName, "netns", p.A.Netns, "err", derr)
		}
		return err
	}
	return nil
}

// pairEnds looks both ends up: each link, the handle of its namespace
// (the caller closes them), and the first difference that makes the pair
// unrepairable in place (an end missing, or not the other's peer).
func pairEnds(p Pair) (ha, hb *netlink.Handle, la, lb netlink.Link, broken string, err error) {
	if ha, err = handleAtPath(p.A.Netns, p.A.NetnsIno); err != nil {
		return nil, nil, nil, nil, "", err
	}
	if hb, err = handleAtPath(p.B.Netns, p.B.NetnsIno); err != nil {
		ha.Close()
		return nil, nil, nil, nil, "", err
	}
	la, errA := ha.LinkByName(p.A.IfName)
	lb, errB := hb.LinkByName(p.B.IfName)
	switch {
	case errA != nil:
		broken = fmt.Sprintf("%s is missing in %s", p.A.IfName, p.A.Netns)
	case errB != nil:
		broken = fmt.Sprintf("%s is missing in %s", p.B.IfName, p.B.Netns)
	case la.Type() != "veth" || lb.Type() != "veth":
		broken = fmt.Sprintf("%s and %s are not both veths", p.A.IfName, p.B.IfName)
	case la.Attrs().ParentIndex != lb.Attrs().Index || lb.Attrs().ParentIndex != la.Attrs().Index:
		// Two namespaces' ifindexes can collide: this is a likely
		// mismatch, not a proof; the repair then makes the pair again.
		broken = fmt.Sprintf("%s and %s are not each other's peer", p.A.IfName, p.B.IfName)
	}
	return ha, hb, la, lb, broken, nil
}

// CheckPair compares both ends with p and describes each difference; nil
// when they match.
func (n *netlinkLinks) CheckPair(p Pair) []string {
	ha, hb, la, lb, broken, err := pairEnds(p)
	if err != nil {
		return []string{fmt.Sprintf("sandbox namespace: %v", err)}
	}
	defer ha.Close()
	defer hb.Close()
	if broken != "" {
		return []string{broken}
	}
	return append(checkIface(ha, la, p.A), checkIface(hb, lb, p.B)...)
}

// RepairPair brings the pair back to p: a missing or mismatched end makes
// the pair again (deleting what is left of it), otherwise each end's
// configuration is repaired in place.
func (n *netlinkLinks) RepairPair(p Pair) ([]Fix, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	ha, hb, la, lb, broken, err := pairEnds(p)
	if err != nil {
		return nil, err
	}
	defer ha.Close()
	defer hb.Close()
	if broken != "" {
		for _, end := range []struct {
			h    *netlink.Handle
			l    netlink.Link
			name string
		}{{ha, la, p.A.IfName}, {hb, lb, p.B.IfName}} {
			if end.l != nil {
				if err := end.h.LinkDel(end.l); err != nil && !notFound(err) {
					return nil, fmt.Errorf("delete %s: %w", end.name, err)
				}
			}
		}
		if err := n.AddPair(p); err != nil {
			return nil, err
		}
		return []Fix{{"link", "recreated direct link " + p.A.IfName + "–" + p.B.IfName + " (" + broken + ")"}}, nil
	}
	var fx fixes
	fix := fx.add
	repairIface(ha, la, p.A, fix)
	repairIface(hb, lb, p.B, fix)
	return fx.done, errors.Join(fx.errs...)
}
