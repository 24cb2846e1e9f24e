package link

import (
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// ctLab is a host namespace with conntrack on (a nat prerouting chain),
// forwarding, bridge br0 with sandboxes s1 (10.70.0.2) and s2 (10.70.0.3),
// and a client namespace (198.51.100.2) on the host's uplink
// (198.51.100.1).
type ctLab struct {
	l                  Interface
	host, client       string
	s1, s2             string
	uplink, clientAddr netip.Addr
}

func newCTLab(t *testing.T) *ctLab {
	t.Helper()
	l, host := newKernelHost(t)
	lab := &ctLab{l: l, host: host, client: testutil.NewNetns(t), s1: testutil.NewNetns(t), s2: testutil.NewNetns(t),
		uplink: netip.MustParseAddr("198.51.100.1"), clientAddr: netip.MustParseAddr("198.51.100.2")}
	if _, err := l.AddVeth(veth("ptv-s1", lab.s1, "10.70.0.2")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddVeth(veth("ptv-s2", lab.s2, "10.70.0.3")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns   string
		argv []string
	}{
		{host, []string{"ip", "link", "add", "up0", "type", "veth", "peer", "name", "wan0", "netns", lab.client}},
		{host, []string{"ip", "addr", "add", "198.51.100.1/24", "dev", "up0"}},
		{host, []string{"ip", "link", "set", "up0", "up"}},
		{host, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
		{lab.client, []string{"ip", "addr", "add", "198.51.100.2/24", "dev", "wan0"}},
		{lab.client, []string{"ip", "link", "set", "wan0", "up"}},
		{lab.client, []string{"ip", "route", "add", "10.70.0.0/24", "via", "198.51.100.1"}},
	} {
		if out, err := run(t, c.ns, c.argv...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c.argv, " "), err, out)
		}
	}
	// A ct expression turns conntrack on in the namespace (a nat chain
	// alone does not); DNAT rules come later.
	lab.nft(t, `table ip t {
	chain pre { type nat hook prerouting priority dstnat; policy accept; }
	chain track { type filter hook prerouting priority 0; policy accept; ct state new counter; }
}`)
	// Until the new link has carrier its queue drops packets: wait for it.
	if err := ping(t, lab.client, "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	return lab
}

func (lab *ctLab) nft(t *testing.T, ruleset string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(ruleset+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, lab.host, "nft", "-f", f); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
}

// udp sends one datagram from the namespace ns, from src:sport to dst.
func (lab *ctLab) udp(t *testing.T, ns string, src netip.AddrPort, dst string) {
	t.Helper()
	if err := testutil.InNetns(t, ns, func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(src))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteTo([]byte("hi"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		return err
	}); err != nil {
		t.Fatalf("udp %s → %s: %v", src, dst, err)
	}
}

// table returns the host namespace's conntrack entries as the kernel
// prints them (/proc/net/nf_conntrack), one a line: an account of the
// table independent of the parser under test.
func (lab *ctLab) table(t *testing.T) []string {
	t.Helper()
	var data []byte
	if err := testutil.InNetns(t, lab.host, func() (err error) {
		data, err = os.ReadFile("/proc/thread-self/net/nf_conntrack")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// flow is one entry to look for: protocol and words its line has.
type flow struct {
	name  string
	proto string
	words []string
}

func (f flow) in(lines []string) bool {
	for _, l := range lines {
		fs := strings.Fields(l)
		if len(fs) < 3 || fs[2] != f.proto {
			continue
		}
		ok := true
		for _, w := range f.words {
			ok = ok && strings.Contains(" "+l+" ", " "+w+" ")
		}
		if ok {
			return true
		}
	}
	return false
}

func TestKernelDeleteConntrack(t *testing.T) {
	lab := newCTLab(t)
	cl := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(lab.clientAddr, port) }

	// H reaches :5090 before a mapping exists: an entry to the host itself.
	lab.udp(t, lab.client, cl(41006), "198.51.100.1:5090")
	lab.nft(t, `add rule ip t pre udp dport 5090 dnat to 10.70.0.2
add rule ip t pre udp dport 6000-6002 dnat to 10.70.0.3
add rule ip t pre sctp dport 5093 dnat to 10.70.0.2`)
	lab.udp(t, lab.client, cl(41000), "198.51.100.1:5090")                            // A → s1
	lab.udp(t, lab.client, cl(41001), "198.51.100.1:5091")                            // B → host
	lab.udp(t, lab.client, cl(41004), "10.70.0.1:5091")                               // E → host, other address
	lab.udp(t, lab.client, cl(41002), "198.51.100.1:6001")                            // C → s2 (range)
	lab.udp(t, lab.client, cl(41003), "198.51.100.1:6003")                            // D → host
	lab.udp(t, lab.client, cl(41009), "198.51.100.1:5093")                            // R → host (udp, SCTP's port)
	for _, s := range []struct{ sport, dport uint16 }{{41007, 5093}, {41008, 5094}} { // P → s1, Q → host
		if err := testutil.SendSCTP(t, lab.client, lab.clientAddr, lab.uplink, testutil.SCTPInit(s.sport, s.dport, 7)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run(t, lab.client, "ping", "-c1", "-W1", "10.70.0.2"); err != nil { // F → s1, icmp
		t.Fatalf("ping s1: %v\n%s", err, out)
	}
	lab.udp(t, lab.s2, netip.MustParseAddrPort("10.70.0.3:7000"), "198.51.100.2:7000") // G from s2

	A := flow{"A", "udp", []string{"sport=41000", "dport=5090", "src=10.70.0.2"}}
	B := flow{"B", "udp", []string{"sport=41001", "dst=198.51.100.1", "dport=5091"}}
	C := flow{"C", "udp", []string{"sport=41002", "dport=6001", "src=10.70.0.3"}}
	D := flow{"D", "udp", []string{"sport=41003", "dport=6003"}}
	E := flow{"E", "udp", []string{"sport=41004", "dst=10.70.0.1", "dport=5091"}}
	F := flow{"F", "icmp", []string{"src=198.51.100.2", "dst=10.70.0.2"}}
	G := flow{"G", "udp", []string{"src=10.70.0.3", "sport=7000", "dport=7000"}}
	H := flow{"H", "udp", []string{"sport=41006", "dport=5090", "src=198.51.100.1"}}
	P := flow{"P", "sctp", []string{"sport=41007", "dport=5093", "src=10.70.0.2"}}
	Q := flow{"Q", "sctp", []string{"sport=41008", "dport=5094"}}
	R := flow{"R", "udp", []string{"sport=41009", "dport=5093"}}
	all := []flow{A, B, C, D, E, F, G, H, P, Q, R}
	gone := map[string]bool{}
	check := func(step string) {
		t.Helper()
		lines := lab.table(t)
		for _, f := range all {
			if got := f.in(lines); got == gone[f.name] {
				t.Errorf("%s: entry %s present=%v, want %v; table:\n%s", step, f.name, got, !gone[f.name], strings.Join(lines, "\n"))
			}
		}
	}
	check("traffic") // every entry is there (SCTP too: its checksum passed)

	del := func(step string, want int, fs ...ConntrackFilter) {
		t.Helper()
		n, err := lab.l.DeleteConntrack(fs)
		if err != nil || n != want {
			t.Fatalf("%s: DeleteConntrack = %d, %v; want %d deleted", step, n, err, want)
		}
	}
	// Invalid filters are refused and delete nothing.
	for _, bad := range []ConntrackFilter{{}, {OrigDstPort: 5090}, {Proto: "icmp"}, {Proto: "udp", OrigDstPort: 10, OrigDstPortEnd: 5},
		{KeepReplySrc: []netip.Addr{netip.MustParseAddr("10.70.0.2")}}, {OrigSrc: netip.MustParseAddr("10.70.0.2"), ReplySrc: netip.MustParseAddr("fd00::1")}} {
		if n, err := lab.l.DeleteConntrack([]ConntrackFilter{{Proto: "udp", OrigDstPort: 6003}, bad}); err == nil || n != 0 {
			t.Errorf("DeleteConntrack(%+v) = %d, %v; want an error", bad, n, err)
		}
	}
	check("invalid filters")

	del("udp to 198.51.100.1:5091", 1, ConntrackFilter{Proto: "udp", OrigDst: lab.uplink, OrigDstPort: 5091})
	gone["B"] = true
	check("udp to 198.51.100.1:5091")

	del("udp 6000-6002", 1, ConntrackFilter{Proto: "udp", OrigDstPort: 6000, OrigDstPortEnd: 6002})
	gone["C"] = true
	check("udp 6000-6002")

	del("sctp 5093", 1, ConntrackFilter{Proto: "sctp", OrigDstPort: 5093})
	gone["P"] = true
	check("sctp 5093")

	keep := netip.MustParseAddr("10.70.0.2")
	del("udp 5090 except to s1", 1, ConntrackFilter{Proto: "udp", OrigDstPort: 5090, KeepReplySrc: []netip.Addr{keep}})
	gone["H"] = true
	check("udp 5090 except to s1")

	// Two filters, one dump: everything s1 answers (udp and icmp) and
	// everything s2 started.
	del("reply from s1, from s2", 3, ConntrackFilter{ReplySrc: keep}, ConntrackFilter{OrigSrc: netip.MustParseAddr("10.70.0.3")})
	gone["A"], gone["F"], gone["G"] = true, true, true
	check("reply from s1, from s2")

	del("nothing left to match", 0, ConntrackFilter{ReplySrc: keep})
}

// A client that keeps sending keeps a stale entry alive; once deleted, the
// next datagram is NATed by the rules in force.
func TestKernelConntrackStaleUDP(t *testing.T) {
	lab := newCTLab(t)
	var s2 net.PacketConn
	for _, ns := range []string{lab.s1, lab.s2} {
		var pc net.PacketConn
		if err := testutil.InNetns(t, ns, func() (err error) {
			pc, err = net.ListenPacket("udp4", "0.0.0.0:5090")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		s2 = pc
	}
	lab.nft(t, "add rule ip t pre udp dport 5090 dnat to 10.70.0.2")
	src := netip.AddrPortFrom(lab.clientAddr, 41000)
	lab.udp(t, lab.client, src, "198.51.100.1:5090")
	lab.nft(t, "flush chain ip t pre\nadd rule ip t pre udp dport 5090 dnat to 10.70.0.3")
	// The rule changed, the entry did not: s2 hears nothing.
	lab.udp(t, lab.client, src, "198.51.100.1:5090")
	buf := make([]byte, 100)
	_ = s2.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := s2.ReadFrom(buf); err == nil {
		t.Fatal("s2 got the datagram while the old entry steers it to s1: the kernel forgets NAT decisions, this test proves nothing")
	}
	if n, err := lab.l.DeleteConntrack([]ConntrackFilter{{Proto: "udp", OrigDstPort: 5090, KeepReplySrc: []netip.Addr{netip.MustParseAddr("10.70.0.3")}}}); err != nil || n != 1 {
		t.Fatalf("DeleteConntrack = %d, %v", n, err)
	}
	lab.udp(t, lab.client, src, "198.51.100.1:5090")
	_ = s2.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, from, err := s2.ReadFrom(buf)
	if err != nil || from.String() != src.String() {
		t.Fatalf("s2 after the delete: from %v, %v; want a datagram from %s", from, err, src)
	}
}

// BenchmarkDeleteConntrack measures one DeleteConntrack call, which reads
// the whole table once, with 0, 1000 and 10000 entries present: "miss"
// matches none (what a publish pays when nothing is stale), "hit" deletes
// one (re-created between calls, outside the timer). The entries are made
// with netlink (IPCTNL_MSG_CT_NEW), not traffic, so the table holds
// exactly that many.
//
//	go test -run '^$' -bench DeleteConntrack ./internal/link/
func BenchmarkDeleteConntrack(b *testing.B) {
	for _, size := range []int{0, 1000, 10000} {
		host := testutil.NewNetns(b)
		var l Interface
		var ct *netlink.Handle
		if err := testutil.InNetns(b, host, func() (err error) {
			if l, err = New(slog.New(slog.DiscardHandler)); err != nil {
				return err
			}
			ct, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(ct.Close)
		add := func(src net.IP, sport, dport uint16) {
			b.Helper()
			f := &netlink.ConntrackFlow{FamilyType: netlink.FAMILY_V4, TimeOut: 300,
				Forward: netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: src, DstIP: net.IP{198, 51, 100, 1}, SrcPort: sport, DstPort: dport},
				Reverse: netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: net.IP{10, 70, 0, 2}, DstIP: src, SrcPort: dport, DstPort: sport}}
			if err := ct.ConntrackCreate(netlink.ConntrackTable, netlink.FAMILY_V4, f); err != nil {
				b.Fatalf("create entry %s:%d → :%d: %v", src, sport, dport, err)
			}
		}
		for i := range size {
			add(net.IP{203, 0, 113, byte(1 + i/60000)}, uint16(1024+i%60000), 53)
		}
		miss := []ConntrackFilter{{Proto: "udp", OrigDstPort: 5090, KeepReplySrc: []netip.Addr{netip.MustParseAddr("10.70.0.9")}}}
		b.Run(fmt.Sprintf("entries=%d/miss", size), func(b *testing.B) {
			for b.Loop() {
				if n, err := l.DeleteConntrack(miss); err != nil || n != 0 {
					b.Fatalf("DeleteConntrack = %d, %v", n, err)
				}
			}
		})
		b.Run(fmt.Sprintf("entries=%d/hit", size), func(b *testing.B) {
			stale := net.IP{203, 0, 113, 200}
			for b.Loop() {
				b.StopTimer()
				add(stale, 41000, 5090)
				b.StartTimer()
				if n, err := l.DeleteConntrack(miss); err != nil || n != 1 {
					b.Fatalf("DeleteConntrack = %d, %v", n, err)
				}
			}
		})
	}
}
