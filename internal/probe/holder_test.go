package probe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// The main thread stays with the main goroutine, outside every test
// namespace. Otherwise a locked goroutine that enters one can run on it and
// leave it there for good (testutil.InNetns discards its thread, and the
// runtime parks the main thread instead), and /proc/net, which follows the
// main thread, would then show the test namespace: the tests below could
// not tell /proc/net from /proc/thread-self/net.
func init() { runtime.LockOSThread() }

func TestParseSockets(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the sample tables below are a little-endian host's")
	}
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41235 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51234 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00006564A8C0:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51235 1 0000000000000000 100 0 0 10 0
   2: 000080FE00000000FF0200000100005E:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51236 1 0000000000000000 100 0 0 10 0
`
	got, err := ParseSockets(strings.NewReader(tcp), "tcp")
	if err != nil {
		t.Fatal(err)
	}
	s6, err := ParseSockets(strings.NewReader(tcp6), "tcp")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, s6...)
	want := []Socket{
		{"tcp", netip.MustParseAddrPort("127.0.0.1:8080"), 10, 41235},
		{"tcp", netip.MustParseAddrPort("127.0.0.1:8080"), 1, 0},
		{"tcp", netip.MustParseAddrPort("[::]:8080"), 10, 51234},
		{"tcp", netip.MustParseAddrPort("[::ffff:192.168.100.101]:53"), 10, 51235},
		{"tcp", netip.MustParseAddrPort("[fe80::2ff:5e00:1]:80"), 10, 51236},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d sockets, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("socket %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := ParseSockets(strings.NewReader("h\n 0: 0100007F 00000000:0000 0A 0:0 0:0 0 0 0 1 1\n"), "tcp"); err == nil {
		t.Error("an address without a port parsed")
	}
}

func TestRank(t *testing.T) {
	sock := func(proto, ap string, st uint8) Socket {
		return Socket{Proto: proto, Local: netip.MustParseAddrPort(ap), State: st, Inode: 1}
	}
	any4, any6, none := netip.IPv4Unspecified(), netip.IPv6Unspecified(), netip.Addr{}
	a4 := netip.MustParseAddr("198.51.100.1")
	a6 := netip.MustParseAddr("2001:db8::1")
	for _, c := range []struct {
		s     Socket
		addr  netip.Addr
		match bool
	}{
		{sock("tcp", "[::]:80", tcpListen), any4, true}, // dual-stack [::] takes v4
		{sock("tcp", "[::]:80", tcpListen), a4, true},
		{sock("tcp", "[::]:80", tcpListen), a6, true},
		{sock("tcp", "[::]:81", tcpListen), any4, false}, // another port
		{sock("tcp", "0.0.0.0:80", tcpListen), a4, true},
		{sock("tcp", "0.0.0.0:80", tcpListen), any6, false}, // v4 wildcard does not hold v6
		{sock("tcp", "0.0.0.0:80", tcpListen), a6, false},
		{sock("tcp", "198.51.100.2:80", tcpListen), a4, false}, // another address
		{sock("tcp", "198.51.100.2:80", tcpListen), any4, true},
		{sock("tcp", "[::ffff:198.51.100.1]:80", tcpListen), a4, true},
		{sock("tcp", "[::ffff:198.51.100.1]:80", tcpListen), any6, false}, // [::] V6ONLY does not collide with v4-mapped
		{sock("tcp", "[2001:db8::1]:80", tcpListen), any6, true},
		{sock("tcp", "[2001:db8::1]:80", tcpListen), none, true},
		{sock("udp", "[fe80::1]:80", 7), netip.MustParseAddr("fe80::1%eth0"), true},
	} {
		if got := rank(c.s, c.addr, 80) >= 0; got != c.match {
			t.Errorf("socket %s %s vs bind %s:80: match %v, want %v", c.s.Proto, c.s.Local, c.addr, got, c.match)
		}
	}
	// A listener beats another socket on the port, an exact address a wildcard.
	if rank(sock("tcp", "0.0.0.0:80", tcpListen), a4, 80) <= rank(sock("tcp", "198.51.100.1:80", 1), a4, 80) {
		t.Error("a connected socket outranks a listener")
	}
	if rank(sock("tcp", "198.51.100.1:80", tcpListen), a4, 80) <= rank(sock("tcp", "0.0.0.0:80", tcpListen), a4, 80) {
		t.Error("a wildcard outranks the exact address")
	}
}

// TestHelperListener is not a test: the kernel tests below run the test
// binary as a server (another process, with its own PID) that listens
// where PONTOON_TEST_LISTEN says ("tcp6 [::]:8080"), says "ready" and
// waits for its stdin to close.
func TestHelperListener(t *testing.T) {
	spec := os.Getenv("PONTOON_TEST_LISTEN")
	if spec == "" {
		t.Skip("helper process only")
	}
	network, addr, _ := strings.Cut(spec, " ")
	var closer interface{ Close() error }
	var err error
	if strings.HasPrefix(network, "udp") {
		closer, err = net.ListenPacket(network, addr)
	} else {
		closer, err = net.Listen(network, addr)
	}
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	defer closer.Close()
	os.Stdout.WriteString("ready\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// serve starts a helper server in the namespace at ns and returns its PID.
func serve(t *testing.T, ns, network, addr string) int {
	t.Helper()
	var cmd *exec.Cmd
	var out *bufio.Reader
	if err := testutil.InNetns(t, ns, func() error {
		cmd = exec.Command(os.Args[0], "-test.run=^TestHelperListener$")
		cmd.Env = append(os.Environ(), "PONTOON_TEST_LISTEN="+network+" "+addr)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		t.Cleanup(func() {
			stdin.Close()
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
		out = bufio.NewReader(stdout)
		return nil
	}); err != nil {
		t.Fatalf("start a %s server on %s: %v", network, addr, err)
	}
	line, err := out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("%s server on %s: %q %v", network, addr, line, err)
	}
	return cmd.Process.Pid
}

// Real servers in a throwaway namespace, each a process of its own: the
// port they hold must be named with their PID and name, whichever
// family's table lists them.
func TestKernelPortHolder(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t)
	comm := filepath.Base(os.Args[0])
	if len(comm) > 15 {
		comm = comm[:15] // TASK_COMM_LEN
	}
	any4, any6 := netip.IPv4Unspecified(), netip.IPv6Unspecified()
	for _, c := range []struct {
		name    string
		network string
		listen  string
		proto   string
		bind    netip.Addr // where the daemon's bind probe fails
		local   string
	}{
		{"tcp6 only", "tcp6", "[::]:8080", "tcp", any6, "[::]:8080"},
		{"udp6 only", "udp6", "[::]:5353", "udp", any6, "[::]:5353"},
		// A dual-stack socket is listed only in tcp6, and holds v4 too.
		{"dual-stack [::] holds 0.0.0.0", "tcp", "[::]:8081", "tcp", any4, "[::]:8081"},
		{"dual-stack [::] holds a v4 address", "tcp", "[::]:8082", "tcp", netip.MustParseAddr("127.0.0.1"), "[::]:8082"},
		{"udp dual-stack", "udp", "[::]:5354", "udp", any4, "[::]:5354"},
		{"tcp4 (control)", "tcp4", "127.0.0.1:8083", "tcp", any4, "127.0.0.1:8083"},
		{"v6 address", "tcp6", "[::1]:8084", "tcp", netip.IPv6Loopback(), "[::1]:8084"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pid := serve(t, ns, c.network, c.listen)
			port := netip.MustParseAddrPort(c.local).Port()
			var h Holder
			var ok bool
			var bindErr error
			if err := testutil.InNetns(t, ns, func() error {
				// The bind the daemon tries first must fail, or there is
				// nothing to explain.
				network := c.proto + "4"
				if c.bind.Is6() {
					network = c.proto + "6"
				}
				a := netip.AddrPortFrom(c.bind, port).String()
				if c.proto == "udp" {
					var pc net.PacketConn
					if pc, bindErr = net.ListenPacket(network, a); bindErr == nil {
						pc.Close()
					}
				} else {
					var l net.Listener
					if l, bindErr = net.Listen(network, a); bindErr == nil {
						l.Close()
					}
				}
				h, ok = PortHolder(c.proto, c.bind, port)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(bindErr, syscall.EADDRINUSE) {
				t.Fatalf("binding %s:%d/%s next to the server: %v, want EADDRINUSE", c.bind, port, c.proto, bindErr)
			}
			if !ok {
				t.Fatalf("no holder found for %s:%d/%s (server pid %d)", c.bind, port, c.proto, pid)
			}
			want := Holder{PID: pid, Comm: comm, Local: netip.MustParseAddrPort(c.local)}
			if h != want {
				t.Errorf("holder of %s:%d/%s: %v, want %v", c.bind, port, c.proto, h, want)
			}
		})
	}

	// A free port, and a v6 address a v4 listener does not hold.
	serve(t, ns, "tcp4", "0.0.0.0:8090")
	_ = testutil.InNetns(t, ns, func() error {
		if h, ok := PortHolder("tcp", any4, 8091); ok {
			t.Errorf("free port 8091 held by %v", h)
		}
		if h, ok := PortHolder("tcp", netip.IPv6Loopback(), 8090); ok {
			t.Errorf("[::1]:8090 held by %v, a v4 listener", h)
		}
		if _, ok := PortHolder("tcp", any4, 8090); !ok {
			t.Error("control: 0.0.0.0:8090 has no holder")
		}
		return nil
	})
}
