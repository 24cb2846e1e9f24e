package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"pontoon/internal/link"
	"pontoon/internal/model"
)

// A macvlan network: its VLAN sub-interface made and removed with it (and
// only when pontoon made it), its shim's address reserved, passthru
// limited to one member, and what the host cannot enforce refused.
func TestMacvlanDriver(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	env.link.AddHostLink(link.LinkInfo{Name: "eth0", Type: "veth", MTU: 1500, Up: true})
	spec := func(name, mode string, vlan int, shim bool) model.NetworkSpec {
		return model.NetworkSpec{Name: name, Driver: model.DriverMacvlan,
			Subnets: []model.Subnet{{Prefix: tPrefix("10.95.0.0/24"), Gateway: tAddr("10.95.0.1"), IPRange: tPrefix("10.95.0.64/28")}},
			Macvlan: &model.MacvlanOptions{Parent: "eth0", Mode: mode, VLAN: vlan, Shim: shim}}
	}
	before := env.snapshot(t)
	for _, c := range []struct {
		spec model.NetworkSpec
		want string
	}{
		{model.NetworkSpec{Name: "x", Driver: model.DriverMacvlan, Macvlan: &model.MacvlanOptions{Parent: "eth0"}}, "give that segment's --subnet"},
		{func() model.NetworkSpec { s := spec("x", "", 0, false); s.Macvlan.Parent = "eth9"; return s }(), "eth9"},
		{spec("x", "nosuch", 0, false), "macvlan mode"},
		{spec("x", "private", 0, true), "--shim needs macvlan mode bridge"},
		{func() model.NetworkSpec { s := spec("x", "", 0, false); s.Internal = true; return s }(), "--internal"},
	} {
		if _, err := env.e.CreateNetwork(ctx, c.spec); !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want invalid saying %q", c.spec.Macvlan, err, c.want)
		}
	}
	if after := env.snapshot(t); after != before {
		t.Fatalf("a refused network changed something:\n%s\n%s", before, after)
	}

	n, err := env.e.CreateNetwork(ctx, spec("lan", "", 50, true))
	if err != nil {
		t.Fatal(err)
	}
	if n.Macvlan.Link != "eth0.50" || !n.Macvlan.LinkCreated || len(n.Macvlan.ShimAddrs) != 1 || n.Macvlan.ShimAddrs[0] != tAddr("10.95.0.79") {
		t.Fatalf("macvlan options = %+v", n.Macvlan)
	}
	if d := env.link.Dump(); !strings.Contains(d, "vlan eth0.50") || !strings.Contains(d, "shim "+model.ShimName(n.ID)) {
		t.Fatalf("kernel after create:\n%s", d)
	}
	// 16 addresses in the range, one the shim's: 15 members at most.
	for i := range 15 {
		if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "m" + string(rune('a'+i)), Networks: []model.AttachSpec{{Network: "lan"}}}); err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	for _, sb := range []string{"ma", "mo"} {
		info, _ := env.e.Sandbox(sb)
		if ip := info.Endpoints[0].FirstIP(); ip == n.Macvlan.ShimAddrs[0] {
			t.Errorf("%s got the shim's address %s", sb, ip)
		}
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "full", Networks: []model.AttachSpec{{Network: "lan"}}}); !errors.Is(err, model.ErrExhausted) {
		t.Errorf("member past the range: %v", err)
	}
	if err := env.e.RemoveNetwork(ctx, "lan", true); err != nil {
		t.Fatal(err)
	}
	if d := env.link.Dump(); strings.Contains(d, "eth0.50") || strings.Contains(d, "shim") || strings.Contains(d, "macvlan") {
		t.Fatalf("kernel after rm:\n%s", d)
	}

	// passthru: one member.
	if _, err := env.e.CreateNetwork(ctx, spec("pt", "passthru", 0, false)); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "one", Networks: []model.AttachSpec{{Network: "pt"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "two", Networks: []model.AttachSpec{{Network: "pt"}}}); !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "passthru") {
		t.Errorf("a second passthru member: %v", err)
	}
}
