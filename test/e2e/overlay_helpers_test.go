package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
)

// Helpers of the overlay tests and benchmarks (many hosts, one etcd).

// overlayPair makes two hosts joined by an underlay cable (192.0.2.1 and
// .2 on under0), each running a daemon that is a node of the cluster at
// etcd endpoint ep, with extra daemon flags.
func overlayPair(t *testing.T, ep string, extra ...string) (*Host, *Host) {
	t.Helper()
	h1, h2 := NewHost(t), NewHost(t)
	h1.In(h1.NS, "ip", "link", "add", "under0", "type", "veth", "peer", "name", "under0", "netns", h2.NS)
	for i, h := range []*Host{h1, h2} {
		h.In(h.NS, "ip", "addr", "add", fmt.Sprintf("192.0.2.%d/24", i+1), "dev", "under0")
		h.In(h.NS, "ip", "link", "set", "under0", "up")
		h.Stop()
		h.Start(append([]string{"--cluster", ep, "--node-name", fmt.Sprintf("h%d", i+1), "--underlay", "under0"}, extra...)...)
	}
	return h1, h2
}

// nodes is node ls as JSON.
func (h *Host) nodes() []model.ClusterNode {
	h.t.Helper()
	var out []model.ClusterNode
	if err := json.Unmarshal([]byte(h.P("node", "ls", "--format", "json")), &out); err != nil {
		h.t.Fatalf("node ls: %v", err)
	}
	return out
}

// self is this host's own line of node ls.
func (h *Host) self() model.ClusterNode {
	nodes := h.nodes()
	for _, n := range nodes {
		if n.Self {
			return n
		}
	}
	h.t.Fatalf("node ls has no line for this node: %+v", nodes)
	return model.ClusterNode{}
}

// slice4 is node n's IPv4 slice of network, as node ls or inspect shows
// it (invalid: none).
func slice4(n model.ClusterNode, network string) netip.Prefix {
	for _, p := range n.Slices[network] {
		if p.Addr().Is4() {
			return p
		}
	}
	return netip.Prefix{}
}

// waitNetwork waits until h has its part of network name.
func waitNetwork(b testing.TB, h *Host, name string) {
	b.Helper()
	if out, ok := within(30*time.Second, func() (string, bool) {
		o, err := h.TryP("network", "ls", "-q")
		return o, err == nil && strings.Contains(o, name)
	}); !ok {
		b.Fatalf("%s has no part of %s after 30s: %s\n%s", filepath.Base(h.NS), name, out, h.Log())
	}
}

// reachWithin waits until sandbox sb on h pings ip (the peers are
// programmed within one etcd round trip; 10 s is a generous bound).
func reachWithin(t testing.TB, h *Host, sb, ip string) {
	t.Helper()
	if out, ok := within(10*time.Second, func() (string, bool) {
		o, err := h.TryIn(h.SandboxNS(sb), "ping", "-c1", "-W1", ip)
		return o, err == nil
	}); !ok {
		t.Fatalf("%s → %s across the overlay: %s\nroutes: %s", sb, ip, out, h.In(h.NS, "ip", "route"))
	}
}
