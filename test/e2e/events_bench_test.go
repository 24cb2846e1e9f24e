package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// BenchmarkEventsCost: API attach p50 with no event subscriber and with 10
// following the feed, 300 attaches each, in blocks of 10 in the order
// without-with, with-without, … (ABBA, and short blocks: attaches slow down
// as sandboxes accumulate, and the machine's load drifts, which must count
// against neither side). It prints both p50s, their difference, and the
// median of the 30 pairs' ratios; then the time of a metrics scrape with
// those 600 sandboxes:
//
//	go test ./test/e2e -run XXX -bench EventsCost -benchtime 1x
func BenchmarkEventsCost(b *testing.B) {
	const blocks, block = 30, 10
	for b.Loop() {
		h := NewHost(b, "--log-level", "warn")
		cl := api.NewClient(h.Socket)
		ctx := context.Background()
		var without, with []time.Duration
		var ratios []float64
		i := 0
		attach := func(n int) []time.Duration {
			var ds []time.Duration
			for range n {
				name := fmt.Sprintf("e%04d", i)
				i++
				if _, err := cl.CreateSandbox(ctx, model.SandboxSpec{Name: name}); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if _, err := cl.Connect(ctx, "pontoon", api.ConnectRequest{Sandbox: name}); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(t0))
			}
			return ds
		}
		// The daemon's CPU time in each kind of block, from /proc: what
		// the followers cost it, whatever the load.
		pid := h.daemon.Process.Pid
		var cpuWithout, cpuWith time.Duration
		cpuOf := func(f func() []time.Duration, into *time.Duration) []time.Duration {
			c0 := procCPU(b, pid)
			ds := f()
			*into += procCPU(b, pid) - c0
			return ds
		}
		// Both kinds of block have the same pauses, so that the daemon's
		// background work (self-healing passes, resolv.conf files) gets the
		// same chances in both, and neither starts while the other's is
		// still running.
		var received atomic.Int64
		run := func(followers int) []time.Duration {
			sctx, stop := context.WithCancel(ctx)
			for range followers {
				go func() {
					_ = cl.Events(sctx, api.EventQuery{Follow: true}, func(model.Event) error { received.Add(1); return nil })
				}()
			}
			time.Sleep(50 * time.Millisecond)
			ds := attach(block)
			// The block's last events reach the followers before they go.
			time.Sleep(50 * time.Millisecond)
			stop()
			time.Sleep(50 * time.Millisecond)
			return ds
		}
		followed := func() []time.Duration { return run(10) }
		plain := func() []time.Duration { return run(0) }
		for k := range blocks {
			var a, c []time.Duration
			if k%2 == 0 {
				a = cpuOf(plain, &cpuWithout)
				c = cpuOf(followed, &cpuWith)
			} else {
				c = cpuOf(followed, &cpuWith)
				a = cpuOf(plain, &cpuWithout)
			}
			without, with = append(without, a...), append(with, c...)
			ratios = append(ratios, float64(pct(c, 0.5))/float64(pct(a, 0.5)))
		}
		if received.Load() == 0 {
			b.Fatal("the followers received no event")
		}
		slices.Sort(ratios)
		p0, p1 := pct(without, 0.5), pct(with, 0.5)
		fmt.Printf("\nAPI attach p50: no subscriber %.2f ms, 10 subscribers %.2f ms (%+.1f %%; median of the %d blocks' ratios %+.1f %%; %d each, blocks of %d in ABBA order; %d events received)\n",
			float64(p0.Microseconds())/1000, float64(p1.Microseconds())/1000, 100*(float64(p1)/float64(p0)-1),
			blocks, 100*(ratios[len(ratios)/2]-1), blocks*block, block, received.Load())
		n := time.Duration(blocks * block)
		fmt.Printf("daemon CPU per create and attach: no subscriber %d µs, 10 subscribers %d µs (%d events per follower)\n",
			(cpuWithout / n).Microseconds(), (cpuWith / n).Microseconds(), received.Load()/10)
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", h.Socket)
		}}}
		var scrapes []time.Duration
		for range 30 {
			t0 := time.Now()
			resp, err := hc.Get("http://pontoon/metrics")
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			scrapes = append(scrapes, time.Since(t0))
		}
		fmt.Printf("metrics scrape with 600 sandboxes: p50 %.2f ms, p99 %.2f ms\n",
			float64(pct(scrapes, 0.5).Microseconds())/1000, float64(pct(scrapes, 0.99).Microseconds())/1000)
		h.Stop()
	}
}

// BenchmarkTopology: the read model with 500 sandboxes and 1000
// published ports (two per sandbox): GET /v1/topology, and the reads of
// `ls` and `inspect` that come from the same view (GET /v1/sandboxes,
// /v1/networks, /v1/sandboxes/{name}, /v1/networks/{name}), 30 times each
// through the API, then `pontoon sandbox ls` as a user runs it (the CLI's
// own start-up included):
//
//	go test ./test/e2e -run XXX -bench Topology -benchtime 1x
func BenchmarkTopology(b *testing.B) {
	for b.Loop() {
		h := NewHost(b, "--log-level", "warn")
		cl := api.NewClient(h.Socket)
		ctx := context.Background()
		for i := range 500 {
			if _, err := cl.CreateSandbox(ctx, model.SandboxSpec{Name: fmt.Sprintf("t%03d", i), Networks: []model.AttachSpec{{Network: "pontoon",
				Ports: Ports(fmt.Sprintf("%d:80", 20000+2*i), fmt.Sprintf("%d:81/udp", 20001+2*i))}}}); err != nil {
				b.Fatal(err)
			}
		}
		timed := func(what string, f func() error) {
			b.Helper()
			var ds []time.Duration
			for range 30 {
				t0 := time.Now()
				if err := f(); err != nil {
					b.Fatalf("%s: %v", what, err)
				}
				ds = append(ds, time.Since(t0))
			}
			fmt.Printf("%-34s p50 %5.1f ms, p99 %5.1f ms\n", what, float64(pct(ds, 0.5).Microseconds())/1000, float64(pct(ds, 0.99).Microseconds())/1000)
		}
		fmt.Printf("\nthe read model with 500 sandboxes and 1000 published ports (API round trip, JSON):\n")
		timed("GET /v1/topology", func() error {
			tp, err := cl.Topology(ctx)
			if err == nil && len(tp.Networks[0].Ports) != 500 {
				err = fmt.Errorf("%d ports", len(tp.Networks[0].Ports))
			}
			return err
		})
		timed("GET /v1/sandboxes (sandbox ls)", func() error {
			sbs, err := cl.Sandboxes(ctx)
			if err == nil && len(sbs) != 500 {
				err = fmt.Errorf("%d sandboxes", len(sbs))
			}
			return err
		})
		timed("GET /v1/networks (network ls)", func() error {
			_, err := cl.Networks(ctx)
			return err
		})
		timed("GET /v1/sandboxes/t250 (inspect)", func() error {
			_, err := cl.Sandbox(ctx, "t250")
			return err
		})
		timed("GET /v1/networks/pontoon (inspect)", func() error {
			_, err := cl.Network(ctx, "pontoon")
			return err
		})
		timed("pontoon sandbox ls (the CLI)", func() error {
			_, err := h.try("sandbox", "ls")
			return err
		})
		h.Stop()
	}
}

// procCPU is the CPU time process pid has used: the sum over its threads
// of /proc/PID/task/TID/schedstat's first field (nanoseconds on a CPU;
// /proc/PID/stat counts in ticks of 10 ms, too coarse for a block of 10
// attaches). Go's threads do not exit, so none of it is lost.
func procCPU(b testing.TB, pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread exited meanwhile
		}
		ns, _ := strconv.ParseInt(strings.Fields(string(data))[0], 10, 64)
		sum += time.Duration(ns)
	}
	return sum
}
