package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// capsDriver is the bridge driver declaring less than it does, and
// counting the networks it was asked to make.
type capsDriver struct {
	bridgeDriver
	caps    model.DriverCaps
	ensured *int
}

func (d capsDriver) Name() string           { return "narrow" }
func (d capsDriver) Caps() model.DriverCaps { return d.caps }
func (d capsDriver) EnsureNetwork(n *model.Network) error {
	*d.ensured++
	return d.bridgeDriver.EnsureNetwork(n)
}

// The engine makes a network through its driver, refuses an option the
// driver cannot honour before anything is made, and names the drivers it
// has when asked for another.
func TestDriverSeam(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	ensured := 0
	env.e.drivers["narrow"] = capsDriver{bridgeDriver: bridgeDriver{env.e.link}, caps: model.DriverCaps{Ports: true, DNS: true}, ensured: &ensured}
	before := env.snapshot(t)
	f := false
	for _, c := range []struct {
		spec model.NetworkSpec
		want string
	}{
		{model.NetworkSpec{Name: "n1", Driver: "narrow", ICC: &f}, "cannot keep sandboxes of a network from each other"},
		{model.NetworkSpec{Name: "n2", Driver: "narrow", Internal: true}, "cannot make a network --internal"},
		{model.NetworkSpec{Name: "n3", Driver: "vpn"}, `driver "vpn" is not supported: use one of bridge, link, macvlan, narrow, overlay, ovs`},
		{model.NetworkSpec{Name: "n4", Driver: "overlay"}, "start the daemon with --cluster"},
	} {
		_, err := env.e.CreateNetwork(ctx, c.spec)
		if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want invalid saying %q", c.spec, err, c.want)
		}
	}
	if after := env.snapshot(t); after != before || ensured != 0 {
		t.Fatalf("a refused network changed something (ensured %d times)", ensured)
	}
	n, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "ok", Driver: "narrow"})
	if err != nil || n.Driver != "narrow" || ensured != 1 {
		t.Fatalf("create through the driver: %v %+v, ensured %d", err, n, ensured)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: "ok"}}}); err != nil {
		t.Fatal(err)
	}
}
