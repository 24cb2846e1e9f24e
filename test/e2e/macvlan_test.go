package e2e

import (
	"strings"
	"testing"
)

// The macvlan driver on the throwaway host's uplink (uplink0, whose
// segment holds the outside world's router): members sit on the LAN with
// LAN addresses, reach each other, the router and what is behind it
// directly; the host reaches them only through a shim; names resolve
// inside each member.
func TestMacvlanDriver(t *testing.T) {
	h := NewHost(t)
	// The LAN is the host's own: without a range that leaves the host's
	// address out, pontoon could hand it to a sandbox.
	msg := h.PFail("network", "create", "lan", "--driver", "macvlan", "--parent", "uplink0", "--subnet", "198.51.100.0/24", "--gateway", RouterIP)
	if !strings.Contains(msg, "198.51.100.1") || !strings.Contains(msg, "--ip-range") {
		t.Errorf("macvlan over the host's address: %s", msg)
	}
	if msg := h.PFail("network", "create", "lan", "--driver", "macvlan", "--parent", "nosuch0", "--subnet", "10.98.0.0/24"); !strings.Contains(msg, "nosuch0") {
		t.Errorf("missing parent: %s", msg)
	}
	if msg := h.PFail("network", "create", "lan", "--driver", "macvlan", "--subnet", "10.98.0.0/24"); !strings.Contains(msg, "--parent") {
		t.Errorf("no parent: %s", msg)
	}
	if msg := h.PFail("network", "create", "lan", "--driver", "macvlan", "--parent", "uplink0", "--subnet", "10.98.0.0/24", "--internal"); !strings.Contains(msg, "internal") {
		t.Errorf("--internal: %s", msg)
	}
	h.P("network", "create", "lan", "--driver", "macvlan", "--parent", "uplink0", "--subnet", "198.51.100.0/24",
		"--gateway", RouterIP, "--ip-range", "198.51.100.128/28", "--shim")
	h.P("sandbox", "create", "m1", "--network", "lan")
	h.P("sandbox", "create", "m2", "--network", "lan")
	a, b := h.IP("m1", "lan"), h.IP("m2", "lan")
	if !strings.HasPrefix(a, "198.51.100.1") || !strings.HasPrefix(b, "198.51.100.1") {
		t.Fatalf("addresses %s, %s: want them in 198.51.100.128/28", a, b)
	}
	h.MustPing("m1", b)
	h.MustPing("m1", RouterIP)    // the LAN's router, directly on the segment
	h.MustPing("m2", LANClientIP) // behind the router: the members' default route
	// The router saw the member's own address: no NAT on the way.
	srv := ServeTCP(t, h.Outside, RouterIP+":7100")
	if _, err := DialFrom(t, h.SandboxNS("m1"), srv.Addr); err != nil {
		t.Fatal(err)
	}
	if p := srv.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], a+":") {
		t.Errorf("the router saw %v, want %s", p, a)
	}
	// The host reaches its members through the shim.
	if out, err := h.TryIn(h.NS, "ping", "-c1", "-W2", a); err != nil {
		t.Errorf("host → member through the shim: %v\n%s", err, out)
	}
	if links := h.HostLinks("ptm-"); len(links) != 1 {
		t.Errorf("shims on the host: %v", links)
	}
	// Names, from the resolver inside the members.
	if out, err := h.lookup("m2", "m1"); err != nil || !strings.Contains(out, a) {
		t.Errorf("nslookup m1 from m2: %v\n%s", err, out)
	}
	// What the host's firewall cannot enforce is refused.
	if msg := h.PFail("sandbox", "create", "web", "--network", "lan", "-p", "8080:80"); !strings.Contains(msg, "cannot publish ports") {
		t.Errorf("ports on macvlan: %s", msg)
	}
	insp := h.P("network", "inspect", "lan")
	if !strings.Contains(insp, "parent uplink0  mode bridge") || !strings.Contains(insp, "shim ptm-") {
		t.Errorf("inspect:\n%s", insp)
	}
	if out := h.P("topology"); !strings.Contains(out, "m1") || !strings.Contains(out, "lan") {
		t.Errorf("topology lacks the macvlan network:\n%s", out)
	}
	if out, err := h.TryP("doctor"); err != nil {
		t.Errorf("doctor: %v\n%s", err, out)
	}
	// Detach: the member's macvlan goes at once.
	h.P("network", "disconnect", "lan", "m2")
	h.MustNotPing("m1", b)
	h.P("sandbox", "rm", "m1", "m2")
	h.P("network", "rm", "lan")
	if links := h.HostLinks("ptm-"); len(links) != 0 {
		t.Errorf("shim left after network rm: %v", links)
	}
	if out, _ := h.TryIn(h.NS, "ping", "-c1", "-W1", RouterIP); !strings.Contains(out, " 0% packet loss") {
		t.Errorf("the host lost its LAN:\n%s", out)
	}

	// Private mode: members do not reach each other, but the LAN.
	h.P("network", "create", "priv", "--driver", "macvlan", "--parent", "uplink0", "--macvlan-mode", "private",
		"--subnet", "198.51.100.0/24", "--gateway", RouterIP, "--ip-range", "198.51.100.160/28")
	h.P("sandbox", "create", "p1", "--network", "priv")
	h.P("sandbox", "create", "p2", "--network", "priv")
	h.MustPing("p1", RouterIP)
	h.MustNotPing("p1", h.IP("p2", "priv"))
}
