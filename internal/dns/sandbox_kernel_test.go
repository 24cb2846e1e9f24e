package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
	"pontoon/internal/testutil"
)

// sandboxServer is a resolver that knows the gateway-less networks pair,
// mac and other, with records on each ("a" on pair and mac, "hidden" on
// other only); no upstreams. It binds nothing until SetSandbox.
func sandboxServer(t testing.TB) *Server {
	t.Helper()
	s, err := New(Options{ResolvConf: filepath.Join(t.TempDir(), "none")}) // never /etc
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	other := Network{Name: "other", Subnets: prefixes("10.63.0.0/24")}
	if err := s.SetNetworks([]Network{pairNet, macNet, other}); err != nil {
		t.Fatal(err)
	}
	s.ReplaceRecords("pair", []Record{
		{Name: "a", IPs: addrs("10.60.0.2", "fd00:60::2")},
		{Name: "b", IPs: addrs("10.60.0.3", "fd00:60::3")},
	})
	s.SetRecord("mac", Record{Name: "a", Aliases: []string{"m"}, IPs: addrs("10.61.0.2")})
	s.SetRecord("other", Record{Name: "hidden", IPs: addrs("10.63.0.9")})
	return s
}

// inoOf is the identity of the namespace at path.
func inoOf(t testing.TB, path string) uint64 {
	t.Helper()
	ino, err := netns.Ino(path)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// refused asserts that nothing listens on 127.0.0.11:53/tcp inside ns (a
// TCP connect is refused at once: no timing involved).
func refused(t *testing.T, ns, what string) {
	t.Helper()
	err := testutil.InNetns(t, ns, func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.11:53", 3*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%s: connect to 127.0.0.11:53 in %s: %v, want connection refused", what, ns, err)
	}
}

// goLookup resolves name with Go's own stub resolver, its queries sent to
// 127.0.0.11:53 from sockets made inside ns.
func goLookup(t *testing.T, ns, name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (c net.Conn, err error) {
		err = testutil.InNetns(t, ns, func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, "127.0.0.11:53")
			return err
		})
		return c, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := r.LookupHost(ctx, name)
	slices.Sort(out)
	return out, err
}

// nslookup runs busybox nslookup inside ns against 127.0.0.11 (skipped
// without busybox): a C stub resolver, in another process.
func nslookup(t *testing.T, ns, qtype, name string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return ""
	}
	var out []byte
	_ = testutil.InNetns(t, ns, func() error {
		out, _ = exec.Command(bb, "nslookup", "-type="+qtype, name, SandboxAddr).CombinedOutput()
		return nil
	})
	return string(out)
}

// TestKernelSandbox: two sandboxes with namespaces of their own, on
// networks without gateways, each with a resolver inside: real queries
// from inside each (miekg/dns over UDP and TCP, Go's stub resolver,
// busybox nslookup) get the names of the sandbox's networks and only
// theirs; the sockets are in the sandbox's namespace; a new list is served
// by the same sockets; RemoveSandbox closes the port.
func TestKernelSandbox(t *testing.T) {
	nsA, nsB := testutil.NewNetns(t), testutil.NewNetns(t)
	s := sandboxServer(t)
	if err := s.SetSandbox(nsA, inoOf(t, nsA), []string{"pair", "mac"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSandbox(nsB, 0, []string{"pair"}); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Sandboxes; n != 2 {
		t.Errorf("stats: %d sandboxes, want 2", n)
	}
	l := &lab{t: t}
	for _, proto := range []string{"udp", "tcp"} {
		a := l.client(nsA, proto, "127.0.0.11:53", "")
		l.must(a, "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2", "A 10.61.0.2")
		l.must(a, "a.", mdns.TypeAAAA, mdns.RcodeSuccess, "AAAA fd00:60::2")
		l.must(a, "m.mac.", mdns.TypeA, mdns.RcodeSuccess, "A 10.61.0.2")
		l.must(a, "hidden.", mdns.TypeA, mdns.RcodeNameError)
		l.must(a, "2.0.61.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, "PTR a.mac.")
		l.must(a, rev6("fd00:60::3"), mdns.TypePTR, mdns.RcodeSuccess, "PTR b.pair.")
		l.must(a, "7.0.60.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError)

		b := l.client(nsB, proto, "127.0.0.11:53", "")
		l.must(b, "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2")
		l.must(b, "m.", mdns.TypeA, mdns.RcodeNameError) // mac's: not B's
		l.must(b, "hidden.", mdns.TypeA, mdns.RcodeNameError)
		l.must(b, "3.0.60.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, "PTR b.pair.")
	}
	if got, err := goLookup(t, nsA, "a."); err != nil || strings.Join(got, ",") != "10.60.0.2,10.61.0.2,fd00:60::2" {
		t.Errorf("Go resolver in A: %v %v", got, err)
	}
	if got, err := goLookup(t, nsB, "a."); err != nil || strings.Join(got, ",") != "10.60.0.2,fd00:60::2" {
		t.Errorf("Go resolver in B: %v %v", got, err)
	}
	if out := nslookup(t, nsA, "a", "a"); out != "" {
		t.Logf("busybox nslookup -type=a a 127.0.0.11, inside A:\n%s", out)
		if !strings.Contains(out, "10.60.0.2") || !strings.Contains(out, "10.61.0.2") {
			t.Errorf("busybox nslookup a in A:\n%s", out)
		}
		if out := nslookup(t, nsB, "a", "hidden"); !strings.Contains(out, "NXDOMAIN") {
			t.Errorf("busybox nslookup hidden in B:\n%s", out)
		}
	} else {
		t.Log("no busybox: nslookup not tried")
	}

	// The sockets are in the sandbox's namespace.
	s.mu.Lock()
	sbA := s.sandboxes[nsA]
	sbB := s.sandboxes[nsB]
	s.mu.Unlock()
	var want uint64
	if err := testutil.InNetns(t, nsA, func() error {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer c.Close()
		want, err = netnsCookie(c.(*net.UDPConn))
		return err
	}); err != nil {
		t.Skipf("SO_NETNS_COOKIE: %v", err)
	}
	if got, err := netnsCookie(sbA.l.udp.PacketConn.(*net.UDPConn)); err != nil || got != want {
		t.Errorf("A's listener in netns cookie %d (%v), A is %d", got, err, want)
	}

	// The same namespace under another path: its port is taken, and the
	// error says why; nothing changes.
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.WriteFile(alias, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(nsB, alias, "none", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(alias, unix.MNT_DETACH) })
	if err := s.SetSandbox(alias, 0, []string{"mac"}); !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "another path") {
		t.Errorf("SetSandbox on B under another path: %v, want EADDRINUSE and why", err)
	}
	if n := s.Stats().Sandboxes; n != 2 {
		t.Errorf("stats: %d sandboxes after a failed SetSandbox, want 2", n)
	}

	// A new list: the same sockets serve it.
	if err := s.SetSandbox(nsB, inoOf(t, nsB), []string{"mac", "pair"}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	same := s.sandboxes[nsB] == sbB
	s.mu.Unlock()
	if !same {
		t.Error("a new list of networks rebound the sandbox's listener")
	}
	b := l.client(nsB, "udp", "127.0.0.11:53", "")
	l.must(b, "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2", "A 10.61.0.2")

	// RemoveSandbox closes A's port and leaves B's.
	if err := s.RemoveSandbox(nsA); err != nil {
		t.Fatal(err)
	}
	refused(t, nsA, "after RemoveSandbox")
	a := l.client(nsA, "udp", "127.0.0.11:53", "")
	if _, err := a.exchange("a.", mdns.TypeA, false); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("UDP query after RemoveSandbox: %v, want connection refused", err)
	}
	l.must(b, "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2", "A 10.61.0.2")
	// An empty list is RemoveSandbox.
	if err := s.SetSandbox(nsB, 0, nil); err != nil {
		t.Fatal(err)
	}
	refused(t, nsB, "after SetSandbox with no networks")
	if n := s.Stats().Sandboxes; n != 0 {
		t.Errorf("stats: %d sandboxes, want 0", n)
	}
}

// TestKernelSandboxReplacedNamespace: a path that names another namespace
// than the one asked for is refused, and nothing listens in it; a sandbox
// whose path came to name a new namespace is moved there when asked with
// the new identity.
func TestKernelSandboxReplacedNamespace(t *testing.T) {
	p := testutil.NewNetns(t)
	old := inoOf(t, p)
	s := sandboxServer(t)
	if err := s.SetSandbox(p, old, []string{"pair"}); err != nil {
		t.Fatal(err)
	}
	// The sandbox goes and another namespace is pinned at its path (its
	// pin reused); the old namespace lives on while our sockets hold it.
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	testutil.PinNewNetns(t, p)
	cur := inoOf(t, p)
	if cur == old {
		t.Fatal("the new namespace has the old one's identity")
	}
	refused(t, p, "the new namespace, before anything was asked")
	// The old identity on a live sandbox: it is the namespace the sockets
	// are in, so the list is updated there; nothing is bound in the new.
	if err := s.SetSandbox(p, old, []string{"pair", "mac"}); err != nil {
		t.Fatal(err)
	}
	refused(t, p, "a list update for the old namespace")
	if err := s.RemoveSandbox(p); err != nil {
		t.Fatal(err)
	}
	// Asked again for the old namespace: refused, clearly, nothing bound.
	err := s.SetSandbox(p, old, []string{"pair"})
	if !errors.Is(err, netns.ErrGone) || !strings.Contains(err.Error(), "another namespace") {
		t.Fatalf("SetSandbox on a replaced namespace: %v, want netns.ErrGone saying it is another namespace", err)
	}
	refused(t, p, "a refused SetSandbox")
	if n := s.Stats().Sandboxes; n != 0 {
		t.Errorf("stats: %d sandboxes after a refused SetSandbox", n)
	}

	// A live sandbox asked with the new identity moves to it.
	p2 := testutil.NewNetns(t)
	old2 := inoOf(t, p2)
	if err := s.SetSandbox(p2, old2, []string{"pair"}); err != nil {
		t.Fatal(err)
	}
	oldNs := filepath.Join(t.TempDir(), "old")
	testutil.PinNewNetns(t, oldNs) // a file to bind the old namespace over
	if err := unix.Unmount(oldNs, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(p2, oldNs, "none", unix.MS_BIND, ""); err != nil { // keep a handle on the old one
		t.Fatal(err)
	}
	if err := unix.Unmount(p2, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	testutil.PinNewNetns(t, p2)
	if err := s.SetSandbox(p2, inoOf(t, p2), []string{"pair"}); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t}
	l.must(l.client(p2, "udp", "127.0.0.11:53", ""), "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2")
	refused(t, oldNs, "the namespace the sandbox moved from")
}

// TestKernelSandboxLoDown: 127.0.0.11 binds even in a namespace whose lo
// was never up (nothing there can reach it yet: connect fails with
// "network unreachable"), and the same sockets answer once lo is up, so
// SetSandbox may come before whoever brings lo up.
func TestKernelSandboxLoDown(t *testing.T) {
	testutil.RequireRoot(t)
	p := filepath.Join(t.TempDir(), "ns")
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	// util-linux unshare pins a fresh namespace without touching lo.
	if out, err := exec.Command("unshare", "--net="+p, "true").CombinedOutput(); err != nil {
		t.Skipf("unshare --net: %v %s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
	s := sandboxServer(t)
	if err := s.SetSandbox(p, 0, []string{"pair"}); err != nil {
		t.Fatalf("SetSandbox with lo never up: %v", err)
	}
	err := testutil.InNetns(t, p, func() error {
		c, err := net.Dial("udp", "127.0.0.11:53")
		if err == nil {
			c.Close()
		}
		return err
	})
	if !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("connect with lo down: %v, want network unreachable (is lo up after all?)", err)
	}
	if out, err := exec.Command("nsenter", "--net="+p, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	l := &lab{t: t}
	l.must(l.client(p, "tcp", "127.0.0.11:53", ""), "b.", mdns.TypeAAAA, mdns.RcodeSuccess, "AAAA fd00:60::3")
	l.must(l.client(p, "udp", "127.0.0.11:53", ""), "b.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.3")
}

// TestKernelSandboxClose: Close stops the sandboxes' listeners too.
func TestKernelSandboxClose(t *testing.T) {
	p := testutil.NewNetns(t)
	s := sandboxServer(t)
	if err := s.SetSandbox(p, 0, []string{"pair"}); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t}
	l.must(l.client(p, "udp", "127.0.0.11:53", ""), "a.", mdns.TypeA, mdns.RcodeSuccess, "A 10.60.0.2")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	refused(t, p, "after Close")
	if err := s.SetSandbox(p, 0, []string{"pair"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("SetSandbox after Close: %v", err)
	}
}

// threadNamespaces counts the process's threads by network namespace.
func threadNamespaces(t *testing.T) map[string]int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err != nil {
			continue // the thread exited meanwhile
		}
		out[fmt.Sprintf("%d:%d", st.Dev, st.Ino)]++
	}
	return out
}

// TestKernelSandboxThreadsComeBack: SetSandbox enters namespaces from many
// goroutines at once; afterwards no thread of the process is in another
// namespace than before (a thread left in a sandbox's namespace would be
// reused for the daemon's own sockets). testutil's helpers end their
// threads locked in the namespaces they make; those die, except the main
// thread, which the runtime parks for good instead: the threads outside
// the home namespace are taken once they are down to that, and SetSandbox
// must add none.
func TestKernelSandboxThreadsComeBack(t *testing.T) {
	testutil.RequireRoot(t)
	runtime.LockOSThread()
	var st unix.Stat_t
	err := unix.Stat("/proc/thread-self/ns/net", &st)
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	home := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	s := sandboxServer(t)
	nss := make([]string, 16)
	for i := range nss {
		nss[i] = testutil.NewNetns(t)
	}
	// away lists the threads outside home, as "tid ns".
	away := func() []string {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, task := range tasks {
			var st unix.Stat_t
			if unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st) != nil {
				continue // it exited meanwhile
			}
			if ns := fmt.Sprintf("%d:%d", st.Dev, st.Ino); ns != home {
				out = append(out, task.Name()+" "+ns)
			}
		}
		return out
	}
	main := strconv.Itoa(os.Getpid()) + " "
	var before []string
	for range 100 { // the helpers' threads exit
		before = away()
		if len(before) == 0 || len(before) == 1 && strings.HasPrefix(before[0], main) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	errc := make(chan error, len(nss))
	for _, p := range nss {
		go func() { errc <- s.SetSandbox(p, 0, []string{"pair"}) }()
	}
	for range nss {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if after := away(); slices.ContainsFunc(after, func(a string) bool { return !slices.Contains(before, a) }) {
		t.Fatalf("threads outside the home namespace: %v before SetSandbox, %v after", before, after)
	}
}

// BenchmarkSetSandbox: what an attach on a link or macvlan network costs
// the resolver: open and check the namespace, enter it, bind UDP and TCP
// on 127.0.0.11:53, come back, start serving; then RemoveSandbox (a
// detach) closes both.
func BenchmarkSetSandbox(b *testing.B) {
	p := testutil.NewNetns(b)
	ino := inoOf(b, p)
	s := sandboxServer(b)
	nets := []string{"pair", "mac"}
	b.Run("set+remove", func(b *testing.B) {
		for b.Loop() {
			if err := s.SetSandbox(p, ino, nets); err != nil {
				b.Fatal(err)
			}
			if err := s.RemoveSandbox(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The two halves: SetSandbox alone (RemoveSandbox outside the timer),
	// RemoveSandbox alone.
	b.Run("set", func(b *testing.B) {
		for b.Loop() {
			if err := s.SetSandbox(p, ino, nets); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.RemoveSandbox(p)
			b.StartTimer()
		}
	})
	b.Run("remove", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			if err := s.SetSandbox(p, ino, nets); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			s.RemoveSandbox(p)
		}
	})
	b.Run("update", func(b *testing.B) { // a second network attached
		if err := s.SetSandbox(p, ino, nets); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := s.SetSandbox(p, ino, nets); err != nil {
				b.Fatal(err)
			}
		}
		s.RemoveSandbox(p)
	})
}

// TestKernelSandboxGlibc: glibc's stub resolver (getent), inside the
// sandbox with SandboxResolvConf's file as its /etc/resolv.conf (bound over
// it in a private mount namespace of the child only), finds the names.
// The sandbox has its interface and address, as on a link network:
// getaddrinfo's AI_ADDRCONFIG (getent ahosts sets it) asks for no IPv4
// name at all while a namespace has no IPv4 address but loopback ones.
func TestKernelSandboxGlibc(t *testing.T) {
	p := testutil.NewNetns(t)
	for _, c := range []string{"link add eth0 type veth peer name eth1", "addr add 10.60.0.2/24 dev eth0",
		"link set eth0 up", "link set eth1 up"} {
		if out, err := exec.Command("nsenter", append([]string{"--net=" + p, "ip"}, strings.Fields(c)...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", c, err, out)
		}
	}
	s := sandboxServer(t)
	if err := s.SetSandbox(p, 0, []string{"pair", "mac"}); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte(SandboxResolvConf(pairNet)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, want string }{
		{"a", "10.60.0.2 10.61.0.2"}, // ndots:0: sent as is
		{"m.mac", "10.61.0.2"},
		{"b", "10.60.0.3"},
	} {
		script := "mount --bind " + rc + " /etc/resolv.conf && getent ahostsv4 " + tt.name + " | awk '{print $1}' | sort -u | tr '\\n' ' '"
		cmd := exec.Command("nsenter", "--net="+p, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("getent %s: %v %s", tt.name, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tt.want {
			t.Errorf("getent ahostsv4 %s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
