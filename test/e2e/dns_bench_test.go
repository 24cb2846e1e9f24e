package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"pontoon/internal/api"
	"pontoon/internal/testutil"
)

// BenchmarkDNSUnderChurn sends 1000 queries/s for 10 s from a sandbox to
// its network's resolver, alternating a stable name (db) and a name that is
// attached and detached every 100 ms (churn), and counts lost and wrong
// answers (db must always answer its address; churn its address or
// NXDOMAIN, nothing else):
//
//	go test ./test/e2e -run XXX -bench DNSUnderChurn -benchtime 1x
func BenchmarkDNSUnderChurn(b *testing.B) {
	const (
		rate     = 1000
		duration = 10 * time.Second
	)
	h := NewHost(b)
	h.P("network", "create", "app", "--subnet", "10.97.10.0/24")
	h.P("sandbox", "create", "db", "--network", "app")
	h.P("sandbox", "create", "client", "--network", "app")
	h.P("sandbox", "create", "churn", "--network", "none")
	dbIP := net.ParseIP(h.IP("db", "app"))
	clientNS := h.SandboxNS("client")
	cl := api.NewClient(h.Socket)

	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), duration)
		// Addresses churn was given. The resolver learns one before Connect
		// returns to us, so churn's answers are checked after the run.
		var churnMu sync.Mutex
		churnIPs := map[string]bool{}
		var churnSeen []string
		var flips atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // attach/detach every 100 ms
			defer wg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			on := false
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if on {
					_ = cl.Disconnect(context.Background(), "app", "churn")
				} else if ep, err := cl.Connect(context.Background(), "app", api.ConnectRequest{Sandbox: "churn"}); err == nil {
					churnMu.Lock()
					churnIPs[ep.FirstIP().String()] = true
					churnMu.Unlock()
				}
				on = !on
				flips.Add(1)
			}
		}()
		var lat []time.Duration
		var sent, lost, wrong int
		t0 := time.Now()
		err := testutil.InNetns(b, clientNS, func() error {
			conn, err := mdns.Dial("udp", "10.97.10.1:53")
			if err != nil {
				return err
			}
			defer conn.Close()
			// Query i goes out at start + i/rate; a late loop catches up
			// (a ticker would drop ticks instead).
			start := time.Now()
			for i := 0; i < rate*int(duration/time.Second); i++ {
				if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
					time.Sleep(d)
				}
				name := "db.app."
				if i%2 == 1 {
					name = "churn.app."
				}
				q := new(mdns.Msg)
				q.SetQuestion(name, mdns.TypeA)
				sent++
				t0 := time.Now()
				_ = conn.SetDeadline(t0.Add(time.Second))
				if err := conn.WriteMsg(q); err != nil {
					lost++
					continue
				}
				r, err := conn.ReadMsg()
				if err != nil || r.Id != q.Id {
					lost++
					continue
				}
				lat = append(lat, time.Since(t0))
				switch {
				case name == "db.app.":
					if len(r.Answer) != 1 || !r.Answer[0].(*mdns.A).A.Equal(dbIP) {
						wrong++
					}
				case r.Rcode == mdns.RcodeNameError:
				case r.Rcode == mdns.RcodeSuccess && len(r.Answer) == 1:
					if a, ok := r.Answer[0].(*mdns.A); ok {
						churnSeen = append(churnSeen, a.A.String())
					} else {
						wrong++
					}
				default:
					wrong++
				}
			}
			return nil
		})
		elapsed := time.Since(t0)
		cancel()
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		for _, ip := range churnSeen {
			if !churnIPs[ip] {
				wrong++
			}
		}
		slices.Sort(lat)
		p := func(q int) float64 { return float64(lat[min(len(lat)*q/100, len(lat)-1)].Microseconds()) / 1000 }
		qps := float64(len(lat)) / elapsed.Seconds()
		fmt.Printf("\nDNS under churn: %d queries in %v (%.0f answered/s), %d attach/detach flips\n", sent, elapsed.Round(time.Millisecond), qps, flips.Load())
		fmt.Printf("lost %d, wrong %d, latency p50 %.3f ms, p99 %.3f ms\n", lost, wrong, p(50), p(99))
		b.ReportMetric(qps, "answers/s")
		b.ReportMetric(p(50), "p50-ms")
		b.ReportMetric(p(99), "p99-ms")
		b.ReportMetric(float64(lost), "lost")
		b.ReportMetric(float64(wrong), "wrong")
		if lost > 0 || wrong > 0 {
			b.Fatalf("%d lost and %d wrong answers", lost, wrong)
		}
	}
}
