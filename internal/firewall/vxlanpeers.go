package firewall

import (
	"context"
	"fmt"
	"net/netip"

	gnft "github.com/google/nftables"
	"sigs.k8s.io/knftables"
)

// UpdateVXLANPeers changes the peers of the VXLAN underlay last synced
// (State.VXLAN) from old to new, between Syncs: the addresses new adds to
// set vxlan-peers are added and those it drops are removed, in one netlink
// transaction (no nft process, no rewrite of the table). A node joining or
// leaving a cluster of N nodes costs each other node one such transaction
// instead of a Sync. old and new must have the same Local and Port (the
// caller Syncs when they differ) and be valid; else nothing is written.
func (f *nft) UpdateVXLANPeers(ctx context.Context, old, new VXLANUnderlay) error {
	if err := new.validate(); err != nil {
		return err
	}
	if old.Local != new.Local || old.Port != new.Port || !new.Local.IsValid() {
		return fmt.Errorf("VXLAN underlay: local address or port changed (%s:%d → %s:%d): Sync the whole state", old.Local, old.Port, new.Local, new.Port)
	}
	had, want := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, p := range old.Peers {
		had[p] = true
	}
	for _, p := range new.Peers {
		want[p] = true
	}
	var add, del []netip.Addr
	for p := range want {
		if !had[p] {
			add = append(add, p)
		}
	}
	for p := range had {
		if !want[p] {
			del = append(del, p)
		}
	}
	fam, _ := familyOf(new.Local)
	set := fam.name(setVXLANPeers)
	if len(add) > 0 {
		if err := f.elems.writeAddrs(ctx, true, set, add); err != nil {
			return fmt.Errorf("VXLAN peers: add %v: %w", add, err)
		}
	}
	if len(del) > 0 {
		if err := f.elems.writeAddrs(ctx, false, set, del); err != nil {
			return fmt.Errorf("VXLAN peers: remove %v: %w", del, err)
		}
	}
	return nil
}

func (w knftElements) writeAddrs(ctx context.Context, add bool, set string, addrs []netip.Addr) error {
	els := make([]*knftables.Element, 0, len(addrs))
	for _, a := range addrs {
		el := &knftables.Element{Set: set, Key: []string{a.String()}}
		if add {
			el.Comment = knftables.PtrTo("cluster node")
		}
		els = append(els, el)
	}
	return writeKnft(ctx, w.nft, add, els)
}

func (n netlinkElements) writeAddrs(_ context.Context, add bool, set string, addrs []netip.Addr) error {
	els := make([]nlElem, 0, len(addrs))
	for _, a := range addrs {
		els = append(els, nlElem{family: gnft.TableFamilyINet, set: set, key: addrField(a)})
	}
	return n.w.write(add, els)
}
