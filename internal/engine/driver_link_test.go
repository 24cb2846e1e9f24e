package engine

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// A link network joins exactly two sandboxes with one pair, made when the
// second attaches; a third is refused and changes nothing; a member that
// leaves takes the pair along, and the next member gets a new one.
func TestLinkDriver(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	n, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "wire", Driver: model.DriverLink})
	if err != nil {
		t.Fatal(err)
	}
	s4, _ := n.Subnet4()
	if n.Bridge != "" || s4.Prefix.Bits() != 30 || s4.Gateway.IsValid() || s4.Masquerade {
		t.Fatalf("link network = %+v, want no bridge, a /30 without gateway or masquerade", n)
	}
	mk := func(name string) error {
		_, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: name, Networks: []model.AttachSpec{{Network: "wire"}}})
		return err
	}
	if err := mk("left"); err != nil {
		t.Fatal(err)
	}
	if p := env.link.Pairs(); len(p) != 0 {
		t.Fatalf("pairs with one member: %v", p)
	}
	if err := mk("right"); err != nil {
		t.Fatal(err)
	}
	pairs := env.link.Pairs()
	if len(pairs) != 1 || !strings.Contains(pairs[0], "eth0") {
		t.Fatalf("pairs with two members: %v", pairs)
	}
	before := env.snapshot(t)
	err = mk("third")
	if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "exactly two sandboxes, left and right") {
		t.Fatalf("a third member: %v", err)
	}
	if after := env.snapshot(t); after != before {
		t.Fatalf("a refused third member changed something:\nbefore\n%s\nafter\n%s", before, after)
	}
	// No anti-spoofing elements, no firewall network for it.
	if d, _ := env.fw.Dump(ctx); strings.Contains(d, "wire") || strings.Contains(d, s4.Prefix.String()) {
		t.Errorf("the firewall knows the link network:\n%s", d)
	}
	// Ports are refused by the driver's capabilities.
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "wire2", Driver: model.DriverLink}); err != nil {
		t.Fatal(err)
	}
	_, err = env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "web", Networks: []model.AttachSpec{{Network: "wire2", Ports: tPorts("8080:80")}}})
	if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "cannot publish ports") {
		t.Errorf("ports on a link network: %v", err)
	}

	if err := env.e.Disconnect(ctx, "wire", "left"); err != nil {
		t.Fatal(err)
	}
	env.e.Flush()
	if p := env.link.Pairs(); len(p) != 0 {
		t.Fatalf("pairs after a member left: %v", p)
	}
	if err := mk("third"); err != nil {
		t.Fatal(err)
	}
	if p := env.link.Pairs(); len(p) != 1 {
		t.Fatalf("pairs after a new member came: %v", p)
	}
}

// A link network's gateway is one of its members: it takes the address
// with --ip and has no default route through itself; the other member
// routes through it.
func TestLinkDriverGateway(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	gw := tAddr("10.99.0.1")
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "wire", Driver: model.DriverLink,
		Subnets: []model.Subnet{{Prefix: tPrefix("10.99.0.0/30"), Gateway: gw}}}); err != nil {
		t.Fatal(err)
	}
	r, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "router", Networks: []model.AttachSpec{{Network: "wire", IPs: []netip.Addr{gw}}}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "host", Networks: []model.AttachSpec{{Network: "wire"}}})
	if err != nil {
		t.Fatal(err)
	}
	ra, _ := r.Endpoints[0].Addr4()
	ha, _ := h.Endpoints[0].Addr4()
	if ra.Addr.Addr() != gw || ra.Gateway.IsValid() {
		t.Errorf("router's address = %+v, want %s without a gateway", ra, gw)
	}
	if ha.Addr.Addr() != tAddr("10.99.0.2") || ha.Gateway != gw {
		t.Errorf("other member's address = %+v, want 10.99.0.2 via %s", ha, gw)
	}
}
