package engine

import (
	"context"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// A Docker container's sandbox: its endpoint's veth has its other end on
// the host for dockerd to move; a container that died while pontoon did
// not hear of it (no Leave) is released at the next start, its address
// freed; one that is only not started yet is kept.
func TestDockerSandboxes(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	key := "/run/docker/netns/0123456789ab"
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "docker-0123456789ab", Netns: key, Docker: true}); err != nil {
		t.Fatal(err)
	}
	ep, err := env.e.Connect(ctx, "docker-0123456789ab", model.AttachSpec{Network: model.DefaultNetwork})
	if err != nil {
		t.Fatal(err)
	}
	if d := env.link.Dump(); !strings.Contains(d, model.PeerVethName(ep.ID)) {
		t.Fatalf("no host-side peer %s for dockerd to move:\n%s", model.PeerVethName(ep.ID), d)
	}
	restart := func() *Engine {
		t.Helper()
		e2, err := New(Config{Store: env.st, Link: env.link, Firewall: env.fw, Netns: env.ns, NetnsDir: "/run/pt/netns"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e2.Close)
		if err := e2.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		return e2
	}
	// Not started yet (the key is no namespace, the veth is there): kept.
	e2 := restart()
	if _, err := e2.Sandbox("docker-0123456789ab"); err != nil {
		t.Fatalf("a container not started yet was released: %v", err)
	}
	// The container died unheard: its namespace and veth are gone.
	if err := env.link.DeleteVeths([]string{ep.HostIf}); err != nil {
		t.Fatal(err)
	}
	e3 := restart()
	if _, err := e3.Sandbox("docker-0123456789ab"); err == nil {
		t.Fatal("a dead container's sandbox was kept")
	}
	e3.Flush()
	// Its address is free again.
	ep2, err := e3.Connect(ctx, mustSandbox(t, e3, ctx), model.AttachSpec{Network: model.DefaultNetwork, IPs: ep.IPs()})
	if err != nil || ep2.FirstIP() != ep.FirstIP() {
		t.Fatalf("the address of the released sandbox: %v, %v", ep2, err)
	}
}

func mustSandbox(t *testing.T, e *Engine, ctx context.Context) string {
	t.Helper()
	if _, err := e.CreateSandbox(ctx, model.SandboxSpec{Name: "next"}); err != nil {
		t.Fatal(err)
	}
	return "next"
}
