package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
)

// Default slice sizes (prefix lengths) when ClaimSlice is given 0: a /24
// (254 addresses per node) of an IPv4 subnet, a /64 of an IPv6 one.
const (
	DefaultSliceBits4 = 24
	DefaultSliceBits6 = 64
)

// ClaimSlice returns node's slice of network's subnet: a prefix of length
// size (0: DefaultSliceBits4 or DefaultSliceBits6) inside subnet, that no
// other node holds. A node that holds a slice of that subnet and size
// already (a restart) gets it back; otherwise it gets the first free
// slice in address order. A node holds one slice per family of a network:
// a dual-stack network's node claims twice, once per subnet, and each
// claim keeps to its family's index (see the package comment).
//
// Two nodes claiming at once never get the same slice: a claim is an etcd
// Txn that writes the slice's key only if it does not exist
// (CreateRevision == 0), with the node's index key in the same Txn; the
// loser tries the next slice. size must be the same on every node for a
// network (it comes from the network's definition); a slice that overlaps
// one of another size still in etcd (a network recreated with another
// size, whose old slices were not released) is never handed out.
//
// A node's index that points outside subnet or at another size (the
// network was recreated with another subnet) is dropped with its slice
// and a new slice is claimed. When every slice is held, the error wraps
// model.ErrExhausted and names the subnet and the size.
func (c *Cluster) ClaimSlice(ctx context.Context, network string, subnet netip.Prefix, size int, node string) (netip.Prefix, error) {
	if err := model.ValidateNetworkName(network); err != nil {
		return netip.Prefix{}, err
	}
	if err := model.ValidateName("node", node); err != nil {
		return netip.Prefix{}, err
	}
	if !subnet.IsValid() || subnet.Addr().Zone() != "" {
		return netip.Prefix{}, model.Invalidf("network %s: subnet %s is not a valid prefix: give one such as 10.1.0.0/16 or fd00:1::/48", network, subnet)
	}
	subnet = subnet.Masked()
	if size == 0 {
		size = DefaultSliceBits4
		if subnet.Addr().Is6() {
			size = DefaultSliceBits6
		}
	}
	if size < subnet.Bits() || size > subnet.Addr().BitLen() {
		return netip.Prefix{}, model.Invalidf("network %s: a slice of /%d does not fit subnet %s: give a prefix length between %d and %d", network, size, subnet, subnet.Bits(), subnet.Addr().BitLen())
	}
	rctx, cancel := bounded(ctx)
	defer cancel()
	claim := func(err error) error {
		return fmt.Errorf("cluster: claim a /%d of %s on network %s for node %s: %w", size, subnet, network, node, err)
	}

	idxKey := c.sliceIndexKey(network, node, subnet.Addr().Is6())
	for attempt := 0; attempt < maxAttempts; attempt++ {
		// Ours already? One read of the index and of the slice it names.
		g, err := c.cli.Get(rctx, idxKey)
		if err != nil {
			return netip.Prefix{}, claim(err)
		}
		var idxRev int64 // ModRevision of the index key; 0 when absent
		if len(g.Kvs) == 1 {
			idxRev = g.Kvs[0].ModRevision
			mine, err := netip.ParsePrefix(string(g.Kvs[0].Value))
			if err == nil && mine.Bits() == size && subnet.Contains(mine.Addr()) {
				s, err := c.cli.Get(rctx, c.sliceKey(network, mine))
				if err != nil {
					return netip.Prefix{}, claim(err)
				}
				if len(s.Kvs) == 1 && string(s.Kvs[0].Value) == node {
					return mine, nil
				}
			}
			// Stale: another subnet or size, unreadable, or its slice no
			// longer ours. Drop the index (and the slice, when it is
			// still ours), unless the index changed meanwhile.
			drop := []clientv3.Op{clientv3.OpDelete(idxKey)}
			if err == nil {
				sk := c.sliceKey(network, mine)
				drop = append(drop, clientv3.OpTxn(
					[]clientv3.Cmp{clientv3.Compare(clientv3.Value(sk), "=", node)},
					[]clientv3.Op{clientv3.OpDelete(sk)}, nil))
			}
			if _, err := c.cli.Txn(rctx).
				If(clientv3.Compare(clientv3.ModRevision(idxKey), "=", idxRev)).
				Then(drop...).
				Commit(); err != nil {
				return netip.Prefix{}, claim(fmt.Errorf("drop stale slice %s: %w", g.Kvs[0].Value, err))
			}
			continue
		}

		// Which slices are held? One range read; then try the free ones
		// in order, each with a Txn that fails if someone got there first.
		held, err := c.heldSlices(rctx, network)
		if err != nil {
			return netip.Prefix{}, claim(err)
		}
		taken := func(p netip.Prefix) bool {
			for h := range held {
				if h.Overlaps(p) {
					return true
				}
			}
			return false
		}
		exhausted := true
		for slice, more := netip.PrefixFrom(subnet.Addr(), size), true; more; slice, more = nextSlice(slice, subnet) {
			if taken(slice) {
				continue
			}
			sk := c.sliceKey(network, slice)
			resp, err := c.cli.Txn(rctx).
				If(clientv3.Compare(clientv3.CreateRevision(sk), "=", 0),
					clientv3.Compare(clientv3.CreateRevision(idxKey), "=", 0)).
				Then(clientv3.OpPut(sk, node), clientv3.OpPut(idxKey, slice.String())).
				Else(clientv3.OpGet(idxKey, clientv3.WithCountOnly())).
				Commit()
			if err != nil {
				return netip.Prefix{}, claim(err)
			}
			if resp.Succeeded {
				return slice, nil
			}
			if resp.Responses[0].GetResponseRange().Count != 0 {
				exhausted = false // our index appeared: another claim of ours won; read it
				break
			}
			held[slice] = node // another node got it first: try the next
		}
		if exhausted {
			return netip.Prefix{}, model.Exhaustedf("network %s: every /%d slice of subnet %s is held by another node: make the subnet larger or the slices smaller, or release the slices of nodes gone for good (ExpireSlices)", network, size, subnet)
		}
	}
	return netip.Prefix{}, claim(fmt.Errorf("its index %s changed %d times while the claim ran: another claim for the same node is running", idxKey, maxAttempts))
}

// nextSlice returns the slice after p in subnet, and false after the last.
func nextSlice(p, subnet netip.Prefix) (netip.Prefix, bool) {
	a := p.Addr().As16()
	bit := p.Bits() - 1 // the slice's lowest bit, counted in p's family
	if p.Addr().Is4() {
		bit += 96
	}
	// Add 1 at that bit, carrying towards the high bytes.
	i, inc := bit/8, byte(1)<<(7-bit%8)
	for ; i >= 0; i-- {
		sum := a[i] + inc
		carry := sum < a[i]
		a[i] = sum
		if !carry {
			break
		}
		inc = 1
	}
	if i < 0 {
		return netip.Prefix{}, false // wrapped past the end of the family
	}
	next := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		next = next.Unmap()
	}
	if !subnet.Contains(next) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(next, p.Bits()), true
}

// heldSlices reads network's slices: slice → node.
func (c *Cluster) heldSlices(ctx context.Context, network string) (map[netip.Prefix]string, error) {
	pre := c.slicesPrefix(network)
	resp, err := c.cli.Get(ctx, pre, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	held := make(map[netip.Prefix]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, err := netip.ParsePrefix(strings.TrimPrefix(string(kv.Key), pre))
		if err != nil {
			return nil, fmt.Errorf("slice key %s does not end in a prefix (%v): delete it (etcdctl del %s)", kv.Key, err, kv.Key)
		}
		held[p] = string(kv.Value)
	}
	return held, nil
}

// Slices returns network's slices by node, each node's IPv4 one first.
func (c *Cluster) Slices(ctx context.Context, network string) (map[string][]netip.Prefix, error) {
	if err := model.ValidateNetworkName(network); err != nil {
		return nil, err
	}
	rctx, cancel := bounded(ctx)
	defer cancel()
	held, err := c.heldSlices(rctx, network)
	if err != nil {
		return nil, fmt.Errorf("cluster: slices of network %s: %w", network, err)
	}
	out := make(map[string][]netip.Prefix, len(held))
	for p, n := range held {
		out[n] = addSlice(out[n], p)
	}
	return out, nil
}

// addSlice returns ps (a node's slices, at most one per family, IPv4
// first) with p in place of its family's.
func addSlice(ps []netip.Prefix, p netip.Prefix) []netip.Prefix {
	out := append(dropSlice(ps, p.Addr().Is6()), p)
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().BitLen() - b.Addr().BitLen() })
	return out
}

// dropSlice returns ps without its slice of one family, as a new slice.
func dropSlice(ps []netip.Prefix, v6 bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps)+1)
	for _, p := range ps {
		if p.Addr().Is6() != v6 {
			out = append(out, p)
		}
	}
	return out
}

// ReleaseSlice gives node's slices of network back (one per family): each
// slice key and its index go in one Txn, the slice only if node still
// holds it. A node without a slice is success.
func (c *Cluster) ReleaseSlice(ctx context.Context, network, node string) error {
	if err := model.ValidateNetworkName(network); err != nil {
		return err
	}
	if err := model.ValidateName("node", node); err != nil {
		return err
	}
	rctx, cancel := bounded(ctx)
	defer cancel()
	_, err := c.release(rctx, network, node)
	return err
}

// release deletes node's slices and their indexes, and returns the slices
// released.
func (c *Cluster) release(ctx context.Context, network, node string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v6 := range []bool{false, true} {
		p, err := c.releaseFamily(ctx, network, node, v6)
		if err != nil {
			return out, err
		}
		if p.IsValid() {
			out = append(out, p)
		}
	}
	return out, nil
}

// releaseFamily deletes node's slice of one family and its index, and
// returns the slice released (the invalid Prefix when node had none).
func (c *Cluster) releaseFamily(ctx context.Context, network, node string, v6 bool) (netip.Prefix, error) {
	idxKey := c.sliceIndexKey(network, node, v6)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		g, err := c.cli.Get(ctx, idxKey)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("cluster: release the slice of node %s on network %s: %w", node, network, err)
		}
		if len(g.Kvs) == 0 {
			return netip.Prefix{}, nil
		}
		val := string(g.Kvs[0].Value)
		slice, perr := netip.ParsePrefix(val)
		ops := []clientv3.Op{clientv3.OpDelete(idxKey)}
		if perr == nil {
			sk := c.sliceKey(network, slice)
			ops = append(ops, clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.Value(sk), "=", node)},
				[]clientv3.Op{clientv3.OpDelete(sk)}, nil))
		}
		resp, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(idxKey), "=", g.Kvs[0].ModRevision)).
			Then(ops...).
			Commit()
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("cluster: release slice %s of node %s on network %s: %w", val, node, network, err)
		}
		if resp.Succeeded {
			return slice, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("cluster: release the slice of node %s on network %s: its index changed %d times meanwhile", node, network, maxAttempts)
}

// ExpireSlices releases the slices of network held by nodes that are
// neither in keep nor registered now, and returns them by node (each
// node's IPv4 slice first). Slices
// are not lease-bound (see the package comment), so this is how the slices
// of nodes gone for good come back: keep is the set of nodes the caller
// knows will return (an operator's list, or the nodes seen within a grace
// period much longer than a reboot). A node that has a record when its
// release commits keeps its slice, whatever keep says: a Txn compares the
// node key's absence, so a node that joins while ExpireSlices runs is
// never left without the slice ClaimSlice just gave it back.
func (c *Cluster) ExpireSlices(ctx context.Context, network string, keep []string) (map[string][]netip.Prefix, error) {
	if err := model.ValidateNetworkName(network); err != nil {
		return nil, err
	}
	rctx, cancel := bounded(ctx)
	defer cancel()
	held, err := c.heldSlices(rctx, network)
	if err != nil {
		return nil, fmt.Errorf("cluster: expire slices of network %s: %w", network, err)
	}
	keepSet := make(map[string]bool, len(keep))
	for _, n := range keep {
		keepSet[n] = true
	}
	released := map[string][]netip.Prefix{}
	for p, n := range held {
		if keepSet[n] {
			continue
		}
		// One Txn per slice: the slice goes only if n still holds it and
		// has no record; its index goes with it if it names this slice.
		// It also clears a slice that no index names.
		sk, idxKey := c.sliceKey(network, p), c.sliceIndexKey(network, n, p.Addr().Is6())
		resp, err := c.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.Value(sk), "=", n),
				clientv3.Compare(clientv3.CreateRevision(c.nodeKey(n)), "=", 0)).
			Then(clientv3.OpDelete(sk), clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.Value(idxKey), "=", p.String())},
				[]clientv3.Op{clientv3.OpDelete(idxKey)}, nil)).
			Commit()
		if err != nil {
			return released, fmt.Errorf("cluster: expire slice %s of node %s on network %s: %w", p, n, network, err)
		}
		if resp.Succeeded {
			released[n] = addSlice(released[n], p)
		}
	}
	return released, nil
}

// ReclaimSlice makes slice node's slice of network again, if no other node
// holds it: a node that has the slice in use locally (its sandboxes have
// addresses in it) but lost it in etcd — forgotten while it was away —
// takes it back. A slice another node holds is refused with
// model.ErrConflict naming it; the node's own is success.
func (c *Cluster) ReclaimSlice(ctx context.Context, network string, slice netip.Prefix, node string) error {
	if err := model.ValidateNetworkName(network); err != nil {
		return err
	}
	if err := model.ValidateName("node", node); err != nil {
		return err
	}
	if !slice.IsValid() || slice != slice.Masked() {
		return model.Invalidf("network %s: slice %s is not a prefix's network address", network, slice)
	}
	rctx, cancel := bounded(ctx)
	defer cancel()
	sk, idx := c.sliceKey(network, slice), c.sliceIndexKey(network, node, slice.Addr().Is6())
	resp, err := c.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(sk), "=", 0)).
		Then(clientv3.OpPut(sk, node), clientv3.OpPut(idx, slice.String())).
		Else(clientv3.OpGet(sk)).
		Commit()
	if err != nil {
		return fmt.Errorf("cluster: reclaim slice %s of network %s for node %s: %w", slice, network, node, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) > 0 && string(kvs[0].Value) != node {
		return model.Conflictf("network %s: slice %s, which this node's sandboxes use, is held by node %s: remove one of them", network, slice, kvs[0].Value)
	}
	// Ours: make sure the index says so too.
	if _, err := c.cli.Put(rctx, idx, slice.String()); err != nil {
		return fmt.Errorf("cluster: reclaim slice %s of network %s for node %s: %w", slice, network, node, err)
	}
	return nil
}
