package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"pontoon/internal/api"
)

func TestParseLocks(t *testing.T) {
	text := `1: POSIX  ADVISORY  WRITE 700 fe:00:9986029 0 EOF
2: FLOCK  ADVISORY  WRITE 16944 fe:00:9986029 0 EOF
2: -> FLOCK  ADVISORY  WRITE 17000 fe:00:9986029 0 EOF
3: FLOCK  ADVISORY  WRITE 555 00:2c:12 0 EOF
`
	for _, c := range []struct {
		major, minor uint32
		ino          uint64
		want         int
	}{
		{0xfe, 0, 9986029, 16944}, // the POSIX lock and the waiter are not the holder
		{0, 0x2c, 12, 555},
		{0, 0x2c, 13, 0},
	} {
		if got := parseLocks(text, c.major, c.minor, c.ino); got != c.want {
			t.Errorf("parseLocks(%x:%x:%d) = %d, want %d", c.major, c.minor, c.ino, got, c.want)
		}
	}
}

// A second lock on a directory is refused with an error naming the PID that
// holds it (here this test's own: flock locks belong to open files, so a
// second open in one process conflicts like a second process does).
func TestLockDirNamesHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "netns")
	f, created, err := lockDir(dir, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(created) != 2 || created[0] != filepath.Dir(dir) || created[1] != dir {
		t.Fatalf("created %v, want the two directories outermost first", created)
	}
	_, created, err = lockDir(dir, 0o755)
	if err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), "--netns-dir "+dir) || len(created) != 0 {
		t.Fatalf("second lock: %v (created %v), want an error naming pid %d", err, created, os.Getpid())
	}
	if pid, held, err := flockHeld(dir); err != nil || !held || pid != os.Getpid() {
		t.Fatalf("flockHeld = %d %v %v", pid, held, err)
	}
	f.Close()
	if _, held, err := flockHeld(dir); err != nil || held {
		t.Fatalf("after unlock: held %v, %v", held, err)
	}
	if _, held, err := flockHeld(filepath.Join(dir, "missing")); err != nil || held {
		t.Fatalf("a missing path: held %v, %v", held, err)
	}
}

// fakeStatus serves GET /v1/status with pid on a unix socket.
func fakeStatus(t *testing.T, path string, pid int) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.Status{Ready: true, PID: pid, Version: api.Version})
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
}

// snapshot lists every path under dir, to compare before and after.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		out = append(out, p)
		return err
	})
	return strings.Join(out, "\n")
}

// A start that is refused — by a lock on --netns-dir, on --root, or a daemon
// on --socket — changes nothing on disk, and says who holds what.
func TestRunRefusedChangesNothing(t *testing.T) {
	base := t.TempDir()
	netnsDir := filepath.Join(base, "held-netns")
	nsLock, _, err := lockDir(netnsDir, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer nsLock.Close()
	heldRoot := filepath.Join(base, "held-root")
	rootLock, _, err := lockDir(heldRoot, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	rootLock.Close()
	// bbolt locks the state file itself.
	stateLock, err := os.Create(filepath.Join(heldRoot, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	defer stateLock.Close()
	if err := flockFile(stateLock); err != nil {
		t.Fatal(err)
	}
	busySocket := filepath.Join(base, "busy.sock")
	fakeStatus(t, busySocket, 4242)

	fresh := func(name string) string { return filepath.Join(base, "new", name) }
	for _, c := range []struct {
		name string
		opts func(o *Options)
		want []string
	}{
		{"netns-dir", func(o *Options) { o.NetnsDir = netnsDir },
			[]string{"--netns-dir " + netnsDir + " is in use by", "pid " + strconv.Itoa(os.Getpid()), "delete each other's sandboxes"}},
		{"root", func(o *Options) { o.Root = heldRoot },
			[]string{"--root " + heldRoot + " is in use by", "pid " + strconv.Itoa(os.Getpid()), filepath.Join(heldRoot, stateFile)}},
		{"socket", func(o *Options) { o.Socket = busySocket },
			[]string{"pontoon daemon pid 4242 is listening on " + busySocket}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Root, o.Socket, o.NetnsDir, o.EtcNetnsDir = fresh("root"), fresh("run/pontoon.sock"), fresh("run/netns"), fresh("etc-netns")
			o.DNS = "192.0.2.1:53" // never used: the start is refused first
			c.opts(&o)
			before := snapshot(t, base)
			err := Run(context.Background(), o, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("Run succeeded, want it refused")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if after := snapshot(t, base); after != before {
				t.Errorf("a refused start changed the disk:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// When a step after --root was created fails, the start undoes it.
func TestRunFailureUndoesWhatItCreated(t *testing.T) {
	base := t.TempDir()
	blocker := filepath.Join(base, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Root, o.Socket, o.EtcNetnsDir = filepath.Join(base, "root"), filepath.Join(base, "run", "pontoon.sock"), filepath.Join(base, "etc-netns")
	o.NetnsDir = filepath.Join(blocker, "netns") // cannot be created: its parent is a file
	o.DNS = "192.0.2.1:53"
	before := snapshot(t, base)
	err := Run(context.Background(), o, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "namespace directory") {
		t.Fatalf("Run: %v, want a namespace directory error", err)
	}
	if after := snapshot(t, base); after != before {
		t.Errorf("a failed start left things behind:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func flockFile(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }
