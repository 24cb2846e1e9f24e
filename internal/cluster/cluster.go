// Package cluster keeps what the daemons of a pontoon cluster share about
// each other in etcd: which nodes are alive (and how to reach them), which
// slice of an overlay network's subnet each node hands addresses out of,
// and the static addresses reserved across the cluster. It talks to etcd
// directly (clientv3): its records are not networks, sandboxes or
// endpoints, and some of them are bound to leases, which the Store
// interface has no notion of.
//
// # Key layout
//
// Every key lives under a prefix given to New (or Join), ending in '/'.
// Names are model.ValidateName names (no '/'), so each key reads back
// unambiguously:
//
//	prefix + "nodes/" + node                     → JSON record (Node)      lease-bound
//	prefix + "slices/" + network + "/" + slice   → node name               not lease-bound
//	prefix + "slices-by-node/" + network + "/" + node → IPv4 slice         not lease-bound
//	prefix + "slices-by-node/" + network + "/" + node + "/ipv6" → IPv6 slice  not lease-bound
//	prefix + "static/" + network + "/" + ip      → owner                   not lease-bound
//
// where slice is a prefix in netip form ("10.1.3.0/24", "fd00:1:0:2::/64")
// and ip an address ("10.1.0.5", "fd00:1::5"). A node holds at most one
// slice per family of each network (a dual-stack network's node has two):
// its IPv4 slice's index keeps the key it had before overlays were
// dual-stack, so a node restarted on a newer pontoon finds its slice where
// it left it; its IPv6 slice's index has the "/ipv6" suffix (node names
// have no '/'). The slice keys need no family: the prefix says it, and
// prefixes of two families never overlap. With the store on the same
// etcd, a prefix beside the store's (e.g. "/pontoon-cluster/") keeps
// `etcdctl get --prefix` of each readable; a prefix under the store's is
// also safe as long as its first element is no store bucket name
// ("/pontoon/cluster/" with the store on "/pontoon/": the store ignores
// keys outside its buckets).
//
// # What is lease-bound, and why
//
// A node's record is written with an etcd lease that the daemon keeps
// alive (Join, Member): when the daemon dies, or loses etcd for longer
// than the lease's TTL, etcd deletes the record, and every other daemon's
// WatchNodes sees the node removed and can take its peers (FDB entries,
// neighbours, routes) down. Liveness is exactly "the record exists".
//
// Slices and static reservations are not lease-bound. A node's slice
// holds the addresses of the containers running on it; those containers
// outlive a daemon restart, an upgrade, or an etcd outage longer than the
// TTL. If the slice went with the lease, another node could claim it in
// that window and hand out addresses that are still in use: two
// containers, one address, on the same overlay. So a slice stays with its
// node until someone decides the node is gone for good (ReleaseSlice on
// the node itself, when it leaves the cluster; ExpireSlices by an operator
// or a controller, for the slices of nodes that will not come back). The
// per-node index (slices-by-node) lets a restarting node find its slices
// again with one read each, and ClaimSlice returns them.
//
// # What a daemon does on start
//
//  1. Join with its name, underlay address and VTEP MAC (one per node,
//     the MAC of all its VXLAN devices, derived from the underlay address
//     so that a node that lost its state gets the same one), and a
//     persisted Instance token, so that a restart within the TTL takes
//     its own record over instead of being refused; watch Member.Lost and
//     join again when it fires.
//  2. For every overlay network, for each of its subnets (one per
//     family): ClaimSlice(network, subnet, size, name), and allocate the
//     addresses of its local endpoints inside those slices (static
//     addresses, which may fall in any slice, with ReserveStatic).
//  3. Nodes, then WatchNodes from the revision Nodes returned: program one
//     peer per other node (VXLAN: an FDB entry VTEPMAC → Underlay and a
//     neighbour, with the VTEPMAC of the node's record, never derived
//     again; host-gw: a route to the node's slices via its Underlay),
//     and the slices of each network (Slices) to route to the right node.
//     On an event whose Err wraps store.ErrCompacted, list and watch
//     again.
//  4. On shutdown, Leave (the record goes at once instead of after the
//     TTL). The slices stay.
package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// requestTimeout bounds one etcd request made on the caller's behalf when
// the caller's context has no deadline of its own (a hung etcd must not
// hang a daemon's start).
const requestTimeout = 10 * time.Second

// Cluster reads and writes the cluster's records under one prefix of one
// etcd. It does not own the client: the caller closes it. Its methods are
// safe for concurrent use.
type Cluster struct {
	cli    *clientv3.Client
	prefix string
}

// New returns the Cluster of the records under prefix, which must end in
// '/'.
func New(cli *clientv3.Client, prefix string) (*Cluster, error) {
	if cli == nil {
		return nil, model.Invalidf("cluster: no etcd client")
	}
	if !strings.HasSuffix(prefix, "/") {
		return nil, model.Invalidf("cluster: etcd prefix %q does not end with '/': give a prefix such as \"/pontoon-cluster/\"", prefix)
	}
	return &Cluster{cli: cli, prefix: prefix}, nil
}

func (c *Cluster) nodeKey(node string) string { return c.prefix + "nodes/" + node }
func (c *Cluster) nodesPrefix() string        { return c.prefix + "nodes/" }
func (c *Cluster) sliceKey(network string, slice fmt.Stringer) string {
	return c.slicesPrefix(network) + slice.String()
}
func (c *Cluster) slicesPrefix(network string) string {
	return c.prefix + "slices/" + network + "/"
}

// sliceIndexKey is the key of node's slice of network in one family (see
// the package comment: the IPv4 one without a suffix).
func (c *Cluster) sliceIndexKey(network, node string, v6 bool) string {
	k := c.slicesByNodePrefix() + network + "/" + node
	if v6 {
		k += ipv6Suffix
	}
	return k
}

// ipv6Suffix ends the index key of a node's IPv6 slice.
const ipv6Suffix = "/ipv6"

// parseSliceIndexKey splits a slices-by-node key into its network, node and
// family; false for a key of another shape.
func (c *Cluster) parseSliceIndexKey(key string) (network, node string, v6, ok bool) {
	rest, found := strings.CutPrefix(key, c.slicesByNodePrefix())
	if !found {
		return "", "", false, false
	}
	rest, v6 = strings.CutSuffix(rest, ipv6Suffix)
	network, node, ok = strings.Cut(rest, "/")
	if !ok || network == "" || node == "" || strings.Contains(node, "/") {
		return "", "", false, false
	}
	return network, node, v6, true
}
func (c *Cluster) staticKey(network string, ip fmt.Stringer) string {
	return c.staticPrefix(network) + ip.String()
}
func (c *Cluster) staticPrefix(network string) string {
	return c.prefix + "static/" + network + "/"
}

// bounded returns ctx with requestTimeout when it has no deadline.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, requestTimeout)
}

// Ping asks etcd for one key's count: it answers only with a quorum
// behind it (a linearizable read). One cheap request, for a daemon's
// health probe.
func (c *Cluster) Ping(ctx context.Context) error {
	rctx, cancel := bounded(ctx)
	defer cancel()
	if _, err := c.cli.Get(rctx, c.nodesPrefix(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("cluster: etcd does not answer: %w", err)
	}
	return nil
}

// watchPrefix streams the changes under prefix after fromRev, each made
// into a T by conv, until ctx ends (then the channel closes) or the watch
// fails: then a last T made by fail says why (a compacted revision wraps
// store.ErrCompacted: list again). A conv error ends it the same way.
// what names the watch in its errors.
func watchPrefix[T any](ctx context.Context, c *Cluster, prefix string, fromRev int64, what string,
	conv func(*clientv3.Event) (T, error), fail func(error) T) <-chan T {
	// WithRequireLeader: a member cut off from its leader ends the watch
	// rather than go silent.
	wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev+1), clientv3.WithPrevKV())
	out := make(chan T, watchBuffer)
	go func() {
		defer close(out)
		send := func(v T) bool {
			select {
			case out <- v:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if resp.CompactRevision != 0 {
					err = fmt.Errorf("%w: %v", store.ErrCompacted, err)
				}
				send(fail(err))
				return
			}
			for _, ev := range resp.Events {
				v, err := conv(ev)
				if err != nil {
					send(fail(err))
					return
				}
				if !send(v) {
					return
				}
			}
		}
		if ctx.Err() == nil {
			send(fail(fmt.Errorf("cluster: the %s watch ended (etcd unreachable, or its member lost its leader)", what)))
		}
	}()
	return out
}
