package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SCTP without an SCTP stack. This kernel may be built without SCTP
// sockets (CONFIG_IP_SCTP unset) while netfilter still tracks and NATs
// SCTP (CONFIG_NF_CT_PROTO_SCTP). Tests then send hand-made INIT chunks —
// the first packet of an association, the one that creates a conntrack
// entry — through raw IP sockets, and read them with raw sockets on the
// other side: real packets through the real conntrack and NAT.

// SCTPAvailable reports whether the kernel offers SCTP sockets, and if
// not, why.
func SCTPAvailable() (bool, string) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_SEQPACKET, unix.IPPROTO_SCTP)
	if err != nil {
		return false, fmt.Sprintf("socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP): %v", err)
	}
	unix.Close(fd)
	return true, ""
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SCTPInit returns an SCTP packet (common header and one INIT chunk) from
// srcPort to dstPort with initiate tag tag, with its CRC32c checksum
// (conntrack drops a packet whose checksum is wrong as invalid).
func SCTPInit(srcPort, dstPort uint16, tag uint32) []byte {
	p := make([]byte, 12+20)
	binary.BigEndian.PutUint16(p[0:], srcPort)
	binary.BigEndian.PutUint16(p[2:], dstPort)
	// Verification tag 0: an INIT's (RFC 9260 §8.5.1).
	c := p[12:]
	c[0] = 1                               // INIT
	binary.BigEndian.PutUint16(c[2:], 20)  // chunk length
	binary.BigEndian.PutUint32(c[4:], tag) // initiate tag
	binary.BigEndian.PutUint32(c[8:], 65535)
	binary.BigEndian.PutUint16(c[12:], 1) // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1) // inbound streams
	binary.BigEndian.PutUint32(c[16:], tag)
	// The CRC32c goes in as the kernel's sctp_compute_cksum stores it.
	binary.LittleEndian.PutUint32(p[8:], crc32.Checksum(p, castagnoli))
	return p
}

// SCTPPacket is what a raw SCTP socket saw.
type SCTPPacket struct {
	Src, Dst         netip.AddrPort
	Chunk            byte   // type of the first chunk (1: INIT)
	Tag              uint32 // INIT's initiate tag
	ChecksumVerified bool
}

// ParseSCTP parses an IPv4 packet read from a raw socket.
func ParseSCTP(b []byte) (SCTPPacket, error) {
	var p SCTPPacket
	if len(b) < 20 || b[0]>>4 != 4 {
		return p, errors.New("not an IPv4 packet")
	}
	hl := int(b[0]&0xf) * 4
	if b[9] != unix.IPPROTO_SCTP || len(b) < hl+16 {
		return p, errors.New("not an SCTP packet")
	}
	src, _ := netip.AddrFromSlice(b[12:16])
	dst, _ := netip.AddrFromSlice(b[16:20])
	s := b[hl:]
	p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(s[0:]))
	p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(s[2:]))
	p.Chunk = s[12]
	if p.Chunk == 1 && len(s) >= 20 {
		p.Tag = binary.BigEndian.Uint32(s[16:])
	}
	sum := binary.LittleEndian.Uint32(s[8:])
	c := append([]byte(nil), s...)
	clear(c[8:12])
	p.ChecksumVerified = crc32.Checksum(c, castagnoli) == sum
	return p, nil
}

// SendSCTP sends an SCTP packet (from SCTPInit) from src to dst inside the
// namespace at ns, through a raw IP socket: the kernel adds the IP header.
func SendSCTP(t testing.TB, ns string, src, dst netip.Addr, pkt []byte) error {
	t.Helper()
	return InNetns(t, ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
		if err != nil {
			return fmt.Errorf("raw SCTP socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			return fmt.Errorf("bind raw SCTP socket to %s: %w", src, err)
		}
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()})
	})
}

// SCTPListener records the SCTP packets that reach a namespace (a raw
// socket sees them whether or not the kernel has an SCTP stack).
type SCTPListener struct {
	fd int
	c  chan SCTPPacket
}

// ListenSCTP opens a raw SCTP socket in the namespace at ns; it closes when
// the test ends.
func ListenSCTP(t testing.TB, ns string) *SCTPListener {
	t.Helper()
	l := &SCTPListener{fd: -1, c: make(chan SCTPPacket, 1024)}
	if err := InNetns(t, ns, func() (err error) {
		l.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
		return err
	}); err != nil {
		t.Fatalf("raw SCTP socket in %s: %v", ns, err)
	}
	// A receive timeout lets the reader notice the close.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped; unix.Close(l.fd) })
	go func() {
		defer close(stopped)
		buf := make([]byte, 2048)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(l.fd, buf, 0)
			if err != nil {
				continue
			}
			if p, err := ParseSCTP(buf[:n]); err == nil {
				select {
				case l.c <- p:
				default:
				}
			}
		}
	}()
	return l
}

// Packets returns a channel of the packets seen.
func (l *SCTPListener) Packets() <-chan SCTPPacket { return l.c }
