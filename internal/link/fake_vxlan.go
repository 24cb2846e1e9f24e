package link

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The Fake's VXLAN devices and their peers' entries (vxlan.go).

type fakeVXLAN struct {
	VXLAN
	index int
	mtu   int // resolved: v.MTU or the underlay's minus the encapsulation
	down  bool
	// st holds the device's routes, permanent neighbours and FDB entries
	// as the kernel would (SetPeers changes them, BreakVXLAN loses them).
	st vxlanState
}

// vxlanStateLocked returns f.vx, making it; f.mu is held.
func (f *Fake) vxlanStateLocked() map[string]*fakeVXLAN {
	if f.vx == nil {
		f.vx = map[string]*fakeVXLAN{}
	}
	return f.vx
}

// EnsureVXLAN records the device, as the kernel would have it: one that
// differs in VNI, local address, underlay or port is made again (new
// index, no peers' entries).
func (f *Fake) EnsureVXLAN(v VXLAN) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("EnsureVXLAN"); err != nil {
		return 0, err
	}
	if err := v.check(); err != nil {
		return 0, err
	}
	under, ok := f.hostLinkLocked(v.Dev)
	if !ok {
		return 0, fmt.Errorf("vxlan %s: underlay device %s does not exist: give an existing host link (ip link show)", v.Name, v.Dev)
	}
	mtu := v.MTU
	if under.MTU > 0 {
		maxMTU := under.MTU - vxlanOverhead(v.Local)
		if mtu == 0 {
			mtu = maxMTU
		}
		if mtu > maxMTU {
			return 0, fmt.Errorf("vxlan %s: MTU %d is above underlay %s's %d minus the %d bytes of encapsulation: give %d or less, or 0", v.Name, mtu, v.Dev, under.MTU, vxlanOverhead(v.Local), maxMTU)
		}
	}
	vxs := f.vxlanStateLocked()
	old, ok := vxs[v.Name]
	if !ok {
		if l, ok := f.hostLinkLocked(v.Name); ok {
			return 0, fmt.Errorf("%s exists and is a %s, not a VXLAN device: pick another name or remove it", v.Name, l.Type)
		}
	}
	if ok && (old.VNI != v.VNI || old.Local != v.Local || old.Dev != v.Dev || old.port() != v.port()) {
		ok = false // made again
	}
	if !ok {
		f.next++
		old = &fakeVXLAN{index: f.next, st: peerState(nil)}
		vxs[v.Name] = old
	}
	v.MAC = slices.Clone(v.mac())
	v.Addrs = slices.Clone(v.Addrs)
	old.VXLAN, old.mtu, old.down = v, mtu, false
	return old.index, nil
}

// DeleteVXLAN forgets a device; missing is success.
func (f *Fake) DeleteVXLAN(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("DeleteVXLAN"); err != nil {
		return err
	}
	vxs := f.vxlanStateLocked()
	if _, ok := vxs[name]; !ok {
		if l, ok := f.hostLinkLocked(name); ok {
			return fmt.Errorf("delete vxlan %s: it is a %s, not a VXLAN device: left alone", name, l.Type)
		}
	}
	delete(vxs, name)
	return nil
}

// CheckVXLAN describes how the fake's device differs from v.
func (f *Fake) CheckVXLAN(v VXLAN) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	have, ok := f.vxlanStateLocked()[v.Name]
	if !ok {
		return []string{fmt.Sprintf("vxlan %s is missing", v.Name)}
	}
	var out []string
	switch {
	case have.VNI != v.VNI:
		out = append(out, fmt.Sprintf("%s has VNI %d, want %d", v.Name, have.VNI, v.VNI))
	case have.Local != v.Local:
		out = append(out, fmt.Sprintf("%s has local address %s, want %s", v.Name, have.Local, v.Local))
	case have.Dev != v.Dev:
		out = append(out, fmt.Sprintf("%s is not on underlay %s", v.Name, v.Dev))
	case have.port() != v.port():
		out = append(out, fmt.Sprintf("%s has port %d, want %d", v.Name, have.port(), v.port()))
	}
	if mac := v.mac(); have.MAC.String() != mac.String() {
		out = append(out, fmt.Sprintf("%s has MAC %s, want %s", v.Name, have.MAC, mac))
	}
	if v.MTU > 0 && have.mtu != v.MTU {
		out = append(out, fmt.Sprintf("%s has MTU %d, want %d", v.Name, have.mtu, v.MTU))
	}
	if have.down {
		out = append(out, v.Name+" is down")
	}
	for _, a := range have.Addrs {
		if !slices.Contains(v.Addrs, a) {
			out = append(out, fmt.Sprintf("%s has address %s, not pontoon's", v.Name, a))
		}
	}
	for _, a := range v.Addrs {
		if !slices.Contains(have.Addrs, a) {
			out = append(out, fmt.Sprintf("%s does not have address %s", v.Name, a))
		}
	}
	return out
}

// SetPeers validates peers as the real one does and records their
// entries.
func (f *Fake) SetPeers(vxlan string, peers []Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("SetPeers"); err != nil {
		return err
	}
	have, ok := f.vxlanStateLocked()[vxlan]
	if !ok {
		return fmt.Errorf("vxlan %s does not exist: make it first (EnsureVXLAN)", vxlan)
	}
	if err := checkPeers(vxlan, have.Local, have.MAC, peers); err != nil {
		return err
	}
	have.st = peerState(peers)
	return nil
}

// CheckPeers describes how the fake's entries differ from peers.
func (f *Fake) CheckPeers(vxlan string, peers []Peer) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	have, ok := f.vxlanStateLocked()[vxlan]
	if !ok {
		return []string{fmt.Sprintf("vxlan %s does not exist: make it first (EnsureVXLAN)", vxlan)}
	}
	return have.st.diff(vxlan, peers)
}

// BreakVXLAN changes a VXLAN device as someone outside pontoon would:
// "delete" removes it, "down" takes it down, "flush" loses its peers'
// routes, neighbours and FDB entries. It emits the matching event.
func (f *Fake) BreakVXLAN(what, name string) {
	f.mu.Lock()
	vxs := f.vxlanStateLocked()
	ev := Event{Kind: LinkChanged, Name: name}
	if v, ok := vxs[name]; ok {
		switch what {
		case "delete":
			delete(vxs, name)
			ev.Kind = LinkDeleted
		case "down":
			v.down = true
		case "flush":
			v.st = peerState(nil)
		}
	}
	f.mu.Unlock()
	f.Emit(ev)
}

// vxlanLinksLocked is ListLinks' entries for VXLAN devices.
func (f *Fake) vxlanLinksLocked(prefixes []string) []LinkInfo {
	var out []LinkInfo
	for name, v := range f.vx {
		if len(prefixes) == 0 || hasAnyPrefix(name, prefixes) {
			out = append(out, LinkInfo{Name: name, Index: v.index, Type: "vxlan", MTU: v.mtu, Up: !v.down})
		}
	}
	return out
}

// vxlanDumpLocked is Dump's lines for VXLAN devices and their entries, in
// `ip` and `bridge` syntax.
func (f *Fake) vxlanDumpLocked() []string {
	var lines []string
	for name, v := range f.vx {
		state := "up"
		if v.down {
			state = "down"
		}
		lines = append(lines, fmt.Sprintf("vxlan %s id %d local %s dev %s dstport %d nolearning mtu %d mac %s addr %s %s", name, v.VNI, v.Local, v.Dev, v.port(), v.mtu, v.MAC, joinPrefixes(v.Addrs), state))
		for dst, r := range v.st.routes {
			lines = append(lines, fmt.Sprintf("route %s via %s dev %s onlink", dst, r.gw, name))
		}
		for gw, mac := range v.st.neighs {
			lines = append(lines, fmt.Sprintf("neigh %s lladdr %s dev %s permanent", gw, mac, name))
		}
		for mac, dsts := range v.st.fdb {
			for _, d := range dsts {
				lines = append(lines, fmt.Sprintf("fdb %s dst %s dev %s self permanent", mac, d, name))
			}
		}
	}
	return lines
}

// vxlanIndexLocked is a VXLAN device's index for LinkIndex; 0: none.
func (f *Fake) vxlanIndexLocked(name string) int {
	if v, ok := f.vx[name]; ok {
		return v.index
	}
	return 0
}

// joinPrefixes is ps in one word for Dump: "10.200.1.0/32,fd00:200:0:1::/128",
// "-" for none.
func joinPrefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "-"
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}
