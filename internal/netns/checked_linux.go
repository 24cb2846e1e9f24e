package netns

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DoChecked is Do on the namespace at path, after checking on the opened
// file that it is the namespace with identity ino (0: any). Sockets fn
// opens belong to that namespace for their lifetime.
func DoChecked(path string, ino uint64, fn func() error) error {
	h, err := OpenChecked(path, ino)
	if err != nil {
		return err
	}
	defer h.Close()
	return onThreadIn(func() error {
		if err := unix.Setns(int(h), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter network namespace %s: %w", path, err)
		}
		return nil
	}, fn)
}
