package api

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A socket that refuses this user reads as a permission problem with what
// to do, not as a dead daemon. (The end-to-end test runs the CLI as an
// unprivileged user; this one checks each wording.)
func TestPermissionError(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "pontoon.sock")
	if err := os.WriteFile(sock, nil, 0o660); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o660); err != nil {
		t.Fatal(err)
	}
	cause := &os.SyscallError{Syscall: "connect", Err: syscall.EACCES}
	check := func(err error, want ...string) {
		t.Helper()
		if !errors.Is(err, ErrPermission) || !errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrUnavailable) {
			t.Errorf("%v: want ErrPermission and fs.ErrPermission, not ErrUnavailable", err)
		}
		if !errors.Is(err, syscall.EACCES) {
			t.Errorf("%v: the cause is lost", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not say %q", err, w)
			}
		}
	}
	gid := os.Getgid()
	switch {
	case gid == 0:
		check(permissionError(sock, cause), "permission denied on the pontoon daemon's socket "+sock, "mode 0660, root's", "--group GROUP")
	default:
		name := strconv.Itoa(gid)
		if g, err := user.LookupGroupId(name); err == nil {
			name = g.Name
		}
		check(permissionError(sock, cause), "mode 0660, group "+name, "join group "+name)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(sock, -1, 65534); err == nil {
			name := "65534"
			if g, err := user.LookupGroupId(name); err == nil {
				name = g.Name
			}
			check(permissionError(sock, cause), "mode 0660, group "+name, "usermod -aG "+name)
		}
	}
	check(permissionError(filepath.Join(dir, "closed", "pontoon.sock"), cause), "a directory on its path is closed to you", "run the command as root")
}
