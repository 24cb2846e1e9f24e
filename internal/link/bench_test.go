package link

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"pontoon/internal/testutil"
)

// benchHost is a throwaway host namespace with bridge br0 (10.80.0.1/16) and
// the real Interface bound to it.
func benchHost(b *testing.B) Interface {
	b.Helper()
	l, _ := benchHostAt(b)
	return l
}

// benchHostAt is benchHost, and the path of the host namespace.
func benchHostAt(b *testing.B) (Interface, string) {
	b.Helper()
	host := testutil.NewNetns(b)
	var l Interface
	if err := testutil.InNetns(b, host, func() (err error) {
		l, err = New(slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	if _, err := l.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{netip.MustParsePrefix("10.80.0.1/16")}, MTU: 1500}); err != nil {
		b.Fatal(err)
	}
	return l, host
}

// benchSandboxes is how many sandbox namespaces the veths are spread over.
var benchSandboxes = 16

// benchVeth is the i-th veth of a benchmark: sandboxes take turns, each
// getting eth0, eth1, … so that the namespaces are reused.
func benchVeth(i int, sandboxes []string) Veth {
	ip := netip.AddrFrom4([4]byte{10, 80, byte(1 + i/250), byte(1 + i%250)})
	return Veth{HostName: fmt.Sprintf("ptv-b%d", i), Bridge: "br0", Iface: Iface{MTU: 1500, Netns: sandboxes[i%len(sandboxes)], IfName: fmt.Sprintf("eth%d", i/len(sandboxes)), MAC: net.HardwareAddr{2, 0x42, 10, 80, ip.As4()[2], ip.As4()[3]}, Addrs: []Address{{Addr: netip.PrefixFrom(ip, 16), Gateway: netip.MustParseAddr("10.80.0.1")}}, DefaultRoute: true}}
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
					v.IfName = fmt.Sprintf("e%d", i*n+j)
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

// BenchmarkAddVethDualStack compares an IPv4-only attach with a
// dual-stack one (IPv6 address and link-local address with IFA_F_NODAD,
// IPv6 default route, accept_ra and autoconf off in the sandbox), with a
// dual-stack one whose IPv6 addresses go through duplicate address
// detection (dad), and with a dual-stack one on a host that drops MLD
// reports from bridge ports (nomld: one nft rule in the bridge family).
// Besides AddVeth's time (p50-ns, p99-ns) it reports the time from the
// start of AddVeth until every address of the peer is usable — none
// tentative (usable-p50-ms, usable-p99-ms) — polled every 0.5 ms. The
// dad mode waits 1–2 s per attach: run it with a small -benchtime.
//
// Each IPv6 endpoint sends two or three MLD reports as it comes up (one
// more for its link-local address), and with multicast snooping off the
// bridge floods each to every port: the dual-stack attach grows with the
// number of IPv6 sandboxes on the bridge, unless the reports are dropped
// (nomld). No one listens to them: without snooping and a multicast
// router the bridge floods multicast to every port anyway.
//
//	go test -run '^$' -bench 'AddVethDualStack/(v4|dual|dual-nomld)$' -benchtime 600x ./internal/link/
//	go test -run '^$' -bench 'AddVethDualStack/dual-dad' -benchtime 20x ./internal/link/
func BenchmarkAddVethDualStack(b *testing.B) {
	for _, mode := range []struct {
		name             string
		dual, dad, nomld bool
	}{{"v4", false, false, false}, {"dual", true, false, false}, {"dual-dad", true, true, false}, {"dual-nomld", true, false, true}} {
		b.Run(mode.name, func(b *testing.B) {
			if b.N > 1000 {
				b.Fatalf("-benchtime %dx: a bridge takes at most 1023 ports", b.N)
			}
			l, host := benchHostAt(b)
			if mode.nomld {
				if err := testutil.InNetns(b, host, func() error {
					out, err := exec.Command("nft", "add table bridge bench; add chain bridge bench pre { type filter hook prerouting priority -300; }; "+
						"add rule bridge bench pre icmpv6 type { mld-listener-report, mld2-listener-report } drop").CombinedOutput()
					if err != nil {
						return fmt.Errorf("nft: %v: %s", err, out)
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			gw6 := netip.MustParsePrefix("fd00:80::1/64")
			if _, err := l.EnsureBridge(Bridge{Name: "br0", Gateways: []netip.Prefix{netip.MustParsePrefix("10.80.0.1/16"), gw6}, MTU: 1500}); err != nil {
				b.Fatal(err)
			}
			l.(*netlinkLinks).dad = mode.dad
			sandboxes := make([]string, benchSandboxes)
			handles := make([]*netlink.Handle, benchSandboxes)
			for i := range sandboxes {
				sandboxes[i] = testutil.NewNetns(b)
				h, err := handleAtPath(sandboxes[i], 0)
				if err != nil {
					b.Fatal(err)
				}
				defer h.Close()
				handles[i] = h
			}
			var times, usable []time.Duration
			b.ResetTimer()
			for i := range b.N {
				v := benchVeth(i, sandboxes)
				if mode.dual {
					b6 := gw6.Addr().As16()
					b6[14], b6[15] = byte((i+2)>>8), byte(i+2)
					v.Addrs = append(v.Addrs, Address{Addr: netip.PrefixFrom(netip.AddrFrom16(b6), 64), Gateway: gw6.Addr()})
				}
				want := len(v.addrs())
				start := time.Now()
				if _, err := l.AddVeth(v); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
				h := handles[i%len(handles)]
				for try := 0; ; try++ {
					if n, tentative := peerAddrCount(h, v.IfName); n == want && !tentative {
						break
					}
					if try == 20000 {
						b.Fatalf("%s: addresses not usable after 10 s", v.IfName)
					}
					time.Sleep(500 * time.Microsecond)
				}
				usable = append(usable, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(times)
			slices.Sort(usable)
			b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(usable[len(usable)/2].Microseconds())/1000, "usable-p50-ms")
			b.ReportMetric(float64(usable[len(usable)*99/100].Microseconds())/1000, "usable-p99-ms")
		})
	}
}

// peerAddrCount counts a link's addresses (both families) and says
// whether one of them is tentative.
func peerAddrCount(h *netlink.Handle, name string) (n int, tentative bool) {
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, false
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_ALL)
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			tentative = true
		}
	}
	return len(addrs), tentative
}

// BenchmarkNoAutoconf measures what turning off router advertisements
// costs an IPv6 attach: two /proc/sys writes on a thread inside the
// sandbox (which configureVeth enters anyway).
//
//	go test -run '^$' -bench NoAutoconf ./internal/link/
func BenchmarkNoAutoconf(b *testing.B) {
	ns := testutil.NewNetns(b)
	err := testutil.InNetns(b, ns, func() error {
		if out, err := exec.Command("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1").CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for b.Loop() {
			if err := noAutoconf("eth0"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
