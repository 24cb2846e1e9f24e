package link

import (
	"fmt"
	"slices"
)

// The Fake's direct links: pairs by "netns|ifname" of each end.

func pairKey(i Iface) string { return i.Netns + "|" + i.IfName }

func (f *Fake) AddPair(p Pair) error {
	if err := p.check(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["AddPair"]; err != nil {
		return err
	}
	if f.pairs == nil {
		f.pairs = map[string]*Pair{}
	}
	for _, end := range []Iface{p.A, p.B} {
		if f.pairs[pairKey(end)] != nil || f.ifaceTaken(end) {
			return fmt.Errorf("create direct link %s–%s: %s exists in %s", p.A.IfName, p.B.IfName, end.IfName, end.Netns)
		}
	}
	cp := p
	f.pairs[pairKey(p.A)], f.pairs[pairKey(p.B)] = &cp, &cp
	return nil
}

// ifaceTaken reports whether a veth's peer has end's name in its sandbox.
func (f *Fake) ifaceTaken(end Iface) bool {
	for _, v := range f.veths {
		if v.Netns == end.Netns && v.IfName == end.IfName {
			return true
		}
	}
	return false
}

// BreakPair deletes a direct link as if someone ran `ip link del` in a
// sandbox (tests of self-healing).
func (f *Fake) BreakPair(a Iface) { _ = f.DeleteIface(a.Netns, a.NetnsIno, a.IfName) }

func (f *Fake) CheckPair(p Pair) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	have := f.pairs[pairKey(p.A)]
	if have == nil || pairKey(have.B) != pairKey(p.B) && pairKey(have.A) != pairKey(p.B) {
		return []string{fmt.Sprintf("%s is missing in %s", p.A.IfName, p.A.Netns)}
	}
	var out []string
	for _, w := range []Iface{p.A, p.B} {
		h := have.A
		if pairKey(have.B) == pairKey(w) {
			h = have.B
		}
		for _, a := range w.Addrs {
			if !slices.ContainsFunc(h.Addrs, func(x Address) bool { return x.Addr == a.Addr }) {
				out = append(out, fmt.Sprintf("%s does not have address %s", w.IfName, a.Addr))
			}
		}
	}
	return out
}

func (f *Fake) RepairPair(p Pair) ([]Fix, error) {
	if f.CheckPair(p) == nil {
		return nil, nil
	}
	_ = f.DeleteIface(p.A.Netns, 0, p.A.IfName)
	if err := f.AddPair(p); err != nil {
		return nil, err
	}
	return []Fix{{"link", "recreated direct link " + p.A.IfName + "–" + p.B.IfName}}, nil
}

// Pairs lists the direct links, for tests: one line per pair.
func (f *Fake) Pairs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[*Pair]bool{}
	var out []string
	for _, p := range f.pairs {
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, fmt.Sprintf("%s %s – %s %s", p.A.Netns, p.A.IfName, p.B.Netns, p.B.IfName))
	}
	slices.Sort(out)
	return out
}
