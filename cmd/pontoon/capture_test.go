package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// Arguments are checked before anything is asked of the daemon (none
// listens here): tcpdump's go after --, one SANDBOX, a count ≥ 0.
func TestCaptureArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"capture"}, "SANDBOX"},
		{[]string{"capture", "--", "icmp"}, "no SANDBOX given"},
		{[]string{"capture", "a", "icmp"}, "tcpdump's arguments go after --, as in pontoon capture a -- icmp"},
		{[]string{"capture", "a", "-c", "-1"}, "-c -1"},
		{[]string{"capture", "a", "--count", "x"}, "invalid argument"},
		{[]string{"capture", "a", "--hostend"}, "unknown flag"},
	} {
		_, _, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one with %q", tc.args, err, tc.want)
		}
	}
}

func TestCaptureSides(t *testing.T) {
	sb := &model.SandboxInfo{
		Sandbox: model.Sandbox{Name: "a", Kind: model.KindPontoon, Netns: "/run/x/a", NetnsIno: 7},
		Endpoints: []*model.Endpoint{
			{Network: "front", IfName: "eth0", HostIf: "ptv-1"},
			{Network: "lan", IfName: "eth1"}, // a macvlan: no host end
		},
	}
	sides, err := captureSides(sb, "", false)
	if err != nil || len(sides) != 1 || sides[0] != (captureSide{label: "eth0", iface: "eth0", ns: "/run/x/a", ino: 7}) {
		t.Errorf("default: %+v %v, want eth0 in the sandbox's namespace", sides, err)
	}
	sides, err = captureSides(sb, "front", true)
	if err != nil || len(sides) != 2 || sides[1] != (captureSide{label: "ptv-1", iface: "ptv-1", hostEnd: true}) {
		t.Errorf("--host-end: %+v %v, want eth0 and ptv-1", sides, err)
	}
	sides, err = captureSides(sb, "lan", false)
	if err != nil || len(sides) != 1 || sides[0].iface != "eth1" {
		t.Errorf("--network lan: %+v %v, want eth1", sides, err)
	}
	for _, tc := range []struct {
		sb      *model.SandboxInfo
		network string
		hostEnd bool
		want    string
	}{
		{sb, "lan", true, "eth1 on network lan has no host end"},
		{sb, "back", false, "not on network back (it is on front, lan)"},
		{&model.SandboxInfo{Sandbox: model.Sandbox{Name: "n", Kind: model.KindPontoon}}, "", false, "pontoon exec n -- tcpdump -nli lo"},
		{&model.SandboxInfo{Sandbox: model.Sandbox{Name: "vm1", Kind: model.KindVM}, Endpoints: sb.Endpoints[:1]}, "", true, "no namespace"},
		{&model.SandboxInfo{Sandbox: model.Sandbox{Name: "h", Kind: model.KindHost}}, "", false, "kind host"},
	} {
		if _, err := captureSides(tc.sb, tc.network, tc.hostEnd); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s --network %q --host-end=%v: %v, want an error with %q", tc.sb.Name, tc.network, tc.hostEnd, err, tc.want)
		}
	}
}

// fakeTcpdump puts a tcpdump on PATH that prints its arguments, then
// exits 3 on interface fail0, 0 at once with -c, and otherwise waits for
// SIGINT (printing "stopped").
func fakeTcpdump(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
trap 'kill $! 2>/dev/null; echo stopped; exit 0' INT
echo "args: $*"
echo "listening" >&2
case " $* " in
*" -i fail0 "*) sleep 0.2; echo "fail0: no such device" >&2; exit 3 ;;
*" -c "*) exit 0 ;;
esac
sleep 30 &
wait
exit 9
`
	if err := os.WriteFile(filepath.Join(dir, "tcpdump"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
}

// captureDaemon serves GET /v1/sandboxes/a (its namespace: this process's)
// and GET /v1/status (its PID: this process's, so the "daemon's
// namespace" is ours too).
func captureDaemon(t *testing.T, hostIf string) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/status":
			_ = json.NewEncoder(w).Encode(api.Status{Ready: true, PID: os.Getpid(), Version: api.Version})
		case "/v1/sandboxes/a":
			_ = json.NewEncoder(w).Encode(model.SandboxInfo{
				Sandbox:   model.Sandbox{Name: "a", Kind: model.KindPontoon, Netns: "/proc/self/ns/net"},
				Endpoints: []*model.Endpoint{{Network: "n", IfName: "eth0", HostIf: hostIf}},
			})
		default:
			http.NotFound(w, r)
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return socket
}

// syncBuffer is written by the children's copiers while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runCapture(ctx context.Context, socket string, args ...string) (out, errOut *syncBuffer, done chan error) {
	root := newRootCmd()
	out, errOut = &syncBuffer{}, &syncBuffer{}
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetArgs(append([]string{"--socket", socket, "capture"}, args...))
	done = make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	return out, errOut, done
}

func waitErr(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("capture did not end")
		return nil
	}
}

// The command line reaches tcpdump as given; each side's lines carry its
// name; Ctrl-C stops both with exit 0; a failing side stops the other and
// its exit status is capture's. (Real packets: test/e2e TestCaptureBothEnds.)
func TestCaptureRuns(t *testing.T) {
	testutil.RequireRoot(t) // entering a namespace, even our own, needs CAP_SYS_ADMIN
	fakeTcpdump(t)

	out, _, done := runCapture(context.Background(), captureDaemon(t, "ptv-1"), "a", "-c", "2", "--", "-e", "icmp")
	if err := waitErr(t, done); err != nil || out.String() != "args: -n -l -i eth0 -c 2 -e icmp\n" {
		t.Errorf("one side: %v, output %q", err, out.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut, done := runCapture(ctx, captureDaemon(t, "ptv-1"), "a", "--host-end")
	if got, ok := eventually(func() (string, bool) {
		s := errOut.String()
		return s, strings.Contains(s, "eth0  | listening") && strings.Contains(s, "ptv-1 | listening")
	}); !ok {
		t.Fatalf("both sides did not start: %q", got)
	}
	cancel() // Ctrl-C
	err := waitErr(t, done)
	for _, want := range []string{"eth0  | args: -n -l -i eth0\n", "ptv-1 | args: -n -l -i ptv-1\n", "eth0  | stopped\n", "ptv-1 | stopped\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("after Ctrl-C, no %q in:\n%s", want, out.String())
		}
	}
	if err != nil {
		t.Errorf("Ctrl-C: %v, want exit 0", err)
	}

	out, errOut, done = runCapture(context.Background(), captureDaemon(t, "fail0"), "a", "--host-end")
	err = waitErr(t, done)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Errorf("a side that fails: %v, want tcpdump's exit status 3", err)
	}
	if !strings.Contains(out.String(), "eth0  | stopped\n") || !strings.Contains(errOut.String(), "fail0 | fail0: no such device\n") {
		t.Errorf("a side that fails does not stop the other:\n%s%s", out.String(), errOut.String())
	}
}

func eventually(check func() (string, bool)) (string, bool) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, ok := check()
		if ok || time.Now().After(deadline) {
			return s, ok
		}
		time.Sleep(10 * time.Millisecond)
	}
}
