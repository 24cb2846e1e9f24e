package engine

import (
	"context"
	"net/netip"
	"slices"

	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/store"
)

// The VXLAN underlay in the firewall (firewall.VXLANUnderlay): a VXLAN
// device takes an encapsulated frame from whoever reaches its UDP port,
// so the firewall drops VXLAN packets whose outer source is not a node
// this host's devices exchange packets with. Those nodes are the peers
// the overlay driver programs into the devices (peersOf, from the
// topology last seen): the firewall follows the same topology, rewritten
// when a change of it changes them (syncVXLANPeers).

// fwVXLAN is the underlay of this host's VXLAN overlay networks among
// nets, as the firewall checks it: this node's underlay address, the
// devices' port, and the underlay addresses of the nodes holding a slice
// of one of those networks. The zero value (no check) when there is no
// VXLAN overlay here, no cluster, or no topology read yet: a daemon
// restarted while etcd is away keeps its devices' peers (fail-static,
// the kernel keeps their entries), and would drop every tunnel if it
// knew of no peer; the check comes with the first topology read
// (followPeers).
func (e *Engine) fwVXLAN(nets []*model.Network) firewall.VXLANUnderlay {
	d, ok := e.drivers[model.DriverOverlay].(*overlayDriver)
	if !ok || d.cl == nil {
		return firewall.VXLANUnderlay{}
	}
	t := d.topo.Load()
	_, local := d.cl.Underlay()
	if t == nil || !local.IsValid() {
		return firewall.VXLANUnderlay{}
	}
	// vxlanOf leaves the port to the link adapter: the default.
	u := firewall.VXLANUnderlay{Local: local, Port: link.VXLANPort}
	vx := false
	for _, n := range nets {
		if n.Driver != model.DriverOverlay || n.Overlay == nil || n.Overlay.VXLAN == "" {
			continue // host-gw: no device, no tunnel
		}
		vx = true
		for _, p := range d.peersOf(t, n) {
			// A record of another family, or with this node's own
			// address, is no tunnel's (SetPeers refuses it too).
			if p.Underlay.Is4() == local.Is4() && p.Underlay != local {
				u.Peers = append(u.Peers, p.Underlay)
			}
		}
	}
	if !vx {
		return firewall.VXLANUnderlay{}
	}
	slices.SortFunc(u.Peers, netip.Addr.Compare)
	u.Peers = slices.Compact(u.Peers)
	return u
}

// syncVXLANPeers rewrites the firewall when the topology changed whom
// this host's VXLAN devices take packets from (a node joined, left, moved
// to another underlay address, or took its first slice of one of this
// host's VXLAN networks). A failure is logged: self-healing's check
// counts the peers and syncs again.
func (e *Engine) syncVXLANPeers(ctx context.Context) {
	e.netMu.Lock()
	defer e.netMu.Unlock()
	var nets []*model.Network
	if err := e.st.View(ctx, func(tx store.Tx) (err error) {
		nets, err = tx.Networks()
		return err
	}); err != nil {
		e.log.Warn("cluster: read the networks to check the VXLAN peers in the firewall; self-healing tries again", "err", err)
		return
	}
	want := e.fwVXLAN(nets)
	if sameUnderlay(want, e.fwVXLANSynced) {
		return
	}
	// Only the peers changed (a node joined or left): their elements, one
	// netlink transaction; else, or if that fails, the whole table.
	old := e.fwVXLANSynced
	if old.Local.IsValid() && old.Local == want.Local && old.Port == want.Port {
		err := e.fw.UpdateVXLANPeers(ctx, old, want)
		if err == nil {
			e.fwVXLANSynced = want
			e.log.Debug("cluster: the firewall's VXLAN peers follow the topology", "peers", len(want.Peers))
			return
		}
		e.log.Warn("cluster: update the firewall's VXLAN peers; rewriting the table", "err", err)
	}
	if err := e.syncFirewall(ctx); err != nil {
		e.log.Warn("cluster: update the firewall's VXLAN peers; self-healing tries again", "err", err)
		return
	}
	e.log.Debug("cluster: the firewall's VXLAN peers follow the topology", "peers", len(want.Peers))
}

func sameUnderlay(a, b firewall.VXLANUnderlay) bool {
	return a.Local == b.Local && a.Port == b.Port && slices.Equal(a.Peers, b.Peers)
}

// checkTunnelPort refuses a published port that would take the VXLAN
// overlays' packets: on a node of a cluster, UDP port link.VXLANPort of
// the host carries the tunnels, and a mapping of it (DNATed in
// prerouting, before the kernel's VXLAN socket sees the packets) would
// cut this host off every vxlan overlay.
func (e *Engine) checkTunnelPort(m model.PortMapping) error {
	if e.cfg.Cluster == nil || m.Proto != "udp" || link.VXLANPort < int(m.HostPort) || link.VXLANPort > int(m.HostPortEnd) {
		return nil
	}
	return model.Conflictf("host port %d/udp carries this node's VXLAN overlays (their tunnels to the other nodes): publishing it would cut the host off them; pick another host port", link.VXLANPort)
}
