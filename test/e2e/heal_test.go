package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// Self-healing, end to end: something outside pontoon breaks an object it
// owns, and traffic works again within a second, without any command.

// healWithin is the promise: traffic flows again (or an address is
// free again) this soon after the breakage.
const (
	healWithin    = 1 * time.Second
	releaseWithin = 2 * time.Second
)

// waitPing pings from sandbox to addr until one succeeds and fails the test
// if none did within d of start. It returns when the first ping succeeded.
func (h *Host) waitPing(t *testing.T, start time.Time, d time.Duration, sandbox, addr string) time.Duration {
	t.Helper()
	for {
		// A short per-ping timeout keeps the first success close to the
		// moment traffic flows again.
		if _, err := h.try("exec", sandbox, "--", "ping", "-c1", "-W0.2", addr); err == nil {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("ping %s → %s still fails %v after the breakage (want ≤ %v)\ndaemon log tail:\n%s", sandbox, addr, time.Since(start).Round(time.Millisecond), d, tail(h.Log(), 30))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// doctorClean fails unless doctor exits 0 and reports no error.
func (h *Host) doctorClean(t *testing.T) map[string][]api.Finding {
	t.Helper()
	by, err := h.doctor(t)
	var bad []string
	for _, fs := range by {
		for _, f := range fs {
			if f.Level == api.LevelError {
				bad = append(bad, f.Check+": "+f.Message)
			}
		}
	}
	if err != nil || len(bad) > 0 {
		t.Fatalf("doctor after the repair: %v\n%s", err, strings.Join(bad, "\n"))
	}
	return by
}

func (h *Host) status(t *testing.T) *api.Status {
	t.Helper()
	st, err := api.NewClient(h.Socket).Status(context.Background())
	if err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	return st
}

func TestHealBridgeDeleted(t *testing.T) {
	h := NewHost(t)
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b")
	b := h.IP("b", "pontoon")
	h.MustPing("a", b)
	start := time.Now()
	h.In(h.NS, "ip", "link", "del", model.DefaultBridge)
	took := h.waitPing(t, start, healWithin, "a", b)
	t.Logf("traffic back %v after `ip link del %s`", took.Round(time.Millisecond), model.DefaultBridge)
	// Outside too: the gateway address and the firewall's view of the
	// bridge are back.
	h.waitPing(t, time.Now(), healWithin, "a", RouterIP)
	by := h.doctorClean(t)
	if !strings.Contains(fmt.Sprint(by["self-healing"]), "bridge 1") {
		t.Errorf("doctor does not count the bridge repair: %+v", by["self-healing"])
	}
}

func TestHealHostVethDeleted(t *testing.T) {
	h := NewHost(t)
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b", "-p", "8080:80")
	before := h.Sandbox("b").Endpoints[0]
	h.MustPing("a", before.FirstIP().String())
	start := time.Now()
	h.In(h.NS, "ip", "link", "del", before.HostIf)
	took := h.waitPing(t, start, healWithin, "a", before.FirstIP().String())
	t.Logf("traffic back %v after `ip link del %s`", took.Round(time.Millisecond), before.HostIf)
	after := h.Sandbox("b").Endpoints[0]
	if after.HostIf != before.HostIf || !slices.Equal(after.IPs(), before.IPs()) || after.MAC != before.MAC || after.State != model.StateReady {
		t.Fatalf("endpoint after the repair: %+v, want the same name, IP and MAC as %+v", after, before)
	}
	// Its published port still reaches it (anti-spoofing and the DNAT map
	// name the same port and address).
	ServeTCP(t, h.SandboxNS("b"), "0.0.0.0:80")
	if got, err := DialFrom(t, h.Outside, HostUplinkIP+":8080"); err != nil || !strings.HasPrefix(got, "hello") {
		t.Fatalf("published port after the repair: %q %v", got, err)
	}
	h.doctorClean(t)
	if st := h.status(t); st.Healing.Repairs["veth"] < 1 {
		t.Errorf("status does not count the veth repair: %+v", st.Healing)
	}
}

// The namespace of a process adopted with --pid dies with it: its address
// is free again within 2 s, and the sandbox is gone.
func TestHealAdoptedProcessExits(t *testing.T) {
	h := NewHost(t)
	p := exec.Command("unshare", "--net", "--", "sleep", "600")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
	waitNetnsDiffers(t, p.Process.Pid) // never hand the daemon the machine's own namespace
	h.P("sandbox", "create", "adp", "--pid", fmt.Sprint(p.Process.Pid))
	ip := h.IP("adp", "pontoon")
	h.P("sandbox", "create", "peer")
	h.MustPing("peer", ip)
	start := time.Now()
	_ = p.Process.Kill()
	_ = p.Wait()
	for {
		out, err := h.TryP("sandbox", "create", "reuse", "--ip", ip)
		if err == nil {
			break
		}
		if time.Since(start) > releaseWithin {
			t.Fatalf("address %s not free %v after its process exited: %s\n%s", ip, time.Since(start), out, tail(h.Log(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("address %s reusable %v after the process exited", ip, time.Since(start).Round(time.Millisecond))
	if ls := h.P("sandbox", "ls"); strings.Contains(ls, "adp") {
		t.Fatalf("sandbox adp still listed:\n%s", ls)
	}
	h.MustPing("peer", ip) // the new owner answers
	h.doctorClean(t)
}

// A path that pontoon adopted comes to name another namespace (the same
// as a reused PID: /proc/PID/ns/net then names the new process's
// namespace). Neither the healer nor `sandbox rm` nor `exec` touches the
// new one.
func TestHealPathReusedIsNeverEntered(t *testing.T) {
	for _, heal := range []bool{true, false} {
		t.Run(fmt.Sprintf("self-heal=%v", heal), func(t *testing.T) {
			h := NewHost(t, fmt.Sprintf("--self-heal=%v", heal))
			h.P("network", "create", "side", "--subnet", "10.97.1.0/24")
			old := testutil.NewNetns(t)
			// Two endpoints: the second has a source rule, which a removal
			// deletes inside the namespace — the step that must not happen
			// in a namespace that is not the sandbox's.
			h.P("sandbox", "create", "ext", "--netns", old, "--network", "pontoon", "--network", "side")
			deleteNetns(t, old)
			// The same path, now another namespace, with an eth0, an eth1,
			// the same addresses and a rule of its own.
			testutil.PinNewNetns(t, old)
			h.In(old, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
			h.In(old, "ip", "addr", "add", "10.88.0.2/16", "dev", "eth0")
			h.In(old, "ip", "addr", "add", "10.97.1.2/24", "dev", "eth1")
			h.In(old, "ip", "rule", "add", "from", "10.97.1.2", "lookup", "101", "priority", "101")
			snapshot := func() string {
				return h.In(old, "ip", "-o", "addr") + h.In(old, "ip", "rule") + h.In(old, "ip", "-o", "link")
			}
			want := snapshot()
			if heal {
				// The old namespace died with its pin; the healer sees the
				// host ends vanish and finds the path names another
				// namespace.
				deadline := time.Now().Add(releaseWithin)
				for strings.Contains(h.P("sandbox", "ls"), "ext") {
					if time.Now().After(deadline) {
						t.Fatalf("sandbox ext not released %v after its namespace died\n%s", releaseWithin, tail(h.Log(), 30))
					}
					time.Sleep(50 * time.Millisecond)
				}
			} else {
				out := h.PFail("exec", "ext", "--", "ip", "link", "del", "eth0")
				if !strings.Contains(out, "gone or was replaced") {
					t.Errorf("exec into a replaced namespace: %s", out)
				}
				h.P("sandbox", "rm", "ext")
			}
			if got := snapshot(); got != want {
				t.Fatalf("the namespace now at %s was changed:\nbefore:\n%s\nafter:\n%s", old, want, got)
			}
			if l, ok := within(5*time.Second, func() (string, bool) {
				l := h.HostLinks(model.HostVethPrefix)
				return strings.Join(l, " "), len(l) == 0
			}); !ok {
				t.Fatalf("host veths left: %v", l)
			}
		})
	}
}

// A runtime whose namespace was lost without a DEL adds the same container
// again in a new namespace. With self-healing off, the plugin itself sees
// that the recorded namespace is another one.
func TestCNIAddAfterLostNamespace(t *testing.T) {
	for _, heal := range []bool{true, false} {
		t.Run(fmt.Sprintf("self-heal=%v", heal), func(t *testing.T) {
			h := NewHost(t, fmt.Sprintf("--self-heal=%v", heal))
			h.P("network", "create", "cninet", "--subnet", "10.99.7.0/24")
			c := newCNIEnv(t, h)
			list := c.conflist(t, "1.0.0", false)
			add := func(id, ns string) error {
				return c.in(t, func(ctx context.Context) error {
					_, err := c.cni.AddNetworkList(ctx, list, rt(id, ns))
					return err
				})
			}
			n1 := testutil.NewNetns(t)
			if err := add("ctr1", n1); err != nil {
				t.Fatal(err)
			}
			ip := h.IP("cni-ctr1", "cninet")
			deleteNetns(t, n1)
			n2 := testutil.NewNetns(t)
			if err := add("ctr1", n2); err != nil {
				t.Fatalf("ADD ctr1 in a new namespace after the first was lost: %v", err)
			}
			sb := h.Sandbox("cni-ctr1")
			if sb.Netns != n2 || len(sb.Endpoints) != 1 {
				t.Fatalf("sandbox after the second ADD: %+v", sb)
			}
			h.P("sandbox", "create", "peer", "--network", "cninet")
			h.MustPing("peer", sb.Endpoints[0].FirstIP().String())
			if sb.Endpoints[0].FirstIP().String() != ip {
				// Not required, but the old address must then be free.
				h.P("sandbox", "create", "reuse", "--network", "cninet", "--ip", ip)
			}
			if err := c.in(t, func(ctx context.Context) error { return c.cni.DelNetworkList(ctx, list, rt("ctr1", n2)) }); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if err := c.in(t, func(ctx context.Context) error { return c.cni.DelNetworkList(ctx, list, rt("ctr1", n1)) }); err != nil {
				t.Fatalf("a late DEL for the lost namespace: %v", err)
			}
		})
	}
}

// breakage is one way someone changes what pontoon owns; repaired reports
// whether its damage is gone (beyond traffic, which every step checks).
type breakage struct {
	name string
	do   func(h *Host)
}

// The world of TestHealBreakages: a and b on the default network, a also
// on "side" (a second interface with source routing) with c there.
func breakages(h *Host) []breakage {
	hostIf := func(sb, nw string) string {
		for _, ep := range h.Sandbox(sb).Endpoints {
			if ep.Network == nw {
				return ep.HostIf
			}
		}
		h.t.Fatalf("%s has no endpoint on %s", sb, nw)
		return ""
	}
	sideBridge := func() string {
		var nets []*model.NetworkInfo
		_ = json.Unmarshal([]byte(h.P("network", "inspect", "--format", "json", "side")), &nets)
		return nets[0].Bridge
	}
	return []breakage{
		{"bridge deleted", func(h *Host) { h.In(h.NS, "ip", "link", "del", model.DefaultBridge) }},
		{"bridge down", func(h *Host) { h.In(h.NS, "ip", "link", "set", sideBridge(), "down") }},
		{"bridge address removed", func(h *Host) { h.In(h.NS, "ip", "addr", "flush", "dev", model.DefaultBridge) }},
		{"host veth deleted", func(h *Host) { h.In(h.NS, "ip", "link", "del", hostIf("b", "pontoon")) }},
		{"host veth down", func(h *Host) { h.In(h.NS, "ip", "link", "set", hostIf("a", "pontoon"), "down") }},
		{"host veth off its bridge", func(h *Host) { h.In(h.NS, "ip", "link", "set", hostIf("c", "side"), "nomaster") }},
		{"sandbox address removed", func(h *Host) { h.In(h.SandboxNS("b"), "ip", "addr", "flush", "dev", "eth0") }},
		{"sandbox interface down", func(h *Host) { h.In(h.SandboxNS("a"), "ip", "link", "set", "eth0", "down") }},
		{"sandbox interface deleted", func(h *Host) { h.In(h.SandboxNS("c"), "ip", "link", "del", "eth0") }},
		{"sandbox default route removed", func(h *Host) { h.In(h.SandboxNS("a"), "ip", "route", "del", "default") }},
		{"sandbox source rule removed", func(h *Host) { h.In(h.SandboxNS("a"), "ip", "rule", "del", "priority", "101") }},
		{"sandbox table route removed", func(h *Host) {
			h.In(h.SandboxNS("a"), "ip", "route", "del", "default", "table", "101")
		}},
		{"ip_forward off", func(h *Host) { h.In(h.NS, "sysctl", "-qw", "net.ipv4.ip_forward=0") }},
		{"firewall flushed", func(h *Host) { h.In(h.NS, "nft", "flush", "ruleset") }},
	}
}

// checkWorld checks the invariants after a repair: traffic on both
// networks, out through NAT and back along a's second interface; no address
// twice; store and kernel agree (doctor).
func checkWorld(t *testing.T, h *Host, start time.Time, what string) {
	t.Helper()
	ipB := h.IP("b", "pontoon")
	ipC := h.IP("c", "side")
	ipASide := h.IP("a", "side")
	var took []time.Duration
	took = append(took, h.waitPing(t, start, healWithin, "a", ipB))
	took = append(took, h.waitPing(t, start, healWithin, "b", h.IP("a", "pontoon")))
	took = append(took, h.waitPing(t, start, healWithin, "a", ipC))
	// c → a's second address: the reply leaves through eth1 only if a's
	// source rule and table are in place.
	took = append(took, h.waitPing(t, start, healWithin, "c", ipASide))
	took = append(took, h.waitPing(t, start, healWithin, "b", RouterIP))
	took = append(took, h.waitPing(t, start, healWithin, "c", RouterIP))
	t.Logf("%s: pings back after %v", what, took)
	seen := map[string]string{}
	var sbs []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("sandbox", "ls", "--format", "json")), &sbs); err != nil {
		t.Fatal(err)
	}
	for _, sb := range sbs {
		for _, ep := range sb.Endpoints {
			if o, dup := seen[ep.FirstIP().String()]; dup {
				t.Fatalf("after %s: %s has %s's address %s", what, sb.Name, o, ep.FirstIP())
			}
			seen[ep.FirstIP().String()] = sb.Name
		}
	}
	// A repair may still be settling when traffic already flows (the
	// firewall, say): give doctor the same second.
	deadline := start.Add(healWithin)
	for {
		by, err := h.doctor(t)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: doctor still finds problems: %v %+v", what, err, by)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A table of named breakages, applied in order and then in random order,
// with the invariants checked after each.
func TestHealBreakages(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "side", "--subnet", "10.97.2.0/24")
	h.P("sandbox", "create", "a", "--network", "pontoon", "--network", "side")
	h.P("sandbox", "create", "b")
	h.P("sandbox", "create", "c", "--network", "side")
	h.In(h.Outside, "ip", "route", "add", "10.0.0.0/8", "via", HostUplinkIP)
	checkWorld(t, h, time.Now(), "setup")
	bs := breakages(h)
	order := make([]int, len(bs))
	for i := range order {
		order[i] = i
	}
	seed := uint64(time.Now().UnixNano())
	shuffled := append([]int(nil), order...)
	rand.New(rand.NewPCG(seed, 0)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	t.Logf("random order (seed %d): %v", seed, shuffled)
	for round, ord := range [][]int{order, shuffled} {
		for _, i := range ord {
			b := bs[i]
			start := time.Now()
			b.do(h)
			checkWorld(t, h, start, fmt.Sprintf("round %d: %s", round, b.name))
			t.Logf("round %d: %-30s repaired in %v", round, b.name, time.Since(start).Round(time.Millisecond))
		}
	}
	st := h.status(t)
	for _, kind := range []string{"bridge", "veth", "port", "address", "link", "route", "rule", "sysctl", "firewall"} {
		if st.Healing.Repairs[kind] == 0 {
			t.Errorf("no %s repair counted: %+v", kind, st.Healing.Repairs)
		}
	}
}

// Explicit removals through pontoon's API stay removed: the healer's
// periodic pass (made short here) does not bring them back.
func TestHealDoesNotUndoExplicitRemovals(t *testing.T) {
	h := NewHost(t, "--heal-period", "200ms")
	h.P("network", "create", "tmp", "--subnet", "10.97.3.0/24")
	h.P("sandbox", "create", "a", "--network", "pontoon", "--network", "tmp")
	h.P("sandbox", "create", "b")
	var nets []*model.NetworkInfo
	if err := json.Unmarshal([]byte(h.P("network", "inspect", "--format", "json", "tmp")), &nets); err != nil {
		t.Fatal(err)
	}
	bridge := nets[0].Bridge
	hostIfB := h.Sandbox("b").Endpoints[0].HostIf
	h.P("network", "disconnect", "tmp", "a")
	h.P("network", "rm", "tmp")
	h.P("network", "disconnect", "pontoon", "b")
	time.Sleep(1 * time.Second) // five periodic passes
	if l := h.HostLinks(bridge); len(l) > 0 {
		t.Errorf("bridge %s of the removed network is back", bridge)
	}
	if l := h.HostLinks(hostIfB); len(l) > 0 {
		t.Errorf("veth %s of the disconnected endpoint is back", hostIfB)
	}
	if out := h.In(h.SandboxNS("a"), "ip", "-o", "link"); strings.Contains(out, "eth1") {
		t.Errorf("a's interface on the removed network is back:\n%s", out)
	}
	if sb := h.Sandbox("b"); len(sb.Endpoints) != 0 {
		t.Errorf("b's endpoint is back: %+v", sb.Endpoints)
	}
	if strings.Contains(h.P("network", "ls"), "tmp") {
		t.Error("network tmp is back")
	}
	h.doctorClean(t)
}

// On a bridge given with --bridge, the healer repairs what pontoon set
// there (its address, up, the ports) but never makes the bridge again:
// doctor reports it instead.
func TestHealAdoptedBridge(t *testing.T) {
	h := NewHost(t)
	h.In(h.NS, "ip", "link", "add", "mybr", "type", "bridge")
	h.P("network", "create", "own", "--bridge", "mybr", "--subnet", "10.97.5.0/24")
	h.P("sandbox", "create", "a", "--network", "own")
	h.P("sandbox", "create", "b", "--network", "own")
	ipB := h.IP("b", "own")
	start := time.Now()
	h.In(h.NS, "ip", "addr", "flush", "dev", "mybr")
	h.In(h.NS, "ip", "link", "set", h.Sandbox("b").Endpoints[0].HostIf, "nomaster")
	h.waitPing(t, start, healWithin, "a", ipB)
	h.waitPing(t, start, healWithin, "a", "10.97.5.1")
	h.In(h.NS, "ip", "link", "del", "mybr")
	deadline := time.Now().Add(releaseWithin)
	for {
		by, err := h.doctor(t)
		if err != nil && strings.Contains(fmt.Sprint(by["self-healing"]), "pontoon does not make bridges it did not create") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("doctor after the adopted bridge was deleted: %v %+v", err, by)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := h.HostLinks("mybr"); len(l) > 0 {
		t.Fatal("pontoon made the adopted bridge again")
	}
}

// The daemon's own namespace is never adopted as a sandbox.
func TestAdoptOwnNamespaceRefused(t *testing.T) {
	h := NewHost(t)
	before := h.In(h.NS, "ip", "-o", "link")
	out := h.PFail("sandbox", "create", "self", "--netns", h.NS)
	if !strings.Contains(out, "daemon's own network namespace") {
		t.Fatalf("adopting the daemon's namespace: %s", out)
	}
	if after := h.In(h.NS, "ip", "-o", "link"); after != before {
		t.Fatalf("the host namespace changed:\n%s\n%s", before, after)
	}
}
