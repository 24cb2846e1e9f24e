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

// IPv6 packets are predicted on the networks' IPv6 subnets: isolation,
// delivery inside a network, and the family of an address decides.
func TestTraceIPv6(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	for _, n := range []model.NetworkSpec{
		{Name: "ds", Subnets: []model.Subnet{{Prefix: tPrefix("10.96.1.0/24")}, {Prefix: tPrefix("fd00:96:1::/64")}}},
		{Name: "ds2", Subnets: []model.Subnet{{Prefix: tPrefix("10.96.2.0/24")}, {Prefix: tPrefix("fd00:96:2::/64")}}},
	} {
		if _, err := env.e.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []model.SandboxSpec{
		{Name: "a", Networks: []model.AttachSpec{{Network: "ds", IPs: tIPs("fd00:96:1::a")}}},
		{Name: "b", Networks: []model.AttachSpec{{Network: "ds", IPs: tIPs("fd00:96:1::b")}}},
		{Name: "c", Networks: []model.AttachSpec{{Network: "ds2", IPs: tIPs("fd00:96:2::c")}}},
		{Name: "four", Networks: []model.AttachSpec{{Network: model.DefaultNetwork}}},
	} {
		if _, err := env.e.CreateSandbox(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		spec         model.TraceSpec
		src, dst     string
		result, rule string
	}{
		{model.TraceSpec{Src: "a", Dst: "b:80", IPv6: true}, "fd00:96:1::a", "fd00:96:1::b", model.VerdictDelivered, firewall.RuleIntra},
		{model.TraceSpec{Src: "a", Dst: "[fd00:96:1::b]:80"}, "fd00:96:1::a", "fd00:96:1::b", model.VerdictDelivered, firewall.RuleIntra},
		{model.TraceSpec{Src: "a", Dst: "fd00:96:2::c"}, "fd00:96:1::a", "fd00:96:2::c", model.VerdictDropped, firewall.RuleIsolation},
		{model.TraceSpec{Src: "a", Dst: "b:80"}, "10.96.1.2", "10.96.1.3", model.VerdictDelivered, firewall.RuleIntra}, // by name: IPv4 unless asked
	} {
		tr, err := env.e.Trace(ctx, c.spec)
		if err != nil {
			t.Fatalf("%+v: %v", c.spec, err)
		}
		if tr.Probe.Src != c.src || tr.Probe.Dst != c.dst || tr.Verdict.Result != c.result || tr.Verdict.Rule != c.rule {
			t.Errorf("%+v: %s → %s %+v", c.spec, tr.Probe.Src, tr.Probe.Dst, tr.Verdict)
		}
		if c.spec.IPv6 || strings.Contains(c.spec.Dst, ":") && strings.Contains(c.dst, ":") {
			found := false
			for _, h := range tr.Hops {
				found = found || h.Kind == model.HopNeigh && strings.HasPrefix(h.Text, "ND ")
			}
			if !found {
				t.Errorf("%+v: no neighbour discovery hop: %+v", c.spec, tr.Hops)
			}
		}
	}
	for _, bad := range []model.TraceSpec{
		{Src: "a", Dst: "b", IPv6: true, Live: true},        // live is IPv4
		{Src: "a", Dst: "fd00:96:1::b", SrcIP: "10.96.1.9"}, // two families
		{FromLAN: "2001:db8::5", Dst: "10.96.1.2:80"},       // two families
		{Src: "a", Dst: "[fd00:96:1::b:80"},                 // no closing bracket
	} {
		if _, err := env.e.Trace(ctx, bad); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("%+v: %v, want invalid", bad, err)
		}
	}
	// A sandbox without IPv6 is no IPv6 destination.
	if _, err := env.e.Trace(ctx, model.TraceSpec{Src: "a", Dst: "four", IPv6: true}); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("IPv6 to an IPv4-only sandbox: %v", err)
	}
}
