package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// Trace over the fakes: the prediction comes from the store and the rules'
// description, and the request is validated before anything happens.
func TestTrace(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "other", Subnets: []model.Subnet{{Prefix: tPrefix("10.95.0.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []model.SandboxSpec{
		{Name: "a", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}},
		{Name: "b", Networks: []model.AttachSpec{{Network: model.DefaultNetwork, Ports: tPorts("8080:80")}}},
		{Name: "c", Networks: []model.AttachSpec{{Network: "other"}}},
	} {
		if _, err := env.e.CreateSandbox(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	before := env.snapshot(t)

	tr, err := env.e.Trace(ctx, model.TraceSpec{Src: "a", Dst: "c:80"})
	if err != nil {
		t.Fatal(err)
	}
	if v := tr.Verdict; v.Result != model.VerdictDropped || v.Rule != firewall.RuleIsolation || v.Where != "inet pontoon forward" {
		t.Errorf("a → c: %+v", v)
	}
	tr, err = env.e.Trace(ctx, model.TraceSpec{Src: "a", Dst: "b:80/tcp"})
	if err != nil {
		t.Fatal(err)
	}
	if v := tr.Verdict; v.Result != model.VerdictDelivered || v.Rule != firewall.RuleIntra {
		t.Errorf("a → b: %+v", v)
	}
	last := tr.Hops[len(tr.Hops)-1]
	if last.Kind != model.HopDeliver || !strings.Contains(last.Text, "sandbox b receives") {
		t.Errorf("last hop %+v", last)
	}

	for _, bad := range []model.TraceSpec{
		{Src: "a", Dst: "b:99999"},
		{Src: "a", Dst: "b", FromLAN: "203.0.113.2"},
		{FromLAN: "not-an-ip", Dst: "b:80"},
		{Src: "a", Dst: "b", SrcIP: "10.88.0.999"},
		{Src: "a", Dst: "b", Live: true, Wait: "2h"},
	} {
		if _, err := env.e.Trace(ctx, bad); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("%+v: %v, want invalid", bad, err)
		}
	}
	// The fake firewall cannot trace: the prediction comes back, and the
	// live part says why it is missing.
	tr, err = env.e.Trace(ctx, model.TraceSpec{Src: "a", Dst: "c:80", Live: true})
	if err != nil || tr.Live == nil || tr.Live.Answer != "not sent" || !strings.Contains(tr.Live.Error, "kernel") || tr.Verdict.Rule != firewall.RuleIsolation {
		t.Errorf("live trace on fakes: %v %+v", err, tr)
	}
	if _, err := env.e.Trace(ctx, model.TraceSpec{Src: "nobody", Dst: "b"}); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("unknown source: %v", err)
	}
	if after := env.snapshot(t); after != before {
		t.Errorf("a trace changed the engine's state")
	}
}
