package e2e

import (
	"strings"
	"testing"
)

// The link driver: two sandboxes joined by one veth pair with nothing on
// the host (the seeds' first experiment). Real traffic between them, none
// to anything else; a third member refused; the pair follows its members.
func TestLinkDriver(t *testing.T) {
	h := NewHost(t)
	out := h.P("network", "create", "wire", "--driver", "link", "--subnet", "10.97.0.0/30")
	if !strings.Contains(out, "direct-link") {
		t.Errorf("network create: %q", out)
	}
	h.P("sandbox", "create", "left", "--network", "wire")
	h.P("sandbox", "create", "right", "--network", "wire")
	l, r := h.IP("left", "wire"), h.IP("right", "wire")
	if l != "10.97.0.1" || r != "10.97.0.2" {
		t.Fatalf("addresses %s and %s, want 10.97.0.1 and .2", l, r)
	}
	h.MustPing("left", r)
	h.MustPing("right", l)
	srv := ServeTCP(t, h.SandboxNS("right"), r+":7000")
	if line, err := DialFrom(t, h.SandboxNS("left"), srv.Addr); err != nil || !strings.Contains(line, "hello") {
		t.Fatalf("TCP left → right: %q, %v", line, err)
	}
	if p := srv.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], l+":") {
		t.Errorf("right saw %v, want a connection from %s", p, l)
	}
	// Names: the resolver listens inside each member's namespace.
	if rc := h.P("exec", "left", "--", "cat", "/etc/resolv.conf"); !strings.Contains(rc, "nameserver 127.0.0.11") {
		t.Errorf("left's resolv.conf:\n%s", rc)
	}
	if out, err := h.lookup("left", "right"); err != nil || !strings.Contains(out, r) {
		t.Errorf("nslookup right from left: %v\n%s", err, out)
	}
	if out, err := h.lookup("right", "left.wire"); err != nil || !strings.Contains(out, l) {
		t.Errorf("nslookup left.wire from right: %v\n%s", err, out)
	}
	// Nothing on the host: no bridge, no host end, no route to the pair.
	if links := h.HostLinks("pt"); len(links) > 1 { // the default network's bridge only
		t.Errorf("host links: %v", links)
	}
	if out, _ := h.TryIn(h.NS, "ping", "-c1", "-W1", r); !strings.Contains(out, "0 received") && !strings.Contains(out, "unreachable") {
		t.Errorf("the host reached a direct link's member:\n%s", out)
	}
	// Isolation: a sandbox on the default network cannot reach them.
	h.P("sandbox", "create", "other")
	h.MustNotPing("other", r)
	// A third member is refused, clearly.
	msg := h.PFail("sandbox", "create", "third", "--network", "wire")
	if !strings.Contains(msg, "exactly two sandboxes") {
		t.Errorf("third member: %s", msg)
	}
	if out := h.P("sandbox", "ls", "-q"); strings.Contains(out, "third") {
		t.Errorf("the refused sandbox was left: %s", out)
	}
	// inspect shows the driver and no bridge.
	insp := h.P("network", "inspect", "wire")
	if !strings.Contains(insp, "Driver:") || !strings.Contains(insp, "link") || strings.Contains(insp, "Bridge:") {
		t.Errorf("inspect:\n%s", insp)
	}
	// The topology draws the direct link: both members, no host end.
	for _, f := range []string{"text", "svg", "dot"} {
		if out := h.P("topology", "--format", f); !strings.Contains(out, "left") || !strings.Contains(out, "right") {
			t.Errorf("topology --format %s lacks the members:\n%s", f, out)
		}
	}
	// doctor finds nothing wrong with a direct link.
	if out, err := h.TryP("doctor"); err != nil {
		t.Errorf("doctor: %v\n%s", err, out)
	}
	// A member leaves: the pair goes; a new member gets a new one.
	h.P("sandbox", "rm", "left")
	if out := h.In(h.SandboxNS("right"), "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("right kept its end after left was removed:\n%s", out)
	}
	h.P("sandbox", "create", "third", "--network", "wire")
	h.MustPing("third", r)
	t3 := h.IP("third", "wire")
	h.P("network", "disconnect", "wire", "third")
	h.MustNotPing("right", t3)
	h.P("sandbox", "rm", "third", "right")
	h.P("network", "rm", "wire")
}
