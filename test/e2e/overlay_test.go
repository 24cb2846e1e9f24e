package e2e

import (
	"strings"
	"testing"
	"time"

	"pontoon/internal/store/etcdtest"
)

// Two hosts, each with a pontoon daemon, one etcd: an overlay network made
// on one host is made on the other too; sandboxes on the two hosts reach
// each other across the VXLAN tunnel with their own addresses; the network
// keeps its isolation and NAT to the outside; removing it on one host
// removes it on both.
func TestOverlayAcrossHosts(t *testing.T) {
	cli := etcdtest.Start(t)
	ep := cli.Endpoints()[0]
	h1, h2 := overlayPair(t, ep) // the underlay: a cable between the two hosts

	if msg := h1.PFail("network", "create", "bad", "--driver", "overlay"); !strings.Contains(msg, "--subnet") {
		t.Errorf("overlay without a subnet: %s", msg)
	}
	h1.P("network", "create", "web", "--driver", "overlay", "--subnet", "10.200.0.0/16")
	waitNetwork(t, h2, "web")
	// node ls: both nodes, each with its slice of web.
	if out, ok := within(5*time.Second, func() (string, bool) {
		o := h2.P("node", "ls")
		return o, strings.Contains(o, "h1") && strings.Contains(o, "h2 (this)") && strings.Count(o, "web=10.200.") == 2 && strings.Contains(o, "192.0.2.1")
	}); !ok {
		t.Errorf("node ls:\n%s", out)
	}
	h1.P("sandbox", "create", "a", "--network", "web")
	h2.P("sandbox", "create", "b", "--network", "web")
	a, b := h1.IP("a", "web"), h2.IP("b", "web")
	if !strings.HasPrefix(a, "10.200.") || !strings.HasPrefix(b, "10.200.") || a[:9] == b[:9] {
		t.Fatalf("addresses %s and %s: want each host's own slice of 10.200.0.0/16", a, b)
	}
	// The peers are programmed within a second or two (a poll).
	reachWithin(t, h1, "a", b)
	h2.MustPing("b", a)
	// TCP, and no NAT on the way: b sees a's own address.
	srv := ServeTCP(t, h2.SandboxNS("b"), b+":7200")
	if line, err := DialFrom(t, h1.SandboxNS("a"), srv.Addr); err != nil || !strings.Contains(line, "hello") {
		t.Fatalf("TCP a → b: %q, %v", line, err)
	}
	if p := srv.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], a+":") {
		t.Errorf("b saw %v, want a connection from %s", p, a)
	}
	// By name across the hosts: each node's resolver has the others'
	// sandboxes' names (from the cluster).
	if out, ok := within(5*time.Second, func() (string, bool) {
		o, err := h1.TryP("exec", "a", "--", "ping", "-c1", "-W2", "b")
		return o, err == nil
	}); !ok {
		t.Errorf("a pings b by name across the hosts:\n%s", out)
	}
	if out, err := h2.lookup("b", "a"); err != nil || !strings.Contains(out, a) {
		t.Errorf("nslookup a from b: %v\n%s", err, out)
	}
	// The outside, through each host's own NAT.
	h1.MustPing("a", RouterIP)
	// Isolation: a sandbox of another network on h1 does not reach b.
	h1.P("sandbox", "create", "other")
	h1.MustNotPing("other", b)
	for _, h := range []*Host{h1, h2} {
		if out, err := h.TryP("doctor"); err != nil {
			t.Errorf("doctor: %v\n%s", err, out)
		}
	}
	// Removal on one host removes it on both.
	h1.P("sandbox", "rm", "a")
	if out, ok := within(5*time.Second, func() (string, bool) {
		o, err := h2.lookup("b", "a")
		return o, err != nil
	}); !ok {
		t.Errorf("a still resolves on h2 after its removal:\n%s", out)
	}
	h2.P("sandbox", "rm", "b")
	h1.P("network", "rm", "web")
	if out, ok := within(10*time.Second, func() (string, bool) {
		o := h2.P("network", "ls", "-q")
		return o, !strings.Contains(o, "web")
	}); !ok {
		t.Errorf("h2 kept its part of web: %s", out)
	}
	// The record goes first, the kernel objects right after.
	if out, ok := within(5*time.Second, func() (string, bool) {
		l := h2.HostLinks("ptvx-")
		return strings.Join(l, " "), len(l) == 0
	}); !ok {
		t.Errorf("h2's VXLAN device left: %s", out)
	}
}
