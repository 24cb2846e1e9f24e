package e2e

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// The seeds' two namespaces on a veth pair in two commands: a link
// network and one sandbox create with both names. They reach each other
// by name. Options that name one thing are refused with several names,
// and a failure stops the command with what was made kept and said.
func TestSandboxCreateSeveral(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "wire", "--driver", "link", "--subnet", "10.0.1.0/24")
	out := h.P("sandbox", "create", "net0", "net1", "--network", "wire")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "net0\t") || !strings.HasPrefix(lines[1], "net1\t") {
		t.Fatalf("sandbox create net0 net1: want one line each, got:\n%s", out)
	}
	// In the order given: the seed's addresses.
	if a, b := h.IP("net0", "wire"), h.IP("net1", "wire"); a != "10.0.1.1" || b != "10.0.1.2" {
		t.Errorf("net0 has %s and net1 %s, want 10.0.1.1 and 10.0.1.2", a, b)
	}
	h.MustPing("net0", "net1")
	h.MustPing("net1", "net0")

	msg := h.PFail("sandbox", "create", "x", "y", "--ip", "10.88.0.50")
	if !strings.Contains(msg, "--ip takes one sandbox name") {
		t.Errorf("--ip with two names: %s", msg)
	}
	// A name that is taken stops the command: what came before it is
	// made, the rest is not, and the error says so.
	h.P("sandbox", "create", "c")
	msg = h.PFail("sandbox", "create", "e", "c", "f")
	if !strings.Contains(msg, "create sandbox c:") || !strings.Contains(msg, "created before it: e") || !strings.Contains(msg, "not created: c, f") {
		t.Errorf("create e c f with c taken: %s", msg)
	}
	ls := strings.Fields(h.P("sandbox", "ls", "-q"))
	for _, name := range []string{"x", "y", "f"} {
		if slices.Contains(ls, name) {
			t.Errorf("sandbox %s was made: %v", name, ls)
		}
	}
	if !slices.Contains(ls, "e") {
		t.Errorf("sandbox e, made before the failure, is gone: %v", ls)
	}
}

// network fdb after real traffic: both sandboxes' MACs, each on its own
// host end and named with its sandbox, as the bridge learned them; the
// host's neighbour entry of the sandbox it talked to. A network with no
// bridge is refused, saying why.
func TestNetworkFDB(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "app", "--subnet", "10.97.5.0/24")
	h.P("sandbox", "create", "a", "b", "--network", "app")
	h.MustPing("a", h.IP("b", "app"))
	ipA := h.IP("a", "app")
	h.In(h.NS, "ping", "-c1", "-W2", ipA) // the host resolves a

	var fdb model.NetworkFDB
	out := h.P("network", "fdb", "--format", "json", "app")
	if err := json.Unmarshal([]byte(out), &fdb); err != nil || len(fdb.Devices) != 1 || fdb.Devices[0].Kind != "bridge" {
		t.Fatalf("network fdb app (%v):\n%s", err, out)
	}
	dev := fdb.Devices[0]
	for _, name := range []string{"a", "b"} {
		ep := h.Sandbox(name).Endpoints[0]
		i := slices.IndexFunc(dev.Entries, func(e model.FDBEntry) bool { return e.MAC == ep.MAC })
		if i < 0 {
			t.Errorf("%s's MAC %s is not in the bridge's FDB:\n%s", name, ep.MAC, out)
			continue
		}
		if e := dev.Entries[i]; e.Port != ep.HostIf || e.Sandbox != name || e.IfName != "eth0" || e.State != "dynamic" {
			t.Errorf("%s's entry %+v, want port %s, sandbox %s eth0, dynamic", name, e, ep.HostIf, name)
		}
	}
	if len(dev.Entries) != 2 {
		t.Errorf("the bridge learned %d MACs, want a's and b's:\n%s", len(dev.Entries), out)
	}
	macA := h.Sandbox("a").Endpoints[0].MAC
	i := slices.IndexFunc(dev.Neighbours, func(n model.Neighbour) bool { return n.IP.String() == ipA })
	if i < 0 || dev.Neighbours[i].MAC != macA || dev.Neighbours[i].Sandbox != "a" {
		t.Errorf("the host's neighbour %s: want %s of sandbox a:\n%s", ipA, macA, out)
	}
	// The table says the same.
	table := h.P("network", "fdb", "app")
	if !strings.Contains(table, "Bridge ") || !regexp.MustCompile(`(?m)^  `+regexp.QuoteMeta(macA)+`\s+\S+\s+a\s+eth0\s+dynamic`).MatchString(table) {
		t.Errorf("network fdb app:\n%s", table)
	}

	h.P("network", "create", "wire", "--driver", "link")
	if msg := h.PFail("network", "fdb", "wire"); !strings.Contains(msg, "has no bridge") {
		t.Errorf("network fdb on a link network: %s", msg)
	}
}
