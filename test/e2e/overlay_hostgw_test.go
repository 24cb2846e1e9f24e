package e2e

import (
	"strings"
	"testing"
	"time"

	"pontoon/internal/store/etcdtest"
)

// Host-gw overlay (issue #13, section 4): two hosts on one L2 segment
// (under0, 192.0.2.0/24) reach each other's slices by plain routes via
// each other's underlay address — no VXLAN device, the underlay's MTU,
// no NAT between the network's sandboxes — with the network's isolation,
// names and NAT to the outside as on one host. A third host on another
// segment (203.0.113.0/24, routed through h1) is refused by name, in the
// doctor of the hosts that cannot reach it.
func TestOverlayHostGW(t *testing.T) {
	cli := etcdtest.Start(t)
	ep := cli.Endpoints()[0]
	h1, h2 := overlayPair(t, ep)

	if msg := h1.PFail("network", "create", "bad", "--driver", "overlay", "--mode", "host-route", "--subnet", "10.209.0.0/16"); !strings.Contains(msg, "vxlan, host-gw") {
		t.Errorf("unknown mode: %s", msg)
	}
	if msg := h1.PFail("network", "create", "bad", "--mode", "host-gw", "--subnet", "10.209.0.0/16"); !strings.Contains(msg, "--driver overlay") {
		t.Errorf("--mode on a bridge network: %s", msg)
	}
	h1.P("network", "create", "fast", "--driver", "overlay", "--mode", "host-gw", "--subnet", "10.201.0.0/16")
	if out, ok := within(10*time.Second, func() (string, bool) {
		o := h2.P("network", "ls")
		return o, strings.Contains(o, "overlay/host-gw")
	}); !ok {
		t.Fatalf("h2 did not make its part of fast (host-gw): %s", out)
	}
	if out := h2.P("network", "inspect", "fast"); !strings.Contains(out, "mode host-gw") || strings.Count(out, "Overlay:") != 1 || strings.Contains(out, "vtep") {
		t.Errorf("network inspect: want the mode on one Overlay line and no VXLAN device (vtep) in host-gw mode:\n%s", out)
	}
	h1.P("sandbox", "create", "a", "--network", "fast")
	h2.P("sandbox", "create", "b", "--network", "fast")
	a, b := h1.IP("a", "fast"), h2.IP("b", "fast")
	if !strings.HasPrefix(a, "10.201.") || !strings.HasPrefix(b, "10.201.") || a[:9] == b[:9] {
		t.Fatalf("addresses %s and %s: want each host's own slice of 10.201.0.0/16", a, b)
	}
	reachWithin(t, h1, "a", b)
	// The data plane: a route via the other's underlay address, no tunnel.
	if r := h1.In(h1.NS, "ip", "route", "show", "proto", "112"); !strings.Contains(r, "via 192.0.2.2 dev under0") {
		t.Errorf("h1's host-gw routes:\n%s", r)
	}
	if l := h1.HostLinks("ptvx-"); len(l) != 0 {
		t.Errorf("host-gw network made VXLAN devices: %v", l)
	}
	h2.MustPing("b", a)
	// MTU: the underlay's (1500), nothing in front; a full-size packet
	// with DF set passes both ways.
	if out := h1.In(h1.SandboxNS("a"), "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1500 ") {
		t.Errorf("a's eth0: %s, want mtu 1500 (the underlay's)", out)
	}
	for _, c := range []struct {
		h      *Host
		sb, to string
	}{{h1, "a", b}, {h2, "b", a}} {
		if out, err := c.h.TryIn(c.h.SandboxNS(c.sb), "ping", "-c1", "-W2", "-M", "do", "-s", "1472", c.to); err != nil {
			t.Errorf("full-size ping with DF from %s to %s: %v\n%s", c.sb, c.to, err, out)
		}
	}
	// TCP with no NAT: b sees a's own address.
	srv := ServeTCP(t, h2.SandboxNS("b"), b+":7200")
	if line, err := DialFrom(t, h1.SandboxNS("a"), srv.Addr); err != nil || !strings.Contains(line, "hello") {
		t.Fatalf("TCP a → b: %q, %v", line, err)
	}
	if p := srv.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], a+":") {
		t.Errorf("b saw %v, want a connection from %s", p, a)
	}
	if out, ok := within(5*time.Second, func() (string, bool) {
		o, err := h1.TryP("exec", "a", "--", "ping", "-c1", "-W2", "b")
		return o, err == nil
	}); !ok {
		t.Errorf("a pings b by name across the hosts:\n%s", out)
	}
	// The outside, through each host's own NAT.
	h1.MustPing("a", RouterIP)
	h2.MustPing("b", RouterIP)
	// Isolation: a sandbox of another network on h1 does not reach b, nor
	// b it.
	h1.P("sandbox", "create", "other")
	h1.MustNotPing("other", b)
	h2.MustNotPing("b", h1.IP("other", "pontoon"))
	for _, h := range []*Host{h1, h2} {
		if out, err := h.TryP("doctor"); err != nil {
			t.Errorf("doctor: %v\n%s", err, out)
		}
	}

	// A third host on another segment: its underlay 203.0.113.3/24 is a
	// cable to h1 (seg1, 203.0.113.1/24), routed on to under0's segment.
	h3 := NewHost(t)
	h1.In(h1.NS, "ip", "link", "add", "seg1", "type", "veth", "peer", "name", "under0", "netns", h3.NS)
	h1.In(h1.NS, "ip", "addr", "add", "203.0.113.1/24", "dev", "seg1")
	h1.In(h1.NS, "ip", "link", "set", "seg1", "up")
	h3.In(h3.NS, "ip", "addr", "add", "203.0.113.3/24", "dev", "under0")
	h3.In(h3.NS, "ip", "link", "set", "under0", "up")
	h3.In(h3.NS, "ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.1")
	h2.In(h2.NS, "ip", "route", "add", "203.0.113.0/24", "via", "192.0.2.1")
	h3.Stop()
	h3.Start("--cluster", ep, "--node-name", "h3", "--underlay", "under0")
	waitNetwork(t, h3, "fast")
	// What a user sees: doctor on h1 names h3 and why, and so does h3's
	// for h1 and h2.
	for _, c := range []struct {
		h     *Host
		nodes []string
	}{{h1, []string{"h3"}}, {h2, []string{"h3"}}, {h3, []string{"h1", "h2"}}} {
		if out, ok := within(10*time.Second, func() (string, bool) {
			o, err := c.h.TryP("doctor")
			ok := err != nil && strings.Contains(o, "not on under0's L2 segment") && strings.Contains(o, "--mode vxlan")
			for _, n := range c.nodes {
				ok = ok && strings.Contains(o, "node "+n+" ")
			}
			return o, ok
		}); !ok {
			t.Errorf("doctor does not report %v off the segment:\n%s", c.nodes, out)
		}
	}
	// The others still reach each other.
	h1.MustPing("a", b)

	h1.P("sandbox", "rm", "a")
	h2.P("sandbox", "rm", "b")
	h1.P("network", "rm", "fast")
	if out, ok := within(10*time.Second, func() (string, bool) {
		o := h2.In(h2.NS, "ip", "route", "show", "proto", "112")
		return o, strings.TrimSpace(o) == ""
	}); !ok {
		t.Errorf("h2 kept host-gw routes after the network went: %s", out)
	}
}
