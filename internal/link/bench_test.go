package link

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// benchHost is a throwaway host namespace with bridge br0 (10.80.0.1/16) and
// the real Interface bound to it.
func benchHost(b *testing.B) Interface {
	b.Helper()
	host := testutil.NewNetns(b)
	var l Interface
	if err := testutil.InNetns(b, host, func() (err error) {
		l, err = New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	if _, err := l.EnsureBridge(Bridge{Name: "br0", Gateway: netip.MustParsePrefix("10.80.0.1/16"), MTU: 1500}); err != nil {
		b.Fatal(err)
	}
	return l
}

// benchSandboxes is how many sandbox namespaces the veths are spread over.
var benchSandboxes = 16

// benchVeth is the i-th veth of a benchmark: sandboxes take turns, each
// getting eth0, eth1, … so that the namespaces are reused.
func benchVeth(i int, sandboxes []string) Veth {
	ip := netip.AddrFrom4([4]byte{10, 80, byte(1 + i/250), byte(1 + i%250)})
	return Veth{
		HostName: fmt.Sprintf("ptv-b%d", i), Bridge: "br0", MTU: 1500,
		Netns: sandboxes[i%len(sandboxes)], PeerName: fmt.Sprintf("eth%d", i/len(sandboxes)),
		MAC: net.HardwareAddr{2, 0x42, 10, 80, ip.As4()[2], ip.As4()[3]}, Addr: netip.PrefixFrom(ip, 16),
		Gateway: netip.MustParseAddr("10.80.0.1"), DefaultRoute: true,
	}
}

// BenchmarkAddVeth measures one attach's kernel work: veth pair with the peer
// in the sandbox, address, up, default route, host end on the bridge. It
// reports the median and 99th percentile besides the mean. The veths share
// one bridge, which takes at most 1023 ports: -benchtime up to 1000x.
//
//	go test -run '^$' -bench AddVeth -benchtime 2000x ./internal/link/
func BenchmarkAddVeth(b *testing.B) {
	for _, mode := range []struct {
		name  string
		apply func(*Veth)
	}{
		{"default", func(*Veth) {}},
		{"isolated", func(v *Veth) { v.Isolated = true }},
		{"table", func(v *Veth) { v.DefaultRoute, v.Table = false, 101 }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			if b.N > 1000 {
				b.Fatalf("-benchtime %dx: a bridge takes at most 1023 ports", b.N)
			}
			l := benchHost(b)
			sandboxes := make([]string, benchSandboxes)
			for i := range sandboxes {
				sandboxes[i] = testutil.NewNetns(b)
			}
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				v := benchVeth(i, sandboxes)
				mode.apply(&v)
				if v.Table != 0 {
					v.Table += i / len(sandboxes)
				}
				start := time.Now()
				if _, err := l.AddVeth(v); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkDeleteVeths50 deletes 50 veths per op, one RTM_DELLINK each
// versus one group delete (DeleteVeths).
//
//	go test -run '^$' -bench DeleteVeths50 -benchtime 5x ./internal/link/
func BenchmarkDeleteVeths50(b *testing.B) {
	const batch = 50
	for _, mode := range []string{"one-by-one", "group"} {
		b.Run(mode, func(b *testing.B) {
			l := benchHost(b)
			sandboxes := make([]string, 10)
			for i := range sandboxes {
				sandboxes[i] = testutil.NewNetns(b)
			}
			nl := l.(*netlinkLinks)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				names := make([]string, batch)
				for j := range batch {
					v := benchVeth(i*batch+j, sandboxes)
					if _, err := l.AddVeth(v); err != nil {
						b.Fatal(err)
					}
					names[j] = v.HostName
				}
				b.StartTimer()
				if mode == "group" {
					if err := l.DeleteVeths(names); err != nil {
						b.Fatal(err)
					}
				} else {
					for _, n := range names {
						if err := nl.deleteByName(n); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			b.StopTimer()
			if ls, _ := l.ListLinks("ptv-"); len(ls) != 0 {
				b.Fatalf("%d veths left", len(ls))
			}
		})
	}
}

// BenchmarkDeleteStall measures what a group delete of N veths costs an
// attach running beside it: the kernel holds RTNL while it unregisters the
// group, and every other rtnetlink request (an attach makes six) waits.
// It reports the group delete's time and the longest wait of a one-request
// probe (set the bridge's MTU to what it is) sent every 0.2 ms meanwhile.
//
//	go test -run '^$' -bench DeleteStall -benchtime 3x ./internal/link/
func BenchmarkDeleteStall(b *testing.B) {
	for _, n := range []int{16, 32, 64, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			l := benchHost(b)
			nl := l.(*netlinkLinks)
			sandboxes := make([]string, benchSandboxes)
			for i := range sandboxes {
				sandboxes[i] = testutil.NewNetns(b)
			}
			var worst, total time.Duration
			for i := range b.N {
				names := make([]string, n)
				for j := range n {
					v := benchVeth(i*n+j, sandboxes)
					v.PeerName = fmt.Sprintf("e%d", i*n+j)
					if _, err := l.AddVeth(v); err != nil {
						b.Fatal(err)
					}
					names[j] = v.HostName
				}
				br, err := nl.h.LinkByName("br0")
				if err != nil {
					b.Fatal(err)
				}
				stop := make(chan struct{})
				probed := make(chan time.Duration)
				go func() {
					var max time.Duration
					for {
						select {
						case <-stop:
							probed <- max
							return
						default:
						}
						t := time.Now()
						_ = nl.h.LinkSetMTU(br, 1500)
						if d := time.Since(t); d > max {
							max = d
						}
						time.Sleep(200 * time.Microsecond)
					}
				}()
				time.Sleep(5 * time.Millisecond)
				t := time.Now()
				if err := l.DeleteVeths(names); err != nil {
					b.Fatal(err)
				}
				total += time.Since(t)
				time.Sleep(5 * time.Millisecond)
				close(stop)
				worst = max(worst, <-probed)
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "delete-ms")
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-probe-ms")
		})
	}
}
