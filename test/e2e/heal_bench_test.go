package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// untilConnect dials addr from the namespace ns every 20 ms (each attempt
// a fresh SYN with a 50 ms timeout) until one connects, and returns the
// time since start.
func untilConnect(b testing.TB, ns, addr string, start time.Time, limit time.Duration) time.Duration {
	var took time.Duration
	if err := testutil.InNetns(b, ns, func() error {
		for {
			c, err := net.DialTimeout("tcp4", addr, 50*time.Millisecond)
			if err == nil {
				took = time.Since(start)
				c.Close()
				return nil
			}
			if time.Since(start) > limit {
				return fmt.Errorf("no connection to %s %v after the breakage: %v", addr, limit, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}); err != nil {
		b.Fatal(err)
	}
	return took
}

// BenchmarkHealRepair: time from breaking something to traffic flowing
// again, over 50 repetitions each, for the bridge of a network with 50
// ports deleted and for one host veth deleted:
//
//	go test ./test/e2e -run XXX -bench HealRepair -benchtime 1x
func BenchmarkHealRepair(b *testing.B) {
	for b.Loop() {
		h := NewHost(b, "--log-level", "warn")
		cl := api.NewClient(h.Socket)
		ctx := context.Background()
		for i := range 50 {
			if _, err := cl.CreateSandbox(ctx, model.SandboxSpec{Name: fmt.Sprintf("s%02d", i), Networks: []model.AttachSpec{{Network: "pontoon"}}}); err != nil {
				b.Fatal(err)
			}
		}
		srv := ServeTCP(b, h.SandboxNS("s49"), "0.0.0.0:80")
		_ = srv
		target := h.IP("s49", "pontoon") + ":80"
		from := h.SandboxNS("s00")
		untilConnect(b, from, target, time.Now(), time.Second)
		const reps = 50
		measure := func(what string, breakIt func()) {
			var ds []time.Duration
			for range reps {
				start := time.Now()
				breakIt()
				ds = append(ds, untilConnect(b, from, target, start, 5*time.Second))
				time.Sleep(150 * time.Millisecond) // let the repair's own events settle
			}
			fmt.Printf("%-36s p50 %6.1f ms   p99 %6.1f ms   (n=%d)\n", what,
				float64(pct(ds, 0.5).Microseconds())/1000, float64(pct(ds, 0.99).Microseconds())/1000, len(ds))
		}
		fmt.Println("\nbreakage → traffic again (TCP connect s00 → s49, 50 sandboxes on the bridge)")
		measure("ip link del pontoon0 (50 ports)", func() { h.In(h.NS, "ip", "link", "del", model.DefaultBridge) })
		hostIf := h.Sandbox("s49").Endpoints[0].HostIf
		measure("ip link del <host veth of s49>", func() { h.In(h.NS, "ip", "link", "del", hostIf) })
		h.Stop()
	}
}

// daemonCPU returns the CPU time (user + system) the daemon has used.
func (h *Host) daemonCPU(b testing.TB) time.Duration {
	h.mu.Lock()
	pid := h.daemon.Process.Pid
	h.mu.Unlock()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in ")".
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)        // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)        // stime, field 15
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// BenchmarkHealIdle: the daemon's CPU time over 60 s with 500 sandboxes
// and no changes, with self-healing on and off:
//
//	go test ./test/e2e -run XXX -bench HealIdle -benchtime 1x -timeout 20m
func BenchmarkHealIdle(b *testing.B) {
	for b.Loop() {
		fmt.Println("\nidle daemon, 500 sandboxes, 60 s")
		// The third: a 6 s period, so that the 60 s hold ten passes, one
		// of them a sweep inside every sandbox (by default every 300 s).
		for _, args := range [][]string{{"--self-heal=true"}, {"--self-heal=false"}, {"--self-heal=true", "--heal-period", "6s"}} {
			h := NewHost(b, append([]string{"--log-level", "warn"}, args...)...)
			cl := api.NewClient(h.Socket)
			for i := range 500 {
				if _, err := cl.CreateSandbox(context.Background(), model.SandboxSpec{Name: fmt.Sprintf("s%03d", i), Networks: []model.AttachSpec{{Network: "pontoon"}}}); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(5 * time.Second)
			c0 := h.daemonCPU(b)
			time.Sleep(60 * time.Second)
			c1 := h.daemonCPU(b)
			fmt.Printf("%-36s CPU %v over 60 s (%.3f %% of one core)\n", strings.Join(args, " "), c1-c0, float64(c1-c0)/float64(60*time.Second)*100)
			h.Stop()
		}
	}
}

// BenchmarkHealAttach: API attach p50 with self-healing on and off, in one
// run, the two daemons taking turns attach by attach:
//
//	go test ./test/e2e -run XXX -bench HealAttach -benchtime 1x
func BenchmarkHealAttach(b *testing.B) {
	for b.Loop() {
		on := NewHost(b, "--log-level", "warn")
		off := NewHost(b, "--log-level", "warn", "--self-heal=false")
		ctx := context.Background()
		type side struct {
			h  *Host
			cl *api.Client
			ds []time.Duration
		}
		sides := []*side{{h: on, cl: api.NewClient(on.Socket)}, {h: off, cl: api.NewClient(off.Socket)}}
		const n = 300
		for i := range n {
			for _, s := range sides {
				name := fmt.Sprintf("a%03d", i)
				if _, err := s.cl.CreateSandbox(ctx, model.SandboxSpec{Name: name}); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if _, err := s.cl.Connect(ctx, "pontoon", api.ConnectRequest{Sandbox: name}); err != nil {
					b.Fatal(err)
				}
				s.ds = append(s.ds, time.Since(t0))
			}
		}
		fmt.Printf("\nAPI attach (network connect), %d per daemon, alternating\n", n)
		for i, s := range sides {
			fmt.Printf("self-heal=%-5v p50 %.2f ms  p99 %.2f ms\n", i == 0,
				float64(pct(s.ds, 0.5).Microseconds())/1000, float64(pct(s.ds, 0.99).Microseconds())/1000)
		}
		on.Stop()
		off.Stop()
	}
}
