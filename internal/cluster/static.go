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

func (c *Cluster) staticsPrefix() string { return c.prefix + "static/" }

// parseStaticKey splits a static reservation key into its network and
// address.
func (c *Cluster) parseStaticKey(key []byte) (string, netip.Addr, error) {
	network, addr, ok := strings.Cut(strings.TrimPrefix(string(key), c.staticsPrefix()), "/")
	ip, err := netip.ParseAddr(addr)
	if !ok || err != nil {
		return "", netip.Addr{}, fmt.Errorf("cluster: static reservation key %s is not network/address: delete it (etcdctl del %s)", key, key)
	}
	return network, ip, nil
}

// AllStaticReservations returns every network's static reservations
// (network → address → owner) and the revision they were read at, for a
// watch from there (WatchStatics).
func (c *Cluster) AllStaticReservations(ctx context.Context) (map[string]map[netip.Addr]string, int64, error) {
	rctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.staticsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: static reservations: %w", err)
	}
	out := map[string]map[netip.Addr]string{}
	for _, kv := range resp.Kvs {
		network, ip, err := c.parseStaticKey(kv.Key)
		if err != nil {
			return nil, 0, err
		}
		if out[network] == nil {
			out[network] = map[netip.Addr]string{}
		}
		out[network][ip] = string(kv.Value)
	}
	return out, resp.Header.Revision, nil
}

// StaticEvent is a static reservation made or (Removed) released, or,
// with Err, the end of the watch.
type StaticEvent struct {
	Network  string
	IP       netip.Addr
	Owner    string // "" when Removed
	Removed  bool
	Revision int64
	Err      error
}

// WatchStatics streams the changes to the static reservations after
// fromRev, until ctx ends or the watch fails (a last event with Err; a
// compacted fromRev wraps store.ErrCompacted: list again).
func (c *Cluster) WatchStatics(ctx context.Context, fromRev int64) (<-chan StaticEvent, error) {
	return watchPrefix(ctx, c, c.staticsPrefix(), fromRev, "static address", func(ev *clientv3.Event) (StaticEvent, error) {
		network, ip, err := c.parseStaticKey(ev.Kv.Key)
		se := StaticEvent{Network: network, IP: ip, Revision: ev.Kv.ModRevision, Removed: ev.Type == clientv3.EventTypeDelete}
		if !se.Removed {
			se.Owner = string(ev.Kv.Value)
		}
		return se, err
	}, func(err error) StaticEvent { return StaticEvent{Err: err} }), nil
}
