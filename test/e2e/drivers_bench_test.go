package e2e

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/ovs"
	"pontoon/internal/ovs/ovstest"
	"pontoon/internal/testutil"
)

var driverN = flag.Int("driver-n", 100, "BenchmarkDriverAttach: attaches per driver")

// driverHost is a throwaway host whose daemon can make networks of every
// driver: a private OVS runs in its namespace (the daemon is restarted
// with --ovsdb), and mvParent, a veth whose peer sits in a further
// throwaway namespace, is the macvlan networks' parent.
type driverHost struct {
	*Host
	cl  *api.Client
	ovs *ovstest.OVS
}

const mvParent = "mvpar0"

func newDriverHost(b *testing.B) *driverHost {
	b.Helper()
	h := NewHost(b)
	o := ovstest.Start(b, h.NS)
	h.Stop()
	h.Start("--ovsdb", o.Endpoint)
	peer := testutil.NewNetns(b)
	h.In(h.NS, "ip", "link", "add", mvParent, "type", "veth", "peer", "name", "lan0", "netns", peer)
	h.In(h.NS, "ip", "link", "set", mvParent, "up")
	h.In(peer, "ip", "link", "set", "lan0", "up")
	return &driverHost{Host: h, cl: api.NewClient(h.Socket), ovs: o}
}

// networks makes one network of each driver but link (a link network
// has exactly two members: see linkNet): bench-bridge, bench-mv and
// bench-ovs, each a /16 in 10.x.
func (d *driverHost) networks() {
	d.P("network", "create", "bench-bridge", "--subnet", "10.96.0.0/16")
	d.P("network", "create", "bench-mv", "--driver", "macvlan", "--parent", mvParent,
		"--subnet", "10.95.0.0/16", "--ip-range", "10.95.128.0/17")
	d.P("network", "create", "bench-ovs", "--driver", "ovs", "--subnet", "10.93.0.0/16")
}

// linkNet makes link network i, a /30 of 10.97.0.0/16.
func (d *driverHost) linkNet(i int) string {
	name := fmt.Sprintf("bench-wire%d", i)
	base := 4 * i
	d.P("network", "create", name, "--driver", "link", "--subnet", fmt.Sprintf("10.97.%d.%d/30", base>>8, base&0xff))
	return name
}

// sandboxes creates n sandboxes without networks, prefix0..prefix(n-1).
func (d *driverHost) sandboxes(b *testing.B, prefix string, n int) []string {
	b.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", prefix, i)
		if _, err := d.cl.CreateSandbox(context.Background(), model.SandboxSpec{Name: names[i]}); err != nil {
			b.Fatal(err)
		}
	}
	return names
}

func (d *driverHost) connect(network, sandbox string) error {
	_, err := d.cl.Connect(context.Background(), network, api.ConnectRequest{Sandbox: sandbox})
	return err
}

// timeEach runs fn(0..n-1) serially and returns each call's duration.
func timeEach(b *testing.B, what string, n int, fn func(i int) error) []time.Duration {
	b.Helper()
	d := make([]time.Duration, n)
	for i := range n {
		t0 := time.Now()
		if err := fn(i); err != nil {
			b.Fatalf("%s %d: %v", what, i, err)
		}
		d[i] = time.Since(t0)
	}
	return d
}

// quantileMs is the q-quantile (nearest rank) of d in milliseconds.
func quantileMs(d []time.Duration, q float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q * float64(len(s)))
	if i >= len(s) {
		i = len(s) - 1
	}
	return float64(s[i].Microseconds()) / 1000
}

// BenchmarkDriverAttach: for each network driver, N serial attaches
// (Connect of a sandbox created beforehand, through the API) against the
// floor, the same kernel objects made with raw netlink calls:
//
//	go test ./test/e2e -run XXX -bench DriverAttach -benchtime 1x [-args -driver-n 100]
//
// The floors, each call in the timed region like pontoon-bench's
// runFloor (opening the sandbox's namespace and a netlink socket in it
// included), every sandbox end with addrgenmode none as pontoon sets it:
//   - bridge: a veth whose peer is made in the sandbox, its host end on a
//     Linux bridge and up; in the sandbox address, addrgenmode, up,
//     default route. In a namespace of its own, as runFloor does.
//   - macvlan: a macvlan of the same parent made in the sandbox; address,
//     addrgenmode, up, default route. In the daemon's namespace, where
//     the parent is.
//   - link: one veth pair with each end made directly in its sandbox;
//     address, addrgenmode and up on each. Timed per pair; per end is half.
//   - ovs: the bridge floor's veth without the Linux bridge, its host end
//     made an OVS port with internal/ovs's AddPort (which waits for
//     ovs-vswitchd to open it), on a bridge of the same private OVS.
//
// Per driver the floor runs first and removes what it made (the macvlans
// and the OVS ports share the daemon's namespace, parent and OVS), then
// pontoon's attaches follow; a 2-core machine shared with others drifts,
// so one run is one sample.
//
// A link network's first member makes nothing in the kernel (the pair
// waits for the second), so its attaches alternate cheap and full; the
// second members' p50 is compared with the floor per pair on a line of
// its own.
func BenchmarkDriverAttach(b *testing.B) {
	n := *driverN
	if n < 2 || n%2 != 0 {
		b.Fatalf("-driver-n %d: want an even number ≥ 2 (link attaches come in pairs)", n)
	}
	for b.Loop() {
		d := newDriverHost(b)
		d.networks()
		// Driver by driver, the floor first, its objects removed again
		// before pontoon's attaches, so that both meet the same host: OVS
		// in particular slows down with every port it has (ovs-vswitchd
		// reconfigures all of them on each change).
		pontoon, floor := map[string][]time.Duration{}, map[string][]time.Duration{}
		for _, nw := range []struct{ driver, network, prefix string }{
			{"bridge", "bench-bridge", "br"}, {"macvlan", "bench-mv", "mv"}, {"ovs", "bench-ovs", "ov"},
		} {
			switch nw.driver {
			case "bridge":
				floor["bridge"] = floorBridge(b, n)
			case "macvlan":
				floor["macvlan"] = floorMacvlan(b, d.NS, n)
			case "ovs":
				floor["ovs"] = floorOVS(b, d.NS, d.ovs.Endpoint, n)
			}
			names := d.sandboxes(b, nw.prefix, n)
			pontoon[nw.driver] = timeEach(b, "connect "+nw.network, n, func(i int) error { return d.connect(nw.network, names[i]) })
		}
		pairs := floorLink(b, n/2)
		for _, t := range pairs {
			floor["link"] = append(floor["link"], t/2, t/2)
		}
		wires := make([]string, n/2)
		for i := range wires {
			wires[i] = d.linkNet(i)
		}
		left, right := d.sandboxes(b, "ll", n/2), d.sandboxes(b, "lr", n/2)
		pontoon["link"] = timeEach(b, "connect link", n, func(i int) error {
			if i%2 == 0 {
				return d.connect(wires[i/2], left[i/2])
			}
			return d.connect(wires[i/2], right[i/2])
		})
		var first, second []time.Duration
		for i, t := range pontoon["link"] {
			if i%2 == 0 {
				first = append(first, t)
			} else {
				second = append(second, t)
			}
		}
		// Nothing is left half-made: the last pair carries traffic.
		if out, err := d.TryIn(d.SandboxNS(left[n/2-1]), "ping", "-c1", "-W2", d.IP(right[n/2-1], wires[n/2-1])); err != nil {
			b.Fatalf("the last link pair: %v\n%s", err, out)
		}

		fmt.Printf("\nattach latency, %d serial attaches per driver (ms)\n", n)
		fmt.Printf("%-8s %12s %12s %12s %8s\n", "driver", "pontoon p50", "pontoon p90", "floor p50", "ratio")
		for _, drv := range []string{"bridge", "link", "macvlan", "ovs"} {
			p, f := quantileMs(pontoon[drv], 0.5), quantileMs(floor[drv], 0.5)
			fmt.Printf("%-8s %12.2f %12.2f %12.2f %8.1f\n", drv, p, quantileMs(pontoon[drv], 0.9), f, p/f)
		}
		fmt.Printf("(link: floor per end, half a pair; pontoon over first and second members alike)\n")
		s, f := quantileMs(second, 0.5), quantileMs(pairs, 0.5)
		fmt.Printf("link second member p50 %.2f (p90 %.2f)  floor per pair p50 %.2f  ratio %.1f;  first member p50 %.2f\n",
			s, quantileMs(second, 0.9), f, s/f, quantileMs(first, 0.5))
	}
}

// handleIn opens a netlink socket in the namespace pinned at path.
func handleIn(path string) (*netlink.Handle, error) {
	fd, err := vnetns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	return netlink.NewHandleAt(fd)
}

// handleAtPath is handleIn for set-up: it fails the benchmark and closes
// the socket when it ends.
func handleAtPath(b *testing.B, path string) *netlink.Handle {
	b.Helper()
	h, err := handleIn(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	return h
}

// namespaces pins n throwaway namespaces.
func namespaces(b *testing.B, n int) []string {
	b.Helper()
	nss := make([]string, n)
	for i := range nss {
		nss[i] = testutil.NewNetns(b)
	}
	return nss
}

// v4 is 10.a.(i>>8).(i&255)/bits.
func v4(a byte, i, bits int) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, a, byte(i>>8), byte(i)), Mask: net.CIDRMask(bits, 32)}}
}

// configureEnd gives the sandbox end named eth0 in the namespace at ns its
// address, addrgenmode none, up and, when gw is not nil, a default route:
// what pontoon's configureIface does in one sendmsg, here call by call.
func configureEnd(ns string, addr *netlink.Addr, gw net.IP) error {
	sh, err := handleIn(ns)
	if err != nil {
		return err
	}
	defer sh.Close()
	l, err := sh.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := sh.AddrAdd(l, addr); err != nil {
		return err
	}
	if err := sh.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return err
	}
	if err := sh.LinkSetUp(l); err != nil {
		return err
	}
	if gw == nil {
		return nil
	}
	return sh.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw})
}

// vethInto makes a veth from the host handle h whose peer eth0 is made in
// the namespace at ns, its host end up (on master, when not 0).
func vethInto(h *netlink.Handle, name, ns string, master int) error {
	fd, err := vnetns.GetFromPath(ns)
	if err != nil {
		return err
	}
	defer fd.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: master}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(fd))}
	if err := h.LinkAdd(v); err != nil {
		return err
	}
	return h.LinkSetUp(v)
}

// floorBridge: runFloor's attach, n times, in a host namespace of its
// own.
func floorBridge(b *testing.B, n int) []time.Duration {
	b.Helper()
	h := handleAtPath(b, testutil.NewNetns(b))
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "flbr0"}, MulticastSnooping: &off}
	if err := h.LinkAdd(br); err != nil {
		b.Fatal(err)
	}
	if err := h.AddrAdd(br, v4(196, 1, 16)); err != nil {
		b.Fatal(err)
	}
	if err := h.LinkSetUp(br); err != nil {
		b.Fatal(err)
	}
	nss := namespaces(b, n)
	gw := net.IPv4(10, 196, 0, 1)
	return timeEach(b, "floor bridge", n, func(i int) error {
		if err := vethInto(h, fmt.Sprintf("flb%d", i), nss[i], br.Index); err != nil {
			return err
		}
		return configureEnd(nss[i], v4(196, i+2, 16), gw)
	})
}

// floorMacvlan: a macvlan of mvParent made in each sandbox, from the
// daemon's namespace (where the parent is); they are deleted again
// before it returns.
func floorMacvlan(b *testing.B, hostNS string, n int) []time.Duration {
	b.Helper()
	h := handleAtPath(b, hostNS)
	parent, err := h.LinkByName(mvParent)
	if err != nil {
		b.Fatal(err)
	}
	nss := namespaces(b, n)
	gw := net.IPv4(10, 195, 0, 1)
	defer func() {
		for _, ns := range nss {
			if err := delEth0(ns); err != nil {
				b.Error(err)
			}
		}
	}()
	return timeEach(b, "floor macvlan", n, func(i int) error {
		fd, err := vnetns.GetFromPath(nss[i])
		if err != nil {
			return err
		}
		defer fd.Close()
		mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "eth0", ParentIndex: parent.Attrs().Index, Namespace: netlink.NsFd(int(fd))}, Mode: netlink.MACVLAN_MODE_BRIDGE}
		if err := h.LinkAdd(mv); err != nil {
			return err
		}
		return configureEnd(nss[i], v4(195, 128<<8+i, 16), gw)
	})
}

// delEth0 deletes eth0 in the namespace at ns.
func delEth0(ns string) error {
	h, err := handleIn(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	return h.LinkDel(l)
}

// floorLink: n veth pairs, each end made directly in its namespace, both
// configured; one duration per pair.
func floorLink(b *testing.B, n int) []time.Duration {
	b.Helper()
	h := handleAtPath(b, testutil.NewNetns(b))
	left, right := namespaces(b, n), namespaces(b, n)
	return timeEach(b, "floor link", n, func(i int) error {
		lfd, err := vnetns.GetFromPath(left[i])
		if err != nil {
			return err
		}
		defer lfd.Close()
		rfd, err := vnetns.GetFromPath(right[i])
		if err != nil {
			return err
		}
		defer rfd.Close()
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Namespace: netlink.NsFd(int(lfd))},
			PeerName: "eth0", PeerNamespace: netlink.NsFd(int(rfd))}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		if err := configureEnd(left[i], v4(194, 4*i+1, 30), nil); err != nil {
			return err
		}
		return configureEnd(right[i], v4(194, 4*i+2, 30), nil)
	})
}

// floorOVS: a veth per sandbox, the sandbox end configured as the bridge
// floor's, whose host end then becomes a port of an OVS bridge of the
// daemon's private OVS (ovs.Client.AddPort, waiting for ovs-vswitchd to
// open it), in the order pontoon's ovs driver does it. The bridge and the veths are deleted again before it returns.
func floorOVS(b *testing.B, hostNS, endpoint string, n int) []time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := ovs.Dial(ctx, endpoint)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const br = "flovs0"
	idx, err := c.EnsureBridge(ctx, ovs.Bridge{Name: br})
	if err != nil {
		b.Fatal(err)
	}
	h := handleAtPath(b, hostNS)
	nss := namespaces(b, n)
	defer func() {
		if err := c.DeleteBridge(context.Background(), br); err != nil {
			b.Error(err)
		}
		for _, ns := range nss {
			if err := delEth0(ns); err != nil {
				b.Error(err)
			}
		}
	}()
	brl, err := h.LinkByIndex(idx)
	if err != nil {
		b.Fatal(err)
	}
	if err := h.AddrAdd(brl, v4(193, 1, 16)); err != nil {
		b.Fatal(err)
	}
	if err := h.LinkSetUp(brl); err != nil {
		b.Fatal(err)
	}
	gw := net.IPv4(10, 193, 0, 1)
	return timeEach(b, "floor ovs", n, func(i int) error {
		name := fmt.Sprintf("flo%d", i)
		if err := vethInto(h, name, nss[i], 0); err != nil {
			return err
		}
		if err := configureEnd(nss[i], v4(193, i+2, 16), gw); err != nil {
			return err
		}
		_, err := c.AddPort(ctx, ovs.Port{Name: name, Bridge: br})
		return err
	})
}

// BenchmarkDriverThroughput: iperf3 TCP between two members of a network
// of each driver in the same host, median of 3 runs of 3 s (the drivers
// take turns in each round), in Gbit/s and as a ratio to the bridge's.
// For ovs it also reports what limits it: ovs-vswitchd's CPU per thread
// and the machine's CPU use (from /proc, over 2 s in the middle of each
// run), and how many packets vswitchd's datapath handled:
//
//	go test ./test/e2e -run XXX -bench DriverThroughput -benchtime 1x
func BenchmarkDriverThroughput(b *testing.B) {
	for b.Loop() {
		d := newDriverHost(b)
		d.networks()
		type pair struct {
			driver, network string
			client, server  string // namespaces
			target          string
			runs            []float64
		}
		var pairs []*pair
		for _, nw := range []struct{ driver, network string }{
			{"bridge", "bench-bridge"}, {"link", d.linkNet(0)}, {"macvlan", "bench-mv"}, {"ovs", "bench-ovs"},
		} {
			names := d.sandboxes(b, "t"+nw.driver, 2)
			for _, s := range names {
				if err := d.connect(nw.network, s); err != nil {
					b.Fatal(err)
				}
			}
			pairs = append(pairs, &pair{driver: nw.driver, network: nw.network,
				client: d.SandboxNS(names[0]), server: d.SandboxNS(names[1]), target: d.IP(names[1], nw.network)})
		}
		vswitchd := readPID(b, filepath.Join(d.ovs.Dir, "ovs-vswitchd.pid"))
		ctl := filepath.Join(d.ovs.Dir, "ovs-vswitchd.ctl")
		if out, err := exec.Command("ovs-appctl", "-t", ctl, "dpif-netdev/pmd-stats-clear").CombinedOutput(); err != nil {
			b.Fatalf("ovs-appctl dpif-netdev/pmd-stats-clear: %v\n%s", err, out)
		}
		var win cpuWindow // over the ovs runs
		for range 3 {
			for _, p := range pairs {
				if p.driver != "ovs" {
					p.runs = append(p.runs, iperf3Gbps(b, d.Host, p.server, p.client, p.target, 5201))
					continue
				}
				// The CPU is sampled over 2 s in the middle of the 3 s
				// transfer (iperf3Gbps waits 200 ms for its server).
				w := make(chan cpuWindow, 1)
				go func() { w <- sampleCPU(vswitchd, 800*time.Millisecond, 2*time.Second) }()
				p.runs = append(p.runs, iperf3Gbps(b, d.Host, p.server, p.client, p.target, 5201))
				if err := win.add(<-w); err != nil {
					b.Fatal(err)
				}
			}
		}
		med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
		bridge := med(pairs[0].runs)
		fmt.Printf("\niperf3 TCP between two members, median of 3 runs of 3 s (Gbit/s)\n%-8s %8s %10s   %s\n", "driver", "Gbit/s", "/ bridge", "runs")
		var ovsBytes float64
		for _, p := range pairs {
			m := med(p.runs)
			fmt.Printf("%-8s %8.2f %10.2f   %.2f\n", p.driver, m, m/bridge, p.runs)
			if p.driver == "ovs" {
				for _, r := range p.runs {
					ovsBytes += r * 1e9 / 8 * 3
				}
			}
		}
		names := make([]string, 0, len(win.threads))
		var all float64
		for name, secs := range win.threads {
			names = append(names, name)
			all += secs
		}
		slices.SortFunc(names, func(x, y string) int { return cmp.Compare(win.threads[y], win.threads[x]) })
		fmt.Printf("ovs-vswitchd over %.0f s in the middle of the ovs runs: %.0f%% of a core in all;", win.wall, 100*all/win.wall)
		for _, name := range names[:min(3, len(names))] {
			fmt.Printf(" thread %s %.0f%%", name, 100*win.threads[name]/win.wall)
		}
		fmt.Printf("\nthe machine's %d CPUs were %.0f%% busy meanwhile (iperf3's client and server included)\n", win.cpus, 100*win.busy/win.total)
		out, err := exec.Command("ovs-appctl", "-t", ctl, "dpif-netdev/pmd-stats-show").CombinedOutput()
		if err != nil {
			b.Fatalf("ovs-appctl dpif-netdev/pmd-stats-show: %v\n%s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if pkts, err := strconv.ParseFloat(strings.TrimSpace(v), 64); ok && err == nil && k == "packets received" {
				fmt.Printf("dpif-netdev: %.0f packets received in the ovs runs, %.1f kB of iperf3 payload per packet (both directions counted; userspace TSO passes whole segments)\n", pkts, ovsBytes/pkts/1e3)
			}
		}
	}
}

// cpuWindow is what the CPUs did over a window: ovs-vswitchd's CPU
// seconds by thread name and the machine's busy and total ticks.
type cpuWindow struct {
	wall        float64 // seconds
	threads     map[string]float64
	busy, total float64
	cpus        int
	err         error
}

func (w *cpuWindow) add(o cpuWindow) error {
	if o.err != nil {
		return o.err
	}
	if w.threads == nil {
		w.threads = map[string]float64{}
	}
	w.wall += o.wall
	for k, v := range o.threads {
		w.threads[k] += v
	}
	w.busy, w.total, w.cpus = w.busy+o.busy, w.total+o.total, o.cpus
	return nil
}

// sampleCPU waits delay, then measures the window of length d.
func sampleCPU(pid int, delay, d time.Duration) cpuWindow {
	time.Sleep(delay)
	t0, err := threadCPU(pid)
	if err != nil {
		return cpuWindow{err: err}
	}
	b0, tot0, cpus, err := machineCPU()
	if err != nil {
		return cpuWindow{err: err}
	}
	start := time.Now()
	time.Sleep(d)
	t1, err := threadCPU(pid)
	if err != nil {
		return cpuWindow{err: err}
	}
	b1, tot1, _, err := machineCPU()
	if err != nil {
		return cpuWindow{err: err}
	}
	w := cpuWindow{wall: time.Since(start).Seconds(), threads: map[string]float64{}, busy: b1 - b0, total: tot1 - tot0, cpus: cpus}
	for tid, a := range t1 {
		w.threads[a.comm] += a.secs - t0[tid].secs
	}
	return w
}

func readPID(b *testing.B, path string) int {
	b.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	return pid
}

type threadTime struct {
	comm string
	secs float64
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTicks = 100

// threadCPU reads the user+system CPU time of each thread of pid.
func threadCPU(pid int) (map[string]threadTime, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tids, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]threadTime{}
	for _, t := range tids {
		raw, err := os.ReadFile(filepath.Join(dir, t.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		s := string(raw)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		// After "pid (comm)": state is field 3, utime and stime 14 and 15.
		var f []string
		if open >= 0 && closing > open {
			f = strings.Fields(s[closing+1:])
		}
		if len(f) < 13 {
			return nil, fmt.Errorf("%s/%s/stat: unexpected %q", dir, t.Name(), s)
		}
		ut, err1 := strconv.ParseFloat(f[11], 64)
		st, err2 := strconv.ParseFloat(f[12], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s/%s/stat: unexpected %q", dir, t.Name(), s)
		}
		out[t.Name()] = threadTime{comm: s[open+1 : closing], secs: (ut + st) / clockTicks}
	}
	return out, nil
}

// machineCPU returns the busy and total ticks of all CPUs and their
// number (/proc/stat).
func machineCPU() (busy, total float64, cpus int, err error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	// cpu user nice system idle iowait irq softirq steal guest guest_nice:
	// guest time is counted in user already.
	f := strings.Fields(line)
	for i, v := range f[1:min(9, len(f))] {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy, total, strings.Count(string(raw), "\ncpu"), nil // cpu0, cpu1, … after "cpu"
}
