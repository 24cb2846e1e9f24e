// Package testutil has helpers for tests that need root and a kernel: each
// such test runs in network namespaces it creates and removes itself, so the
// machine's own namespace, firewall and /etc are never touched.
package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips the test unless it runs as root (kernel tests create
// namespaces, links and nftables tables).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (CI runs tests as root)")
	}
}

// NewNetns creates a fresh network namespace with lo up, pinned at a file in
// a temporary directory, and removes it when the test ends. It returns the
// pin's path.
func NewNetns(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ns")
	if err := pinNew(path); err != nil {
		t.Fatalf("create test netns: %v", err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
	})
	return path
}

// PinNewNetns pins a fresh namespace (lo up) at path, which must not be a
// mount point; it is unmounted when the test ends.
func PinNewNetns(t testing.TB, path string) {
	t.Helper()
	RequireRoot(t)
	if err := pinNew(path); err != nil {
		t.Fatalf("pin a new netns at %s: %v", path, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(path, unix.MNT_DETACH) })
}

// pinNew creates a namespace on a throwaway locked thread and bind-mounts it
// at path. The thread is never unlocked, so the runtime discards it instead
// of reusing a thread left in the new namespace.
func pinNew(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind %s: %w", src, err)
			return
		}
		errc <- setLoUp()
	}()
	if err := <-errc; err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
		return err
	}
	return nil
}

func setLoUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// InNetns runs fn on a locked OS thread that has joined the namespace at
// path. Processes fn starts (exec.Command) inherit that namespace. The
// thread is discarded afterwards.
func InNetns(t testing.TB, path string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
