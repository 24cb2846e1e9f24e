package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/store/etcdtest"
	"pontoon/internal/testutil"
)

// The overlay's benchmarks simulate a cluster's hosts as throwaway host
// namespaces, each running its own daemon (the harness's Host), all on
// one underlay: a Linux bridge in a further throwaway namespace, each host
// plugged into it with a veth (under0 on the host, 192.0.2.N/24), and one
// real etcd (etcdtest). Every simulated host shares the machine's CPUs
// with the others, etcd and the benchmark.

// overlayHostsEnv bounds BenchmarkOverlayConvergence's sizes (default 10:
// `go test -bench .` stays within minutes); 50 runs them all.
const overlayHostsEnv = "PONTOON_BENCH_OVERLAY_HOSTS"

// underlay is the hosts' shared L2 segment: bridge ul0 in a namespace of
// its own.
type underlay struct {
	ns string
}

func newUnderlay(b testing.TB) *underlay {
	b.Helper()
	u := &underlay{ns: testutil.NewNetns(b)}
	for _, argv := range [][]string{
		{"ip", "link", "add", "ul0", "type", "bridge"},
		{"ip", "link", "set", "ul0", "up"},
	} {
		if out, err := inNS(u.ns, argv...); err != nil {
			b.Fatalf("underlay: %s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	return u
}

// underlayIP is host i's address on the underlay (i from 1).
func underlayIP(i int) string { return fmt.Sprintf("192.0.2.%d", i) }

// plug connects host h to the underlay as host i: under0 in h's
// namespace, up, with 192.0.2.i/24.
func (u *underlay) plug(h *Host, i int) {
	h.t.Helper()
	port := fmt.Sprintf("ulp%d", i)
	h.In(u.ns, "ip", "link", "add", port, "type", "veth", "peer", "name", "under0", "netns", h.NS)
	h.In(u.ns, "ip", "link", "set", port, "master", "ul0", "up")
	h.In(h.NS, "ip", "link", "set", "under0", "address", underlayMAC(i))
	h.In(h.NS, "ip", "addr", "add", underlayIP(i)+"/24", "dev", "under0")
	// Static ARP for every host the underlay can have: Linux's ARP
	// table is one for all namespaces, with one limit (gc_thresh3, 1024
	// entries that can be collected, a machine-wide setting we do not
	// change): 50 simulated hosts each learning 50 others overflow it
	// ("neighbor table overflow"), and new entries fail until the
	// garbage collector frees some — seconds of lost packets that real
	// hosts, each with its own table, never see. Permanent entries are
	// exempt from that limit.
	h.In(h.NS, "sh", "-c", fmt.Sprintf("for j in $(seq 1 %d); do [ $j -ne %d ] && printf 'neigh replace 192.0.2.%%d lladdr 02:00:c0:00:02:%%02x dev under0 nud permanent\\n' $j $j; done | ip -batch -", maxUnderlayHosts, i))
	h.In(h.NS, "ip", "link", "set", "under0", "up")
}

// maxUnderlayHosts is how many hosts the underlay's static ARP covers.
const maxUnderlayHosts = 200

// underlayMAC is host i's MAC on the underlay (fixed, for the static
// ARP entries of the others).
func underlayMAC(i int) string { return fmt.Sprintf("02:00:c0:00:02:%02x", i) }

// inNS is Host.TryIn for a namespace of no host.
func inNS(ns string, argv ...string) (string, error) { return (&Host{}).TryIn(ns, argv...) }

// newBareHost is newHostIn without the daemon: the namespaces, the uplink
// to the outside world and its resolver; Start comes later.
func newBareHost(b testing.TB) *Host {
	b.Helper()
	testutil.RequireRoot(b)
	dir := b.TempDir()
	h := &Host{t: b, Dir: dir, Root: filepath.Join(dir, "root"), Socket: filepath.Join(dir, "pontoon.sock"), NetnsDir: filepath.Join(dir, "netns")}
	h.NS = testutil.NewNetns(b)
	h.Outside = testutil.NewNetns(b)
	b.Cleanup(func() { unmountUnder(dir) })
	h.wire()
	h.serveUpstream()
	b.Cleanup(h.Stop)
	return h
}

// clusterArgs are the daemon's flags for node name of the cluster at ep.
func clusterArgs(ep, name string) []string {
	return []string{"--cluster", ep, "--node-name", name, "--underlay", "under0"}
}

// parallelN runs fn(0..n-1), at most width at a time, and fails b if any
// failed (the harness's helpers end a failing goroutine with Goexit;
// deferred Done still runs).
func parallelN(b testing.TB, n, width int, fn func(i int)) {
	b.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// etcdRev is etcd's current revision: every write (a put, a delete, a
// transaction that changed something) raises it by exactly one; reads,
// lease grants and keep-alives do not.
func etcdRev(b testing.TB, cli *clientv3.Client) int64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "pontoon-bench-revision-probe")
	if err != nil {
		b.Fatalf("etcd revision: %v", err)
	}
	return r.Header.Revision
}

// cluster is n hosts of one etcd and one underlay, host i (from 0) node
// h<i+1> at 192.0.2.<i+1>.
type benchCluster struct {
	cli   *clientv3.Client
	ep    string
	ul    *underlay
	hosts []*Host
}

func newBenchCluster(b testing.TB) *benchCluster {
	b.Helper()
	cli := etcdtest.Start(b)
	return &benchCluster{cli: cli, ep: cli.Endpoints()[0], ul: newUnderlay(b)}
}

// addHost makes host number i (1-based: its node name and address), on
// the underlay, and starts its daemon when start is set.
func (c *benchCluster) addHost(b testing.TB, i int, start bool) *Host {
	b.Helper()
	if i < 1 || i > maxUnderlayHosts {
		b.Fatalf("host %d: the underlay has hosts 1 to %d", i, maxUnderlayHosts)
	}
	h := newBareHost(b)
	c.ul.plug(h, i)
	if start {
		h.Start(clusterArgs(c.ep, fmt.Sprintf("h%d", i))...)
	}
	return h
}

// pinger sends ICMP echo requests from one namespace, over a raw socket
// opened there beforehand (no exec in the timed region).
type pinger struct {
	c  net.PacketConn
	id uint16
}

func newPinger(b testing.TB, ns string, id uint16) *pinger {
	b.Helper()
	var c net.PacketConn
	if err := testutil.InNetns(b, ns, func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		b.Fatalf("raw ICMP socket in %s: %v", ns, err)
	}
	b.Cleanup(func() { c.Close() })
	return &pinger{c: c, id: id}
}

func icmpChecksum(p []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(p); i += 2 {
		s += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	if len(p)%2 == 1 {
		s += uint32(p[len(p)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// until sends an echo request to dst every interval until an echo reply
// from dst comes back, or limit passes; it returns when the reply
// arrived. Every request has an identifier of its own: a request sent
// before this host had a route to dst's slice left through the uplink and
// was masqueraded, and conntrack would keep that NAT for every later
// request of the same identifier (a fresh flow each time, as a new
// connection would be).
func (p *pinger) until(dst string, interval, limit time.Duration) (time.Time, error) {
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	deadline := time.Now().Add(limit)
	buf := make([]byte, 1500)
	const magic = "pontoon-bench"
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := make([]byte, 8+len(magic))
		req[0] = 8 // echo request
		binary.BigEndian.PutUint16(req[4:], p.id+seq)
		binary.BigEndian.PutUint16(req[6:], seq)
		copy(req[8:], magic)
		binary.BigEndian.PutUint16(req[2:], icmpChecksum(req))
		if _, err := p.c.WriteTo(req, to); err != nil {
			time.Sleep(interval) // no route (yet): try again
			continue
		}
		next := time.Now().Add(interval)
		for {
			_ = p.c.SetReadDeadline(next)
			n, from, err := p.c.ReadFrom(buf)
			if err != nil {
				break // the interval passed: send again
			}
			// The raw socket gets every ICMP packet of the namespace,
			// without the IP header: keep echo replies from dst that
			// carry our payload.
			if n >= 8+len(magic) && buf[0] == 0 && string(buf[8:8+len(magic)]) == magic && from.String() == dst {
				return time.Now(), nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("no echo reply from %s within %v", dst, limit)
}

func envHosts(b *testing.B) int {
	v := os.Getenv(overlayHostsEnv)
	if v == "" {
		return 10
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		b.Fatalf("%s=%q: want the largest cluster to simulate, a number ≥ 2 (e.g. 50)", overlayHostsEnv, v)
	}
	return n
}

// BenchmarkOverlayConvergence: how long after a node joins the cluster
// its sandbox is reachable from a sandbox on every other host, for 3,
// 10, 25 and 50 simulated hosts (sizes above $PONTOON_BENCH_OVERLAY_HOSTS,
// default 10, are skipped):
//
//	PONTOON_BENCH_OVERLAY_HOSTS=50 go test ./test/e2e -run XXX -bench OverlayConvergence -benchtime 10x -timeout 60m
//
// Set-up (untimed): etcd, the underlay, N-1 hosts started in parallel,
// overlay network ov (10.200.0.0/16, a /24 per host), one sandbox on ov on
// each of them, a raw ICMP socket in each sandbox. Each iteration then
// prepares a fresh host N+k (namespaces, underlay; no daemon), waits for
// a quiet machine and then a random 0-1 s, and times:
//
//	t0      daemon start on the new host (node joins, makes its part of ov),
//	        until it reports ready
//	tsb     `sandbox create j --network ov` on it returned
//	t(peer) the first echo reply from j to the sandbox of that peer, each
//	        of the N-1 peers probing every 10 ms from tsb on
//
// Metrics, over the N-1 peers of every iteration: join-p50/p99-ms =
// t(peer)-t0, attach-p50/p99-ms = t(peer)-tsb (what the peers' side
// adds after the sandbox exists), ready-ms = the daemon start alone; and
// the etcd writes (revisions) the join made until ready and the sandbox
// create made, and those made while the peers converged (0 expected);
// and idle-daemons-%cpu, the N-1 members' daemons' CPU time over 5 s with
// nothing changing before the first iteration, summed, in % of one core
// (what keeping the peers in step costs at rest).
//
// All peers of one iteration tend to see the join at the same phase of
// whatever they do periodically, so their figures are correlated: for a
// p50 that means something, run 10 iterations or more at small sizes. Between iterations the new host's sandbox is removed and
// its daemon stopped (it leaves the cluster), so every iteration joins
// the Nth node of a cluster of N.
func BenchmarkOverlayConvergence(b *testing.B) {
	limit := envHosts(b)
	for _, n := range []int{3, 10, 25, 50} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			if n > limit {
				b.Skipf("%d hosts: above %s=%d", n, overlayHostsEnv, limit)
			}
			overlayConvergence(b, n)
		})
	}
}

func overlayConvergence(b *testing.B, n int) {
	c := newBenchCluster(b)
	setup := time.Now()
	members := make([]*Host, n-1)
	parallelN(b, n-1, 8, func(i int) { members[i] = c.addHost(b, i+1, true) })
	members[0].P("network", "create", "ov", "--driver", "overlay", "--subnet", "10.200.0.0/16")
	pingers := make([]*pinger, n-1)
	parallelN(b, n-1, 8, func(i int) {
		h := members[i]
		waitNetwork(b, h, "ov")
		h.P("sandbox", "create", "s", "--network", "ov")
		pingers[i] = newPinger(b, h.SandboxNS("s"), uint16(i)<<10)
	})
	b.Logf("%d hosts: %d members up with a sandbox each in %v", n, n-1, time.Since(setup).Round(time.Millisecond))
	// What the members' daemons cost while nothing changes (keeping their
	// peers in step included), summed, in % of one core.
	settle(b)
	cpu := func() (sum time.Duration) {
		for _, h := range members {
			sum += h.daemonCPU(b)
		}
		return sum
	}
	const idleWindow = 5 * time.Second
	cpu0 := cpu()
	time.Sleep(idleWindow)
	idleCPU := 100 * float64(cpu()-cpu0) / float64(idleWindow)

	var join, attach, ready []time.Duration
	var joinWrites, attachWrites, lateWrites int64
	iter := 0
	for b.Loop() {
		b.StopTimer()
		j := c.addHost(b, n+iter, false)
		name := fmt.Sprintf("h%d", n+iter)
		settle(b)
		// A random pause: the previous iteration ended right after
		// the members' reaction to the previous join, and a fixed
		// set-up time after that would put every join at the same phase
		// of whatever the members do periodically.
		time.Sleep(rand.N(time.Second))
		b.StartTimer()

		rev0 := etcdRev(b, c.cli)
		t0 := time.Now()
		j.Start(clusterArgs(c.ep, name)...)
		ready = append(ready, time.Since(t0))
		rev1 := etcdRev(b, c.cli)
		out, err := j.TryP("sandbox", "create", "j", "--network", "ov")
		if err != nil {
			b.Fatalf("sandbox create on the joined node: %v\n%s", err, out)
		}
		tsb := time.Now()
		rev2 := etcdRev(b, c.cli)
		ip := j.IP("j", "ov")
		got := make([]time.Time, len(pingers))
		parallelN(b, len(pingers), len(pingers), func(i int) {
			at, err := pingers[i].until(ip, 10*time.Millisecond, 30*time.Second)
			if err != nil {
				b.Errorf("h%d's sandbox → %s (%s): %v", i+1, ip, name, err)
				return
			}
			got[i] = at
		})
		rev3 := etcdRev(b, c.cli)
		for _, at := range got {
			join = append(join, at.Sub(t0))
			attach = append(attach, at.Sub(tsb))
		}
		joinWrites += rev1 - rev0
		attachWrites += rev2 - rev1
		lateWrites += rev3 - rev2

		b.StopTimer()
		j.P("sandbox", "rm", "j")
		j.Stop()
		b.StartTimer()
		iter++
	}
	b.ReportMetric(quantileMs(join, 0.50), "join-p50-ms")
	b.ReportMetric(quantileMs(join, 0.99), "join-p99-ms")
	b.ReportMetric(quantileMs(attach, 0.50), "attach-p50-ms")
	b.ReportMetric(quantileMs(attach, 0.99), "attach-p99-ms")
	b.ReportMetric(quantileMs(ready, 0.50), "ready-ms")
	b.ReportMetric(idleCPU, "idle-daemons-%cpu")
	b.ReportMetric(float64(joinWrites)/float64(iter), "etcd-writes/join")
	b.ReportMetric(float64(attachWrites)/float64(iter), "etcd-writes/attach")
	b.ReportMetric(float64(lateWrites)/float64(iter), "etcd-writes/converge")
}

// BenchmarkOverlayAttach: sandbox create with --network (through the
// API) on an overlay network against a local bridge network, on the same
// host of a two-host cluster, alternating, $PONTOON_BENCH_OVERLAY_ATTACH_N
// (default 40) of each per iteration, removed again after it; and the
// etcd writes each attach makes:
//
//	PONTOON_BENCH_OVERLAY_ATTACH_N=100 go test ./test/e2e -run XXX -bench OverlayAttach -benchtime 2x
func BenchmarkOverlayAttach(b *testing.B) {
	k := 40
	if v := os.Getenv("PONTOON_BENCH_OVERLAY_ATTACH_N"); v != "" {
		var err error
		if k, err = strconv.Atoi(v); err != nil || k < 1 || k > 200 {
			b.Fatalf("PONTOON_BENCH_OVERLAY_ATTACH_N=%q: want 1 to 200 (a host's /24 slice)", v)
		}
	}
	c := newBenchCluster(b)
	h1, h2 := c.addHost(b, 1, true), c.addHost(b, 2, true)
	h1.P("network", "create", "ov", "--driver", "overlay", "--subnet", "10.201.0.0/16")
	h1.P("network", "create", "br", "--subnet", "10.202.0.0/16")
	waitNetwork(b, h2, "ov")
	h2.P("sandbox", "create", "peer", "--network", "ov")
	cl := api.NewClient(h1.Socket)
	ctx := context.Background()
	var ov, br []time.Duration
	var ovWrites, brWrites int64
	round := 0
	for b.Loop() {
		settle(b)
		for i := range k {
			for _, nw := range []string{"ov", "br"} {
				name := fmt.Sprintf("%s%d-%d", nw, round, i)
				rev0 := etcdRev(b, c.cli)
				t0 := time.Now()
				if _, err := cl.CreateSandbox(ctx, model.SandboxSpec{Name: name, Networks: []model.AttachSpec{{Network: nw}}}); err != nil {
					b.Fatalf("sandbox create %s --network %s: %v", name, nw, err)
				}
				d := time.Since(t0)
				w := etcdRev(b, c.cli) - rev0
				if nw == "ov" {
					ov, ovWrites = append(ov, d), ovWrites+w
				} else {
					br, brWrites = append(br, d), brWrites+w
				}
			}
		}
		// The last overlay sandbox carries traffic to the other host.
		last := fmt.Sprintf("ov%d-%d", round, k-1)
		if out, ok := within(10*time.Second, func() (string, bool) {
			o, err := h1.TryIn(h1.SandboxNS(last), "ping", "-c1", "-W1", h2.IP("peer", "ov"))
			return o, err == nil
		}); !ok {
			b.Fatalf("%s → peer on h2: %s", last, out)
		}
		// Untimed: remove them again, so every round meets the same host.
		for i := range k {
			for _, nw := range []string{"ov", "br"} {
				if err := cl.RemoveSandbox(ctx, fmt.Sprintf("%s%d-%d", nw, round, i)); err != nil {
					b.Fatal(err)
				}
			}
		}
		round++
	}
	b.ReportMetric(quantileMs(ov, 0.50), "overlay-p50-ms")
	b.ReportMetric(quantileMs(br, 0.50), "bridge-p50-ms")
	b.ReportMetric(quantileMs(ov, 0.50)/quantileMs(br, 0.50), "overlay/bridge")
	b.ReportMetric(float64(ovWrites)/float64(len(ov)), "etcd-writes/overlay-attach")
	b.ReportMetric(float64(brWrites)/float64(len(br)), "etcd-writes/bridge-attach")
}

// BenchmarkOverlayThroughput: iperf3 TCP between two hosts of a cluster
// on the same underlay (veths on a Linux bridge), median of 5 rounds of
// 3 s each, all paths back to back in every round, each going first in
// turn:
//
//	go test ./test/e2e -run XXX -bench OverlayThroughput -benchtime 1x
//
// pontoon is sandbox to sandbox across the overlay (veth, bridge, route,
// VXLAN on each host); hand-built is a VXLAN device made with ip between
// the same two host namespaces (another VNI, the same dstport 4789 and
// MTU as pontoon's), host namespace to host namespace; hand-topo is
// pontoon's topology built by hand on that VXLAN (namespace, veth,
// bridge, route on each host, the same MTU), namespace to namespace;
// underlay is host namespace to host namespace over under0 alone.
func BenchmarkOverlayThroughput(b *testing.B) {
	c := newBenchCluster(b)
	h1, h2 := c.addHost(b, 1, true), c.addHost(b, 2, true)
	h1.P("network", "create", "ov", "--driver", "overlay", "--subnet", "10.203.0.0/16")
	waitNetwork(b, h2, "ov")
	h1.P("sandbox", "create", "a", "--network", "ov")
	h2.P("sandbox", "create", "b", "--network", "ov")
	bIP := h2.IP("b", "ov")
	if out, ok := within(10*time.Second, func() (string, bool) {
		o, err := h1.TryIn(h1.SandboxNS("a"), "ping", "-c1", "-W1", bIP)
		return o, err == nil
	}); !ok {
		b.Fatalf("a → b across the overlay: %s", out)
	}
	// A host-gw overlay network beside it: no encapsulation, the
	// underlay's MTU.
	h1.P("network", "create", "hg", "--driver", "overlay", "--mode", "host-gw", "--subnet", "10.204.0.0/16")
	waitNetwork(b, h2, "hg")
	h1.P("sandbox", "create", "c", "--network", "hg")
	h2.P("sandbox", "create", "d", "--network", "hg")
	dIP := h2.IP("d", "hg")
	if out, ok := within(10*time.Second, func() (string, bool) {
		o, err := h1.TryIn(h1.SandboxNS("c"), "ping", "-c1", "-W1", dIP)
		return o, err == nil
	}); !ok {
		b.Fatalf("c → d across the host-gw overlay: %s", out)
	}
	// The same MTU as pontoon's VXLAN device.
	vx := h1.HostLinks("ptvx-")
	if len(vx) != 1 {
		b.Fatalf("h1's VXLAN devices: %v", vx)
	}
	var mtu string
	f := strings.Fields(h1.In(h1.NS, "ip", "-o", "link", "show", "dev", vx[0]))
	for i := range len(f) - 1 {
		if f[i] == "mtu" {
			mtu = f[i+1]
		}
	}
	if mtu == "" {
		b.Fatalf("no MTU in %q", f)
	}
	for i, h := range []*Host{h1, h2} {
		local, remote := underlayIP(i+1), underlayIP(2-i)
		h.In(h.NS, "ip", "link", "add", "vxh0", "type", "vxlan", "id", "4242", "local", local, "remote", remote, "dstport", "4789", "dev", "under0")
		h.In(h.NS, "ip", "link", "set", "vxh0", "mtu", mtu, "up")
		h.In(h.NS, "ip", "addr", "add", fmt.Sprintf("10.250.0.%d/24", i+1), "dev", "vxh0")
	}
	// The same topology as pontoon's built by hand on that VXLAN: per
	// host a namespace on a veth whose host end is on a bridge with the
	// gateway address, and a route to the other host's subnet through
	// the other end of the VXLAN; every MTU pontoon's.
	hb := make([]string, 2)
	for i, h := range []*Host{h1, h2} {
		hb[i] = testutil.NewNetns(b)
		gw, addr := fmt.Sprintf("10.251.%d.1", i+1), fmt.Sprintf("10.251.%d.2", i+1)
		h.In(h.NS, "ip", "link", "add", "hbr0", "mtu", mtu, "type", "bridge")
		h.In(h.NS, "ip", "addr", "add", gw+"/24", "dev", "hbr0")
		h.In(h.NS, "ip", "link", "set", "hbr0", "up")
		h.In(h.NS, "ip", "link", "add", "hbv0", "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", hb[i])
		h.In(h.NS, "ip", "link", "set", "hbv0", "master", "hbr0", "up")
		h.In(hb[i], "ip", "addr", "add", addr+"/24", "dev", "eth0")
		h.In(hb[i], "ip", "link", "set", "eth0", "up")
		h.In(hb[i], "ip", "route", "add", "default", "via", gw)
		h.In(h.NS, "ip", "route", "add", fmt.Sprintf("10.251.%d.0/24", 2-i), "via", fmt.Sprintf("10.250.0.%d", 2-i), "dev", "vxh0")
	}
	// And the host-gw floor: the same sandbox topology by hand with the
	// other host's subnet routed via its underlay address (MTU 1500).
	hg := make([]string, 2)
	for i, h := range []*Host{h1, h2} {
		hg[i] = testutil.NewNetns(b)
		gw, addr := fmt.Sprintf("10.252.%d.1", i+1), fmt.Sprintf("10.252.%d.2", i+1)
		h.In(h.NS, "ip", "link", "add", "hgr0", "type", "bridge")
		h.In(h.NS, "ip", "addr", "add", gw+"/24", "dev", "hgr0")
		h.In(h.NS, "ip", "link", "set", "hgr0", "up")
		h.In(h.NS, "ip", "link", "add", "hgv0", "type", "veth", "peer", "name", "eth0", "netns", hg[i])
		h.In(h.NS, "ip", "link", "set", "hgv0", "master", "hgr0", "up")
		h.In(hg[i], "ip", "addr", "add", addr+"/24", "dev", "eth0")
		h.In(hg[i], "ip", "link", "set", "eth0", "up")
		h.In(hg[i], "ip", "route", "add", "default", "via", gw)
		h.In(h.NS, "ip", "route", "add", fmt.Sprintf("10.252.%d.0/24", 2-i), "via", underlayIP(2-i), "dev", "under0")
	}
	for _, c := range []struct{ ns, to string }{{h1.NS, "10.250.0.2"}, {hb[0], "10.251.2.2"}, {hg[0], "10.252.2.2"}} {
		if out, ok := within(5*time.Second, func() (string, bool) {
			o, err := h1.TryIn(c.ns, "ping", "-c1", "-W1", c.to)
			return o, err == nil
		}); !ok {
			b.Fatalf("h1 → %s over the hand-built VXLAN: %s", c.to, out)
		}
	}
	type path struct {
		name                   string
		server, client, target string
		runs                   []float64
	}
	for b.Loop() {
		paths := []*path{
			{name: "pontoon", server: h2.SandboxNS("b"), client: h1.SandboxNS("a"), target: bIP},
			{name: "host-gw", server: h2.SandboxNS("d"), client: h1.SandboxNS("c"), target: dIP},
			{name: "hand-built", server: h2.NS, client: h1.NS, target: "10.250.0.2"},
			{name: "hand-topo", server: hb[1], client: hb[0], target: "10.251.2.2"},
			{name: "underlay", server: h2.NS, client: h1.NS, target: underlayIP(2)},
			{name: "hand-hostgw", server: hg[1], client: hg[0], target: "10.252.2.2"},
		}
		for r := range 5 {
			for i := range paths {
				p := paths[(i+r)%len(paths)] // each goes first in turn
				settle(b)                    // iperf3 is CPU-bound: not while others run
				p.runs = append(p.runs, iperf3Gbps(b, h1, p.server, p.client, p.target, 5201))
			}
		}
		med := map[string]float64{}
		fmt.Printf("\niperf3 TCP between two hosts, median of 5 runs of 3 s (Gbit/s), VXLAN MTU %s\n", mtu)
		for _, p := range paths {
			med[p.name] = webMedian(p.runs)
			fmt.Printf("%-10s %6.2f   runs %.2f\n", p.name, med[p.name], p.runs)
		}
		b.ReportMetric(med["pontoon"], "pontoon-Gbit/s")
		b.ReportMetric(med["hand-built"], "handbuilt-Gbit/s")
		b.ReportMetric(med["underlay"], "underlay-Gbit/s")
		b.ReportMetric(med["pontoon"]/med["hand-built"], "pontoon/handbuilt")
		b.ReportMetric(med["pontoon"]/med["underlay"], "pontoon/underlay")
		b.ReportMetric(med["hand-built"]/med["underlay"], "handbuilt/underlay")
		b.ReportMetric(med["hand-topo"], "handtopo-Gbit/s")
		b.ReportMetric(med["pontoon"]/med["hand-topo"], "pontoon/handtopo")
		b.ReportMetric(med["host-gw"], "hostgw-Gbit/s")
		b.ReportMetric(med["host-gw"]/med["underlay"], "hostgw/underlay")
		b.ReportMetric(med["pontoon"]/med["host-gw"], "vxlan/hostgw")
		b.ReportMetric(med["hand-hostgw"], "handhostgw-Gbit/s")
		b.ReportMetric(med["host-gw"]/med["hand-hostgw"], "hostgw/handhostgw")
	}
}
