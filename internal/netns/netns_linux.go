package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// EnsureDir creates dir and makes it a shared bind mount of itself, as
// iproute2 does for /run/netns, so that pins made in it propagate to mount
// namespaces made later (`ip netns exec`, a container runtime's).
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if !isMountPoint(dir) {
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s on itself: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether path is listed as a mount point of this
// mount namespace.
func isMountPoint(path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	clean := filepath.Clean(path)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == clean {
			return true
		}
	}
	return false
}

// Create makes a new network namespace with lo up and pins it at path.
// Interfaces made in it later accept no IPv6 router advertisements and
// autoconfigure no addresses from them (noRouterAdverts).
func Create(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("namespace pin %s already exists", path)
		}
		return fmt.Errorf("create pin file: %w", err)
	}
	f.Close()
	unshare := func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		return nil
	}
	err = onThreadIn(unshare, func() error {
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin namespace at %s: %w", path, err)
		}
		if err := noRouterAdverts(); err != nil {
			return err
		}
		return loUp()
	})
	if err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return err
	}
	return nil
}

// onThreadIn runs fn on a goroutine locked to its OS thread after enter
// has moved that thread to another network namespace (setns or unshare),
// then moves the thread back and unlocks it.
//
// Moving back matters even though a locked goroutine that exits takes its
// thread with it: the runtime cannot end the main thread, so when the
// goroutine runs there it parks that thread for good instead, still in the
// sandbox's namespace. /proc/<daemon pid>/ns/net then names the sandbox's
// namespace (what `nsenter -t PID -n` and `ip netns identify PID` read),
// and the namespace outlives its pin until the daemon exits. Seen in
// netns tests. Only when moving back fails is the thread left locked, to
// be thrown away.
func onThreadIn(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := enter(); err != nil {
			runtime.UnlockOSThread() // setns and unshare change nothing when they fail
			errc <- err
			return
		}
		err = fn()
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("return to the original network namespace: %w", serr))
			return // still locked: the runtime discards the thread
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// noRouterAdverts sets net.ipv6.conf.default.accept_ra and .autoconf to 0
// in the calling thread's namespace (a new one: /proc/sys/net shows the
// namespace of the thread that opens the file). Every interface made there
// later copies them: a sandbox never takes a route or an address from a
// router advertisement another sandbox sends over the bridge — IPv4-only
// endpoints included, which have IPv6 on but no address (pontoon's link
// adapter sets both per interface too, for namespaces it did not make).
// Without IPv6 in the kernel there is nothing to turn off.
func noRouterAdverts() error {
	for _, key := range []string{"accept_ra", "autoconf"} {
		path := "/proc/sys/net/ipv6/conf/default/" + key
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil // no IPv6 (ipv6.disable=1)
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		_, err = f.WriteString("0\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// loUp brings lo up in the calling thread's namespace with one ioctl.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// Delete unmounts and removes a pin. A missing pin is success. The kernel
// destroys the namespace (and the veth ends in it) once nothing else holds
// it.
func Delete(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace pin %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace pin %s: %w", path, err)
	}
	return nil
}

// nsfsMagic is NSFS_MAGIC from linux/magic.h.
const nsfsMagic = 0x6e736673

// IsPinned reports whether path is a namespace file (a live pin).
func IsPinned(path string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && fs.Type == nsfsMagic
}

// Pins lists the files in dir (pins and leftovers that failed to pin).
func Pins(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() || e.Type() == 0 {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// Open returns a handle on the namespace at path.
func Open(path string) (vnetns.NsHandle, error) {
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		return vnetns.None(), fmt.Errorf("open network namespace %s: %w", path, err)
	}
	return h, nil
}

// Do runs fn on a locked OS thread inside the namespace at path; child
// processes fn starts inherit the namespace. The thread returns to its
// namespace afterwards (see onThreadIn).
func Do(path string, fn func() error) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	return onThreadIn(func() error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter network namespace %s: %w", path, err)
		}
		return nil
	}, fn)
}

// Same reports whether two paths refer to the same namespace (the same
// nsfs device and inode).
func Same(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}
