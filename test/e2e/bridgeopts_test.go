package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
)

// Bridge options with the real binary: set at creation, shown by inspect,
// in effect in the kernel, and sandboxes talk once STP lets the ports
// forward (2×forward delay).
func TestBridgeOptions(t *testing.T) {
	// A change of bridge settings (bridge up, still up) is no event that
	// self-healing acts on: its periodic pass finds it.
	h := NewHost(t, "--heal-period", "1s")
	h.P("network", "create", "app", "--subnet", "10.93.1.0/24", "--stp", "--forward-delay", "2", "--ageing", "30", "--hairpin=false", "--multicast-snooping")

	out := h.P("network", "inspect", "app")
	if !strings.Contains(out, "stp forward-delay=2s ageing=30s hairpin=off multicast-snooping") {
		t.Fatalf("inspect does not show the bridge options:\n%s", out)
	}
	var nets []model.NetworkInfo
	if err := json.Unmarshal([]byte(h.P("network", "inspect", "--format", "json", "app")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("inspect json: %v", err)
	}
	o := nets[0].BridgeOptions
	if o == nil || !o.STP || o.ForwardDelay != 2 || o.AgeingTime != 30 || o.HairpinOn() || !o.MulticastSnooping || o.VLANFiltering {
		t.Fatalf("inspect json bridge_options = %+v", o)
	}
	br := nets[0].Bridge
	link := h.In(h.NS, "ip", "-d", "link", "show", br)
	for _, want := range []string{"stp_state 1", "forward_delay 200", "ageing_time 3000", "mcast_snooping 1"} {
		if !strings.Contains(link, want) {
			t.Errorf("ip -d link show %s lacks %q:\n%s", br, want, link)
		}
	}

	h.P("sandbox", "create", "a", "--network", "app")
	h.P("sandbox", "create", "b", "--network", "app")
	ipB := h.IP("b", "app")
	if _, ok := within(15*time.Second, func() (string, bool) { return "", h.Ping("a", ipB) }); !ok {
		t.Fatalf("a cannot reach b on an STP bridge within 15 s")
	}
	h.MustPing("b", "10.93.1.1")
	for _, ep := range h.Sandbox("a").Endpoints {
		if port := h.In(h.NS, "ip", "-d", "link", "show", ep.HostIf); !strings.Contains(port, "hairpin off") {
			t.Errorf("port %s of a network with --hairpin=false:\n%s", ep.HostIf, port)
		}
	}

	// Someone turns STP off and changes the ageing time: self-healing's
	// periodic pass puts them back.
	h.In(h.NS, "ip", "link", "set", br, "type", "bridge", "stp_state", "0", "ageing_time", "1000")
	if out, ok := within(10*time.Second, func() (string, bool) {
		l := h.In(h.NS, "ip", "-d", "link", "show", br)
		return l, strings.Contains(l, "stp_state 1") && strings.Contains(l, "ageing_time 3000")
	}); !ok {
		t.Errorf("STP and ageing not repaired within 10 s:\n%s", out)
	}
}

// Bad bridge options and VLANs are refused with a clear error and create
// nothing.
func TestBridgeOptionsRefused(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "plain", "--subnet", "10.93.2.0/24")
	h.P("sandbox", "create", "s", "--network", "none")
	bridges := h.HostLinks("ptbr-")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "x", "--forward-delay", "4"}, "without STP"},
		{[]string{"network", "create", "x", "--stp", "--forward-delay", "1"}, "2 to 30"},
		{[]string{"network", "create", "x", "--ageing", "5"}, "10 to 1000000"},
		{[]string{"network", "connect", "plain", "s", "--vlan", "10"}, "no VLAN filtering"},
		{[]string{"network", "connect", "plain", "s", "--vlan", "0"}, "VLAN 0 is out of range"},
		{[]string{"network", "connect", "plain", "s", "--vlan", "4095"}, "1 to 4094"},
		{[]string{"sandbox", "create", "v", "--network", "plain", "--vlan", "10"}, "no VLAN filtering"},
	} {
		if out := h.PFail(c.args...); !strings.Contains(out, c.want) {
			t.Errorf("pontoon %s: %s\nwant it to say %q", strings.Join(c.args, " "), out, c.want)
		}
	}
	if ls := h.P("network", "ls", "-q"); strings.Contains(ls, "x\n") {
		t.Errorf("a refused network exists:\n%s", ls)
	}
	if got := h.HostLinks("ptbr-"); !slices.Equal(got, bridges) {
		t.Errorf("bridges %v after refused requests, want %v", got, bridges)
	}
	if ls := h.P("sandbox", "ls", "-q"); strings.Contains(ls, "v\n") {
		t.Errorf("a refused sandbox exists:\n%s", ls)
	}
	if eps := h.Sandbox("s").Endpoints; len(eps) != 0 {
		t.Errorf("s has endpoints after refused connects: %+v", eps)
	}
}

// VLANs: two sandboxes on VLAN 10 reach each other and their gateway, one
// on VLAN 20 reaches its gateway but not VLAN 10. A kernel without bridge
// VLAN filtering refuses the network clearly and keeps nothing.
func TestBridgeVLANs(t *testing.T) {
	h := NewHost(t)
	bridges := h.HostLinks("ptbr-")
	out, err := h.TryP("network", "create", "vl", "--subnet", "10.93.3.0/24", "--vlan-filtering")
	if err != nil {
		if !strings.Contains(out, "CONFIG_BRIDGE_VLAN_FILTERING") {
			t.Fatalf("network create --vlan-filtering: %v\n%s", err, out)
		}
		if ls := h.P("network", "ls", "-q"); strings.Contains(ls, "vl\n") {
			t.Errorf("refused network vl exists:\n%s", ls)
		}
		if got := h.HostLinks("ptbr-"); !slices.Equal(got, bridges) {
			t.Errorf("bridges %v after the refusal, want %v", got, bridges)
		}
		t.Skipf("kernel without bridge VLAN filtering, refused as it should be: %s", out)
	}
	if o := h.P("network", "inspect", "vl"); !strings.Contains(o, "vlan-filtering") {
		t.Errorf("inspect:\n%s", o)
	}
	h.P("sandbox", "create", "a", "--network", "vl", "--vlan", "10")
	h.P("sandbox", "create", "b", "--network", "vl", "--vlan", "10")
	h.P("sandbox", "create", "c", "--network", "vl", "--vlan", "20")
	h.MustPing("a", h.IP("b", "vl"))
	h.MustPing("b", h.IP("a", "vl"))
	h.MustPing("a", "10.93.3.1")
	h.MustPing("c", "10.93.3.1")
	h.MustNotPing("c", h.IP("a", "vl"))
	vlans := h.In(h.NS, "bridge", "vlan", "show")
	for _, ep := range h.Sandbox("a").Endpoints {
		if !strings.Contains(vlans, ep.HostIf) {
			t.Errorf("bridge vlan show has no %s:\n%s", ep.HostIf, vlans)
		}
	}
}
