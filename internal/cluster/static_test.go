package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"pontoon/internal/model"
	"pontoon/internal/store/etcdtest"
)

// Two daemons reserve the same static address: the second is refused and
// told who holds it.
func TestReserveStaticAcrossDaemons(t *testing.T) {
	a := newCluster(t)
	b, err := New(etcdtest.NewClient(t, a.cli), prefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for _, ip := range []netip.Addr{netip.MustParseAddr("10.80.3.7"), netip.MustParseAddr("fd00:80::7")} {
		if err := a.ReserveStatic(ctx, "ov", ip, "ep-a"); err != nil {
			t.Fatal(err)
		}
		if err := a.ReserveStatic(ctx, "ov", ip, "ep-a"); err != nil {
			t.Errorf("same owner again: %v", err)
		}
		err := b.ReserveStatic(ctx, "ov", ip, "ep-b")
		if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "ep-a") || !strings.Contains(err.Error(), ip.String()) {
			t.Fatalf("second daemon: %v, want ErrConflict naming ep-a and %s", err, ip)
		}
		// The same address on another network is another address.
		if err := b.ReserveStatic(ctx, "ov2", ip, "ep-b"); err != nil {
			t.Fatal(err)
		}
		if err := b.ReleaseStatic(ctx, "ov", ip, "ep-b"); !errors.Is(err, model.ErrConflict) {
			t.Errorf("release by a non-holder: %v, want ErrConflict", err)
		}
		if err := a.ReleaseStatic(ctx, "ov", ip, "ep-a"); err != nil {
			t.Fatal(err)
		}
		if err := a.ReleaseStatic(ctx, "ov", ip, "ep-a"); err != nil {
			t.Errorf("release twice: %v", err)
		}
		if err := b.ReserveStatic(ctx, "ov", ip, "ep-b"); err != nil {
			t.Fatalf("after release: %v", err)
		}
	}
	got, err := a.StaticReservations(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[10.80.3.7:ep-b fd00:80::7:ep-b]" {
		t.Errorf("reservations %v", got)
	}
	// An IPv4-mapped address is its IPv4 address.
	if err := a.ReserveStatic(ctx, "ov", netip.MustParseAddr("::ffff:10.80.3.7"), "ep-a"); !errors.Is(err, model.ErrConflict) {
		t.Errorf("mapped form of a held address: %v", err)
	}
	for _, bad := range []struct {
		network, owner string
		ip             netip.Addr
	}{
		{"", "x", netip.MustParseAddr("10.0.0.1")},
		{"ov", "x", netip.Addr{}},
		{"ov", "x", netip.MustParseAddr("fe80::1%eth0")},
		{"ov", "", netip.MustParseAddr("10.0.0.1")},
	} {
		if err := a.ReserveStatic(ctx, bad.network, bad.ip, bad.owner); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("ReserveStatic(%q, %v, %q) = %v, want ErrInvalid", bad.network, bad.ip, bad.owner, err)
		}
	}
}

// One daemon lists every network's static reservations and watches from
// the list's revision: it sees the other's reservations and releases, in
// order, and nothing from before the list.
func TestWatchStatics(t *testing.T) {
	a := newCluster(t)
	b, err := New(etcdtest.NewClient(t, a.cli), prefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	ip1, ip2 := netip.MustParseAddr("10.80.3.7"), netip.MustParseAddr("fd00:80::7")
	if err := a.ReserveStatic(ctx, "ov", ip1, "h1/a"); err != nil {
		t.Fatal(err)
	}
	all, rev, err := b.AllStaticReservations(ctx)
	if err != nil || fmt.Sprint(all) != "map[ov:map[10.80.3.7:h1/a]]" {
		t.Fatalf("list: %v %v", all, err)
	}
	ch, err := b.WatchStatics(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(a.ReserveStatic(ctx, "ov2", ip2, "h1/b"), a.ReleaseStatic(ctx, "ov", ip1, "h1/a")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		ev := <-ch
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		got = append(got, fmt.Sprintf("%s %s %q %v", ev.Network, ev.IP, ev.Owner, ev.Removed))
	}
	if want := []string{`ov2 fd00:80::7 "h1/b" false`, `ov 10.80.3.7 "" true`}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}
