package trace

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// A host with a VXLAN overlay network web: its slice 10.205.1.0/24 on
// ptbr-web (sandbox w1), its VXLAN device ptvx-60 (10.205.1.0/32) with a
// route to the other node's slice 10.205.2.0/24; this host is
// 198.51.100.1 on the underlay, the other node 198.51.100.3.
func vxlanTopology() *Topology {
	web := Network{Name: "web", Bridge: "ptbr-web", Subnet: pfx("10.205.1.0/24"), Gateway: ip("10.205.1.1"), ICC: true, Masquerade: true}
	w1 := Endpoint{Sandbox: "w1", Network: "web", IfName: "eth0", HostIf: "ptv-w1", HostIfIndex: 20, IP: ip("10.205.1.2"),
		MAC: model.MACFromIP(ip("10.205.1.2")), Gateway: web.Gateway, DefaultRoute: true}
	fs := firewall.State{Networks: []firewall.Network{{Name: "web", Bridge: "ptbr-web", Links: []string{"ptvx-60"},
		Subnets: []model.Subnet{{Prefix: web.Subnet, Gateway: web.Gateway, Masquerade: true}},
		Remotes: []netip.Prefix{pfx("10.205.0.0/16")}, RemoteVia: "ptvx-60"}},
		VXLAN: firewall.VXLANUnderlay{Local: ip("198.51.100.1"), Port: 4789, Peers: []netip.Addr{ip("198.51.100.3")}}}
	return &Topology{Networks: []Network{web}, Endpoints: []Endpoint{w1},
		Addrs: []HostAddr{{Dev: "uplink0", Prefix: pfx("198.51.100.1/24")}, {Dev: "ptbr-web", Prefix: pfx("10.205.1.1/24")},
			{Dev: "ptvx-60", Prefix: pfx("10.205.1.0/32")}},
		Routes: []HostRoute{{Dst: pfx("198.51.100.0/24"), Dev: "uplink0"}, {Dst: pfx("0.0.0.0/0"), Dev: "uplink0", Gateway: ip("198.51.100.2")},
			{Dst: pfx("10.205.2.0/24"), Dev: "ptvx-60", Gateway: ip("10.205.2.0")}},
		Firewall: firewall.NewEvaluator(fs)}
}

func TestPredictVXLAN(t *testing.T) {
	via := func(p Probe, dev string) Probe { p.Via = dev; return p }
	for _, c := range []struct {
		name  string
		pr    Probe
		path  []string
		words []string // in the verdict's sentence
	}{
		{"a remote member: out of the VXLAN device, (j) passes it, (i) accepts it",
			lan("10.205.2.5").to("w1:80"), []string{
				"link host: arrives on ptvx-60 from 10.205.2.5",
				"inet pontoon loopback-guard: policy accept",
				"inet pontoon prerouting: policy accept",
				"route host: 10.205.1.2 dev ptbr-web: forwarded",
				"inet pontoon forward: remote-in accept",
				"inet pontoon postrouting: policy accept",
				"neigh host: ARP 10.205.1.2 is at 02:42:0a:cd:01:02 on ptbr-web (sandbox w1)",
				"fdb host: bridge ptbr-web: 02:42:0a:cd:01:02 is on port ptv-w1 (sandbox w1)",
				"bridge host: bridge ptbr-web → port ptv-w1",
				"link sandbox w1: ptv-w1 → eth0 of sandbox w1",
				"deliver sandbox w1: sandbox w1 receives 10.205.2.5 → 10.205.1.2:80/tcp on eth0",
				"=> delivered by remote-in at sandbox w1",
			}, nil},
		{"a frame injected into the tunnel, from outside the network's range",
			via(lan("203.0.113.9").to("w1:80"), "ptvx-60"), []string{
				"link host: arrives on ptvx-60 from 203.0.113.9",
				"inet pontoon loopback-guard: policy accept",
				"inet pontoon prerouting: policy accept",
				"route host: 10.205.1.2 dev ptbr-web: forwarded",
				"inet pontoon forward: overlay-source drop",
				"=> dropped by overlay-source at inet pontoon forward",
			}, []string{"network's range"}},
		{"… from this host's own slice",
			via(lan("10.205.1.77").to("w1:80"), "ptvx-60"), nil, []string{"dropped by pontoon's overlay-source rule"}},
		{"… for the host itself (its gateway)",
			via(lan("203.0.113.9").to("10.205.1.1"), "ptvx-60"), []string{
				"link host: arrives on ptvx-60 from 203.0.113.9",
				"inet pontoon loopback-guard: policy accept",
				"inet pontoon prerouting: policy accept",
				"route host: local 10.205.1.1: for the host itself (input)",
				"inet pontoon input: overlay-source drop",
				"=> dropped by overlay-source at inet pontoon input",
			}, nil},
		{"a VXLAN packet from a host of the underlay that is no node",
			lan("198.51.100.9").to("host:4789/udp"), []string{
				"link host: arrives on uplink0 from 198.51.100.9",
				"inet pontoon loopback-guard: policy accept",
				"inet pontoon prerouting: policy accept",
				"route host: local 198.51.100.1: for the host itself (input)",
				"inet pontoon input: not-a-peer drop",
				"=> dropped by not-a-peer at inet pontoon input",
			}, []string{"cluster's nodes"}},
		{"a cluster node's VXLAN packet: delivered, the frame inside not followed",
			lan("198.51.100.3").to("host:4789/udp"), []string{
				"link host: arrives on uplink0 from 198.51.100.3",
				"inet pontoon loopback-guard: policy accept",
				"inet pontoon prerouting: policy accept",
				"route host: local 198.51.100.1: for the host itself (input)",
				"inet pontoon input: policy accept",
				"deliver host: the host receives 198.51.100.3 → 198.51.100.1:4789/udp",
				"=> delivered by policy at host",
			}, []string{"VXLAN packet", "--via"}},
		{"another UDP port from the same stranger: not pontoon's business",
			lan("198.51.100.9").to("host:53/udp"), nil, []string{"up to the host"}},
		{"the host sending VXLAN to itself: not from a peer either",
			from("host").to("198.51.100.1:4789/udp"), []string{
				"route host: 198.51.100.1 dev lo src 198.51.100.1 (the host's own packet)",
				"inet pontoon output: policy accept",
				"inet pontoon input: not-a-peer drop",
				"=> dropped by not-a-peer at inet pontoon input",
			}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := Predict(vxlanTopology(), c.pr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.path != nil {
				wantPath(t, tr, c.path)
			}
			for _, w := range c.words {
				if !strings.Contains(tr.Verdict.Sentence, w) {
					t.Errorf("verdict %q lacks %q", tr.Verdict.Sentence, w)
				}
			}
		})
	}

	for _, c := range []struct {
		pr   Probe
		kind error
	}{
		{func() Probe { p := from("w1").to("host"); p.Via = "ptvx-60"; return p }(), model.ErrInvalid},
		{func() Probe { p := lan("203.0.113.9").to("w1"); p.Via = "ptvx-99"; return p }(), model.ErrNotFound},
	} {
		if _, err := Predict(vxlanTopology(), c.pr, nil); !errors.Is(err, c.kind) {
			t.Errorf("%+v: error %v, want %v", c.pr, err, c.kind)
		}
	}
}
