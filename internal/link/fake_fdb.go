package link

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"time"
)

// The Fake's layer 2 tables (fdb.go). The fake carries no frames, so a
// test says what a bridge learned (Learn) and what the host's neighbour
// table holds (SetNeighbour). Entries belong to the port or device as it
// was when they were added (by ifindex): a port taken off its bridge or
// deleted loses them, as in the kernel, and one made again under the same
// name starts empty. A VXLAN device's entries are its peers' (SetPeers).

type fakeL2 struct {
	fdb    []fakeFDB
	neighs []fakeNeigh
}

type fakeFDB struct {
	port  int // the port's ifindex
	mac   net.HardwareAddr
	age   time.Duration
	state string
}

type fakeNeigh struct {
	dev int // the device's ifindex
	NeighEntry
}

// Learn records that the bridge of port (a veth's host end or a tap, on
// a bridge) saw a frame from mac on it age ago: a dynamic entry, which
// moves mac from any other port of that bridge, as the kernel does.
func (f *Fake) Learn(port string, mac net.HardwareAddr, age time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx, br := f.portLocked(port)
	if br == "" {
		return fmt.Errorf("%s is no port of a bridge", port)
	}
	f.l2.fdb = slices.DeleteFunc(f.l2.fdb, func(e fakeFDB) bool {
		_, b := f.portByIndexLocked(e.port)
		return b == br && slices.Equal(e.mac, mac)
	})
	f.l2.fdb = append(f.l2.fdb, fakeFDB{port: idx, mac: slices.Clone(mac), age: age, state: "dynamic"})
	return nil
}

// SetNeighbour records (or replaces) the host's neighbour entry for
// e.Addr on dev, a bridge or VXLAN device.
func (f *Fake) SetNeighbour(dev string, e NeighEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx, _, err := f.l2DeviceLocked(dev)
	if err != nil {
		return err
	}
	f.l2.neighs = slices.DeleteFunc(f.l2.neighs, func(n fakeNeigh) bool { return n.dev == idx && n.Addr == e.Addr })
	e.MAC = slices.Clone(e.MAC)
	f.l2.neighs = append(f.l2.neighs, fakeNeigh{dev: idx, NeighEntry: e})
	return nil
}

// FDB returns what Learn, SetNeighbour and SetPeers left on dev, in the
// kernel implementation's order, with its refusals.
func (f *Fake) FDB(dev string) (FDBTable, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("FDB"); err != nil {
		return FDBTable{}, err
	}
	idx, kind, err := f.l2DeviceLocked(dev)
	if err != nil {
		return FDBTable{}, err
	}
	t := FDBTable{Kind: kind}
	if kind == "bridge" {
		for _, e := range f.l2.fdb {
			if name, br := f.portByIndexLocked(e.port); br == dev {
				t.Entries = append(t.Entries, FDBEntry{MAC: slices.Clone(e.mac), Port: name, State: e.state, Age: e.age})
			}
		}
	} else {
		v := f.vx[dev]
		for mac, dsts := range v.st.fdb {
			for _, d := range dsts {
				t.Entries = append(t.Entries, FDBEntry{MAC: net.HardwareAddr(mac[:]), Port: dev, Dst: d, State: "permanent"})
			}
		}
		for gw, mac := range v.st.neighs {
			t.Neighbours = append(t.Neighbours, NeighEntry{Addr: gw, MAC: net.HardwareAddr(mac[:]), State: "PERMANENT"})
		}
	}
	for _, n := range f.l2.neighs {
		if n.dev == idx && !slices.ContainsFunc(t.Neighbours, func(e NeighEntry) bool { return e.Addr == n.Addr }) {
			e := n.NeighEntry
			e.MAC = slices.Clone(e.MAC)
			t.Neighbours = append(t.Neighbours, e)
		}
	}
	slices.SortFunc(t.Entries, func(a, b FDBEntry) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), slices.Compare(a.MAC, b.MAC), a.Dst.Compare(b.Dst))
	})
	slices.SortFunc(t.Neighbours, func(a, b NeighEntry) int { return a.Addr.Compare(b.Addr) })
	return t, nil
}

// l2DeviceLocked finds a bridge or VXLAN device for FDB: its index and
// kind, or the kernel implementation's error.
func (f *Fake) l2DeviceLocked(dev string) (int, string, error) {
	if b, ok := f.bridges[dev]; ok {
		return b.index, "bridge", nil
	}
	if v, ok := f.vx[dev]; ok {
		return v.index, "vxlan", nil
	}
	kind := ""
	switch {
	case f.veths[dev] != nil:
		kind = "veth"
	case f.taps[dev] != nil:
		kind = "tun"
	default:
		if l, ok := f.hostLinkLocked(dev); ok {
			kind = cmp.Or(l.Type, "device")
		}
	}
	if kind == "" {
		return 0, "", fmt.Errorf("%s does not exist (ip link show %s)", dev, dev)
	}
	return 0, "", fmt.Errorf("%s is a %s, neither a bridge nor a VXLAN device: it has no forwarding database of its own", dev, kind)
}

// portLocked returns a veth host end's or tap's ifindex and the bridge it
// is a port of ("" when none).
func (f *Fake) portLocked(name string) (int, string) {
	if v, ok := f.veths[name]; ok {
		if v.disabled {
			return v.index, ""
		}
		return v.index, v.Bridge
	}
	if t, ok := f.taps[name]; ok {
		return t.index, t.Bridge
	}
	return 0, ""
}

// portByIndexLocked is portLocked by ifindex: the port's name and bridge,
// "" when no port has that index any more.
func (f *Fake) portByIndexLocked(idx int) (string, string) {
	for name, v := range f.veths {
		if v.index == idx {
			_, br := f.portLocked(name)
			return name, br
		}
	}
	for name, t := range f.taps {
		if t.index == idx {
			return name, t.Bridge
		}
	}
	return "", ""
}
