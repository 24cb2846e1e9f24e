package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

func p50ms(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}

// dialTimes connects n times from a namespace and returns each set-up time.
func dialTimes(b testing.TB, ns, addr string, n int) []time.Duration {
	var out []time.Duration
	if err := testutil.InNetns(b, ns, func() error {
		for range n {
			t0 := time.Now()
			c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
			if err != nil {
				return err
			}
			out = append(out, time.Since(t0))
			c.Close()
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkPortsScale: with 0, 1000 and 5000 mappings already published,
// the time to publish one more (a network connect with -p, through the
// API) and the connection set-up time from the outside namespace to the
// first and to the last mapping:
//
//	go test ./test/e2e -run XXX -bench PortsScale -benchtime 1x
func BenchmarkPortsScale(b *testing.B) {
	for b.Loop() {
		fmt.Printf("\npublished ports at scale (ms, p50)\n%-10s %14s %16s %16s\n", "present", "add one more", "connect first", "connect last")
		for _, n := range []int{0, 1000, 5000} {
			h := NewHost(b)
			cl := api.NewClient(h.Socket)
			h.P("sandbox", "create", "web", "-p", "8080:80")
			last := "8080"
			if n > 0 {
				h.P("sandbox", "create", "bulk", "-p", fmt.Sprintf("20000-%d:20000-%d", 20000+n-1, 20000+n-1))
				last = strconv.Itoa(20000 + n - 1)
			}
			ServeTCP(b, h.SandboxNS("web"), "0.0.0.0:80")
			if n > 0 {
				ServeTCP(b, h.SandboxNS("bulk"), "0.0.0.0:"+last)
			}
			var adds []time.Duration
			for i := range 20 {
				name := fmt.Sprintf("x%d", i)
				h.P("sandbox", "create", name, "--network", "none")
				t0 := time.Now()
				if _, err := cl.Connect(context.Background(), "pontoon", api.ConnectRequest{Sandbox: name, AttachSpec: model.AttachSpec{Ports: Ports(fmt.Sprintf("%d:80", 9000+i))}}); err != nil {
					b.Fatal(err)
				}
				adds = append(adds, time.Since(t0))
			}
			first := dialTimes(b, h.Outside, HostUplinkIP+":8080", 200)
			lastT := dialTimes(b, h.Outside, HostUplinkIP+":"+last, 200)
			fmt.Printf("%-10d %14.2f %16.3f %16.3f\n", n, p50ms(adds), p50ms(first), p50ms(lastT))
			h.Stop()
		}
	}
}

// iperf3Gbps runs iperf3 -c target for 3 s from a namespace (a server
// runs in serverNS on port 5201) and returns Gbit/s.
func iperf3Gbps(b testing.TB, h *Host, serverNS, clientNS, target string, port int) float64 {
	srv := exec.Command("nsenter", "--net="+serverNS, "--", "iperf3", "-s", "-1", "-p", "5201")
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(200 * time.Millisecond)
	out, err := exec.Command("nsenter", "--net="+clientNS, "--", "iperf3", "-c", target, "-p", strconv.Itoa(port), "-t", "3", "-J").Output()
	if err != nil {
		b.Fatalf("iperf3 -c %s:%d: %v\n%s", target, port, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatal(err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

// BenchmarkPortsThroughput: iperf3 through a published port against
// straight to the sandbox, from the outside namespace and from the host
// (127.0.0.1), and sandbox-to-sandbox over a pontoon bridge against a
// bridge built by hand with ip in the same host:
//
//	go test ./test/e2e -run XXX -bench PortsThroughput -benchtime 1x
func BenchmarkPortsThroughput(b *testing.B) {
	for b.Loop() {
		h := NewHost(b)
		h.P("sandbox", "create", "web", "-p", "15201:5201")
		h.P("sandbox", "create", "client")
		web := h.SandboxNS("web")
		webIP := h.IP("web", "pontoon")
		// Straight to the sandbox from outside: a route, and an accept for
		// this one address ahead of pontoon's "nothing unsolicited" drop.
		h.In(h.Outside, "ip", "route", "add", "10.88.0.0/16", "via", HostUplinkIP)
		h.In(h.NS, "nft", "insert", "rule", "inet", "pontoon", "forward", "ip", "daddr", webIP, "accept")
		// Five rounds, the pair of each comparison back to back, medians.
		s1, s2 := testutil.NewNetns(b), testutil.NewNetns(b)
		h.In(h.NS, "ip", "link", "add", "hb0", "type", "bridge")
		h.In(h.NS, "ip", "link", "set", "hb0", "up")
		for i, ns := range []string{s1, s2} {
			hv := fmt.Sprintf("hbv%d", i)
			h.In(h.NS, "ip", "link", "add", hv, "type", "veth", "peer", "name", "eth0", "netns", ns)
			h.In(h.NS, "ip", "link", "set", hv, "master", "hb0", "up")
			h.In(ns, "ip", "addr", "add", fmt.Sprintf("10.201.0.%d/24", i+2), "dev", "eth0")
			h.In(ns, "ip", "link", "set", "eth0", "up")
		}
		var outPortS, outDirectS, hostLoS, hostDirectS, pontoonBrS, handBrS []float64
		for range 5 {
			outPortS = append(outPortS, iperf3Gbps(b, h, web, h.Outside, HostUplinkIP, 15201))
			outDirectS = append(outDirectS, iperf3Gbps(b, h, web, h.Outside, webIP, 5201))
			hostLoS = append(hostLoS, iperf3Gbps(b, h, web, h.NS, "127.0.0.1", 15201))
			hostDirectS = append(hostDirectS, iperf3Gbps(b, h, web, h.NS, webIP, 5201))
			pontoonBrS = append(pontoonBrS, iperf3Gbps(b, h, web, h.SandboxNS("client"), webIP, 5201))
			handBrS = append(handBrS, iperf3Gbps(b, h, s2, s1, "10.201.0.3", 5201))
		}
		med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
		outPort, outDirect, hostLo, hostDirect, pontoonBr, handBr := med(outPortS), med(outDirectS), med(hostLoS), med(hostDirectS), med(pontoonBrS), med(handBrS)
		fmt.Printf("\niperf3, median of 5 runs of 3 s (Gbit/s)\n")
		fmt.Printf("outside → host:port %.2f   outside → sandbox %.2f   ratio %.2f\n", outPort, outDirect, outPort/outDirect)
		fmt.Printf("host → 127.0.0.1:port %.2f   host → sandbox %.2f   ratio %.2f\n", hostLo, hostDirect, hostLo/hostDirect)
		fmt.Printf("sandbox → sandbox: pontoon bridge %.2f   hand-built bridge %.2f   ratio %.2f\n", pontoonBr, handBr, pontoonBr/handBr)
		fmt.Printf("(bridge-nf-call-iptables here: %s)\n", strings.TrimSpace(h.In(h.NS, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables")))
	}
}
