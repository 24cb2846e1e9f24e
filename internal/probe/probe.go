// Package probe sends the one real packet `pontoon trace` follows: a TCP
// SYN, a UDP datagram or an ICMP echo request, from inside a sandbox's
// namespace (or the host's), and reports what came back. It is an adapter:
// the only code that opens sockets in a sandbox on pontoon's behalf.
//
// The socket is made and bound first (Open), so that the tracer knows the
// exact 5-tuple before it arms the kernel's tracing; Send then sends, and
// Wait says how the destination answered. A TCP probe is a real connect():
// the kernel sends the SYN, and a connection that completes is reset at
// once (SO_LINGER 0), so the server sees at most a connection that closes.
// A forged source (Spec.Forged) is written whole with IP_HDRINCL through a
// raw socket: no answer can come back to it.
//
// PortHolder (holder.go) answers the other question the daemon asks of
// the host's sockets: which process holds a port a mapping wants.
package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"pontoon/internal/netns"
)

// Spec is the probe to send.
type Spec struct {
	// Netns and Ino locate the sandbox's namespace; "" is the caller's
	// (the daemon's: the host).
	Netns string
	Ino   uint64
	// Src is the source address: the endpoint's own (bound), or with
	// Forged any address, written into a hand-made header.
	Src    netip.Addr
	Forged bool
	Dst    netip.Addr
	Proto  string // tcp, udp, sctp, icmp
	Port   uint16
}

// Probe is an opened probe.
type Probe struct {
	spec    Spec
	fd      int
	SrcPort uint16 // TCP/UDP: the port the socket got
	ICMPID  uint16 // ICMP: the echo identifier
	sent    bool
}

// Answers Wait reports.
const (
	AnswerReply       = "reply"
	AnswerRefused     = "refused"
	AnswerUnreachable = "unreachable"
	AnswerNone        = "none"
)

// Open makes and binds the probe's socket inside the namespace.
func Open(s Spec) (*Probe, error) {
	if !s.Dst.Is4() || !s.Src.Is4() {
		return nil, errors.New("probe: IPv4 source and destination needed")
	}
	p := &Probe{spec: s, fd: -1}
	open := func() error { return p.open() }
	var err error
	if s.Netns == "" {
		err = open()
	} else {
		err = netns.DoChecked(s.Netns, s.Ino, open)
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("probe from %s: %w", s.Src, err)
	}
	return p, nil
}

func random16() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:]) | 1 // never 0: 0 means "any" to the tracer
}

func (p *Probe) open() error {
	s := p.spec
	if s.Forged {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		p.fd = fd
		if s.Proto == "icmp" {
			p.ICMPID = random16()
		} else {
			p.SrcPort = 32768 + random16()%28000
		}
		return nil
	}
	switch s.Proto {
	case "tcp", "udp", "sctp":
		typ, proto := unix.SOCK_STREAM, unix.IPPROTO_TCP
		switch s.Proto {
		case "udp":
			typ, proto = unix.SOCK_DGRAM, unix.IPPROTO_UDP
		case "sctp":
			typ, proto = unix.SOCK_STREAM, unix.IPPROTO_SCTP
		}
		fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
		if err != nil {
			return fmt.Errorf("%s socket: %w", s.Proto, err)
		}
		p.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: s.Src.As4()}); err != nil {
			return fmt.Errorf("bind %s: %w", s.Src, err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		p.SrcPort = uint16(sa.(*unix.SockaddrInet4).Port)
	case "icmp":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP)
		if err != nil {
			return fmt.Errorf("icmp socket: %w", err)
		}
		p.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: s.Src.As4()}); err != nil {
			return fmt.Errorf("bind %s: %w", s.Src, err)
		}
		p.ICMPID = random16()
	default:
		return fmt.Errorf("protocol %q", s.Proto)
	}
	return nil
}

// Describe says what Send sends: "TCP SYN 10.88.0.2:40312 → 10.88.0.3:80".
func (p *Probe) Describe() string {
	s := p.spec
	forged := ""
	if s.Forged {
		forged = " (forged source)"
	}
	switch s.Proto {
	case "icmp":
		return fmt.Sprintf("ICMP echo request %s → %s id %d%s", s.Src, s.Dst, p.ICMPID, forged)
	case "tcp":
		return fmt.Sprintf("TCP SYN %s → %s%s", netip.AddrPortFrom(s.Src, p.SrcPort), netip.AddrPortFrom(s.Dst, s.Port), forged)
	case "sctp":
		return fmt.Sprintf("SCTP INIT %s → %s%s", netip.AddrPortFrom(s.Src, p.SrcPort), netip.AddrPortFrom(s.Dst, s.Port), forged)
	}
	return fmt.Sprintf("UDP datagram %s → %s%s", netip.AddrPortFrom(s.Src, p.SrcPort), netip.AddrPortFrom(s.Dst, s.Port), forged)
}

var payload = []byte("pontoon trace probe\n")

// Send sends the probe (once).
func (p *Probe) Send() error {
	if p.sent {
		return errors.New("probe already sent")
	}
	p.sent = true
	s := p.spec
	dst := &unix.SockaddrInet4{Addr: s.Dst.As4(), Port: int(s.Port)}
	if s.Forged {
		return unix.Sendto(p.fd, p.forged(), 0, &unix.SockaddrInet4{Addr: s.Dst.As4()})
	}
	switch s.Proto {
	case "tcp", "sctp":
		if err := unix.Connect(p.fd, dst); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return p.connectErr(err)
		}
		return nil
	case "udp":
		if err := unix.Connect(p.fd, dst); err != nil {
			return err
		}
		_, err := unix.Write(p.fd, payload)
		return err
	}
	// ICMP: the kernel adds the IP header.
	return unix.Sendto(p.fd, icmpEcho(p.ICMPID), 0, &unix.SockaddrInet4{Addr: s.Dst.As4()})
}

// connectErr turns an immediate connect failure into an answer-like error.
func (p *Probe) connectErr(err error) error {
	return fmt.Errorf("connect %s: %w", netip.AddrPortFrom(p.spec.Dst, p.spec.Port), err)
}

// Wait waits until the destination answers, up to d (or ctx's end), and
// says how: reply (SYN-ACK, a datagram, an echo reply), refused (RST, ICMP
// port unreachable), unreachable (an ICMP error, or no ARP answer), or
// none. The detail says it for people.
func (p *Probe) Wait(ctx context.Context, d time.Duration) (answer, detail string) {
	if p.spec.Forged {
		// The answer, if any, goes to the forged address.
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		return AnswerNone, "no answer can come back to a forged source"
	}
	deadline := time.Now().Add(d)
	buf := make([]byte, 1500)
	for {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return AnswerNone, fmt.Sprintf("no answer within %s", d)
		}
		step := min(left, 20*time.Millisecond)
		switch p.spec.Proto {
		case "tcp", "sctp":
			fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLOUT}}
			if n, _ := unix.Poll(fds, int(step.Milliseconds())+1); n == 0 {
				continue
			}
			serr, _ := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case serr == 0:
				return AnswerReply, "the destination accepted the connection (SYN-ACK): a process listens there"
			case unix.Errno(serr) == unix.ECONNREFUSED:
				return AnswerRefused, "the destination reset the connection: no process listens on the port"
			default:
				return AnswerUnreachable, unix.Errno(serr).Error()
			}
		case "udp":
			fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, int(step.Milliseconds())+1); n == 0 {
				continue
			}
			_, err := unix.Read(p.fd, buf)
			switch {
			case err == nil:
				return AnswerReply, "the destination answered"
			case errors.Is(err, unix.ECONNREFUSED):
				return AnswerRefused, "ICMP port unreachable: no process listens on the port"
			case errors.Is(err, unix.EAGAIN):
				continue
			default:
				return AnswerUnreachable, err.Error()
			}
		default: // icmp
			fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, int(step.Milliseconds())+1); n == 0 {
				continue
			}
			n, from, err := unix.Recvfrom(p.fd, buf, 0)
			if err != nil {
				continue
			}
			if a, d := p.icmpAnswer(buf[:n], from); a != "" {
				return a, d
			}
		}
	}
}

// icmpAnswer reads a raw ICMP socket's packet (IP header included): our
// echo reply, or an ICMP error about our request.
func (p *Probe) icmpAnswer(b []byte, from unix.Sockaddr) (string, string) {
	if len(b) < 20 {
		return "", ""
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+8 {
		return "", ""
	}
	icmp := b[ihl:]
	switch icmp[0] {
	case 0: // echo reply
		if binary.BigEndian.Uint16(icmp[4:6]) == p.ICMPID {
			return AnswerReply, "echo reply"
		}
	case 3, 11: // destination unreachable, time exceeded: our request is quoted
		q := icmp[8:]
		if len(q) >= 20 {
			qihl := int(q[0]&0x0f) * 4
			if len(q) >= qihl+8 && q[qihl] == 8 && binary.BigEndian.Uint16(q[qihl+4:qihl+6]) == p.ICMPID {
				src := ""
				if sa, ok := from.(*unix.SockaddrInet4); ok {
					src = " from " + netip.AddrFrom4(sa.Addr).String()
				}
				return AnswerUnreachable, fmt.Sprintf("ICMP type %d code %d%s", icmp[0], icmp[1], src)
			}
		}
	}
	return "", ""
}

// Close closes the socket; a TCP connection that completed is reset.
func (p *Probe) Close() {
	if p.fd < 0 {
		return
	}
	if p.spec.Proto == "tcp" && !p.spec.Forged {
		_ = unix.SetsockoptLinger(p.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	unix.Close(p.fd)
	p.fd = -1
}

func icmpEcho(id uint16) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], 1)
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// forged builds the whole packet, IPv4 header included.
func (p *Probe) forged() []byte {
	s := p.spec
	var l4 []byte
	var proto byte
	switch s.Proto {
	case "icmp":
		l4, proto = icmpEcho(p.ICMPID), unix.IPPROTO_ICMP
	case "tcp":
		l4, proto = make([]byte, 20), unix.IPPROTO_TCP
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], s.Port)
		binary.BigEndian.PutUint32(l4[4:], uint32(random16())<<16)
		l4[12], l4[13] = 5<<4, 0x02 // header length 20, SYN
		binary.BigEndian.PutUint16(l4[14:], 64240)
		binary.BigEndian.PutUint16(l4[16:], l4Checksum(s.Src, s.Dst, proto, l4))
	default: // udp (sctp is sent as what it claims only from a real socket)
		l4, proto = make([]byte, 8+len(payload)), unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], s.Port)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], payload)
		binary.BigEndian.PutUint16(l4[6:], l4Checksum(s.Src, s.Dst, proto, l4))
	}
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], random16())
	src, dst := s.Src.As4(), s.Dst.As4()
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	return append(ip, l4...)
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func l4Checksum(src, dst netip.Addr, proto byte, l4 []byte) uint16 {
	s, d := src.As4(), dst.As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, proto, byte(len(l4)>>8), byte(len(l4)))
	return checksum(append(pseudo, l4...))
}
