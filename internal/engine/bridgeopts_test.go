package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// Bridge options reach the bridge and each endpoint's port; a VLAN on a
// network without VLAN filtering is refused and creates nothing.
func TestBridgeOptionsReachLink(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	off := false
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "app", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}},
		BridgeOptions: &model.BridgeOptions{STP: true, ForwardDelay: 4, AgeingTime: 30, VLANFiltering: true, Hairpin: &off}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "plain", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.2.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: "a", Networks: []model.AttachSpec{{Network: "app", VLAN: 10}}}); err != nil {
		t.Fatal(err)
	}
	dump := env.link.Dump()
	if !strings.Contains(dump, "stp true forward_delay 4 ageing_time 30 vlan_filtering true mcast_snooping false") {
		t.Errorf("bridge options missing:\n%s", dump)
	}
	if !strings.Contains(dump, "nohairpin vlan 10") {
		t.Errorf("port's hairpin and VLAN missing:\n%s", dump)
	}
	before := env.link.Dump()
	for _, spec := range []model.SandboxSpec{
		{Name: "b", Networks: []model.AttachSpec{{Network: "plain", VLAN: 10}}},
		{Name: "c", Networks: []model.AttachSpec{{Network: "app", VLAN: 4095}}},
	} {
		_, err := env.e.CreateSandbox(ctx, spec)
		if !errors.Is(err, model.ErrInvalid) {
			t.Errorf("CreateSandbox %s = %v, want ErrInvalid", spec.Name, err)
		}
	}
	if after := env.link.Dump(); after != before {
		t.Errorf("refused sandboxes changed the kernel:\n%s\nwant\n%s", after, before)
	}
	if _, err := env.e.Sandbox("b"); err == nil {
		t.Errorf("sandbox b exists after a refused VLAN")
	}
}
