package link

import (
	"fmt"
	"slices"
)

// fakeTap is a tap the Fake holds: the Tap as made, and what Break did
// to it.
type fakeTap struct {
	Tap
	index int
	down  bool
	// open: a process has it open (carrier); SetTapOpen sets it.
	open  bool
	stats LinkStats // SetStats sets them
}

// AddTap records the tap; the failures of the kernel's (invalid Tap,
// missing bridge, a link with that name) change nothing.
func (f *Fake) AddTap(t Tap) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addTapLocked(t)
}

func (f *Fake) addTapLocked(t Tap) (int, error) {
	if err := f.failed("AddTap"); err != nil {
		return 0, err
	}
	if err := t.check(); err != nil {
		return 0, err
	}
	if _, ok := f.bridges[t.Bridge]; !ok && t.Bridge != "" {
		return 0, fmt.Errorf("add tap %s: look up bridge %s: link not found (create the network first)", t.Name, t.Bridge)
	}
	if f.linkExistsLocked(t.Name) {
		return 0, fmt.Errorf("create tap %s: an interface with this name exists", t.Name)
	}
	if f.taps == nil {
		f.taps = map[string]*fakeTap{}
	}
	f.next++
	t.MAC = slices.Clone(t.MAC)
	f.taps[t.Name] = &fakeTap{Tap: t, index: f.next}
	return f.next, nil
}

func (f *Fake) linkExistsLocked(name string) bool {
	_, br := f.bridges[name]
	_, v := f.veths[name]
	_, t := f.taps[name]
	return br || v || t
}

// CheckTap reports what differs from t, as the kernel's does.
func (f *Fake) CheckTap(t Tap) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	have, ok := f.taps[t.Name]
	if !ok {
		if f.linkExistsLocked(t.Name) {
			return []string{t.Name + " is a bridge or veth, not a tap"}
		}
		return []string{"tap " + t.Name + " is missing"}
	}
	var out []string
	if have.MultiQueue != t.MultiQueue {
		out = append(out, fmt.Sprintf("tap %s has multi-queue %v, want %v", t.Name, have.MultiQueue, t.MultiQueue))
	}
	if have.Owner != t.Owner {
		out = append(out, fmt.Sprintf("tap %s has owner %s, want %s", t.Name, idString(have.Owner), idString(t.Owner)))
	}
	if have.Group != t.Group {
		out = append(out, fmt.Sprintf("tap %s has group %s, want %s", t.Name, idString(have.Group), idString(t.Group)))
	}
	if have.Bridge != t.Bridge {
		out = append(out, fmt.Sprintf("tap %s is not a port of bridge %s", t.Name, t.Bridge))
	}
	if have.down {
		out = append(out, fmt.Sprintf("tap %s is down", t.Name))
	}
	if t.MTU > 0 && have.MTU != t.MTU {
		out = append(out, fmt.Sprintf("tap %s has MTU %d, want %d", t.Name, have.MTU, t.MTU))
	}
	if have.Isolated != t.Isolated {
		out = append(out, fmt.Sprintf("tap %s has port isolation %v, want %v", t.Name, have.Isolated, t.Isolated))
	}
	if have.NoHairpin != t.NoHairpin {
		out = append(out, fmt.Sprintf("tap %s has hairpin mode %v, want %v", t.Name, !have.NoHairpin, !t.NoHairpin))
	}
	return out
}

// RepairTap makes a missing tap again, remakes one whose multi-queue
// flag, owner or group differ, and puts back bridge, port flags, MTU and
// up in place — the kernel's repairs, with the same Fix kinds.
func (f *Fake) RepairTap(t Tap) (int, []Fix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("RepairTap"); err != nil {
		return 0, nil, err
	}
	if err := t.check(); err != nil {
		return 0, nil, err
	}
	have, ok := f.taps[t.Name]
	if !ok && f.linkExistsLocked(t.Name) {
		return 0, nil, fmt.Errorf("repair tap %s: %s is a bridge or veth, not a tap: remove it or give the tap another name", t.Name, t.Name)
	}
	if !ok || have.MultiQueue != t.MultiQueue || have.Owner != t.Owner || have.Group != t.Group {
		delete(f.taps, t.Name)
		idx, err := f.addTapLocked(t)
		if err != nil {
			return 0, nil, err
		}
		return idx, []Fix{{"tap", "recreated tap " + t.Name}}, nil
	}
	if _, ok := f.bridges[t.Bridge]; !ok && t.Bridge != "" {
		return have.index, nil, fmt.Errorf("repair tap %s: look up bridge %s: link not found", t.Name, t.Bridge)
	}
	var fixed []Fix
	if have.Bridge != t.Bridge || (t.MTU > 0 && have.MTU != t.MTU) {
		have.Bridge, have.MTU = t.Bridge, t.MTU
		fixed = append(fixed, Fix{"port", fmt.Sprintf("joined %s to bridge %s (MTU %d)", t.Name, t.Bridge, t.MTU)})
	}
	if have.Isolated != t.Isolated || have.NoHairpin != t.NoHairpin {
		have.Isolated, have.NoHairpin = t.Isolated, t.NoHairpin
		fixed = append(fixed, Fix{"port", "set bridge port flags of " + t.Name})
	}
	if have.down {
		have.down = false
		fixed = append(fixed, Fix{"port", "brought " + t.Name + " up"})
	}
	return have.index, fixed, nil
}

// SetTapOpen says whether a process (the VM) has the tap open: the
// carrier ListLinks does not report and CheckTap does not look at, for
// tests of code that shows it. A missing tap is an error.
func (f *Fake) SetTapOpen(name string, open bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.taps[name]
	if !ok {
		return fmt.Errorf("tap %s: link not found", name)
	}
	t.open = open
	return nil
}

// Taps returns the names of the taps the fake holds.
func (f *Fake) Taps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.taps {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// tapLinksLocked is ListLinks' entries for taps ("tuntap", as the netlink
// library names the type).
func (f *Fake) tapLinksLocked(prefixes []string) []LinkInfo {
	var out []LinkInfo
	for name, t := range f.taps {
		if len(prefixes) == 0 || hasAnyPrefix(name, prefixes) {
			mtu := t.MTU
			if mtu == 0 {
				mtu = 1500
			}
			st := t.stats
			out = append(out, LinkInfo{Name: name, Index: t.index, Type: "tuntap", Master: t.Bridge, MTU: mtu, Up: !t.down, Stats: &st})
		}
	}
	return out
}

// tapDumpLocked is Dump's lines for taps.
func (f *Fake) tapDumpLocked() []string {
	var out []string
	for _, t := range f.taps {
		state := "up"
		if t.down {
			state = "down"
		}
		l := fmt.Sprintf("tap %s master %s %s mtu %d owner %s group %s mac %s", t.Name, t.Bridge, state, t.MTU, idString(t.Owner), idString(t.Group), t.MAC)
		if t.MultiQueue {
			l += " multi_queue"
		}
		if t.open {
			l += " open"
		}
		if t.Isolated {
			l += " isolated"
		}
		if t.NoHairpin {
			l += " nohairpin"
		}
		if t.VLAN != 0 {
			l += fmt.Sprintf(" vlan %d", t.VLAN)
		}
		out = append(out, l)
	}
	return out
}

// breakTapLocked is Break for taps: "delete", "down", "nomaster".
func (f *Fake) breakTapLocked(what, name string) {
	t, ok := f.taps[name]
	if !ok {
		return
	}
	switch what {
	case "delete":
		delete(f.taps, name)
	case "down":
		t.down = true
	case "nomaster":
		t.Bridge = ""
	}
}
