// Package netns creates, pins, opens and enters network namespaces.
//
// A pontoon sandbox's namespace is kept alive by a bind mount of
// /proc/<pid>/task/<tid>/ns/net onto a file under the daemon's netns
// directory (the "pin"), exactly as `ip netns add` does under /run/netns.
//
// Code that enters a namespace runs on a goroutine locked to its OS thread;
// if switching back fails, the thread stays locked so the Go runtime throws
// it away rather than reuse a thread in the wrong namespace (see
// containernetworking/plugins pkg/ns README for the full story).
package netns

// Functions (implemented in netns_linux.go):
//
//	EnsureDir(dir string) error
//	    Creates dir and makes it a shared bind mount of itself (as iproute2
//	    does for /run/netns), so pins made in it propagate to mount
//	    namespaces made later (e.g. `ip netns exec`).
//	Create(path string) error
//	    New namespace, lo up inside it, pinned at path. Fails if path exists.
//	Delete(path string) error
//	    Unmounts (MNT_DETACH) and removes the pin. Missing is success.
//	IsPinned(path string) bool
//	Pins(dir string) ([]string, error)   // full paths of pins in dir
//	Do(path string, fn func() error) error
//	    Runs fn on a locked OS thread inside the namespace at path.
//	Same(a, b string) (bool, error)
//	    Whether two paths refer to the same namespace (dev+inode).
