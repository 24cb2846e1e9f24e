package topoview

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/model"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// known is a host with two networks, a sandbox on both, one on the
// default network with a published port, and drift: a port down, a gone
// adopted namespace, an incomplete firewall.
func known() *model.Topology {
	return &model.Topology{
		Host:    "h1",
		Uplinks: []model.TopoUplink{{Name: "uplink0", Index: 2, MTU: 1500}},
		Drift:   []string{"firewall: the set of bridges holds 1 of 2 networks"},
		Networks: []*model.TopoNetwork{
			{Name: "pontoon", Driver: "bridge", Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("10.88.0.0/16"), Gateway: netip.MustParseAddr("10.88.0.1")}}, Bridge: "pontoon0", BridgeIndex: 4,
				Ports: []*model.TopoPort{
					{Sandbox: "a", HostIf: "ptv-aaaaaaaaaa", HostIndex: 7, IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.88.0.2")}, MAC: "02:42:0a:58:00:02", Names: []string{"a"}},
					{Sandbox: "web", HostIf: "ptv-bbbbbbbbbb", HostIndex: 9, IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.88.0.3")}, MAC: "02:42:0a:58:00:03", Names: []string{"web", "www"},
						Published: []string{"8080:80/tcp"}, Drift: []string{"host end ptv-bbbbbbbbbb is down"}},
				}},
			{Name: "back", Driver: "bridge", Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("10.90.1.0/24"), Gateway: netip.MustParseAddr("10.90.1.1")}}, Internal: true, Bridge: "ptbr-12345678", BridgeIndex: 5,
				Ports: []*model.TopoPort{
					{Sandbox: "a", HostIf: "ptv-cccccccccc", HostIndex: 8, IfName: "eth1", IPs: []netip.Addr{netip.MustParseAddr("10.90.1.10")}, MAC: "02:42:0a:5a:01:0a", Names: []string{"a", "db"}},
				}},
			// A direct link: no bridge, no gateway, endpoints without a
			// host end.
			{Name: "wire", Driver: "link", Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("10.97.0.0/30")}},
				Ports: []*model.TopoPort{
					{Sandbox: "a", IfName: "eth2", IPs: []netip.Addr{netip.MustParseAddr("10.97.0.1")}, MAC: "02:42:0a:61:00:01", Names: []string{"a"}},
					{Sandbox: "web", IfName: "eth1", IPs: []netip.Addr{netip.MustParseAddr("10.97.0.2")}, MAC: "02:42:0a:61:00:02", Names: []string{"web"}},
				}},
		},
		Sandboxes: []*model.TopoSandbox{
			{Name: "a", Kind: "pontoon", Netns: "/run/pontoon/netns/a", Networks: []string{"back", "pontoon", "wire"}},
			{Name: "web", Kind: "pontoon", Netns: "/run/pontoon/netns/web", Networks: []string{"pontoon", "wire"}},
			{Name: "old", Kind: "pid", Netns: "/proc/4242/ns/net", Networks: []string{}, Drift: []string{"namespace /proc/4242/ns/net is gone or was replaced"}},
		},
	}
}

func golden(t *testing.T, name string, render func(io.Writer, *model.Topology) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := render(&b, known()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/topoview -update to write it)", err)
	}
	if d := cmp.Diff(string(want), b.String()); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", name, d)
	}
	return b.Bytes()
}

func TestText(t *testing.T) { golden(t, "known.txt", Text) }
func TestDOT(t *testing.T)  { golden(t, "known.dot", DOT) }

// The SVG is well-formed XML, with one group per network, sandbox and
// port, and the drifted ones drawn in red.
func TestSVG(t *testing.T) {
	out := golden(t, "known.svg", SVG)
	dec := xml.NewDecoder(bytes.NewReader(out))
	groups := map[string]int{}
	red := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			for _, a := range se.Attr {
				if se.Name.Local == "g" && a.Name.Local == "class" {
					groups[a.Value]++
				}
				if (a.Name.Local == "stroke" || a.Name.Local == "fill") && a.Value == "#d00" {
					red++
				}
			}
		}
	}
	if groups["network"] != 3 || groups["sandbox"] != 3 || groups["port"] != 5 {
		t.Errorf("groups %v, want 3 networks, 3 sandboxes, 5 ports (the direct link's two without a host end among them)", groups)
	}
	if red < 3 { // the host (firewall), the downed port (line + label), the gone sandbox
		t.Errorf("%d red strokes, want the drifted objects in red", red)
	}
}

// Many sandboxes wrap into rows of 12: the picture of 30 is 12 boxes wide
// and 3 rows tall, each sandbox where its row and column put it, and every
// port's line ends at the top of its sandbox.
func TestSVGRows(t *testing.T) {
	tp := &model.Topology{Host: "h1", Networks: []*model.TopoNetwork{{Name: "pontoon", Bridge: "pontoon0"}}}
	for i := range 30 {
		name := fmt.Sprintf("s%02d", i)
		tp.Sandboxes = append(tp.Sandboxes, &model.TopoSandbox{Name: name, Kind: "pontoon", Networks: []string{"pontoon"}})
		tp.Networks[0].Ports = append(tp.Networks[0].Ports, &model.TopoPort{Sandbox: name, HostIf: "ptv-" + name, IfName: "eth0"})
	}
	var b bytes.Buffer
	if err := SVG(&b, tp); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Width  int `xml:"width,attr"`
		Height int `xml:"height,attr"`
		G      []struct {
			Class string `xml:"class,attr"`
			Name  string `xml:"data-name,attr"`
			Rect  struct {
				X int `xml:"x,attr"`
				Y int `xml:"y,attr"`
			} `xml:"rect"`
			Line struct {
				X2 int `xml:"x2,attr"`
				Y2 int `xml:"y2,attr"`
			} `xml:"line"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if want := 2*margin + 12*boxW + 11*gapX; doc.Width != want {
		t.Errorf("width %d, want %d (12 columns)", doc.Width, want)
	}
	if want := rowSb + 3*boxH + 2*rowGap + margin; doc.Height != want {
		t.Errorf("height %d, want %d (3 rows)", doc.Height, want)
	}
	top := map[string][2]int{}
	for _, g := range doc.G {
		if g.Class == "sandbox" {
			top[g.Name] = [2]int{g.Rect.X + boxW/2, g.Rect.Y}
		}
	}
	for i := range 30 {
		name := fmt.Sprintf("s%02d", i)
		if y := top[name][1]; y != rowSb+(i/12)*(boxH+rowGap) {
			t.Errorf("%s is at y %d, want row %d", name, y, i/12)
		}
	}
	ports := 0
	for _, g := range doc.G {
		if g.Class == "port" {
			ports++
			if end := [2]int{g.Line.X2, g.Line.Y2}; end != top[strings.TrimPrefix(g.Name, "ptv-")] {
				t.Errorf("port %s ends at %v, not at the top of its sandbox %v", g.Name, end, top[strings.TrimPrefix(g.Name, "ptv-")])
			}
		}
	}
	if ports != 30 {
		t.Errorf("%d ports drawn, want 30", ports)
	}
}

// The picture's parts are what SVG writes, one element each, named by
// kind and name once: what the web page keys its updates on.
func TestDrawParts(t *testing.T) {
	p := Draw(known())
	var b bytes.Buffer
	if err := SVG(&b, known()); err != nil {
		t.Fatal(err)
	}
	whole := p.Head
	seen := map[string]bool{}
	kinds := map[string]int{}
	for _, part := range p.Parts {
		whole += part.SVG + "\n"
		key := part.Kind + ":" + part.Name
		if seen[key] {
			t.Errorf("two parts named %s", key)
		}
		seen[key] = true
		kinds[part.Kind]++
		var g struct {
			XMLName xml.Name
			Class   string `xml:"class,attr"`
			Name    string `xml:"data-name,attr"`
		}
		if err := xml.Unmarshal([]byte(part.SVG), &g); err != nil || g.XMLName.Local != "g" || g.Class != part.Kind || g.Name != part.Name {
			t.Errorf("part %s is not one <g class=%q data-name=%q>: %v\n%s", key, part.Kind, part.Name, err, part.SVG)
		}
	}
	if whole+"</svg>\n" != b.String() {
		t.Errorf("the parts are not the SVG:\n%s", whole)
	}
	if want := map[string]int{"host": 1, "hostlink": 3, "network": 3, "port": 5, "sandbox": 3}; !cmp.Equal(kinds, want) {
		t.Errorf("parts %v, want %v", kinds, want)
	}
}
