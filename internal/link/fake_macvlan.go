package link

import (
	"fmt"
	"net/netip"
	"slices"
)

// The Fake's macvlan endpoints, VLAN links and shims (macvlan.go).

// fakeMacvlans is the Fake's state for them; Fake.mv, made on first use.
type fakeMacvlans struct {
	macvlans map[string]*fakeMacvlan // netns|ifname
	vlans    map[string]fakeVLAN     // name
	shims    map[string]*fakeShim    // name
	links    map[string]LinkInfo     // host links AddHostLink made
}

type fakeMacvlan struct {
	Macvlan
	down bool
}

type fakeVLAN struct {
	parent string
	id     int
	index  int
}

type fakeShim struct {
	Shim
	index int
}

// macvlanState returns f.mv, making it; f.mu is held.
func (f *Fake) macvlanState() *fakeMacvlans {
	if f.mv == nil {
		f.mv = &fakeMacvlans{macvlans: map[string]*fakeMacvlan{}, vlans: map[string]fakeVLAN{}, shims: map[string]*fakeShim{}, links: map[string]LinkInfo{}}
	}
	return f.mv
}

func ifaceKey(netns, ifname string) string { return netns + "|" + ifname }

// AddHostLink adds a host link to the fake (a NIC that macvlans, VLANs and
// shims can have as their parent): ListLinks, LinkIndex and Link report it.
// l.Index 0: the fake picks one; l.Type "": "device".
func (f *Fake) AddHostLink(l LinkInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.Index == 0 {
		f.next++
		l.Index = f.next
	}
	if l.Type == "" {
		l.Type = "device"
	}
	f.macvlanState().links[l.Name] = l
}

// hostLinkLocked is the host link name as the fake knows it.
func (f *Fake) hostLinkLocked(name string) (LinkInfo, bool) {
	mv := f.macvlanState()
	if l, ok := mv.links[name]; ok {
		return l, true
	}
	for _, l := range f.UplinkLinks {
		if l.Name == name {
			return l, true
		}
	}
	if b, ok := f.bridges[name]; ok {
		return LinkInfo{Name: name, Index: b.index, Type: "bridge", MTU: b.MTU, Up: !b.down}, true
	}
	if v, ok := mv.vlans[name]; ok {
		p, _ := f.hostLinkLocked(v.parent)
		return LinkInfo{Name: name, Index: v.index, Type: "vlan", MTU: p.MTU, Up: true}, true
	}
	if s, ok := mv.shims[name]; ok {
		return LinkInfo{Name: name, Index: s.index, Type: "macvlan", Up: true}, true
	}
	if v, ok := f.veths[name]; ok {
		return LinkInfo{Name: name, Index: v.index, Type: "veth", Up: !v.disabled}, true
	}
	return LinkInfo{}, false
}

// macvlanLinksLocked are the host links of this file for ListLinks.
func (f *Fake) macvlanLinksLocked(prefixes []string) []LinkInfo {
	if f.mv == nil {
		return nil
	}
	var out []LinkInfo
	for _, names := range [][]string{mapKeys(f.mv.links), mapKeys(f.mv.vlans), mapKeys(f.mv.shims)} {
		for _, n := range names {
			if len(prefixes) == 0 || hasAnyPrefix(n, prefixes) {
				l, _ := f.hostLinkLocked(n)
				out = append(out, l)
			}
		}
	}
	return out
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// AddMacvlan checks m as the kernel would (parent known to the fake, MTU
// at most its MTU, passthru alone on its parent, name free in the
// sandbox) and records it.
func (f *Fake) AddMacvlan(m Macvlan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("AddMacvlan"); err != nil {
		return err
	}
	return f.addMacvlanLocked(m)
}

func (f *Fake) addMacvlanLocked(m Macvlan) error {
	if err := m.check(); err != nil {
		return err
	}
	p, ok := f.hostLinkLocked(m.Parent)
	if !ok {
		return fmt.Errorf("macvlan %s: parent %s does not exist: give an existing host link (ip link show)", m.IfName, m.Parent)
	}
	if p.MTU > 0 && m.MTU > p.MTU {
		return fmt.Errorf("macvlan %s: MTU %d is above parent %s's %d", m.IfName, m.MTU, m.Parent, p.MTU)
	}
	ifc := m.Iface
	if m.mode() == "passthru" && ifc.MAC == nil && ifc.hasIPv6() {
		ifc.MAC = []byte{2, 0, 0, 0, 0, 1} // the parent's, which the fake does not know
	}
	if err := ifc.check("macvlan " + m.IfName); err != nil {
		return err
	}
	mv := f.macvlanState()
	key := ifaceKey(m.Netns, m.IfName)
	if _, ok := mv.macvlans[key]; ok {
		return fmt.Errorf("create macvlan %s on %s: an interface of that name exists in the sandbox", m.IfName, m.Parent)
	}
	for _, v := range f.veths {
		if v.Netns == m.Netns && v.IfName == m.IfName {
			return fmt.Errorf("create macvlan %s on %s: an interface of that name exists in the sandbox", m.IfName, m.Parent)
		}
	}
	for _, o := range mv.macvlans {
		if o.Parent == m.Parent && (o.mode() == "passthru" || m.mode() == "passthru") {
			return fmt.Errorf("create macvlan %s on %s in mode %s: invalid argument (a parent with a passthru macvlan takes no other)", m.IfName, m.Parent, m.mode())
		}
	}
	m.Addrs = slices.Clone(m.Addrs)
	mv.macvlans[key] = &fakeMacvlan{Macvlan: m}
	if m.Table != 0 {
		for _, a := range m.Addrs {
			f.rules[ruleKey(m.Netns, a.Addr.Addr(), m.Table)] = true
		}
	}
	return nil
}

// CheckMacvlan describes how the fake's macvlan differs from m.
func (f *Fake) CheckMacvlan(m Macvlan) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkMacvlanLocked(m)
}

func (f *Fake) checkMacvlanLocked(m Macvlan) []string {
	if _, ok := f.hostLinkLocked(m.Parent); !ok {
		return []string{fmt.Sprintf("parent %s of macvlan %s is missing", m.Parent, m.IfName)}
	}
	have, ok := f.macvlanState().macvlans[ifaceKey(m.Netns, m.IfName)]
	if !ok {
		return []string{m.IfName + " is missing in the sandbox"}
	}
	if have.Parent != m.Parent {
		return []string{fmt.Sprintf("%s in the sandbox is not a macvlan on %s", m.IfName, m.Parent)}
	}
	if have.mode() != m.mode() {
		return []string{fmt.Sprintf("%s is a macvlan in mode %s, want %s", m.IfName, have.mode(), m.mode())}
	}
	var out []string
	if have.down {
		out = append(out, m.IfName+" is down")
	}
	if m.MAC != nil && have.MAC.String() != m.MAC.String() {
		out = append(out, fmt.Sprintf("%s has MAC %s, want %s", m.IfName, have.MAC, m.MAC))
	}
	if m.MTU > 0 && have.MTU != m.MTU {
		out = append(out, fmt.Sprintf("%s has MTU %d, want %d", m.IfName, have.MTU, m.MTU))
	}
	for _, a := range m.Addrs {
		if !slices.ContainsFunc(have.Addrs, func(h Address) bool { return h.Addr == a.Addr }) {
			out = append(out, fmt.Sprintf("%s does not have address %s", m.IfName, a.Addr))
		}
	}
	return out
}

// RepairMacvlan makes the macvlan again when CheckMacvlan finds anything.
func (f *Fake) RepairMacvlan(m Macvlan) ([]Fix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("RepairMacvlan"); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	if _, ok := f.hostLinkLocked(m.Parent); !ok {
		return nil, fmt.Errorf("macvlan %s: parent %s does not exist", m.IfName, m.Parent)
	}
	problems := f.checkMacvlanLocked(m)
	if len(problems) == 0 {
		return nil, nil
	}
	delete(f.macvlanState().macvlans, ifaceKey(m.Netns, m.IfName))
	if err := f.addMacvlanLocked(m); err != nil {
		return nil, err
	}
	fixes := make([]Fix, len(problems))
	for i, p := range problems {
		fixes[i] = Fix{"macvlan", p}
	}
	return fixes, nil
}

// DeleteIface deletes the sandbox's interface: a macvlan, or a veth's
// peer (and so the pair). Missing is success.
func (f *Fake) DeleteIface(netns string, _ uint64, ifname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DeleteIface"); err != nil {
		return err
	}
	delete(f.macvlanState().macvlans, ifaceKey(netns, ifname))
	if p := f.pairs[pairKey(Iface{Netns: netns, IfName: ifname})]; p != nil {
		delete(f.pairs, pairKey(p.A)) // the pair goes with either end
		delete(f.pairs, pairKey(p.B))
	}
	for name, v := range f.veths {
		if v.Netns == netns && v.IfName == ifname {
			delete(f.veths, name)
		}
	}
	return nil
}

// EnsureVLAN records the VLAN link <parent>.<id>.
func (f *Fake) EnsureVLAN(parent string, id int) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("EnsureVLAN"); err != nil {
		return "", false, err
	}
	name, err := checkVLAN(parent, id)
	if err != nil {
		return "", false, err
	}
	if _, ok := f.hostLinkLocked(parent); !ok {
		return "", false, fmt.Errorf("VLAN %s: parent %s does not exist: give an existing host link (ip link show)", name, parent)
	}
	mv := f.macvlanState()
	if v, ok := mv.vlans[name]; ok {
		if v.parent != parent || v.id != id {
			return "", false, fmt.Errorf("%s exists and is not VLAN %d on %s", name, id, parent)
		}
		return name, false, nil
	}
	if l, ok := f.hostLinkLocked(name); ok {
		return "", false, fmt.Errorf("%s exists and is not VLAN %d on %s (it is a %s)", name, id, parent, l.Type)
	}
	f.next++
	mv.vlans[name] = fakeVLAN{parent: parent, id: id, index: f.next}
	return name, true, nil
}

// DeleteVLAN forgets a VLAN link; missing is success.
func (f *Fake) DeleteVLAN(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DeleteVLAN"); err != nil {
		return err
	}
	mv := f.macvlanState()
	if _, ok := mv.vlans[name]; !ok {
		if l, ok := f.hostLinkLocked(name); ok {
			return fmt.Errorf("delete VLAN %s: it is a %s, not a VLAN: left alone", name, l.Type)
		}
	}
	delete(mv.vlans, name)
	for k, m := range mv.macvlans {
		if m.Parent == name {
			delete(mv.macvlans, k) // the kernel deletes a parent's macvlans with it
		}
	}
	return nil
}

// EnsureShim records the shim.
func (f *Fake) EnsureShim(s Shim) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("EnsureShim"); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	if _, ok := f.hostLinkLocked(s.Parent); !ok {
		return fmt.Errorf("shim %s: parent %s does not exist: give an existing host link (ip link show)", s.Name, s.Parent)
	}
	mv := f.macvlanState()
	old, ok := mv.shims[s.Name]
	switch {
	case ok && old.Parent != s.Parent:
		return fmt.Errorf("%s exists and is a macvlan on another parent than %s", s.Name, s.Parent)
	case !ok:
		if l, ok := f.hostLinkLocked(s.Name); ok {
			return fmt.Errorf("%s exists and is a %s, not a shim", s.Name, l.Type)
		}
		f.next++
		old = &fakeShim{index: f.next}
		mv.shims[s.Name] = old
	}
	s.Addrs, s.Routes = slices.Clone(s.Addrs), slices.Clone(s.Routes)
	old.Shim = s
	return nil
}

// CheckShim describes how the fake's shim differs from s.
func (f *Fake) CheckShim(s Shim) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	have, ok := f.macvlanState().shims[s.Name]
	if !ok {
		return []string{fmt.Sprintf("shim %s is missing", s.Name)}
	}
	if have.Parent != s.Parent {
		return []string{fmt.Sprintf("%s exists and is a macvlan on another parent than %s", s.Name, s.Parent)}
	}
	var out []string
	for _, a := range s.Addrs {
		if !slices.Contains(have.Addrs, a) {
			out = append(out, fmt.Sprintf("shim %s does not have address %s", s.Name, a))
		}
	}
	for _, r := range s.Routes {
		if !slices.Contains(have.Routes, r) {
			out = append(out, fmt.Sprintf("no route %s dev %s", r, s.Name))
		}
	}
	return out
}

// DeleteShim forgets a shim; missing is success.
func (f *Fake) DeleteShim(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DeleteShim"); err != nil {
		return err
	}
	delete(f.macvlanState().shims, name)
	return nil
}

// BreakMacvlan changes a macvlan as someone outside pontoon would:
// "delete" removes it, "down" takes it down, "unaddr" removes its
// addresses. It emits the matching event.
func (f *Fake) BreakMacvlan(what, netns, ifname string) {
	f.mu.Lock()
	mv := f.macvlanState()
	key := ifaceKey(netns, ifname)
	ev := Event{Kind: LinkChanged, Name: ifname}
	if m, ok := mv.macvlans[key]; ok {
		switch what {
		case "delete":
			delete(mv.macvlans, key)
			ev.Kind = LinkDeleted
		case "down":
			m.down = true
		case "unaddr":
			m.Addrs = nil
			ev.Kind = AddrDeleted
		}
	}
	f.mu.Unlock()
	f.Emit(ev)
}

// macvlanDumpLocked is Dump's lines for macvlans, VLANs and shims.
func (f *Fake) macvlanDumpLocked() []string {
	if f.mv == nil {
		return nil
	}
	var lines []string
	for _, m := range f.mv.macvlans {
		state := "up"
		if m.down {
			state = "down"
		}
		var addrs []netip.Prefix
		var gws []netip.Addr
		for _, a := range m.Addrs {
			addrs = append(addrs, a.Addr)
			if a.Gateway.IsValid() {
				gws = append(gws, a.Gateway)
			}
		}
		l := fmt.Sprintf("macvlan %s netns %s parent %s mode %s %s addr %s mac %s", m.IfName, m.Netns, m.Parent, m.mode(), state, joinAddrs(addrs), m.MAC)
		if m.MTU > 0 {
			l += fmt.Sprintf(" mtu %d", m.MTU)
		}
		if m.DefaultRoute {
			l += " default via " + joinAddrs(gws)
		}
		if m.Table != 0 {
			l += fmt.Sprintf(" table %d", m.Table)
		}
		lines = append(lines, l)
	}
	for name, v := range f.mv.vlans {
		lines = append(lines, fmt.Sprintf("vlan %s parent %s id %d", name, v.parent, v.id))
	}
	for _, s := range f.mv.shims {
		l := fmt.Sprintf("shim %s parent %s addr %s", s.Name, s.Parent, joinAddrs(s.Addrs))
		if len(s.Routes) > 0 {
			l += " routes " + joinAddrs(s.Routes)
		}
		lines = append(lines, l)
	}
	return lines
}
