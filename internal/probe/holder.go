package probe

// Who holds a host port. When the daemon cannot bind a port a mapping
// wants, it names the process in the way: the socket's inode from the
// kernel's socket tables, then the process with a descriptor on it.
//
// Both families' tables are read. A server on [::]:8080 is listed only in
// tcp6, even when it also takes IPv4 (a dual-stack socket, IPV6_V6ONLY
// off, the default for most servers), so reading only /proc/net/tcp left
// it as "a process".

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Socket is one line of /proc/net/{tcp,udp}{,6}.
type Socket struct {
	Proto string // tcp or udp
	// Local is the address and port the socket is bound to. A v6 socket's
	// address stays a v6 address (:: or ::ffff:198.51.100.1).
	Local netip.AddrPort
	State uint8 // the kernel's TCP_* state: 10 is LISTEN, 7 CLOSE (an unconnected UDP socket)
	Inode uint64
}

const tcpListen = 10

// Holder is a process with a descriptor on a socket bound to a port.
type Holder struct {
	PID   int
	Comm  string // /proc/PID/comm: the process's name
	Local netip.AddrPort
}

// String says it for a message: "process 4242 (nginx) on [::]:8080".
func (h Holder) String() string {
	return fmt.Sprintf("process %d (%s) on %s", h.PID, h.Comm, h.Local)
}

// PortHolder finds a process holding a proto (tcp, udp) socket bound to
// port where it overlaps addr: the same address, or either side's
// wildcard (an invalid addr means every address of both families). A
// listening TCP socket and an exact address are preferred over other
// matches. It reads the socket tables of the calling thread's network
// namespace (/proc/thread-self/net: /proc/net follows the process's main
// thread, which is in another namespace when the caller entered one).
// ok is false when no socket or no process is found.
func PortHolder(proto string, addr netip.Addr, port uint16) (h Holder, ok bool) {
	if proto != "tcp" && proto != "udp" {
		return Holder{}, false
	}
	var socks []Socket
	for _, name := range []string{proto, proto + "6"} {
		f, err := os.Open("/proc/thread-self/net/" + name)
		if err != nil {
			continue // no IPv6 in this kernel: no tcp6
		}
		s, _ := ParseSockets(f, proto)
		f.Close()
		socks = append(socks, s...)
	}
	best, bestRank := Socket{}, -1
	for _, s := range socks {
		if r := rank(s, addr, port); r > bestRank && s.Inode != 0 {
			best, bestRank = s, r
		}
	}
	if bestRank < 0 {
		return Holder{}, false
	}
	pid, comm, ok := socketOwner(best.Inode)
	if !ok {
		return Holder{}, false
	}
	return Holder{PID: pid, Comm: comm, Local: best.Local}, true
}

// rank says how well s explains a failed bind of addr:port, -1 not at all.
func rank(s Socket, addr netip.Addr, port uint16) int {
	if s.Local.Port() != port {
		return -1
	}
	r := 0
	if s.Proto == "tcp" && s.State == tcpListen {
		r += 4
	}
	sa := s.Local.Addr()
	want := addr.Unmap().WithZone("") // the tables have no zones
	switch {
	case !addr.IsValid():
		// Every address: any socket on the port is in the way.
	case sa.Unmap() == want:
		r += 2
	case sa.IsUnspecified() && (sa.Is4() == want.Is4() || sa.Is6()):
		// 0.0.0.0 covers every v4 address; :: every v6 address, and the v4
		// ones too unless it is IPV6_V6ONLY (which the table does not say).
		r++
	case want.IsUnspecified() && (want.Is4() == sa.Unmap().Is4()):
		// Binding the wildcard collides with every address of its family.
	default:
		return -1
	}
	return r
}

// ParseSockets reads a /proc/net/{tcp,udp}{,6} table. Addresses are
// written as 32-bit words in the host's byte order, each printed as hex.
func ParseSockets(r io.Reader, proto string) ([]Socket, error) {
	var out []Socket
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		local, err := parseHexAddrPort(f[1])
		if err != nil {
			return out, fmt.Errorf("%s line %q: %w", proto, sc.Text(), err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return out, fmt.Errorf("%s line %q: state: %w", proto, sc.Text(), err)
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return out, fmt.Errorf("%s line %q: inode: %w", proto, sc.Text(), err)
		}
		out = append(out, Socket{Proto: proto, Local: local, State: uint8(st), Inode: ino})
	}
	return out, sc.Err()
}

// parseHexAddrPort parses "0100007F:1F90" or
// "00000000000000000000000000000000:1F90".
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q has no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port of %q: %w", s, err)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q is not 8 or 32 hex digits", a)
	}
	// Each group of 4 bytes is a word the kernel printed with %08X: put
	// it back into memory order.
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// socketOwner finds the process with a descriptor on socket inode ino.
func socketOwner(ino uint64) (pid int, comm string, ok bool) {
	want := "socket:[" + strconv.FormatUint(ino, 10) + "]"
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fds, _ := os.ReadDir(filepath.Join(p, "fd"))
		for _, fd := range fds {
			if t, err := os.Readlink(filepath.Join(p, "fd", fd.Name())); err == nil && t == want {
				c, _ := os.ReadFile(filepath.Join(p, "comm"))
				pid, _ := strconv.Atoi(filepath.Base(p))
				return pid, strings.TrimSpace(string(c)), true
			}
		}
	}
	return 0, "", false
}
