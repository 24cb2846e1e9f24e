package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
)

// Static addresses: an address asked for by name (--ip) on an overlay
// network may fall in any node's slice, so it is reserved cluster-wide,
// beside the slices; the node that hands it out checks it against its own
// allocations too.

// checkStatic validates a static reservation's arguments.
func checkStatic(network string, ip netip.Addr, owner string, needOwner bool) error {
	if err := model.ValidateNetworkName(network); err != nil {
		return err
	}
	if !ip.IsValid() || ip.Zone() != "" {
		return model.Invalidf("network %s: %q is not an address without a zone: give one such as 10.1.0.5 or fd00:1::5", network, ip)
	}
	if needOwner && owner == "" {
		return model.Invalidf("network %s: reserve %s for whom? give an owner (an endpoint ID)", network, ip)
	}
	return nil
}

// ReserveStatic reserves ip on network for owner across the cluster. It is
// a create-if-absent Txn: when another owner holds ip, the error wraps
// model.ErrConflict and names the holder; when owner holds it already,
// it is success.
func (c *Cluster) ReserveStatic(ctx context.Context, network string, ip netip.Addr, owner string) error {
	if err := checkStatic(network, ip, owner, true); err != nil {
		return err
	}
	ip = ip.Unmap()
	rctx, cancel := bounded(ctx)
	defer cancel()
	key := c.staticKey(network, ip)
	resp, err := c.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, owner)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("cluster: reserve %s on network %s for %s: %w", ip, network, owner, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 1 && string(kvs[0].Value) == owner {
		return nil
	}
	holder := "another owner (released meanwhile: try again)"
	if len(kvs) == 1 {
		holder = string(kvs[0].Value)
	}
	return model.Conflictf("address %s on network %s is reserved by %s across the cluster: choose another address, or release it there first", ip, network, holder)
}

// ReleaseStatic releases ip on network if owner holds it. An address no
// one holds is success; one another owner holds is model.ErrConflict and
// stays.
func (c *Cluster) ReleaseStatic(ctx context.Context, network string, ip netip.Addr, owner string) error {
	if err := checkStatic(network, ip, owner, true); err != nil {
		return err
	}
	ip = ip.Unmap()
	rctx, cancel := bounded(ctx)
	defer cancel()
	key := c.staticKey(network, ip)
	resp, err := c.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.Value(key), "=", owner)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("cluster: release %s on network %s: %w", ip, network, err)
	}
	if resp.Succeeded {
		return nil
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		return model.Conflictf("address %s on network %s is reserved by %s, not %s: it stays", ip, network, kvs[0].Value, owner)
	}
	return nil
}

// StaticReservations returns network's static reservations: address →
// owner.
func (c *Cluster) StaticReservations(ctx context.Context, network string) (map[netip.Addr]string, error) {
	if err := model.ValidateNetworkName(network); err != nil {
		return nil, err
	}
	rctx, cancel := bounded(ctx)
	defer cancel()
	pre := c.staticPrefix(network)
	resp, err := c.cli.Get(rctx, pre, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cluster: static reservations of network %s: %w", network, err)
	}
	out := make(map[netip.Addr]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ip, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), pre))
		if err != nil {
			return nil, fmt.Errorf("cluster: static reservation key %s does not end in an address (%v): delete it (etcdctl del %s)", kv.Key, err, kv.Key)
		}
		out[ip] = string(kv.Value)
	}
	return out, nil
}
