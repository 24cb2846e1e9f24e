package engine

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/cluster"
	"pontoon/internal/link"
	"pontoon/internal/model"
)

// fakeEtcd is what the nodes of a fake cluster share: what
// internal/cluster keeps in etcd, in memory, with the same semantics for
// what the engine relies on (create-if-absent reservations naming their
// holder, the first free slice).
type fakeEtcd struct {
	mu     sync.Mutex
	defs   map[string]cluster.NetworkDef
	slices map[string]map[string][]netip.Prefix // network → node → slices, IPv4 first
	static map[string]map[netip.Addr]string     // network → address → owner
	nodes  map[string]cluster.Node
	// followers get the topology after each change that publishes it
	// (setRecordMAC): FollowTopology's watch.
	followers []chan cluster.Topology
	// staticWatchers get every change of static (WatchStatics);
	// staticReads counts StaticReservations calls.
	staticWatchers []chan cluster.StaticEvent
	staticReads    int
}

// publishStaticLocked sends a change of static to the watchers.
func (f *fakeEtcd) publishStaticLocked(network string, ip netip.Addr, owner string, removed bool) {
	for _, ch := range f.staticWatchers {
		ch <- cluster.StaticEvent{Network: network, IP: ip, Owner: owner, Removed: removed}
	}
}

// setStatic reserves ip for owner as another node would, and tells the
// watchers.
func (f *fakeEtcd) setStatic(network string, ip netip.Addr, owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.static[network] == nil {
		f.static[network] = map[netip.Addr]string{}
	}
	f.static[network][ip] = owner
	f.publishStaticLocked(network, ip, owner, false)
}

func newFakeEtcd() *fakeEtcd {
	return &fakeEtcd{defs: map[string]cluster.NetworkDef{}, slices: map[string]map[string][]netip.Prefix{},
		static: map[string]map[netip.Addr]string{}, nodes: map[string]cluster.Node{}}
}

// fakeCluster is one node's membership of a fakeEtcd.
type fakeCluster struct {
	*fakeEtcd
	node     string
	underlay netip.Addr
}

// join records node with its VTEP MAC 02:00:00:00:00:NN (NN: the last
// byte of its underlay address), on purpose not link.VTEPMAC of that
// address: a peer programmed with a MAC derived again, not the record's,
// fails the tests.
func (f *fakeEtcd) join(node, underlay string) *fakeCluster {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := netip.MustParseAddr(underlay)
	mac := net.HardwareAddr{2, 0, 0, 0, 0, u.As4()[3]}
	f.nodes[node] = cluster.Node{Name: node, Underlay: u, VTEPMAC: mac.String(), Started: time.Unix(1700000000, 0).UTC()}
	return &fakeCluster{fakeEtcd: f, node: node, underlay: u}
}

// recordMAC is node's VTEP MAC as its record has it.
func (f *fakeEtcd) recordMAC(node string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[node].VTEPMAC
}

// setRecordMAC changes node's record's VTEP MAC (as a join again would)
// and sends the followers the new topology.
func (f *fakeEtcd) setRecordMAC(node, mac string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[node]
	n.VTEPMAC = mac
	f.nodes[node] = n
	for _, ch := range f.followers {
		ch <- f.topologyLocked()
	}
}

func (f *fakeEtcd) leave(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, node)
}

func (f *fakeCluster) NodeName() string               { return f.node }
func (f *fakeCluster) Underlay() (string, netip.Addr) { return "under0", f.underlay }
func (f *fakeCluster) VTEPMAC() net.HardwareAddr {
	mac, _ := net.ParseMAC(f.recordMAC(f.node))
	return mac
}
func (f *fakeCluster) RemoveNetworkDef(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.defs, name)
	return nil
}

func (f *fakeCluster) DefineNetwork(_ context.Context, d cluster.NetworkDef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.defs[d.Name]; ok && !slices.Equal(o.Subnets, d.Subnets) {
		return model.Conflictf("cluster network %s exists", d.Name)
	}
	f.defs[d.Name] = d
	return nil
}

func (f *fakeCluster) Networks(context.Context) ([]cluster.NetworkDef, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.NetworkDef
	for _, k := range sortedKeys(f.defs) {
		out = append(out, f.defs[k])
	}
	return out, 1, nil
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range maps.Keys(m) {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// Watches never send: the tests drive the nodes themselves.
func (f *fakeCluster) WatchNetworks(ctx context.Context, _ int64) (<-chan cluster.NetworkEvent, error) {
	ch := make(chan cluster.NetworkEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

func (f *fakeCluster) WatchNames(ctx context.Context, _ int64) (<-chan cluster.NameEvent, error) {
	ch := make(chan cluster.NameEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

func (f *fakeCluster) ClaimSlice(_ context.Context, network string, subnet netip.Prefix, size int, node string) (netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.slices[network]
	if m == nil {
		m = map[string][]netip.Prefix{}
		f.slices[network] = m
	}
	v6 := subnet.Addr().Is6()
	for _, p := range m[node] {
		if p.Addr().Is6() == v6 {
			return p, nil
		}
	}
	// The first free of 256 slices (/24s of a /16, /64s of a /48: the
	// byte before the slice's bits counts), enough for these tests.
	for i := range 256 {
		a := subnet.Addr().As16()
		a[size/8-1+map[bool]int{false: 12, true: 0}[v6]] = byte(i)
		p := netip.PrefixFrom(netip.AddrFrom16(a).Unmap(), size)
		free := true
		for _, ps := range m {
			free = free && !slices.Contains(ps, p)
		}
		if free {
			m[node] = append(m[node], p)
			slices.SortFunc(m[node], func(a, b netip.Prefix) int { return a.Addr().BitLen() - b.Addr().BitLen() })
			return p, nil
		}
	}
	return netip.Prefix{}, model.Exhaustedf("no slice left")
}

func (f *fakeCluster) Slices(_ context.Context, network string) (map[string][]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cloneSlices(f.slices[network]), nil
}

func cloneSlices(m map[string][]netip.Prefix) map[string][]netip.Prefix {
	out := make(map[string][]netip.Prefix, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

func (f *fakeCluster) Nodes(context.Context) ([]cluster.Node, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.Node
	for _, k := range sortedKeys(f.nodes) {
		out = append(out, f.nodes[k])
	}
	return out, 1, nil
}

func (f *fakeCluster) ReadTopology(context.Context) (cluster.Topology, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.topologyLocked(), nil
}

func (f *fakeEtcd) topologyLocked() cluster.Topology {
	t := cluster.Topology{Revision: 1, Nodes: maps.Clone(f.nodes), Slices: map[string]map[string][]netip.Prefix{}}
	for n, s := range f.slices {
		t.Slices[n] = cloneSlices(s)
	}
	return t
}

// FollowTopology reads once, then applies what setRecordMAC publishes,
// in order, until ctx ends.
func (f *fakeCluster) FollowTopology(ctx context.Context, changed func(cluster.Topology), _ func(error)) {
	ch := make(chan cluster.Topology, 16)
	f.mu.Lock()
	f.followers = append(f.followers, ch)
	t := f.topologyLocked()
	f.mu.Unlock()
	changed(t)
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-ch:
			changed(t)
		}
	}
}

func (f *fakeCluster) Health() string { return "" }

func (f *fakeCluster) ReclaimSlice(context.Context, string, netip.Prefix, string) error { return nil }

func (f *fakeCluster) Forget(context.Context, string) (model.ForgottenNode, error) {
	return model.ForgottenNode{}, nil
}

func (f *fakeCluster) PutName(context.Context, cluster.Name) error          { return nil }
func (f *fakeCluster) DeleteName(context.Context, string, string) error     { return nil }
func (f *fakeCluster) Names(context.Context) ([]cluster.Name, int64, error) { return nil, 1, nil }

func (f *fakeCluster) ReserveStatic(_ context.Context, network string, ip netip.Addr, owner string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.static[network]
	if m == nil {
		m = map[netip.Addr]string{}
		f.static[network] = m
	}
	if h, ok := m[ip]; ok && h != owner {
		return model.Conflictf("address %s on network %s is reserved by %s across the cluster", ip, network, h)
	}
	if _, ok := m[ip]; !ok {
		m[ip] = owner
		f.publishStaticLocked(network, ip, owner, false)
	}
	return nil
}

func (f *fakeCluster) ReleaseStatic(_ context.Context, network string, ip netip.Addr, owner string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h, ok := f.static[network][ip]; ok {
		if h != owner {
			return model.Conflictf("address %s on network %s is reserved by %s, not %s", ip, network, h, owner)
		}
		delete(f.static[network], ip)
		f.publishStaticLocked(network, ip, "", true)
	}
	return nil
}

func (f *fakeCluster) AllStaticReservations(context.Context) (map[string]map[netip.Addr]string, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[netip.Addr]string{}
	for n, m := range f.static {
		out[n] = maps.Clone(m)
	}
	return out, 1, nil
}

func (f *fakeCluster) WatchStatics(ctx context.Context, _ int64) (<-chan cluster.StaticEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan cluster.StaticEvent, 64)
	f.staticWatchers = append(f.staticWatchers, ch)
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.staticWatchers = slices.DeleteFunc(f.staticWatchers, func(c chan cluster.StaticEvent) bool { return c == ch })
		close(ch)
	}()
	return ch, nil
}

func (f *fakeCluster) StaticReservations(_ context.Context, network string) (map[netip.Addr]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.staticReads++
	out := maps.Clone(f.static[network])
	if out == nil {
		out = map[netip.Addr]string{}
	}
	return out, nil
}

func (f *fakeEtcd) staticOf(network string) map[netip.Addr]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.static[network])
}

// twoNodes returns engines h1 and h2 of one fake cluster, with overlay
// network web (10.200.0.0/16) made on h1 and realized on h2: h1 holds
// slice 10.200.0.0/24, h2 10.200.1.0/24.
func twoNodes(t *testing.T) (etcd *fakeEtcd, h1, h2 *testEnv) {
	t.Helper()
	etcd, h1, h2 = clusterPair(t, nil, model.NetworkSpec{Name: "web", Driver: model.DriverOverlay,
		Subnets: []model.Subnet{{Prefix: tPrefix("10.200.0.0/16")}}})
	if _, err := h2.e.Network("web"); err != nil {
		t.Fatalf("h2 did not make its part of web: %v", err)
	}
	return etcd, h1, h2
}

// clusterPair returns engines h1 (underlay 192.0.2.1) and h2 (192.0.2.2,
// its Config changed by h2opt when not nil) of one fake cluster, with
// the networks of specs made on h1 and then realized on h2 by its
// StartCluster: h1 holds the first slice of each, h2 the second.
func clusterPair(t *testing.T, h2opt func(*Config), specs ...model.NetworkSpec) (etcd *fakeEtcd, h1, h2 *testEnv) {
	t.Helper()
	etcd = newFakeEtcd()
	c1, c2 := etcd.join("h1", "192.0.2.1"), etcd.join("h2", "192.0.2.2")
	h1 = newEnv(t, func(c *Config) { c.Cluster = c1 })
	h2 = newEnv(t, func(c *Config) {
		c.Cluster = c2
		if h2opt != nil {
			h2opt(c)
		}
	})
	for _, h := range []*testEnv{h1, h2} {
		h.link.AddHostLink(link.LinkInfo{Name: "under0", Type: "veth", MTU: 1500, Up: true})
	}
	ctx := context.Background()
	for _, spec := range specs {
		if _, err := h1.e.CreateNetwork(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := h2.e.StartCluster(sctx); err != nil {
		t.Fatal(err)
	}
	return etcd, h1, h2
}

func createOn(env *testEnv, name string, ips ...string) (*model.SandboxInfo, error) {
	return env.e.CreateSandbox(context.Background(), model.SandboxSpec{Name: name,
		Networks: []model.AttachSpec{{Network: "web", IPs: tIPs(ips...)}}})
}

func TestOverlayStaticReservedAcrossNodes(t *testing.T) {
	etcd, h1, h2 := twoNodes(t)
	ctx := context.Background()
	want := func(m map[netip.Addr]string) {
		t.Helper()
		got := etcd.staticOf("web")
		if len(got) != len(m) || !maps.Equal(got, m) {
			t.Errorf("static reservations in the cluster: %v, want %v", got, m)
		}
	}

	if _, err := createOn(h1, "a", "10.200.0.9"); err != nil {
		t.Fatal(err)
	}
	want(map[netip.Addr]string{tAddr("10.200.0.9"): "h1/a"})

	// The same address from the other node: a conflict naming the
	// holder, and nothing changed on h2.
	before := h2.snapshot(t)
	_, err := createOn(h2, "b", "10.200.0.9")
	if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "h1/a") {
		t.Fatalf("h2 asks for h1/a's address: %v, want a conflict naming h1/a", err)
	}
	if after := h2.snapshot(t); after != before {
		t.Errorf("a refused create changed h2:\n%s\nwas\n%s", after, before)
	}
	// And from h1 by another sandbox, through connect.
	if _, err := h1.e.CreateSandbox(ctx, model.SandboxSpec{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.e.Connect(ctx, "x", model.AttachSpec{Network: "web", IPs: tIPs("10.200.0.9")}); !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "h1/a") {
		t.Fatalf("connect x with a's address: %v, want a conflict naming h1/a", err)
	}

	// Outside this host's slice: refused, naming the slice and its node.
	_, err = createOn(h1, "c", "10.200.1.7")
	if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "10.200.0.0/24") || !strings.Contains(err.Error(), "node h2's slice 10.200.1.0/24") {
		t.Errorf("h1 asks for an address of h2's slice: %v", err)
	}
	if _, err := h1.e.Connect(ctx, "x", model.AttachSpec{Network: "web", IPs: tIPs("10.200.1.7")}); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("connect with an address of h2's slice: %v", err)
	}
	if _, err = createOn(h1, "c", "10.201.0.7"); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "outside overlay network web") {
		t.Errorf("an address outside the network: %v", err)
	}
	want(map[netip.Addr]string{tAddr("10.200.0.9"): "h1/a"})

	// h2's own slice: fine.
	if _, err := createOn(h2, "b", "10.200.1.5"); err != nil {
		t.Fatal(err)
	}
	// Connect with --ip reserves too; disconnect releases.
	if _, err := h1.e.Connect(ctx, "x", model.AttachSpec{Network: "web", IPs: tIPs("10.200.0.10")}); err != nil {
		t.Fatal(err)
	}
	want(map[netip.Addr]string{tAddr("10.200.0.9"): "h1/a", tAddr("10.200.1.5"): "h2/b", tAddr("10.200.0.10"): "h1/x"})
	if err := h1.e.Disconnect(ctx, "web", "x"); err != nil {
		t.Fatal(err)
	}
	h1.e.Flush()
	want(map[netip.Addr]string{tAddr("10.200.0.9"): "h1/a", tAddr("10.200.1.5"): "h2/b"})

	// Removal releases it; then it is free again on h1.
	if err := h1.e.RemoveSandbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	h1.e.Flush()
	want(map[netip.Addr]string{tAddr("10.200.1.5"): "h2/b"})
	if _, err := createOn(h1, "a2", "10.200.0.9"); err != nil {
		t.Fatalf("the address after its holder's removal: %v", err)
	}
	want(map[netip.Addr]string{tAddr("10.200.0.9"): "h1/a2", tAddr("10.200.1.5"): "h2/b"})
}

func TestOverlayStaticRollback(t *testing.T) {
	etcd, h1, _ := twoNodes(t)
	h1.e.testHook = func(step string) error {
		if step == "attach:veth" {
			return errors.New("injected")
		}
		return nil
	}
	if _, err := createOn(h1, "a", "10.200.0.9"); err == nil {
		t.Fatal("create with a failing attach succeeded")
	}
	h1.e.Flush()
	if got := etcd.staticOf("web"); len(got) != 0 {
		t.Errorf("a failed create left reservations in the cluster: %v", got)
	}
	h1.e.testHook = nil
	if _, err := createOn(h1, "a", "10.200.0.9"); err != nil {
		t.Fatalf("the address after a rolled-back create: %v", err)
	}
}

// The dynamic allocator never hands out an address reserved in the
// cluster (here by a node that held the slice before, as after a slice
// changed hands), and learns of them by watch: the attach reads nothing
// from etcd.
func TestOverlayDynamicSkipsClusterStatic(t *testing.T) {
	etcd, h1, _ := twoNodes(t)
	sctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := h1.e.StartCluster(sctx); err != nil {
		t.Fatal(err)
	}
	etcd.setStatic("web", tAddr("10.200.0.2"), "h9/old")
	etcd.setStatic("web", tAddr("10.200.0.3"), "h9/older")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, _ := h1.e.statics.of("web"); len(got) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the static address watch did not deliver the reservations")
		}
	}
	etcd.mu.Lock()
	reads := etcd.staticReads
	etcd.mu.Unlock()
	sb, err := createOn(h1, "a")
	if err != nil {
		t.Fatal(err)
	}
	if ip := sb.Endpoints[0].FirstIP(); ip == tAddr("10.200.0.2") || ip == tAddr("10.200.0.3") {
		t.Fatalf("a got %s, reserved in the cluster", ip)
	}
	etcd.mu.Lock()
	if etcd.staticReads != reads {
		t.Errorf("the attach read the static addresses from etcd %d times, want none (the watch has them)", etcd.staticReads-reads)
	}
	etcd.mu.Unlock()
	// The skipped addresses are not held locally either.
	snap := h1.snapshot(t)
	if strings.Contains(snap, "10.200.0.2=") || strings.Contains(snap, "10.200.0.3=") {
		t.Errorf("skipped addresses stayed reserved locally:\n%s", snap)
	}
}

// A reservation of this node that no endpoint holds (the daemon died
// between the cluster's reservation and its own) is swept at start; one
// an endpoint holds stays.
func TestOverlayStaticSweep(t *testing.T) {
	etcd, h1, _ := twoNodes(t)
	if _, err := createOn(h1, "a", "10.200.0.9"); err != nil {
		t.Fatal(err)
	}
	etcd.mu.Lock()
	etcd.static["web"][tAddr("10.200.0.50")] = "h1/ghost"
	etcd.static["web"][tAddr("10.200.1.50")] = "h2/other-node"
	etcd.mu.Unlock()
	h1.e.sweepClusterStatic(context.Background())
	got := etcd.staticOf("web")
	if _, ok := got[tAddr("10.200.0.50")]; ok {
		t.Errorf("the stale reservation stayed: %v", got)
	}
	if got[tAddr("10.200.0.9")] != "h1/a" || got[tAddr("10.200.1.50")] != "h2/other-node" {
		t.Errorf("the sweep released what it must keep: %v", got)
	}
}

func TestNodeAndNetworkInspect(t *testing.T) {
	etcd, h1, h2 := twoNodes(t)
	ctx := context.Background()
	if _, err := createOn(h2, "b", "10.200.1.5"); err != nil {
		t.Fatal(err)
	}
	n, err := h1.e.Node(ctx, "h2")
	if err != nil {
		t.Fatal(err)
	}
	wantMAC := "02:00:00:00:00:02" // h2's record's
	if n.Name != "h2" || n.Self || n.Underlay != tAddr("192.0.2.2") || !slices.Equal(n.Slices["web"], []netip.Prefix{tPrefix("10.200.1.0/24")}) ||
		n.VTEPMAC != wantMAC || n.StaticIPs["web"][tAddr("10.200.1.5")] != "b" {
		t.Errorf("node inspect h2 from h1: %+v", n)
	}
	if n, err := h2.e.Node(ctx, "h2"); err != nil || !n.Self {
		t.Errorf("node inspect h2 on h2: %+v, %v", n, err)
	}
	if _, err := h1.e.Node(ctx, "nope"); !errors.Is(err, model.ErrNotFound) || !strings.Contains(err.Error(), "h1, h2") {
		t.Errorf("an unknown node: %v", err)
	}

	info, err := h1.e.InspectNetwork(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	want := &model.ClusterNetwork{Nodes: []model.ClusterNetworkNode{
		{Node: "h1", Slices: []netip.Prefix{tPrefix("10.200.0.0/24")}, Underlay: tAddr("192.0.2.1"), VTEPMAC: "02:00:00:00:00:01", Live: true, Self: true},
		{Node: "h2", Slices: []netip.Prefix{tPrefix("10.200.1.0/24")}, Underlay: tAddr("192.0.2.2"), VTEPMAC: wantMAC, Live: true},
	}, StaticIPs: map[netip.Addr]string{tAddr("10.200.1.5"): "h2/b"}}
	if diff := cmp.Diff(want, info.Cluster, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("network inspect's cluster part (-want +got):\n%s", diff)
	}

	// h2 dies: it keeps its slice, shown as not live; node inspect says so.
	etcd.leave("h2")
	info, err = h1.e.InspectNetwork(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Cluster.Nodes; len(got) != 2 || got[1].Live || got[1].Underlay.IsValid() || !slices.Equal(got[1].Slices, []netip.Prefix{tPrefix("10.200.1.0/24")}) {
		t.Errorf("a node that is gone: %+v", got)
	}
	if _, err := h1.e.Node(ctx, "h2"); !errors.Is(err, model.ErrNotFound) || !strings.Contains(err.Error(), "web=10.200.1.0/24") {
		t.Errorf("node inspect of a node that is gone: %v", err)
	}

	// Not an overlay network: no cluster part.
	if _, err := h1.e.CreateNetwork(ctx, model.NetworkSpec{Name: "local"}); err != nil {
		t.Fatal(err)
	}
	if info, err := h1.e.InspectNetwork(ctx, "local"); err != nil || info.Cluster != nil {
		t.Errorf("a bridge network's cluster part: %+v, %v", info.Cluster, err)
	}
}

func (env *testEnv) mustNet(t *testing.T, name string) *model.NetworkInfo {
	t.Helper()
	n, err := env.e.Network(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
