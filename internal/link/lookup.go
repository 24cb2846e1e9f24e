package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Lookups are the packet tracer's questions — `ip route get`, `ip neigh`,
// `ip -d link`, `bridge fdb` — asked over netlink. They change nothing.
// The netlink implementation of Interface has them; callers find them by
// type assertion, so that fakes need not.
type Lookups interface {
	// RouteGet is `ip route get DST [from SRC] [iif IIF]` in the
	// namespace at netns ("" = the host's, checked against ino).
	RouteGet(netns string, ino uint64, dst, src netip.Addr, iif string) (RouteInfo, error)
	// NeighGet is the neighbour entry of addr on dev (`ip neigh show ADDR
	// dev DEV`); a zero NeighInfo when there is none.
	NeighGet(netns string, ino uint64, dev string, addr netip.Addr) (NeighInfo, error)
	// Port describes a host link as a bridge port (`ip -d link show`).
	Port(name string) (PortInfo, error)
	// FDBGet is the bridge's forwarding entry for mac (`bridge fdb show br
	// BRIDGE`); a zero FDBInfo when it has not learned it.
	FDBGet(bridge string, mac net.HardwareAddr) (FDBInfo, error)
	// HostRoutes lists the host's main-table routes of both families
	// (default routes included) and HostAddrs its addresses, leaving out
	// IPv6 link-local and multicast ones.
	HostRoutes() ([]RouteEntry, error)
	HostAddrs() ([]AddrInfo, error)
	// LinkName is the name of the host link with that ifindex.
	LinkName(index int) (string, error)
}

// RouteInfo is a routing decision.
type RouteInfo struct {
	Type    string // unicast, local, broadcast, unreachable, …
	Dst     netip.Addr
	Dev     string
	Gateway netip.Addr
	Src     netip.Addr
	Table   int
}

// NeighInfo is a neighbour entry: State "" when there is none.
type NeighInfo struct {
	MAC   net.HardwareAddr
	State string
}

// PortInfo is a host link seen as a bridge port.
type PortInfo struct {
	Name      string
	Index     int
	Master    string
	Isolated  bool
	Up        bool
	PeerIndex int // iflink: a veth's peer ifindex (in its namespace)
}

// FDBInfo is where a bridge sends a MAC: Port, or Self for its own.
type FDBInfo struct {
	Port string
	Self bool
}

// RouteEntry is one route of the main table.
type RouteEntry struct {
	Dst     netip.Prefix
	Dev     string
	Gateway netip.Addr
}

// AddrInfo is one address of a link.
type AddrInfo struct {
	Dev    string
	Prefix netip.Prefix
}

var _ Lookups = (*netlinkLinks)(nil)

// handleFor returns a handle on the host namespace (netns "") or on a
// sandbox's, and a func to release it.
func (n *netlinkLinks) handleFor(netns string, ino uint64) (*netlink.Handle, func(), error) {
	if netns == "" {
		return n.h, func() {}, nil
	}
	h, err := handleAtPath(netns, ino)
	if err != nil {
		return nil, nil, err
	}
	return h, h.Close, nil
}

var routeTypes = map[int]string{unix.RTN_UNICAST: "unicast", unix.RTN_LOCAL: "local", unix.RTN_BROADCAST: "broadcast",
	unix.RTN_MULTICAST: "multicast", unix.RTN_BLACKHOLE: "blackhole", unix.RTN_UNREACHABLE: "unreachable",
	unix.RTN_PROHIBIT: "prohibit", unix.RTN_THROW: "throw"}

func (n *netlinkLinks) RouteGet(netns string, ino uint64, dst, src netip.Addr, iif string) (RouteInfo, error) {
	h, done, err := n.handleFor(netns, ino)
	if err != nil {
		return RouteInfo{}, err
	}
	defer done()
	opts := &netlink.RouteGetOptions{Iif: iif}
	if src.IsValid() {
		opts.SrcAddr = src.AsSlice()
	}
	rs, err := h.RouteGetWithOptions(dst.AsSlice(), opts)
	if err != nil {
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
			return RouteInfo{Type: "unreachable", Dst: dst}, nil
		}
		return RouteInfo{}, fmt.Errorf("ip route get %s: %w", dst, err)
	}
	if len(rs) == 0 {
		return RouteInfo{Type: "unreachable", Dst: dst}, nil
	}
	r := rs[0]
	out := RouteInfo{Type: routeTypes[r.Type], Dst: dst, Table: r.Table}
	if out.Type == "" {
		out.Type = fmt.Sprintf("type %d", r.Type)
	}
	if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
		out.Dev = l.Attrs().Name
	}
	if a, ok := addrOf(r.Gw); ok {
		out.Gateway = a
	}
	if a, ok := addrOf(r.Src); ok {
		out.Src = a
	}
	return out, nil
}

var neighStates = map[int]string{netlink.NUD_INCOMPLETE: "INCOMPLETE", netlink.NUD_REACHABLE: "REACHABLE", netlink.NUD_STALE: "STALE",
	netlink.NUD_DELAY: "DELAY", netlink.NUD_PROBE: "PROBE", netlink.NUD_FAILED: "FAILED", netlink.NUD_NOARP: "NOARP",
	netlink.NUD_PERMANENT: "PERMANENT"}

func (n *netlinkLinks) NeighGet(netns string, ino uint64, dev string, addr netip.Addr) (NeighInfo, error) {
	h, done, err := n.handleFor(netns, ino)
	if err != nil {
		return NeighInfo{}, err
	}
	defer done()
	l, err := h.LinkByName(dev)
	if err != nil {
		return NeighInfo{}, fmt.Errorf("find %s: %w", dev, err)
	}
	ns, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(l.Attrs().Index, familyOf(addr).af) })
	if err != nil {
		return NeighInfo{}, fmt.Errorf("ip neigh show dev %s: %w", dev, err)
	}
	for _, nb := range ns {
		if a, ok := addrOf(nb.IP); ok && a == addr {
			st := neighStates[nb.State]
			if st == "" {
				st = fmt.Sprintf("state %#x", nb.State)
			}
			return NeighInfo{MAC: nb.HardwareAddr, State: st}, nil
		}
	}
	return NeighInfo{}, nil
}

func (n *netlinkLinks) Port(name string) (PortInfo, error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return PortInfo{}, fmt.Errorf("find %s: %w", name, err)
	}
	a := l.Attrs()
	p := PortInfo{Name: a.Name, Index: a.Index, Up: a.Flags&net.FlagUp != 0, PeerIndex: a.ParentIndex}
	if a.MasterIndex != 0 {
		if m, err := n.h.LinkByIndex(a.MasterIndex); err == nil {
			p.Master = m.Attrs().Name
		}
		if pi, err := n.h.LinkGetProtinfo(l); err == nil {
			p.Isolated = pi.Isolated
		}
	}
	return p, nil
}

func (n *netlinkLinks) FDBGet(bridge string, mac net.HardwareAddr) (FDBInfo, error) {
	br, err := n.h.LinkByName(bridge)
	if err != nil {
		return FDBInfo{}, fmt.Errorf("find bridge %s: %w", bridge, err)
	}
	brIdx := br.Attrs().Index
	if br.Attrs().HardwareAddr.String() == mac.String() {
		return FDBInfo{Self: true}, nil
	}
	ents, err := retryDump(func() ([]netlink.Neigh, error) { return n.h.NeighList(0, unix.AF_BRIDGE) })
	if err != nil {
		return FDBInfo{}, fmt.Errorf("bridge fdb show br %s: %w", bridge, err)
	}
	for _, e := range ents {
		if e.HardwareAddr.String() != mac.String() || (e.MasterIndex != brIdx && e.LinkIndex != brIdx) {
			continue
		}
		if e.LinkIndex == brIdx {
			return FDBInfo{Self: true}, nil
		}
		if l, err := n.h.LinkByIndex(e.LinkIndex); err == nil {
			return FDBInfo{Port: l.Attrs().Name}, nil
		}
	}
	return FDBInfo{}, nil
}

func (n *netlinkLinks) HostRoutes() ([]RouteEntry, error) {
	routes, err := n.hostRoutes()
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	var out []RouteEntry
	for _, r := range routes {
		if r.Type != unix.RTN_UNICAST || r.LinkIndex == 0 {
			continue
		}
		p, _ := toPrefix(r.Dst) // the default route too: netlink reports 0.0.0.0/0, ::/0
		e := RouteEntry{Dst: p.Masked(), Dev: n.linkName(names, r.LinkIndex)}
		if a, ok := addrOf(r.Gw); ok {
			e.Gateway = a
		}
		out = append(out, e)
	}
	return out, nil
}

func (n *netlinkLinks) HostAddrs() ([]AddrInfo, error) {
	addrs, err := n.hostAddrs()
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	var out []AddrInfo
	for _, a := range addrs {
		p, _ := toPrefix(a.IPNet)
		out = append(out, AddrInfo{Dev: n.linkName(names, a.LinkIndex), Prefix: p})
	}
	return out, nil
}

func (n *netlinkLinks) linkName(cache map[int]string, idx int) string {
	if nm, ok := cache[idx]; ok {
		return nm
	}
	nm := fmt.Sprintf("ifindex %d", idx)
	if l, err := n.h.LinkByIndex(idx); err == nil {
		nm = l.Attrs().Name
	}
	cache[idx] = nm
	return nm
}

func (n *netlinkLinks) LinkName(index int) (string, error) {
	l, err := n.h.LinkByIndex(index)
	if err != nil {
		return "", fmt.Errorf("find ifindex %d: %w", index, err)
	}
	return l.Attrs().Name, nil
}
