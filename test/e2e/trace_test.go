package e2e

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"pontoon/internal/firewall"
	"pontoon/internal/model"
)

// Trace runs `pontoon trace ARGS --format json` and decodes the answer (the
// command exits 1 when the packet is dropped; the JSON is printed anyway).
// The host's whole ruleset must be byte-identical before and after.
func (h *Host) Trace(args ...string) *model.Trace {
	h.t.Helper()
	before := h.Ruleset()
	out, err := h.try(append([]string{"trace", "--format", "json"}, args...)...)
	var tr model.Trace
	if jerr := json.Unmarshal([]byte(out), &tr); jerr != nil {
		h.t.Fatalf("pontoon trace %s: %v (%v)\n%s", strings.Join(args, " "), err, jerr, out)
	}
	v := tr.Verdict
	if tr.Live != nil && tr.Live.Verdict != nil {
		v = *tr.Live.Verdict
	}
	dropped := v.Result == model.VerdictDropped || v.Result == model.VerdictUnreachable
	if (err != nil) != dropped {
		h.t.Fatalf("pontoon trace %s: exit error %v with verdict %s", strings.Join(args, " "), err, v.Result)
	}
	if after := h.Ruleset(); after != before {
		h.t.Fatalf("pontoon trace %s changed the ruleset:\nbefore:\n%s\nafter:\n%s", strings.Join(args, " "), before, after)
	}
	return &tr
}

// Ruleset is `nft list ruleset` in the host namespace, with the values of
// counters blanked: iptables-nft counts every packet (the probe too), and a
// count is traffic, not a rule.
func (h *Host) Ruleset() string {
	h.t.Helper()
	return counters.ReplaceAllString(h.In(h.NS, "nft", "list", "ruleset"), "counter packets _ bytes _")
}

var counters = regexp.MustCompile(`counter packets [0-9]+ bytes [0-9]+`)

// wantLive checks that a real probe was traced and that the kernel did
// what the prediction says: the evaluator agrees with the kernel.
func wantLive(t *testing.T, tr *model.Trace) {
	t.Helper()
	l := tr.Live
	if l == nil {
		t.Fatal("no live trace")
	}
	if l.Error != "" || !l.Agrees {
		t.Errorf("live trace: agrees=%v error=%q differences=%q\nevents:\n%s", l.Agrees, l.Error, l.Differences, strings.Join(l.Events, "\n"))
	}
	for _, hp := range tr.Hops {
		if hp.Kind == model.HopNft && hp.Seen != "yes" {
			t.Errorf("predicted chain %s %s %s: seen=%q", hp.Family, hp.Table, hp.Chain, hp.Seen)
		}
	}
}

// nftHop is the first netfilter hop in chain ("inet pontoon forward").
func nftHop(tr *model.Trace, chain string) *model.TraceHop {
	for i, hp := range tr.Hops {
		if hp.Kind == model.HopNft && hp.Family+" "+hp.Table+" "+hp.Chain == chain {
			return &tr.Hops[i]
		}
	}
	return nil
}

func hopOf(tr *model.Trace, kind, where string) *model.TraceHop {
	for i, hp := range tr.Hops {
		if hp.Kind == kind && hp.Where == where {
			return &tr.Hops[i]
		}
	}
	return nil
}

// wantVerdict checks the verdict and that the kernel's lookups agree with
// the prediction at every hop.
func wantVerdict(t *testing.T, tr *model.Trace, result, rule, where string) {
	t.Helper()
	v := tr.Verdict
	if v.Result != result || v.Rule != rule || v.Where != where {
		t.Errorf("verdict %s by %q at %q, want %s by %q at %q: %s", v.Result, v.Rule, v.Where, result, rule, where, v.Sentence)
	}
	for _, hp := range tr.Hops {
		if hp.Differs {
			t.Errorf("the kernel differs at %q: %s", hp.Text, hp.Kernel)
		}
		if strings.HasPrefix(hp.Kernel, "lookup failed") {
			t.Errorf("lookup failed at %q: %s", hp.Text, hp.Kernel)
		}
	}
}

// The scenarios of issue 14, each traced and then checked against real
// traffic: the prediction and the kernel's lookups (route, neighbour, bridge
// port, FDB, host route) say what really happens.
func TestTraceScenarios(t *testing.T) {
	h := NewHost(t, "--self-heal=false") // the last scenario breaks a route on purpose
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b", "-p", "8080:80")
	h.P("network", "create", "other", "--subnet", "10.95.0.0/24")
	h.P("sandbox", "create", "c", "--network", "other")
	h.P("network", "create", "quiet", "--subnet", "10.94.0.0/24", "--icc=false")
	h.P("sandbox", "create", "q1", "--network", "quiet")
	h.P("sandbox", "create", "q2", "--network", "quiet")
	h.P("network", "create", "back", "--subnet", "10.91.7.0/24", "--internal")
	h.P("sandbox", "create", "i", "--network", "back")
	a, b := h.Sandbox("a").Endpoints[0], h.Sandbox("b").Endpoints[0]
	onB := ServeTCP(t, h.SandboxNS("b"), "0.0.0.0:80")
	onC := ServeTCP(t, h.SandboxNS("c"), "0.0.0.0:80")

	t.Run("allowed over the bridge", func(t *testing.T) {
		tr := h.Trace("a", "b:80/tcp")
		wantVerdict(t, tr, model.VerdictDelivered, "intra", "sandbox b")
		wantLive(t, tr)
		if !strings.HasPrefix(tr.Live.Answer, "reply") || !strings.HasPrefix(tr.Live.Probe, "TCP SYN "+a.FirstIP().String()+":") {
			t.Errorf("probe %q answered %q, want b's server to accept it", tr.Live.Probe, tr.Live.Answer)
		}
		if hp := nftHop(tr, "inet pontoon forward"); hp == nil || hp.Rule != "intra" || hp.Verdict != "accept" {
			t.Errorf("forward hop %+v", hp)
		}
		if hp := hopOf(tr, model.HopLink, "host"); hp == nil || !strings.Contains(hp.Text, a.HostIf) || !strings.Contains(hp.Text, "ifindex") {
			t.Errorf("host end of a's veth: %+v", hp)
		}
		if hp := hopOf(tr, model.HopBridge, "host"); hp == nil || !strings.Contains(hp.Kernel, "master pontoon0 isolated off up") {
			t.Errorf("bridge port, as the kernel has it: %+v", hp)
		}
		if hp := hopOf(tr, model.HopRoute, "sandbox a"); hp == nil || hp.Kernel == "" {
			t.Errorf("a's route lookup: %+v", hp)
		}
		if got, err := DialFrom(t, h.SandboxNS("a"), b.FirstIP().String()+":80"); err != nil || !strings.HasPrefix(got, "hello") {
			t.Fatalf("real traffic a → b:80: %q %v", got, err)
		}
		if p := onB.Peers(); len(p) == 0 || !strings.HasPrefix(p[len(p)-1], a.FirstIP().String()+":") {
			t.Errorf("b saw %v, want a's own address (no NAT inside a network)", p)
		}
		// Now that a has talked to b, the kernel's ARP and FDB lookups
		// name b's MAC and port, and still agree.
		tr = h.Trace("a", "b:80/tcp")
		wantVerdict(t, tr, model.VerdictDelivered, "intra", "sandbox b")
		if hp := hopOf(tr, model.HopFDB, "host"); hp == nil || !strings.Contains(hp.Kernel, b.HostIf) {
			t.Errorf("FDB after traffic: %+v", hp)
		}
	})

	t.Run("dropped by isolation", func(t *testing.T) {
		tr := h.Trace("a", "c:80")
		wantVerdict(t, tr, model.VerdictDropped, "isolation", "inet pontoon forward")
		wantLive(t, tr)
		if !strings.Contains(tr.Verdict.Sentence, "pontoon network connect other a") {
			t.Errorf("sentence: %s", tr.Verdict.Sentence)
		}
		if _, err := DialFrom(t, h.SandboxNS("a"), "10.95.0.2:80"); err == nil {
			t.Fatal("real traffic a → c:80 got through")
		}
		if p := onC.Peers(); len(p) != 0 {
			t.Errorf("c saw %v", p)
		}
	})

	t.Run("dropped by icc=false", func(t *testing.T) {
		tr := h.Trace("q1", "q2", "--wait", "500ms")
		wantLive(t, tr)
		wantVerdict(t, tr, model.VerdictDropped, "port isolation", "bridge "+bridgeOf(t, h, "quiet"))
		if nftHop(tr, "inet pontoon forward") != nil {
			t.Error("an isolated frame shown in the forward hook")
		}
		h.MustNotPing("q1", "10.94.0.3")
	})

	t.Run("dropped by anti-spoofing", func(t *testing.T) {
		tr := h.Trace("a", "b:5000/udp", "--src-ip", "10.88.0.99")
		wantVerdict(t, tr, model.VerdictDropped, "spoofed-ip", "bridge pontoon anti-spoof")
		wantLive(t, tr)
		if !strings.Contains(tr.Live.Probe, "10.88.0.99") || !strings.Contains(tr.Live.Probe, "forged") {
			t.Errorf("probe %q", tr.Live.Probe)
		}
		toB := serveUDP(t, h.SandboxNS("b"), "0.0.0.0:5000")
		aMAC, _ := net.ParseMAC(a.MAC)
		bMAC, _ := net.ParseMAC(b.MAC)
		for _, src := range []string{"10.88.0.99", a.FirstIP().String()} {
			if err := rawUDP(t, h.SandboxNS("a"), "eth0", bMAC, aMAC, netip.MustParseAddr(src), b.FirstIP(), 5000); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(func() bool { return len(toB.Peers()) > 0 })
		if p := toB.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], a.FirstIP().String()+":") {
			t.Errorf("b received from %v, want only a's real address", p)
		}
	})

	t.Run("NATed out", func(t *testing.T) {
		tr := h.Trace("a", RouterIP+":5300/udp")
		wantVerdict(t, tr, model.VerdictLeft, "policy", "uplink0")
		wantLive(t, tr)
		hp := nftHop(tr, "inet pontoon postrouting")
		if hp == nil || hp.Rule != "masquerade" || hp.NAT != "masquerade "+a.FirstIP().String()+" → "+HostUplinkIP {
			t.Errorf("postrouting hop %+v", hp)
		}
		out := serveUDP(t, h.Outside, RouterIP+":5300")
		if _, err := udpAsk(t, h.SandboxNS("a"), RouterIP+":5300"); err != nil {
			t.Fatal(err)
		}
		if p := out.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], HostUplinkIP+":") {
			t.Errorf("the outside saw %v, want the masqueraded %s", p, HostUplinkIP)
		}
	})

	t.Run("published port from the LAN", func(t *testing.T) {
		tr := h.Trace("--from-lan", RouterIP, "host:8080/tcp")
		wantVerdict(t, tr, model.VerdictDelivered, "published", "sandbox b")
		hp := nftHop(tr, "inet pontoon prerouting")
		if hp == nil || hp.Rule != "publish-any" || hp.NAT != "dnat "+HostUplinkIP+":8080 → "+b.FirstIP().String()+":80 (map ports-any)" {
			t.Errorf("prerouting hop %+v", hp)
		}
		before := len(onB.Peers())
		if got, err := DialFrom(t, h.Outside, HostUplinkIP+":8080"); err != nil || !strings.HasPrefix(got, "hello") {
			t.Fatalf("real traffic LAN → host:8080: %q %v", got, err)
		}
		if p := onB.Peers(); len(p) != before+1 || !strings.HasPrefix(p[before], RouterIP+":") {
			t.Errorf("b saw %v, want the LAN client %s", p[before:], RouterIP)
		}
	})

	t.Run("hairpin", func(t *testing.T) {
		tr := h.Trace("a", "host:8080")
		wantVerdict(t, tr, model.VerdictDelivered, "intra", "sandbox b")
		wantLive(t, tr)
		if hp := nftHop(tr, "inet pontoon postrouting"); hp == nil || hp.Rule != "hairpin" || hp.NAT != "masquerade "+a.FirstIP().String()+" → 10.88.0.1" {
			t.Errorf("postrouting hop %+v", hp)
		}
		before := len(onB.Peers())
		if got, err := DialFrom(t, h.SandboxNS("a"), HostUplinkIP+":8080"); err != nil || !strings.HasPrefix(got, "hello") {
			t.Fatalf("real traffic a → host:8080: %q %v", got, err)
		}
		if p := onB.Peers(); len(p) != before+1 || !strings.HasPrefix(p[before], "10.88.0.1:") {
			t.Errorf("b saw %v, want the gateway (hairpin masquerade)", p[before:])
		}
	})

	t.Run("internal network, no way out", func(t *testing.T) {
		tr := h.Trace("i", RouterIP)
		wantVerdict(t, tr, model.VerdictUnreachable, "", "sandbox i")
		wantLive(t, tr)
		if !strings.HasPrefix(tr.Live.Answer, "unreachable") {
			t.Errorf("probe from i answered %q", tr.Live.Answer)
		}
		if hp := hopOf(tr, model.HopRoute, "sandbox i"); hp == nil || !strings.HasPrefix(hp.Kernel, "unreachable") {
			t.Errorf("i's route lookup: %+v", hp)
		}
		tr = h.Trace("--from-lan", RouterIP, "10.91.7.2:80")
		wantVerdict(t, tr, model.VerdictDropped, "internal-in", "inet pontoon forward")
		if h.Ping("i", RouterIP) {
			t.Error("i reached the outside")
		}
	})

	t.Run("dropped by a foreign table's drop policy", func(t *testing.T) {
		h.In(h.NS, "nft", "add table inet blocker")
		defer h.In(h.NS, "nft", "delete table inet blocker")
		h.In(h.NS, "nft", "add chain inet blocker fwdchain { type filter hook forward priority 10 ; policy drop ; }")
		h.In(h.NS, "nft", `add rule inet blocker fwdchain oifname "uplink0" accept comment "only the uplink"`)
		tr := h.Trace("a", "b:80")
		wantVerdict(t, tr, model.VerdictDelivered, "intra", "sandbox b") // pontoon's own rules accept it
		l := tr.Live
		if l == nil || l.Agrees || l.Verdict == nil || l.Verdict.Result != model.VerdictDropped || l.Verdict.Where != "inet blocker fwdchain" || l.Verdict.Rule != "policy" {
			t.Fatalf("live trace: %+v", l)
		}
		if !strings.Contains(l.Verdict.Sentence, "not pontoon's") || !slices.Contains(l.Tables, "inet blocker") {
			t.Errorf("live verdict %q, tables %v", l.Verdict.Sentence, l.Tables)
		}
		if hp := nftHop(tr, "inet blocker fwdchain"); hp == nil || !hp.Foreign || hp.Verdict != "drop" || hp.Seen != "yes" {
			t.Errorf("foreign hop %+v", hp)
		}
		if _, err := DialFrom(t, h.SandboxNS("a"), b.FirstIP().String()+":80"); err == nil {
			t.Error("real traffic a → b got through the foreign drop")
		}
	})

	t.Run("the DOCKER-USER exception", func(t *testing.T) {
		// Docker's iptables: FORWARD drops by policy and jumps to
		// DOCKER-USER first. A network change makes pontoon add its rules.
		h.In(h.NS, "iptables", "-N", "DOCKER-USER")
		defer h.In(h.NS, "nft", "delete table ip filter")
		h.In(h.NS, "iptables", "-P", "FORWARD", "DROP")
		h.In(h.NS, "iptables", "-A", "FORWARD", "-j", "DOCKER-USER")
		h.P("network", "create", "docker-test", "--subnet", "10.97.0.0/24")
		defer h.P("network", "rm", "docker-test")
		tr := h.Trace("a", RouterIP+":5301/udp")
		wantVerdict(t, tr, model.VerdictLeft, "policy", "uplink0")
		wantLive(t, tr)
		hp := nftHop(tr, "ip filter FORWARD")
		if hp == nil || !hp.Foreign || hp.Verdict != "accept" || !strings.Contains(hp.Text, "pontoon's DOCKER-USER exception") {
			t.Errorf("FORWARD hop %+v", hp)
		}
		out := serveUDP(t, h.Outside, RouterIP+":5301")
		if _, err := udpAsk(t, h.SandboxNS("a"), RouterIP+":5301"); err != nil || len(out.Peers()) != 1 {
			t.Errorf("real traffic through Docker's FORWARD: %v, peers %v", err, out.Peers())
		}
	})

	t.Run("live from the LAN", func(t *testing.T) {
		before := h.Ruleset()
		cmd, stdout := h.background("trace", "--format", "json", "--from-lan", RouterIP, "host:8080/tcp", "--wait", "10s")
		h.waitTraceTables(true)
		if got, err := DialFrom(t, h.Outside, HostUplinkIP+":8080"); err != nil || !strings.HasPrefix(got, "hello") {
			t.Fatalf("LAN → host:8080: %q %v", got, err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("trace: %v\n%s", err, stdout)
		}
		var tr model.Trace
		if err := json.Unmarshal(stdout.Bytes(), &tr); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		wantVerdict(t, &tr, model.VerdictDelivered, "published", "sandbox b")
		wantLive(t, &tr)
		if hp := nftHop(&tr, "inet pontoon prerouting"); hp == nil || hp.Rule != "publish-any" || hp.Seen != "yes" {
			t.Errorf("prerouting hop %+v", hp)
		}
		if after := h.Ruleset(); after != before {
			t.Errorf("ruleset changed:\n%s\n---\n%s", before, after)
		}
	})

	t.Run("interrupted with SIGINT", func(t *testing.T) {
		before := h.Ruleset()
		// q1 → q2 never gets an answer (icc=false): the trace waits.
		cmd, _ := h.background("trace", "q1", "q2", "--wait", "30s")
		h.waitTraceTables(true)
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		h.waitTraceTables(false)
		if after := h.Ruleset(); after != before {
			t.Errorf("ruleset after an interrupted trace:\n%s\n---\n%s", before, after)
		}
	})

	t.Run("tables of a trace the daemon died in are swept at start", func(t *testing.T) {
		before := h.Ruleset()
		h.In(h.NS, "nft", "add table inet "+firewall.TraceTablePrefix+"leftover")
		h.In(h.NS, "nft", "add table bridge "+firewall.TraceTablePrefix+"leftover")
		h.Stop()
		h.Start("--self-heal=false")
		if after := h.Ruleset(); after != before {
			t.Errorf("leftover trace tables after a restart:\n%s", after)
		}
	})

	t.Run("a drifted route is shown", func(t *testing.T) {
		h.In(h.SandboxNS("a"), "ip", "route", "del", "default")
		tr := h.Trace("a", RouterIP)
		hp := hopOf(tr, model.HopRoute, "sandbox a")
		if hp == nil || !hp.Differs || !strings.HasPrefix(hp.Kernel, "unreachable") {
			t.Errorf("route hop after deleting a's default route: %+v", hp)
		}
		// The probe cannot leave: the live trace says so.
		if l := tr.Live; l == nil || l.Agrees || len(l.Differences) == 0 || !strings.HasPrefix(l.Answer, "unreachable") {
			t.Errorf("live trace of a drifted sandbox: %+v", l)
		}
	})
}

// background starts the CLI and returns it with its stdout.
func (h *Host) background(args ...string) (*exec.Cmd, *bytes.Buffer) {
	h.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "pontoon"), append([]string{"--socket", h.Socket}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, &out
}

// waitTraceTables waits (up to 5 s) until trace tables exist in the host
// namespace, or until none do.
func (h *Host) waitTraceTables(exist bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := strings.Contains(h.In(h.NS, "nft", "list", "tables"), firewall.TraceTablePrefix)
		if got == exist {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("trace tables present=%v after 5s, want %v", got, exist)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func bridgeOf(t *testing.T, h *Host, network string) string {
	t.Helper()
	var n []model.NetworkInfo
	if err := json.Unmarshal([]byte(h.P("network", "inspect", "--format", "json", network)), &n); err != nil || len(n) != 1 {
		t.Fatalf("network inspect %s: %v", network, err)
	}
	return n[0].Bridge
}

func waitFor(cond func() bool) {
	deadline := time.Now().Add(time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // and let stragglers arrive
}
