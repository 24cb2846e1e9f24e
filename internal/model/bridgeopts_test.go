package model

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestBuildNetworkBridgeOptions(t *testing.T) {
	off := false
	p := []netip.Prefix{netip.MustParsePrefix("10.90.1.0/24")}
	for _, c := range []struct {
		name string
		o    *BridgeOptions
		want string // error text; "" for success
	}{
		{"none", nil, ""},
		{"stp", &BridgeOptions{STP: true, ForwardDelay: 2}, ""},
		{"stp max", &BridgeOptions{STP: true, ForwardDelay: 30}, ""},
		{"all", &BridgeOptions{STP: true, AgeingTime: 30, VLANFiltering: true, Hairpin: &off, MulticastSnooping: true}, ""},
		{"delay without stp", &BridgeOptions{ForwardDelay: 4}, "without STP"},
		{"delay too short", &BridgeOptions{STP: true, ForwardDelay: 1}, "2 to 30"},
		{"delay too long", &BridgeOptions{STP: true, ForwardDelay: 31}, "2 to 30"},
		{"ageing too short", &BridgeOptions{AgeingTime: 9}, "10 to 1000000"},
		{"ageing too long", &BridgeOptions{AgeingTime: 1000001}, "10 to 1000000"},
		{"ageing negative", &BridgeOptions{AgeingTime: -1}, "10 to 1000000"},
	} {
		n, err := BuildNetwork(NetworkSpec{Name: "app", BridgeOptions: c.o}, p, "id")
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if (n.BridgeOptions == nil) != (c.o == nil) || c.o != nil && *n.BridgeOptions != *c.o {
				t.Errorf("%s: network has options %+v, want %+v", c.name, n.BridgeOptions, c.o)
			}
			if c.o != nil && n.BridgeOptions == c.o {
				t.Errorf("%s: network shares the spec's options", c.name)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrInvalid saying %q", c.name, err, c.want)
		}
	}
}

func TestCheckVLAN(t *testing.T) {
	plain := &Network{Name: "plain"}
	vl := &Network{Name: "vl", BridgeOptions: &BridgeOptions{VLANFiltering: true}}
	for _, c := range []struct {
		n    *Network
		vlan int
		want string
	}{
		{plain, 0, ""},
		{vl, 0, ""},
		{vl, 1, ""},
		{vl, 10, ""},
		{vl, 4094, ""},
		{vl, 4095, "1 to 4094"},
		{vl, -1, "1 to 4094"},
		{plain, 10, "no VLAN filtering"},
		{&Network{Name: "x", BridgeOptions: &BridgeOptions{STP: true}}, 10, "--vlan-filtering"},
	} {
		err := CheckVLAN(c.n, c.vlan)
		if c.want == "" {
			if err != nil {
				t.Errorf("CheckVLAN(%s, %d) = %v", c.n.Name, c.vlan, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckVLAN(%s, %d) = %v, want ErrInvalid saying %q", c.n.Name, c.vlan, err, c.want)
		}
	}
}

func TestBridgeOptionsDefaultsAndJSON(t *testing.T) {
	var none *BridgeOptions
	if !none.HairpinOn() || none.VLANs() {
		t.Errorf("nil options: hairpin %v vlans %v, want on, off", none.HairpinOn(), none.VLANs())
	}
	if !(&BridgeOptions{}).HairpinOn() {
		t.Error("hairpin unset: want on")
	}
	off := false
	o := &BridgeOptions{STP: true, ForwardDelay: 4, AgeingTime: 30, VLANFiltering: true, Hairpin: &off, MulticastSnooping: true}
	if got, want := o.String(), "stp forward-delay=4s ageing=30s vlan-filtering hairpin=off multicast-snooping"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (&BridgeOptions{STP: true}).String(), "stp forward-delay=15s ageing=300s hairpin=on"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	b, _ := json.Marshal(Network{Name: "a"})
	if strings.Contains(string(b), "bridge_options") {
		t.Errorf("network without options marshals them: %s", b)
	}
	b, _ = json.Marshal(Network{Name: "a", BridgeOptions: o})
	if !strings.Contains(string(b), `"bridge_options":{"stp":true,"forward_delay":4,"ageing_time":30,"vlan_filtering":true,"hairpin":false,"multicast_snooping":true}`) {
		t.Errorf("network JSON: %s", b)
	}
}
