package netns

import (
	"errors"
	"fmt"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrGone says that a namespace is not there any more, or that its path now
// names a different one: the process it belonged to exited and its PID was
// reused, or the path was unmounted and pinned again. Callers never enter
// such a namespace: it is not the sandbox's.
var ErrGone = errors.New("network namespace is gone or was replaced")

// ident is a namespace's identity: the nsfs device and inode of its file,
// which stay the same for as long as the namespace lives, whatever path
// names it.
func ident(st *unix.Stat_t) uint64 { return st.Dev<<32 ^ st.Ino }

// Ino returns the identity of the namespace at path (device and inode of its
// nsfs file), or an error when path is not a network namespace.
func Ino(path string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, fmt.Errorf("%s: %w (%w)", path, ErrGone, err)
	}
	if fs.Type != nsfsMagic {
		return 0, fmt.Errorf("%s is not a namespace file (nsfs): %w", path, ErrGone)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("%s: %w (%w)", path, ErrGone, err)
	}
	return ident(&st), nil
}

// OpenChecked opens the namespace at path and checks, on the open file, that
// it is the namespace with identity want (0: any namespace). Checking the
// open descriptor rather than the path leaves no window in which the path
// could come to name another namespace between the check and the use.
func OpenChecked(path string, want uint64) (vnetns.NsHandle, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return vnetns.None(), fmt.Errorf("open network namespace %s: %w", path, ErrGone)
		}
		return vnetns.None(), fmt.Errorf("open network namespace %s: %w", path, err)
	}
	var fs unix.Statfs_t
	var st unix.Stat_t
	if err := unix.Fstatfs(fd, &fs); err != nil || fs.Type != nsfsMagic {
		unix.Close(fd)
		return vnetns.None(), fmt.Errorf("%s is not a network namespace: %w", path, ErrGone)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return vnetns.None(), fmt.Errorf("stat network namespace %s: %w", path, err)
	}
	if want != 0 && ident(&st) != want {
		unix.Close(fd)
		return vnetns.None(), fmt.Errorf("%s names another namespace than the sandbox's: %w", path, ErrGone)
	}
	return vnetns.NsHandle(fd), nil
}
