package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pontoon/internal/testutil"
)

// Stale connection tracking (issue 10, part 1): a LAN client that keeps
// sending from one source port must reach whoever publishes the port now,
// not whoever did when its flow began — nor the host itself, when its
// first datagram came before the mapping.

// serveUDPAs is a UDP echo server that answers "NAME PAYLOAD" and records
// who asked.
func serveUDPAs(t *testing.T, ns, addr, name string) *udpEcho {
	t.Helper()
	var pc net.PacketConn
	if err := testutil.InNetns(t, ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	u := &udpEcho{}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.peers = append(u.peers, from.String())
			u.mu.Unlock()
			_, _ = pc.WriteTo([]byte(name+" "+string(buf[:n])), from)
		}
	}()
	return u
}

func (u *udpEcho) saw(peer string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.peers {
		if p == peer {
			return true
		}
	}
	return false
}

// udpFlow is a LAN client (203.0.113.2, outside namespace) sending a
// datagram every 50 ms from one source port to one host port — a client
// that keeps its socket, as DNS, syslog, game or VoIP clients do. It sends
// at most for 60 s and stops with the test.
type udpFlow struct {
	mu      sync.Mutex
	replies []string
}

const flowSrc = LANClientIP

func startUDPFlow(t *testing.T, h *Host, sport uint16, dst string) *udpFlow {
	t.Helper()
	var c *net.UDPConn
	if err := testutil.InNetns(t, h.Outside, func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(flowSrc), Port: int(sport)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst))
	f := &udpFlow{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	t.Cleanup(func() { close(done); c.Close(); wg.Wait() })
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			f.mu.Lock()
			f.replies = append(f.replies, string(buf[:n]))
			f.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 1200; i++ {
			_, _ = c.WriteTo([]byte(fmt.Sprint(i)), to)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return f
}

// mark returns how many replies came so far.
func (f *udpFlow) mark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.replies)
}

// waitFor waits up to 5 s for a reply from name after mark m, and returns
// the answerers heard since m.
func (f *udpFlow) waitFor(name string, m int) (bool, []string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		var from []string
		ok := false
		for _, r := range f.replies[m:] {
			who, _, _ := strings.Cut(r, " ")
			if len(from) == 0 || from[len(from)-1] != who {
				from = append(from, who)
			}
			ok = ok || who == name
		}
		f.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return ok, from
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quiet checks that no reply comes for d.
func (f *udpFlow) quiet(d time.Duration) []string {
	m := f.mark()
	time.Sleep(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.replies[m:]...)
}

// sctpFlow sends an SCTP INIT every 50 ms from 203.0.113.2:sport to the
// host's port (at most for 60 s), as an SCTP client retries an
// association whose INIT got no answer.
func startSCTPFlow(t *testing.T, h *Host, sport, dport uint16) {
	t.Helper()
	fd := -1
	if err := testutil.InNetns(t, h.Outside, func() (err error) {
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: netip.MustParseAddr(flowSrc).As4()})
	}); err != nil {
		t.Fatalf("raw SCTP socket in the outside namespace: %v", err)
	}
	pkt := testutil.SCTPInit(sport, dport, 0x5eed)
	to := &unix.SockaddrInet4{Addr: netip.MustParseAddr(HostUplinkIP).As4()}
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped; unix.Close(fd) })
	go func() {
		defer close(stopped)
		for i := 0; i < 1200; i++ {
			_ = unix.Sendto(fd, pkt, 0, to)
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

// seesSCTP waits up to 5 s for an INIT from src on l.
func seesSCTP(l *testutil.SCTPListener, src string) (testutil.SCTPPacket, bool) {
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-l.Packets():
			if p.Src.String() == src {
				return p, true
			}
		case <-deadline:
			return testutil.SCTPPacket{}, false
		}
	}
}

func TestConntrackStaleFlows(t *testing.T) {
	h := NewHost(t)
	uplink := HostUplinkIP

	// The report: v1 answers; v1 goes; v2 publishes the same
	// port; the same client flow must now reach v2.
	t.Run("udp sandbox rm", func(t *testing.T) {
		h.P("sandbox", "create", "v1", "-p", "5090:5090/udp")
		serveUDPAs(t, h.SandboxNS("v1"), "0.0.0.0:5090", "v1")
		flow := startUDPFlow(t, h, 41000, uplink+":5090")
		if ok, from := flow.waitFor("v1", 0); !ok {
			t.Fatalf("the LAN client never heard v1 (heard %v)", from)
		}
		h.P("sandbox", "rm", "v1")
		if r := flow.quiet(300 * time.Millisecond); len(r) != 0 {
			t.Fatalf("answers with nobody publishing 5090/udp: %q", r)
		}
		m := flow.mark()
		h.P("sandbox", "create", "v2", "-p", "5090:5090/udp")
		v2 := serveUDPAs(t, h.SandboxNS("v2"), "0.0.0.0:5090", "v2")
		if ok, from := flow.waitFor("v2", m); !ok {
			t.Fatalf("the client sending from port 41000 did not reach v2 within 5 s (heard %v): a stale conntrack entry still steers it", from)
		}
		if want := flowSrc + ":41000"; !v2.saw(want) {
			t.Fatalf("v2 saw %v, want %s (the client's own address and port)", v2.Peers(), want)
		}
	})

	// The same through a detach (the endpoint is torn down in the
	// background) and a connect of another sandbox.
	t.Run("udp network disconnect", func(t *testing.T) {
		h.P("sandbox", "create", "d1", "-p", "5092:5092/udp")
		serveUDPAs(t, h.SandboxNS("d1"), "0.0.0.0:5092", "d1")
		flow := startUDPFlow(t, h, 41002, uplink+":5092")
		if ok, from := flow.waitFor("d1", 0); !ok {
			t.Fatalf("never heard d1 (heard %v)", from)
		}
		h.P("network", "disconnect", "pontoon", "d1")
		h.P("sandbox", "create", "d2", "--network", "none")
		d2 := serveUDPAs(t, h.SandboxNS("d2"), "0.0.0.0:5092", "d2")
		m := flow.mark()
		h.P("network", "connect", "pontoon", "d2", "-p", "5092:5092/udp")
		if ok, from := flow.waitFor("d2", m); !ok {
			t.Fatalf("the client did not reach d2 after d1's detach (heard %v)", from)
		}
		if !d2.saw(flowSrc + ":41002") {
			t.Fatalf("d2 saw %v", d2.Peers())
		}
	})

	// The datagrams came first: their entry sends them to the host, where
	// nothing listens. Publishing the port must take the flow over.
	t.Run("udp before the mapping", func(t *testing.T) {
		flow := startUDPFlow(t, h, 41001, uplink+":5091")
		if r := flow.quiet(300 * time.Millisecond); len(r) != 0 {
			t.Fatalf("answers before anything publishes 5091/udp: %q", r)
		}
		h.P("sandbox", "create", "w", "--network", "none")
		w := serveUDPAs(t, h.SandboxNS("w"), "0.0.0.0:5091", "w")
		h.P("network", "connect", "pontoon", "w", "-p", "5091:5091/udp")
		if ok, from := flow.waitFor("w", 0); !ok {
			t.Fatalf("a client whose datagrams came before the mapping never reached w (heard %v)", from)
		}
		if !w.saw(flowSrc + ":41001") {
			t.Fatalf("w saw %v", w.Peers())
		}
	})

	// A range on one host address: every port of it, on that address.
	t.Run("udp range on a host address", func(t *testing.T) {
		spec := uplink + ":6000-6002:6000-6002/udp"
		h.P("sandbox", "create", "r1", "-p", spec)
		serveUDPAs(t, h.SandboxNS("r1"), "0.0.0.0:6002", "r1")
		flow := startUDPFlow(t, h, 41003, uplink+":6002")
		if ok, from := flow.waitFor("r1", 0); !ok {
			t.Fatalf("never heard r1 (heard %v)", from)
		}
		h.P("sandbox", "rm", "r1")
		m := flow.mark()
		h.P("sandbox", "create", "r2", "-p", spec)
		serveUDPAs(t, h.SandboxNS("r2"), "0.0.0.0:6002", "r2")
		if ok, from := flow.waitFor("r2", m); !ok {
			t.Fatalf("the client of port 6002 (range 6000-6002 on %s) did not reach r2 (heard %v)", uplink, from)
		}
	})

	// SCTP. This kernel may have no SCTP sockets; netfilter tracks and
	// NATs SCTP regardless, so the client sends INIT chunks through a raw
	// socket and the sandboxes read them with raw sockets.
	if ok, why := testutil.SCTPAvailable(); !ok {
		t.Logf("no SCTP sockets (%s): raw INIT chunks stand in for an SCTP client", why)
	}
	t.Run("sctp sandbox rm", func(t *testing.T) {
		from := flowSrc + ":41004"
		h.P("sandbox", "create", "s1", "-p", "5093:5093/sctp")
		l1 := testutil.ListenSCTP(t, h.SandboxNS("s1"))
		startSCTPFlow(t, h, 41004, 5093)
		p, ok := seesSCTP(l1, from)
		if !ok {
			t.Fatalf("s1 never saw the client's INIT from %s", from)
		}
		if p.Dst.Port() != 5093 || p.Chunk != 1 || p.Tag != 0x5eed || !p.ChecksumVerified {
			t.Fatalf("s1 saw %+v: not the client's INIT intact", p)
		}
		h.P("sandbox", "rm", "s1")
		h.P("sandbox", "create", "s2", "-p", "5093:5093/sctp")
		l2 := testutil.ListenSCTP(t, h.SandboxNS("s2"))
		if _, ok := seesSCTP(l2, from); !ok {
			t.Fatalf("the SCTP client sending from %s did not reach s2 within 5 s: a stale conntrack entry still steers it", from)
		}
	})
	t.Run("sctp before the mapping", func(t *testing.T) {
		from := flowSrc + ":41005"
		startSCTPFlow(t, h, 41005, 5094)
		time.Sleep(300 * time.Millisecond)
		h.P("sandbox", "create", "s3", "--network", "none")
		l3 := testutil.ListenSCTP(t, h.SandboxNS("s3"))
		h.P("network", "connect", "pontoon", "s3", "-p", "5094:5094/sctp")
		if _, ok := seesSCTP(l3, from); !ok {
			t.Fatalf("an SCTP client whose INITs came before the mapping never reached s3")
		}
	})

	// The firewall table went away while the daemon was down, and with
	// conntrack still on (another firewall uses it, as Docker's does) a
	// client's first datagrams made an entry to the host itself. The
	// daemon's start rewrites the table, and the flow must follow.
	t.Run("udp after the table was restored", func(t *testing.T) {
		h.P("sandbox", "create", "m1", "-p", "5095:5095/udp")
		m1 := serveUDPAs(t, h.SandboxNS("m1"), "0.0.0.0:5095", "m1")
		h.Stop()
		h.In(h.NS, "nft", "add table ip other; add chain ip other pre { type filter hook prerouting priority 0; policy accept; ct state new counter; }")
		h.In(h.NS, "nft", "delete table inet pontoon")
		flow := startUDPFlow(t, h, 41006, uplink+":5095")
		if r := flow.quiet(300 * time.Millisecond); len(r) != 0 {
			t.Fatalf("answers with pontoon's table gone: %q", r)
		}
		if out := h.In(h.NS, "cat", "/proc/net/nf_conntrack"); !strings.Contains(out, "sport=41006 dport=5095") {
			t.Fatalf("no conntrack entry for the client's flow: the test proves nothing\n%s", out)
		}
		h.Start()
		if ok, from := flow.waitFor("m1", 0); !ok {
			t.Fatalf("the client never reached m1 after the daemon restored its table (heard %v)", from)
		}
		if !m1.saw(flowSrc + ":41006") {
			t.Fatalf("m1 saw %v", m1.Peers())
		}
	})
}
