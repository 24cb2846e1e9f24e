package link

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Some per-interface settings have no netlink request to set them: the
// kernel takes only an IPv6 token and addr_gen_mode in IFLA_AF_SPEC
// (inet6_set_link_af; IFLA_INET6_CONF is read-only), so accept_ra and
// autoconf are written under /proc/sys/net/ipv6/conf. /proc/sys/net shows
// the network namespace of the thread that opens the file: these functions
// are called on a thread inside the namespace concerned (doIn), never from
// an arbitrary goroutine — which would write the daemon's host settings, or
// in a test the machine's.

// errNoIPv6 is wrapped by noAutoconf when the kernel has no IPv6
// (ipv6.disable=1: no /proc/sys/net/ipv6).
var errNoIPv6 = errors.New("the kernel has IPv6 disabled (ipv6.disable=1)")

const ipv6Conf = "/proc/sys/net/ipv6/conf/"

// noAutoconf turns off router advertisements (accept_ra=0) and address
// autoconfiguration from them (autoconf=0) on the link ifname of the
// calling thread's namespace. Each is one small write (~10 µs); they are
// made only for links that carry IPv6.
func noAutoconf(ifname string) error {
	for _, key := range []string{"accept_ra", "autoconf"} {
		if err := writeSysctl(ipv6Conf+ifname+"/"+key, "0"); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Stat(ipv6Conf); errors.Is(serr, fs.ErrNotExist) {
					return fmt.Errorf("turn off router advertisements on %s: %w", ifname, errNoIPv6)
				}
			}
			return fmt.Errorf("turn off router advertisements on %s: %w", ifname, err)
		}
	}
	return nil
}

// writeSysctl writes value to a /proc/sys file of the calling thread's
// namespace.
func writeSysctl(path, value string) error {
	// No O_CREATE, no O_TRUNC: /proc/sys files exist or do not.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readSysctl reads a /proc/sys file of the calling thread's namespace,
// without its newline.
func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// inSelf runs fn on a thread inside the adapter's namespace (the one New
// ran in), for /proc/sys: the goroutine calling a method may run on any
// thread, and only the daemon's threads are all in that namespace.
func (n *netlinkLinks) inSelf(fn func() error) error {
	_, err := doIn(n.self, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}
