package e2e

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkPodmanRun measures `podman run --rm --network NET bb true`,
// exec to exit, in one run for four networks: a pontoon network (through
// pontoon-cni), Podman's own CNI bridge network (Debian's reference
// plugins: bridge with host-local, portmap, firewall, tuning), a network
// whose plugin does nothing (Podman's own part of any CNI network), and
// --network none. They take turns, one run each, so that a change of the
// machine's load during the run weighs on all alike. What a network costs
// a container start is its time less none's; it prints each share and
// pontoon's against the bridge's:
//
//	go test ./test/e2e -run XXX -bench PodmanRun -benchtime 1x [-args -podman-runs 30]
func BenchmarkPodmanRun(b *testing.B) {
	p := newPodman(b)
	h := p.e.h
	h.P("network", "create", "pnet", "--subnet", "10.91.0.0/24")
	p.e.conflist("pnet.conflist", "pnet")
	p.must("network", "create", "--subnet", "10.92.0.0/24", "pbridge")
	// A plugin that does nothing: what Podman itself spends on any CNI
	// network (the namespace, libcni, the result) besides the plugin.
	noop := "#!/bin/sh\ncat >/dev/null\ncase $CNI_COMMAND in\nADD) echo '{\"cniVersion\": \"1.0.0\"}' ;;\n" +
		"VERSION) echo '{\"cniVersion\": \"1.0.0\", \"supportedVersions\": [\"1.0.0\"]}' ;;\nesac\n"
	if err := os.WriteFile(filepath.Join(p.e.pluginDir, "noop"), []byte(noop), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.e.confDir, "noop.conflist"),
		[]byte(`{"cniVersion": "1.0.0", "name": "noop", "plugins": [{"type": "noop"}]}`), 0o644); err != nil {
		b.Fatal(err)
	}
	nets := []string{"pnet", "pbridge", "noop", "none"}
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
		fmt.Printf("Podman's own part of any CNI network (noop − none): %.1f ms; pontoon beyond it: %.1f ms, the bridge: %.1f ms\n",
			median["noop"]-median["none"], median["pnet"]-median["noop"], median["pbridge"]-median["noop"])
		b.ReportMetric(pShare/bShare, "pontoon/bridge-share")
	}
}

var podmanRuns = flag.Int("podman-runs", 30, "BenchmarkPodmanRun: measured runs per network")
