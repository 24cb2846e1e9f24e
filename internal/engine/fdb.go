package engine

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"

	"pontoon/internal/link"
	"pontoon/internal/model"
)

// NetworkFDB reads what network name's switch on this host knows at
// layer 2 (the seeds' `brctl showmacs`, `bridge fdb`, `ip neigh`): its
// bridge's learned entries, each port named with the endpoint whose host
// end it is, and the host's neighbours on the bridge with the endpoint
// that has the address; on a VXLAN overlay also the VXLAN device's
// entries and neighbours, each with the node it leads to. It reads the
// records once (ready endpoints, as every read does) and the host's
// kernel; it changes nothing and enters no sandbox.
//
// Networks without a bridge of their own have nothing of the kind on the
// host, and are refused with where to look instead.
func (e *Engine) NetworkFDB(ctx context.Context, name string) (*model.NetworkFDB, error) {
	v, err := e.view(ctx, viewQuery{network: name})
	if err != nil {
		return nil, err
	}
	if len(v.nets) != 1 {
		return nil, model.NotFoundf("network %s not found", name)
	}
	nv := v.nets[0]
	n := nv.n
	look := "each sandbox's own neighbours: pontoon exec SANDBOX -- ip neigh"
	switch {
	case n.Driver == model.DriverLink:
		return nil, model.Invalidf("network %s (driver link) has no bridge: its two sandboxes are joined by one veth pair, and nothing on the host learns their MACs; %s", n.Name, look)
	case n.Driver == model.DriverMacvlan:
		return nil, model.Invalidf("network %s (driver macvlan) has no bridge: its members are each a %s, switched by the kernel's macvlan driver, which learns nothing; %s", n.Name, n.Where(), look)
	case n.Driver == model.DriverOVS:
		return nil, model.Invalidf("network %s (driver ovs) is switched by Open vSwitch, whose MAC table is its own: ovs-appctl fdb/show %s", n.Name, n.Bridge)
	case n.Bridge == "":
		return nil, model.Invalidf("network %s (driver %s) has no bridge on this host", n.Name, n.Driver)
	}

	byPort := map[string]*model.Endpoint{}
	byIP := map[netip.Addr]*model.Endpoint{}
	byMAC := map[string]*model.Endpoint{}
	for _, ev := range nv.eps {
		ep := ev.ep
		if ep.HostIf != "" {
			byPort[ep.HostIf] = ep
		}
		for _, a := range ep.Addresses {
			byIP[a.Addr.Addr()] = ep
		}
		if ep.MAC != "" {
			byMAC[ep.MAC] = ep
		}
	}
	out := &model.NetworkFDB{Network: n.Name, Driver: n.Driver}
	t, err := e.link.FDB(n.Bridge)
	if err != nil {
		return nil, fmt.Errorf("read the forwarding database of network %s: %w", n.Name, err)
	}
	dev := fdbDevice(n.Bridge, t)
	for i := range dev.Entries {
		if ep := byPort[dev.Entries[i].Port]; ep != nil {
			dev.Entries[i].Sandbox, dev.Entries[i].IfName = ep.Sandbox, ep.IfName
		}
	}
	// By sandbox and interface (ports that are no endpoint's last), not
	// by the ports' generated names.
	slices.SortStableFunc(dev.Entries, func(a, b model.FDBEntry) int {
		noSandbox := func(e model.FDBEntry) int {
			if e.Sandbox == "" {
				return 1
			}
			return 0
		}
		return cmp.Or(cmp.Compare(noSandbox(a), noSandbox(b)), cmp.Compare(a.Sandbox, b.Sandbox), cmp.Compare(a.IfName, b.IfName))
	})
	for i := range dev.Neighbours {
		nb := &dev.Neighbours[i]
		ep := byIP[nb.IP]
		if ep == nil && nb.IP.Is6() && nb.IP.IsLinkLocalUnicast() {
			ep = byMAC[nb.MAC] // fe80::, derived from the sandbox's MAC
		}
		if ep != nil {
			nb.Sandbox, nb.IfName = ep.Sandbox, ep.IfName
		}
	}
	out.Devices = append(out.Devices, dev)

	if n.Overlay != nil && n.Overlay.VXLAN != "" {
		t, err := e.link.FDB(n.Overlay.VXLAN)
		if err != nil {
			return nil, fmt.Errorf("read the forwarding database of network %s: %w", n.Name, err)
		}
		dev := fdbDevice(n.Overlay.VXLAN, t)
		nodes := e.overlayNodes(ctx, n)
		for i := range dev.Entries {
			en := &dev.Entries[i]
			en.Node = nodes.byMAC[en.MAC]
			if en.Node == "" {
				en.Node = nodes.byUnderlay[en.Dst]
			}
		}
		for i := range dev.Neighbours {
			nb := &dev.Neighbours[i]
			nb.Node = nodes.bySlice[nb.IP]
			if nb.Node == "" {
				nb.Node = nodes.byMAC[nb.MAC]
			}
		}
		out.Devices = append(out.Devices, dev)
	}
	return out, nil
}

// fdbDevice is a device's tables as the API has them.
func fdbDevice(name string, t link.FDBTable) model.FDBDevice {
	dev := model.FDBDevice{Name: name, Kind: t.Kind, Entries: []model.FDBEntry{}, Neighbours: []model.Neighbour{}}
	for _, en := range t.Entries {
		dev.Entries = append(dev.Entries, model.FDBEntry{MAC: en.MAC.String(), Port: en.Port, VLAN: en.VLAN,
			State: en.State, AgeSeconds: en.Age.Seconds(), Dst: en.Dst})
	}
	for _, nb := range t.Neighbours {
		mac := ""
		if len(nb.MAC) > 0 {
			mac = nb.MAC.String()
		}
		dev.Neighbours = append(dev.Neighbours, model.Neighbour{IP: nb.Addr, MAC: mac, State: nb.State})
	}
	return dev
}

// fdbNodes finds the node an overlay's VXLAN entry leads to.
type fdbNodes struct {
	byMAC      map[string]string     // VTEP MAC → node
	byUnderlay map[netip.Addr]string // underlay address → node
	bySlice    map[netip.Addr]string // a slice's network address (a peer's gateway) → node
}

// overlayNodes maps the cluster's live nodes (as the overlay last saw
// them) for network n. Without them (etcd not reached yet) the maps are
// empty: the kernel's entries are shown all the same, without names.
func (e *Engine) overlayNodes(ctx context.Context, n *model.Network) fdbNodes {
	out := fdbNodes{byMAC: map[string]string{}, byUnderlay: map[netip.Addr]string{}, bySlice: map[netip.Addr]string{}}
	d, ok := e.drivers[model.DriverOverlay].(*overlayDriver)
	if !ok || d.cl == nil {
		return out
	}
	t, err := d.topology(ctx)
	if err != nil {
		return out
	}
	for name, node := range t.Nodes {
		if mac, _ := nodeVTEPMAC(node); mac != nil {
			out.byMAC[mac.String()] = name
		}
		if node.Underlay.IsValid() {
			out.byUnderlay[node.Underlay] = name
		}
		for _, s := range t.Slices[n.Name][name] {
			out.bySlice[s.Masked().Addr()] = name
		}
	}
	return out
}
