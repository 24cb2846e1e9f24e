package link

// IPv6 forwarding and the host's router advertisements.
//
// Sandboxes on a network with an IPv6 subnet reach beyond their bridge
// only when the host forwards IPv6 (net.ipv6.conf.all.forwarding). That
// switch also makes the kernel treat the host as a router: a link whose
// accept_ra is 1 (the default) then ignores router advertisements, so a
// default route learned from them is never renewed. Worse, at the moment
// forwarding is turned on the kernel deletes, on every link whose
// accept_ra is not 2, the default routes learned from RAs
// (rt6_purge_dflt_routers, called from addrconf_fixup_forwarding in
// net/ipv6/addrconf.c; seen on 6.18 and in every kernel since 2.6). A host
// whose IPv6 way out comes from RAs would lose it at once.
//
// So SetIPv6Forward first sets accept_ra=2 ("accept even when
// forwarding") on each uplink (a link with a default route, IPv4 or IPv6)
// whose accept_ra is 1, then turns forwarding on, and returns what it
// changed. It never touches a route. It leaves pontoon's bridges and other
// links alone: they have no default route, and accepting RAs on a bridge
// would let a sandbox advertise itself as the host's router.
//
// /proc/sys/net shows the namespace of the thread that opens it, so these
// run on a thread in the adapter's namespace whatever thread calls them.

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
)

var (
	// ErrIPv6Unavailable: the kernel has no IPv6 (booted with
	// ipv6.disable=1, or built without it).
	ErrIPv6Unavailable = errors.New("the kernel has no IPv6")
	// ErrIPv6Disabled: net.ipv6.conf.all.disable_ipv6 is 1.
	ErrIPv6Disabled = errors.New("IPv6 is disabled on the host")
)

// IPv6Uplink is a host link with a default route (IPv4 or IPv6) and how
// it takes IPv6 router advertisements.
type IPv6Uplink struct {
	Name string
	// AcceptRA is net.ipv6.conf.NAME.accept_ra: 0 never, 1 only while
	// the link does not forward, 2 even when it forwards.
	AcceptRA int
	// Forwarding is net.ipv6.conf.NAME.forwarding.
	Forwarding bool
	// DefaultRoute6 is the protocol of the link's IPv6 default route as
	// `ip route` names it ("ra": learned from router advertisements;
	// "static", "boot", "dhcp", …), "" when it has none.
	DefaultRoute6 string
}

// RAsIgnored reports whether the kernel ignores router advertisements on
// the link (accept_ra=1 while it forwards).
func (u IPv6Uplink) RAsIgnored() bool { return u.AcceptRA == 1 && u.Forwarding }

// IPv6Host is the state of the host namespace that IPv6 networks depend
// on.
type IPv6Host struct {
	// Available is false when the kernel has no IPv6 at all
	// (/proc/sys/net/ipv6 is missing); nothing else is set then.
	Available bool
	// Disabled is net.ipv6.conf.all.disable_ipv6: no link has IPv6.
	Disabled bool
	// DisabledForNew is net.ipv6.conf.default.disable_ipv6: links made
	// from now on (bridges) have no IPv6.
	DisabledForNew bool
	// Forwarding is net.ipv6.conf.all.forwarding.
	Forwarding bool
	// Uplinks are the links with a default route that have IPv6 (a link
	// below 1280 bytes of MTU has none), by name.
	Uplinks []IPv6Uplink
}

// SysctlChange is one kernel setting a call changed.
type SysctlChange struct {
	Name string // in sysctl(8) syntax: net.ipv6.conf.uplink0.accept_ra
	Link string // the link it belongs to, "" for a namespace-wide one
	From string
	To   string
	Why  string
}

// String says it for a log or a message.
func (c SysctlChange) String() string {
	return fmt.Sprintf("%s %s → %s (%s)", c.Name, c.From, c.To, c.Why)
}

// The reasons SetIPv6Forward gives.
const (
	whyAcceptRA   = "an uplink must keep accepting router advertisements once IPv6 forwarding is on: with accept_ra=1 the kernel ignores them then, and deletes the default routes learned from them at once; 2 keeps the host's IPv6 way out"
	whyForwarding = "a network has an IPv6 subnet: its sandboxes' IPv6 traffic is routed through the host"
)

const ipv6Sys = "/proc/sys/net/ipv6"

// confPath is the file of net.ipv6.conf.LINK.KEY ("all", "default" or a
// link's name).
func confPath(link, key string) string { return filepath.Join(ipv6Sys, "conf", link, key) }

// IPv6ConfName is net.ipv6.conf.LINK.KEY as sysctl(8) writes it: a dot
// in a link's name (a VLAN, eth0.100) becomes a slash.
func IPv6ConfName(link, key string) string {
	return "net.ipv6.conf." + strings.ReplaceAll(link, ".", "/") + "." + key
}

// planIPv6Forward says what turning IPv6 forwarding on changes on host h,
// in order: accept_ra on the uplinks first, forwarding last. Nothing when
// forwarding is already on: then RAs on the uplinks are already handled
// as the host's owner set them up (doctor reports uplinks that ignore
// them).
func planIPv6Forward(h IPv6Host) ([]SysctlChange, error) {
	if !h.Available {
		return nil, fmt.Errorf("turn IPv6 forwarding on: %w (%s is missing: booted with ipv6.disable=1?): networks with an IPv6 subnet cannot work on this host; boot without ipv6.disable=1, or create networks without one", ErrIPv6Unavailable, ipv6Sys)
	}
	if h.Disabled {
		return nil, fmt.Errorf("turn IPv6 forwarding on: %w (net.ipv6.conf.all.disable_ipv6 is 1): networks with an IPv6 subnet cannot work; sysctl -w net.ipv6.conf.all.disable_ipv6=0, or create networks without one", ErrIPv6Disabled)
	}
	if h.Forwarding {
		return nil, nil
	}
	var out []SysctlChange
	for _, u := range h.Uplinks {
		if u.AcceptRA == 1 {
			out = append(out, SysctlChange{Name: IPv6ConfName(u.Name, "accept_ra"), Link: u.Name, From: "1", To: "2", Why: whyAcceptRA})
		}
	}
	return append(out, SysctlChange{Name: IPv6ConfName("all", "forwarding"), From: "0", To: "1", Why: whyForwarding}), nil
}

// inOwnNetns runs fn on a thread in the adapter's namespace (the one New
// ran in).
func (n *netlinkLinks) inOwnNetns(fn func() error) error {
	return netns.Do(fmt.Sprintf("/proc/self/fd/%d", int(n.self)), fn)
}

// IPv6Host reads the host namespace's IPv6 state: whether IPv6 is there
// and on, forwarding, and each uplink's RA settings and IPv6 default
// route.
func (n *netlinkLinks) IPv6Host() (IPv6Host, error) {
	var h IPv6Host
	err := n.inOwnNetns(func() (err error) { h, err = n.ipv6Host(); return err })
	return h, err
}

// ipv6Host is IPv6Host on a thread already in the adapter's namespace.
func (n *netlinkLinks) ipv6Host() (IPv6Host, error) {
	var h IPv6Host
	if _, err := os.Stat(ipv6Sys); errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	h.Available = true
	var err error
	if h.Disabled, err = readBool(confPath("all", "disable_ipv6")); err != nil {
		return h, err
	}
	if h.DisabledForNew, err = readBool(confPath("default", "disable_ipv6")); err != nil {
		return h, err
	}
	if h.Forwarding, err = readBool(confPath("all", "forwarding")); err != nil {
		return h, err
	}
	ups, err := n.defaultRouteLinks()
	if err != nil {
		return h, err
	}
	for _, u := range ups {
		ra, err := readInt(confPath(u.Name, "accept_ra"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6 on this link
		}
		if err != nil {
			return h, err
		}
		u.AcceptRA = ra
		if u.Forwarding, err = readBool(confPath(u.Name, "forwarding")); err != nil {
			return h, err
		}
		h.Uplinks = append(h.Uplinks, u)
	}
	return h, nil
}

// defaultRouteLinks lists, by name, the links the main table's default
// routes (IPv4 and IPv6, each path of a multipath route) go through,
// with the protocol of the IPv6 one. An RA-learned route wins when a link
// has several: it is the one that needs RAs.
func (n *netlinkLinks) defaultRouteLinks() ([]IPv6Uplink, error) {
	links, err := n.ListLinks()
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Index] = l.Name
	}
	by := map[string]*IPv6Uplink{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := retryDump(func() ([]netlink.Route, error) { return n.h.RouteList(nil, fam) })
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if !isDefault(r.Dst) || r.Type != unix.RTN_UNICAST {
				continue // not a default route, or an unreachable/blackhole one
			}
			idx := []int{r.LinkIndex}
			for _, nh := range r.MultiPath {
				idx = append(idx, nh.LinkIndex)
			}
			for _, i := range idx {
				name := names[i]
				if name == "" || name == "lo" {
					continue
				}
				u := by[name]
				if u == nil {
					u = &IPv6Uplink{Name: name}
					by[name] = u
				}
				if fam == netlink.FAMILY_V6 && (u.DefaultRoute6 == "" || r.Protocol == unix.RTPROT_RA) {
					u.DefaultRoute6 = r.Protocol.String()
				}
			}
		}
	}
	out := make([]IPv6Uplink, 0, len(by))
	for _, u := range by {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b IPv6Uplink) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// isDefault reports whether a route's destination is the default
// (0.0.0.0/0, ::/0; netlink gives no destination for it).
func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

// SetIPv6Forward turns net.ipv6.conf.all.forwarding on in the host
// namespace, after setting accept_ra=2 on each uplink whose accept_ra is 1
// so that the host keeps the default route it learns from router
// advertisements (see the top of this file). It logs a warning for each
// uplink it changes and returns every change, in the order made. When
// forwarding is already on it changes nothing. With IPv6 unavailable or
// disabled it changes nothing and returns ErrIPv6Unavailable or
// ErrIPv6Disabled (wrapped, with what to do). When a write fails, the
// changes already made are undone.
func (n *netlinkLinks) SetIPv6Forward() ([]SysctlChange, error) {
	var done []SysctlChange
	err := n.inOwnNetns(func() error {
		h, err := n.ipv6Host()
		if err != nil {
			return fmt.Errorf("turn IPv6 forwarding on: %w", err)
		}
		plan, err := planIPv6Forward(h)
		if err != nil {
			return err
		}
		for _, c := range plan {
			if c.Link != "" {
				n.log.Warn("setting accept_ra=2 on an uplink before turning IPv6 forwarding on", "sysctl", c.Name, "was", c.From, "why", c.Why)
			}
			if err := writeChange(c); err != nil {
				for _, d := range slices.Backward(done) {
					d.From, d.To = d.To, d.From
					if uerr := writeChange(d); uerr != nil {
						n.log.Error("undo a sysctl change", "sysctl", d.Name, "err", uerr)
					}
				}
				done = nil
				return fmt.Errorf("turn IPv6 forwarding on: set %s=%s: %w", c.Name, c.To, err)
			}
			done = append(done, c)
		}
		if len(done) > 0 {
			n.log.Info("turned IPv6 forwarding on", "changes", len(done))
		}
		return nil
	})
	return done, err
}

// writeChange writes c.To to c's file: net.ipv6.conf.LINK.KEY, "all"
// for a namespace-wide change (the only kind SetIPv6Forward makes).
func writeChange(c SysctlChange) error {
	link := c.Link
	if link == "" {
		link = "all"
	}
	return writeSysctl(confPath(link, c.Name[strings.LastIndex(c.Name, ".")+1:]), c.To)
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return v, nil
}

func readBool(path string) (bool, error) {
	v, err := readInt(path)
	return v != 0, err
}

// IPv6Host reports the fake's IPv6 field.
func (f *Fake) IPv6Host() (IPv6Host, error) {
	if err := f.failed("IPv6Host"); err != nil {
		return IPv6Host{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.IPv6
	h.Uplinks = slices.Clone(h.Uplinks)
	return h, nil
}

// SetIPv6Forward makes the changes the real one would make on the fake's
// IPv6 field.
func (f *Fake) SetIPv6Forward() ([]SysctlChange, error) {
	if err := f.failed("SetIPv6Forward"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	plan, err := planIPv6Forward(f.IPv6)
	if err != nil {
		return nil, err
	}
	for _, c := range plan {
		if c.Link == "" {
			f.IPv6.Forwarding = true
			for i := range f.IPv6.Uplinks {
				f.IPv6.Uplinks[i].Forwarding = true
			}
			continue
		}
		for i := range f.IPv6.Uplinks {
			if f.IPv6.Uplinks[i].Name == c.Link {
				f.IPv6.Uplinks[i].AcceptRA = 2
			}
		}
	}
	return plan, nil
}
