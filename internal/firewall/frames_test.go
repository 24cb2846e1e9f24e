package firewall

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pontoon/internal/testutil"
)

// Raw IPv6 frames for the anti-spoofing tests, built by hand (RFC 8200,
// RFC 4443, RFC 4861): Ethernet, IPv6, then ICMPv6 or UDP with their
// checksums over the pseudo-header. Each carries a marker, so that a
// receiver can tell the frames apart from the namespace's own chatter.

// ICMPv6 types (RFC 4861).
const (
	icmp6RouterSolicit = 133
	icmp6RouterAdvert  = 134
	icmp6NeighSolicit  = 135
	icmp6NeighAdvert   = 136
)

// frame6 is an Ethernet frame carrying an IPv6 packet.
type frame6 struct {
	dstMAC, srcMAC net.HardwareAddr
	src, dst       netip.Addr
	hopLimit       byte
	next           byte // unix.IPPROTO_ICMPV6 or unix.IPPROTO_UDP
	payload        []byte
}

func (f frame6) bytes() []byte {
	var b bytes.Buffer
	b.Write(f.dstMAC)
	b.Write(f.srcMAC)
	b.Write([]byte{0x86, 0xdd})
	hdr := make([]byte, 40)
	hdr[0] = 6 << 4
	binary.BigEndian.PutUint16(hdr[4:6], uint16(len(f.payload)))
	hdr[6], hdr[7] = f.next, f.hopLimit
	s, d := f.src.As16(), f.dst.As16()
	copy(hdr[8:24], s[:])
	copy(hdr[24:40], d[:])
	b.Write(hdr)
	p := append([]byte(nil), f.payload...)
	sum := checksum6(f.src, f.dst, f.next, p)
	switch f.next {
	case unix.IPPROTO_ICMPV6:
		binary.BigEndian.PutUint16(p[2:4], sum)
	case unix.IPPROTO_UDP:
		binary.BigEndian.PutUint16(p[6:8], sum)
	}
	b.Write(p)
	return b.Bytes()
}

// checksum6 is the Internet checksum of an upper-layer packet (its
// checksum field zero) with the IPv6 pseudo-header.
func checksum6(src, dst netip.Addr, next byte, p []byte) uint16 {
	var b bytes.Buffer
	s, d := src.As16(), dst.As16()
	b.Write(s[:])
	b.Write(d[:])
	binary.Write(&b, binary.BigEndian, uint32(len(p)))
	b.Write([]byte{0, 0, 0, next})
	b.Write(p)
	if b.Len()%2 == 1 {
		b.WriteByte(0)
	}
	var sum uint32
	data := b.Bytes()
	for i := 0; i < len(data); i += 2 {
		sum += uint32(data[i])<<8 | uint32(data[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// markerOption is an ND option of the experimental type 253 (RFC 4727)
// carrying a 6-byte marker; receivers ignore options they do not know.
func markerOption(marker string) []byte {
	o := make([]byte, 8)
	o[0], o[1] = 253, 1
	copy(o[2:], marker)
	return o
}

// neighAdvert is an unsolicited, override neighbour advertisement for
// target, with target as its link-layer address option.
func neighAdvert(target netip.Addr, mac net.HardwareAddr, marker string) []byte {
	p := make([]byte, 24)
	p[0] = icmp6NeighAdvert
	p[4] = 0x20 // override (not solicited: these go to all nodes)
	t := target.As16()
	copy(p[8:24], t[:])
	p = append(p, 2, 1) // target link-layer address option
	p = append(p, mac...)
	return append(p, markerOption(marker)...)
}

// routerAdvert announces a default router for 1800 s and the prefix
// 2001:db8:bad::/64 for autoconfiguration.
func routerAdvert(mac net.HardwareAddr, marker string) []byte {
	p := make([]byte, 16)
	p[0] = icmp6RouterAdvert
	p[4] = 64                                // cur hop limit
	binary.BigEndian.PutUint16(p[6:8], 1800) // router lifetime
	p = append(p, 1, 1)                      // source link-layer address
	p = append(p, mac...)
	pi := make([]byte, 32) // prefix information
	pi[0], pi[1], pi[2], pi[3] = 3, 4, 64, 0xc0
	binary.BigEndian.PutUint32(pi[4:8], 86400)
	binary.BigEndian.PutUint32(pi[8:12], 14400)
	prefix := netip.MustParseAddr("2001:db8:bad::").As16()
	copy(pi[16:32], prefix[:])
	p = append(p, pi...)
	return append(p, markerOption(marker)...)
}

// routerSolicit is a router solicitation with a source link-layer option.
func routerSolicit(mac net.HardwareAddr, marker string) []byte {
	p := make([]byte, 8)
	p[0] = icmp6RouterSolicit
	p = append(p, 1, 1)
	p = append(p, mac...)
	return append(p, markerOption(marker)...)
}

// udp6 is a UDP datagram whose payload is the marker.
func udp6(sport, dport uint16, marker string) []byte {
	p := make([]byte, 8)
	binary.BigEndian.PutUint16(p[0:2], sport)
	binary.BigEndian.PutUint16(p[2:4], dport)
	p = append(p, []byte(marker)...)
	binary.BigEndian.PutUint16(p[4:6], uint16(len(p)))
	return p
}

// multicastMAC is the Ethernet multicast address of an IPv6 multicast
// address (RFC 2464).
func multicastMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// packetSocket is an AF_PACKET socket bound to an interface of the
// namespace it was opened in; it stays there whichever thread uses it.
type packetSocket struct{ fd int }

func openPacketSocket(t testing.TB, ns, ifname string) *packetSocket {
	t.Helper()
	var ps packetSocket
	if err := testutil.InNetns(t, ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		ps.fd = fd
		return nil
	}); err != nil {
		t.Fatalf("packet socket on %s: %v", ifname, err)
	}
	t.Cleanup(func() { unix.Close(ps.fd) })
	return &ps
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (ps *packetSocket) send(frame []byte) error {
	_, err := unix.Write(ps.fd, frame)
	return err
}

// await reads frames until every marker of want has been seen or the
// deadline passes, and returns every marker of all it saw.
func (ps *packetSocket) await(want, all []string, within time.Duration) map[string]bool {
	seen := map[string]bool{}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		n, err := unix.Read(ps.fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return seen
		}
		for _, m := range all {
			if bytes.Contains(buf[:n], []byte(m)) {
				seen[m] = true
			}
		}
		done := true
		for _, m := range want {
			done = done && seen[m]
		}
		if done {
			return seen
		}
	}
	return seen
}
