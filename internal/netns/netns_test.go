package netns_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
	"pontoon/internal/testutil"
)

// nsID identifies the namespace of a namespace file (pin or /proc link).
func nsID(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// mainNetns is the namespace of the process's main thread before any test
// ran: /proc/self/ns/net, what other programs see as the daemon's.
var mainNetns string

func TestMain(m *testing.M) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err == nil {
		mainNetns = fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
	os.Exit(m.Run())
}

// ownNetns is the namespace of a thread running Go code now (the main
// thread may be parked in another one if something left it there).
func ownNetns(t *testing.T) string {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return nsID(t, "/proc/thread-self/ns/net")
}

func TestKernelCreateDelete(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "netns")
	if err := netns.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	// Idempotent: a second call neither fails nor stacks a second mount.
	if err := netns.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 6 && f[4] == dir {
			mounts = append(mounts, line)
		}
	}
	if len(mounts) != 1 || !strings.Contains(mounts[0], "shared:") {
		t.Fatalf("%s mounts: %q", dir, mounts)
	}

	p := filepath.Join(dir, "sb")
	if err := netns.Create(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Delete(p) })
	if !netns.IsPinned(p) {
		t.Fatal("not pinned")
	}
	if err := netns.Create(p); err == nil {
		t.Fatal("second Create on the same pin succeeded")
	}
	if !netns.IsPinned(p) {
		t.Fatal("a failed Create undid the existing pin")
	}
	if same, err := netns.Same(p, p); err != nil || !same {
		t.Fatalf("Same(p, p) = %v, %v", same, err)
	}
	runtime.LockOSThread()
	same, err := netns.Same(p, "/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	if err != nil || same {
		t.Fatalf("Same(new, own) = %v, %v", same, err)
	}
	// Interfaces made in it take no router advertisements.
	err = netns.Do(p, func() error {
		if out, err := exec.Command("ip", "link", "add", "ra0", "type", "veth", "peer", "name", "ra1").CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, f := range []string{"default/accept_ra", "default/autoconf", "ra0/accept_ra", "ra0/autoconf", "ra1/accept_ra"} {
			b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + f)
			if err != nil {
				return err
			}
			if v := strings.TrimSpace(string(b)); v != "0" {
				return fmt.Errorf("net.ipv6.conf.%s is %s in a new namespace, want 0", strings.ReplaceAll(f, "/", "."), v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pins, err := netns.Pins(dir)
	if err != nil || len(pins) != 1 || pins[0] != p {
		t.Fatalf("Pins = %v, %v", pins, err)
	}
	h, err := netns.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := netns.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Equal(h2) {
		t.Error("two Opens of one pin differ")
	}
	h.Close()
	h2.Close()

	for range 2 {
		if err := netns.Delete(p); err != nil {
			t.Fatal(err)
		}
	}
	if netns.IsPinned(p) {
		t.Fatal("still pinned")
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin file left: %v", err)
	}
	if _, err := netns.Open(p); err == nil {
		t.Error("Open of a deleted pin succeeded")
	}
}

func TestKernelDo(t *testing.T) {
	testutil.RequireRoot(t)
	p := filepath.Join(t.TempDir(), "sb")
	if err := netns.Create(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Delete(p) })
	want := nsID(t, p)
	var inside, out string
	if err := netns.Do(p, func() error {
		inside = nsID(t, "/proc/thread-self/ns/net")
		// Children inherit the thread's namespace.
		b, err := exec.Command("ip", "-o", "link", "show", "lo").CombinedOutput()
		out = string(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside != want {
		t.Errorf("Do ran in %s, want %s", inside, want)
	}
	if !strings.Contains(out, "UP") {
		t.Errorf("lo is not up in a new namespace: %s", out)
	}
	if own := ownNetns(t); own == want {
		t.Error("the caller's thread is in the sandbox's namespace")
	}
	boom := errors.New("boom")
	if err := netns.Do(p, func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := netns.Do(filepath.Join(t.TempDir(), "missing"), func() error { return nil }); err == nil {
		t.Error("Do in a missing namespace succeeded")
	}
	// A file that is not a namespace.
	plain := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(plain, nil, 0o644)
	if netns.IsPinned(plain) {
		t.Error("IsPinned on a plain file")
	}
	if err := netns.Do(plain, func() error { return nil }); err == nil {
		t.Error("Do in a plain file succeeded")
	}
}

// Create and Do return their threads to the original namespace: a thread
// left in a sandbox's namespace is parked for good when it is the main one,
// and the process then looks, from outside, like it lives in the sandbox.
func TestKernelThreadsComeBack(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			p := filepath.Join(dir, fmt.Sprint(i))
			if err := netns.Create(p); err != nil {
				t.Error(err)
				return
			}
			defer netns.Delete(p)
			if err := netns.Do(p, func() error { return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := nsID(t, "/proc/self/ns/net"); got != mainNetns {
		t.Errorf("the main thread is in namespace %s, was %s", got, mainNetns)
	}
	if got := ownNetns(t); got != mainNetns {
		t.Errorf("a running thread is in namespace %s, want %s", got, mainNetns)
	}
}
