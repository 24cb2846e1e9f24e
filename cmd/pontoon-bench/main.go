// Command pontoon-bench measures attach and detach latency, in one run, for
// three ways of wiring a namespace to a bridge:
//
//   - pontoon: `network connect` / `disconnect` through the daemon's API;
//   - cni: Debian's CNI reference bridge plugin with host-local IPAM
//     (/usr/lib/cni/bridge), ADD and DEL, exec'd as a runtime does;
//   - floor: the minimum in raw netlink (veth with its peer created in the
//     namespace on the bridge, address, up, default route; delete).
//
// Everything happens in throwaway namespaces: a host namespace with its own
// daemon for pontoon, another one for the floor and the reference plugin
// (so that the daemon's watches cost them nothing); nothing touches the
// machine's own network. Run as root:
//
//	go run ./cmd/pontoon-bench -n 500 -parallel 8,32
//
// Each run reports, per phase (attach, detach), p50 and p99 latency, the
// p50 of the first and the last 10 % of the calls, and the throughput: calls
// per second over the whole phase. -cni-pontoon adds pontoon's own CNI
// plugin (ADD/DEL exec'd like the reference plugin). -profile DIR saves the
// daemon's CPU, mutex and block profiles of every concurrent phase, -perf
// DIR a system-wide `perf record` of every concurrent phase
// (docs/benchmarks.md says how to read them).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/netns"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseConcurrency parses -parallel: a comma-separated list of
// concurrencies; 0 (or an empty list) means serial runs only.
func parseConcurrency(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		c, err := strconv.Atoi(f)
		if err != nil || c < 0 {
			return nil, fmt.Errorf("-parallel %q: give concurrencies like 8 or 8,32", s)
		}
		if c > 1 && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func main() {
	n := flag.Int("n", 500, "sandboxes per run")
	parFlag := flag.String("parallel", "8", "concurrencies of the parallel runs, comma-separated (e.g. 8,32; 0: serial runs only)")
	noSerial := flag.Bool("skip-serial", false, "do not measure one at a time")
	bin := flag.String("pontoon", "", "pontoon binary (default: build ./cmd/pontoon)")
	cniDir := flag.String("cni-bin", "/usr/lib/cni", "directory of the CNI reference plugins")
	skipCNI := flag.Bool("skip-cni", false, "do not measure the CNI bridge plugin")
	cniPontoon := flag.Bool("cni-pontoon", false, "also measure pontoon's CNI plugin (ADD and DEL exec'd like the reference plugin)")
	cniBin := flag.String("pontoon-cni", "", "pontoon-cni binary for -cni-pontoon (default: build ./cmd/pontoon-cni)")
	skipFloor := flag.Bool("skip-floor", false, "do not measure the raw-netlink floor")
	dual := flag.Bool("dual-stack", false, "also measure pontoon on a dual-stack network (an IPv4 and an IPv6 address per attach), in the same run")
	mixed := flag.Bool("mixed", false, "also measure attaches while as many detaches run (pontoon and floor)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	logLevel := flag.String("log-level", "warn", "the daemon's --log-level (debug logs each attach's phases)")
	profile := flag.String("profile", "", "directory for the daemon's CPU, mutex and block profiles of every concurrent pontoon phase (turns on the daemon's "+pprofEnv+" endpoint)")
	perfDir := flag.String("perf", "", "directory for a system-wide `perf record -a -g` of every concurrent phase (needs perf)")
	var daemonArgs listFlag
	flag.Var(&daemonArgs, "daemon-arg", "extra flag for `pontoon daemon` (repeatable; e.g. -daemon-arg=--self-heal=false)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal("pontoon-bench needs root: it creates network namespaces")
	}
	pars, err := parseConcurrency(*parFlag)
	if err != nil {
		fatal(err.Error())
	}
	for _, d := range []string{*profile, *perfDir} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				fatal(err.Error())
			}
		}
	}
	b, err := newBench(*bin, *logLevel, *profile != "", daemonArgs)
	if err != nil {
		fatal(err.Error())
	}
	b.profileDir, b.perfDir, b.mixed = *profile, *perfDir, *mixed
	if *cniPontoon {
		if err := b.buildCNI(*cniBin); err != nil {
			b.close()
			fatal(err.Error())
		}
	}
	defer b.close()
	// Ctrl-C or SIGTERM still removes the daemon and every namespace.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		b.close()
		fatal("interrupted; cleaned up")
	}()
	var res []result
	var modes []int
	if !*noSerial {
		modes = append(modes, 1)
	}
	modes = append(modes, pars...)
	fail := func(msg string) {
		b.close()
		fatal(msg)
	}
	for _, c := range modes {
		mode := "serial"
		if c > 1 {
			mode = fmt.Sprintf("%d at a time", c)
		}
		r, err := b.runPontoon(*n, c, false)
		if err != nil {
			fail("pontoon: " + err.Error())
		}
		res = append(res, r.named("pontoon", mode))
		if *dual {
			r, err := b.runPontoon(*n, c, true)
			if err != nil {
				fail("pontoon dual-stack: " + err.Error())
			}
			res = append(res, r.named("pontoon-dual", mode))
		}
		if !*skipFloor {
			r, err = b.runFloor(*n, c)
			if err != nil {
				fail("floor: " + err.Error())
			}
			res = append(res, r.named("floor", mode))
		}
		if *cniPontoon {
			r, err = b.runPontoonCNI(*n, c)
			if err != nil {
				fail("pontoon-cni: " + err.Error())
			}
			res = append(res, r.named("pontoon-cni", mode))
		}
		if !*skipCNI {
			r, err = b.runCNI(*cniDir, *n, c)
			if err != nil {
				fail("cni: " + err.Error())
			}
			res = append(res, r.named("cni-bridge", mode))
		}
	}
	report(res, *n, *mixed)
	if *jsonOut != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, data, 0o644); err != nil {
			fatal(err.Error())
		}
	}
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "pontoon-bench:", msg)
	os.Exit(1)
}

type result struct {
	Who    string          `json:"who"`
	Mode   string          `json:"mode"`
	Attach []time.Duration `json:"-"`
	Detach []time.Duration `json:"-"`
	// Wall-clock time of each whole phase; DetachDone runs until the last
	// veth is gone (pontoon deletes them in the background).
	AttachWall, DetachWall, DetachDone time.Duration `json:"-"`
	// FilesDone: from the start of the attach phase until every sandbox's
	// resolv.conf is written (pontoon writes them in the background).
	FilesDone time.Duration `json:"-"`
	// Mixed: attaches while as many detaches run (-mixed).
	MixedAttach []time.Duration `json:"-"`
	MixedWall   time.Duration   `json:"-"`
	// Summaries (milliseconds; rates in calls per second over the phase).
	AttachP50, AttachP99, DetachP50, DetachP99 float64
	FirstP50, LastP50                          float64 // attach p50 of the first and the last 10%
	DetachFirstP50, DetachLastP50              float64 // the same for detach
	AttachRate, DetachRate                     float64
	DetachDoneRate                             float64 // detaches per second until the last veth is gone
	FilesDoneMs                                float64
	MixedAttachP50, MixedAttachP99             float64
	MixedAttachRate                            float64 // attaches per second in the mixed phase
}

func (r result) named(who, mode string) result {
	r.Who, r.Mode = who, mode
	r.AttachP50, r.AttachP99 = pct(r.Attach, 50), pct(r.Attach, 99)
	r.DetachP50, r.DetachP99 = pct(r.Detach, 50), pct(r.Detach, 99)
	r.FirstP50, r.LastP50 = tenths(r.Attach)
	r.DetachFirstP50, r.DetachLastP50 = tenths(r.Detach)
	r.AttachRate, r.DetachRate = rate(len(r.Attach), r.AttachWall), rate(len(r.Detach), r.DetachWall)
	if r.DetachDone == 0 {
		r.DetachDone = r.DetachWall
	}
	r.DetachDoneRate = rate(len(r.Detach), r.DetachDone)
	r.FilesDoneMs = float64(r.FilesDone.Microseconds()) / 1000
	r.MixedAttachP50, r.MixedAttachP99 = pct(r.MixedAttach, 50), pct(r.MixedAttach, 99)
	r.MixedAttachRate = rate(len(r.MixedAttach), r.MixedWall)
	return r
}

// tenths returns the p50 of the first and of the last 10 % of d (in the
// order the calls were started).
func tenths(d []time.Duration) (first, last float64) {
	if len(d) == 0 {
		return 0, 0
	}
	k := max(len(d)/10, 1)
	return pct(d[:k], 50), pct(d[len(d)-k:], 50)
}

func rate(n int, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(n) / wall.Seconds()
}

func pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

func report(res []result, n int, mixed bool) {
	fmt.Printf("\nattach/detach, N=%d namespaces on one bridge (latency in ms; rate: calls per second over the whole phase)\n\n", n)
	fmt.Printf("%-12s %-12s %8s %8s %8s %8s %8s | %8s %8s %8s %8s %8s\n", "who", "mode",
		"att p50", "att p99", "1st 10%", "last 10%", "att/s", "det p50", "det p99", "1st 10%", "last 10%", "det/s")
	for _, r := range res {
		fmt.Printf("%-12s %-12s %8.2f %8.2f %8.2f %8.2f %8.0f | %8.2f %8.2f %8.2f %8.2f %8.0f\n", r.Who, r.Mode,
			r.AttachP50, r.AttachP99, r.FirstP50, r.LastP50, r.AttachRate,
			r.DetachP50, r.DetachP99, r.DetachFirstP50, r.DetachLastP50, r.DetachRate)
	}
	fmt.Printf("\n%-12s %-12s %12s %16s", "who", "mode", "det done/s", "att files ms")
	if mixed {
		fmt.Printf(" | %-34s %8s %8s %8s", "mixed: attaches beside detaches", "att p50", "att p99", "att/s")
	}
	fmt.Println()
	for _, r := range res {
		files := "-"
		if r.FilesDone > 0 {
			files = fmt.Sprintf("%.0f", r.FilesDoneMs)
		}
		fmt.Printf("%-12s %-12s %12.0f %16s", r.Who, r.Mode, r.DetachDoneRate, files)
		if mixed && r.MixedWall > 0 {
			fmt.Printf(" | %-34s %8.2f %8.2f %8.0f", "", r.MixedAttachP50, r.MixedAttachP99, r.MixedAttachRate)
		} else if mixed {
			fmt.Printf(" | %-34s %8s %8s %8s", "", "-", "-", "-")
		}
		fmt.Println()
	}
	fmt.Println("\nratios")
	by := map[string]result{}
	for _, r := range res {
		by[r.Who+"/"+r.Mode] = r
	}
	for _, r := range res {
		if r.Who != "pontoon" {
			continue
		}
		fmt.Printf("  %-12s", r.Mode)
		if f := by["floor/"+r.Mode]; f.Who != "" {
			fmt.Printf(" pontoon/floor: attach p50 %.2f, attach/s %.2f, detach/s %.2f, detach done/s %.2f;", r.AttachP50/f.AttachP50, r.AttachRate/f.AttachRate, r.DetachRate/f.DetachRate, r.DetachDoneRate/f.DetachDoneRate)
			if mixed {
				fmt.Printf(" mixed attach p50 %.2f, attach/s %.2f;", r.MixedAttachP50/f.MixedAttachP50, r.MixedAttachRate/f.MixedAttachRate)
			}
		}
		if c := by["cni-bridge/"+r.Mode]; c.Who != "" {
			fmt.Printf(" cni-bridge/pontoon p50: attach %.1f, detach %.1f;", c.AttachP50/r.AttachP50, c.DetachP50/r.DetachP50)
		}
		if c, p := by["cni-bridge/"+r.Mode], by["pontoon-cni/"+r.Mode]; c.Who != "" && p.Who != "" {
			fmt.Printf(" cni-bridge/pontoon-cni: ADD p50 %.1f, ADD/s %.2f, DEL p50 %.1f, DEL/s %.2f", c.AttachP50/p.AttachP50, p.AttachRate/c.AttachRate, c.DetachP50/p.DetachP50, p.DetachRate/c.DetachRate)
		}
		fmt.Println()
	}
}

type bench struct {
	closeOnce sync.Once
	dir       string
	hostNS    string // the daemon's host namespace
	floorNS   string // the floor's and the reference plugin's: no daemon watches it
	daemon    *exec.Cmd
	sock      string
	client    *api.Client
	nsCount   int
	cniBin    string // pontoon-cni, for -cni-pontoon
	etcNetns  string // the daemon's --etc-netns-dir

	profileDir string // -profile
	pprofSock  string // the daemon's profiling endpoint
	perfDir    string // -perf
	mixed      bool   // -mixed
}

// pprofEnv is the daemon's profiling switch (internal/daemon.PprofEnv; the
// bench does not link the daemon).
const pprofEnv = "PONTOON_PPROF"

func newBench(bin, logLevel string, profile bool, daemonArgs []string) (*bench, error) {
	dir, err := os.MkdirTemp("", "pontoon-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir, hostNS: filepath.Join(dir, "host"), floorNS: filepath.Join(dir, "floor")}
	if bin == "" {
		bin = filepath.Join(dir, "pontoon")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/pontoon")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			b.close()
			return nil, fmt.Errorf("build pontoon (run from the repository's top directory, or give -pontoon): %w", err)
		}
	}
	for _, ns := range []string{b.hostNS, b.floorNS} {
		if err := netns.Create(ns); err != nil {
			b.close()
			return nil, err
		}
	}
	sock := filepath.Join(dir, "pontoon.sock")
	b.sock = sock
	args := []string{"--net=" + b.hostNS, "--", bin, "daemon", "--root", filepath.Join(dir, "root"),
		"--socket", sock, "--netns-dir", filepath.Join(dir, "netns"), "--log-level", logLevel,
		// Keep the sandboxes' resolv.conf files out of the host's /etc, and
		// never forward a query to the machine's real resolvers.
		"--etc-netns-dir", filepath.Join(dir, "etc-netns"), "--dns", "198.51.100.53:53"}
	b.etcNetns = filepath.Join(dir, "etc-netns")
	for _, a := range daemonArgs {
		if v, ok := strings.CutPrefix(a, "--etc-netns-dir="); ok {
			b.etcNetns = v // "": no resolv.conf files
		}
	}
	b.daemon = exec.Command("nsenter", append(args, daemonArgs...)...)
	b.daemon.Stderr = os.Stderr
	b.daemon.Env = os.Environ()
	if profile {
		b.pprofSock = filepath.Join(dir, "pprof.sock")
		b.daemon.Env = append(b.daemon.Env, pprofEnv+"="+b.pprofSock)
	}
	if err := b.daemon.Start(); err != nil {
		b.close()
		return nil, err
	}
	b.client = api.NewClient(sock)
	for i := 0; ; i++ {
		if st, err := b.client.Status(context.Background()); err == nil && st.Ready {
			break
		}
		if i > 300 {
			b.close()
			return nil, fmt.Errorf("daemon not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return b, nil
}

func (b *bench) close() {
	b.closeOnce.Do(b.doClose)
}

func (b *bench) doClose() {
	if b.daemon != nil && b.daemon.Process != nil {
		_ = b.daemon.Process.Signal(os.Interrupt)
		_ = b.daemon.Wait()
	}
	// Unmount every pin below dir (daemon's and ours), then remove it.
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mps []string
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(f[4], b.dir+"/") {
				mps = append(mps, f[4])
			}
		}
		slices.Sort(mps)
		slices.Reverse(mps)
		for _, mp := range mps {
			_ = netns.Delete(mp)
		}
	}
	os.RemoveAll(b.dir)
}

// newNamespaces pins n fresh namespaces for one run.
func (b *bench) newNamespaces(n int) ([]string, error) {
	var out []string
	for i := 0; i < n; i++ {
		b.nsCount++
		p := filepath.Join(b.dir, fmt.Sprintf("ns%05d", b.nsCount))
		if err := netns.Create(p); err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (b *bench) dropNamespaces(ps []string) {
	for _, p := range ps {
		_ = netns.Delete(p)
	}
}

// settle waits (at most a minute) until the machine is nearly idle and the
// kernel has finished tearing down namespaces: it does that in the
// background, seconds after the runs that deleted them, holding RTNL for
// long stretches, and every run should start from the same quiet machine
// instead of paying for the one before it. Idle CPU alone is not enough:
// the teardown also waits for RCU grace periods, with the CPUs idle, and
// then takes RTNL again. So it also waits until the number of network
// namespaces (the net_namespace slab, /proc/slabinfo) has not changed for
// a second.
func settle() {
	idle := func() (idle, total uint64) {
		data, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0
		}
		f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
		for i, v := range f[1:] {
			x, _ := strconv.ParseUint(v, 10, 64)
			total += x
			if i == 3 || i == 4 { // idle, iowait
				idle += x
			}
		}
		return idle, total
	}
	namespaces := func() int {
		data, err := os.ReadFile("/proc/slabinfo")
		if err != nil {
			return -1
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "net_namespace" {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
		return -1
	}
	deadline := time.Now().Add(time.Minute)
	last, since := namespaces(), time.Now()
	for time.Now().Before(deadline) {
		i0, t0 := idle()
		time.Sleep(250 * time.Millisecond)
		i1, t1 := idle()
		if n := namespaces(); n != last {
			last, since = n, time.Now()
		}
		quiet := t1 <= t0 || float64(i1-i0)/float64(t1-t0) >= 0.95
		if quiet && time.Since(since) >= time.Second {
			return
		}
	}
}

// timed runs f(i) for i in [0,n) with concurrency c and returns each call's
// duration, indexed by i, and the wall-clock time of the whole phase. It
// first lets the machine settle; name ("pontoon-attach") names the
// phase's profiles.
func (b *bench) timed(name string, n, c int, f func(i int) error) ([]time.Duration, time.Duration, error) {
	settle()
	stop := b.observe(name, c)
	defer stop()
	start := time.Now()
	d, err := run(n, c, f)
	return d, time.Since(start), err
}

func run(n, c int, f func(i int) error) ([]time.Duration, error) {
	d := make([]time.Duration, n)
	var mu sync.Mutex
	var first error
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := time.Now()
				err := f(i)
				d[i] = time.Since(t)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("#%d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return d, first
}

var runID int

// runPontoon measures n attaches and detaches through the API, c at a
// time, on a new network: IPv4 only, or dual-stack (an IPv4 and an IPv6
// address per attach).
func (b *bench) runPontoon(n, c int, dual bool) (result, error) {
	ctx := context.Background()
	runID++
	netName := fmt.Sprintf("bench%d", runID)
	subnets := []model.Subnet{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + runID), 0, 0}), 16)}}
	if dual {
		subnets = append(subnets, model.Subnet{Prefix: netip.MustParsePrefix(fmt.Sprintf("fd00:%x::/64", 100+runID))})
	}
	if _, err := b.client.CreateNetwork(ctx, model.NetworkSpec{Name: netName, Subnets: subnets}); err != nil {
		return result{}, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("b%d-%04d", runID, i)
		if _, err := b.client.CreateSandbox(ctx, model.SandboxSpec{Name: names[i]}); err != nil {
			return result{}, err
		}
	}
	var r result
	var err error
	if r.Attach, r.AttachWall, err = b.timed("pontoon-attach", n, c, func(i int) error {
		_, err := b.client.Connect(ctx, netName, api.ConnectRequest{Sandbox: names[i]})
		return err
	}); err != nil {
		return r, err
	}
	if r.FilesDone, err = b.filesWritten(names, r.AttachWall); err != nil {
		return r, err
	}
	// Detach and done: the API returns once the endpoint carries no
	// traffic; the reaper deletes the veths behind it.
	attach := func(i int) error {
		_, err := b.client.Connect(ctx, netName, api.ConnectRequest{Sandbox: names[i]})
		return err
	}
	detach := func(i int) error { return b.client.Disconnect(ctx, netName, names[i]) }
	if r.Detach, r.DetachWall, err = b.timed("pontoon-detach", n, c, detach); err != nil {
		return r, err
	}
	end := time.Now()
	if err := b.linksGone(model.HostVethPrefix); err != nil {
		return r, err
	}
	r.DetachDone = r.DetachWall + time.Since(end)
	if b.mixed {
		if r.MixedAttach, r.MixedWall, err = b.runMixed("pontoon-mixed", n, c, attach, detach); err != nil {
			return r, err
		}
	}
	for _, s := range names {
		if err := b.client.RemoveSandbox(ctx, s); err != nil {
			return r, err
		}
	}
	return r, b.client.RemoveNetwork(ctx, netName, true)
}

// runFloor does the minimum in raw netlink, with handles bound to the
// namespaces (no thread switching).
func (b *bench) runFloor(n, c int) (result, error) {
	var r result
	runID++
	hostFd, err := vnetns.GetFromPath(b.floorNS)
	if err != nil {
		return r, err
	}
	defer hostFd.Close()
	h, err := netlink.NewHandleAt(hostFd)
	if err != nil {
		return r, err
	}
	defer h.Close()
	brName := fmt.Sprintf("floorbr%d", runID)
	// The same bridge and sandbox-end settings as pontoon's (multicast
	// snooping off, no IPv6 link-local address on the peer): without them
	// the kernel's own per-port work grows with the number of ports, and
	// the floor would measure that instead of the least netlink work an
	// attach needs.
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: brName}, MulticastSnooping: &off}
	if err := h.LinkAdd(br); err != nil {
		return r, err
	}
	defer h.LinkDel(br)
	subnet := fmt.Sprintf("10.%d", 100+runID)
	gw := netip.MustParseAddr(subnet + ".0.1")
	if err := h.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(16, 32)}}); err != nil {
		return r, err
	}
	if err := h.LinkSetUp(br); err != nil {
		return r, err
	}
	nss, err := b.newNamespaces(n)
	defer b.dropNamespaces(nss)
	if err != nil {
		return r, err
	}
	hostIdx := make([]int, n)
	attach := func(i int) error {
		fd, err := vnetns.GetFromPath(nss[i])
		if err != nil {
			return err
		}
		defer fd.Close()
		ip := net.IPv4(10, byte(100+runID), byte((i+2)>>8), byte((i+2)&0xff))
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("fl%d-%d", runID, i), MasterIndex: br.Index},
			PeerName: "eth0", PeerNamespace: netlink.NsFd(int(fd))}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		hostIdx[i] = v.Index
		if err := h.LinkSetUp(v); err != nil {
			return err
		}
		sh, err := netlink.NewHandleAt(fd)
		if err != nil {
			return err
		}
		defer sh.Close()
		peer, err := sh.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := sh.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(16, 32)}}); err != nil {
			return err
		}
		if err := sh.LinkSetIP6AddrGenMode(peer, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			return err
		}
		if err := sh.LinkSetUp(peer); err != nil {
			return err
		}
		return sh.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: gw.AsSlice()})
	}
	detach := func(i int) error {
		return h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: hostIdx[i]}})
	}
	if r.Attach, r.AttachWall, err = b.timed("floor-attach", n, c, attach); err != nil {
		return r, err
	}
	if r.Detach, r.DetachWall, err = b.timed("floor-detach", n, c, detach); err != nil {
		return r, err
	}
	if b.mixed {
		r.MixedAttach, r.MixedWall, err = b.runMixed("floor-mixed", n, c, attach, detach)
	}
	return r, err
}

// runMixed attaches the first half (untimed), then times attaching the
// second half while detaching the first, c at a time, interleaved; then
// detaches the second half (untimed). It returns the attaches' latencies
// and the phase's wall-clock time.
func (b *bench) runMixed(name string, n, c int, attach, detach func(i int) error) ([]time.Duration, time.Duration, error) {
	half := n / 2
	if _, err := run(half, c, attach); err != nil {
		return nil, 0, err
	}
	d, wall, err := b.timed(name, 2*half, c, func(j int) error {
		if j%2 == 0 {
			return detach(j / 2)
		}
		return attach(half + j/2)
	})
	if err != nil {
		return nil, 0, err
	}
	var att []time.Duration
	for j := 1; j < len(d); j += 2 {
		att = append(att, d[j])
	}
	_, err = run(half, c, func(i int) error { return detach(half + i) })
	return att, wall, err
}

// filesWritten waits (at most a minute) until every sandbox of names has
// its resolv.conf, and returns the time since the attach phase began (it
// ended wall ago).
func (b *bench) filesWritten(names []string, wall time.Duration) (time.Duration, error) {
	if b.etcNetns == "" {
		return 0, nil
	}
	start := time.Now().Add(-wall)
	deadline := time.Now().Add(time.Minute)
	for _, name := range names {
		p := filepath.Join(b.etcNetns, name, "resolv.conf")
		for {
			if _, err := os.Stat(p); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("%s not written after a minute", p)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return time.Since(start), nil
}

// linksGone waits (at most a minute) until the daemon's host namespace
// has no link whose name starts with prefix.
func (b *bench) linksGone(prefix string) error {
	fd, err := vnetns.GetFromPath(b.hostNS)
	if err != nil {
		return err
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		return err
	}
	defer h.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		ls, err := h.LinkList()
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
		left := 0
		for _, l := range ls {
			if strings.HasPrefix(l.Attrs().Name, prefix) {
				left++
			}
		}
		if err == nil && left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d links %s* still there after a minute", left, prefix)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runCNI runs the reference bridge plugin with host-local, as a runtime
// does: exec with CNI_* variables and the config on stdin, from a thread in
// the host namespace.
func (b *bench) runCNI(dir string, n, c int) (result, error) {
	var r result
	runID++
	plugin := filepath.Join(dir, "bridge")
	if _, err := os.Stat(plugin); err != nil {
		return r, fmt.Errorf("%s not found: apt-get install containernetworking-plugins, or pass -skip-cni", plugin)
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"bench%d","type":"bridge","bridge":"cnibr%d","isGateway":true,"ipMasq":true,
"ipam":{"type":"host-local","subnet":"10.%d.0.0/16","dataDir":%q}}`, runID, runID, 100+runID, filepath.Join(b.dir, fmt.Sprintf("cni-ipam%d", runID)))
	nss, err := b.newNamespaces(n)
	defer b.dropNamespaces(nss)
	if err != nil {
		return r, err
	}
	call := func(cmd string, i int) error { return b.execCNI(b.floorNS, plugin, dir, conf, cmd, i, nss[i]) }
	if r.Attach, r.AttachWall, err = b.timed("cni-bridge-add", n, c, func(i int) error { return call("ADD", i) }); err != nil {
		return r, err
	}
	r.Detach, r.DetachWall, err = b.timed("cni-bridge-del", n, c, func(i int) error { return call("DEL", i) })
	return r, err
}

// execCNI runs a CNI plugin as a runtime does: exec with CNI_* variables
// and the config on stdin, from a thread in the namespace host.
func (b *bench) execCNI(host, plugin, path, conf, cmd string, i int, ns string) error {
	return netns.Do(host, func() error {
		x := exec.Command(plugin)
		x.Env = []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=bench" + fmt.Sprint(i), "CNI_NETNS=" + ns,
			"CNI_IFNAME=eth0", "CNI_PATH=" + path, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		x.Stdin = strings.NewReader(conf)
		var out bytes.Buffer
		x.Stdout, x.Stderr = &out, &out
		if err := x.Run(); err != nil {
			return fmt.Errorf("%s: %v: %s", cmd, err, out.String())
		}
		return nil
	})
}

// buildCNI finds or builds pontoon-cni.
func (b *bench) buildCNI(bin string) error {
	if bin == "" {
		bin = filepath.Join(b.dir, "cni", "pontoon")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/pontoon-cni")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build pontoon-cni (run from the repository's top directory, or give -pontoon-cni): %w", err)
		}
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	b.cniBin = abs
	return nil
}

// runPontoonCNI runs pontoon's CNI plugin exactly like runCNI runs the
// reference plugin: ADD adopts each namespace as a sandbox and attaches
// it, DEL detaches it and removes the sandbox.
func (b *bench) runPontoonCNI(n, c int) (result, error) {
	var r result
	ctx := context.Background()
	runID++
	netName := fmt.Sprintf("benchcni%d", runID)
	if _, err := b.client.CreateNetwork(ctx, model.NetworkSpec{Name: netName, Subnets: []model.Subnet{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + runID), 0, 0}), 16)}}}); err != nil {
		return r, err
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"pontoon","network":%q,"socket":%q}`, netName, netName, b.sock)
	nss, err := b.newNamespaces(n)
	defer b.dropNamespaces(nss)
	if err != nil {
		return r, err
	}
	call := func(cmd string, i int) error {
		return b.execCNI(b.hostNS, b.cniBin, filepath.Dir(b.cniBin), conf, cmd, i, nss[i])
	}
	if r.Attach, r.AttachWall, err = b.timed("pontoon-cni-add", n, c, func(i int) error { return call("ADD", i) }); err != nil {
		return r, err
	}
	if r.Detach, r.DetachWall, err = b.timed("pontoon-cni-del", n, c, func(i int) error { return call("DEL", i) }); err != nil {
		return r, err
	}
	return r, b.client.RemoveNetwork(ctx, netName, true)
}

// observe starts the profiles of one concurrent phase (-profile, -perf)
// and returns what stops them and saves them as DIR/NAME-cN-*.
func (b *bench) observe(name string, c int) func() {
	if c < 2 || (b.profileDir == "" && b.perfDir == "") {
		return func() {}
	}
	base := fmt.Sprintf("%s-c%d", name, c)
	var stops []func()
	if b.perfDir != "" {
		out := filepath.Join(b.perfDir, base+".perf.data")
		p := exec.Command("perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", "999", "-o", out, "--", "sleep", "600")
		var msg bytes.Buffer
		p.Stdout, p.Stderr = &msg, &msg
		if err := p.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "pontoon-bench: perf: %v (apt-get install linux-perf)\n", err)
		} else {
			time.Sleep(500 * time.Millisecond) // perf maps every process first
			stops = append(stops, func() {
				_ = p.Process.Signal(os.Interrupt)
				if err := p.Wait(); err != nil && !strings.Contains(msg.String(), "perf.data") {
					fmt.Fprintf(os.Stderr, "pontoon-bench: perf record: %v: %s\n", err, msg.String())
				}
			})
		}
	}
	if b.profileDir != "" && b.pprofSock != "" && strings.HasPrefix(name, "pontoon") {
		save := func(what, file string) {
			if err := b.pprof("GET", "/debug/pprof/"+what, filepath.Join(b.profileDir, file)); err != nil {
				fmt.Fprintf(os.Stderr, "pontoon-bench: profile %s: %v\n", what, err)
			}
		}
		save("mutex", base+"-mutex-base.pprof")
		save("block", base+"-block-base.pprof")
		if err := b.pprof("POST", "/debug/pprof/cpu/start", ""); err != nil {
			fmt.Fprintf(os.Stderr, "pontoon-bench: start CPU profile: %v\n", err)
		}
		stops = append(stops, func() {
			if err := b.pprof("POST", "/debug/pprof/cpu/stop", filepath.Join(b.profileDir, base+"-cpu.pprof")); err != nil {
				fmt.Fprintf(os.Stderr, "pontoon-bench: stop CPU profile: %v\n", err)
			}
			save("mutex", base+"-mutex.pprof")
			save("block", base+"-block.pprof")
		})
	}
	return func() {
		// Last started, first stopped: the daemon's profiles end with the
		// phase, before perf takes its time to write its file.
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
}

// pprof calls the daemon's profiling endpoint and saves the answer in file
// (none: discard it).
func (b *bench) pprof(method, path, file string) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", b.pprofSock)
	}}}
	req, err := http.NewRequest(method, "http://pontoon"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	if file == "" {
		return nil
	}
	return os.WriteFile(file, data, 0o644)
}
