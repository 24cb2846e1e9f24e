package relay

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

const childEnv = "PONTOON_RELAY_TEST_CHILD"

// The relay's sockets (listeners and dials alike) belong to the namespace
// of whatever thread makes them, so the test runs as a whole process
// inside a throwaway namespace: the test binary re-executed under
// nsenter --net.
func inThrowawayNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		return false
	}
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t)
	cmd := exec.Command("nsenter", "--net="+ns, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in a throwaway namespace: %v\n%s", err, out)
	}
	t.Logf("in a throwaway namespace:\n%s", out)
	return true
}

// echoTCP serves "NAME: line" for each line on addr.
func echoTCP(t *testing.T, addr, name string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					fmt.Fprintf(c, "%s: %s\n", name, s.Text())
				}
			}()
		}
	}()
	return l
}

func echoUDP(t *testing.T, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("echo "), buf[:n]...), from)
		}
	}()
	return pc
}

func askTCP(addr, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintln(c, line)
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(got), err
}

func askUDP(addr, msg string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func port(a net.Addr) uint16 {
	return uint16(a.(interface{ AddrPort() netip.AddrPort }).AddrPort().Port())
}

func TestKernelRelay(t *testing.T) {
	if inThrowawayNetns(t) {
		return
	}
	// The "sandbox": servers on 127.0.0.1 (IPv4 target) and [::1] (IPv6).
	v4 := echoTCP(t, "127.0.0.1:0", "v4")
	v6 := echoTCP(t, "[::1]:0", "v6")
	u := echoUDP(t, "[::1]:0")
	r := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.Close()

	m := func(s string) model.PortMapping {
		p, err := model.ParsePortMapping(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	m1 := m(fmt.Sprintf("18081:%d", port(v6.Addr())))
	m2 := m(fmt.Sprintf("[::1]:18082:%d", port(v4.Addr())))
	m3 := m(fmt.Sprintf("18083:%d/udp", port(u.LocalAddr())))
	m4 := m(fmt.Sprintf("127.0.0.1:18084:%d", port(v4.Addr()))) // not on [::1]: not relayed
	for _, c := range []struct {
		m  model.PortMapping
		to string
	}{{m1, "::1"}, {m2, "127.0.0.1"}, {m3, "::1"}, {m4, "127.0.0.1"}} {
		if err := r.Publish(c.m, netip.MustParseAddr(c.to)); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Listening(); !slices.Equal(sorted(got), []string{"tcp/18081", "tcp/18082", "udp/18083"}) {
		t.Fatalf("listening on %v", got)
	}
	if got, err := askTCP("[::1]:18081", "hi"); err != nil || got != "v6: hi" {
		t.Fatalf("[::1]:18081 → v6 server: %q %v", got, err)
	}
	if got, err := askTCP("[::1]:18082", "hi"); err != nil || got != "v4: hi" {
		t.Fatalf("[::1]:18082 → v4 server: %q %v", got, err)
	}
	// Two UDP clients, each answered on its own.
	for _, msg := range []string{"a", "b", "a"} {
		if got, err := askUDP("[::1]:18083", msg); err != nil || got != "echo "+msg {
			t.Fatalf("[::1]:18083/udp %q: %q %v", msg, got, err)
		}
	}
	// Publishing again to another target moves the port.
	if err := r.Publish(m(fmt.Sprintf("18081:%d", port(v4.Addr()))), netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if got, err := askTCP("[::1]:18081", "again"); err != nil || got != "v4: again" {
		t.Fatalf("[::1]:18081 after the move: %q %v", got, err)
	}
	// Unpublish: refused at once.
	r.Unpublish(m2)
	if _, err := askTCP("[::1]:18082", "gone"); err == nil {
		t.Fatal("[::1]:18082 answers after Unpublish")
	}
	// Sync keeps what is listed and stops the rest.
	if err := r.Sync([]Target{{Mapping: m3, Addr: netip.MustParseAddr("::1")}}); err != nil {
		t.Fatal(err)
	}
	if got := r.Listening(); !slices.Equal(got, []string{"udp/18083"}) {
		t.Fatalf("after Sync listening on %v", got)
	}
	if _, err := askTCP("[::1]:18081", "gone"); err == nil {
		t.Fatal("[::1]:18081 answers after Sync dropped it")
	}
	// A port someone else holds is reported, the others still start.
	hold, err := net.Listen("tcp6", "[::1]:18085")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	if err := r.Publish(m(fmt.Sprintf("18085-18086:%d-%d", port(v6.Addr()), port(v6.Addr())+1)), netip.MustParseAddr("::1")); err == nil || !strings.Contains(err.Error(), "18085") {
		t.Fatalf("publish over a held port: %v", err)
	}
	if !slices.Contains(r.Listening(), "tcp/18086") {
		t.Fatalf("the free port of the range is not relayed: %v", r.Listening())
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
