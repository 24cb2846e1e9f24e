package topoview

import (
	"strings"

	"pontoon/internal/model"
)

// Path is where a traced packet goes on the picture: the objects it
// crosses, in order, named as the picture's parts are (Part.Kind and
// Part.Name), and where it stops when it does not arrive.
type Path struct {
	Steps []Step `json:"steps"`
	// Result is the trace's verdict (model.VerdictDelivered, …).
	Result string `json:"result"`
	// Stop is the object where the packet is dropped, or found no way
	// on (the last step); absent when it was delivered or left the host.
	Stop *Step `json:"stop,omitempty"`
}

// Step is one object of a Path. Hop is the index of the first hop of the
// trace that reached it (-1: the probe's source).
type Step struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	Hop  int    `json:"hop"`
}

// TracePath maps a trace's hops onto the objects of the topology's
// picture: the source sandbox (or the host), the veth ends it crosses
// (ports), the bridges (networks), the host's IP stack and its uplinks
// (the host), the line between the host and a bridge when the packet is
// routed through the host, and the sandbox it reaches. Hops name these
// objects in their text (host ends and bridges by their names) and in
// Where (sandboxes); ARP and netfilter hops cross no object of the
// picture, and a forwarding lookup (fdb) only says which bridge decides.
func TracePath(t *model.Topology, tr *model.Trace) *Path {
	ports := map[string]bool{}
	bridges := map[string]string{} // bridge → network
	uplinks := map[string]bool{}
	sandboxes := map[string]bool{}
	for _, n := range t.Networks {
		bridges[n.Bridge] = n.Name
		for _, p := range n.Ports {
			ports[p.HostIf] = true
		}
	}
	for _, u := range t.Uplinks {
		uplinks[u.Name] = true
	}
	for _, s := range t.Sandboxes {
		sandboxes[s.Name] = true
	}

	p := &Path{Steps: []Step{}, Result: tr.Verdict.Result}
	add := func(kind, name string, hop int) {
		if last := len(p.Steps) - 1; last >= 0 && p.Steps[last].Kind == kind && p.Steps[last].Name == name {
			return
		}
		// Between the host's IP stack and a bridge, the packet crosses
		// the line that joins them in the picture.
		if last := len(p.Steps) - 1; last >= 0 {
			prev := p.Steps[last]
			switch {
			case prev.Kind == "host" && kind == "network":
				p.Steps = append(p.Steps, Step{Kind: "hostlink", Name: name, Hop: hop})
			case prev.Kind == "network" && kind == "host":
				p.Steps = append(p.Steps, Step{Kind: "hostlink", Name: prev.Name, Hop: hop})
			}
		}
		p.Steps = append(p.Steps, Step{Kind: kind, Name: name, Hop: hop})
	}
	sandboxIn := func(where string) (string, bool) {
		name, ok := strings.CutPrefix(where, "sandbox ")
		return name, ok && sandboxes[name]
	}

	switch from := tr.Probe.From; {
	case strings.HasPrefix(from, "sandbox "):
		if name, ok := sandboxIn(from); ok {
			add("sandbox", name, -1)
		}
	case from == "host", strings.HasPrefix(from, "LAN "):
		add("host", "", -1)
	}
	for i, h := range tr.Hops {
		sb, inSandbox := sandboxIn(h.Where)
		switch h.Kind {
		case model.HopNeigh, model.HopNft:
			continue
		case model.HopRoute, model.HopDeliver:
			if inSandbox {
				add("sandbox", sb, i)
			} else if h.Where == "host" || h.Where == "outside" {
				add("host", "", i)
			}
			continue
		}
		// link, bridge, fdb: the objects the text names, in its order.
		for _, word := range strings.Fields(h.Text) {
			word = strings.Trim(word, "():,;'\"")
			switch {
			case ports[word] && h.Kind != model.HopFDB:
				add("port", word, i)
			case bridges[word] != "":
				add("network", bridges[word], i)
			case uplinks[word] && h.Kind == model.HopLink:
				add("host", "", i)
			}
		}
		if inSandbox {
			add("sandbox", sb, i)
		}
	}
	switch tr.Verdict.Result {
	case model.VerdictDropped, model.VerdictUnreachable:
		if n := len(p.Steps); n > 0 {
			stop := p.Steps[n-1]
			p.Stop = &stop
		}
	}
	return p
}
