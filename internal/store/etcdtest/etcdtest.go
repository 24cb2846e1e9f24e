// Package etcdtest starts a throwaway etcd server for tests: Debian's
// etcd-server package (etcd 3.4, scripts/deps.sh installs it), one
// member, its data in a temporary directory.
//
// The server runs in a network namespace of its own (CLONE_NEWNET when
// the child starts: the namespace has nothing in it and dies with the
// process) and listens for clients and peers on unix sockets in its
// directory, so it opens no port anywhere and the machine's own namespace
// is untouched. Unix sockets are files, not part of a network namespace:
// the test's client reaches the server from the test's own namespace, on
// every goroutine gRPC dials from. etcd 3.4 wants host:port in its URLs
// and makes "unix://c.sock:0" a socket file named "c.sock:0" in its
// working directory.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// startTimeout bounds how long Start waits for the server to answer.
const startTimeout = 30 * time.Second

// Start starts an etcd server for t and returns a client of it. The server
// is stopped (by its PID) and its directory removed when t ends. It skips
// t when not root (the new network namespace needs it) or when no etcd
// binary is installed.
func Start(t testing.TB) *clientv3.Client { return StartServer(t).Client }

// Server is a throwaway etcd server that a test can stop and start again
// (its data kept), for the tests of what a daemon does while etcd is away.
type Server struct {
	Client *clientv3.Client // a client of it, closed when the test ends

	t      testing.TB
	bin    string
	dir    string
	pid    int
	exited chan error // nil while stopped

	// A member of a cluster (StartCluster): its name, the prefix of its
	// socket files in dir (shared by the members: etcd resolves a unix
	// URL's relative path in its working directory), and the cluster.
	name, sock, initial string
	timing              [2]string // heartbeat, election timeout (ms)

	// TLS: clients must present a certificate signed by the CA
	// (StartServerTLS); nil: plain.
	TLS *TLSFiles
}

func (s *Server) clientURL() string {
	if s.TLS != nil {
		return "unixs://" + s.sock + "c.sock:0"
	}
	return "unix://" + s.sock + "c.sock:0"
}
func (s *Server) peerURL() string { return "unix://" + s.sock + "p.sock:0" }

// StartServer is Start, returning the server.
func StartServer(t testing.TB) *Server { t.Helper(); return startServer(t, false) }

// StartServerTLS is StartServer with TLS on the client socket and client
// certificates required (--client-cert-auth), from a CA made for the
// test: Server.TLS names the files a client needs.
func StartServerTLS(t testing.TB) *Server { t.Helper(); return startServer(t, true) }

// prepare skips t unless it runs as root with etcd installed, and makes a
// directory for etcd's data and sockets, removed when t ends: a short one
// of our own, not t.TempDir(), because a unix socket's path must fit in
// 108 bytes and t.TempDir() has the test's name in it.
func prepare(t testing.TB) (bin, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs etcd in network namespaces of its own (CI runs tests as root)")
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (Debian package etcd-server; scripts/deps.sh installs it)")
	}
	dir, err = os.MkdirTemp("", "etcd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return bin, dir
}

func startServer(t testing.TB, withTLS bool) *Server {
	t.Helper()
	bin, dir := prepare(t)
	s := &Server{t: t, bin: bin, dir: dir, name: "test", timing: [2]string{"10", "100"}}
	s.initial = s.name + "=" + s.peerURL()
	cfg := clientv3.Config{
		Endpoints:   []string{"unix://" + filepath.Join(dir, s.sock+"c.sock:0")},
		DialTimeout: startTimeout,
		Logger:      zap.NewNop(),
	}
	if withTLS {
		files, err := makeTLS(dir, "c.sock")
		if err != nil {
			t.Fatalf("etcd TLS: %v", err)
		}
		s.TLS = files
		cfg.Endpoints = []string{"unixs://" + filepath.Join(dir, s.sock+"c.sock:0")}
		if cfg.TLS, err = files.ClientConfig(); err != nil {
			t.Fatalf("etcd TLS client: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	s.run()
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	s.Client = cli
	s.ready()
	return s
}

func (s *Server) log() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, s.sock+"etcd.log"))
	out := string(data)
	if len(out) > 4000 {
		out = "…" + out[len(out)-4000:]
	}
	return strings.TrimSpace(out)
}

// run starts the etcd process and waits for its client socket.
func (s *Server) run() {
	t := s.t
	t.Helper()
	client, peer := s.clientURL(), s.peerURL()
	cmd := exec.Command(s.bin,
		"--name", s.name,
		"--data-dir", filepath.Join(s.dir, s.sock+"data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", s.initial,
		"--initial-cluster-state", "new",
		"--log-level", "warn",
		// One member still waits out an election timeout before it
		// serves: 100 ms instead of 1 s (start in ~0.1 s, not ~0.5 s).
		"--heartbeat-interval", s.timing[0], "--election-timeout", s.timing[1],
	)
	if s.TLS != nil {
		cmd.Args = append(cmd.Args, "--cert-file", s.TLS.Cert, "--key-file", s.TLS.Key,
			"--trusted-ca-file", s.TLS.CA, "--client-cert-auth")
	}
	cmd.Dir = s.dir
	logf, err := os.OpenFile(filepath.Join(s.dir, s.sock+"etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary that dies (a timeout's panic) takes etcd
	// with it (see below for the thread it is tied to).
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	// A socket left by a stopped run would look like a listening one.
	sock := filepath.Join(s.dir, s.sock+"c.sock:0")
	_ = os.Remove(sock)
	_ = os.Remove(filepath.Join(s.dir, s.sock+"p.sock:0"))
	// Pdeathsig fires when the forking *thread* ends, and tests end
	// threads (testutil's NewNetns and InNetns lock a thread to a
	// namespace and let it die): start etcd from a thread of its own,
	// locked and kept until etcd exits, or a namespace made later kills
	// etcd under the daemons.
	started := make(chan error, 1)
	s.exited = make(chan error, 1)
	go func(ch chan error) {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine, after etcd
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		ch <- cmd.Wait()
	}(s.exited)
	err = <-started
	logf.Close()
	if err != nil {
		s.exited = nil
		t.Fatalf("start etcd: %v", err)
	}
	s.pid = cmd.Process.Pid

	// Wait for the socket before the client dials: a dial that fails
	// waits out gRPC's reconnect back-off (a second).
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		select {
		case werr := <-s.exited:
			s.exited <- werr // for Stop
			t.Fatalf("etcd exited before listening (%v): %s", werr, s.log())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not listen on %s within %v: %s", sock, startTimeout, s.log())
		}
	}
}

// ready waits until the server answers the client.
func (s *Server) ready() {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		_, err := s.Client.Get(rctx, "ready")
		rcancel()
		if err == nil {
			return
		}
		select {
		case werr := <-s.exited:
			s.exited <- werr // for Stop
			t.Fatalf("etcd exited before answering (%v): %s", werr, s.log())
		case <-ctx.Done():
			t.Fatalf("etcd did not answer within %v: %v: %s", startTimeout, errors.Join(err, ctx.Err()), s.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the server by its PID (SIGTERM, then SIGKILL if it lingers),
// keeping its data; stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.exited == nil {
		return
	}
	_ = syscall.Kill(s.pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
		<-s.exited
	}
	s.exited = nil
}

// Kill kills the server by its PID with SIGKILL (a crash: no goodbye to
// its peers), keeping its data.
func (s *Server) Kill() {
	if s.exited == nil {
		return
	}
	_ = syscall.Kill(s.pid, syscall.SIGKILL)
	<-s.exited
	s.exited = nil
}

// Restart starts a stopped server again on its data and waits until it
// answers.
func (s *Server) Restart() {
	s.t.Helper()
	if s.exited != nil {
		s.t.Fatal("etcdtest: Restart of a running server")
	}
	s.run()
	s.ready()
}

// NewClient returns another client of the server cli talks to, closed when
// t ends: a second pontoon daemon has a connection of its own.
func NewClient(t testing.TB, cli *clientv3.Client) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: cli.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(fmt.Errorf("second etcd client: %w", err))
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Cluster is a throwaway etcd cluster of several members, for the tests of
// what daemons do when a member (the leader) dies.
type Cluster struct {
	Members []*Server
	Client  *clientv3.Client // a client of every member
}

// Endpoints are the members' client URLs (absolute unix:// URLs), for
// --cluster.
func (c *Cluster) Endpoints() []string { return c.Client.Endpoints() }

// StartCluster starts an etcd cluster of n members (each in a network
// namespace of its own, like Start's), stopped when t ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin, dir := prepare(t)
	c := &Cluster{}
	var initial, eps []string
	for i := range n {
		// Members talk to each other: a 2-core machine under a test's
		// load would miss 10 ms heartbeats and keep electing.
		m := &Server{t: t, bin: bin, dir: dir, name: fmt.Sprintf("m%d", i), sock: fmt.Sprintf("m%d-", i), timing: [2]string{"50", "500"}}
		initial = append(initial, m.name+"="+m.peerURL())
		eps = append(eps, "unix://"+filepath.Join(dir, m.sock+"c.sock:0"))
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.initial = strings.Join(initial, ",")
		t.Cleanup(m.Stop)
		m.run()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: startTimeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	c.Client = cli
	for _, m := range c.Members {
		m.Client = cli
	}
	c.Members[0].ready()
	return c
}

// Leader returns the index of the member that leads the cluster now.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	for _, ep := range c.Client.Endpoints() {
		st, err := c.Client.Status(ctx, ep)
		if err != nil {
			continue
		}
		for i := range c.Members {
			resp, err := c.Client.Status(ctx, c.Client.Endpoints()[i])
			if err == nil && resp.Header.MemberId == st.Leader {
				return i, nil
			}
		}
	}
	return -1, errors.New("etcdtest: no member knows a leader")
}
