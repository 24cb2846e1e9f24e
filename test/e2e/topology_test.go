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
