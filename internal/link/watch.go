package link

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
)

// EventKind says what a kernel notification was about.
type EventKind int

const (
	// LinkChanged: a link was created or changed (RTM_NEWLINK).
	LinkChanged EventKind = iota
	// LinkDeleted: a link is gone (RTM_DELLINK).
	LinkDeleted
	// AddrDeleted, RouteDeleted, RuleDeleted: an address, route or policy
	// rule (IPv4 or IPv6) was removed.
	AddrDeleted
	RouteDeleted
	RuleDeleted
	// ConfChanged: an IPv4 setting of the namespace changed
	// (RTM_NEWNETCONF: forwarding, rp_filter, …).
	ConfChanged
	// Overflow: the kernel dropped notifications (the socket's buffer was
	// full): anything may have changed.
	Overflow
)

func (k EventKind) String() string {
	return [...]string{"link changed", "link deleted", "address deleted", "route deleted", "rule deleted", "ipv4 setting changed", "events lost"}[k]
}

// Event is one kernel notification from a watched namespace.
type Event struct {
	Kind   EventKind
	Name   string // link events: the link's name
	Index  int    // the link (ifindex) it concerns, when known
	Up     bool   // LinkChanged: administratively up
	Master int    // LinkChanged: ifindex of its bridge, 0 for none
}

// watchGroups are the rtnetlink multicast groups a watch joins (as the
// legacy RTMGRP_* bit mask; every group here is below 32). IPv6 addresses,
// routes and rules as well as IPv4 ones: an endpoint's IPv6 address goes
// with its link when the link goes down, and must be noticed. Links whose
// IPv6 is not used (host ends, IPv4-only peers: addrgenmode none) have no
// IPv6 address or route to be notified of.
const watchGroups = 1<<(unix.RTNLGRP_LINK-1) | 1<<(unix.RTNLGRP_IPV4_IFADDR-1) |
	1<<(unix.RTNLGRP_IPV4_ROUTE-1) | 1<<(unix.RTNLGRP_IPV4_RULE-1) | 1<<(unix.RTNLGRP_IPV4_NETCONF-1) |
	1<<(unix.RTNLGRP_IPV6_IFADDR-1) | 1<<(unix.RTNLGRP_IPV6_ROUTE-1) | 1<<(unix.RTNLGRP_IPV6_RULE-1)

// Watch streams link, address, route and rule notifications (both
// families) and IPv4 setting notifications of a namespace until ctx ends; then the channel is closed. netnsPath "" is
// the daemon's (host) namespace; otherwise the namespace at netnsPath, which
// must have identity ino (0: any).
//
// Every watch shares one socket (watchHub): an rtnetlink socket in the
// adapter's namespace that also hears every namespace with an ID there
// (NETLINK_LISTEN_ALL_NSID); each notification comes with the ID of its
// namespace, and the hub hands it to that namespace's watches. A socket per
// watched namespace, as before, cost every notification anywhere on the
// machine a walk over all of them, under RTNL: with 500 sandboxes 0.2 ms of
// an attach's ~0.9 ms under that lock (docs/benchmarks.md).
//
// A watch keeps its namespace open, which keeps it alive (and its ID
// stable): never watch a namespace whose death you want to notice.
func (n *netlinkLinks) Watch(ctx context.Context, netnsPath string, ino uint64) (<-chan Event, error) {
	key, ns := int32(selfKey), vnetns.None()
	if netnsPath != "" {
		h, err := netns.OpenChecked(netnsPath, ino)
		if err != nil {
			return nil, err
		}
		id, err := n.nsid(h)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("watch %s: %w", netnsPath, err)
		}
		key, ns = id, h
	}
	out := make(chan Event, watchQueue)
	w := &watcher{out: out, ctx: ctx}
	if err := n.hub.add(n, key, w); err != nil {
		if ns.IsOpen() {
			ns.Close()
		}
		return nil, err
	}
	go func() {
		<-ctx.Done()
		n.hub.remove(key, w) // no event is handed to w after this
		w.wg.Wait()
		close(out)
		if ns.IsOpen() {
			ns.Close()
		}
	}()
	return out, nil
}

// selfKey is the hub's key for the adapter's own namespace: its
// notifications carry no namespace ID.
const selfKey = -1

// nsid returns the ID the adapter's namespace gives ns, asking the kernel
// to pick one when it has none (a veth into ns also makes one).
func (n *netlinkLinks) nsid(ns vnetns.NsHandle) (int32, error) {
	id, err := n.h.GetNetNsIdByFd(int(ns))
	if err == nil && id >= 0 {
		return int32(id), nil
	}
	// -1: the kernel picks; EEXIST: someone else just made one.
	if err := n.h.SetNetNsIdByFd(int(ns), -1); err != nil && !errors.Is(err, unix.EEXIST) {
		return 0, fmt.Errorf("give the namespace an ID: %w", err)
	}
	id, err = n.h.GetNetNsIdByFd(int(ns))
	if err != nil {
		return 0, fmt.Errorf("namespace ID: %w", err)
	}
	if id < 0 {
		return 0, errors.New("the namespace has no ID")
	}
	return int32(id), nil
}

// watchHub reads the one watch socket and hands notifications to the
// watches of their namespace. The socket is open while there are watches.
type watchHub struct {
	mu       sync.Mutex
	file     *os.File // nil: no watch, no socket
	watchers map[int32]map[*watcher]bool
}

// add registers w for the namespace with ID key, opening the socket for
// the first watch.
func (h *watchHub) add(n *netlinkLinks, key int32, w *watcher) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.file == nil {
		fd, err := doIn(n.self, openWatchSocket)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "rtnetlink-watch")
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return err
		}
		// Should the adapter's namespace have an ID in itself, its own
		// notifications carry it.
		self := int32(selfKey)
		if id, err := n.h.GetNetNsIdByFd(int(n.self)); err == nil && id >= 0 {
			self = int32(id)
		}
		h.file = f
		h.watchers = map[int32]map[*watcher]bool{}
		go h.read(rc, self)
	}
	if h.watchers[key] == nil {
		h.watchers[key] = map[*watcher]bool{}
	}
	h.watchers[key][w] = true
	return nil
}

// remove drops w, and closes the socket after the last watch.
func (h *watchHub) remove(key int32, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers[key], w)
	if len(h.watchers[key]) == 0 {
		delete(h.watchers, key)
	}
	if len(h.watchers) == 0 && h.file != nil {
		h.file.Close() // wakes the reader, which ends
		h.file = nil
	}
}

// openWatchSocket opens a non-blocking rtnetlink socket joined to
// watchGroups that hears every namespace with an ID in this thread's. The
// socket belongs to the namespace it was made in.
func openWatchSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_LISTEN_ALL_NSID, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen to every namespace: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: watchGroups}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("join rtnetlink groups: %w", err)
	}
	// Every watched namespace's notifications share this buffer: make it
	// large enough for a burst of hundreds of attaches or a bridge with
	// hundreds of ports going away (SO_RCVBUFFORCE: beyond rmem_max, as
	// root). An overflow is reported as Overflow anyway.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, watchBuffer); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, watchBuffer)
	}
	return fd, nil
}

// watchBuffer is the watch socket's receive buffer (bytes).
const watchBuffer = 8 << 20

// read hands what the socket receives to the watches, until it is closed.
// self is the ID of the adapter's namespace in itself (selfKey: none).
func (h *watchHub) read(rc syscall.RawConn, self int32) {
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		var nr, oobn int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			nr, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if errors.Is(rerr, unix.ENOBUFS) {
			h.deliver(nil, Event{Kind: Overflow})
			continue
		}
		if rerr != nil {
			return
		}
		key := int32(selfKey)
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if cm.Header.Level == unix.SOL_NETLINK && cm.Header.Type == unix.NETLINK_LISTEN_ALL_NSID && len(cm.Data) >= 4 {
					key = int32(nl.NativeEndian().Uint32(cm.Data))
				}
			}
		}
		if key == self {
			key = selfKey
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if ev, ok := parseEvent(m); ok {
				h.deliver(&key, ev)
			}
		}
	}
}

// deliver gives ev to the watches of namespace *key (nil: every watch).
func (h *watchHub) deliver(key *int32, ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if key != nil {
		for w := range h.watchers[*key] {
			w.push(ev)
		}
		return
	}
	for _, ws := range h.watchers {
		for w := range ws {
			w.push(ev)
		}
	}
}

// watcher is one watch. The hub's reader hands it events in order without
// ever waiting: when its channel is full (its reader fell watchQueue
// events behind), events are dropped until one Overflow (anything may have
// changed) is in the channel after them. No goroutine per watch: an event
// costs one wake-up, its reader's.
type watcher struct {
	out  chan Event
	ctx  context.Context
	mu   sync.Mutex
	lost bool           // dropping until the Overflow is queued
	wg   sync.WaitGroup // the goroutine queueing the Overflow
}

// watchQueue is a watch's channel capacity.
const watchQueue = 256

// push hands ev to the watch; the hub calls it with its lock held, so
// never after remove.
func (w *watcher) push(ev Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost {
		return
	}
	if ev.Kind != Overflow {
		select {
		case w.out <- ev:
			return
		default:
		}
	}
	w.lost = true
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case w.out <- Event{Kind: Overflow}:
		case <-w.ctx.Done():
		}
		w.mu.Lock()
		w.lost = false
		w.mu.Unlock()
	}()
}

// parseEvent turns one rtnetlink message into an Event; ok is false for
// messages no one acts on (new addresses and routes).
func parseEvent(m syscall.NetlinkMessage) (Event, bool) {
	switch m.Header.Type {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		if len(m.Data) < unix.SizeofIfInfomsg {
			return Event{}, false
		}
		info := nl.DeserializeIfInfomsg(m.Data)
		ev := Event{Kind: LinkChanged, Index: int(info.Index), Up: info.Flags&unix.IFF_UP != 0}
		if m.Header.Type == unix.RTM_DELLINK {
			ev.Kind = LinkDeleted
		} else if !linkNews(info) {
			return Event{}, false
		}
		attrs, err := nl.ParseRouteAttr(m.Data[unix.SizeofIfInfomsg:])
		if err != nil {
			return ev, true
		}
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				ev.Name = string(trimZero(a.Value))
			case unix.IFLA_MASTER:
				if len(a.Value) == 4 {
					ev.Master = int(nl.NativeEndian().Uint32(a.Value))
				}
			}
		}
		return ev, true
	case unix.RTM_DELADDR:
		if len(m.Data) < unix.SizeofIfAddrmsg {
			return Event{}, false
		}
		return Event{Kind: AddrDeleted, Index: int(nl.DeserializeIfAddrmsg(m.Data).Index)}, true
	case unix.RTM_DELROUTE:
		return Event{Kind: RouteDeleted}, true
	case unix.RTM_DELRULE:
		return Event{Kind: RuleDeleted}, true
	case unix.RTM_NEWNETCONF:
		return Event{Kind: ConfChanged}, true
	}
	return Event{}, false
}

// linkNews reports whether an RTM_NEWLINK can tell of drift: a link taken
// down, or changed while up (moved off its bridge, say). Three kinds of
// notification cannot, and every attach causes them — the host end and the
// peer being registered, and the peer's settings changed before it comes
// up — so reporting them made the healer check the sandbox and the host
// after every attach (measured: a fifth of the daemon's CPU in a burst of
// attaches, docs/benchmarks.md):
//   - a link being registered (ifi_change ~0): a new link is not drift;
//   - a link that is down and was down already (IFF_UP not in ifi_change):
//     the notification that took it down, if it was ever up, said so;
//   - AF_INET6 notifications (IPv6 settings of a link, not its state).
func linkNews(info *nl.IfInfomsg) bool {
	switch {
	case info.Family == unix.AF_INET6:
		return false
	case info.Change == ^uint32(0):
		return false
	case info.Flags&unix.IFF_UP == 0 && info.Change&unix.IFF_UP == 0:
		return false
	}
	return true
}

func trimZero(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
