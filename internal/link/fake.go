package link

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Fake is an in-memory Interface for unit tests: it keeps bridges and veths
// with their configuration, can fail any operation on demand, and dumps its
// state in an `ip`-like syntax.
type Fake struct {
	// UplinkLinks holds what Uplinks reports.
	UplinkLinks []LinkInfo
	mu          sync.Mutex
	next        int
	bridges     map[string]*fakeBridge
	veths       map[string]*fakeVeth
	pairs       map[string]*Pair // direct links, by each end (fake_pair.go)
	taps        map[string]*fakeTap
	rules       map[string]bool // netns|addr|table
	fail        map[string]error
	conntrack   [][]ConntrackFilter
	// Host holds the prefixes HostPrefixes reports.
	Host []netip.Prefix
	// Forwarding is what IPForward reports; SetIPForward sets it.
	Forwarding bool
	// IPv6 is what IPv6Host reports; SetIPv6Forward changes it as the
	// kernel would be changed (NewFake: IPv6 available, forwarding off).
	IPv6     IPv6Host
	watchers []chan Event
	// Nets holds the host's own networks HostNets reports (HostPrefixes
	// reports them too). HostNets adds every bridge's gateway address and
	// connected route, as the kernel would.
	Nets []HostNet
	// mv: macvlans, VLAN links and shims (fake_macvlan.go).
	mv *fakeMacvlans
	// vx: VXLAN devices by name (fake_vxlan.go), made on first use.
	vx map[string]*fakeVXLAN
	// hr: host-gw routes by device (fake_hostroute.go), made on first use.
	hr map[string]map[netip.Prefix]netip.Addr
	// l2: learned FDB entries and neighbours (fake_fdb.go).
	l2 fakeL2
}

type fakeBridge struct {
	Bridge
	index int
	down  bool
}

type fakeVeth struct {
	Veth
	index    int
	disabled bool
	stats    LinkStats // of the host end; SetStats sets them
}

// NewFake returns an empty fake.
func NewFake() *Fake {
	return &Fake{IPv6: IPv6Host{Available: true}, next: 10, bridges: map[string]*fakeBridge{}, veths: map[string]*fakeVeth{}, rules: map[string]bool{}, fail: map[string]error{}}
}

// InjectError makes every later call of op (a method name of Interface
// that can fail: "EnsureBridge", "DeleteBridge", "AddVeth", "DisableVeth",
// "DeleteVeths", "DeleteRule", "ListLinks", "LinkIndex", "HostPrefixes",
// "HostNets", "DeleteConntrack", "IPv6Host", "SetIPv6Forward", "AddTap",
// "EnsureVXLAN", "DeleteVXLAN", "SetPeers",
// "RepairTap")
// fail with err, changing nothing; nil clears it.
func (f *Fake) InjectError(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, op)
	} else {
		f.fail[op] = err
	}
}

func (f *Fake) failed(op string) error { return f.fail[op] }

func (f *Fake) EnsureBridge(b Bridge) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("EnsureBridge"); err != nil {
		return 0, err
	}
	if br, ok := f.bridges[b.Name]; ok {
		if err := b.check(); err != nil {
			return 0, err
		}
		b.Gateways = slices.Clone(b.Gateways)
		b.Options = cloneOptions(b.Options)
		br.Bridge, br.down = b, false
		return br.index, nil
	}
	if _, ok := f.veths[b.Name]; ok {
		return 0, fmt.Errorf("%s exists and is a veth, not a bridge", b.Name)
	}
	if err := b.check(); err != nil {
		return 0, err
	}
	b.Gateways = slices.Clone(b.Gateways)
	b.Options = cloneOptions(b.Options)
	f.next++
	f.bridges[b.Name] = &fakeBridge{Bridge: b, index: f.next}
	return f.next, nil
}

func (f *Fake) DeleteBridge(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DeleteBridge"); err != nil {
		return err
	}
	delete(f.bridges, name)
	return nil
}

func (f *Fake) AddVeth(v Veth) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("AddVeth"); err != nil {
		return 0, err
	}
	if err := v.check(); err != nil {
		return 0, err
	}
	if _, ok := f.bridges[v.Bridge]; !ok && v.Bridge != "" {
		return 0, fmt.Errorf("bridge %s: link not found", v.Bridge)
	}
	if _, ok := f.veths[v.HostName]; ok {
		return 0, fmt.Errorf("create veth %s: file exists", v.HostName)
	}
	for _, o := range f.veths {
		if o.Netns == v.Netns && o.IfName == v.IfName {
			return 0, fmt.Errorf("create veth %s: %s exists in %s", v.HostName, v.IfName, v.Netns)
		}
	}
	f.next++
	v.Addrs = slices.Clone(v.Addrs)
	f.veths[v.HostName] = &fakeVeth{Veth: v, index: f.next}
	if v.Table != 0 {
		for _, a := range v.Addrs {
			f.rules[ruleKey(v.Netns, a.Addr.Addr(), v.Table)] = true
		}
	}
	return f.next, nil
}

func ruleKey(ns string, a netip.Addr, t int) string { return fmt.Sprintf("%s|%s|%d", ns, a, t) }

func (f *Fake) DisableVeth(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DisableVeth"); err != nil {
		return err
	}
	if v, ok := f.veths[name]; ok {
		v.disabled = true
	}
	return nil
}

func (f *Fake) DeleteVeths(names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DeleteVeths"); err != nil {
		return err
	}
	for _, n := range names {
		delete(f.veths, n)
		delete(f.taps, n)
	}
	return nil
}

func (f *Fake) DeleteRule(netns string, _ uint64, a netip.Addr, table int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DeleteRule"); err != nil {
		return err
	}
	delete(f.rules, ruleKey(netns, a, table))
	return nil
}

func (f *Fake) CheckVeth(v Veth) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	have, ok := f.veths[v.HostName]
	if !ok {
		return []string{"host end " + v.HostName + " is missing"}
	}
	var out []string
	if have.disabled {
		out = append(out, "host end "+v.HostName+" is down")
	}
	if have.Bridge != v.Bridge {
		out = append(out, fmt.Sprintf("host end %s is not a port of bridge %s", v.HostName, v.Bridge))
	}
	if have.Isolated != v.Isolated {
		out = append(out, fmt.Sprintf("host end %s has port isolation %v, want %v", v.HostName, have.Isolated, v.Isolated))
	}
	if have.Netns != v.Netns || have.IfName != v.IfName {
		return append(out, fmt.Sprintf("%s is missing in the sandbox", v.IfName))
	}
	for _, a := range v.Addrs {
		if !slices.ContainsFunc(have.Addrs, func(h Address) bool { return h.Addr == a.Addr }) {
			out = append(out, fmt.Sprintf("%s does not have address %s", v.IfName, a.Addr))
		}
	}
	if v.MAC != nil && have.MAC.String() != v.MAC.String() {
		out = append(out, fmt.Sprintf("%s has MAC %s, want %s", v.IfName, have.MAC, v.MAC))
	}
	if v.MTU > 0 && have.MTU != v.MTU {
		out = append(out, fmt.Sprintf("%s has MTU %d, want %d", v.IfName, have.MTU, v.MTU))
	}
	for _, a := range v.Addrs {
		if !a.Gateway.IsValid() {
			continue
		}
		hasGw := slices.ContainsFunc(have.Addrs, func(h Address) bool { return h.Gateway == a.Gateway })
		if v.DefaultRoute && (!have.DefaultRoute || !hasGw) {
			out = append(out, fmt.Sprintf("no default route via %s dev %s", a.Gateway, v.IfName))
		}
		if v.Table != 0 && (have.Table != v.Table || !hasGw) {
			out = append(out, fmt.Sprintf("no route default via %s dev %s in table %d", a.Gateway, v.IfName, v.Table))
		}
	}
	if !slices.Equal(have.Routes, v.Routes) {
		out = append(out, fmt.Sprintf("%s has routes %v, want %v", v.IfName, have.Routes, v.Routes))
	}
	if v.Table != 0 {
		for _, a := range v.Addrs {
			if !f.rules[ruleKey(v.Netns, a.Addr.Addr(), v.Table)] {
				out = append(out, fmt.Sprintf("no rule from %s lookup %d", a.Addr.Addr(), v.Table))
			}
		}
	}
	return out
}

func (f *Fake) ListLinks(prefixes ...string) ([]LinkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("ListLinks"); err != nil {
		return nil, err
	}
	var out []LinkInfo
	for name, b := range f.bridges {
		if len(prefixes) == 0 || hasAnyPrefix(name, prefixes) {
			out = append(out, LinkInfo{Name: name, Index: b.index, Type: "bridge", MTU: b.MTU, Up: !b.down})
		}
	}
	for name, v := range f.veths {
		if len(prefixes) == 0 || hasAnyPrefix(name, prefixes) {
			m := v.Bridge
			if v.disabled {
				m = ""
			}
			st := v.stats
			out = append(out, LinkInfo{Name: name, Index: v.index, Type: "veth", Master: m, MTU: v.MTU, Up: !v.disabled, Stats: &st})
		}
	}
	out = append(out, f.tapLinksLocked(prefixes)...)
	out = append(out, f.macvlanLinksLocked(prefixes)...)
	out = append(out, f.vxlanLinksLocked(prefixes)...)
	slices.SortFunc(out, func(a, b LinkInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SetStats sets the counters of the host end of a veth, or of a tap, as
// the kernel would count traffic (a new link starts at zero); false when
// there is no such link.
func (f *Fake) SetStats(name string, s LinkStats) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.veths[name]; ok {
		v.stats = s
		return true
	}
	if t, ok := f.taps[name]; ok {
		t.stats = s
		return true
	}
	return false
}

// Uplinks returns f.UplinkLinks.
func (f *Fake) Uplinks() ([]LinkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.UplinkLinks), nil
}

func (f *Fake) LinkIndex(name string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("LinkIndex"); err != nil {
		return 0, err
	}
	if b, ok := f.bridges[name]; ok {
		return b.index, nil
	}
	if v, ok := f.veths[name]; ok {
		return v.index, nil
	}
	if t, ok := f.taps[name]; ok {
		return t.index, nil
	}
	if l, ok := f.hostLinkLocked(name); ok {
		return l.Index, nil
	}
	return f.vxlanIndexLocked(name), nil
}

// Link is ListLinks' entry for name.
func (f *Fake) Link(name string) (LinkInfo, bool, error) {
	all, err := f.ListLinks(name)
	if err != nil {
		return LinkInfo{}, false, err
	}
	for _, l := range all {
		if l.Name == name {
			return l, true, nil
		}
	}
	return LinkInfo{}, false, nil
}

func (f *Fake) HostPrefixes() ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("HostPrefixes"); err != nil {
		return nil, err
	}
	out := slices.Clone(f.Host)
	for _, h := range f.Nets {
		out = append(out, h.Network())
	}
	return out, nil
}

func (f *Fake) HostNets() ([]HostNet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("HostNets"); err != nil {
		return nil, err
	}
	out := slices.Clone(f.Nets)
	names := make([]string, 0, len(f.bridges))
	for n := range f.bridges {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, gw := range f.bridges[n].Gateways {
			out = append(out, HostNet{Prefix: gw, Link: n, Kind: HostAddress},
				HostNet{Prefix: gw.Masked(), Link: n, Kind: HostRoute})
		}
	}
	return out, nil
}

// Dump prints the state, one object a line, sorted.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, b := range f.bridges {
		l := fmt.Sprintf("bridge %s addr %s mtu %d", b.Name, joinAddrs(b.Gateways), b.MTU)
		if o := b.Options; o != nil {
			l += fmt.Sprintf(" stp %v forward_delay %d ageing_time %d vlan_filtering %v mcast_snooping %v", o.STP, o.ForwardDelay, o.AgeingTime, o.VLANFiltering, o.MulticastSnooping)
		}
		lines = append(lines, l)
	}
	for _, v := range f.veths {
		state := "up"
		if v.disabled {
			state = "down"
		}
		var addrs []netip.Prefix
		var gws []netip.Addr
		for _, a := range v.Addrs {
			addrs = append(addrs, a.Addr)
			if a.Gateway.IsValid() {
				gws = append(gws, a.Gateway)
			}
		}
		l := fmt.Sprintf("veth %s master %s %s peer %s netns %s addr %s mac %s", v.HostName, v.Bridge, state, v.IfName, v.Netns, joinAddrs(addrs), v.MAC)
		if v.DefaultRoute {
			l += " default via " + joinAddrs(gws)
		}
		for _, r := range v.Routes {
			l += fmt.Sprintf(" route %s via %s", r.Dst, r.Via)
		}
		if v.Table != 0 {
			l += fmt.Sprintf(" table %d", v.Table)
		}
		if v.Isolated {
			l += " isolated"
		}
		if v.NoHairpin {
			l += " nohairpin"
		}
		if v.VLAN != 0 {
			l += fmt.Sprintf(" vlan %d", v.VLAN)
		}
		lines = append(lines, l)
	}
	for r := range f.rules {
		lines = append(lines, "rule "+r)
	}
	lines = append(lines, f.tapDumpLocked()...)
	lines = append(lines, f.macvlanDumpLocked()...)
	lines = append(lines, f.vxlanDumpLocked()...)
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// joinAddrs prints addresses for Dump: one as it is (invalid ones as
// "invalid Prefix" and the like, as before), several separated by commas.
func joinAddrs[T fmt.Stringer](as []T) string {
	switch len(as) {
	case 0:
		var zero T
		return zero.String()
	case 1:
		return as[0].String()
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// Veths returns the names of the veths the fake holds.
func (f *Fake) Veths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.veths {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// SetDefaultRoute records the default route of gw's family (the peer's
// "default via" in Dump): it becomes the gateway of the peer's address of
// that family.
func (f *Fake) SetDefaultRoute(netns string, _ uint64, ifname string, gw netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("SetDefaultRoute"); err != nil {
		return err
	}
	for _, v := range f.veths {
		if v.Netns == netns && v.IfName == ifname {
			for i, a := range v.Addrs {
				if a.Addr.Addr().Is4() == gw.Is4() {
					v.Addrs[i].Gateway = gw
					v.DefaultRoute = true
					return nil
				}
			}
			return fmt.Errorf("default route via %s dev %s: %s has no address of that family", gw, ifname, ifname)
		}
	}
	return fmt.Errorf("%s: link not found in %s", ifname, netns)
}

func (f *Fake) CheckBridge(b Bridge) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	br, ok := f.bridges[b.Name]
	if !ok {
		return []string{"bridge " + b.Name + " is missing"}
	}
	var out []string
	if br.down {
		out = append(out, "bridge "+b.Name+" is down")
	}
	for _, gw := range b.Gateways {
		if !slices.Contains(br.Gateways, gw) {
			out = append(out, fmt.Sprintf("bridge %s does not have address %s", b.Name, gw))
		}
	}
	if b.Options != nil && (br.Options == nil || *br.Options != *b.Options) {
		out = append(out, fmt.Sprintf("bridge %s has other STP, ageing, VLAN or multicast settings", b.Name))
	}
	return out
}

// RepairVeth makes a missing veth again and puts back what CheckVeth finds.
func (f *Fake) RepairVeth(v Veth) (int, []Fix, error) {
	if err := f.failed("RepairVeth"); err != nil {
		return 0, nil, err
	}
	problems := f.CheckVeth(v)
	if len(problems) == 0 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.veths[v.HostName].index, nil, nil
	}
	f.mu.Lock()
	delete(f.veths, v.HostName)
	f.mu.Unlock()
	idx, err := f.AddVeth(v)
	var fixes []Fix
	for _, p := range problems {
		fixes = append(fixes, Fix{"veth", p})
	}
	return idx, fixes, err
}

func (f *Fake) IPForward() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Forwarding, nil
}

func (f *Fake) SetIPForward() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Forwarding = true
	return nil
}

// Watch returns a channel that Emit feeds (every watch sees every event).
func (f *Fake) Watch(ctx context.Context, netns string, _ uint64) (<-chan Event, error) {
	if err := f.failed("Watch"); err != nil {
		return nil, err
	}
	ch := make(chan Event, 64)
	f.mu.Lock()
	f.watchers = append(f.watchers, ch)
	f.mu.Unlock()
	return ch, nil
}

// Emit sends ev to every watch.
func (f *Fake) Emit(ev Event) {
	f.mu.Lock()
	ws := slices.Clone(f.watchers)
	f.mu.Unlock()
	for _, w := range ws {
		select {
		case w <- ev:
		default:
		}
	}
}

// Break changes the fake's state as someone outside pontoon would:
// "delete NAME" removes a bridge, veth or tap, "down NAME" takes it down,
// "nomaster NAME" takes a veth or tap off its bridge, "unaddr NAME" removes a
// bridge's addresses or a veth peer's addresses, "noforward" turns
// forwarding off. It emits the matching event.
func (f *Fake) Break(what, name string) {
	f.mu.Lock()
	ev := Event{Kind: LinkChanged, Name: name}
	f.breakTapLocked(what, name)
	switch what {
	case "delete":
		delete(f.bridges, name)
		delete(f.veths, name)
		ev.Kind = LinkDeleted
	case "down":
		if b, ok := f.bridges[name]; ok {
			b.down = true
		}
		if v, ok := f.veths[name]; ok {
			v.disabled = true
		}
	case "nomaster":
		if v, ok := f.veths[name]; ok {
			v.Bridge = ""
		}
	case "unaddr":
		if b, ok := f.bridges[name]; ok {
			b.Gateways = nil
		}
		if v, ok := f.veths[name]; ok {
			v.Addrs = nil
		}
		ev.Kind = AddrDeleted
	case "noforward":
		f.Forwarding = false
		ev.Kind = ConfChanged
	}
	f.mu.Unlock()
	f.Emit(ev)
}

// DeleteConntrack validates the filters and records them (the fake has no
// table: it deletes nothing and reports 0).
func (f *Fake) DeleteConntrack(filters []ConntrackFilter) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DeleteConntrack"); err != nil {
		return 0, err
	}
	for _, c := range filters {
		if err := c.Validate(); err != nil {
			return 0, err
		}
	}
	if len(filters) > 0 {
		f.conntrack = append(f.conntrack, slices.Clone(filters))
	}
	return 0, nil
}

// ConntrackCalls returns the filters of every DeleteConntrack call so far,
// one slice a call, and forgets them.
func (f *Fake) ConntrackCalls() [][]ConntrackFilter {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.conntrack
	f.conntrack = nil
	return out
}

func cloneOptions(o *BridgeOptions) *BridgeOptions {
	if o == nil {
		return nil
	}
	c := *o
	return &c
}
