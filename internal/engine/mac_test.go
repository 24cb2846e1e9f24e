package engine

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// fakeMAC is the MAC the fake kernel gave the sandbox end of sandbox's
// veth on network.
func fakeMAC(t *testing.T, env *testEnv, sandbox, network string) string {
	t.Helper()
	info, err := env.e.Sandbox(sandbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range info.Endpoints {
		if ep.Network != network {
			continue
		}
		for _, line := range strings.Split(env.link.Dump(), "\n") {
			if strings.HasPrefix(line, "veth "+ep.HostIf+" ") {
				_, rest, _ := strings.Cut(line, " mac ")
				mac, _, _ := strings.Cut(rest, " ")
				return mac
			}
		}
		t.Fatalf("no veth %s in the fake kernel:\n%s", ep.HostIf, env.link.Dump())
	}
	t.Fatalf("sandbox %s has no endpoint on %s", sandbox, network)
	return ""
}

// A MAC asked for is the interface's, in any notation; one another
// interface of the network has, or the bridge's, is refused with who has
// it, and nothing changes. Other networks are other segments: the same
// MAC is fine there.
func TestChosenMAC(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	const mac = "02:42:0a:00:00:05"
	sb, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: "back", MAC: "02-42-0A-00-00-05"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sb.Endpoints[0].MAC; got != mac {
		t.Errorf("endpoint MAC %s, want %s", got, mac)
	}
	if got := fakeMAC(t, env, "a", "back"); got != mac {
		t.Errorf("the kernel's MAC %s, want %s", got, mac)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "c"}); err != nil {
		t.Fatal(err)
	}

	before := env.snapshot(t)
	for _, c := range []struct {
		what string
		do   func() error
		kind error
		want string
	}{
		{"create, taken", func() error {
			_, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: []model.AttachSpec{{Network: "back", MAC: mac}}})
			return err
		}, model.ErrConflict, "mac 02:42:0a:00:00:05 is taken on network back by sandbox a (eth0)"},
		{"create, second network taken", func() error {
			_, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}, {Network: "back", MAC: "02:42:0A:00:00:05"}}})
			return err
		}, model.ErrConflict, "taken on network back by sandbox a (eth0)"},
		{"connect, taken", func() error {
			_, err := env.e.Connect(ctx, "c", model.AttachSpec{Network: "back", MAC: mac})
			return err
		}, model.ErrConflict, "taken on network back by sandbox a (eth0)"},
		{"connect, the bridge's", func() error {
			_, err := env.e.Connect(ctx, "c", model.AttachSpec{Network: "back", MAC: "02:42:0a:5a:01:01"})
			return err
		}, model.ErrConflict, "taken on network back by the bridge"},
		{"create, multicast", func() error {
			_, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b", Networks: []model.AttachSpec{{Network: "back", MAC: "01:00:5e:00:00:05"}}})
			return err
		}, model.ErrInvalid, "multicast"},
		{"connect, zero", func() error {
			_, err := env.e.Connect(ctx, "c", model.AttachSpec{Network: "back", MAC: "00:00:00:00:00:00"})
			return err
		}, model.ErrInvalid, "cannot be an interface's address"},
	} {
		err := c.do()
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %v saying %q", c.what, err, c.kind, c.want)
		}
		if after := env.snapshot(t); after != before {
			t.Fatalf("%s changed something:\nbefore:\n%s\nafter:\n%s", c.what, before, after)
		}
	}

	// Another network is another segment.
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "d", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, MAC: mac}}}); err != nil {
		t.Errorf("the same MAC on another network: %v", err)
	}
	// A sandbox being removed holds no MAC.
	if err := env.e.RemoveSandbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Connect(ctx, "c", model.AttachSpec{Network: "back", MAC: mac}); err != nil {
		t.Errorf("the MAC of a removed sandbox: %v", err)
	}
}

// A derived MAC someone chose for themselves is not taken from them: the
// endpoint whose address it comes from gets a random one.
func TestDerivedMACTaken(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "back", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	derived := model.MACFromIP(tAddr("10.90.1.50")).String()
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "x", Networks: []model.AttachSpec{{Network: "back", MAC: derived}}}); err != nil {
		t.Fatal(err)
	}
	sb, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "y", Networks: []model.AttachSpec{{Network: "back", IPs: tIPs("10.90.1.50")}}})
	if err != nil {
		t.Fatalf("the address whose MAC another chose: %v", err)
	}
	hw, err := net.ParseMAC(sb.Endpoints[0].MAC)
	if err != nil || hw.String() == derived || hw[0]&1 != 0 || hw[0]&2 == 0 {
		t.Errorf("y's MAC %s (%v), want a locally administered unicast MAC other than %s", sb.Endpoints[0].MAC, err, derived)
	}
	if got := fakeMAC(t, env, "y", "back"); got != hw.String() {
		t.Errorf("the kernel's MAC %s, want the record's %s", got, hw)
	}
	// Without a choice in the way, the MAC is the derived one.
	sb, err = env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "z", Networks: []model.AttachSpec{{Network: "back", IPs: tIPs("10.90.1.51")}}})
	if err != nil || sb.Endpoints[0].MAC != "02:42:0a:5a:01:33" {
		t.Errorf("z: %v, %v; want MAC 02:42:0a:5a:01:33", sb, err)
	}
}
