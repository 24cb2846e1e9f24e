// Command pontoon-bench measures attach and detach latency, in one run, for
// three ways of wiring a namespace to a bridge:
//
//   - pontoon: `network connect` / `disconnect` through the daemon's API;
//   - cni: Debian's CNI reference bridge plugin with host-local IPAM
//     (/usr/lib/cni/bridge), ADD and DEL, exec'd as a runtime does;
//   - floor: the minimum in raw netlink (veth with its peer created in the
//     namespace on the bridge, address, up, default route; delete).
//
// Everything happens in a throwaway host namespace with its own daemon;
// nothing touches the machine's own network. Run as root:
//
//	go run ./cmd/pontoon-bench -n 500 -parallel 8
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
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

func main() {
	n := flag.Int("n", 500, "sandboxes per run")
	par := flag.Int("parallel", 8, "concurrency of the parallel runs (0: serial runs only)")
	bin := flag.String("pontoon", "", "pontoon binary (default: build ./cmd/pontoon)")
	cniDir := flag.String("cni-bin", "/usr/lib/cni", "directory of the CNI reference plugins")
	skipCNI := flag.Bool("skip-cni", false, "do not measure the CNI bridge plugin")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	logLevel := flag.String("log-level", "warn", "the daemon's --log-level (debug logs each attach's phases)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal("pontoon-bench needs root: it creates network namespaces")
	}
	b, err := newBench(*bin, *logLevel)
	if err != nil {
		fatal(err.Error())
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
	for _, mode := range []struct {
		name string
		c    int
	}{{"serial", 1}, {fmt.Sprintf("%d at a time", *par), *par}} {
		if mode.c == 0 {
			continue // -parallel 0: serial runs only
		}
		r, err := b.runPontoon(*n, mode.c)
		if err != nil {
			fatal("pontoon: " + err.Error())
		}
		res = append(res, r.named("pontoon", mode.name))
		r, err = b.runFloor(*n, mode.c)
		if err != nil {
			fatal("floor: " + err.Error())
		}
		res = append(res, r.named("floor", mode.name))
		if !*skipCNI {
			r, err = b.runCNI(*cniDir, *n, mode.c)
			if err != nil {
				fatal("cni: " + err.Error())
			}
			res = append(res, r.named("cni-bridge", mode.name))
		}
	}
	report(res, *n)
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
	// Summaries (milliseconds).
	AttachP50, AttachP99, DetachP50, DetachP99 float64
	FirstP50, LastP50                          float64 // attach p50 of the first and the last 10%
}

func (r result) named(who, mode string) result {
	r.Who, r.Mode = who, mode
	r.AttachP50, r.AttachP99 = pct(r.Attach, 50), pct(r.Attach, 99)
	r.DetachP50, r.DetachP99 = pct(r.Detach, 50), pct(r.Detach, 99)
	k := max(len(r.Attach)/10, 1)
	r.FirstP50, r.LastP50 = pct(r.Attach[:k], 50), pct(r.Attach[len(r.Attach)-k:], 50)
	return r
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

func report(res []result, n int) {
	fmt.Printf("\nattach/detach latency, N=%d namespaces on one bridge (ms)\n\n", n)
	fmt.Printf("%-12s %-12s %9s %9s %9s %9s %12s %12s\n", "who", "mode", "att p50", "att p99", "det p50", "det p99", "att p50 1st", "att p50 last")
	for _, r := range res {
		fmt.Printf("%-12s %-12s %9.2f %9.2f %9.2f %9.2f %12.2f %12.2f\n", r.Who, r.Mode, r.AttachP50, r.AttachP99, r.DetachP50, r.DetachP99, r.FirstP50, r.LastP50)
	}
	fmt.Println("\nratios (p50)")
	by := map[string]result{}
	for _, r := range res {
		by[r.Who+"/"+r.Mode] = r
	}
	for _, r := range res {
		if r.Who != "pontoon" {
			continue
		}
		f, c := by["floor/"+r.Mode], by["cni-bridge/"+r.Mode]
		fmt.Printf("  %-12s attach pontoon/floor %.2f", r.Mode, r.AttachP50/f.AttachP50)
		if c.Who != "" {
			fmt.Printf("   cni/pontoon attach %.1f  detach %.1f", c.AttachP50/r.AttachP50, c.DetachP50/r.DetachP50)
		}
		fmt.Println()
	}
}

type bench struct {
	closeOnce sync.Once
	dir       string
	hostNS    string
	daemon    *exec.Cmd
	client    *api.Client
	nsCount   int
}

func newBench(bin, logLevel string) (*bench, error) {
	dir, err := os.MkdirTemp("", "pontoon-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir, hostNS: filepath.Join(dir, "host")}
	if bin == "" {
		bin = filepath.Join(dir, "pontoon")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/pontoon")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			b.close()
			return nil, fmt.Errorf("build pontoon (run from the repository's top directory, or give -pontoon): %w", err)
		}
	}
	if err := netns.Create(b.hostNS); err != nil {
		b.close()
		return nil, err
	}
	sock := filepath.Join(dir, "pontoon.sock")
	b.daemon = exec.Command("nsenter", "--net="+b.hostNS, "--", bin, "daemon", "--root", filepath.Join(dir, "root"),
		"--socket", sock, "--netns-dir", filepath.Join(dir, "netns"), "--log-level", logLevel,
		// Keep the sandboxes' resolv.conf files out of the host's /etc, and
		// never forward a query to the machine's real resolvers.
		"--etc-netns-dir", filepath.Join(dir, "etc-netns"), "--dns", "198.51.100.53:53")
	b.daemon.Stderr = os.Stderr
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

// settle waits (at most 30 s) until the machine is nearly idle: the kernel
// tears namespaces down in the background, seconds after the runs that
// deleted them, and every run should start from the same quiet machine
// instead of paying for the one before it.
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
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		i0, t0 := idle()
		time.Sleep(250 * time.Millisecond)
		i1, t1 := idle()
		if t1 <= t0 || float64(i1-i0)/float64(t1-t0) >= 0.95 {
			return
		}
	}
}

// timed runs f(i) for i in [0,n) with concurrency c and returns each call's
// duration, indexed by i. It first lets the machine settle.
func timed(n, c int, f func(i int) error) ([]time.Duration, error) {
	settle()
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

func (b *bench) runPontoon(n, c int) (result, error) {
	ctx := context.Background()
	runID++
	netName := fmt.Sprintf("bench%d", runID)
	if _, err := b.client.CreateNetwork(ctx, model.NetworkSpec{Name: netName, Subnet: fmt.Sprintf("10.%d.0.0/16", 100+runID)}); err != nil {
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
	if r.Attach, err = timed(n, c, func(i int) error {
		_, err := b.client.Connect(ctx, netName, api.ConnectRequest{Sandbox: names[i]})
		return err
	}); err != nil {
		return r, err
	}
	if r.Detach, err = timed(n, c, func(i int) error { return b.client.Disconnect(ctx, netName, names[i]) }); err != nil {
		return r, err
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
	hostFd, err := vnetns.GetFromPath(b.hostNS)
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
	if r.Attach, err = timed(n, c, func(i int) error {
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
	}); err != nil {
		return r, err
	}
	r.Detach, err = timed(n, c, func(i int) error {
		return h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: hostIdx[i]}})
	})
	return r, err
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
	call := func(cmd string, i int) error {
		return netns.Do(b.hostNS, func() error {
			x := exec.Command(plugin)
			x.Env = []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=bench" + fmt.Sprint(i), "CNI_NETNS=" + nss[i],
				"CNI_IFNAME=eth0", "CNI_PATH=" + dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
			x.Stdin = strings.NewReader(conf)
			var out bytes.Buffer
			x.Stdout, x.Stderr = &out, &out
			if err := x.Run(); err != nil {
				return fmt.Errorf("%s: %v: %s", cmd, err, out.String())
			}
			return nil
		})
	}
	if r.Attach, err = timed(n, c, func(i int) error { return call("ADD", i) }); err != nil {
		return r, err
	}
	r.Detach, err = timed(n, c, func(i int) error { return call("DEL", i) })
	return r, err
}
