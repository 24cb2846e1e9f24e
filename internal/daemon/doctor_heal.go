package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// bridges checks every network's bridge: there, up, with its gateway
// address, MTU and the settings pontoon gave it.
func (d *doctor) bridges(nets []*model.NetworkInfo) []api.Finding {
	var out []api.Finding
	for _, n := range nets {
		for _, p := range d.eng.CheckBridge(&n.Network) {
			out = append(out, finding(api.LevelError, "bridges", "network %s: %s: sandboxes on it cannot reach each other or the outside; self-healing repairs it — if this persists, see the daemon's log", n.Name, p))
		}
	}
	if len(out) == 0 {
		out = append(out, finding(api.LevelOK, "bridges", "every network's bridge (%d) is up with its gateway address", len(nets)))
	}
	return out
}

// endpoints checks every sandbox: its namespace is the one recorded, and
// each endpoint's veth pair, bridge port, address, MAC, routes and rules
// are as recorded.
func (d *doctor) endpoints(ctx context.Context, sbs []*model.SandboxInfo) []api.Finding {
	var out []api.Finding
	n := 0
	for _, sb := range sbs {
		if sb.Kind == model.KindHost || sb.State != model.SandboxReady {
			continue
		}
		probs, err := d.eng.CheckSandbox(ctx, sb.Name)
		if err != nil {
			continue // removed meanwhile
		}
		n += len(sb.Endpoints)
		for _, p := range probs {
			where := "sandbox " + sb.Name
			if p.IfName != "" {
				where += " " + p.IfName + " on " + p.Network
			}
			out = append(out, finding(api.LevelError, "endpoints", "%s: %s: its traffic does not flow; self-healing repairs it — if this persists, see the daemon's log or reconnect the network", where, p.Problem))
		}
	}
	if len(out) == 0 {
		out = append(out, finding(api.LevelOK, "endpoints", "every endpoint (%d) has its veth pair, address, routes and bridge port", n))
	}
	return out
}

// healing reports what self-healing repaired since the daemon started and
// what it could not repair.
func (d *doctor) healing() []api.Finding {
	st := d.eng.HealStatus()
	var out []api.Finding
	for _, obj := range slices.Sorted(maps.Keys(st.Unrepaired)) {
		out = append(out, finding(api.LevelError, "self-healing", "%s: %s", obj, st.Unrepaired[obj]))
	}
	if !st.Running {
		return append(out, finding(api.LevelInfo, "self-healing", "self-healing is off (daemon started with --self-heal=false, or it could not watch the kernel): drift is reported here but not repaired"))
	}
	out = append(out, finding(api.LevelInfo, "self-healing", "repairs since start: %s", formatRepairs(st.Repairs)))
	return out
}

func formatRepairs(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
