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

// Cluster networks: defined once (a retry is success), conflicts named,
// seen by another daemon through list-then-watch, removal watched.
func TestNetworkDefs(t *testing.T) {
	cli := etcdtest.Start(t)
	a, _ := New(cli, "/pc/")
	b, _ := New(etcdtest.NewClient(t, cli), "/pc/")
	ctx := context.Background()
	web := NetworkDef{Name: "web", Driver: "overlay", Subnet: netip.MustParsePrefix("10.200.0.0/16"), SliceBits: 24, VNI: 4200, CreatedBy: "h1", Created: time.Now()}
	if err := a.DefineNetwork(ctx, web); err != nil {
		t.Fatal(err)
	}
	if err := a.DefineNetwork(ctx, web); err != nil {
		t.Fatalf("the same definition again: %v", err)
	}
	defs, rev, err := b.Networks(ctx)
	if err != nil || len(defs) != 1 || defs[0].Subnet != web.Subnet || defs[0].VNI != 4200 {
		t.Fatalf("the other daemon lists %+v, %v", defs, err)
	}
	for _, c := range []struct {
		d    NetworkDef
		want string
	}{
		{NetworkDef{Name: "web", Subnet: netip.MustParsePrefix("10.201.0.0/16"), SliceBits: 24, VNI: 4201}, "exists"},
		{NetworkDef{Name: "db", Subnet: netip.MustParsePrefix("10.201.0.0/16"), SliceBits: 24, VNI: 4200}, "VNI 4200"},
		{NetworkDef{Name: "db", Subnet: netip.MustParsePrefix("10.200.128.0/17"), SliceBits: 24, VNI: 4201}, "overlaps"},
		{NetworkDef{Name: "db", Subnet: netip.MustParsePrefix("10.201.0.0/16"), SliceBits: 8, VNI: 4201}, "slices"},
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
	db := NetworkDef{Name: "db", Driver: "overlay", Subnet: netip.MustParsePrefix("10.201.0.0/16"), SliceBits: 24, VNI: 4201}
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
			got = append(got, what+ev.Def.Name+" "+ev.Def.Subnet.String())
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far: %v", got)
		}
	}
	if strings.Join(got, ", ") != "defined db 10.201.0.0/16, removed web 10.200.0.0/16" {
		t.Errorf("events: %v", got)
	}
	if err := a.DefineNetwork(ctx, NetworkDef{Name: "bad name!", Subnet: db.Subnet, SliceBits: 24, VNI: 1}); !errors.Is(err, model.ErrInvalid) {
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
