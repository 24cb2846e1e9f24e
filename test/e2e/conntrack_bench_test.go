package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// BenchmarkConntrackCleanup: what the stale-conntrack clean-up costs an
// attach through the API (none without UDP/SCTP ports; with them the
// clean-up runs in the background), a detach and a sandbox removal, and
// how long the background clean-up itself takes (from the daemon's
// debug log), p50 over 30 of each, one at a time on an idle daemon and
// back to back:
//
//	go test ./test/e2e -run XXX -bench ConntrackCleanup -benchtime 1x
func BenchmarkConntrackCleanup(b *testing.B) {
	for b.Loop() {
		h := NewHost(b)
		cl := api.NewClient(h.Socket)
		ctx := context.Background()
		modes := []struct {
			name  string
			ports func(i int) []string
		}{
			{"no ports", func(int) []string { return nil }},
			{"-p tcp", func(i int) []string { return []string{fmt.Sprintf("%d:80", 9000+i)} }},
			{"-p udp", func(i int) []string { return []string{fmt.Sprintf("%d:53/udp", 9100+i)} }},
		}
		attach := map[string][]time.Duration{}
		detach := map[string][]time.Duration{}
		remove := map[string][]time.Duration{}
		for i := range 30 {
			for _, m := range modes {
				name := fmt.Sprintf("x%d-%s", i, strings.Fields(strings.TrimPrefix(m.name, "-p "))[0])
				h.P("sandbox", "create", name, "--network", "none")
				time.Sleep(20 * time.Millisecond) // an idle daemon: no clean-up running
				t0 := time.Now()
				if _, err := cl.Connect(ctx, "pontoon", api.ConnectRequest{Sandbox: name, AttachSpec: model.AttachSpec{Ports: Ports(m.ports(i)...)}}); err != nil {
					b.Fatal(err)
				}
				attach[m.name] = append(attach[m.name], time.Since(t0))
				time.Sleep(20 * time.Millisecond)
				t0 = time.Now()
				if err := cl.Disconnect(ctx, "pontoon", name); err != nil {
					b.Fatal(err)
				}
				detach[m.name] = append(detach[m.name], time.Since(t0))
				time.Sleep(20 * time.Millisecond)
				if _, err := cl.Connect(ctx, "pontoon", api.ConnectRequest{Sandbox: name, AttachSpec: model.AttachSpec{Ports: Ports(m.ports(i)...)}}); err != nil {
					b.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
				t0 = time.Now()
				if err := cl.RemoveSandbox(ctx, name); err != nil {
					b.Fatal(err)
				}
				remove[m.name] = append(remove[m.name], time.Since(t0))
			}
		}
		// Back to back: clean-ups overlap the next attaches.
		burst := map[string][]time.Duration{}
		for _, m := range modes {
			for i := range 30 {
				name := fmt.Sprintf("y%d-%s", i, strings.Fields(strings.TrimPrefix(m.name, "-p "))[0])
				h.P("sandbox", "create", name, "--network", "none")
			}
			for i := range 30 {
				name := fmt.Sprintf("y%d-%s", i, strings.Fields(strings.TrimPrefix(m.name, "-p "))[0])
				t0 := time.Now()
				if _, err := cl.Connect(ctx, "pontoon", api.ConnectRequest{Sandbox: name, AttachSpec: model.AttachSpec{Ports: Ports(m.ports(100 + i)...)}}); err != nil {
					b.Fatal(err)
				}
				burst[m.name] = append(burst[m.name], time.Since(t0))
			}
			time.Sleep(50 * time.Millisecond)
		}
		h.Stop()
		fmt.Printf("\nconntrack clean-up (ms, p50 of 30, through the API)\n%-10s %8s %8s %10s %16s\n", "mapping", "attach", "detach", "sandbox rm", "attach (burst)")
		for _, m := range modes {
			fmt.Printf("%-10s %8.2f %8.2f %10.2f %16.2f\n", m.name, p50ms(attach[m.name]), p50ms(detach[m.name]), p50ms(remove[m.name]), p50ms(burst[m.name]))
		}
		var runs []time.Duration
		re := regexp.MustCompile(`took=([0-9.]+[µmn]?s)`)
		for _, line := range strings.Split(h.Log(), "\n") {
			if !strings.Contains(line, "stale conntrack entries deleted") {
				continue
			}
			if m := re.FindStringSubmatch(line); m != nil {
				if d, err := time.ParseDuration(m[1]); err == nil {
					runs = append(runs, d)
				}
			}
		}
		if len(runs) > 0 {
			// Queued: 2 per round without UDP (detach, rm), 4 with (2 publishes
			// too), and the 30 UDP publishes of the burst.
			fmt.Printf("background clean-ups: %d table reads for 270 queued, p50 %.2f ms each\n", len(runs), p50ms(runs))
		}
	}
}
