package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// linkDriver joins exactly two sandboxes with one veth pair, each end
// directly in its sandbox: no bridge, nothing on the host (the seeds'
// first experiment). The pair is made when the second member attaches;
// until then the first member's endpoint has its address reserved and no
// interface. When a member leaves, the pair goes, and the next member to
// attach gets a new one.
//
// Nothing of it passes the host, so the host's firewall has nothing to
// enforce: no anti-spoofing, no published ports, no NAT, and isolation from
// every other network holds by construction. Names resolve through the
// resolver inside each member's namespace.
type linkDriver struct {
	link link.Interface
	st   store.Store
	// mu makes one pair at a time: two members attaching at once must
	// not both make it.
	mu sync.Mutex
}

func (*linkDriver) Name() string { return model.DriverLink }

func (*linkDriver) Caps() model.DriverCaps {
	return model.DriverCaps{Isolation: true, ICC: true, DNS: true}
}

func (*linkDriver) Validate(*model.Network) error        { return nil }
func (*linkDriver) EnsureNetwork(*model.Network) error   { return nil }
func (*linkDriver) RemoveNetwork(*model.Network) error   { return nil }
func (*linkDriver) CheckNetwork(*model.Network) []string { return nil }
func (*linkDriver) Prefixes() []string                   { return nil }

// Disable deletes the pair at once: a direct link has no host end to take
// down, and the member that stays must lose its interface too. It costs
// the kernel's veth deletion (an RCU grace period, ~20 ms) in the detach.
func (d *linkDriver) Disable(ep *model.Endpoint) error {
	return d.Delete([]*model.Endpoint{ep})
}

// Delete deletes the pairs endpoints are an end of; an end whose sandbox
// is gone went with it.
func (d *linkDriver) Delete(eps []*model.Endpoint) error {
	var errs []error
	for _, ep := range eps {
		sb := sandboxOf(d.st, ep.Sandbox)
		if sb == nil || sb.Kind == model.KindHost {
			continue // its namespace, and the pair's end in it, are gone
		}
		err := d.link.DeleteIface(sb.Netns, sb.NetnsIno, ep.IfName)
		if err != nil && !errors.Is(err, link.ErrNetnsGone) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Prepare refuses a third member.
func (*linkDriver) Prepare(tx store.Tx, n *model.Network, ep *model.Endpoint) error {
	ep.HostIf = ""
	eps, err := tx.EndpointsOnNetwork(n.Name)
	if err != nil {
		return err
	}
	var members []string
	for _, o := range eps {
		if o.ID != ep.ID && o.State != model.StateRemoving {
			members = append(members, o.Sandbox)
		}
	}
	if len(members) >= 2 {
		slices.Sort(members)
		return model.Conflictf("network %s is a direct link (driver link) and joins exactly two sandboxes, %s already: disconnect one first, or use a bridge network for more", n.Name, strings.Join(members, " and "))
	}
	return nil
}

// pair returns the direct link ep is one end of, when the network has its
// other member (ok false: ep is alone on it).
func (d *linkDriver) pair(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (p link.Pair, ok bool) {
	var osb *model.Sandbox
	var oep *model.Endpoint
	_ = d.st.View(context.Background(), func(tx store.Tx) error {
		eps, err := tx.EndpointsOnNetwork(n.Name)
		if err != nil {
			return err
		}
		for _, o := range eps {
			if o.ID == ep.ID || o.State == model.StateRemoving {
				continue
			}
			s, err := tx.Sandbox(o.Sandbox)
			if err != nil || s.State == model.SandboxRemoving || s.Kind == model.KindHost {
				continue
			}
			osb, oep = s, o
		}
		return nil
	})
	if oep == nil {
		return link.Pair{}, false
	}
	return link.Pair{A: ifaceOf(n, sb, ep), B: ifaceOf(n, osb, oep)}, true
}

// Plumb makes the pair when ep's peer is there; alone, ep waits for it.
func (d *linkDriver) Plumb(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pair(n, sb, ep)
	if !ok {
		return 0, nil
	}
	if d.link.CheckPair(p) == nil {
		return 0, nil // the peer, attaching at the same time, made it
	}
	// What is left of an old pair (an end the other member kept) goes
	// first: its names are the new pair's.
	_ = d.link.DeleteIface(p.B.Netns, p.B.NetnsIno, p.B.IfName)
	return 0, d.link.AddPair(p)
}

func (d *linkDriver) CheckEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) []string {
	p, ok := d.pair(n, sb, ep)
	if !ok {
		return nil
	}
	return d.link.CheckPair(p)
}

func (d *linkDriver) RepairEndpoint(n *model.Network, sb *model.Sandbox, ep *model.Endpoint) (int, []link.Fix, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pair(n, sb, ep)
	if !ok {
		return 0, nil, nil
	}
	fixed, err := d.link.RepairPair(p)
	return 0, fixed, err
}
