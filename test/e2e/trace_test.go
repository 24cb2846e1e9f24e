package e2e

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
)

// Trace runs `pontoon trace ARGS --format json` and decodes the answer (the
// command exits 1 when the packet is dropped; the JSON is printed anyway).
func (h *Host) Trace(args ...string) *model.Trace {
	h.t.Helper()
	out, err := h.try(append([]string{"trace", "--format", "json"}, args...)...)
	var tr model.Trace
	if jerr := json.Unmarshal([]byte(out), &tr); jerr != nil {
		h.t.Fatalf("pontoon trace %s: %v (%v)\n%s", strings.Join(args, " "), err, jerr, out)
	}
	dropped := tr.Verdict.Result == model.VerdictDropped || tr.Verdict.Result == model.VerdictUnreachable
	if (err != nil) != dropped {
		h.t.Fatalf("pontoon trace %s: exit error %v with verdict %s", strings.Join(args, " "), err, tr.Verdict.Result)
	}
	return &tr
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
		if got, err := DialFrom(t, h.SandboxNS("a"), b.IP.String()+":80"); err != nil || !strings.HasPrefix(got, "hello") {
			t.Fatalf("real traffic a → b:80: %q %v", got, err)
		}
		if p := onB.Peers(); len(p) == 0 || !strings.HasPrefix(p[len(p)-1], a.IP.String()+":") {
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
		tr := h.Trace("q1", "q2")
		wantVerdict(t, tr, model.VerdictDropped, "port isolation", "bridge "+bridgeOf(t, h, "quiet"))
		if nftHop(tr, "inet pontoon forward") != nil {
			t.Error("an isolated frame shown in the forward hook")
		}
		h.MustNotPing("q1", "10.94.0.3")
	})

	t.Run("dropped by anti-spoofing", func(t *testing.T) {
		tr := h.Trace("a", "b:5000/udp", "--src-ip", "10.88.0.99")
		wantVerdict(t, tr, model.VerdictDropped, "spoofed-ip", "bridge pontoon anti-spoof")
		toB := serveUDP(t, h.SandboxNS("b"), "0.0.0.0:5000")
		aMAC, _ := net.ParseMAC(a.MAC)
		bMAC, _ := net.ParseMAC(b.MAC)
		for _, src := range []string{"10.88.0.99", a.IP.String()} {
			if err := rawUDP(t, h.SandboxNS("a"), "eth0", bMAC, aMAC, netip.MustParseAddr(src), b.IP, 5000); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(func() bool { return len(toB.Peers()) > 0 })
		if p := toB.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], a.IP.String()+":") {
			t.Errorf("b received from %v, want only a's real address", p)
		}
	})

	t.Run("NATed out", func(t *testing.T) {
		tr := h.Trace("a", RouterIP+":5300/udp")
		wantVerdict(t, tr, model.VerdictLeft, "policy", "uplink0")
		hp := nftHop(tr, "inet pontoon postrouting")
		if hp == nil || hp.Rule != "masquerade" || hp.NAT != "masquerade "+a.IP.String()+" → "+HostUplinkIP {
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
		if hp == nil || hp.Rule != "publish-any" || hp.NAT != "dnat "+HostUplinkIP+":8080 → "+b.IP.String()+":80 (map ports-any)" {
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
		if hp := nftHop(tr, "inet pontoon postrouting"); hp == nil || hp.Rule != "hairpin" || hp.NAT != "masquerade "+a.IP.String()+" → 10.88.0.1" {
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
		if hp := hopOf(tr, model.HopRoute, "sandbox i"); hp == nil || !strings.HasPrefix(hp.Kernel, "unreachable") {
			t.Errorf("i's route lookup: %+v", hp)
		}
		tr = h.Trace("--from-lan", RouterIP, "10.91.7.2:80")
		wantVerdict(t, tr, model.VerdictDropped, "internal-in", "inet pontoon forward")
		if h.Ping("i", RouterIP) {
			t.Error("i reached the outside")
		}
	})

	t.Run("a drifted route is shown", func(t *testing.T) {
		h.In(h.SandboxNS("a"), "ip", "route", "del", "default")
		tr := h.Trace("a", RouterIP)
		hp := hopOf(tr, model.HopRoute, "sandbox a")
		if hp == nil || !hp.Differs || !strings.HasPrefix(hp.Kernel, "unreachable") {
			t.Errorf("route hop after deleting a's default route: %+v", hp)
		}
	})
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
