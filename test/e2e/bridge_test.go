package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"pontoon/internal/model"
)

// The walk-through: default network, two sandboxes, ping and TCP
// over the bridge, a second internal network with a static address.
func TestTwoSandboxesOnTheDefaultNetwork(t *testing.T) {
	h := NewHost(t)
	ls := h.P("network", "ls")
	if !strings.Contains(ls, "pontoon") || !strings.Contains(ls, "pontoon0") {
		t.Fatalf("default network missing from `network ls`:\n%s", ls)
	}
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b")
	ipB := h.IP("b", "pontoon")
	h.MustPing("a", ipB)
	h.MustPing("b", h.IP("a", "pontoon"))

	// TCP: a server in b, a client in a; b sees a's own address.
	srv := ServeTCP(t, h.SandboxNS("b"), ipB+":7000")
	line, err := DialFrom(t, h.SandboxNS("a"), ipB+":7000")
	if err != nil || !strings.HasPrefix(line, "hello from") {
		t.Fatalf("tcp a→b: %q %v", line, err)
	}
	if peers := srv.Peers(); len(peers) != 1 || !strings.HasPrefix(peers[0], h.IP("a", "pontoon")+":") {
		t.Fatalf("b saw peers %v, want a's address", peers)
	}

	// inspect shows the host end of eth0, and it is the real peer.
	sb := h.Sandbox("a")
	if len(sb.Endpoints) != 1 {
		t.Fatalf("a has %d endpoints", len(sb.Endpoints))
	}
	ep := sb.Endpoints[0]
	if ep.IfName != "eth0" || ep.HostIfIndex == 0 || !strings.HasPrefix(ep.HostIf, model.HostVethPrefix) {
		t.Fatalf("endpoint %+v", ep)
	}
	// The peer's ifindex as the kernel reports it in the sandbox
	// ("eth0@ifN"; sysfs would show the mounter's namespace instead).
	out := h.P("exec", "a", "--", "ip", "-o", "link", "show", "eth0")
	if !strings.Contains(out, fmt.Sprintf("eth0@if%d:", ep.HostIfIndex)) {
		t.Fatalf("eth0's peer is not ifindex %d (inspect): %s", ep.HostIfIndex, out)
	}
	if ep.MAC != model.MACFromIP(ep.FirstIP()).String() {
		t.Fatalf("MAC %s is not derived from %s", ep.MAC, ep.FirstIP())
	}
	hostOut := h.In(h.NS, "ip", "-o", "link", "show", ep.HostIf)
	if !strings.Contains(hostOut, "master pontoon0") {
		t.Fatalf("host end not on the bridge: %s", hostOut)
	}

	// A second, internal network with a static address.
	h.P("network", "create", "back", "--subnet", "10.90.1.0/24", "--internal")
	h.P("network", "connect", "back", "a", "--ip", "10.90.1.10")
	sb = h.Sandbox("a")
	if len(sb.Endpoints) != 2 || sb.Endpoints[1].IfName != "eth1" || sb.Endpoints[1].FirstIP().String() != "10.90.1.10" {
		t.Fatalf("after connect: %+v", sb.Endpoints)
	}
	addr := h.P("exec", "a", "--", "ip", "-o", "addr", "show", "eth1")
	if !strings.Contains(addr, "10.90.1.10/24") {
		t.Fatalf("eth1 has no 10.90.1.10/24: %s", addr)
	}
	// run --rm on the internal network: addresses and routes, then gone.
	out = h.P("run", "--rm", "--name", "r1", "--network", "back", "--", "sh", "-c", "ip -o addr show eth0; ip route")
	if !strings.Contains(out, "10.90.1.") || strings.Contains(out, "default") {
		t.Fatalf("run on internal network: want an address and no default route:\n%s", out)
	}
	if _, err := h.TryP("sandbox", "inspect", "r1"); err == nil {
		t.Fatalf("run --rm left sandbox r1")
	}
}

func TestNetworksAreIsolated(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "n1", "--subnet", "10.91.1.0/24")
	h.P("network", "create", "n2", "--subnet", "10.91.2.0/24")
	h.P("sandbox", "create", "x", "--network", "n1")
	h.P("sandbox", "create", "y", "--network", "n2")
	h.P("sandbox", "create", "x2", "--network", "n1")
	h.MustPing("x", h.IP("x2", "n1"))
	h.MustNotPing("x", h.IP("y", "n2"))
	h.MustNotPing("y", h.IP("x", "n1"))
	// and no TCP either
	srv := ServeTCP(t, h.SandboxNS("y"), h.IP("y", "n2")+":7001")
	if _, err := DialFrom(t, h.SandboxNS("x"), srv.Addr); err == nil {
		t.Fatalf("tcp from n1 to n2 got through")
	}
}

func TestOutsideThroughNAT(t *testing.T) {
	h := NewHost(t)
	srv := ServeTCP(t, h.Outside, RouterIP+":8080")
	h.P("sandbox", "create", "a")
	line, err := DialFrom(t, h.SandboxNS("a"), srv.Addr)
	if err != nil {
		t.Fatalf("sandbox → outside: %v\n%s", err, h.Log())
	}
	if !strings.Contains(line, "hello") {
		t.Fatalf("got %q", line)
	}
	peers := srv.Peers()
	if len(peers) != 1 || !strings.HasPrefix(peers[0], HostUplinkIP+":") {
		t.Fatalf("outside server saw %v, want the host's address %s (masquerade)", peers, HostUplinkIP)
	}
	// An internal network cannot reach the outside at all.
	h.P("network", "create", "int", "--subnet", "10.92.0.0/24", "--internal")
	h.P("sandbox", "create", "i", "--network", "int")
	if _, err := DialFrom(t, h.SandboxNS("i"), srv.Addr); err == nil {
		t.Fatalf("internal network reached the outside")
	}
	h.MustNotPing("i", RouterIP)
	// masquerade off: the outside sees the sandbox's own address (it has a
	// route back through the host for this test).
	h.P("network", "create", "routed", "--subnet", "10.93.0.0/24", "--masquerade=false")
	h.In(h.Outside, "ip", "route", "add", "10.93.0.0/24", "via", HostUplinkIP)
	h.P("sandbox", "create", "r", "--network", "routed")
	if _, err := DialFrom(t, h.SandboxNS("r"), srv.Addr); err != nil {
		t.Fatalf("routed network → outside: %v", err)
	}
	peers = srv.Peers()
	if last := peers[len(peers)-1]; !strings.HasPrefix(last, h.IP("r", "routed")+":") {
		t.Fatalf("with --masquerade=false the server saw %s, want %s", last, h.IP("r", "routed"))
	}
}

func TestICCFalse(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "quiet", "--subnet", "10.94.0.0/24", "--icc=false")
	h.P("sandbox", "create", "p", "--network", "quiet")
	h.P("sandbox", "create", "q", "--network", "quiet")
	h.MustNotPing("p", h.IP("q", "quiet"))
	h.MustPing("p", "10.94.0.1") // the gateway
	srv := ServeTCP(t, h.Outside, RouterIP+":8081")
	if _, err := DialFrom(t, h.SandboxNS("p"), srv.Addr); err != nil {
		t.Fatalf("icc=false network → outside: %v", err)
	}
}

func TestAdoptByPIDAndShareNamespace(t *testing.T) {
	h := NewHost(t)
	// A "container started with --net=none": a process in its own netns.
	proc := exec.Command("unshare", "--net", "sleep", "60")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	waitNetnsDiffers(t, proc.Process.Pid)
	h.P("sandbox", "create", "legacy", "--pid", fmt.Sprint(proc.Process.Pid))
	h.P("sandbox", "create", "peer")
	ip := h.IP("legacy", "pontoon")
	h.MustPing("peer", ip)
	// The process's own view: eth0 with the address.
	nsPath := fmt.Sprintf("/proc/%d/ns/net", proc.Process.Pid)
	if out := h.In(nsPath, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, ip+"/") {
		t.Fatalf("adopted namespace has no %s on eth0: %s", ip, out)
	}
	// Something pontoon did not add survives removal.
	h.In(nsPath, "ip", "link", "add", "mine0", "type", "bridge")
	h.P("sandbox", "rm", "legacy")
	out, _ := within(5*time.Second, func() (string, bool) {
		out := h.In(nsPath, "ip", "-o", "link", "show")
		return out, !strings.Contains(out, "eth0")
	})
	if strings.Contains(out, "eth0") || !strings.Contains(out, "mine0") {
		t.Fatalf("after rm of an adopted sandbox, want eth0 gone and mine0 kept:\n%s", out)
	}
	// sandbox:OTHER runs in OTHER's namespace.
	out = h.P("run", "--rm", "--network", "sandbox:peer", "--", "ip", "-o", "addr", "show", "eth0")
	if !strings.Contains(out, h.IP("peer", "pontoon")+"/") {
		t.Fatalf("run --network sandbox:peer did not see peer's eth0:\n%s", out)
	}
	// --network host: the host's own namespace (the daemon's), nothing new.
	out = h.P("run", "--rm", "--network", "host", "--", "ip", "-o", "link", "show", "uplink0")
	if !strings.Contains(out, "uplink0") {
		t.Fatalf("--network host does not see the host's uplink:\n%s", out)
	}
	// --network none: lo only.
	out = h.P("run", "--rm", "--network", "none", "--", "ip", "-o", "link", "show")
	if strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") {
		t.Fatalf("--network none:\n%s", out)
	}
}

func waitNetnsDiffers(t *testing.T, pid int) {
	self, _ := os.Readlink("/proc/self/ns/net")
	for i := 0; i < 200; i++ {
		other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err == nil && other != self {
			return
		}
		exec.Command("sleep", "0.01").Run()
	}
	t.Fatalf("process %d never entered its own namespace", pid)
}

// A sandbox on two networks answers on each, through the interface the
// request came in on.
func TestDualHomedAnswersOnBoth(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "left", "--subnet", "10.95.1.0/24")
	h.P("network", "create", "right", "--subnet", "10.95.2.0/24")
	h.P("sandbox", "create", "dual", "--network", "left", "--network", "right")
	h.P("sandbox", "create", "l", "--network", "left")
	h.P("sandbox", "create", "r", "--network", "right")
	h.MustPing("l", h.IP("dual", "left"))
	h.MustPing("r", h.IP("dual", "right"))
	srv := ServeTCP(t, h.SandboxNS("dual"), "0.0.0.0:7002")
	for _, c := range []struct{ sb, net string }{{"l", "left"}, {"r", "right"}} {
		addr := net.JoinHostPort(h.IP("dual", c.net), "7002")
		if _, err := DialFrom(t, h.SandboxNS(c.sb), addr); err != nil {
			t.Fatalf("tcp %s → dual on %s: %v", c.sb, c.net, err)
		}
	}
	if len(srv.Peers()) != 2 {
		t.Fatalf("peers %v", srv.Peers())
	}
	rules := h.P("exec", "dual", "--", "ip", "rule")
	if !strings.Contains(rules, "from "+h.IP("dual", "right")) {
		t.Fatalf("no source rule for the second interface:\n%s", rules)
	}
	// Disconnecting the second network removes its rule too.
	h.P("network", "disconnect", "right", "dual")
	h.P("network", "connect", "right", "dual") // re-attach works at once
	h.P("network", "disconnect", "right", "dual")
	// The source rule goes with the background teardown of the veth.
	for start := time.Now(); strings.Contains(h.P("exec", "dual", "--", "ip", "rule"), "10.95.2."); {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("the detached network's source rule is left:\n%s", h.P("exec", "dual", "--", "ip", "rule"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Detaching the primary network moves the default route to the next.
	h.P("network", "connect", "right", "dual")
	h.P("network", "disconnect", "left", "dual")
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(h.P("exec", "dual", "--", "ip", "route", "show", "default"), "via 10.95.2.1") {
		if time.Now().After(deadline) {
			t.Fatalf("default route after detaching the primary network:\n%s", h.P("exec", "dual", "--", "ip", "route"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sb := h.Sandbox("dual"); len(sb.Endpoints) != 1 || !sb.Endpoints[0].Primary {
		t.Fatalf("the remaining endpoint is not primary: %+v", sb.Endpoints)
	}
}

func TestRestartKeepsTraffic(t *testing.T) {
	h := NewHost(t)
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b")
	ipB := h.IP("b", "pontoon")
	srv := ServeTCP(t, h.Outside, RouterIP+":8082")
	h.Stop()
	// Daemon down: traffic still flows.
	aNS := h.NetnsDir + "/a"
	if _, err := DialFrom(t, aNS, srv.Addr); err != nil {
		t.Fatalf("with the daemon stopped, a → outside: %v", err)
	}
	out, err := h.TryIn(aNS, "ping", "-c1", "-W1", ipB)
	if err != nil {
		t.Fatalf("with the daemon stopped, a → b: %v %s", err, out)
	}
	h.Start()
	h.MustPing("a", ipB)
	if _, err := DialFrom(t, h.SandboxNS("a"), srv.Addr); err != nil {
		t.Fatalf("after restart, a → outside: %v", err)
	}
	if got := h.IP("a", "pontoon"); got == "" {
		t.Fatal("lost a's address")
	}
}

// 64 parallel attaches get 64 distinct addresses, and the sandboxes reach
// each other: 64 sandbox creations all at once, and 64 connects of
// sandboxes without a network, 32 at a time (concurrent attaches share
// store commits and firewall transactions).
func TestParallelAttachesDistinct(t *testing.T) {
	const n = 64
	for _, tc := range []struct {
		name     string
		parallel int
		connect  bool // create the sandboxes first, then connect them
	}{
		{"create all at once", n, false},
		{"connect 32 at a time", 32, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHost(t)
			if tc.connect {
				for i := range n {
					h.P("sandbox", "create", fmt.Sprintf("s%02d", i), "--network", "none")
				}
			}
			errs := make(chan error, n)
			parallel(n, tc.parallel, func(i int) {
				args := []string{"sandbox", "create", fmt.Sprintf("s%02d", i)}
				if tc.connect {
					args = []string{"network", "connect", "pontoon", fmt.Sprintf("s%02d", i)}
				}
				if out, err := h.TryP(args...); err != nil {
					errs <- fmt.Errorf("s%02d: %v %s", i, err, out)
				}
			})
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			var sbs []*model.SandboxInfo
			if err := json.Unmarshal([]byte(h.P("sandbox", "ls", "--format", "json")), &sbs); err != nil {
				t.Fatal(err)
			}
			seen := map[string]string{}
			for _, sb := range sbs {
				for _, ep := range sb.Endpoints {
					if o, dup := seen[ep.FirstIP().String()]; dup {
						t.Fatalf("address %s given to %s and %s", ep.FirstIP(), o, sb.Name)
					}
					seen[ep.FirstIP().String()] = sb.Name
				}
			}
			if len(seen) != n {
				t.Fatalf("%d distinct addresses for %d sandboxes", len(seen), n)
			}
			h.MustPing("s00", h.IP("s63", "pontoon"))
			h.MustPing("s63", h.IP("s31", "pontoon"))
		})
	}
}

// parallel runs f(0) … f(n-1), c at a time.
func parallel(n, c int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// After removing everything, nothing of pontoon's is left but the default
// network's bridge, which the daemon keeps while it runs.
func TestRemoveLeavesNothing(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "tmp", "--subnet", "10.96.0.0/24")
	h.P("sandbox", "create", "a", "--network", "tmp", "--network", "pontoon")
	h.P("sandbox", "create", "b")
	h.P("sandbox", "rm", "a", "b")
	h.P("network", "rm", "tmp")
	// Removals finish in the background, within the kernel's RCU waits.
	if l, ok := within(5*time.Second, func() (string, bool) {
		l := h.HostLinks(model.HostVethPrefix)
		return strings.Join(l, " "), len(l) == 0
	}); !ok {
		t.Fatalf("veths left: %v", l)
	}
	if l := h.HostLinks(model.BridgePrefix); len(l) > 0 {
		t.Fatalf("bridges left: %v", l)
	}
	if p, ok := within(5*time.Second, func() (string, bool) { p := h.Pins(); return strings.Join(p, " "), len(p) == 0 }); !ok {
		t.Fatalf("pins left: %v", p)
	}
	ft := h.In(h.NS, "nft", "list", "table", "inet", "pontoon")
	if strings.Contains(ft, "ptbr-") || strings.Contains(ft, "10.96.0.0") {
		t.Fatalf("firewall still mentions the removed network:\n%s", ft)
	}
}

// Bad input: one clear line, non-zero exit, nothing changed.
func TestBadInput(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "good", "--subnet", "10.97.0.0/24")
	h.P("sandbox", "create", "a", "--network", "good", "--ip", "10.97.0.10")
	before := h.P("network", "ls") + h.P("sandbox", "ls")
	links := h.HostLinks("")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "x", "--subnet", "10.97.0.0/33"}, "not a CIDR"},
		{[]string{"network", "create", "x", "--subnet", "10.97.0.5/24"}, "host bits"},
		{[]string{"network", "create", "x", "--subnet", "10.97.0.0/16"}, "overlaps"},
		{[]string{"network", "create", "x", "--subnet", "10.98.0.0/24", "--gateway", "10.99.0.1"}, "outside subnet"},
		{[]string{"network", "create", "good"}, "already exists"},
		{[]string{"network", "create", "bad/name"}, "not allowed"},
		{[]string{"network", "create", strings.Repeat("n", 64)}, "at most 63"},
		{[]string{"network", "create", "x", "--bridge", "averyveryverylongbridgename"}, "at most 15"},
		{[]string{"sandbox", "create", "b", "--network", "good", "--ip", "10.97.0.10"}, "in use by sandbox a"},
		{[]string{"sandbox", "create", "b", "--network", "good", "--ip", "10.97.0.1"}, "gateway"},
		{[]string{"sandbox", "create", "b", "--network", "good", "--ip", "10.98.0.10"}, "outside subnet"},
		{[]string{"sandbox", "create", "b", "--network", "nope"}, "not found"},
		{[]string{"sandbox", "create", "a"}, "already exists"},
		{[]string{"sandbox", "create", "b c"}, "not allowed"},
		{[]string{"network", "connect", "good", "ghost"}, "not found"},
		{[]string{"network", "rm", "good"}, "disconnect them first"},
		{[]string{"network", "rm", "pontoon"}, "default network"},
		{[]string{"exec", "ghost", "--", "true"}, "not found"},
	}
	for _, c := range cases {
		out := h.PFail(c.args...)
		if !strings.Contains(out, c.want) {
			t.Errorf("pontoon %s: got %q, want it to say %q", strings.Join(c.args, " "), out, c.want)
		}
		if n := strings.Count(strings.TrimSpace(out), "\n"); n > 0 {
			t.Errorf("pontoon %s: error is %d lines, want one:\n%s", strings.Join(c.args, " "), n+1, out)
		}
	}
	after := h.P("network", "ls") + h.P("sandbox", "ls")
	if before != after {
		t.Fatalf("bad input changed state:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if l := h.HostLinks(""); strings.Join(l, ",") != strings.Join(links, ",") {
		t.Fatalf("bad input changed links: %v → %v", links, l)
	}
	// An exhausted subnet says so.
	h.P("network", "create", "tiny", "--subnet", "10.99.0.0/30")
	h.P("sandbox", "create", "t1", "--network", "tiny")
	out := h.PFail("sandbox", "create", "t2", "--network", "tiny")
	if !strings.Contains(out, "no free address") {
		t.Fatalf("exhausted: %q", out)
	}
	if _, err := h.TryP("sandbox", "inspect", "t2"); err == nil {
		t.Fatal("failed create left sandbox t2")
	}
}

// A host whose firewall drops forwarded traffic by policy, as Docker's
// iptables does: pontoon's networks still work, through commented rules in
// DOCKER-USER that leave with the network.
func TestCoexistsWithDockerForwardDrop(t *testing.T) {
	h := NewHost(t)
	h.In(h.NS, "iptables", "-P", "FORWARD", "DROP")
	h.In(h.NS, "iptables", "-N", "DOCKER-USER")
	h.In(h.NS, "iptables", "-I", "FORWARD", "-j", "DOCKER-USER")
	h.In(h.NS, "iptables", "-A", "DOCKER-USER", "-j", "RETURN")
	h.Stop()
	h.Start() // start-up reconciliation sees Docker's layout
	h.P("network", "create", "web", "--subnet", "10.98.0.0/24")
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b")
	h.P("sandbox", "create", "w", "--network", "web")
	h.MustPing("a", h.IP("b", "pontoon"))
	srv := ServeTCP(t, h.Outside, RouterIP+":8083")
	for _, sb := range []string{"a", "w"} {
		if _, err := DialFrom(t, h.SandboxNS(sb), srv.Addr); err != nil {
			t.Fatalf("%s → outside through Docker's FORWARD drop: %v", sb, err)
		}
	}
	h.MustNotPing("a", h.IP("w", "web")) // our isolation still holds
	rules := h.In(h.NS, "iptables", "-S", "DOCKER-USER")
	if !strings.Contains(rules, `"pontoon: network web `) || !strings.Contains(rules, `"pontoon: network pontoon `) {
		t.Fatalf("DOCKER-USER:\n%s", rules)
	}
	h.P("network", "rm", "--force", "web")
	if rules := h.In(h.NS, "iptables", "-S", "DOCKER-USER"); strings.Contains(rules, "pontoon: network web ") {
		t.Fatalf("rules of a removed network left in DOCKER-USER:\n%s", rules)
	}
	// Control, with the daemon stopped (it would restore them): without
	// those rules Docker's policy drops the traffic.
	ipB := h.IP("b", "pontoon")
	h.Stop()
	dropOurs := "iptables -S DOCKER-USER | grep 'pontoon: network pontoon' | sed 's/^-A/-D/' | xargs -L1 iptables"
	h.In(h.NS, "sh", "-c", dropOurs)
	if out, err := h.TryIn(h.NetnsDir+"/a", "ping", "-c1", "-W1", ipB); err == nil {
		t.Fatalf("traffic passed without the DOCKER-USER rules: the test proves nothing\n%s", out)
	}
	h.Start()
	h.MustPing("a", ipB)
	// With the daemon running, a firewall reload that drops them is undone.
	h.In(h.NS, "sh", "-c", dropOurs)
	deadline := time.Now().Add(time.Second)
	for !strings.Contains(h.In(h.NS, "iptables", "-S", "DOCKER-USER"), "pontoon: network pontoon") {
		if time.Now().After(deadline) {
			t.Fatal("pontoon's DOCKER-USER rules were not restored within a second")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.MustPing("a", ipB)
}

// Someone deletes or flushes pontoon's firewall: the daemon notices through
// nftables events and restores it within a second, and says so.
func TestFirewallSelfHeals(t *testing.T) {
	h := NewHost(t)
	h.P("sandbox", "create", "a")
	srv := ServeTCP(t, h.Outside, RouterIP+":8084")
	for _, breakIt := range [][]string{
		{"nft", "delete", "table", "inet", "pontoon"},
		{"nft", "flush", "ruleset"},
		{"nft", "flush", "table", "inet", "pontoon"},
	} {
		before := strings.Count(h.Log(), "restored pontoon's firewall state")
		h.In(h.NS, breakIt...)
		start := time.Now()
		for strings.Count(h.Log(), "restored pontoon's firewall state") == before {
			if time.Since(start) > time.Second {
				t.Fatalf("after `%s`, not restored within a second", strings.Join(breakIt, " "))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := DialFrom(t, h.SandboxNS("a"), srv.Addr); err != nil {
			t.Fatalf("after `%s` and the restore, a → outside: %v", strings.Join(breakIt, " "), err)
		}
		if peers := srv.Peers(); !strings.HasPrefix(peers[len(peers)-1], HostUplinkIP+":") {
			t.Fatalf("after the restore, masquerade is missing: the server saw %s", peers[len(peers)-1])
		}
	}
	// Left alone, the daemon leaves the firewall alone: its own rewrites
	// and other tables' churn (here: NAT chains like a CNI plugin's) do not
	// make it rewrite again and again.
	h.In(h.NS, "nft", "add", "table", "ip", "nat")
	h.In(h.NS, "nft", "add", "chain", "ip", "nat", "CNI-x")
	time.Sleep(300 * time.Millisecond)
	syncs := strings.Count(h.Log(), `msg="nft transaction"`)
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(h.Log(), `msg="nft transaction"`); n != syncs {
		t.Fatalf("%d firewall rewrites in half a second of quiet: the watcher loops", n-syncs)
	}
}
