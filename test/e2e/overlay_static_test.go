package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/store/etcdtest"
)

// Two hosts, one etcd: a static --ip on an overlay network is reserved
// across the cluster (the other host gets a conflict naming the holder;
// after the holder's removal it is free again), and `node inspect` and
// `network inspect` show the other node's slice, underlay and VTEP MAC:
// its record's, the one on all of its VXLAN devices and in the other
// node's neighbour and FDB entries for it.
func TestOverlayStaticAcrossHosts(t *testing.T) {
	cli := etcdtest.Start(t)
	ep := cli.Endpoints()[0]
	h1, h2 := overlayPair(t, ep)

	h1.P("network", "create", "web", "--driver", "overlay", "--subnet", "10.200.0.0/16")
	waitNetwork(t, h2, "web")
	slice := func(h *Host, node string) string {
		var ns []model.ClusterNodeInfo
		if err := json.Unmarshal([]byte(h.P("node", "inspect", node, "--format", "json")), &ns); err != nil || len(ns) != 1 {
			t.Fatalf("node inspect %s: %v", node, err)
		}
		return slice4(ns[0].ClusterNode, "web").String()
	}
	s1, s2 := slice(h1, "h1"), slice(h1, "h2")
	if s1 == s2 || !strings.HasPrefix(s1, "10.200.") || !strings.HasPrefix(s2, "10.200.") {
		t.Fatalf("slices %s and %s", s1, s2)
	}
	// A static address in h1's slice, taken on h1.
	static := strings.TrimSuffix(s1, "0/24") + "9"
	h1.P("sandbox", "create", "a", "--network", "web", "--ip", static)
	if got := h1.IP("a", "web"); got != static {
		t.Fatalf("a has %s, want %s", got, static)
	}
	// The other host asks for it: a conflict naming the holder, and no
	// sandbox made.
	if msg := h2.PFail("sandbox", "create", "b", "--network", "web", "--ip", static); !strings.Contains(msg, "h1/a") {
		t.Errorf("h2 asks for h1/a's address: %s", msg)
	}
	if out := h2.P("sandbox", "ls", "-q"); strings.Contains(out, "b") {
		t.Errorf("a refused create left sandbox b on h2: %s", out)
	}
	// Through connect on h1 as well.
	h1.P("sandbox", "create", "x")
	if msg := h1.PFail("network", "connect", "web", "x", "--ip", static); !strings.Contains(msg, "h1/a") {
		t.Errorf("connect with a's address: %s", msg)
	}
	// Outside h2's slice: refused there, naming h2's slice and h1's.
	if msg := h2.PFail("sandbox", "create", "c", "--network", "web", "--ip", strings.TrimSuffix(s1, "0/24")+"10"); !strings.Contains(msg, s2) || !strings.Contains(msg, "node h1's slice "+s1) {
		t.Errorf("h2 asks for an address of h1's slice: %s", msg)
	}

	// node inspect of the other node: its underlay, VTEP MAC, slice and
	// static address; the same from either host.
	var n []model.ClusterNodeInfo
	if err := json.Unmarshal([]byte(h2.P("node", "inspect", "h1", "--format", "json")), &n); err != nil || len(n) != 1 {
		t.Fatalf("node inspect h1 on h2: %v", err)
	}
	mac := n[0].VTEPMAC
	if h := n[0]; h.Name != "h1" || h.Self || h.Underlay.String() != "192.0.2.1" || mac == "" ||
		h.StaticIPs["web"][netip.MustParseAddr(static)] != "a" {
		t.Errorf("node inspect h1 on h2: %+v", h)
	}
	if out := h2.P("node", "ls"); !strings.Contains(out, mac) {
		t.Errorf("node ls on h2 does not show h1's VTEP MAC %s:\n%s", mac, out)
	}
	// The MAC it shows is the one h1 wrote into its record in etcd ...
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/pontoon-cluster/nodes/h1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("h1's record in etcd: %v, %d keys", err, len(resp.Kvs))
	}
	var rec struct {
		VTEPMAC string `json:"vtep_mac"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil || rec.VTEPMAC != mac {
		t.Errorf("h1's record %s (%v): node inspect says VTEP MAC %s", resp.Kvs[0].Value, err, mac)
	}
	// ... the one every VXLAN device of h1 has (a second network, the
	// same MAC) ...
	h1.P("network", "create", "api", "--driver", "overlay", "--subnet", "10.201.0.0/16")
	waitNetwork(t, h2, "api")
	vx := h1.HostLinks("ptvx-")
	if len(vx) != 2 {
		t.Fatalf("h1's VXLAN devices: %v, want web's and api's", vx)
	}
	for _, d := range vx {
		if out := h1.In(h1.NS, "ip", "-br", "link", "show", d); !strings.Contains(out, mac) {
			t.Errorf("node inspect says h1's VTEP MAC is %s; h1 has %s", mac, out)
		}
	}
	// ... and the one h2 programs for h1 on each of its devices.
	for _, d := range h2.HostLinks("ptvx-") {
		if out, ok := within(5*time.Second, func() (string, bool) {
			o := h2.In(h2.NS, "bridge", "fdb", "show", "dev", d) + h2.In(h2.NS, "ip", "neigh", "show", "dev", d)
			return o, strings.Contains(o, mac+" dst 192.0.2.1 self permanent") && strings.Contains(o, "lladdr "+mac+" PERMANENT")
		}); !ok {
			t.Errorf("h2's %s has no FDB entry and neighbour for h1's VTEP MAC %s:\n%s", d, mac, out)
		}
	}
	if msg := h1.PFail("node", "inspect", "nope"); !strings.Contains(msg, "h1, h2") {
		t.Errorf("node inspect of an unknown node: %s", msg)
	}

	// network inspect on h1: h2's slice, underlay and VTEP, h1 as self,
	// the static address and its holder.
	var infos []model.NetworkInfo
	if err := json.Unmarshal([]byte(h1.P("network", "inspect", "web", "--format", "json")), &infos); err != nil || len(infos) != 1 || infos[0].Cluster == nil {
		t.Fatalf("network inspect web: %v %+v", err, infos)
	}
	c := infos[0].Cluster
	if len(c.Nodes) != 2 || c.Error != "" {
		t.Fatalf("network inspect web's cluster part: %+v", c)
	}
	if p := c.Nodes[1]; p.Node != "h2" || p.Self || !p.Live || fmt.Sprint(p.Slices) != "["+s2+"]" || p.Underlay.String() != "192.0.2.2" || p.VTEPMAC == "" || p.VTEPMAC == mac || p.VTEPMAC != h2.self().VTEPMAC {
		t.Errorf("network inspect web on h1, peer h2: %+v", p)
	}
	if me := c.Nodes[0]; me.Node != "h1" || !me.Self || fmt.Sprint(me.Slices) != "["+s1+"]" {
		t.Errorf("network inspect web on h1, itself: %+v", me)
	}
	if c.StaticIPs[netip.MustParseAddr(static)] != "h1/a" {
		t.Errorf("network inspect web's static addresses: %v", c.StaticIPs)
	}
	if out := h2.P("network", "inspect", "web"); !strings.Contains(out, "h1  slice "+s1+"  underlay 192.0.2.1") {
		t.Errorf("network inspect web on h2 (table):\n%s", out)
	}

	// Removed on h1: released across the cluster, and taken again.
	h1.P("sandbox", "rm", "a")
	if out, ok := within(5*time.Second, func() (string, bool) {
		o := h2.P("network", "inspect", "web", "--format", "json")
		return o, !strings.Contains(o, `"`+static+`"`)
	}); !ok {
		t.Fatalf("the address stayed reserved after a's removal:\n%s", out)
	}
	h1.P("network", "connect", "web", "x", "--ip", static)
	if got := h1.IP("x", "web"); got != static {
		t.Errorf("x has %s, want %s", got, static)
	}
	if msg := h2.PFail("sandbox", "create", "b", "--network", "web", "--ip", static); !strings.Contains(msg, "h1/x") {
		t.Errorf("h2 asks for h1/x's address: %s", msg)
	}
	h1.P("sandbox", "rm", "x")
}
