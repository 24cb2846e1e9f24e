package e2e

import (
	"flag"
	"fmt"
	"testing"
	"time"
)

// BenchmarkDockerDriver measures pontoon as Docker's network and IPAM
// driver against Docker's own bridge driver, with the test's dockerd
// (docker.io 20.10, --iptables=false: the bridge driver adds no rules, so
// its figures are a lower bound of what it costs on a real host), the
// docker client's exec to its exit each time:
//
//  1. `docker run --rm --network NET bb true` for a pontoon network
//     (-d pontoon --ipam-driver pontoon), a bridge-driver network and
//     --network none, taking turns, one run each, so that a change of the
//     machine's load weighs on all alike. A network's share of a container
//     start is its median less none's; it prints pontoon's share against
//     the bridge's.
//  2. `docker network connect NET c` and `docker network disconnect NET
//     c` of a running container to each network in turn: the medians of
//     each. Docker refuses to connect a container started with --network
//     none to any network, so c starts on a third network of its own, a
//     bridge-driver one that neither operation touches.
//
// It also prints the docker client's floor, `docker inspect` of the
// running container (exec, one API round trip, exit), which every figure
// above includes.
//
//	go test ./test/e2e -run XXX -bench DockerDriver -benchtime 1x [-args -dockerdrv-runs 30]
func BenchmarkDockerDriver(b *testing.B) {
	d := newDocker(b)
	h := d.e.h
	h.Stop()
	h.Start(d.pontoonArgs()...)

	// Runs before the harness removes the containers and stops dockerd
	// and the pontoon daemon (cleanups run last-registered first): the
	// container that holds endpoints goes first, then the networks, while
	// their drivers still answer.
	b.Cleanup(func() {
		if out, err := d.try("rm", "-f", "dkbench-c"); err != nil {
			b.Logf("docker rm -f dkbench-c: %v\n%s", err, out)
		}
		for _, n := range []string{"dkbench-pontoon", "dkbench-bridge", "dkbench-base"} {
			if out, err := d.try("network", "rm", n); err != nil {
				b.Logf("docker network rm %s: %v\n%s", n, err, out)
			}
		}
	})
	d.run("network", "create", "-d", "pontoon", "--ipam-driver", "pontoon", "--subnet", "10.94.10.0/24", "dkbench-pontoon")
	d.run("network", "create", "-d", "bridge", "--subnet", "10.94.11.0/24", "dkbench-bridge")
	nets := []string{"dkbench-pontoon", "dkbench-bridge", "none"}
	label := map[string]string{"dkbench-pontoon": "pontoon", "dkbench-bridge": "bridge", "none": "none"}

	timed := func(args ...string) time.Duration {
		start := time.Now()
		d.run(args...)
		return time.Since(start)
	}
	run := func(n string) time.Duration {
		return timed("run", "--rm", "--network", n, dockerImage, "true")
	}
	// The container that is connected and disconnected, on a network of
	// its own: one started with --network none cannot be connected ("one
	// of the networks in private (none) mode").
	d.run("network", "create", "-d", "bridge", "--subnet", "10.94.12.0/24", "dkbench-base")
	d.run("run", "-d", "--network", "dkbench-base", "--name", "dkbench-c", dockerImage, "sleep", "600")

	for b.Loop() {
		for _, n := range nets { // warm-up: image, storage, plugin handles
			run(n)
		}
		for _, n := range nets[:2] {
			d.run("network", "connect", n, "dkbench-c")
			d.run("network", "disconnect", n, "dkbench-c")
		}
		settle(b)

		runs := map[string][]time.Duration{}
		for range *dockerDrvRuns {
			for _, n := range nets {
				runs[n] = append(runs[n], run(n))
			}
		}
		conn, disc := map[string][]time.Duration{}, map[string][]time.Duration{}
		var floor []time.Duration
		for range *dockerDrvRuns {
			for _, n := range nets[:2] {
				conn[n] = append(conn[n], timed("network", "connect", n, "dkbench-c"))
				disc[n] = append(disc[n], timed("network", "disconnect", n, "dkbench-c"))
			}
			floor = append(floor, timed("inspect", "-f", "{{.Id}}", "dkbench-c"))
		}

		median := map[string]float64{}
		for _, n := range nets {
			median[n] = quantile(runs[n], 50)
		}
		fmt.Printf("\ndocker run --rm --network NET bb true, exec to exit, %d runs each, taking turns (ms)\n", *dockerDrvRuns)
		fmt.Printf("%-10s %8s %8s %8s %14s\n", "network", "p10", "median", "p90", "median − none")
		for _, n := range nets {
			fmt.Printf("%-10s %8.1f %8.1f %8.1f %14.1f\n", label[n], quantile(runs[n], 10), median[n], quantile(runs[n], 90), median[n]-median["none"])
			b.ReportMetric(median[n], "run-"+label[n]+"-median-ms")
		}
		pShare, bShare := median["dkbench-pontoon"]-median["none"], median["dkbench-bridge"]-median["none"]
		fmt.Printf("pontoon's share %.1f ms, the bridge's %.1f ms: %.2f of it\n", pShare, bShare, pShare/bShare)
		b.ReportMetric(pShare/bShare, "pontoon/bridge-run-share")

		fmt.Printf("\ndocker network connect / disconnect NET c (running container), exec to exit, %d each, taking turns (ms)\n", *dockerDrvRuns)
		fmt.Printf("%-10s %8s %8s %8s   %8s %8s %8s\n", "network", "conn p10", "median", "p90", "disc p10", "median", "p90")
		for _, n := range nets[:2] {
			fmt.Printf("%-10s %8.1f %8.1f %8.1f   %8.1f %8.1f %8.1f\n", label[n],
				quantile(conn[n], 10), quantile(conn[n], 50), quantile(conn[n], 90),
				quantile(disc[n], 10), quantile(disc[n], 50), quantile(disc[n], 90))
			b.ReportMetric(quantile(conn[n], 50), "connect-"+label[n]+"-median-ms")
			b.ReportMetric(quantile(disc[n], 50), "disconnect-"+label[n]+"-median-ms")
		}
		fmt.Printf("docker client floor (docker inspect c, exec to exit): median %.1f ms\n", quantile(floor, 50))
	}
}

var dockerDrvRuns = flag.Int("dockerdrv-runs", 10, "BenchmarkDockerDriver: measured runs per network and per operation")
