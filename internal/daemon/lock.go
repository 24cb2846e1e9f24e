package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"pontoon/internal/api"
)

// A daemon owns three places: its state file (under --root), its socket
// (--socket) and its pin directory (--netns-dir). Two daemons sharing any
// of them break each other — sharing --netns-dir, the second one's
// start-up garbage collection deletes the first one's pins, and with them
// its sandboxes. So each is locked for as long as the daemon runs:
//
//   - the state file by bbolt's flock (store.Open);
//   - the pin directory by an flock on the directory itself (lockDir): it
//     stays the same inode when it is bind-mounted on itself, so a daemon
//     that finds it already mounted locks the same thing;
//   - the socket by a daemon answering on it (Listen).
//
// A start that is refused must leave the disk as it was, so Run first
// checks all three without changing anything (preflight), and then takes
// them, undoing what it created if one was taken meanwhile (undo).

// preflight reports, without changing anything on disk, why this daemon
// cannot start on opts' paths: another daemon answers on the socket, or
// holds the state file or the pin directory.
func preflight(opts Options) error {
	if err := socketFree(opts.Socket); err != nil {
		return err
	}
	state := filepath.Join(opts.Root, stateFile)
	if pid, held, err := flockHeld(state); err != nil {
		return fmt.Errorf("check the lock of state file %s: %w", state, err)
	} else if held {
		return fmt.Errorf("--root %s is in use by %s, which holds the lock on %s: stop it, or give this daemon its own --root", opts.Root, describeHolder(pid), state)
	}
	if pid, held, err := flockHeld(opts.NetnsDir); err != nil {
		return fmt.Errorf("check the lock of --netns-dir %s: %w", opts.NetnsDir, err)
	} else if held {
		return netnsDirBusy(opts.NetnsDir, pid)
	}
	return nil
}

// stateFile is the bbolt file under --root.
const stateFile = "pontoon.db"

func netnsDirBusy(dir string, pid int) error {
	return fmt.Errorf("--netns-dir %s is in use by %s, which holds the lock on it: two daemons on one pin directory delete each other's sandboxes; stop it, or give this daemon its own --netns-dir", dir, describeHolder(pid))
}

// socketFree reports an error when a daemon answers on path, naming its
// PID when it answers the status route.
func socketFree(path string) error {
	c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err != nil {
		return nil // nobody listens: a stale socket file is replaced by Listen
	}
	c.Close()
	who := "another daemon"
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if st, err := api.NewClient(path).Status(ctx); st != nil && st.PID > 0 && (err == nil || errors.Is(err, api.ErrUnavailable)) {
		who = "pontoon daemon pid " + strconv.Itoa(st.PID)
	}
	return fmt.Errorf("%s is listening on %s: stop it, or give this daemon another --socket", who, path)
}

// flockHeld reports whether another open file description holds an flock
// on path (a file or a directory), and the PID that took it when
// /proc/locks tells. A path that does not exist is not held.
func flockHeld(path string) (pid int, held bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return 0, false, nil // nobody can hold what does not exist
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close() // drops the probe's lock, if it got one
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return 0, false, nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return 0, false, err
	}
	return flockHolder(f), true, nil
}

// lockDir creates dir if needed and takes an exclusive flock on it, held
// until the returned file is closed. created lists the directories it made
// (for undo). A held lock is an error naming its holder.
func lockDir(dir string, perm os.FileMode) (f *os.File, created []string, err error) {
	created, err = mkdirAll(dir, perm)
	if err != nil {
		return nil, created, err
	}
	f, err = os.Open(dir)
	if err != nil {
		return nil, created, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid := flockHolder(f)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, created, netnsDirBusy(dir, pid)
		}
		return nil, created, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, created, nil
}

// flockHolder returns the PID /proc/locks gives for an flock on f's inode
// (0 when none is listed: /proc/locks shows PIDs of this PID namespace).
func flockHolder(f *os.File) int {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	return parseLocks(string(data), unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
}

// parseLocks finds the PID holding an flock on the inode (major:minor:ino)
// in /proc/locks text, whose lines read
//
//	1: FLOCK  ADVISORY  WRITE 16944 fe:00:9986029 0 EOF
//
// (device numbers in hex; waiters' lines have "->" after the number).
func parseLocks(text string, major, minor uint32, ino uint64) int {
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// describeHolder names the process holding a lock: "pontoon daemon pid
// 123", "pid 123 (comm)" or "another process".
func describeHolder(pid int) string {
	if pid <= 0 {
		return "another process"
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	name := strings.TrimSpace(string(comm))
	switch {
	case err != nil:
		return fmt.Sprintf("pid %d", pid)
	case name == "pontoon":
		return fmt.Sprintf("pontoon daemon pid %d", pid)
	}
	return fmt.Sprintf("pid %d (%s)", pid, name)
}

// mountedAt reports whether path is a mount point in this mount namespace.
func mountedAt(path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	clean := filepath.Clean(path)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == clean {
			return true
		}
	}
	return false
}

// lookupGroup resolves --group (a group name or a numeric GID) to a GID;
// -1 for "".
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if g, err := user.LookupGroup(name); err == nil {
		return strconv.Atoi(g.Gid)
	}
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	return 0, fmt.Errorf("--group %q: no such group (create it with `groupadd %s`, or give a numeric GID)", name, name)
}

// mkdirAll is os.MkdirAll that returns the directories it created,
// outermost first.
func mkdirAll(dir string, perm os.FileMode) ([]string, error) {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], perm); err != nil && !errors.Is(err, os.ErrExist) {
			return created, fmt.Errorf("create %s: %w", missing[i], err)
		} else if err == nil {
			created = append(created, missing[i])
		}
	}
	return created, nil
}

// undo runs, last added first, what puts back the disk as it was before a
// start that failed.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }

func (u *undo) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}

// removeCreated removes directories mkdirAll created, innermost first.
// Each must be empty, unless all: then it goes with its contents (for
// --root, whose files this start made).
func removeCreated(created []string, all bool) func() {
	return func() {
		for i := len(created) - 1; i >= 0; i-- {
			if all {
				_ = os.RemoveAll(created[i])
			} else {
				_ = os.Remove(created[i])
			}
		}
	}
}
