// Package topoview draws a model.Topology: as a text tree, as Graphviz DOT
// text, and as SVG laid out in-process (no Graphviz process, no network:
// the picture is small and regular — a row of networks over a row of
// sandboxes — so a fixed layered layout does). Pure functions, no I/O.
package topoview

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strings"

	"pontoon/internal/model"
)

// Text writes the topology as a tree: networks → bridge → ports → veth
// pairs → sandboxes, with addresses, names, published ports, and drift
// marked with "✗".
func Text(w io.Writer, t *model.Topology) error {
	var b strings.Builder
	fmt.Fprintf(&b, "host %s", t.Host)
	for _, u := range t.Uplinks {
		fmt.Fprintf(&b, " — uplink %s (ifindex %d, mtu %d)", u.Name, u.Index, u.MTU)
	}
	b.WriteString("\n")
	for _, d := range t.Drift {
		fmt.Fprintf(&b, "✗ %s\n", d)
	}
	for _, n := range t.Networks {
		kind := ""
		if n.Internal {
			kind = " internal"
		}
		on := fmt.Sprintf("bridge %s (ifindex %d)", n.Bridge, n.BridgeIndex)
		if n.Bridge == "" {
			on = "driver " + n.Driver + ", no bridge"
		}
		fmt.Fprintf(&b, "network %s%s  %s  gateway %s  %s\n", n.Name, kind, n.SubnetString(), n.GatewayString(), on)
		for _, d := range n.Drift {
			fmt.Fprintf(&b, "│ ✗ %s\n", d)
		}
		if len(n.Ports) == 0 {
			b.WriteString("└── (no ports)\n")
		}
		for i, p := range n.Ports {
			branch, cont := "├── ", "│   "
			if i == len(n.Ports)-1 {
				branch, cont = "└── ", "    "
			}
			host := fmt.Sprintf("%s (ifindex %d)", p.HostIf, p.HostIndex)
			if p.HostIf == "" {
				host = "no host end" // a direct link's or a macvlan's
			}
			fmt.Fprintf(&b, "%s%s ⇄ %s in sandbox %s  %s  %s\n", branch, host, p.IfName, p.Sandbox, p.IPString(), p.MAC)
			fmt.Fprintf(&b, "%s  names %s", cont, strings.Join(p.Names, ", "))
			if len(p.Published) > 0 {
				fmt.Fprintf(&b, "  published %s", strings.Join(p.Published, ", "))
			}
			b.WriteString("\n")
			for _, d := range p.Drift {
				fmt.Fprintf(&b, "%s  ✗ %s\n", cont, d)
			}
		}
	}
	for _, s := range t.Sandboxes {
		if len(s.Networks) == 0 || len(s.Drift) > 0 {
			fmt.Fprintf(&b, "sandbox %s [%s %s]", s.Name, s.Kind, s.Netns)
			if len(s.Networks) == 0 {
				b.WriteString(" on no network")
			}
			b.WriteString("\n")
			for _, d := range s.Drift {
				fmt.Fprintf(&b, "  ✗ %s\n", d)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DOT writes the topology as a Graphviz digraph: a cluster per network
// (bridge and ports), sandboxes as boxes, drift in red.
func DOT(w io.Writer, t *model.Topology) error {
	var b strings.Builder
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
	b.WriteString("digraph pontoon {\n  rankdir=TB;\n  node [fontname=\"sans-serif\", fontsize=10];\n")
	fmt.Fprintf(&b, "  host [label=%s, shape=house];\n", q("host "+t.Host))
	for i, n := range t.Networks {
		color := "black"
		if len(n.Drift) > 0 {
			color = "red"
		}
		fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%s;\n    color=%s;\n", i, q("network "+n.Name+" "+n.SubnetString()), color)
		fmt.Fprintf(&b, "    %s [label=%s, shape=box, style=rounded, color=%s];\n", q(netKey(n)), q(netLabel(n)+"\\n"+n.GatewayString()), color)
		for _, p := range n.Ports {
			pc := "black"
			if len(p.Drift) > 0 {
				pc = "red"
			}
			fmt.Fprintf(&b, "    %s [label=%s, shape=ellipse, color=%s];\n", q("port:"+PortKey(p)), q(portLabel(p)), pc)
			fmt.Fprintf(&b, "    %s -> %s [dir=none, color=%s];\n", q(netKey(n)), q("port:"+PortKey(p)), pc)
		}
		b.WriteString("  }\n")
		fmt.Fprintf(&b, "  host -> %s [dir=none];\n", q(netKey(n)))
	}
	for _, s := range t.Sandboxes {
		color := "black"
		if len(s.Drift) > 0 {
			color = "red"
		}
		fmt.Fprintf(&b, "  %s [label=%s, shape=box, color=%s];\n", q("sb:"+s.Name), q("sandbox "+s.Name+"\\n"+s.Kind), color)
	}
	for _, n := range t.Networks {
		for _, p := range n.Ports {
			fmt.Fprintf(&b, "  %s -> %s [dir=none, label=%s];\n", q("port:"+PortKey(p)), q("sb:"+p.Sandbox), q(p.IfName+" "+p.IPString()))
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// SVG layout constants (pixels).
const (
	boxW, boxH = 180, 46
	gapX       = 30
	rowHost    = 20
	rowNet     = 110
	rowSb      = 290
	margin     = 20
	// More sandboxes than rowMax wrap into rows of rowMax, rowGap apart:
	// 500 sandboxes in one row would make a picture 100 000 pixels wide.
	rowMax = 12
	rowGap = 44
)

// Picture is the SVG drawing of a topology as a frame (the root element
// and a white background) and parts: one <g> element per object, each
// named by the object's kind and name, in drawing order. SVG writes it
// whole; the web page keeps the parts it has and replaces only those whose
// text changed (the picture of 500 sandboxes has some 4000 elements).
type Picture struct {
	Width  int `json:"width"`
	Height int `json:"height"`
	// Head is the start of the SVG text: the root element and the
	// background; the parts follow, then "</svg>".
	Head  string `json:"head"`
	Parts []Part `json:"parts"`
}

// Part is one object of a Picture: Kind is host, hostlink (the line from
// the host to a network's bridge, named by the network), network, port
// (named by its host end) or sandbox; SVG is its <g> element, with
// class=Kind and data-name=Name.
type Part struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	SVG  string `json:"svg"`
}

func head(width, height int) string {
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n"+
		`<rect width="100%%" height="100%%" fill="white"/>`+"\n", width, height, width, height)
}

// SVG writes the topology as an SVG picture (see Draw).
func SVG(w io.Writer, t *model.Topology) error {
	p := Draw(t)
	var b strings.Builder
	b.WriteString(p.Head)
	for _, part := range p.Parts {
		b.WriteString(part.SVG)
		b.WriteString("\n")
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Draw lays the topology out: the host on top, a row of networks
// (bridges) under it, the sandboxes at the bottom (in rows of at most 12),
// a line per port from a bridge to a sandbox labelled with the veth's
// ends and the address; drift is drawn in red. The lines are drawn before
// the sandboxes, so that lines to lower rows pass behind the boxes of
// upper ones.
func Draw(t *model.Topology) *Picture {
	nets := t.Networks
	sbs := append([]*model.TopoSandbox(nil), t.Sandboxes...)
	sort.Slice(sbs, func(i, j int) bool { return sbs[i].Name < sbs[j].Name })
	perRow := min(len(sbs), rowMax)
	rows := 1
	if len(sbs) > 0 {
		rows = (len(sbs) + perRow - 1) / perRow
	}
	cols := max(len(nets), perRow, 1)
	width := margin*2 + cols*boxW + (cols-1)*gapX
	height := rowSb + rows*boxH + (rows-1)*rowGap + margin
	x := func(i, n int) int { // centre n boxes in the width
		total := n*boxW + (n-1)*gapX
		return (width-total)/2 + i*(boxW+gapX)
	}
	e := html.EscapeString
	pic := &Picture{Width: width, Height: height, Head: head(width, height), Parts: make([]Part, 0, 1+2*len(nets)+2*len(sbs))}
	var b strings.Builder
	part := func(kind, name string) {
		pic.Parts = append(pic.Parts, Part{Kind: kind, Name: name, SVG: b.String()})
		b.Reset()
	}
	hx := x(0, 1)
	hostColor := "#333"
	if len(t.Drift) > 0 {
		hostColor = "#d00"
	}
	uplink := ""
	for _, u := range t.Uplinks {
		uplink += " · " + u.Name
	}
	fmt.Fprintf(&b, `<g class="host"><rect x="%d" y="%d" width="%d" height="%d" rx="6" fill="#eef" stroke="%s"/><text x="%d" y="%d" text-anchor="middle">host %s%s</text>`,
		hx, rowHost, boxW, boxH, hostColor, hx+boxW/2, rowHost+boxH/2+4, e(t.Host), e(uplink))
	for _, d := range t.Drift {
		fmt.Fprintf(&b, `<title>%s</title>`, e(d))
	}
	b.WriteString("</g>")
	part("host", "")
	netX := map[string]int{}
	for i, n := range nets {
		nx := x(i, len(nets))
		netX[n.Name] = nx
		color := "#333"
		if len(n.Drift) > 0 {
			color = "#d00"
		}
		fmt.Fprintf(&b, `<g class="hostlink" data-name="%s"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/></g>`, e(n.Name), hx+boxW/2, rowHost+boxH, nx+boxW/2, rowNet)
		part("hostlink", n.Name)
		fmt.Fprintf(&b, `<g class="network" data-name="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="10" fill="#efe" stroke="%s"/>`, e(n.Name), nx, rowNet, boxW, boxH, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">%s</text>`, nx+boxW/2, rowNet+18, e("network "+n.Name))
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, nx+boxW/2, rowNet+34, e(n.Bridge+" "+n.SubnetString()))
		if len(n.Drift) > 0 {
			fmt.Fprintf(&b, `<title>%s</title>`, e(strings.Join(n.Drift, "; ")))
		}
		b.WriteString("</g>")
		part("network", n.Name)
	}
	type at struct{ x, y int }
	sbAt := map[string]at{}
	for i, s := range sbs {
		row := i / max(perRow, 1)
		inRow := min(perRow, len(sbs)-row*perRow)
		sbAt[s.Name] = at{x(i%max(perRow, 1), inRow), rowSb + row*(boxH+rowGap)}
	}
	labels := map[string]int{} // port labels so far above each sandbox
	for _, n := range nets {
		for k, p := range n.Ports {
			sb, ok := sbAt[p.Sandbox]
			if !ok {
				continue
			}
			color := "#555"
			if len(p.Drift) > 0 {
				color = "#d00"
			}
			x1, y1 := netX[n.Name]+boxW/2, rowNet+boxH
			x2, y2 := sb.x+boxW/2, sb.y
			// Labels of ports of one network are staggered so they do not
			// overlap; in rows, each goes in the gap above its sandbox.
			lx := x1 + (x2-x1)*(k%3+1)/4
			ly := y1 + (y2-y1)*(k%3+1)/4
			faint := ""
			if rows > 1 {
				lx, ly = x2, y2-6-14*(labels[p.Sandbox]%2)
				labels[p.Sandbox]++
				// Many lines share the space under a bridge: the labels
				// and the drifted lines stand out of the others.
				if len(p.Drift) == 0 {
					faint = ` stroke-opacity="0.3"`
				}
			}
			fmt.Fprintf(&b, `<g class="port" data-name="%s"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5"%s/>`, e(PortKey(p)), x1, y1, x2, y2, color, faint)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">%s</text>`, lx, ly, color, e(portLabel(p)+" ⇄ "+p.IfName+" "+p.IPString()))
			if len(p.Drift) > 0 {
				fmt.Fprintf(&b, `<title>%s</title>`, e(strings.Join(p.Drift, "; ")))
			}
			b.WriteString("</g>")
			part("port", PortKey(p))
		}
	}
	for _, s := range sbs {
		sx, sy := sbAt[s.Name].x, sbAt[s.Name].y
		color := "#333"
		if len(s.Drift) > 0 {
			color = "#d00"
		}
		fmt.Fprintf(&b, `<g class="sandbox" data-name="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="4" fill="#ffe" stroke="%s"/>`, e(s.Name), sx, sy, boxW, boxH, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">%s</text>`, sx+boxW/2, sy+18, e("sandbox "+s.Name))
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, sx+boxW/2, sy+34, e(s.Kind))
		if len(s.Drift) > 0 {
			fmt.Fprintf(&b, `<title>%s</title>`, e(strings.Join(s.Drift, "; ")))
		}
		b.WriteString("</g>")
		part("sandbox", s.Name)
	}
	return pic
}

// PortKey names a port in the picture and the graph: its host end, or,
// for an endpoint without one (a direct link's, a macvlan's), its sandbox
// and interface, which are unique too.
func PortKey(p *model.TopoPort) string {
	if p.HostIf != "" {
		return p.HostIf
	}
	return p.Sandbox + "/" + p.IfName
}

func portLabel(p *model.TopoPort) string {
	if p.HostIf != "" {
		return p.HostIf
	}
	return "no host end"
}

// netKey names a network's node in the graph: its bridge, or the network
// itself when it has none.
func netKey(n *model.TopoNetwork) string {
	if n.Bridge != "" {
		return "br:" + n.Bridge
	}
	return "net:" + n.Name
}

func netLabel(n *model.TopoNetwork) string {
	if n.Bridge != "" {
		return n.Bridge
	}
	return "driver " + n.Driver
}
