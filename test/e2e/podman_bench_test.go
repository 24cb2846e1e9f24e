package e2e

import (
	"flag"
	"fmt"
	"testing"
	"time"
)

// BenchmarkPodmanRun measures `podman run --rm --network NET bb true`,
// exec to exit, in one run for three networks: a pontoon network (through
// pontoon-cni), Podman's own CNI bridge network (Debian's reference
// plugins: bridge with host-local, portmap, firewall, tuning) and
// --network none. The three take turns, one run each, so that a change of
// the machine's load during the run weighs on all alike. What a network
// costs a container start is its time less none's; it prints each share
// and pontoon's against the bridge's:
//
//	go test ./test/e2e -run XXX -bench PodmanRun -benchtime 1x [-args -podman-runs 30]
func BenchmarkPodmanRun(b *testing.B) {
	p := newPodman(b)
	h := p.e.h
	h.P("network", "create", "pnet", "--subnet", "10.91.0.0/24")
	p.e.conflist("pnet.conflist", "pnet")
	p.must("network", "create", "--subnet", "10.92.0.0/24", "pbridge")
	nets := []string{"pnet", "pbridge", "none"}
	run := func(n string) time.Duration {
		start := time.Now()
		if out, err := p.try(append(append([]string{"run", "--rm"}, p.runArgs()...), "--network", n, "localhost/bb", "true")...); err != nil {
			b.Fatalf("podman run --network %s: %v\n%s", n, err, out)
		}
		return time.Since(start)
	}
	for b.Loop() {
		for _, n := range nets { // warm-up: image and storage caches
			run(n)
		}
		settle(b)
		times := map[string][]time.Duration{}
		for range *podmanRuns {
			for _, n := range nets {
				times[n] = append(times[n], run(n))
			}
		}
		median := map[string]float64{}
		fmt.Printf("\npodman run --rm --network NET bb true, exec to exit, %d runs each, taking turns (ms)\n", *podmanRuns)
		fmt.Printf("%-10s %8s %8s %8s %14s\n", "network", "p10", "median", "p90", "median − none")
		for _, n := range nets {
			median[n] = quantile(times[n], 50)
		}
		for _, n := range nets {
			fmt.Printf("%-10s %8.1f %8.1f %8.1f %14.1f\n", n, quantile(times[n], 10), median[n], quantile(times[n], 90), median[n]-median["none"])
			b.ReportMetric(median[n], n+"-median-ms")
		}
		pShare, bShare := median["pnet"]-median["none"], median["pbridge"]-median["none"]
		fmt.Printf("pontoon's share %.1f ms, the bridge's %.1f ms: %.2f of it (the issue's target: at most 0.25)\n", pShare, bShare, pShare/bShare)
		b.ReportMetric(pShare/bShare, "pontoon/bridge-share")
	}
}

var podmanRuns = flag.Int("podman-runs", 30, "BenchmarkPodmanRun: measured runs per network")
