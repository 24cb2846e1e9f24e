package engine

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// vtepNodes is two nodes of one fake cluster with overlay networks web
// (10.200.0.0/16) and api (10.201.0.0/16), both made on h1 and followed
// by h2 (whose log goes to the returned buffer): h1 holds the slices
// 10.20x.0.0/24, h2 10.20x.1.0/24. Each node's record has its own VTEP
// MAC, which is not link.VTEPMAC of its underlay address (fakeEtcd.join).
func vtepNodes(t *testing.T) (etcd *fakeEtcd, h1, h2 *testEnv, h2log *testutil.LockedBuffer) {
	t.Helper()
	h2log = &testutil.LockedBuffer{}
	var specs []model.NetworkSpec
	for _, n := range []struct{ name, subnet string }{{"web", "10.200.0.0/16"}, {"api", "10.201.0.0/16"}} {
		specs = append(specs, model.NetworkSpec{Name: n.name, Driver: model.DriverOverlay, Subnets: []model.Subnet{{Prefix: tPrefix(n.subnet)}}})
	}
	etcd, h1, h2 = clusterPair(t, func(c *Config) { c.Log = slog.New(slog.NewTextHandler(h2log, nil)) }, specs...)
	return etcd, h1, h2, h2log
}

// waitDump waits until env's link dump has every line of want and none
// of unwanted, and fails t with the dump when it does not within a few
// seconds (h2 applies published topologies on its own goroutine).
func waitDump(t *testing.T, env *testEnv, want, unwanted []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		dump := env.link.Dump()
		var missing, extra []string
		for _, w := range want {
			if !strings.Contains(dump, w) {
				missing = append(missing, w)
			}
		}
		for _, u := range unwanted {
			if strings.Contains(dump, u) {
				extra = append(extra, u)
			}
		}
		if len(missing) == 0 && len(extra) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("link dump lacks %q, has %q:\n%s", missing, extra, dump)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// peerLines are the neighbour and FDB entries of device vx for a peer
// with gateway gw, VTEP MAC mac and underlay address under.
func peerLines(vx, gw, mac, under string) []string {
	return []string{"neigh " + gw + " lladdr " + mac + " dev " + vx + " permanent",
		"fdb " + mac + " dst " + under + " dev " + vx + " self permanent"}
}

// A node's VXLAN devices all carry its record's VTEP MAC, and its peers
// are programmed with the MAC of their records: on every network, after
// self-healing, and again when a record's MAC changes. A record without
// one gets the MAC derived from its underlay address, logged once.
func TestOverlayVTEPMACFromRecord(t *testing.T) {
	etcd, _, h2, h2log := vtepNodes(t)
	ctx := context.Background()
	web, api := h2.mustNet(t, "web").Overlay.VXLAN, h2.mustNet(t, "api").Overlay.VXLAN
	if web == api {
		t.Fatalf("web and api share the device %s", web)
	}
	h1mac, h2mac := etcd.recordMAC("h1"), etcd.recordMAC("h2")
	derived := link.VTEPMAC(tAddr("192.0.2.1")).String()
	if h1mac == derived {
		t.Fatal("the fake's record MAC is the derived one: the test could not tell them apart")
	}
	peers := func(mac string) []string {
		return append(peerLines(web, "10.200.0.0", mac, "192.0.2.1"), peerLines(api, "10.201.0.0", mac, "192.0.2.1")...)
	}

	// One MAC, h2's record's, on both of h2's devices; h1 programmed
	// with h1's record's MAC on both.
	own := []string{"vxlan " + web + " ", "vxlan " + api + " "}
	waitDump(t, h2, peers(h1mac), peerLines(web, "10.200.0.0", derived, "192.0.2.1"))
	for _, line := range strings.Split(h2.link.Dump(), "\n") {
		for _, o := range own {
			if strings.HasPrefix(line, o) && !strings.Contains(line, " mac "+h2mac+" ") {
				t.Errorf("h2's device does not carry h2's record's VTEP MAC %s: %s", h2mac, line)
			}
		}
	}
	for _, name := range []string{"web", "api"} {
		if d := h2.e.drv(&h2.mustNet(t, name).Network).CheckNetwork(&h2.mustNet(t, name).Network); d != nil {
			t.Errorf("network %s on h2 drifted right after it was made: %q", name, d)
		}
	}

	// Self-healing puts back what was lost, with the record's MAC: the
	// peers' entries of one device, and the other device as a whole.
	h2.link.BreakVXLAN("flush", web)
	h2.link.BreakVXLAN("delete", api)
	h2.e.HealNow(ctx)
	waitDump(t, h2, append(peers(h1mac), "mac "+h2mac), nil)
	if d := h2.e.drv(&h2.mustNet(t, "api").Network).CheckNetwork(&h2.mustNet(t, "api").Network); d != nil {
		t.Errorf("api on h2 after self-healing: %q", d)
	}

	// h1's record gets another MAC: h2 reprograms both networks from it
	// and drops the old one.
	etcd.setRecordMAC("h1", "02:00:00:00:00:11")
	waitDump(t, h2, peers("02:00:00:00:00:11"), peers(h1mac))
	nodes, err := h2.e.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Name != "h1" || nodes[0].VTEPMAC != "02:00:00:00:00:11" || nodes[1].VTEPMAC != h2mac {
		t.Errorf("node ls on h2: %+v, want h1 with 02:00:00:00:00:11 and h2 with %s (their records')", nodes, h2mac)
	}

	// A record without a MAC: derived from the underlay address (what
	// h1 derives for itself), shown as such, and logged once however
	// often the peers are programmed and checked.
	etcd.setRecordMAC("h1", "")
	waitDump(t, h2, peers(derived), peers("02:00:00:00:00:11"))
	h2.e.HealNow(ctx)
	etcd.setRecordMAC("h1", "")
	h2.e.HealNow(ctx)
	waitDump(t, h2, peers(derived), nil)
	if n, err := h2.e.Node(ctx, "h1"); err != nil || n.VTEPMAC != derived {
		t.Errorf("node inspect h1 without a recorded MAC: %+v, %v; want the derived %s", n, err, derived)
	}
	if got := strings.Count(h2log.String(), "no usable VTEP MAC"); got != 1 {
		t.Errorf("a record without a VTEP MAC was logged %d times, want once:\n%s", got, h2log)
	}
	if !strings.Contains(h2log.String(), "node=h1") {
		t.Errorf("the log does not name the node:\n%s", h2log)
	}
	// So is one that is no unicast MAC (written by hand).
	etcd.setRecordMAC("h1", "01:00:5e:00:00:01")
	h2.e.HealNow(ctx)
	waitDump(t, h2, peers(derived), nil)
	if d := h2.e.drv(&h2.mustNet(t, "web").Network).CheckNetwork(&h2.mustNet(t, "web").Network); d != nil {
		t.Errorf("web on h2 with a multicast MAC in h1's record: %q", d)
	}
	// Fixed: the record's MAC again.
	etcd.setRecordMAC("h1", h1mac)
	waitDump(t, h2, peers(h1mac), peers(derived))
}

// A node whose record has another node's VTEP MAC is left out of the
// peers (and logged once), and the others stay programmed: one bad record
// does not cut the whole network. Fixed, it is programmed too.
func TestOverlayClashingRecordLeftOut(t *testing.T) {
	etcd, _, h2, h2log := vtepNodes(t)
	web := h2.mustNet(t, "web").Overlay.VXLAN
	h1mac := etcd.recordMAC("h1")
	waitDump(t, h2, peerLines(web, "10.200.0.0", h1mac, "192.0.2.1"), nil)
	etcd.join("h3", "192.0.2.3")
	etcd.claim("web", "h3", "10.200.9.0/24")
	etcd.setRecordMAC("h3", h1mac) // publishes the topology with h3
	time.Sleep(200 * time.Millisecond)
	waitDump(t, h2, peerLines(web, "10.200.0.0", h1mac, "192.0.2.1"), []string{"10.200.9.0", "192.0.2.3"})
	// A node joining meanwhile is programmed (a refused list would leave
	// it out too).
	etcd.join("h4", "192.0.2.4")
	etcd.claim("web", "h4", "10.200.10.0/24")
	etcd.setRecordMAC("h4", "02:00:00:00:00:44")
	waitDump(t, h2, peerLines(web, "10.200.10.0", "02:00:00:00:00:44", "192.0.2.4"), []string{"10.200.9.0"})
	if n := strings.Count(h2log.String(), "leaving it out of the overlay's peers"); n != 1 {
		t.Errorf("the clash was logged %d times, want once:\n%s", n, h2log.String())
	}
	etcd.setRecordMAC("h3", "02:00:00:00:00:33")
	waitDump(t, h2, append(peerLines(web, "10.200.0.0", h1mac, "192.0.2.1"), peerLines(web, "10.200.9.0", "02:00:00:00:00:33", "192.0.2.3")...), nil)
}
