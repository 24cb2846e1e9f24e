package link

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// A device's layer 2 tables, read from the host namespace: what `bridge
// fdb show br BRIDGE` (or `dev VXLAN`) and `ip neigh show dev DEV` print,
// the seeds' `brctl showmacs`. Nothing is changed and no sandbox is
// entered.
//
// A bridge's entries are those of its forwarding database that send a
// MAC to a port: the ones it learned from frames (dynamic, or stale once
// older than the ageing time and not yet collected) and static ones
// someone added. Its local entries (the MACs of the bridge and of its own
// ports, which frames are delivered to the host for; "permanent") and
// the ports' own address lists are left out: they say nothing about
// what is behind a port. A VXLAN device learns nothing (pontoon turns
// learning off): its entries are those it was given, each sending a MAC
// to a remote VTEP's underlay address, and are all listed but the
// flooding and multicast ones.
//
// Both dumps are filtered by the kernel where the socket's strict
// checking allows it (NETLINK_GET_STRICT_CHK, 4.20: a bridge's entries by
// NDA_MASTER, a device's by ndm_ifindex, neighbours by NDA_IFINDEX), and
// here in any case.

// FDBTable is what a bridge or VXLAN device knows at layer 2.
type FDBTable struct {
	// Kind is the device's: "bridge" or "vxlan".
	Kind string
	// Entries are the forwarding entries, by port and MAC.
	Entries []FDBEntry
	// Neighbours are the host's neighbour entries (ARP, NDP) on the
	// device, by address.
	Neighbours []NeighEntry
}

// FDBEntry is one forwarding entry: frames to MAC go out of Port (on a
// bridge), or to Dst (on a VXLAN device).
type FDBEntry struct {
	MAC  net.HardwareAddr
	Port string // a bridge's port (a host link); the VXLAN device itself
	VLAN int    // a VLAN-filtering bridge's VLAN of the entry; 0: none
	// Dst is a VXLAN entry's remote VTEP (its underlay address).
	Dst netip.Addr
	// State is "dynamic" (learned, fresh), "stale" (learned, older than
	// the ageing time, about to be forgotten), "static" (added, never
	// ages) or "permanent".
	State string
	// Age is how long ago the bridge last saw a frame from MAC on Port,
	// for learned entries (an entry is forgotten once it is older than
	// the bridge's ageing time); 0 for the others.
	Age time.Duration
}

// NeighEntry is one neighbour entry of the host on a device.
type NeighEntry struct {
	Addr netip.Addr
	MAC  net.HardwareAddr // nil while unresolved (INCOMPLETE, FAILED)
	// State is the kernel's NUD state as `ip neigh` prints it: REACHABLE,
	// STALE, DELAY, PROBE, INCOMPLETE, FAILED, PERMANENT, NOARP.
	State string
}

func (n *netlinkLinks) FDB(dev string) (FDBTable, error) {
	l, err := n.h.LinkByName(dev)
	if notFound(err) {
		return FDBTable{}, fmt.Errorf("%s does not exist (ip link show %s)", dev, dev)
	}
	if err != nil {
		return FDBTable{}, fmt.Errorf("look up %s: %w", dev, err)
	}
	idx := l.Attrs().Index
	var t FDBTable
	switch l.(type) {
	case *netlink.Bridge:
		t.Kind = "bridge"
	case *netlink.Vxlan:
		t.Kind = "vxlan"
	default:
		return FDBTable{}, fmt.Errorf("%s is a %s, neither a bridge nor a VXLAN device: it has no forwarding database of its own", dev, l.Type())
	}
	// Several dumps in one; retried as a whole when one is interrupted.
	var ents, neighs []netlink.Neigh
	if err := n.strictDumps(func(s *nl.NetlinkSocket) error {
		ents, neighs = nil, nil
		req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
		if t.Kind == "bridge" {
			req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE})
			req.AddData(nl.NewRtAttr(netlink.NDA_MASTER, nl.Uint32Attr(uint32(idx))))
		} else {
			req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(idx)})
		}
		if err := dump(s, req, func(m []byte) {
			if nb, err := netlink.NeighDeserialize(m); err == nil && nb.Family == unix.AF_BRIDGE {
				ents = append(ents, *nb)
			}
		}); err != nil {
			return fmt.Errorf("bridge fdb show %s: %w", dev, err)
		}
		req = nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
		req.AddData(&netlink.Ndmsg{Family: unix.AF_UNSPEC})
		req.AddData(nl.NewRtAttr(netlink.NDA_IFINDEX, nl.Uint32Attr(uint32(idx))))
		if err := dump(s, req, func(m []byte) {
			if nb, err := netlink.NeighDeserialize(m); err == nil && nb.LinkIndex == idx && nb.Family != unix.AF_BRIDGE {
				neighs = append(neighs, *nb)
			}
		}); err != nil {
			return fmt.Errorf("ip neigh show dev %s: %w", dev, err)
		}
		return nil
	}); err != nil {
		return FDBTable{}, err
	}

	names := map[int]string{}
	for _, e := range ents {
		mac := e.HardwareAddr
		if len(mac) != 6 || mac[0]&1 != 0 || isZeroMAC(mac) {
			continue // flooding and multicast entries
		}
		out := FDBEntry{MAC: mac, VLAN: e.Vlan, State: fdbState(e.State)}
		if t.Kind == "bridge" {
			// The bridge's own entries (NDA_MASTER) of its ports, local
			// ones left out; not the ports' own lists (no NDA_MASTER).
			if e.MasterIndex != idx || e.LinkIndex == idx || e.State&netlink.NUD_PERMANENT != 0 {
				continue
			}
			out.Port = n.linkName(names, e.LinkIndex)
			if e.State&netlink.NUD_NOARP == 0 {
				// NDA_CACHEINFO's times are clock_t too (userHZ).
				out.Age = time.Duration(e.Updated) * time.Second / userHZ
			}
		} else {
			if e.LinkIndex != idx {
				continue
			}
			out.Port = dev
			out.Dst, _ = addrOf(e.IP)
		}
		t.Entries = append(t.Entries, out)
	}
	slices.SortFunc(t.Entries, func(a, b FDBEntry) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), slices.Compare(a.MAC, b.MAC), cmp.Compare(a.VLAN, b.VLAN), a.Dst.Compare(b.Dst))
	})
	for _, nb := range neighs {
		a, ok := addrOf(nb.IP)
		if !ok || a.IsMulticast() {
			continue
		}
		t.Neighbours = append(t.Neighbours, NeighEntry{Addr: a, MAC: nb.HardwareAddr, State: neighState(nb.State)})
	}
	slices.SortFunc(t.Neighbours, func(a, b NeighEntry) int { return a.Addr.Compare(b.Addr) })
	return t, nil
}

// fdbState names an FDB entry's state as `bridge fdb` does (nothing
// there for a fresh learned entry: "dynamic" here).
func fdbState(st int) string {
	switch {
	case st&netlink.NUD_PERMANENT != 0:
		return "permanent"
	case st&netlink.NUD_NOARP != 0:
		return "static"
	case st&netlink.NUD_STALE != 0:
		return "stale"
	}
	return "dynamic"
}

// neighState names a neighbour entry's NUD state as `ip neigh` does.
func neighState(st int) string {
	if s, ok := neighStates[st]; ok {
		return s
	}
	if st == netlink.NUD_NONE {
		return "NONE"
	}
	return fmt.Sprintf("state %#x", st)
}

// strictDumps runs fn's dumps on a socket of the pool with strict
// checking on where the kernel has it (the kernel then filters what it
// dumps by the request's attributes), and hands the socket back as it
// was. A dump interrupted by a change is retried (dump), a few times.
func (n *netlinkLinks) strictDumps(fn func(s *nl.NetlinkSocket) error) (err error) {
	s, err := n.raw.get()
	if err != nil {
		return err
	}
	fd := s.GetFd()
	strict := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1) == nil
	defer func() {
		if err != nil || strict && unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 0) != nil {
			s.Close() // a broken-off dump may leave answers behind
			return
		}
		n.raw.put(s)
	}()
	return fn(s)
}
