package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// A MAC chosen with --mac is the one the sandbox's interface has, the one
// its neighbours learn, and no one else's on the network: a duplicate is
// refused, by sandbox create and by network connect (--mac-address, as
// Docker spells it), with who has it, and nothing is made.
func TestSandboxMAC(t *testing.T) {
	h := NewHost(t)
	const mac = "02:42:0a:00:00:05"
	h.P("network", "create", "lab", "--subnet", "10.91.0.0/24")
	h.P("sandbox", "create", "a", "--network", "lab", "--mac", mac)
	h.P("sandbox", "create", "b", "--network", "lab")

	if out := h.P("exec", "a", "--", "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "link/ether "+mac+" ") {
		t.Fatalf("a's eth0 has not the MAC %s: %s", mac, out)
	}
	if ep := h.Sandbox("a").Endpoints[0]; ep.MAC != mac {
		t.Errorf("inspect says a's MAC is %s, want %s", ep.MAC, mac)
	}
	ipA, ipB := h.IP("a", "lab"), h.IP("b", "lab")
	h.MustPing("a", ipB)
	h.MustPing("b", ipA)
	// b reached a at that MAC.
	if out := h.P("exec", "b", "--", "ip", "neigh", "show", ipA); !strings.Contains(out, "lladdr "+mac) {
		t.Errorf("b's neighbour entry for a (%s): %q, want lladdr %s", ipA, out, mac)
	}

	state := func() string {
		return fmt.Sprintf("sandboxes %q\nlinks %q\npins %q", h.P("sandbox", "ls", "-q"), h.HostLinks(""), h.Pins())
	}
	h.P("sandbox", "create", "d") // on the default network
	before := state()
	out := h.PFail("sandbox", "create", "c", "--network", "lab", "--mac", "02:42:0A:00:00:05")
	if !strings.Contains(out, "mac "+mac+" is taken on network lab by sandbox a (eth0)") {
		t.Errorf("a duplicate MAC on create: %s", out)
	}
	out = h.PFail("network", "connect", "lab", "d", "--mac-address", mac)
	if !strings.Contains(out, "taken on network lab by sandbox a (eth0)") {
		t.Errorf("a duplicate MAC on connect: %s", out)
	}
	if after := state(); after != before {
		t.Errorf("a refused MAC changed something:\nbefore\n%s\nafter\n%s", before, after)
	}
	if eps := h.Sandbox("d").Endpoints; len(eps) != 1 {
		t.Errorf("d has %d endpoints after a refused connect", len(eps))
	}

	// Another MAC, spelt as Docker does: d reaches a over lab with it.
	h.P("network", "connect", "lab", "d", "--mac-address", "02:42:0a:00:00:07")
	if out := h.P("exec", "d", "--", "ip", "-o", "link", "show", "eth1"); !strings.Contains(out, "link/ether 02:42:0a:00:00:07 ") {
		t.Fatalf("d's eth1: %s", out)
	}
	h.MustPing("d", ipA)
	if out := h.P("exec", "a", "--", "ip", "neigh", "show", h.IP("d", "lab")); !strings.Contains(out, "lladdr 02:42:0a:00:00:07") {
		t.Errorf("a's neighbour entry for d: %q", out)
	}
}

// `sandbox inspect` of a sandbox on two networks shows the routing table
// and rule of its second interface as the sandbox's kernel has them, and
// counters that moved by at least what the sandbox sent and received, in
// the right direction: a's one-way UDP to b is a's TX and b's RX.
func TestSandboxInspectRoutingAndCounters(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "lab", "--subnet", "10.92.0.0/24")
	h.P("sandbox", "create", "a", "--network", model.DefaultNetwork, "--network", "lab")
	h.P("sandbox", "create", "b")

	// Routing: as the kernel in a has it.
	ipLab := h.IP("a", "lab")
	text := h.P("sandbox", "inspect", "a")
	t.Logf("sandbox inspect a:\n%s", text)
	if want := "eth1  table 101  rule: from " + ipLab + " lookup 101"; !strings.Contains(text, want) {
		t.Errorf("inspect a does not show %q:\n%s", want, text)
	}
	if !strings.Contains(text, "eth0  table main") {
		t.Errorf("inspect a does not show eth0's main table:\n%s", text)
	}
	if out := h.P("exec", "a", "--", "ip", "rule", "show"); !strings.Contains(out, "101:\tfrom "+ipLab+" lookup 101") {
		t.Errorf("a's kernel has not the rule inspect shows: %s", out)
	}
	if out := h.P("exec", "a", "--", "ip", "route", "show", "table", "101"); !strings.Contains(out, "dev eth1") {
		t.Errorf("a's table 101: %q, want routes through eth1", out)
	}

	stats := func(name string) model.EndpointStats {
		t.Helper()
		ep := h.Sandbox(name).Endpoints[0]
		if ep.Stats == nil {
			t.Fatalf("inspect %s: eth0 has no counters", name)
		}
		return *ep.Stats
	}
	a0 := stats("a")

	// Pings: each way at least n packets of at least 1042 bytes (1000 of
	// payload, ICMP, IP and Ethernet headers).
	const n, size = 5, 1000 + 8 + 20 + 14
	ipB := h.IP("b", model.DefaultNetwork)
	h.P("exec", "a", "--", "ping", "-c", fmt.Sprint(n), "-i", "0.2", "-s", "1000", "-W", "2", ipB)
	a1 := stats("a")
	if d := a1.TxPackets - a0.TxPackets; d < n {
		t.Errorf("a sent %d pings, TX packets moved by %d", n, d)
	}
	if d := a1.TxBytes - a0.TxBytes; d < n*size {
		t.Errorf("a sent %d pings of %d bytes, TX bytes moved by %d", n, size, d)
	}
	if d := a1.RxPackets - a0.RxPackets; d < n {
		t.Errorf("a got %d replies, RX packets moved by %d", n, d)
	}
	if d := a1.RxBytes - a0.RxBytes; d < n*size {
		t.Errorf("a got %d replies of %d bytes, RX bytes moved by %d", n, size, d)
	}

	// One way: m datagrams from a to a UDP socket in b, which answers
	// nothing. a's TX and b's RX grow by them; a's RX and b's TX by far
	// less (ARP at most).
	const m, payload = 20, 1200
	const wire = payload + 8 + 20 + 14
	var got atomic.Int64
	var pc net.PacketConn
	if err := testutil.InNetns(t, h.SandboxNS("b"), func() (err error) {
		pc, err = net.ListenPacket("udp4", ipB+":9000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			k, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if k == payload {
				got.Add(1)
			}
		}
	}()
	b1 := stats("b")
	a1 = stats("a")
	if err := testutil.InNetns(t, h.SandboxNS("a"), func() error {
		c, err := net.Dial("udp4", ipB+":9000")
		if err != nil {
			return err
		}
		defer c.Close()
		msg := make([]byte, payload)
		for range m {
			if _, err := c.Write(msg); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out, ok := within(5*time.Second, func() (string, bool) { return fmt.Sprint(got.Load()), got.Load() == m }); !ok {
		t.Fatalf("b received %s of %d datagrams", out, m)
	}
	a2, b2 := stats("a"), stats("b")
	if d := a2.TxBytes - a1.TxBytes; d < m*wire {
		t.Errorf("a sent %d datagrams of %d bytes: TX bytes moved by %d", m, wire, d)
	}
	if d := b2.RxBytes - b1.RxBytes; d < m*wire {
		t.Errorf("b received %d datagrams of %d bytes: RX bytes moved by %d", m, wire, d)
	}
	if d := a2.RxBytes - a1.RxBytes; d >= m*wire/2 {
		t.Errorf("a received nothing but ARP, yet its RX bytes moved by %d: the counters are the wrong way round", d)
	}
	if d := b2.TxBytes - b1.TxBytes; d >= m*wire/2 {
		t.Errorf("b sent nothing but ARP, yet its TX bytes moved by %d: the counters are the wrong way round", d)
	}
	// network inspect and the topology have the same counters, each on its
	// sandbox's endpoint: read after sandbox inspect's, at least as high.
	netStats := netStatsOf(t, h, model.DefaultNetwork)
	topoStats := topoStatsOf(t, h, model.DefaultNetwork)
	for _, got := range []struct {
		what string
		m    map[string]*model.EndpointStats
	}{{"network inspect", netStats}, {"topology", topoStats}} {
		na, nb := got.m["a"], got.m["b"]
		if na == nil || nb == nil {
			t.Fatalf("%s of %s: counters of a %v, of b %v; want both", got.what, model.DefaultNetwork, na, nb)
		}
		if na.TxBytes < a2.TxBytes || na.TxPackets < a2.TxPackets || na.RxBytes < a2.RxBytes {
			t.Errorf("%s: a's counters %+v are below sandbox inspect's, read before: %+v", got.what, *na, a2)
		}
		if d := nb.RxBytes - b1.RxBytes; nb.RxBytes < b1.RxBytes || d < m*wire {
			t.Errorf("%s: b received %d datagrams of %d bytes: RX bytes moved by %d since sandbox inspect", got.what, m, wire, int64(nb.RxBytes)-int64(b1.RxBytes))
		}
		if d := nb.TxBytes - b1.TxBytes; d >= m*wire/2 {
			t.Errorf("%s: b sent nothing but ARP, yet its TX bytes moved by %d: the counters are the wrong way round, or a's", got.what, d)
		}
	}
	// The sandbox's own count, read after inspect's, is at least as high
	// (for a veth, the host end's RX is the sandbox end's TX); so is it
	// than network inspect's and the topology's, which are a's, not b's.
	own := strings.TrimSpace(h.P("exec", "a", "--", "cat", "/sys/class/net/eth0/statistics/tx_bytes"))
	var ownTx uint64
	if _, err := fmt.Sscan(own, &ownTx); err != nil || ownTx < a2.TxBytes {
		t.Errorf("a's own tx_bytes %q, inspect said %d before", own, a2.TxBytes)
	}
	if ownTx < netStats["a"].TxBytes || ownTx < topoStats["a"].TxBytes {
		t.Errorf("a's own tx_bytes %d, below what network inspect (%d) and the topology (%d) said before", ownTx, netStats["a"].TxBytes, topoStats["a"].TxBytes)
	}
	// network inspect's text has them in its RX and TX columns.
	if text := h.P("network", "inspect", model.DefaultNetwork); !strings.Contains(text, "RX") ||
		!slices.ContainsFunc(strings.Split(text, "\n"), func(l string) bool {
			return strings.HasPrefix(l, "  a ") && strings.Contains(l, "KiB, ") && strings.Contains(l, " packets")
		}) {
		t.Errorf("network inspect %s: no counters in a's row:\n%s", model.DefaultNetwork, text)
	}

	// The text has a line per interface, in binary units.
	text = h.P("sandbox", "inspect", "a")
	var lines []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "Counters") {
			in = true
			continue
		}
		if in && strings.HasPrefix(l, "  eth") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "  eth0  RX ") && strings.Contains(l, "KiB") && strings.Contains(l, " TX ")
	}) {
		t.Errorf("counters in the text:\n%s", text)
	}
}

// netStatsOf are the counters of each sandbox's endpoint in `network
// inspect --format json NET`.
func netStatsOf(t *testing.T, h *Host, network string) map[string]*model.EndpointStats {
	t.Helper()
	var v []*model.NetworkInfo
	if err := json.Unmarshal([]byte(h.P("network", "inspect", "--format", "json", network)), &v); err != nil || len(v) != 1 {
		t.Fatalf("network inspect %s: %v", network, err)
	}
	out := map[string]*model.EndpointStats{}
	for _, ep := range v[0].Endpoints {
		out[ep.Sandbox] = ep.Stats
	}
	return out
}

// topoStatsOf are the counters of each sandbox's port on a network in
// `topology --format json`.
func topoStatsOf(t *testing.T, h *Host, network string) map[string]*model.EndpointStats {
	t.Helper()
	var tp model.Topology
	if err := json.Unmarshal([]byte(h.P("topology", "--format", "json")), &tp); err != nil {
		t.Fatalf("topology: %v", err)
	}
	out := map[string]*model.EndpointStats{}
	for _, n := range tp.Networks {
		if n.Name == network {
			for _, p := range n.Ports {
				out[p.Sandbox] = p.Stats
			}
		}
	}
	return out
}
