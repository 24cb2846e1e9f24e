package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// BenchmarkRuntimePath measures what a runtime pays around an attach
// (issue 10, part 7), in one run, with 40 and with 500 attachments already
// present on each plugin's network:
//
//   - CNI ADD and DEL through libcni, exec'ing pontoon-cni and Debian's
//     reference bridge plugin with host-local as containerd and CRI-O do,
//     one container at a time, ADD then DEL, alternating the two plugins;
//   - `network connect` through the API (api.Client, a lasting
//     connection) and through the CLI (`pontoon network connect`, one
//     process per call), on sandboxes made beforehand without a network,
//     each disconnected after it was measured.
//
// It prints p50/p99 per size and the ratios the issue sets targets for:
//
//	go test ./test/e2e -run XXX -bench RuntimePath -benchtime 1x [-args -present 40,500 -rounds 100]
func BenchmarkRuntimePath(b *testing.B) {
	var sizes []int
	for _, f := range strings.Split(*benchPresent, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			b.Fatalf("-present %q: want a comma-separated list of counts", *benchPresent)
		}
		sizes = append(sizes, n)
	}
	for b.Loop() {
		for _, n := range sizes {
			runtimePath(b, n, *benchRounds)
		}
	}
}

var (
	benchPresent = flag.String("present", "40,500", "BenchmarkRuntimePath: attachments present on each plugin's network while it measures")
	benchRounds  = flag.Int("rounds", 100, "BenchmarkRuntimePath: measured ADD/DEL and connect rounds")
)

func runtimePath(b *testing.B, present, rounds int) {
	h := NewHost(b, "--log-level", "info")
	h.P("network", "create", "cninet", "--subnet", "10.99.0.0/16")
	c := newCNIEnv(b, h)
	pontoon := c.conflist(b, "1.1.0", false)
	refData, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "refnet", "plugins": []any{map[string]any{
		"type": "bridge", "bridge": "cnibr0", "isGateway": true, "ipMasq": true,
		"ipam": map[string]any{"type": "host-local", "subnet": "10.98.0.0/16", "dataDir": filepath.Join(b.TempDir(), "ipam")},
	}}})
	ref, err := libcni.ConfListFromBytes(refData)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cl := api.NewClient(h.Socket)

	// Namespaces: for the attachments present while we measure, and one
	// per measured ADD.
	nss := func(k int) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = testutil.NewNetns(b)
		}
		return out
	}
	bg := map[string][]string{pontoon.Name: nss(present), ref.Name: nss(present)}
	fg := map[string][]string{pontoon.Name: nss(rounds), ref.Name: nss(rounds)}
	if err := c.in(b, func(ctx context.Context) error {
		for _, list := range []*libcni.NetworkConfigList{pontoon, ref} {
			for i := 0; i < present; i++ {
				if _, err := c.cni.AddNetworkList(ctx, list, rt(fmt.Sprintf("bg-%s-%d", list.Name, i), bg[list.Name][i])); err != nil {
					return fmt.Errorf("ADD background %s %d: %w", list.Name, i, err)
				}
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	// Sandboxes for the connect measurements, made without a network.
	for i := 0; i < rounds; i++ {
		for _, via := range []string{"api", "cli"} {
			if _, err := cl.CreateSandbox(ctx, model.SandboxSpec{Name: fmt.Sprintf("%s%d", via, i)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	settle(b)

	var pAdd, pDel, rAdd, rDel, apiConn, cliConn []time.Duration
	timed := func(into *[]time.Duration, fn func() error) error {
		t0 := time.Now()
		err := fn()
		*into = append(*into, time.Since(t0))
		return err
	}
	if err := c.in(b, func(ctx context.Context) error {
		for i := 0; i < rounds; i++ {
			for _, p := range []struct {
				list     *libcni.NetworkConfigList
				add, del *[]time.Duration
			}{{pontoon, &pAdd, &pDel}, {ref, &rAdd, &rDel}} {
				r := rt(fmt.Sprintf("m-%s-%d", p.list.Name, i), fg[p.list.Name][i])
				if err := timed(p.add, func() error { _, err := c.cni.AddNetworkList(ctx, p.list, r); return err }); err != nil {
					return fmt.Errorf("ADD %s %d: %w", p.list.Name, i, err)
				}
				if err := timed(p.del, func() error { return c.cni.DelNetworkList(ctx, p.list, r) }); err != nil {
					return fmt.Errorf("DEL %s %d: %w", p.list.Name, i, err)
				}
			}
			sb := fmt.Sprintf("api%d", i)
			if err := timed(&apiConn, func() error {
				_, err := cl.Connect(ctx, "cninet", api.ConnectRequest{Sandbox: sb})
				return err
			}); err != nil {
				return err
			}
			if err := cl.Disconnect(ctx, "cninet", sb); err != nil {
				return err
			}
			sb = fmt.Sprintf("cli%d", i)
			cmd := exec.Command(filepath.Join(binDir, "pontoon"), "--socket", h.Socket, "network", "connect", "cninet", sb)
			if err := timed(&cliConn, cmd.Run); err != nil {
				return fmt.Errorf("pontoon network connect cninet %s: %w", sb, err)
			}
			if err := cl.Disconnect(ctx, "cninet", sb); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatalf("%v\n%s", err, h.Log())
	}

	fmt.Printf("\nRuntime path with %d attachments present, %d rounds (ms)\n", present, rounds)
	fmt.Printf("%-36s %8s %8s\n", "", "p50", "p99")
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{
		{"pontoon CNI ADD", pAdd}, {"pontoon CNI DEL", pDel},
		{"bridge + host-local ADD", rAdd}, {"bridge + host-local DEL", rDel},
		{"network connect, API", apiConn}, {"network connect, CLI", cliConn},
	} {
		fmt.Printf("%-36s %8.2f %8.2f\n", row.name, quantile(row.d, 50), quantile(row.d, 99))
	}
	fmt.Printf("reference/pontoon p50: ADD %.1f×, DEL %.1f×; CLI − API connect p50: %.2f ms\n",
		quantile(rAdd, 50)/quantile(pAdd, 50), quantile(rDel, 50)/quantile(pDel, 50), quantile(cliConn, 50)-quantile(apiConn, 50))
	sfx := fmt.Sprintf("-%d-ms", present)
	b.ReportMetric(quantile(pAdd, 50), "add-p50"+sfx)
	b.ReportMetric(quantile(pDel, 50), "del-p50"+sfx)
	b.ReportMetric(quantile(rAdd, 50), "ref-add-p50"+sfx)
	b.ReportMetric(quantile(rDel, 50), "ref-del-p50"+sfx)
	b.ReportMetric(quantile(apiConn, 50), "api-connect-p50"+sfx)
	b.ReportMetric(quantile(cliConn, 50), "cli-connect-p50"+sfx)
}

// BenchmarkStart measures how long `pontoon --version` and pontoon-cni's
// VERSION verb take from exec to exit, with hyperfine (scripts/deps.sh
// installs it), for the binaries as the e2e tests build them:
//
//	go test ./test/e2e -run XXX -bench Start -benchtime 1x
func BenchmarkStart(b *testing.B) {
	testutil.RequireRoot(b)
	hf, err := exec.LookPath("hyperfine")
	if err != nil {
		b.Fatalf("hyperfine is missing (apt-get install hyperfine; scripts/deps.sh does): %v", err)
	}
	for b.Loop() {
		out := filepath.Join(b.TempDir(), "start.json")
		cmd := exec.Command(hf, "-N", "--style", "none", "--warmup", "50", "--runs", "500", "--export-json", out,
			"-n", "pontoon --version", filepath.Join(binDir, "pontoon")+" --version",
			"-n", "pontoon-cni (VERSION)", filepath.Join(binDir, "pontoon-cni"))
		// pontoon-cni reads its verb from the environment; pontoon ignores it.
		cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("hyperfine: %v\n%s", err, o)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		var res struct {
			Results []struct {
				Command string    `json:"command"`
				Mean    float64   `json:"mean"`
				Stddev  float64   `json:"stddev"`
				Median  float64   `json:"median"`
				Min     float64   `json:"min"`
				Times   []float64 `json:"times"`
			} `json:"results"`
		}
		if err := json.Unmarshal(data, &res); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("\nStart-up, exec to exit, hyperfine -N, %d runs each (ms)\n", 500)
		fmt.Printf("%-24s %8s %8s %8s %8s\n", "", "mean", "σ", "median", "min")
		for _, r := range res.Results {
			fmt.Printf("%-24s %8.2f %8.2f %8.2f %8.2f\n", r.Command, r.Mean*1000, r.Stddev*1000, r.Median*1000, r.Min*1000)
			name := map[bool]string{true: "cni", false: "cli"}[r.Command != "pontoon --version"]
			b.ReportMetric(r.Mean*1000, name+"-start-mean-ms")
			b.ReportMetric(r.Median*1000, name+"-start-median-ms")
		}
	}
}

// quantile returns the pc-th percentile of d in milliseconds.
func quantile(d []time.Duration, pc int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)*pc/100, len(s)-1)].Microseconds()) / 1000
}

// settle waits (at most 30 s) until the machine is mostly idle: the kernel
// destroys namespaces and veths in the background, and a measurement that
// starts during that pays for it.
func settle(b *testing.B) {
	b.Helper()
	busy := func() (uint64, uint64) {
		data, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0
		}
		var user, nice, sys, idle, iowait, irq, softirq uint64
		fmt.Sscanf(string(data), "cpu %d %d %d %d %d %d %d", &user, &nice, &sys, &idle, &iowait, &irq, &softirq)
		return user + nice + sys + irq + softirq, user + nice + sys + idle + iowait + irq + softirq
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b0, t0 := busy()
		time.Sleep(500 * time.Millisecond)
		b1, t1 := busy()
		if t1 > t0 && float64(b1-b0)/float64(t1-t0) < 0.10 {
			return
		}
	}
}
