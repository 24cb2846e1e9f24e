package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"pontoon/internal/model"
)

// probePorts refuses a mapping whose host port a process on the host
// already uses: DNAT in prerouting would silently take its traffic. It
// tries to bind each port in the daemon's namespace (the host's) and, when
// that fails, names the process that holds it.
//
// A mapping bound to an address the host does not have is refused too:
// the kernel would never deliver a packet for it (bind says EADDRNOTAVAIL).
func probePorts(m model.PortMapping) error {
	if m.HostIP.IsValid() {
		l, err := net.Listen("tcp4", netip.AddrPortFrom(m.HostIP, 0).String())
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return model.Invalidf("host address %s of mapping %s is not an address of this host: give one of the host's addresses, or leave it out to publish on all of them", m.HostIP, m)
		}
		if err == nil {
			l.Close()
		}
	}
	if m.Proto == "sctp" {
		return nil // no portable bind probe; pontoon's own conflicts are still checked
	}
	ip := m.HostIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	for p := int(m.HostPort); p <= int(m.HostPortEnd); p++ {
		addr := netip.AddrPortFrom(ip, uint16(p)).String()
		var err error
		if m.Proto == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp4", addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp4", addr); err == nil {
				l.Close()
			}
		}
		if err != nil && errors.Is(err, syscall.EADDRINUSE) {
			return model.Conflictf("host port %d/%s is in use by %s on the host: stop it or publish another host port", p, m.Proto, holder(m.Proto, p))
		}
	}
	return nil
}

// holder finds the process owning a socket bound to port: the socket's
// inode from /proc/net/{tcp,udp}, then the process with that fd.
func holder(proto string, port int) string {
	data, err := os.ReadFile("/proc/net/" + proto)
	if err != nil {
		return "a process"
	}
	hexPort := fmt.Sprintf(":%04X", port)
	inode := ""
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], hexPort) {
			inode = f[9]
			break
		}
	}
	if inode == "" {
		return "a process"
	}
	want := "socket:[" + inode + "]"
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fds, _ := os.ReadDir(filepath.Join(p, "fd"))
		for _, fd := range fds {
			if t, err := os.Readlink(filepath.Join(p, "fd", fd.Name())); err == nil && t == want {
				comm, _ := os.ReadFile(filepath.Join(p, "comm"))
				pid, _ := strconv.Atoi(filepath.Base(p))
				return fmt.Sprintf("process %d (%s)", pid, strings.TrimSpace(string(comm)))
			}
		}
	}
	return "a process"
}
