package topoview

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
	"pontoon/internal/trace"
)

// A host as the tracer and the picture each see it: networks pontoon (a,
// b; b publishes 8080:80), other (c), quiet (icc off: q1, q2); the uplink
// uplink0 with the default route.
func pathHost() (*trace.Topology, *model.Topology) {
	type netw struct{ name, bridge, subnet, gw string }
	nets := []netw{{"pontoon", "pontoon0", "10.88.0.0/16", "10.88.0.1"}, {"other", "ptbr-00000001", "10.95.0.0/24", "10.95.0.1"},
		{"quiet", "ptbr-00000002", "10.94.0.0/24", "10.94.0.1"}}
	sbs := []struct{ name, network, ip string }{{"a", "pontoon", "10.88.0.2"}, {"b", "pontoon", "10.88.0.3"}, {"c", "other", "10.95.0.2"},
		{"q1", "quiet", "10.94.0.2"}, {"q2", "quiet", "10.94.0.3"}}
	tt := &trace.Topology{
		Addrs:  []trace.HostAddr{{Dev: "uplink0", Prefix: netip.MustParsePrefix("198.51.100.1/24")}, {Dev: "pontoon0", Prefix: netip.MustParsePrefix("10.88.0.1/16")}},
		Routes: []trace.HostRoute{{Dst: netip.MustParsePrefix("198.51.100.0/24"), Dev: "uplink0"}, {Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "uplink0", Gateway: netip.MustParseAddr("198.51.100.2")}},
	}
	mt := &model.Topology{Host: "h1", Uplinks: []model.TopoUplink{{Name: "uplink0", Index: 2, MTU: 1500}}}
	fs := firewall.State{Ports: []firewall.Published{{PortMapping: model.PortMapping{HostPort: 8080, HostPortEnd: 8080, Port: 80, PortEnd: 80, Proto: "tcp"}, Targets: []netip.Addr{netip.MustParseAddr("10.88.0.3")}}}}
	byName := map[string]*model.TopoNetwork{}
	gws := map[string]netip.Addr{}
	for _, n := range nets {
		p, gw := netip.MustParsePrefix(n.subnet), netip.MustParseAddr(n.gw)
		tt.Networks = append(tt.Networks, trace.Network{Name: n.name, Bridge: n.bridge, Subnet: p, Gateway: gw, ICC: n.name != "quiet", Masquerade: true})
		fs.Networks = append(fs.Networks, firewall.Network{Name: n.name, Bridge: n.bridge, Subnets: []model.Subnet{{Prefix: p, Gateway: gw, Masquerade: true}}})
		tn := &model.TopoNetwork{Name: n.name, Bridge: n.bridge, Subnets: []model.Subnet{{Prefix: p, Gateway: gw}}}
		mt.Networks = append(mt.Networks, tn)
		byName[n.name] = tn
		gws[n.name] = gw
	}
	for i, s := range sbs {
		a := netip.MustParseAddr(s.ip)
		hostIf := fmt.Sprintf("ptv-%010d", i)
		tt.Endpoints = append(tt.Endpoints, trace.Endpoint{Sandbox: s.name, Network: s.network, IfName: "eth0", HostIf: hostIf, HostIfIndex: 10 + i,
			IP: a, MAC: model.MACFromIP(a), Gateway: gws[s.network], DefaultRoute: true})
		fs.Guards = append(fs.Guards, firewall.Guarded{Port: hostIf, MAC: model.MACFromIP(a), IPs: []netip.Addr{a}})
		byName[s.network].Ports = append(byName[s.network].Ports, &model.TopoPort{Sandbox: s.name, HostIf: hostIf, IfName: "eth0", IPs: []netip.Addr{a}})
		mt.Sandboxes = append(mt.Sandboxes, &model.TopoSandbox{Name: s.name, Kind: "pontoon", Networks: []string{s.network}})
	}
	tt.Firewall = firewall.NewEvaluator(fs)
	return tt, mt
}

// A trace's hops, predicted by package trace, drawn as the objects of the
// picture they cross, in order, with where the packet stops.
func TestTracePath(t *testing.T) {
	tt, mt := pathHost()
	port := func(sb string) string {
		for _, n := range mt.Networks {
			for _, p := range n.Ports {
				if p.Sandbox == sb {
					return "port:" + p.HostIf
				}
			}
		}
		return "port of " + sb + "?"
	}
	for _, c := range []struct {
		name  string
		probe trace.Probe
		want  []string
		stop  string
	}{
		{"on one bridge", trace.Probe{From: "a", To: "b", Proto: "tcp", Port: 80},
			[]string{"sandbox:a", port("a"), "network:pontoon", port("b"), "sandbox:b"}, ""},
		{"routed to another bridge: dropped in the host's forward chain", trace.Probe{From: "a", To: "c", Proto: "tcp", Port: 80},
			[]string{"sandbox:a", port("a"), "network:pontoon", "hostlink:pontoon", "host:"}, "host:"},
		{"to the host", trace.Probe{From: "a", To: "host", Proto: "icmp"},
			[]string{"sandbox:a", port("a"), "network:pontoon", "hostlink:pontoon", "host:"}, ""},
		{"from the host", trace.Probe{From: "host", To: "c", Proto: "tcp", Port: 80},
			[]string{"host:", "hostlink:other", "network:other", port("c"), "sandbox:c"}, ""},
		{"out through the uplink", trace.Probe{From: "a", To: "198.51.100.7", Proto: "icmp"},
			[]string{"sandbox:a", port("a"), "network:pontoon", "hostlink:pontoon", "host:"}, ""},
		{"from the LAN to a published port", trace.Probe{FromLAN: netip.MustParseAddr("198.51.100.7"), To: "host", Proto: "tcp", Port: 8080},
			[]string{"host:", "hostlink:pontoon", "network:pontoon", port("b"), "sandbox:b"}, ""},
		{"dropped by the bridge between isolated ports", trace.Probe{From: "q1", To: "q2", Proto: "tcp", Port: 80},
			[]string{"sandbox:q1", port("q1"), "network:quiet"}, "network:quiet"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := trace.Predict(tt, c.probe, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := TracePath(mt, tr)
			var got []string
			for _, s := range p.Steps {
				got = append(got, s.Kind+":"+s.Name)
				if s.Hop >= len(tr.Hops) {
					t.Errorf("step %s names hop %d of %d", s.Kind+":"+s.Name, s.Hop, len(tr.Hops))
				}
			}
			var hops []string
			for _, h := range tr.Hops {
				hops = append(hops, h.Kind+" "+h.Where+": "+h.Text)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("steps (-want +got):\n%s\nhops:\n%s\nverdict: %s", d, strings.Join(hops, "\n"), tr.Verdict.Sentence)
			}
			stop := ""
			if p.Stop != nil {
				stop = p.Stop.Kind + ":" + p.Stop.Name
			}
			if stop != c.stop || p.Result != tr.Verdict.Result {
				t.Errorf("stop %q, result %q; want stop %q (verdict: %s)", stop, p.Result, c.stop, tr.Verdict.Sentence)
			}
		})
	}
}
