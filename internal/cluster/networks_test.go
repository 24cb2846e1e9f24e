package cluster

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/store/etcdtest"
)

// sub is one overlay subnet with its slice size.
func sub(prefix string, bits int) []model.OverlaySubnet {
	return []model.OverlaySubnet{{Prefix: netip.MustParsePrefix(prefix), SliceBits: bits}}
}

// Cluster networks: defined once (a retry is success), conflicts named,
// seen by another daemon through list-then-watch, removal watched.
func TestNetworkDefs(t *testing.T) {
	cli := etcdtest.Start(t)
	a, _ := New(cli, "/pc/")
	b, _ := New(etcdtest.NewClient(t, cli), "/pc/")
	ctx := context.Background()
	web := NetworkDef{Name: "web", Driver: "overlay", Subnets: sub("10.200.0.0/16", 24), VNI: 4200, CreatedBy: "h1", Created: time.Now()}
	if err := a.DefineNetwork(ctx, web); err != nil {
		t.Fatal(err)
	}
	if err := a.DefineNetwork(ctx, web); err != nil {
		t.Fatalf("the same definition again: %v", err)
	}
	defs, rev, err := b.Networks(ctx)
	if err != nil || len(defs) != 1 || defs[0].SubnetString() != "10.200.0.0/16" || defs[0].VNI != 4200 {
		t.Fatalf("the other daemon lists %+v, %v", defs, err)
	}
	for _, c := range []struct {
		d    NetworkDef
		want string
	}{
		{NetworkDef{Name: "web", Subnets: sub("10.201.0.0/16", 24), VNI: 4201}, "exists"},
		{NetworkDef{Name: "db", Subnets: sub("10.201.0.0/16", 24), VNI: 4200}, "VNI 4200"},
		{NetworkDef{Name: "db", Subnets: sub("10.200.128.0/17", 24), VNI: 4201}, "overlaps"},
		{NetworkDef{Name: "db", Subnets: sub("10.201.0.0/16", 8), VNI: 4201}, "slices"},
		{NetworkDef{Name: "db", VNI: 4201}, "no subnet"},
		{NetworkDef{Name: "db", Subnets: append(sub("fd00:201::/48", 64), sub("fd00:202::/48", 64)...), VNI: 4201}, "two subnets of one family"},
		{NetworkDef{Name: "db", Subnets: sub("fd00:201::/48", 129), VNI: 4201}, "slices of /129"},
		{NetworkDef{Name: "db", Subnets: sub("fd00:201::1/48", 64), VNI: 4201}, "not a network prefix"},
		{NetworkDef{Name: "db", Subnets: sub("10.201.0.0/16", 24), VNI: 0}, "VNI 0"},
	} {
		if err := b.DefineNetwork(ctx, c.d); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.d, err, c.want)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := b.WatchNetworks(wctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	db := NetworkDef{Name: "db", Driver: "overlay", Subnets: sub("10.201.0.0/16", 24), VNI: 4201}
	if err := a.DefineNetwork(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveNetworkDef(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		select {
		case ev := <-ch:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			what := "defined "
			if ev.Removed {
				what = "removed "
			}
			got = append(got, what+ev.Def.Name+" "+ev.Def.SubnetString())
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far: %v", got)
		}
	}
	if strings.Join(got, ", ") != "defined db 10.201.0.0/16, removed web 10.200.0.0/16" {
		t.Errorf("events: %v", got)
	}
	if err := a.DefineNetwork(ctx, NetworkDef{Name: "bad name!", Subnets: db.Subnets, VNI: 1}); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("a bad name: %v", err)
	}
}

// Names: recorded by one daemon, listed and watched by another, removed.
func TestNames(t *testing.T) {
	cli := etcdtest.Start(t)
	a, _ := New(cli, "/pc/")
	b, _ := New(etcdtest.NewClient(t, cli), "/pc/")
	ctx := context.Background()
	web := Name{Network: "web", Sandbox: "s1", Node: "h1", IPs: []netip.Addr{netip.MustParseAddr("10.200.0.2")}, Aliases: []string{"db"}}
	if err := a.PutName(ctx, web); err != nil {
		t.Fatal(err)
	}
	names, rev, err := b.Names(ctx)
	if err != nil || len(names) != 1 || names[0].Sandbox != "s1" || names[0].Network != "web" || names[0].Node != "h1" || names[0].IPs[0] != web.IPs[0] || names[0].Aliases[0] != "db" {
		t.Fatalf("names: %+v, %v", names, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := b.WatchNames(wctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteName(ctx, "web", "s1"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if ev.Err != nil || !ev.Removed || ev.Name.Sandbox != "s1" || len(ev.Name.IPs) != 1 {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
}

// A dual-stack definition: stored IPv4 first, compared whole, its IPv6
// subnet in overlap checks; the layout of the records.
func TestNetworkDefsDualStack(t *testing.T) {
	cli := etcdtest.Start(t)
	a, _ := New(cli, "/pc/")
	ctx := context.Background()
	web := NetworkDef{Name: "web", Driver: "overlay", Subnets: append(sub("fd00:200::/48", 64), sub("10.200.0.0/16", 24)...), VNI: 4200}
	if err := a.DefineNetwork(ctx, web); err != nil {
		t.Fatal(err)
	}
	defs, _, err := a.Networks(ctx)
	if err != nil || len(defs) != 1 || defs[0].SubnetString() != "10.200.0.0/16, fd00:200::/48" || defs[0].Subnets[1].SliceBits != 64 {
		t.Fatalf("listed %+v, %v", defs, err)
	}
	if err := a.DefineNetwork(ctx, defs[0]); err != nil {
		t.Errorf("the same definition again: %v", err)
	}
	for _, c := range []struct {
		d    NetworkDef
		want string
	}{
		{NetworkDef{Name: "web", Subnets: sub("10.200.0.0/16", 24), VNI: 4200}, "exists"}, // without its IPv6 subnet
		{NetworkDef{Name: "db", Subnets: append(sub("10.201.0.0/16", 24), sub("fd00:200:0:8000::/49", 64)...), VNI: 4201}, "fd00:200:0:8000::/49 overlaps fd00:200::/48"},
	} {
		if err := a.DefineNetwork(ctx, c.d); !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a conflict saying %q", c.d, err, c.want)
		}
	}

	// The records: a dual-stack one has its subnets only; an IPv4-only
	// one also the fields of the layout before (for older nodes).
	if err := a.DefineNetwork(ctx, NetworkDef{Name: "old", Subnets: sub("10.202.0.0/16", 26), VNI: 4202}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"web": {`"subnets":[{"prefix":"10.200.0.0/16","slice_bits":24},{"prefix":"fd00:200::/48","slice_bits":64}]`, `!"subnet"`},
		"old": {`"subnets":[{"prefix":"10.202.0.0/16","slice_bits":26}]`, `"subnet":"10.202.0.0/16"`, `"slice_bits":26`},
	} {
		r, err := cli.Get(ctx, "/pc/networks/"+name)
		if err != nil || len(r.Kvs) != 1 {
			t.Fatalf("record of %s: %v", name, err)
		}
		rec := string(r.Kvs[0].Value)
		for _, w := range want {
			if no, ok := strings.CutPrefix(w, "!"); ok {
				if strings.Contains(rec, no) {
					t.Errorf("record of %s has %s: %s", name, no, rec)
				}
			} else if !strings.Contains(rec, w) {
				t.Errorf("record of %s lacks %s: %s", name, w, rec)
			}
		}
	}
	// A record written before dual-stack overlays reads as one IPv4
	// subnet.
	if _, err := cli.Put(ctx, "/pc/networks/legacy", `{"name":"legacy","driver":"overlay","subnet":"10.203.0.0/16","slice_bits":25,"vni":4203,"created_by":"h1","created":"2025-01-01T00:00:00Z"}`); err != nil {
		t.Fatal(err)
	}
	defs, _, err = a.Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defs {
		if d.Name == "legacy" && (len(d.Subnets) != 1 || d.Subnets[0] != sub("10.203.0.0/16", 25)[0] || d.VNI != 4203) {
			t.Errorf("a record from before: %+v", d)
		}
	}
}
