package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
	"pontoon/internal/store"
)

// DefaultTTL is the lease TTL Join uses when given 0: a dead daemon's
// record is gone at most this long after its last keep-alive. clientv3
// keeps a lease alive every TTL/3, so the TTL is also about three missed
// keep-alives.
const DefaultTTL = 15 * time.Second

// maxAttempts bounds the compare-and-swap loops of this package: each
// retry follows a change by another writer of the same key, so a loop
// that runs out means heavy contention on one key, not a slow etcd.
const maxAttempts = 16

// Node is one host running a pontoon daemon.
type Node struct {
	Name     string     // model.ValidateName; the key of the node's record
	Underlay netip.Addr // address other nodes reach this one at (VXLAN remote, host-gw gateway)
	// VTEPMAC is the MAC all of the node's VXLAN devices carry, one per
	// node whatever its networks (link.VTEPMAC of its underlay address):
	// the other nodes program their neighbour and FDB entries for the
	// node from it. Join requires it and normalises it (lower case
	// aa:bb:…).
	VTEPMAC string
	Started time.Time // when the daemon started (Join sets time.Now() when zero)
	// Instance identifies this daemon across its restarts: a token the
	// caller persists (e.g. a random ID written under the daemon's root
	// at first start). Join takes over a live record of the same name at
	// once when it carries the same non-empty Instance: it is this
	// machine's own, left by a run that died less than a TTL ago. Without
	// it, a restart within the TTL is refused until the old lease expires.
	// Not a secret: anyone who can read etcd can read it, and anyone who
	// can write etcd can do worse than take a name over.
	Instance string
	// LastSeen is derived, never stored: in Nodes, the time of the
	// record's last keep-alive as etcd's lease TTL tells it (to the
	// second; zero when the lease was gone by the time Nodes asked); in a
	// NodeEvent of a put, the time the event arrived.
	LastSeen time.Time
}

// record is a Node as stored.
type record struct {
	Name     string     `json:"name"`
	Underlay netip.Addr `json:"underlay"`
	VTEPMAC  string     `json:"vtep_mac,omitempty"`
	Started  time.Time  `json:"started"`
	Instance string     `json:"instance,omitempty"`
}

// check validates n and normalises its VTEP MAC.
func (n *Node) check() error {
	if err := model.ValidateName("node", n.Name); err != nil {
		return err
	}
	switch {
	case !n.Underlay.IsValid():
		return model.Invalidf("node %s has no underlay address: give the address other nodes reach it at", n.Name)
	case n.Underlay.Zone() != "":
		return model.Invalidf("node %s: underlay address %s has a zone: give an address other nodes can route to", n.Name, n.Underlay)
	case n.Underlay.IsUnspecified() || n.Underlay.IsMulticast() || n.Underlay.IsLoopback():
		return model.Invalidf("node %s: underlay address %s is not a unicast address other nodes can reach", n.Name, n.Underlay)
	}
	n.Underlay = n.Underlay.Unmap()
	if n.VTEPMAC == "" {
		return model.Invalidf("node %s has no VTEP MAC: give the MAC its VXLAN devices carry (link.VTEPMAC of its underlay address)", n.Name)
	}
	hw, err := net.ParseMAC(n.VTEPMAC)
	switch {
	case err != nil || len(hw) != 6:
		return model.Invalidf("node %s: VTEP MAC %q is not an Ethernet address: give six hex bytes, e.g. 02:42:ac:11:00:02", n.Name, n.VTEPMAC)
	case hw[0]&1 != 0 || hw.String() == "00:00:00:00:00:00":
		return model.Invalidf("node %s: VTEP MAC %s is not a unicast address: give one whose first byte is even, not all zeros", n.Name, hw)
	}
	n.VTEPMAC = hw.String()
	if len(n.Instance) > 256 {
		return model.Invalidf("node %s: instance token is %d bytes long: use at most 256", n.Name, len(n.Instance))
	}
	return nil
}

// decodeNode reads a node record.
func decodeNode(kv *mvccpb.KeyValue) (Node, error) {
	var r record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return Node{}, fmt.Errorf("cluster: node record %s is not valid JSON (%v): delete it (etcdctl del %s) and restart that node's daemon", kv.Key, err, kv.Key)
	}
	return Node{Name: r.Name, Underlay: r.Underlay, VTEPMAC: r.VTEPMAC, Started: r.Started, Instance: r.Instance}, nil
}

// Join registers n on the cluster under prefix (New, then Cluster.Join).
func Join(ctx context.Context, cli *clientv3.Client, prefix string, n Node, ttl time.Duration) (*Member, error) {
	c, err := New(cli, prefix)
	if err != nil {
		return nil, err
	}
	return c.Join(ctx, n, ttl)
}

// Join registers n: its record is created under a lease of ttl (whole
// seconds, rounded up; 0 is DefaultTTL) that the returned Member keeps
// alive until Leave, or until it is lost (Member.Lost). A name held by a
// live record is refused with model.ErrConflict naming the holder, unless
// that record carries n's non-empty Instance (see Node.Instance): then it
// is taken over at once, and its old lease revoked. A record whose daemon
// died is gone when its lease expires; then the name is free for anyone.
//
// ctx bounds Join's requests, not the membership: the keep-alive runs on
// until Leave.
func (c *Cluster) Join(ctx context.Context, n Node, ttl time.Duration) (*Member, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second {
		return nil, model.Invalidf("node %s: lease TTL %v is shorter than etcd's granularity of one second: give at least 1s (default %v)", n.Name, ttl, DefaultTTL)
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	if n.Started.IsZero() {
		n.Started = time.Now()
	}
	n.Started = n.Started.Round(0) // no monotonic reading: it is stored
	n.LastSeen = time.Time{}
	val, err := json.Marshal(record{Name: n.Name, Underlay: n.Underlay, VTEPMAC: n.VTEPMAC, Started: n.Started, Instance: n.Instance})
	if err != nil {
		return nil, fmt.Errorf("cluster: encode node %s: %w", n.Name, err)
	}

	rctx, cancel := bounded(ctx)
	defer cancel()
	grant, err := c.cli.Grant(rctx, secs)
	if err != nil {
		return nil, fmt.Errorf("cluster: join as %s: grant a lease of %ds: %w", n.Name, secs, err)
	}
	lease := grant.ID
	joined := false
	defer func() {
		if !joined {
			c.revoke(lease)
		}
	}()

	key := c.nodeKey(n.Name)
	put := clientv3.OpPut(key, string(val), clientv3.WithLease(lease))
	var rev int64
	for attempt := 0; rev == 0; attempt++ {
		if attempt == maxAttempts {
			return nil, fmt.Errorf("cluster: join as %s: the record %s changed %d times while Join tried to write it: another daemon is joining under the same name", n.Name, key, maxAttempts)
		}
		resp, err := c.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(put).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("cluster: join as %s: %w", n.Name, err)
		}
		if resp.Succeeded {
			rev = resp.Header.Revision
			break
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // expired between the compare and the get
		}
		held := kvs[0]
		old, derr := decodeNode(held)
		if derr != nil || n.Instance == "" || old.Instance != n.Instance {
			return nil, c.heldError(rctx, n.Name, held, old, derr)
		}
		// Our own record from a run that died less than a TTL ago: take
		// it over, unless it changed since we read it.
		resp, err = c.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", held.ModRevision)).
			Then(put).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("cluster: join as %s: take over the record of a previous run: %w", n.Name, err)
		}
		if resp.Succeeded {
			rev = resp.Header.Revision
			if held.Lease != 0 && clientv3.LeaseID(held.Lease) != lease {
				c.revoke(clientv3.LeaseID(held.Lease)) // keyless now; free it early
			}
		}
	}

	// The keep-alive outlives ctx: it is the membership's, not Join's.
	kctx, kcancel := context.WithCancel(context.Background())
	ka, err := c.cli.KeepAlive(kctx, lease)
	if err != nil {
		kcancel()
		return nil, fmt.Errorf("cluster: join as %s: keep lease %x alive: %w", n.Name, lease, err)
	}
	m := &Member{Cluster: c, node: n, lease: lease, ttl: time.Duration(secs) * time.Second, cancel: kcancel, lost: make(chan struct{})}
	go m.run(kctx, ka, rev)
	joined = true
	return m, nil
}

// heldError says who holds name, and when its record goes if that daemon
// is dead.
func (c *Cluster) heldError(ctx context.Context, name string, held *mvccpb.KeyValue, old Node, derr error) error {
	if derr != nil {
		return model.Conflictf("node name %s is held by a record pontoon cannot read (%v): choose another name, or delete the record", name, derr)
	}
	expiry := ""
	if held.Lease != 0 {
		if ttl, err := c.cli.TimeToLive(ctx, clientv3.LeaseID(held.Lease)); err == nil && ttl.TTL > 0 {
			expiry = fmt.Sprintf("; if that daemon is dead, its record expires within %ds", ttl.TTL)
		}
	}
	return model.Conflictf("node name %s is held by a live daemon (underlay %s, started %s): choose another name, or stop that daemon%s; a restart of the same daemon takes its record over at once when it keeps its instance token",
		name, old.Underlay, old.Started.Format(time.RFC3339), expiry)
}

// revoke revokes lease, best effort (a lease that cannot be revoked
// expires by itself).
func (c *Cluster) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_, _ = c.cli.Revoke(ctx, lease)
}

// Member is a node's membership: its record, and the lease that keeps it.
// It embeds the Cluster, so a daemon reads and claims through it.
type Member struct {
	*Cluster
	node   Node
	lease  clientv3.LeaseID
	ttl    time.Duration
	cancel context.CancelFunc
	lost   chan struct{}

	mu  sync.Mutex
	err error // why the membership ended
}

// Node returns the node as registered.
func (m *Member) Node() Node { return m.node }

// Lease returns the lease the node's record is bound to.
func (m *Member) Lease() clientv3.LeaseID { return m.lease }

// TTL returns the lease's TTL as granted.
func (m *Member) TTL() time.Duration { return m.ttl }

// Lost is closed when the membership ends: after Leave, when the lease
// could not be kept alive (etcd unreachable for a TTL, the lease revoked
// by someone else), or when the record was deleted or taken over by
// another daemon with the same Instance. A daemon that did not Leave
// should log Err and Join again.
func (m *Member) Lost() <-chan struct{} { return m.lost }

// Err says why the membership ended; nil while it lasts.
func (m *Member) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *Member) end(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	m.mu.Unlock()
}

// Leave ends the membership: the keep-alive stops and the lease is
// revoked, which deletes the record at once (other daemons see the node
// removed). The node's slices stay (see the package comment). Leave twice
// is fine.
func (m *Member) Leave(ctx context.Context) error {
	m.end(errors.New("cluster: the node left"))
	m.cancel()
	<-m.lost
	rctx, cancel := bounded(ctx)
	defer cancel()
	if _, err := m.cli.Revoke(rctx, m.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("cluster: leave as %s: revoke lease %x (the record expires within %v anyway): %w", m.node.Name, m.lease, m.ttl, err)
	}
	return nil
}

// run drains the keep-alive channel (clientv3 drops responses with a
// warning when nobody reads them) and watches the node's own record, until
// either says the membership is over.
func (m *Member) run(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse, rev int64) {
	defer close(m.lost)
	defer m.cancel()
	key := m.nodeKey(m.node.Name)
	// Every watch runs on ctx: one that ended (an error closes its
	// channel) holds nothing, and the last ends with ctx.
	wch := m.cli.Watch(ctx, key, clientv3.WithRev(rev+1))
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				m.end(fmt.Errorf("cluster: node %s: lease %x could not be kept alive (expired or revoked): its record is gone; join again", m.node.Name, m.lease))
				return
			}
		case resp, ok := <-wch:
			if ctx.Err() != nil {
				return
			}
			if !ok || resp.Err() != nil {
				// The watch ended (compaction, a closed client): look at
				// the record once, and watch again from there.
				gctx, gcancel := context.WithTimeout(ctx, requestTimeout)
				g, err := m.cli.Get(gctx, key)
				gcancel()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					m.end(fmt.Errorf("cluster: node %s: cannot check its own record: %w", m.node.Name, err))
					return
				}
				if len(g.Kvs) == 0 || clientv3.LeaseID(g.Kvs[0].Lease) != m.lease {
					m.end(fmt.Errorf("cluster: node %s: its record was deleted or taken over: join again", m.node.Name))
					return
				}
				wch = m.cli.Watch(ctx, key, clientv3.WithRev(g.Header.Revision+1))
				continue
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete || clientv3.LeaseID(ev.Kv.Lease) != m.lease {
					m.end(fmt.Errorf("cluster: node %s: its record was deleted or taken over (at revision %d): join again", m.node.Name, ev.Kv.ModRevision))
					return
				}
			}
		}
	}
}

// Nodes lists the live nodes, sorted by name, and the revision of the list:
// WatchNodes from that revision misses no change and repeats none.
func (c *Cluster) Nodes(ctx context.Context) ([]Node, int64, error) {
	rctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.nodesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: list nodes: %w", err)
	}
	nodes := make([]Node, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		n, err := decodeNode(kv)
		if err != nil {
			return nil, 0, err
		}
		// LastSeen: the lease was last renewed (GrantedTTL - TTL) seconds
		// ago. One request per node: fine for the tens of nodes a pontoon
		// cluster has; a watch consumer does not need it.
		if kv.Lease != 0 {
			if t, err := c.cli.TimeToLive(rctx, clientv3.LeaseID(kv.Lease)); err == nil && t.TTL > 0 {
				n.LastSeen = time.Now().Add(-time.Duration(t.GrantedTTL-t.TTL) * time.Second).Round(time.Second)
			}
		}
		nodes = append(nodes, n)
	}
	return nodes, resp.Header.Revision, nil
}

// NodeEventType says what happened to a node.
type NodeEventType int

const (
	NodeAdded   NodeEventType = iota + 1 // joined
	NodeUpdated                          // joined again over its own record, with other data
	NodeRemoved                          // left, or its lease expired
)

func (t NodeEventType) String() string {
	switch t {
	case NodeAdded:
		return "added"
	case NodeUpdated:
		return "updated"
	case NodeRemoved:
		return "removed"
	}
	return fmt.Sprintf("NodeEventType(%d)", int(t))
}

// NodeEvent is a change of a node record. When Err is set the watch has
// ended (the event is the channel's last): on store.ErrCompacted, list
// again with Nodes and watch from its revision.
type NodeEvent struct {
	Type     NodeEventType
	Node     Node // for NodeRemoved, the record as it was (Name only when etcd no longer has it)
	Revision int64
	Err      error
}

// watchBuffer is the number of events a slow reader may lag behind.
const watchBuffer = 64

// WatchNodes streams the changes of node records committed after fromRev
// (0: after now), in revision order, until ctx ends (then the channel
// closes). A fromRev that etcd has compacted gives an error wrapping
// store.ErrCompacted.
func (c *Cluster) WatchNodes(ctx context.Context, fromRev int64) (<-chan NodeEvent, error) {
	if fromRev < 0 {
		return nil, model.Invalidf("cluster: watch nodes from revision %d: give a revision from Nodes, or 0", fromRev)
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
	if fromRev > 0 {
		// Ask etcd first, so that a compacted revision is an error of
		// WatchNodes and not of the first event.
		rctx, cancel := bounded(ctx)
		_, err := c.cli.Get(rctx, c.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(fromRev+1))
		cancel()
		if err != nil && !errors.Is(err, rpctypes.ErrFutureRev) {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return nil, fmt.Errorf("%w: etcd has compacted revision %d: list the nodes again and watch from the list's revision", store.ErrCompacted, fromRev+1)
			}
			return nil, fmt.Errorf("cluster: watch nodes from revision %d: %w", fromRev+1, err)
		}
		opts = append(opts, clientv3.WithRev(fromRev+1))
	}
	// WithRequireLeader: a member cut off from its leader ends the watch
	// rather than go silent while nodes come and go.
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := c.cli.Watch(wctx, c.nodesPrefix(), opts...)
	out := make(chan NodeEvent, watchBuffer)
	go func() {
		defer close(out)
		defer wcancel()
		send := func(ev NodeEvent) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					err = fmt.Errorf("%w: etcd compacted revision %d while it was watched: list the nodes again and watch from the list's revision", store.ErrCompacted, resp.CompactRevision)
				} else {
					err = fmt.Errorf("cluster: watch of nodes: %w", err)
				}
				send(NodeEvent{Err: err})
				return
			}
			for _, e := range resp.Events {
				ev := NodeEvent{Revision: e.Kv.ModRevision}
				name := strings.TrimPrefix(string(e.Kv.Key), c.nodesPrefix())
				switch {
				case e.Type == clientv3.EventTypeDelete:
					ev.Type = NodeRemoved
					ev.Node = Node{Name: name}
					if e.PrevKv != nil {
						if n, err := decodeNode(e.PrevKv); err == nil {
							ev.Node = n
						}
					}
				default:
					ev.Type = NodeUpdated
					if e.IsCreate() {
						ev.Type = NodeAdded
					}
					n, err := decodeNode(e.Kv)
					if err != nil {
						send(NodeEvent{Err: err, Revision: e.Kv.ModRevision})
						return
					}
					n.LastSeen = time.Now()
					ev.Node = n
				}
				if !send(ev) {
					return
				}
			}
		}
		if ctx.Err() == nil {
			send(NodeEvent{Err: errors.New("cluster: watch of nodes ended (etcd client closed, or its member lost its leader): list the nodes again and watch from the list's revision")})
		}
	}()
	return out, nil
}
