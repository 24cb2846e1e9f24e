package e2e

import (
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// The topology of a known setup, then of a drifted one (self-healing off,
// so the drift stays).
func TestTopology(t *testing.T) {
	h := NewHost(t, "--self-heal=false")
	h.P("network", "create", "app", "--subnet", "10.97.9.0/24")
	h.P("sandbox", "create", "a", "--network", "app", "--alias", "web", "-p", "8080:80")
	h.P("sandbox", "create", "b", "--network", "app", "--network", "pontoon")
	topo := func() *model.Topology {
		var tp model.Topology
		if err := json.Unmarshal([]byte(h.P("topology", "--format", "json")), &tp); err != nil {
			t.Fatal(err)
		}
		return &tp
	}
	tp := topo()
	if len(tp.Networks) != 2 || len(tp.Sandboxes) != 2 || len(tp.Drift) != 0 || len(tp.Uplinks) != 1 || tp.Uplinks[0].Name != "uplink0" {
		t.Fatalf("topology: %+v", tp)
	}
	var app *model.TopoNetwork
	for _, n := range tp.Networks {
		if n.Name == "app" {
			app = n
		}
	}
	if app == nil || len(app.Ports) != 2 || app.BridgeIndex == 0 || len(app.Drift) != 0 {
		t.Fatalf("network app: %+v", app)
	}
	a := app.Ports[0]
	ep := h.Sandbox("a").Endpoints[0]
	if a.Sandbox != "a" || a.HostIf != ep.HostIf || a.IPString() != ep.FirstIP().String() || a.MAC != ep.MAC ||
		strings.Join(a.Names, ",") != "a,web" || strings.Join(a.Published, ",") != "8080:80/tcp" || a.HostIndex == 0 {
		t.Fatalf("port of a: %+v (endpoint %+v)", a, ep)
	}
	// The host end's ifindex is the one the kernel reports.
	if out := h.In(h.NS, "ip", "-o", "link", "show", a.HostIf); !strings.HasPrefix(out, itoa(a.HostIndex)+": ") {
		t.Fatalf("ifindex of %s: kernel %s, topology %d", a.HostIf, out, a.HostIndex)
	}
	// Drift: a host end down, another network's bridge down.
	h.In(h.NS, "ip", "link", "set", a.HostIf, "down")
	h.In(h.NS, "ip", "link", "set", "pontoon0", "down")
	tp = topo()
	text := h.P("topology")
	for _, want := range []string{"✗ host end " + a.HostIf + " is down", "✗ bridge pontoon0 is down", "names a, web  published 8080:80/tcp"} {
		if !strings.Contains(text, want) {
			t.Errorf("topology text does not say %q:\n%s", want, text)
		}
	}
	for _, n := range tp.Networks {
		if n.Name == "pontoon" && len(n.Drift) == 0 {
			t.Errorf("the downed bridge is not marked: %+v", n)
		}
	}
	// inspect and ls read the same view: the same drift, per object.
	if out := h.P("sandbox", "inspect", "a"); !strings.Contains(out, "✗ eth0: host end "+a.HostIf+" is down") {
		t.Errorf("sandbox inspect a does not show its host end down:\n%s", out)
	}
	if sb := h.Sandbox("b"); len(sb.Drift) != 0 {
		t.Errorf("sandbox b has drift %v, want none", sb.Drift)
	}
	if out := h.P("network", "inspect", "pontoon"); !strings.Contains(out, "✗ bridge pontoon0 is down") {
		t.Errorf("network inspect pontoon does not show its bridge down:\n%s", out)
	}
	var sbs []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("sandbox", "ls", "--format", "json")), &sbs); err != nil {
		t.Fatal(err)
	}
	for _, sb := range sbs {
		want := map[string]string{"a": "eth0: host end " + a.HostIf + " is down", "b": ""}[sb.Name]
		if got := strings.Join(sb.Drift, "; "); got != want {
			t.Errorf("sandbox ls: %s has drift %q, want %q", sb.Name, got, want)
		}
	}
	svg := h.P("topology", "--format", "svg")
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil || !strings.Contains(svg, `stroke="#d00"`) {
		t.Errorf("svg: %v, drift in red: %v", err, strings.Contains(svg, `stroke="#d00"`))
	}
	if dot := h.P("topology", "--format", "dot"); !strings.HasPrefix(dot, "digraph pontoon {") || !strings.Contains(dot, "color=red") {
		t.Errorf("dot:\n%s", dot)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
