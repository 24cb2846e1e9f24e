// Package e2e drives the real pontoon binaries the way a user does. Every
// test builds a throwaway "host" network namespace with an uplink to a
// second throwaway namespace that plays the outside world (an upstream
// router at 198.51.100.2 with a LAN client at 203.0.113.2 behind it), runs
// `pontoon daemon` inside the host namespace (nsenter --net, so namespace
// pins stay visible in our mount namespace) with its own state directory,
// socket and pin directory, and removes all of it afterwards.
//
// Assertions are made with real traffic (ping, TCP, UDP) and by reading what
// the other side saw.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

var binDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipping, needs root (creates network namespaces; CI runs as root)")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "pontoon-e2e-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, b := range []string{"pontoon", "pontoon-cni"} {
		if _, err := os.Stat("../../cmd/" + b); err != nil {
			continue
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "./cmd/"+b)
		cmd.Dir = "../.."
		// As scripts/build.sh builds them: static, without cgo.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Println("e2e: build", b, "failed:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Host is one throwaway host with a running daemon.
type Host struct {
	t        testing.TB
	Dir      string
	NS       string // pin of the host namespace
	Outside  string // pin of the outside-world namespace
	Socket   string
	Root     string
	NetnsDir string
	// MountNS, when set, is the mount namespace the daemon runs in
	// (nsenter --mount): the runtimes' tests give it theirs, so that it
	// sees the namespace pins the runtimes make there.
	MountNS string

	mu     sync.Mutex
	daemon *exec.Cmd
	// dnsHandler answers queries to the outside world's resolver at
	// RouterIP:53 (nil: an empty NOERROR answer).
	dnsHandler atomic.Pointer[mdns.HandlerFunc]
	logBuf     *testutil.LockedBuffer
	waited     chan struct{}
}

const (
	HostUplinkIP = "198.51.100.1" // host's address towards the outside
	RouterIP     = "198.51.100.2" // the outside's router, default gateway of the host
	LANClientIP  = "203.0.113.2"  // a client behind the router

	// The same for IPv6 (documentation prefix 2001:db8::/32).
	HostUplinkIP6 = "2001:db8:100::1"
	RouterIP6     = "2001:db8:100::2"
	LANClientIP6  = "2001:db8:113::2"
)

// NewHost builds the namespaces and starts the daemon.
func NewHost(t testing.TB, daemonArgs ...string) *Host {
	t.Helper()
	return newHostIn(t, "", daemonArgs...)
}

// newHostIn is NewHost with the daemon in the mount namespace mountNS
// ("": the test's own).
func newHostIn(t testing.TB, mountNS string, daemonArgs ...string) *Host {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	h := &Host{t: t, Dir: dir, Root: filepath.Join(dir, "root"), Socket: filepath.Join(dir, "pontoon.sock"), NetnsDir: filepath.Join(dir, "netns"), MountNS: mountNS}
	h.NS = testutil.NewNetns(t)
	h.Outside = testutil.NewNetns(t)
	// Unmount whatever the daemon pinned under our directory, after it
	// stopped (cleanups run last-registered first).
	t.Cleanup(func() { unmountUnder(dir) })
	h.wire()
	h.serveUpstream()
	h.Start(daemonArgs...)
	t.Cleanup(h.Stop)
	return h
}

// wire joins host and outside with a veth pair: uplink0 (host) ↔ wan0
// (outside), host default route via the router; the LAN client address
// lives on the outside namespace's lo.
func (h *Host) wire() {
	h.t.Helper()
	h.In(h.NS, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "wan0", "netns", h.Outside)
	h.In(h.NS, "ip", "addr", "add", HostUplinkIP+"/24", "dev", "uplink0")
	h.In(h.NS, "ip", "link", "set", "uplink0", "up")
	h.In(h.NS, "ip", "route", "add", "default", "via", RouterIP)
	h.In(h.Outside, "ip", "addr", "add", RouterIP+"/24", "dev", "wan0")
	h.In(h.Outside, "ip", "link", "set", "wan0", "up")
	// This kernel has no dummy module: the LAN client's address lives on
	// the outside namespace's lo.
	h.In(h.Outside, "ip", "addr", "add", LANClientIP+"/32", "dev", "lo")
	// IPv6 on the same cable, without DAD so that addresses are usable at
	// once; the LAN client's /128 is reached through the router.
	h.In(h.NS, "ip", "addr", "add", HostUplinkIP6+"/64", "dev", "uplink0", "nodad")
	h.In(h.NS, "ip", "-6", "route", "add", "default", "via", RouterIP6)
	h.In(h.Outside, "ip", "addr", "add", RouterIP6+"/64", "dev", "wan0", "nodad")
	h.In(h.Outside, "ip", "addr", "add", LANClientIP6+"/128", "dev", "lo")
}

// serveUpstream runs the outside world's resolver at RouterIP:53 (UDP),
// the daemon's --dns: by default it answers every query with an empty
// NOERROR; tests that need names set dnsHandler.
func (h *Host) serveUpstream() {
	h.t.Helper()
	var pc net.PacketConn
	if err := testutil.InNetns(h.t, h.Outside, func() (err error) {
		pc, err = net.ListenPacket("udp4", RouterIP+":53")
		return err
	}); err != nil {
		h.t.Fatalf("outside resolver: %v", err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		if f := h.dnsHandler.Load(); f != nil {
			(*f)(w, r)
			return
		}
		m := new(mdns.Msg)
		m.SetReply(r)
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	h.t.Cleanup(func() { _ = srv.Shutdown() })
}

// In runs a command inside the namespace at ns and fails the test on error.
func (h *Host) In(ns string, argv ...string) string {
	h.t.Helper()
	out, err := h.TryIn(ns, argv...)
	if err != nil {
		h.t.Fatalf("%s in %s: %v\n%s", strings.Join(argv, " "), filepath.Base(ns), err, out)
	}
	return out
}

// TryIn runs a command inside a namespace and returns its output and error.
func (h *Host) TryIn(ns string, argv ...string) (string, error) {
	full := append([]string{"--net=" + ns, "--"}, argv...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	return string(out), err
}

// Start starts the daemon in the host namespace and waits until it is ready.
func (h *Host) Start(extra ...string) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	args := []string{"--net=" + h.NS}
	if h.MountNS != "" {
		args = append(args, "--mount="+h.MountNS)
	}
	args = append(args, "--", filepath.Join(binDir, "pontoon"), "daemon",
		"--root", h.Root, "--socket", h.Socket, "--netns-dir", h.NetnsDir, "--log-level", "debug",
		// Names outside pontoon's go to a resolver in the outside-world
		// namespace, never to the machine's own; resolv.conf files stay in
		// the test's directory, never /etc.
		"--etc-netns-dir", filepath.Join(h.Dir, "etc-netns"), "--dns", RouterIP+":53", "--dns-timeout", "500ms")
	args = append(args, extra...)
	cmd := exec.Command("nsenter", args...)
	if h.logBuf == nil {
		h.logBuf = &testutil.LockedBuffer{}
	}
	cmd.Stdout, cmd.Stderr = h.logBuf, h.logBuf
	if err := cmd.Start(); err != nil {
		h.t.Fatalf("start daemon: %v", err)
	}
	h.daemon = cmd
	h.waited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, h.waited)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := h.try("version")
		if err == nil && strings.Contains(out, "ready true") {
			return
		}
		select {
		case <-h.waited:
			h.t.Fatalf("daemon exited during start-up:\n%s", h.logBuf.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	h.t.Fatalf("daemon not ready after 30s:\n%s", h.logBuf.String())
}

// Stop stops the daemon with SIGTERM (idempotent).
func (h *Host) Stop() { h.signal(syscall.SIGTERM) }

// Kill kills the daemon with SIGKILL.
func (h *Host) Kill() { h.signal(syscall.SIGKILL) }

func (h *Host) signal(sig syscall.Signal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.daemon == nil {
		return
	}
	// nsenter execs the daemon, so the PID is the daemon's own.
	_ = h.daemon.Process.Signal(sig)
	select {
	case <-h.waited:
	case <-time.After(30 * time.Second):
		_ = h.daemon.Process.Kill()
		<-h.waited
	}
	h.daemon = nil
	if h.t.Failed() {
		h.t.Logf("daemon log:\n%s", h.logBuf.String())
	}
}

// Log returns what the daemon logged so far.
func (h *Host) Log() string { return h.logBuf.String() }

func (h *Host) try(args ...string) (string, error) {
	full := append([]string{"--socket", h.Socket}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "pontoon"), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// P runs the CLI and fails the test on error.
func (h *Host) P(args ...string) string {
	h.t.Helper()
	out, err := h.try(args...)
	if err != nil {
		h.t.Fatalf("pontoon %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// PFail runs the CLI, expects it to fail, and returns its output.
func (h *Host) PFail(args ...string) string {
	h.t.Helper()
	out, err := h.try(args...)
	if err == nil {
		h.t.Fatalf("pontoon %s succeeded, want an error; output:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// TryP runs the CLI and returns output and error.
func (h *Host) TryP(args ...string) (string, error) { return h.try(args...) }

// Sandbox returns a sandbox's inspect JSON.
func (h *Host) Sandbox(name string) *model.SandboxInfo {
	h.t.Helper()
	var v []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("sandbox", "inspect", "--format", "json", name)), &v); err != nil || len(v) != 1 {
		h.t.Fatalf("sandbox inspect %s: %v", name, err)
	}
	return v[0]
}

// IP returns the (first: IPv4 when it has one) address of a sandbox on a
// network.
func (h *Host) IP(sandbox, network string) string {
	h.t.Helper()
	for _, ep := range h.Sandbox(sandbox).Endpoints {
		if ep.Network == network {
			return ep.FirstIP().String()
		}
	}
	h.t.Fatalf("sandbox %s has no endpoint on %s", sandbox, network)
	return ""
}

// IP6 returns the IPv6 address of a sandbox on a network.
func (h *Host) IP6(sandbox, network string) string {
	h.t.Helper()
	for _, ep := range h.Sandbox(sandbox).Endpoints {
		if a, ok := ep.Addr6(); ok && ep.Network == network {
			return a.Addr.Addr().String()
		}
	}
	h.t.Fatalf("sandbox %s has no IPv6 address on %s", sandbox, network)
	return ""
}

// Ping pings from a sandbox once (1 s timeout) and reports success.
func (h *Host) Ping(sandbox, addr string) bool {
	_, err := h.try("exec", sandbox, "--", "ping", "-c1", "-W1", addr)
	return err == nil
}

// MustPing fails unless the ping succeeds.
func (h *Host) MustPing(sandbox, addr string) {
	h.t.Helper()
	if !h.Ping(sandbox, addr) {
		h.t.Fatalf("ping from %s to %s failed", sandbox, addr)
	}
}

// MustNotPing fails if the ping succeeds.
func (h *Host) MustNotPing(sandbox, addr string) {
	h.t.Helper()
	if h.Ping(sandbox, addr) {
		h.t.Fatalf("ping from %s to %s succeeded, want it blocked", sandbox, addr)
	}
}

// TCPServer listens inside the namespace at ns on addr and records the
// remote address of every connection; each connection gets "hello from
// <addr>\n". It stops when the test ends.
type TCPServer struct {
	Addr  string
	mu    sync.Mutex
	peers []string
}

func (s *TCPServer) Peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.peers...)
}

// ServeTCP starts a TCP server in a namespace (the socket is created on a
// thread inside it and stays bound to it).
func ServeTCP(t testing.TB, ns, addr string) *TCPServer {
	t.Helper()
	var l net.Listener
	if err := testutil.InNetns(t, ns, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	s := &TCPServer{Addr: l.Addr().String()}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.peers = append(s.peers, c.RemoteAddr().String())
			s.mu.Unlock()
			fmt.Fprintf(c, "hello from %s\n", s.Addr)
			c.Close()
		}
	}()
	return s
}

// DialFrom connects to addr from inside the namespace at ns and returns the
// first line the server sent.
func DialFrom(t *testing.T, ns, addr string) (string, error) {
	t.Helper()
	var line string
	err := testutil.InNetns(t, ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

// SandboxNS returns the namespace path of a sandbox.
func (h *Host) SandboxNS(name string) string {
	h.t.Helper()
	return h.Sandbox(name).Netns
}

// HostLinks lists the host namespace's links whose names start with prefix.
func (h *Host) HostLinks(prefix string) []string {
	h.t.Helper()
	var out []string
	for _, line := range strings.Split(h.In(h.NS, "ip", "-o", "link", "show"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		name, _, _ = strings.Cut(name, "@")
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Pins lists the files in the daemon's netns directory.
func (h *Host) Pins() []string {
	ents, _ := os.ReadDir(h.NetnsDir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// unmountUnder unmounts every mount point below dir, deepest first.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mps = append(mps, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, mp := range mps {
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
}

var _ = io.Discard

// within polls check until it reports done or d passed, and returns its
// last output. For what the daemon finishes in the background after it
// answered: a removed sandbox's veths, pins and interfaces.
func within(d time.Duration, check func() (string, bool)) (string, bool) {
	deadline := time.Now().Add(d)
	for {
		out, done := check()
		if done || time.Now().After(deadline) {
			return out, done
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ports parses -p specs for API requests in tests (the API carries them
// structured).
func Ports(specs ...string) []model.PortMapping {
	var out []model.PortMapping
	for _, s := range specs {
		m, err := model.ParsePortMapping(s)
		if err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}
