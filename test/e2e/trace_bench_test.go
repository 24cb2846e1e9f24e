package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// BenchmarkTraceScale: the time of one `POST /v1/trace` (through the API,
// as the CLI sends it) on a host with 500 sandboxes and 1000 published
// ports: a live trace that is answered (a → b:80, a server listens), a
// live trace dropped by isolation (a → c), and a prediction alone. The
// budget is a p50 under 500 ms.
//
//	go test ./test/e2e -run XXX -bench TraceScale -benchtime 1x -timeout 20m
func BenchmarkTraceScale(b *testing.B) {
	const sandboxes, rounds = 500, 50
	for b.Loop() {
		h := NewHost(b)
		cl := api.NewClient(h.Socket)
		ctx := context.Background()
		h.P("network", "create", "other", "--subnet", "10.95.0.0/24")
		t0 := time.Now()
		for i := range sandboxes {
			spec := model.SandboxSpec{Name: fmt.Sprintf("s%d", i), Networks: []model.AttachSpec{{Network: model.DefaultNetwork,
				Ports: Ports(fmt.Sprintf("%d:80", 20000+2*i), fmt.Sprintf("%d:81", 20001+2*i))}}}
			if _, err := cl.CreateSandbox(ctx, spec); err != nil {
				b.Fatal(err)
			}
		}
		fmt.Printf("\n%d sandboxes, %d published ports made in %s\n", sandboxes, 2*sandboxes, time.Since(t0).Round(time.Millisecond))
		h.P("sandbox", "create", "c", "--network", "other")
		ServeTCP(b, h.SandboxNS("s1"), "0.0.0.0:80")
		dst := h.IP("s1", model.DefaultNetwork)
		run := func(what, unit string, spec model.TraceSpec, want func(*model.Trace) bool) {
			var ds []time.Duration
			for range rounds {
				t0 := time.Now()
				tr, err := cl.Trace(ctx, spec)
				ds = append(ds, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if !want(tr) {
					b.Fatalf("%s: unexpected trace: %+v %+v", what, tr.Verdict, tr.Live)
				}
			}
			slices.Sort(ds)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			fmt.Printf("%-44s p50 %7.1f ms   p99 %7.1f ms   max %7.1f ms\n", what, ms(ds[len(ds)/2]), ms(ds[len(ds)*99/100]), ms(ds[len(ds)-1]))
			b.ReportMetric(ms(ds[len(ds)/2]), "ms-p50-"+unit)
		}
		live := func(tr *model.Trace) bool { return tr.Live != nil && tr.Live.Agrees }
		run("live, answered (s0 → s1:80, a server)", "answered", model.TraceSpec{Src: "s0", Dst: dst + ":80", Live: true}, live)
		run("live, dropped by isolation (s0 → c:80)", "dropped", model.TraceSpec{Src: "s0", Dst: "c:80", Live: true}, live)
		run("live, published port (s0 → host:20999)", "hairpin", model.TraceSpec{Src: "s0", Dst: "host:20999", Live: true}, live)
		run("prediction and lookups only", "predicted", model.TraceSpec{Src: "s0", Dst: dst + ":80"}, func(tr *model.Trace) bool {
			return tr.Verdict.Result == model.VerdictDelivered
		})
		h.Stop()
	}
}
