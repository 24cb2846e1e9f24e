package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// BenchmarkEventsCost: API attach p50 with no event subscriber and with 10
// following the feed (blocks of 50 attaches, alternating, 300 each), then
// the time of a metrics scrape with those 600 sandboxes:
//
//	go test ./test/e2e -run XXX -bench EventsCost -benchtime 1x
func BenchmarkEventsCost(b *testing.B) {
	for b.Loop() {
		h := NewHost(b, "--log-level", "warn")
		cl := api.NewClient(h.Socket)
		ctx := context.Background()
		var without, with []time.Duration
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
		for range 6 {
			without = append(without, attach(50)...)
			sctx, stop := context.WithCancel(ctx)
			for range 10 {
				go func() {
					_ = cl.Events(sctx, api.EventQuery{Follow: true}, func(model.Event) error { return nil })
				}()
			}
			time.Sleep(100 * time.Millisecond)
			with = append(with, attach(50)...)
			stop()
			time.Sleep(100 * time.Millisecond)
		}
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
		fmt.Printf("\nAPI attach p50: no subscriber %.2f ms, 10 subscribers %.2f ms (300 each, blocks of 50 alternating)\n",
			float64(pct(without, 0.5).Microseconds())/1000, float64(pct(with, 0.5).Microseconds())/1000)
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
