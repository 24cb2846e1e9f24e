package cluster

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
	"pontoon/internal/store"
	"pontoon/internal/store/etcdtest"
)

const prefix = "/pontoon-cluster/"

// waitTimeout bounds every wait for an event: generous, a test that needs
// it has failed.
const waitTimeout = 20 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func node(name, underlay string) Node {
	return Node{Name: name, Underlay: netip.MustParseAddr(underlay), VTEPMAC: "02:00:00:00:00:0" + name[len(name)-1:]}
}

// join joins n on its own client (its own daemon), leaving when t ends.
func join(t *testing.T, cli *clientv3.Client, n Node, ttl time.Duration) *Member {
	t.Helper()
	m, err := Join(ctxT(t), cli, prefix, n, ttl)
	if err != nil {
		t.Fatalf("join %s: %v", n.Name, err)
	}
	t.Cleanup(func() { m.Leave(context.Background()) })
	return m
}

func names(nodes []Node) string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.Name)
	}
	return strings.Join(s, ",")
}

// next returns the next event of ch, failing t when none comes in time.
func next(t *testing.T, ch <-chan NodeEvent) NodeEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		if ev.Err != nil {
			t.Fatalf("watch: %v", ev.Err)
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatalf("no event within %v", waitTimeout)
	}
	return NodeEvent{}
}

func TestJoinNodesLeave(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	a := join(t, cli, node("a1", "198.51.100.1"), 5*time.Second)
	cliB := etcdtest.NewClient(t, cli)
	b := join(t, cliB, node("b2", "2001:db8::2"), 5*time.Second)

	nodes, rev, err := a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names(nodes) != "a1,b2" || rev == 0 {
		t.Fatalf("Nodes = %v at %d, want a1,b2", nodes, rev)
	}
	got := nodes[1]
	if got.Underlay != netip.MustParseAddr("2001:db8::2") || got.VTEPMAC != "02:00:00:00:00:02" || !got.Started.Equal(b.Node().Started) {
		t.Errorf("b2 reads back as %+v, registered %+v", got, b.Node())
	}
	if got.LastSeen.IsZero() || time.Since(got.LastSeen) > 5*time.Second {
		t.Errorf("b2 LastSeen = %v, want within the TTL", got.LastSeen)
	}

	// A third daemon asking for a taken name is refused, and says who
	// holds it.
	cliC := etcdtest.NewClient(t, cli)
	_, err = Join(ctx, cliC, prefix, node("a1", "198.51.100.3"), 5*time.Second)
	if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "198.51.100.1") {
		t.Fatalf("join a taken name: %v, want ErrConflict naming 198.51.100.1", err)
	}
	// The refused Join left no lease behind, and a's record is a's.
	if leases, err := cliC.Leases(ctx); err != nil || len(leases.Leases) != 2 {
		t.Errorf("leases after a refused join: %v, %v; want a's and b's", leases, err)
	}

	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	select {
	case <-b.Lost():
	default:
		t.Error("Lost not closed after Leave")
	}
	if nodes, _, err := a.Nodes(ctx); err != nil || names(nodes) != "a1" {
		t.Fatalf("after b left: %v, %v", nodes, err)
	}
	// a's membership is unaffected.
	select {
	case <-a.Lost():
		t.Fatalf("a lost: %v", a.Err())
	default:
	}
}

func TestJoinChecksInput(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	for _, c := range []struct {
		n    Node
		ttl  time.Duration
		want string
	}{
		{Node{Name: "", Underlay: netip.MustParseAddr("198.51.100.1")}, 0, "empty"},
		{Node{Name: "a/b", Underlay: netip.MustParseAddr("198.51.100.1")}, 0, "not allowed"},
		{Node{Name: "a"}, 0, "no underlay"},
		{Node{Name: "a", Underlay: netip.MustParseAddr("fe80::1%eth0")}, 0, "zone"},
		{Node{Name: "a", Underlay: netip.MustParseAddr("0.0.0.0")}, 0, "not a unicast"},
		{Node{Name: "a", Underlay: netip.MustParseAddr("198.51.100.1")}, 0, "no VTEP MAC"},
		{Node{Name: "a", Underlay: netip.MustParseAddr("198.51.100.1"), VTEPMAC: "zz"}, 0, "not an Ethernet"},
		{Node{Name: "a", Underlay: netip.MustParseAddr("198.51.100.1"), VTEPMAC: "02:00:00:00:00"}, 0, "not an Ethernet"},
		{Node{Name: "a", Underlay: netip.MustParseAddr("198.51.100.1"), VTEPMAC: "01:00:5e:00:00:01"}, 0, "VTEP MAC 01:00:5e:00:00:01 is not a unicast"},
		{Node{Name: "a", Underlay: netip.MustParseAddr("198.51.100.1"), VTEPMAC: "00:00:00:00:00:00"}, 0, "is not a unicast"},
		{node("a1", "198.51.100.1"), time.Millisecond, "at least 1s"},
	} {
		_, err := Join(ctx, cli, prefix, c.n, c.ttl)
		if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Join(%+v, %v) = %v, want ErrInvalid saying %q", c.n, c.ttl, err, c.want)
		}
	}
	if _, err := Join(ctx, cli, "/no-slash", node("a1", "198.51.100.1"), 0); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("prefix without '/': %v", err)
	}
	if r, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || r.Count != 0 {
		t.Errorf("refused joins wrote %v keys (%v)", r.Count, err)
	}
}

// A daemon that dies without Leave: its record goes when the lease
// expires, and a watcher sees it removed.
func TestDeadNodeExpires(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	a := join(t, cli, node("a1", "198.51.100.1"), 5*time.Second)
	_, rev, err := a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := a.WatchNodes(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	cliB := etcdtest.NewClient(t, cli)
	b := join(t, cliB, node("b2", "198.51.100.2"), 2*time.Second)
	if ev := next(t, ch); ev.Type != NodeAdded || ev.Node.Name != "b2" || ev.Node.Underlay != b.Node().Underlay || ev.Node.VTEPMAC != "02:00:00:00:00:02" {
		t.Fatalf("event %+v, want b2 added", ev)
	}
	// The daemon dies: its connection goes, nobody keeps its lease alive.
	died := time.Now()
	cliB.Close()
	ev := next(t, ch)
	if ev.Type != NodeRemoved || ev.Node.Name != "b2" || ev.Node.Underlay != b.Node().Underlay {
		t.Fatalf("event %+v, want b2 removed with its last record", ev)
	}
	t.Logf("b2 removed %v after its daemon died (TTL %v)", time.Since(died).Round(100*time.Millisecond), b.TTL())
	if nodes, _, err := a.Nodes(ctx); err != nil || names(nodes) != "a1" {
		t.Fatalf("after b2 died: %v, %v", nodes, err)
	}
	// Its name is free again.
	join(t, etcdtest.NewClient(t, cli), node("b2", "198.51.100.22"), 2*time.Second)
}

// A lease revoked under a running daemon (an operator, a long etcd outage):
// the daemon learns it from Lost.
func TestLostWhenLeaseRevoked(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	a := join(t, etcdtest.NewClient(t, cli), node("a1", "198.51.100.1"), 5*time.Second)
	if _, err := cli.Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Lost():
		if a.Err() == nil {
			t.Error("Lost closed, Err nil")
		}
		t.Logf("lost: %v", a.Err())
	case <-time.After(waitTimeout):
		t.Fatal("Lost not closed after the lease was revoked")
	}
}

// A daemon restarting within the TTL (its old record still live) takes its
// own record over when it keeps its instance token; a stranger with the
// same name and another token is still refused.
func TestRestartTakesOverOwnRecord(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	n := node("a1", "198.51.100.1")
	n.Instance = "boot-1"
	cliOld := etcdtest.NewClient(t, cli)
	old := join(t, cliOld, n, 30*time.Second)
	cliOld.Close() // crash: the lease lives on for 30s

	c, err := New(cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	_, rev2, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.WatchNodes(ctx, rev2)
	if err != nil {
		t.Fatal(err)
	}

	stranger := n
	stranger.Instance = "other"
	if _, err := Join(ctx, etcdtest.NewClient(t, cli), prefix, stranger, 30*time.Second); !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "expires within") {
		t.Fatalf("stranger: %v, want ErrConflict with the expiry", err)
	}

	n.Underlay = netip.MustParseAddr("198.51.100.11") // a new DHCP lease
	again := join(t, etcdtest.NewClient(t, cli), n, 30*time.Second)
	ev := next(t, ch)
	if ev.Type != NodeUpdated || ev.Node.Underlay != n.Underlay {
		t.Fatalf("event %+v, want a1 updated to %s", ev, n.Underlay)
	}
	// The old lease was revoked: it no longer counts.
	if ttl, err := cli.TimeToLive(ctx, old.Lease()); err != nil || ttl.TTL > 0 {
		t.Errorf("old lease after takeover: %+v, %v", ttl, err)
	}
	nodes, _, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Underlay != n.Underlay {
		t.Fatalf("nodes after takeover: %v, %v", nodes, err)
	}
	select {
	case <-again.Lost():
		t.Fatalf("new member lost: %v", again.Err())
	default:
	}
}

// List, then a change, then watch from the list's revision: the change is
// seen, and nothing before it.
func TestListThenWatchNoGap(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	a := join(t, cli, node("a1", "198.51.100.1"), 5*time.Second)
	nodes, rev, err := a.Nodes(ctx)
	if err != nil || names(nodes) != "a1" {
		t.Fatal(nodes, err)
	}
	b := join(t, etcdtest.NewClient(t, cli), node("b2", "198.51.100.2"), 5*time.Second)
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := a.WatchNodes(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != NodeAdded || ev.Node.Name != "b2" || ev.Revision <= rev {
		t.Fatalf("first event %+v, want b2 added after %d", ev, rev)
	}
	if ev := next(t, ch); ev.Type != NodeRemoved || ev.Node.Name != "b2" {
		t.Fatalf("second event %+v, want b2 removed", ev)
	}
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestWatchNodesCompacted(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := ctxT(t)
	a := join(t, cli, node("a1", "198.51.100.1"), 5*time.Second)
	_, rev, err := a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := join(t, etcdtest.NewClient(t, cli), node("b2", "198.51.100.2"), 5*time.Second)
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	// Compact(r) keeps r: b's join (rev+1) is gone, its leave is kept.
	if _, err := cli.Compact(ctx, r.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WatchNodes(ctx, rev); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %v", err)
	}
}

// Two live daemons with one instance token (a cloned machine): the second
// takes the record over, and the first learns it from Lost rather than
// believing itself registered.
func TestLostWhenTakenOver(t *testing.T) {
	cli := etcdtest.Start(t)
	n := node("a1", "198.51.100.1")
	n.Instance = "cloned"
	first := join(t, etcdtest.NewClient(t, cli), n, 5*time.Second)
	second := join(t, etcdtest.NewClient(t, cli), n, 5*time.Second)
	select {
	case <-first.Lost():
		if err := first.Err(); err == nil || !strings.Contains(err.Error(), "taken over") {
			t.Errorf("first member's Err = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("first member not told its record was taken over")
	}
	select {
	case <-second.Lost():
		t.Fatalf("second member lost: %v", second.Err())
	default:
	}
	// The first one's Leave revokes its own lease only: the record stays.
	if err := first.Leave(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if nodes, _, err := second.Nodes(ctxT(t)); err != nil || len(nodes) != 1 {
		t.Fatalf("after the first left: %v, %v", nodes, err)
	}
}
