package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/store/etcdtest"
)

func newCluster(t *testing.T) *Cluster {
	t.Helper()
	c, err := New(etcdtest.Start(t), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// familySlice is a node's slice of one family among ps.
func familySlice(ps []netip.Prefix, v6 bool) netip.Prefix {
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			return p
		}
	}
	return netip.Prefix{}
}

func TestNextSlice(t *testing.T) {
	for _, c := range []struct {
		subnet string
		size   int
		want   []string
	}{
		{"10.1.0.0/22", 24, []string{"10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24", "10.1.3.0/24"}},
		{"10.1.0.0/24", 24, []string{"10.1.0.0/24"}},
		{"255.255.255.0/24", 26, []string{"255.255.255.0/26", "255.255.255.64/26", "255.255.255.128/26", "255.255.255.192/26"}},
		{"fd00:1::/63", 64, []string{"fd00:1::/64", "fd00:1:0:1::/64"}},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126", 127, []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/127", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"}},
	} {
		subnet := netip.MustParsePrefix(c.subnet)
		var got []string
		for p, more := netip.PrefixFrom(subnet.Addr(), c.size), true; more && len(got) < 10; p, more = nextSlice(p, subnet) {
			got = append(got, p.String())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("slices of /%d in %s = %v, want %v", c.size, c.subnet, got, c.want)
		}
	}
}

// 16 nodes claim a slice of each of 4 networks at once, each on a client
// of its own: no two get the same slice, and the slices are the first 16
// in order.
func TestClaimSliceConcurrent(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	nets := []struct {
		name   string
		subnet netip.Prefix
		size   int
	}{
		{"ov0", netip.MustParsePrefix("10.10.0.0/16"), 0},
		{"ov1", netip.MustParsePrefix("10.11.0.0/16"), 26},
		{"ov2", netip.MustParsePrefix("fd00:12::/48"), 0},
		{"ov3", netip.MustParsePrefix("10.13.0.0/20"), 24}, // exactly 16 slices
		// Dual-stack: each node claims one slice of each family, at once.
		{"ov4", netip.MustParsePrefix("10.14.0.0/16"), 0},
		{"ov4", netip.MustParsePrefix("fd00:14::/60"), 0}, // exactly 16 slices
	}
	const nodes = 16
	clients := make([]*Cluster, nodes)
	for i := range clients {
		cl, err := New(etcdtest.NewClient(t, c.cli), prefix)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
	}
	got := make([][]netip.Prefix, len(nets)) // [net][node]
	for i := range got {
		got[i] = make([]netip.Prefix, nodes)
	}
	var wg sync.WaitGroup
	errs := make(chan error, nodes*len(nets))
	for i := range nodes {
		for j, n := range nets {
			wg.Go(func() {
				p, err := clients[i].ClaimSlice(ctx, n.name, n.subnet, n.size, fmt.Sprintf("n%02d", i))
				if err != nil {
					errs <- err
					return
				}
				got[j][i] = p
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	for j, n := range nets {
		// The first 16 slices in order, each once.
		var want []netip.Prefix
		size := n.size
		if size == 0 {
			size = map[bool]int{false: 24, true: 64}[n.subnet.Addr().Is6()]
		}
		for p, more := netip.PrefixFrom(n.subnet.Addr(), size), true; more && len(want) < nodes; p, more = nextSlice(p, n.subnet) {
			want = append(want, p)
		}
		sorted := slices.Clone(got[j])
		slices.SortFunc(sorted, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		if !slices.Equal(sorted, want) {
			t.Errorf("%s: slices %v, want each of %v once", n.name, sorted, want)
		}
		// Slices reads back what each node got.
		byNode, err := c.Slices(ctx, n.name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range nodes {
			if p := familySlice(byNode[fmt.Sprintf("n%02d", i)], n.subnet.Addr().Is6()); p != got[j][i] {
				t.Errorf("%s: Slices says n%02d holds %v, its claim got %v", n.name, i, p, got[j][i])
			}
		}
	}
	// ov3 is full now.
	if _, err := c.ClaimSlice(ctx, "ov3", nets[3].subnet, 24, "late"); !errors.Is(err, model.ErrExhausted) {
		t.Errorf("17th node on a /20 of /24s: %v, want ErrExhausted", err)
	}
}

// A node that restarts (leaves, joins again, claims again) gets its slice
// back; one claiming twice gets the same slice.
func TestClaimSliceRejoin(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	subnet := netip.MustParsePrefix("10.20.0.0/16")
	a := join(t, c.cli, node("a1", "198.51.100.1"), 5*time.Second)
	b := join(t, etcdtest.NewClient(t, c.cli), node("b2", "198.51.100.2"), 5*time.Second)
	pa, err := a.ClaimSlice(ctx, "ov", subnet, 0, "a1")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.ClaimSlice(ctx, "ov", subnet, 0, "b2")
	if err != nil {
		t.Fatal(err)
	}
	if pa.String() != "10.20.0.0/24" || pb.String() != "10.20.1.0/24" {
		t.Fatalf("a1 got %v, b2 %v: want the first two /24s in order", pa, pb)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	// While a1 is away, a newcomer does not get a1's slice.
	if p, err := b.ClaimSlice(ctx, "ov", subnet, 0, "c3"); err != nil || p.String() != "10.20.2.0/24" {
		t.Fatalf("c3 got %v, %v: want 10.20.2.0/24", p, err)
	}
	a = join(t, etcdtest.NewClient(t, c.cli), node("a1", "198.51.100.1"), 5*time.Second)
	if p, err := a.ClaimSlice(ctx, "ov", subnet, 0, "a1"); err != nil || p != pa {
		t.Fatalf("a1 after a restart got %v, %v: want its slice %v back", p, err, pa)
	}
	if p, err := a.ClaimSlice(ctx, "ov", subnet, 0, "a1"); err != nil || p != pa {
		t.Fatalf("a1 claiming twice got %v, %v", p, err)
	}

	// The network recreated with another subnet: a1's old slice goes, it
	// gets the first slice of the new subnet.
	other := netip.MustParsePrefix("10.30.0.0/16")
	if p, err := a.ClaimSlice(ctx, "ov", other, 0, "a1"); err != nil || p.String() != "10.30.0.0/24" {
		t.Fatalf("a1 on a new subnet got %v, %v", p, err)
	}
	sl, err := c.Slices(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sl) != "map[a1:[10.30.0.0/24] b2:[10.20.1.0/24] c3:[10.20.2.0/24]]" {
		t.Errorf("slices after a1 moved: %v", sl)
	}
}

// A slice of another size left in etcd is never handed out overlapping.
func TestClaimSliceSkipsOverlaps(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	subnet := netip.MustParsePrefix("10.40.0.0/16")
	if _, err := c.ClaimSlice(ctx, "ov", subnet, 23, "old"); err != nil {
		t.Fatal(err)
	}
	if p, err := c.ClaimSlice(ctx, "ov", subnet, 24, "new"); err != nil || p.String() != "10.40.2.0/24" {
		t.Fatalf("a /24 beside a /23 at the start: %v, %v", p, err)
	}
}

func TestClaimSliceExhausted(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	subnet := netip.MustParsePrefix("10.50.0.0/23")
	for _, n := range []string{"a1", "b2"} {
		if _, err := c.ClaimSlice(ctx, "ov", subnet, 24, n); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.ClaimSlice(ctx, "ov", subnet, 24, "c3")
	if !errors.Is(err, model.ErrExhausted) || !strings.Contains(err.Error(), "10.50.0.0/23") || !strings.Contains(err.Error(), "/24") {
		t.Fatalf("third /24 of a /23: %v, want ErrExhausted naming 10.50.0.0/23 and /24", err)
	}
	t.Log(err)
	if err := c.ReleaseSlice(ctx, "ov", "a1"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseSlice(ctx, "ov", "a1"); err != nil {
		t.Fatalf("release twice: %v", err)
	}
	if p, err := c.ClaimSlice(ctx, "ov", subnet, 24, "c3"); err != nil || p.String() != "10.50.0.0/24" {
		t.Fatalf("c3 after a1 released: %v, %v", p, err)
	}
}

func TestClaimSliceChecksInput(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	sub := netip.MustParsePrefix("10.60.0.0/16")
	for _, x := range []struct {
		network string
		subnet  netip.Prefix
		size    int
		node    string
		want    string
	}{
		{"", sub, 24, "a", "empty"},
		{"ov", netip.Prefix{}, 24, "a", "not a valid prefix"},
		{"ov", sub, 8, "a", "does not fit"},
		{"ov", sub, 33, "a", "does not fit"},
		{"ov", sub, 24, "a/b", "not allowed"},
	} {
		if _, err := c.ClaimSlice(ctx, x.network, x.subnet, x.size, x.node); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), x.want) {
			t.Errorf("ClaimSlice(%q, %v, %d, %q) = %v, want ErrInvalid saying %q", x.network, x.subnet, x.size, x.node, err, x.want)
		}
	}
	if sl, err := c.Slices(ctx, "ov"); err != nil || len(sl) != 0 {
		t.Errorf("refused claims left %v, %v", sl, err)
	}
}

// ExpireSlices frees the slices of nodes gone for good, never those of a
// registered node nor of one the caller keeps.
func TestExpireSlices(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	subnet := netip.MustParsePrefix("10.70.0.0/16")
	join(t, c.cli, node("a1", "198.51.100.1"), 5*time.Second) // live
	for _, n := range []string{"a1", "b2", "c3"} {
		if _, err := c.ClaimSlice(ctx, "ov", subnet, 0, n); err != nil {
			t.Fatal(err)
		}
	}
	released, err := c.ExpireSlices(ctx, "ov", []string{"c3"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(released) != "map[b2:[10.70.1.0/24]]" {
		t.Errorf("released %v, want b2's only (a1 is registered, c3 kept)", released)
	}
	sl, err := c.Slices(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sl) != "map[a1:[10.70.0.0/24] c3:[10.70.2.0/24]]" {
		t.Errorf("slices after expiry: %v", sl)
	}
	// b2's index went too: it comes back to the first free slice, which
	// is its old one.
	if p, err := c.ClaimSlice(ctx, "ov", subnet, 0, "d4"); err != nil || p.String() != "10.70.1.0/24" {
		t.Errorf("d4 after b2 expired: %v, %v", p, err)
	}
	if r, err := c.cli.Get(context.Background(), c.sliceIndexKey("ov", "b2", false)); err != nil || len(r.Kvs) != 0 {
		t.Errorf("b2's index after expiry: %v, %v", r.Kvs, err)
	}
}
