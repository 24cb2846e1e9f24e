package link

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
)

// deleteGroup is the interface group (IFLA_GROUP) veths are moved into just
// before a batch delete: one RTM_DELLINK naming the group makes the kernel
// unregister them all with a single RCU grace period
// (rtnl_group_dellink → unregister_netdevice_many). "pont" in ASCII. A link
// left in this group by a crash between marking and deleting is deleted by
// the next batch, which is what the crashed batch meant to do.
const deleteGroup = 0x706f6e74

// batchSize bounds how many requests go out in one sendmsg: every one of
// them is acked into the socket's receive buffer before we read, and an
// overflow (ENOBUFS) would lose acks.
const batchSize = 64

// netlinkLinks implements Interface on the namespace New ran in (the daemon
// runs in its host namespace).
type netlinkLinks struct {
	log *slog.Logger
	h   *netlink.Handle // bound to the host namespace

	// raw and del carry the requests netlink.Handle has no method for
	// (veth creation with IFLA_MASTER and NLM_F_ECHO, batches, delete by
	// group). Like h they are opened in the namespace New ran in, so they
	// never act on another namespace whatever thread calls them. Deletes
	// have their own socket: their sendmsg returns only after the kernel's
	// RCU wait (tens of ms), which must not hold up an attach.
	raw *rawPool
	del *rawSocket

	delMu sync.Mutex // one group delete at a time: the group is shared

	self vnetns.NsHandle // the namespace New ran in (Watch of "")
	hub  watchHub        // every Watch's socket (watch.go)

	brMu    sync.Mutex
	brIndex map[string]int // bridge name → ifindex cache (dropped on error)

	// ct is a NETLINK_NETFILTER socket opened in the same namespace, for
	// conntrack (conntrack.go); its own socket, so that a long dump never
	// holds up an attach. ctMu: one dump-and-delete at a time.
	ct   map[int]*nl.SocketHandle
	ctMu sync.Mutex

	// dad: add sandboxes' IPv6 addresses with duplicate address detection
	// (without IFA_F_NODAD), for BenchmarkAddVethDualStack's comparison.
	dad bool
}

// New returns the netlink implementation of Interface, acting on the
// calling thread's network namespace.
func New(log *slog.Logger) (Interface, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	self, err := vnetns.Get()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	n := &netlinkLinks{log: log, h: h, brIndex: map[string]int{}, self: self}
	n.raw = &rawPool{open: func() (*nl.NetlinkSocket, error) {
		// In the adapter's namespace, whatever thread asks.
		return nl.GetNetlinkSocketAt(self, vnetns.None(), unix.NETLINK_ROUTE)
	}}
	s, err := nl.GetNetlinkSocketAt(vnetns.None(), vnetns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	n.del = &rawSocket{s: s}
	first, err := nl.GetNetlinkSocketAt(vnetns.None(), vnetns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	n.raw.free = append(n.raw.free, first)
	ct, err := nl.GetNetlinkSocketAt(vnetns.None(), vnetns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink (netfilter): %w", err)
	}
	n.ct = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: ct}}
	return n, nil
}

// rawSocket is a netlink socket used by one exchange at a time.
type rawSocket struct {
	mu sync.Mutex
	s  *nl.NetlinkSocket
}

func (rs *rawSocket) transact(reqs []*nl.NetlinkRequest, echo map[uint32][]byte) ([]error, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return transact(rs.s, reqs, echo)
}

// execute sends one request and returns the kernel's answer to it.
func (rs *rawSocket) execute(req *nl.NetlinkRequest) error {
	errs, err := rs.transact([]*nl.NetlinkRequest{req}, nil)
	if err != nil {
		return err
	}
	return errs[0]
}

// rawPool is a set of netlink sockets, one per exchange in flight: parallel
// attaches each send their requests on a socket of their own and queue
// only for the kernel's RTNL, not for a socket in front of it (with one
// socket, half of 8 parallel attaches waited for it at any time: the
// daemon's mutex profile, docs/benchmarks.md). A socket goes back to the
// pool after its exchange; the pool holds as many as were ever in use at
// once.
type rawPool struct {
	mu   sync.Mutex
	free []*nl.NetlinkSocket
	open func() (*nl.NetlinkSocket, error)
}

func (p *rawPool) get() (*nl.NetlinkSocket, error) {
	p.mu.Lock()
	if k := len(p.free); k > 0 {
		s := p.free[k-1]
		p.free = p.free[:k-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	s, err := p.open()
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return s, nil
}

func (p *rawPool) put(s *nl.NetlinkSocket) {
	p.mu.Lock()
	p.free = append(p.free, s)
	p.mu.Unlock()
}

func (p *rawPool) transact(reqs []*nl.NetlinkRequest, echo map[uint32][]byte) ([]error, error) {
	s, err := p.get()
	if err != nil {
		return nil, err
	}
	errs, err := transact(s, reqs, echo)
	if err != nil {
		// The exchange broke off: late answers may still come on this
		// socket. Close it rather than hand them to the next exchange.
		s.Close()
		return nil, err
	}
	p.put(s)
	return errs, nil
}

// execute sends one request and returns the kernel's answer to it.
func (p *rawPool) execute(req *nl.NetlinkRequest) error {
	errs, err := p.transact([]*nl.NetlinkRequest{req}, nil)
	if err != nil {
		return err
	}
	return errs[0]
}

// transact sends reqs on s, batchSize to a sendmsg, and waits for every
// ack. The kernel handles the messages of one sendmsg in order and keeps
// going after one fails, so each gets its own error (nil on success). echo
// collects the RTM_NEWLINK messages the kernel sends back for requests
// with NLM_F_ECHO, keyed by sequence number. One exchange at a time on s.
func transact(s *nl.NetlinkSocket, reqs []*nl.NetlinkRequest, echo map[uint32][]byte) ([]error, error) {
	errs := make([]error, len(reqs))
	for start := 0; start < len(reqs); start += batchSize {
		chunk := reqs[start:min(start+batchSize, len(reqs))]
		pending := map[uint32]int{}
		var buf []byte
		for i, r := range chunk {
			pending[r.Seq] = start + i
			buf = append(buf, r.Serialize()...)
		}
		if err := unix.Sendto(s.GetFd(), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("netlink send: %w", err)
		}
		for len(pending) > 0 {
			msgs, from, err := s.Receive()
			if err != nil {
				return nil, fmt.Errorf("netlink receive: %w", err)
			}
			if from.Pid != nl.PidKernel {
				continue
			}
			for _, m := range msgs {
				i, ok := pending[m.Header.Seq]
				if !ok {
					continue // a late answer to an earlier, failed exchange
				}
				switch m.Header.Type {
				case unix.RTM_NEWLINK:
					if echo != nil {
						echo[m.Header.Seq] = m.Data
					}
				case unix.NLMSG_ERROR:
					if len(m.Data) >= 4 {
						if e := int32(nl.NativeEndian().Uint32(m.Data[0:4])); e != 0 {
							errs[i] = unix.Errno(-e)
						}
					}
					delete(pending, m.Header.Seq)
				}
			}
		}
	}
	return errs, nil
}

func notFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV)
}

// handleAt returns a netlink handle bound to the namespace ns. The socket is
// opened on a locked thread that enters ns and comes back; should coming
// back fail, the thread stays locked and the runtime ends it with the
// goroutine, rather than reuse a thread left in the sandbox's namespace
// (netlink.NewHandleAt unlocks it regardless).
func handleAt(ns vnetns.NsHandle) (*netlink.Handle, error) {
	return doIn(ns, func() (*netlink.Handle, error) {
		// No namespace given: the socket opens in this thread's namespace.
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			err = fmt.Errorf("open netlink in sandbox namespace: %w", err)
		}
		return h, err
	})
}

// doIn runs fn on a locked thread that entered ns, and returns the thread
// to its namespace. Sockets fn opens belong to ns for their lifetime.
func doIn[T any](ns vnetns.NsHandle, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	c := make(chan result, 1)
	go func() {
		var zero T
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			c <- result{zero, fmt.Errorf("current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := vnetns.Set(ns); err != nil {
			runtime.UnlockOSThread() // setns failed: still in orig
			c <- result{zero, fmt.Errorf("enter sandbox namespace: %w", err)}
			return
		}
		v, err := fn()
		if vnetns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		c <- result{v, err}
	}()
	r := <-c
	return r.v, r.err
}

// handleAtPath is handleAt on the namespace pinned (or found) at path,
// after checking that it is the namespace with identity ino (0: any).
func handleAtPath(path string, ino uint64) (*netlink.Handle, error) {
	ns, err := netns.OpenChecked(path, ino)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return handleAt(ns)
}

// BridgeMAC derives a stable MAC for a bridge from its gateway address, so
// that the gateway's MAC does not change as ports come and go (a bridge
// otherwise takes the lowest MAC of its ports, and sandboxes' ARP and
// neighbour caches go stale): 02:42 and the last four bytes of the IPv4
// gateway, or of the IPv6 one on an IPv6-only network — the scheme
// endpoints' MACs follow, and the gateway is an address no endpoint has.
// nil without a gateway.
func BridgeMAC(b Bridge) net.HardwareAddr {
	gw, ok := b.gateway(ipv4)
	if !ok {
		if gw, ok = b.gateway(ipv6); !ok {
			return nil
		}
	}
	a := gw.Addr().AsSlice()
	a = a[len(a)-4:]
	return net.HardwareAddr{0x02, 0x42, a[0], a[1], a[2], a[3]}
}

func (n *netlinkLinks) EnsureBridge(b Bridge) (int, error) {
	if err := b.check(); err != nil {
		return 0, err
	}
	l, err := n.h.LinkByName(b.Name)
	if b.External {
		if err != nil {
			return 0, fmt.Errorf("look up %s, the switch's own port: %w", b.Name, err)
		}
		return n.configureGateway(b, l)
	}
	switch {
	case notFound(err):
		off := false
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.Name, MTU: b.MTU}, MulticastSnooping: &off}
		br.HardwareAddr = BridgeMAC(b)
		if err := n.h.LinkAdd(br); err != nil {
			return 0, fmt.Errorf("create bridge %s: %w", b.Name, err)
		}
		if l, err = n.h.LinkByName(b.Name); err != nil {
			return 0, fmt.Errorf("look up new bridge %s: %w", b.Name, err)
		}
	case err != nil:
		return 0, fmt.Errorf("look up %s: %w", b.Name, err)
	case l.Type() != "bridge":
		return 0, fmt.Errorf("%s exists and is a %s, not a bridge: pick another bridge name or remove it", b.Name, l.Type())
	}
	// Multicast snooping off: with it on, the kernel re-enables multicast
	// on every port of the bridge each time one port comes up
	// (br_port_state_selection → br_multicast_enable_port, timers and
	// locks per port), so an attach cost grows with the number of
	// sandboxes on the network. Without a multicast querier on the
	// network — the default — a snooping bridge floods multicast to every
	// port anyway, which is what it does now, always. A network with
	// bridge options sets them all, snooping included, in one request.
	if b.Options != nil {
		br, _ := l.(*netlink.Bridge)
		vlanOn := br != nil && br.VlanFiltering != nil && *br.VlanFiltering
		if err := n.raw.execute(bridgeOptionsRequest(l.Attrs().Index, b.Options, vlanOn)); err != nil {
			if b.Options.VLANFiltering && errors.Is(err, unix.EOPNOTSUPP) {
				return 0, fmt.Errorf("bridge %s: %w", b.Name, ErrNoVLANFiltering)
			}
			return 0, fmt.Errorf("set STP, ageing, VLAN filtering and multicast snooping of %s: %w", b.Name, err)
		}
	} else if br, ok := l.(*netlink.Bridge); ok && (br.MulticastSnooping == nil || *br.MulticastSnooping) {
		off := false
		if err := n.h.LinkModify(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Index: l.Attrs().Index, Name: b.Name}, MulticastSnooping: &off}); err != nil {
			return 0, fmt.Errorf("turn multicast snooping off on %s: %w", b.Name, err)
		}
	}
	idx, err := n.configureGateway(b, l)
	if err != nil {
		return 0, err
	}
	n.brMu.Lock()
	n.brIndex[b.Name] = idx
	n.brMu.Unlock()
	return idx, nil
}

// configureGateway makes link l the network's gateway: MTU, IPv6
// behaviour, gateway and link-local addresses, up, route_localnet.
func (n *netlinkLinks) configureGateway(b Bridge, l netlink.Link) (int, error) {
	if b.MTU > 0 && l.Attrs().MTU != b.MTU {
		if err := n.h.LinkSetMTU(l, b.MTU); err != nil {
			return 0, fmt.Errorf("set MTU of %s to %d: %w", b.Name, b.MTU, err)
		}
	}
	if err := n.bridgeIPv6(b, l); err != nil {
		return 0, err
	}
	for _, gw := range b.Gateways {
		if err := n.h.AddrReplace(l, hostAddr(gw)); err != nil {
			return 0, fmt.Errorf("add %s to %s: %w", gw, b.Name, addrErr(err, gw, b.Name))
		}
	}
	if _, ok := b.gateway(ipv6); ok && !hasLinkLocal(n.h, l) {
		ll := LinkLocal(l.Attrs().HardwareAddr)
		if err := n.h.AddrReplace(l, hostAddr(ll)); err != nil {
			return 0, fmt.Errorf("add link-local %s to %s: %w", ll, b.Name, addrErr(err, ll, b.Name))
		}
	}
	if err := n.h.LinkSetUp(l); err != nil {
		return 0, fmt.Errorf("bring %s up: %w", b.Name, err)
	}
	if err := n.raw.execute(routeLocalnetRequest(l.Attrs().Index)); err != nil {
		return 0, fmt.Errorf("set route_localnet on %s: %w", b.Name, err)
	}
	return l.Attrs().Index, nil
}

// bridgeIPv6 sets a bridge's IPv6 behaviour before it is up, whatever its
// families:
//   - addrgenmode none: the kernel makes no link-local address of its own,
//     which it would first check for duplicates (DAD: 1–2 s tentative).
//     A bridge with an IPv6 gateway gets one from EnsureBridge instead,
//     without DAD: the host needs it as the source of its neighbour
//     solicitations for packets it forwards to a sandbox (ndisc_send_ns
//     sends none while the link has no usable link-local address, so
//     inbound traffic to a sandbox it has not heard from yet would be
//     dropped until DAD ends).
//   - accept_ra=0, autoconf=0: a sandbox that sends a router advertisement
//     must not give the host a route or an address through the bridge.
//     Without IPv6 in the kernel there is nothing to turn off.
func (n *netlinkLinks) bridgeIPv6(b Bridge, l netlink.Link) error {
	_, v6 := b.gateway(ipv6)
	// EAFNOSUPPORT: the kernel has no IPv6 (ipv6.disable=1).
	if err := n.raw.execute(addrGenModeNoneRequest(l.Attrs().Index)); err != nil && (v6 || !errors.Is(err, unix.EAFNOSUPPORT)) {
		return fmt.Errorf("set addrgenmode none on %s: %w", b.Name, err)
	}
	if err := n.inSelf(func() error { return noAutoconf(b.Name) }); err != nil && (v6 || !errors.Is(err, errNoIPv6)) {
		return fmt.Errorf("bridge %s: %w", b.Name, err)
	}
	return nil
}

// hostAddr is the netlink.Addr for one of pontoon's own addresses: IPv6
// ones without duplicate address detection (IFA_F_NODAD: pontoon's
// addresses are unique by construction, and DAD keeps an address
// tentative, unusable, for 1–2 s).
func hostAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// addrErr explains the error the kernel gives for an IPv6 address on a
// link with IPv6 turned off.
func addrErr(err error, p netip.Prefix, link string) error {
	if p.Addr().Is6() && errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (IPv6 is disabled on %s: net.ipv6.conf.%s.disable_ipv6=1; set it to 0, or leave the network IPv4-only)", err, link, link)
	}
	return err
}

// brportRequest sets a bridge port's hairpin mode and isolation in one
// RTM_SETLINK (AF_BRIDGE, IFLA_PROTINFO).
func brportRequest(index int, isolated, hairpin bool) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
	info.AddRtAttr(nl.IFLA_BRPORT_MODE, boolByte(hairpin))
	if isolated {
		info.AddRtAttr(nl.IFLA_BRPORT_ISOLATED, []byte{1})
	}
	req.AddData(info)
	return req
}

// ipv4DevconfRouteLocalnet is IPV4_DEVCONF_ROUTE_LOCALNET (linux/ip.h);
// golang.org/x/sys has no constant for it.
const ipv4DevconfRouteLocalnet = 26

// routeLocalnetRequest sets net.ipv4.conf.<bridge>.route_localnet=1 over
// netlink (IFLA_AF_SPEC → AF_INET → IFLA_INET_CONF), so it always applies
// to this adapter's namespace: the host reaching a published port through
// 127.0.0.1 is DNATed to a sandbox, and the kernel routes a packet with a
// 127.0.0.1 source out of a bridge only with route_localnet on it. (Packets
// for 127.0.0.0/8 arriving from other hosts are dropped by pontoon's
// firewall before NAT.)
func routeLocalnetRequest(index int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	af := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	conf := af.AddRtAttr(unix.AF_INET, nil).AddRtAttr(unix.IFLA_INET_CONF, nil)
	conf.AddRtAttr(ipv4DevconfRouteLocalnet, nl.Uint32Attr(1))
	req.AddData(af)
	return req
}

func (n *netlinkLinks) DeleteBridge(name string) error {
	n.forgetBridge(name)
	if err := n.del.execute(delLinkRequest(name)); err != nil && !notFound(err) {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

func (n *netlinkLinks) forgetBridge(name string) {
	n.brMu.Lock()
	delete(n.brIndex, name)
	n.brMu.Unlock()
}

func (n *netlinkLinks) bridgeIndex(name string) (int, error) {
	n.brMu.Lock()
	idx, ok := n.brIndex[name]
	n.brMu.Unlock()
	if ok {
		return idx, nil
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("look up bridge %s: %w", name, err)
	}
	n.brMu.Lock()
	n.brIndex[name] = l.Attrs().Index
	n.brMu.Unlock()
	return l.Attrs().Index, nil
}

func (n *netlinkLinks) AddVeth(v Veth) (int, error) {
	if err := v.check(); err != nil {
		return 0, err
	}
	brIdx := 0
	if v.Bridge != "" {
		var err error
		if brIdx, err = n.bridgeIndex(v.Bridge); err != nil {
			return 0, fmt.Errorf("add veth %s: %w", v.HostName, err)
		}
	}
	ns := vnetns.None()
	if v.Netns != "" {
		var err error
		if ns, err = netns.OpenChecked(v.Netns, v.NetnsIno); err != nil {
			return 0, fmt.Errorf("add veth %s: %w", v.HostName, err)
		}
		defer ns.Close()
	}
	hostIdx, peerIdx, err := n.createVeth(v, brIdx, ns)
	if err != nil {
		// Nothing was created. The bridge may have been recreated under
		// us (new ifindex): look it up again next time.
		n.forgetBridge(v.Bridge)
		return 0, err
	}
	if hostIdx, err = n.configureVeth(v, ns, brIdx, hostIdx, peerIdx); err != nil {
		// Delete what we created, by its ifindex: by name we could hit a
		// link someone made since. The peer goes with it.
		if hostIdx != 0 {
			if derr := n.del.execute(delLinkIndexRequest(hostIdx)); derr != nil && !notFound(derr) {
				n.log.Error("roll back veth", "link", v.HostName, "index", hostIdx, "err", derr)
			}
		}
		return 0, err
	}
	return hostIdx, nil
}

// createVeth makes the pair in one RTM_NEWLINK: the host end up and on the
// bridge, the peer directly inside the sandbox (IFLA_NET_NS_FD in the
// peer's attributes: no move, no RCU barrier), and none of the follow-up
// requests (look up, set master, set up) netlink.LinkAdd would make.
// NLM_F_ECHO makes the kernel (≥ 6.3) send the new host link back: its
// ifindex and IFLA_LINK, the peer's ifindex in the sandbox, spare two
// lookups. On an older kernel the indexes are 0 and configureVeth looks the
// peer up.
func (n *netlinkLinks) createVeth(v Veth, brIdx int, ns vnetns.NsHandle) (hostIdx, peerIdx int, err error) {
	req := vethRequest(v, brIdx, int(ns))
	echo := map[uint32][]byte{}
	errs, err := n.raw.transact([]*nl.NetlinkRequest{req}, echo)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return 0, 0, fmt.Errorf("create veth %s with peer %s: an interface with one of these names exists: %w", v.HostName, v.IfName, err)
		}
		if errors.Is(err, unix.EXFULL) {
			// br_add_if: a bridge has at most BR_MAX_PORTS-1 = 1023 ports.
			return 0, 0, fmt.Errorf("create veth %s: bridge %s has the kernel's maximum of 1023 ports: %w", v.HostName, v.Bridge, err)
		}
		return 0, 0, fmt.Errorf("create veth %s with peer %s in %s: %w", v.HostName, v.IfName, v.Netns, err)
	}
	if data, ok := echo[req.Seq]; ok && len(data) >= unix.SizeofIfInfomsg {
		hostIdx = int(nl.DeserializeIfInfomsg(data).Index)
		attrs, _ := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
		for _, a := range attrs {
			if a.Attr.Type == unix.IFLA_LINK && len(a.Value) == 4 {
				peerIdx = int(nl.NativeEndian().Uint32(a.Value))
			}
		}
	}
	if peerIdx == 0 {
		hostIdx = 0
	}
	if hostIdx == 0 {
		// No echo: find the host end for configureVeth's rollback.
		if l, err := n.h.LinkByName(v.HostName); err == nil {
			hostIdx = l.Attrs().Index
		}
		peerIdx = 0
	}
	return hostIdx, peerIdx, nil
}

// vethRequest is the RTM_NEWLINK for a veth pair (see createVeth).
func vethRequest(v Veth, brIdx, nsFd int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change, msg.Flags = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(v.HostName)))
	if v.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(v.MTU))))
	}
	// IFLA_MASTER at creation: rtnl_newlink enslaves the new link itself.
	if brIdx != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(brIdx))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	// The peer cannot be brought up in the same request: veth_newlink
	// configures it before the pair is linked, and veth_open then fails
	// with ENOTCONN (seen on 6.18). configureVeth brings it up.
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(v.IfName))
	if v.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(v.MTU)))
	}
	if v.MAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(v.MAC))
	}
	if nsFd >= 0 {
		peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(nsFd)))
	}
	req.AddData(info)
	return req
}

// configureVeth finishes a pair createVeth made: port flags and the host
// end's addrgenmode, then the peer's addresses, up, routes and rules. It
// returns the host end's ifindex (found here when createVeth could not
// learn it).
//
// The peer's requests go out in one sendmsg on a socket in the sandbox
// (ifaceRequests): the kernel runs them in order in that one call, each
// taking RTNL in turn, instead of one round trip to user space between
// them — where another attach's request would take RTNL, and this attach
// would queue for it again, up to four times.
func (n *netlinkLinks) configureVeth(v Veth, ns vnetns.NsHandle, brIdx, hostIdx, peerIdx int) (int, error) {
	if peerIdx == 0 && v.Netns != "" {
		// No echo from createVeth (kernel before 6.3): look the peer up.
		sh, err := handleAt(ns)
		if err != nil {
			return hostIdx, err
		}
		peer, err := sh.LinkByName(v.IfName)
		sh.Close()
		if err != nil {
			return hostIdx, fmt.Errorf("find %s in the sandbox: %w", v.IfName, err)
		}
		// The peer's IFLA_LINK is the host end's ifindex.
		peerIdx, hostIdx = peer.Attrs().Index, peer.Attrs().ParentIndex
	}
	// Bridge port flags before the peer is up: the port has no carrier
	// until then, so no frame crosses it unisolated. Hairpin mode lets a
	// sandbox reach its own published port: br_netfilter bridges a DNATed
	// frame whose new destination is on the same bridge straight back out
	// of the port it came in on, which a bridge does only in hairpin mode.
	// In the same sendmsg, addrgenmode none on the host end, also before
	// it has carrier (the kernel makes a link-local address when the link
	// becomes ready): a bridge port's own IPv6 is never used — frames
	// arriving on it belong to the bridge — and a link-local address on
	// each would cost a DAD and an fe80::/64 route per endpoint on the
	// host.
	// A port in a VLAN gets it in the same sendmsg (vlanRequests).
	// A host end for a switch other than a Linux bridge (Bridge "": an
	// Open vSwitch port) gets only addrgenmode.
	reqs := []*nl.NetlinkRequest{addrGenModeNoneRequest(hostIdx)}
	if brIdx != 0 {
		reqs = append(reqs, brportRequest(hostIdx, v.Isolated, !v.NoHairpin))
	}
	if v.VLAN != 0 && brIdx != 0 {
		reqs = append(reqs, vlanRequests(hostIdx, brIdx, v.VLAN, v.MAC)...)
	}
	errs, err := n.raw.transact(reqs, nil)
	switch {
	case err != nil:
		return hostIdx, fmt.Errorf("set bridge port flags and addrgenmode of %s: %w", v.HostName, err)
	case errs[0] != nil:
		return hostIdx, fmt.Errorf("set addrgenmode none on %s: %w", v.HostName, errs[0])
	case len(errs) > 1 && errs[1] != nil:
		return hostIdx, fmt.Errorf("set bridge port flags of %s: %w", v.HostName, errs[1])
	}
	for _, e := range errs[min(2, len(errs)):] {
		if e != nil {
			return hostIdx, fmt.Errorf("put %s in VLAN %d (is VLAN filtering on on bridge %s?): %w", v.HostName, v.VLAN, v.Bridge, e)
		}
	}
	if v.Netns == "" {
		// The peer stays on the host, down, for someone else to move and
		// configure (Docker moves it into the container itself).
		return hostIdx, nil
	}
	if err := n.configureIface(ns, peerIdx, v.Iface); err != nil {
		return hostIdx, err
	}
	return hostIdx, nil
}

// addrRequest adds an address to a link, as netlink.AddrAdd does (local
// and address the same; for IPv4 the subnet's broadcast address).
//
// IPv6 addresses get IFA_F_NODAD: pontoon's addresses are unique by
// construction (the IPAM's, and link-local ones from unique MACs), and
// duplicate address detection would keep each tentative — unusable as a
// source, and refused as a route's src — for 1–2 s after the link comes
// up (BenchmarkAddVethDualStack: time until usable). A NODAD address is
// never tentative, so the routes with src that follow in the same batch
// are accepted.
func addrRequest(index int, p netip.Prefix, dad bool) *nl.NetlinkRequest {
	f := familyOf(p.Addr())
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfAddrmsg(f.af)
	msg.Index = uint32(index)
	msg.Prefixlen = uint8(p.Bits())
	if f.af == unix.AF_INET6 && !dad {
		msg.Flags = unix.IFA_F_NODAD
	}
	req.AddData(msg)
	a := p.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, a))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, a))
	if f.af == unix.AF_INET && p.Bits() < 31 {
		mask := net.CIDRMask(p.Bits(), 32)
		brd := make([]byte, 4)
		for i := range brd {
			brd[i] = a[i] | ^mask[i]
		}
		req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, brd))
	}
	return req
}

// addrGenModeNoneRequest sets IFLA_INET6_ADDR_GEN_MODE to none.
func addrGenModeNoneRequest(index int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	spec.AddRtAttr(unix.AF_INET6, nil).AddRtAttr(unix.IFLA_INET6_ADDR_GEN_MODE, []byte{nl.IN6_ADDR_GEN_MODE_NONE})
	req.AddData(spec)
	return req
}

// linkUpRequest brings a link up.
func linkUpRequest(index int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change, msg.Flags = unix.IFF_UP, unix.IFF_UP
	msg.Index = int32(index)
	req.AddData(msg)
	return req
}

// routeFamily is the family of a route pontoon makes: its gateway's, or
// its destination's.
func routeFamily(r *netlink.Route) family {
	ip := r.Gw
	if ip == nil && r.Dst != nil {
		ip = r.Dst.IP
	}
	a, _ := addrOf(ip)
	return familyOf(a)
}

// routeReplaceRequest is netlink.RouteReplace's request for the routes
// pontoon makes, of either family: a gateway, or a destination with a
// source, on a link, in the main table or another.
func routeReplaceRequest(r *netlink.Route) *nl.NetlinkRequest {
	f := routeFamily(r)
	bytes := func(ip net.IP) []byte {
		if f.af == unix.AF_INET {
			return ip.To4()
		}
		return ip.To16()
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	msg := nl.NewRtMsg()
	msg.Family = uint8(f.af)
	msg.Scope = uint8(r.Scope)
	if r.Dst != nil {
		ones, _ := r.Dst.Mask.Size()
		msg.Dst_len = uint8(ones)
	}
	table := r.Table
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	if table < 256 {
		msg.Table = uint8(table)
	} else {
		msg.Table = unix.RT_TABLE_UNSPEC
	}
	req.AddData(msg)
	if r.Dst != nil {
		req.AddData(nl.NewRtAttr(unix.RTA_DST, bytes(r.Dst.IP)))
	}
	if r.Src != nil {
		req.AddData(nl.NewRtAttr(unix.RTA_PREFSRC, bytes(r.Src)))
	}
	if r.Gw != nil {
		req.AddData(nl.NewRtAttr(unix.RTA_GATEWAY, bytes(r.Gw)))
	}
	if table >= 256 {
		req.AddData(nl.NewRtAttr(unix.RTA_TABLE, nl.Uint32Attr(uint32(table))))
	}
	req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(r.LinkIndex))))
	return req
}

// ruleAddRequest is netlink.RuleAdd's request for policyRule(ip, table),
// in ip's family.
func ruleAddRequest(ip netip.Addr, table int) *nl.NetlinkRequest {
	f := familyOf(ip)
	req := nl.NewNetlinkRequest(unix.RTM_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	hdr := nl.NewRtMsg() // a fib_rule_hdr has the same layout
	hdr.Family = uint8(f.af)
	hdr.Src_len = uint8(f.bits)
	hdr.Type = nl.FR_ACT_TO_TBL
	if table < 256 {
		hdr.Table = uint8(table)
	} else {
		hdr.Table = unix.RT_TABLE_UNSPEC
	}
	req.AddData(hdr)
	req.AddData(nl.NewRtAttr(nl.FRA_SRC, ip.AsSlice()))
	req.AddData(nl.NewRtAttr(nl.FRA_PRIORITY, nl.Uint32Attr(uint32(table))))
	if table >= 256 {
		req.AddData(nl.NewRtAttr(nl.FRA_TABLE, nl.Uint32Attr(uint32(table))))
	}
	return req
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func routeString(r *netlink.Route) string {
	if r.Dst == nil {
		return "default via " + r.Gw.String()
	}
	return r.Dst.String()
}

// policyRule is "from ip lookup table" (priority table) in ip's family:
// a /32 or /128 source.
func policyRule(ip netip.Addr, table int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = familyOf(ip).af
	r.Src = ipNet(netip.PrefixFrom(ip, ip.BitLen()))
	r.Table = table
	r.Priority = table
	return r
}

// DisableVeth takes the link down and off its bridge in one RTM_SETLINK
// (by name: no lookup first).
func (n *netlinkLinks) DisableVeth(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change, msg.Flags = unix.IFF_UP, 0
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(0)))
	if err := n.raw.execute(req); err != nil && !notFound(err) {
		return fmt.Errorf("take %s down and off its bridge: %w", name, err)
	}
	return nil
}

// groupDeleteMax bounds the links of one group delete. The kernel holds
// RTNL while it unregisters the group, and every attach beside it waits
// (it makes six rtnetlink requests): BenchmarkDeleteStall measured the
// longest wait of a request beside a group delete of 16 veths at 4 ms, 32
// at 14 ms, 64 at 20 ms, 256 at 96 ms; deleting 32 takes ~29 ms in all,
// so 32 at a time still deletes ~1000 veths a second.
const groupDeleteMax = 32

// DeleteVeths deletes links, groupDeleteMax at a time: it marks them with
// deleteGroup (one batch of RTM_SETLINK by name) and deletes the group
// with one RTM_DELLINK; the kernel then waits for one RCU grace period for
// all of them, instead of one each (~20 ms apiece). If the group delete
// fails, it deletes them one by one.
func (n *netlinkLinks) DeleteVeths(names []string) error {
	var errs []error
	for chunk := range slices.Chunk(names, groupDeleteMax) {
		if err := n.deleteVeths(chunk); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *netlinkLinks) deleteVeths(names []string) error {
	if len(names) == 0 {
		return nil
	}
	// Held from marking to deleting: a concurrent batch would delete this
	// one's links, or mark links into a group being deleted.
	n.delMu.Lock()
	defer n.delMu.Unlock()
	marks := make([]*nl.NetlinkRequest, len(names))
	for i, name := range names {
		req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(deleteGroup)))
		marks[i] = req
	}
	// On the delete socket (only deletes use it, under delMu): attaches
	// use raw, and must not wait behind a batch of marks.
	errs, err := n.del.transact(marks, nil)
	if err != nil {
		return fmt.Errorf("mark %d links for deletion: %w", len(names), err)
	}
	var grouped, single []string
	for i, name := range names {
		switch {
		case errs[i] == nil:
			grouped = append(grouped, name)
		case !notFound(errs[i]):
			single = append(single, name)
		}
	}
	if len(grouped) > 0 {
		req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC)) // index 0: select by group
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(deleteGroup)))
		if err := n.del.execute(req); err != nil && !notFound(err) {
			n.log.Warn("group delete failed; deleting one by one", "count", len(grouped), "err", err)
			single = append(single, grouped...)
		}
	}
	return n.deleteEach(single)
}

// deleteEach deletes links by name, one RTM_DELLINK each (sent in one
// batch; the kernel still waits for RCU once per link). Links that are not
// there are success.
func (n *netlinkLinks) deleteEach(names []string) error {
	if len(names) == 0 {
		return nil
	}
	reqs := make([]*nl.NetlinkRequest, len(names))
	for i, name := range names {
		reqs[i] = delLinkRequest(name)
	}
	errs, err := n.del.transact(reqs, nil)
	if err != nil {
		return fmt.Errorf("delete %d links: %w", len(names), err)
	}
	var out []error
	for i, e := range errs {
		if e != nil && !notFound(e) {
			out = append(out, fmt.Errorf("delete %s: %w", names[i], e))
		}
	}
	return errors.Join(out...)
}

func delLinkRequest(name string) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	return req
}

func delLinkIndexRequest(index int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	return req
}

// deleteByName deletes one link (benchmarks compare it with DeleteVeths).
func (n *netlinkLinks) deleteByName(name string) error { return n.deleteEach([]string{name}) }

// retryDump calls dump again while the kernel reports that the dump was
// interrupted by a concurrent change (NLM_F_DUMP_INTR): the result may be
// inconsistent then.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range 10 {
		var out []T
		if out, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, err
}

func (n *netlinkLinks) ListLinks(prefixes ...string) ([]LinkInfo, error) {
	ls, err := retryDump(n.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []LinkInfo
	for _, l := range ls {
		a := l.Attrs()
		if len(prefixes) > 0 && !hasAnyPrefix(a.Name, prefixes) {
			continue
		}
		out = append(out, LinkInfo{Name: a.Name, Index: a.Index, Type: l.Type(), Master: names[a.MasterIndex], MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, Stats: linkStats(a)})
	}
	return out, nil
}

// linkStats are the counters the kernel sent with a link (a dump and a
// lookup have them: no extra request).
func linkStats(a *netlink.LinkAttrs) *LinkStats {
	s := a.Statistics
	if s == nil {
		return nil
	}
	return &LinkStats{
		RxBytes: s.RxBytes, RxPackets: s.RxPackets, RxDropped: s.RxDropped, RxErrors: s.RxErrors,
		TxBytes: s.TxBytes, TxPackets: s.TxPackets, TxDropped: s.TxDropped, TxErrors: s.TxErrors,
	}
}

func (n *netlinkLinks) Uplinks() ([]LinkInfo, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) { return n.h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var idx []int
	for _, r := range routes {
		if p, ok := toPrefix(r.Dst); (!ok || p.Bits() == 0) && r.LinkIndex > 0 {
			idx = append(idx, r.LinkIndex)
		}
	}
	slices.Sort(idx)
	// One lookup per uplink (a host has one or two), not a dump of every
	// link: with 500 sandboxes that dump cost the topology 7 ms.
	var out []LinkInfo
	for _, i := range slices.Compact(idx) {
		l, err := n.h.LinkByIndex(i)
		if notFound(err) {
			continue // gone since the route dump
		}
		if err != nil {
			return nil, fmt.Errorf("look up uplink %d: %w", i, err)
		}
		info, err := n.info(l)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

func hasAnyPrefix(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func (n *netlinkLinks) LinkIndex(name string) (int, error) {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", name, err)
	}
	return l.Attrs().Index, nil
}

func (n *netlinkLinks) Link(name string) (LinkInfo, bool, error) {
	l, err := n.h.LinkByName(name)
	if notFound(err) {
		return LinkInfo{}, false, nil
	}
	if err != nil {
		return LinkInfo{}, false, fmt.Errorf("look up %s: %w", name, err)
	}
	info, err := n.info(l)
	return info, err == nil, err
}

// info describes one link as ListLinks does, looking up its master's name.
func (n *netlinkLinks) info(l netlink.Link) (LinkInfo, error) {
	a := l.Attrs()
	info := LinkInfo{Name: a.Name, Index: a.Index, Type: l.Type(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, Stats: linkStats(a)}
	if a.MasterIndex != 0 {
		m, err := n.h.LinkByIndex(a.MasterIndex)
		switch {
		case err == nil:
			info.Master = m.Attrs().Name
		case !notFound(err):
			return LinkInfo{}, fmt.Errorf("look up the master of %s: %w", a.Name, err)
		}
	}
	return info, nil
}

// hostAddrs lists the host namespace's addresses of both families in one
// dump, leaving out what hostScoped names.
func (n *netlinkLinks) hostAddrs() ([]netlink.Addr, error) {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return n.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	return slices.DeleteFunc(addrs, func(a netlink.Addr) bool {
		p, ok := toPrefix(a.IPNet)
		return !ok || hostScoped(p)
	}), nil
}

// hostRoutes lists the host namespace's main-table routes of both families
// in one dump, leaving out what hostScoped names.
func (n *netlinkLinks) hostRoutes() ([]netlink.Route, error) {
	// Main table only: RouteList leaves the others out without a filter.
	routes, err := retryDump(func() ([]netlink.Route, error) { return n.h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return slices.DeleteFunc(routes, func(r netlink.Route) bool {
		p, ok := toPrefix(r.Dst)
		return !ok || (r.Family != unix.AF_INET && r.Family != unix.AF_INET6) || hostScoped(p)
	}), nil
}

// hostDump is hostAddrs and hostRoutes.
func (n *netlinkLinks) hostDump() ([]netlink.Addr, []netlink.Route, error) {
	addrs, err := n.hostAddrs()
	if err != nil {
		return nil, nil, err
	}
	routes, err := n.hostRoutes()
	if err != nil {
		return nil, nil, err
	}
	return addrs, routes, nil
}

func (n *netlinkLinks) HostPrefixes() ([]netip.Prefix, error) {
	addrs, routes, err := n.hostDump()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		p, _ := toPrefix(a.IPNet)
		out = append(out, p.Masked())
	}
	for _, r := range routes {
		if p, _ := toPrefix(r.Dst); p.Bits() > 0 {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

func (n *netlinkLinks) HostNets() ([]HostNet, error) {
	addrs, routes, err := n.hostDump()
	if err != nil {
		return nil, err
	}
	// Few links carry addresses or routes (veths of sandboxes carry none
	// on the host side): look each up by index rather than dumping every
	// link.
	names := map[int]string{}
	var out []HostNet
	for _, a := range addrs {
		p, _ := toPrefix(a.IPNet)
		out = append(out, HostNet{Prefix: p, Link: n.linkName(names, a.LinkIndex), Kind: HostAddress})
	}
	for _, r := range routes {
		p, _ := toPrefix(r.Dst)
		if p.Bits() == 0 || r.Gw != nil || len(r.MultiPath) > 0 || r.Type != unix.RTN_UNICAST || r.LinkIndex == 0 {
			continue // the default route, routes through a gateway, blackholes
		}
		out = append(out, HostNet{Prefix: p.Masked(), Link: n.linkName(names, r.LinkIndex), Kind: HostRoute})
	}
	return out, nil
}

func (n *netlinkLinks) DeleteRule(netnsPath string, ino uint64, addr netip.Addr, table int) error {
	if !addr.IsValid() || addr.Is4In6() {
		return fmt.Errorf("delete rule from %s lookup %d: give the endpoint's IPv4 or IPv6 address", addr, table)
	}
	sh, err := handleAtPath(netnsPath, ino)
	if errors.Is(err, ErrNetnsGone) {
		return nil // namespace gone (or not the sandbox's any more): so is the rule
	}
	if err != nil {
		return fmt.Errorf("delete rule from %s lookup %d: %w", addr, table, err)
	}
	defer sh.Close()
	if err := sh.RuleDel(policyRule(addr, table)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete rule from %s lookup %d: %w", addr, table, err)
	}
	return nil
}

func (n *netlinkLinks) CheckVeth(v Veth) []string {
	var out []string
	host, err := n.h.LinkByName(v.HostName)
	if err != nil {
		return []string{fmt.Sprintf("host end %s is missing", v.HostName)}
	}
	if v.Bridge != "" {
		if br, err := n.bridgeIndex(v.Bridge); err != nil || host.Attrs().MasterIndex != br {
			out = append(out, fmt.Sprintf("host end %s is not a port of bridge %s", v.HostName, v.Bridge))
		}
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("host end %s is down", v.HostName))
	}
	if p, err := n.h.LinkGetProtinfo(host); err == nil && v.Bridge != "" {
		if p.Isolated != v.Isolated {
			out = append(out, fmt.Sprintf("host end %s has port isolation %v, want %v", v.HostName, p.Isolated, v.Isolated))
		}
		if p.Hairpin == v.NoHairpin {
			out = append(out, fmt.Sprintf("host end %s has hairpin mode %v, want %v", v.HostName, p.Hairpin, !v.NoHairpin))
		}
	}
	if v.Netns == "" {
		return out // the other end is someone else's (Docker's)
	}
	sh, err := handleAtPath(v.Netns, v.NetnsIno)
	if err != nil {
		return append(out, fmt.Sprintf("sandbox namespace: %v", err))
	}
	defer sh.Close()
	peer, err := sh.LinkByName(v.IfName)
	if err != nil {
		return append(out, fmt.Sprintf("%s is missing in the sandbox", v.IfName))
	}
	if peer.Attrs().ParentIndex != host.Attrs().Index {
		out = append(out, fmt.Sprintf("%s in the sandbox is not the peer of %s", v.IfName, v.HostName))
	}
	return append(out, checkIface(sh, peer, v.Iface)...)
}

// hasRule reports whether the namespace has the rule "from ip lookup
// table".
func hasRule(h *netlink.Handle, ip netip.Addr, table int) bool {
	rules, _ := h.RuleListFiltered(familyOf(ip).af, policyRule(ip, table), netlink.RT_FILTER_SRC|netlink.RT_FILTER_TABLE)
	return len(rules) > 0
}

// hasRoute reports whether the namespace has route want (destination,
// gateway, device and table), in want's family.
func hasRoute(h *netlink.Handle, want *netlink.Route) bool {
	f := routeFamily(want)
	dst := want.Dst
	if dst == nil {
		dst = f.defaultDst()
	}
	filter := &netlink.Route{LinkIndex: want.LinkIndex, Table: want.Table, Dst: dst}
	mask := netlink.RT_FILTER_OIF | netlink.RT_FILTER_DST
	if want.Table != 0 {
		mask |= netlink.RT_FILTER_TABLE
	}
	routes, _ := h.RouteListFiltered(f.af, filter, mask)
	for _, r := range routes {
		if want.Gw == nil || r.Gw.Equal(want.Gw) {
			return true
		}
	}
	return false
}

func (n *netlinkLinks) SetDefaultRoute(netnsPath string, ino uint64, ifname string, gw netip.Addr) error {
	if !gw.IsValid() || gw.Is4In6() || gw.IsUnspecified() {
		return fmt.Errorf("default route via %q dev %s: give the network's IPv4 or IPv6 gateway", gw, ifname)
	}
	sh, err := handleAtPath(netnsPath, ino)
	if err != nil {
		return err
	}
	defer sh.Close()
	l, err := sh.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ifname, netnsPath, err)
	}
	if err := sh.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s dev %s: %w", gw, ifname, err)
	}
	return nil
}
