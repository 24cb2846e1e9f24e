package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// A host port held by another sandbox's mapping (on any address, inside a
// range, same protocol) refuses the attach and changes nothing; once that
// sandbox is detached, the port is free.
func TestPortConflict(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{
		{Network: model.DefaultNetwork, Ports: tPorts("8080:80", "8000-8010:8000-8010/udp")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "b"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"8080:81", "127.0.0.1:8080:80", "8005:53/udp", "7990-8000:7990-8000/udp"} {
		_, err := env.e.Connect(ctx, "b", model.AttachSpec{Network: model.DefaultNetwork, Ports: tPorts(p)})
		if !errors.Is(err, model.ErrConflict) || !strings.Contains(err.Error(), "published by sandbox a") {
			t.Errorf("%s: %v, want a conflict with sandbox a", p, err)
		}
		if info, err := env.e.Sandbox("b"); err != nil || len(info.Endpoints) != 0 {
			t.Fatalf("refused attach of %s left %+v (%v)", p, info, err)
		}
	}
	// Another protocol, or ports beside the range, are free.
	if _, err := env.e.Connect(ctx, "b", model.AttachSpec{Network: model.DefaultNetwork, Ports: tPorts("8005:53/tcp", "8011:53/udp")}); err != nil {
		t.Fatal(err)
	}
	if err := env.e.Disconnect(ctx, model.DefaultNetwork, "b"); err != nil {
		t.Fatal(err)
	}
	if err := env.e.Disconnect(ctx, model.DefaultNetwork, "a"); err != nil {
		t.Fatal(err)
	}
	env.e.Flush()
	if _, err := env.e.Connect(ctx, "b", model.AttachSpec{Network: model.DefaultNetwork, Ports: tPorts("8080:80", "8005:53/udp")}); err != nil {
		t.Fatalf("after a detached: %v", err)
	}
}
