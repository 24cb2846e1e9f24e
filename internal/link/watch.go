package link

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/vishvananda/netlink/nl"
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
	// AddrDeleted, RouteDeleted, RuleDeleted: an IPv4 address, route or
	// policy rule was removed.
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
// legacy RTMGRP_* bit mask; every group here is below 32).
const watchGroups = 1<<(unix.RTNLGRP_LINK-1) | 1<<(unix.RTNLGRP_IPV4_IFADDR-1) |
	1<<(unix.RTNLGRP_IPV4_ROUTE-1) | 1<<(unix.RTNLGRP_IPV4_RULE-1) | 1<<(unix.RTNLGRP_IPV4_NETCONF-1)

// Watch streams link, IPv4 address, route, rule and setting notifications of
// a namespace until ctx ends; then the channel is closed. netnsPath "" is
// the daemon's (host) namespace; otherwise the namespace at netnsPath, which
// must have identity ino (0: any).
//
// The socket is non-blocking and read through Go's network poller, so an
// idle watch costs no thread: the daemon watches every sandbox it created
// this way. It holds a reference to its namespace for as long as it is
// open, so never watch a namespace whose death you want to notice.
func (n *netlinkLinks) Watch(ctx context.Context, netnsPath string, ino uint64) (<-chan Event, error) {
	fd, err := n.subscribe(netnsPath, ino)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "rtnetlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	out := make(chan Event, 64)
	go func() {
		<-ctx.Done()
		f.Close() // wakes the reader
	}()
	go func() {
		defer close(out)
		buf := make([]byte, 1<<16)
		for {
			var nr int
			var rerr error
			err := rc.Read(func(fd uintptr) bool {
				nr, _, rerr = unix.Recvfrom(int(fd), buf, 0)
				return rerr != unix.EAGAIN
			})
			if err != nil {
				return // closed
			}
			if errors.Is(rerr, unix.ENOBUFS) {
				if !send(ctx, out, Event{Kind: Overflow}) {
					return
				}
				continue
			}
			if rerr != nil {
				return
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
			if err != nil {
				continue
			}
			for _, m := range msgs {
				ev, ok := parseEvent(m)
				if ok && !send(ctx, out, ev) {
					return
				}
			}
		}
	}()
	return out, nil
}

func send(ctx context.Context, out chan<- Event, ev Event) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// subscribe opens a non-blocking rtnetlink socket joined to watchGroups in
// the namespace at path ("" = the adapter's own). A socket belongs to the
// namespace it was made in, so the thread enters that namespace only to
// make it.
func (n *netlinkLinks) subscribe(path string, ino uint64) (int, error) {
	open := func() (int, error) {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
		if err != nil {
			return -1, fmt.Errorf("open rtnetlink socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: watchGroups}); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("join rtnetlink groups: %w", err)
		}
		// A larger buffer rides out bursts (a bridge with hundreds of
		// ports going away); an overflow is reported as Overflow anyway.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
		return fd, nil
	}
	if path == "" {
		return doIn(n.self, open)
	}
	ns, err := netns.OpenChecked(path, ino)
	if err != nil {
		return -1, err
	}
	defer ns.Close()
	return doIn(ns, open)
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
