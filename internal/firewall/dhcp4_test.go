package firewall

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Raw IPv4 frames for the DHCP anti-spoofing test, built by hand (RFC 791,
// RFC 768, RFC 2131): Ethernet, IPv4 with its header checksum, UDP (no
// checksum: optional over IPv4), a BOOTP message.

// frame4 is an Ethernet frame carrying an IPv4 packet.
type frame4 struct {
	dstMAC, srcMAC net.HardwareAddr
	src, dst       netip.Addr
	proto          byte
	payload        []byte
}

func (f frame4) bytes() []byte {
	var b bytes.Buffer
	b.Write(f.dstMAC)
	b.Write(f.srcMAC)
	b.Write([]byte{0x08, 0x00})
	hdr := make([]byte, 20)
	hdr[0] = 4<<4 | 5
	binary.BigEndian.PutUint16(hdr[2:4], uint16(20+len(f.payload)))
	hdr[8], hdr[9] = 64, f.proto
	s, d := f.src.As4(), f.dst.As4()
	copy(hdr[12:16], s[:])
	copy(hdr[16:20], d[:])
	var sum uint32
	for i := 0; i < len(hdr); i += 2 {
		sum += uint32(hdr[i])<<8 | uint32(hdr[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(hdr[10:12], ^uint16(sum))
	b.Write(hdr)
	b.Write(f.payload)
	return b.Bytes()
}

// udp4 is a UDP datagram without checksum.
func udp4(sport, dport uint16, p []byte) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:2], sport)
	binary.BigEndian.PutUint16(h[2:4], dport)
	binary.BigEndian.PutUint16(h[4:6], uint16(8+len(p)))
	return append(h, p...)
}

// bootp is a DHCP message (RFC 2131): op 1 (request) or 2 (reply),
// offering yiaddr to chaddr, of DHCP message type msgType (1 discover, 2
// offer); the marker is in sname, which receivers ignore.
func bootp(op, msgType byte, yiaddr netip.Addr, chaddr net.HardwareAddr, marker string) []byte {
	p := make([]byte, 236)
	p[0], p[1], p[2] = op, 1, 6 // htype Ethernet, hlen 6
	binary.BigEndian.PutUint32(p[4:8], 0x706f6e74)
	y := yiaddr.As4()
	copy(p[16:20], y[:])
	copy(p[28:34], chaddr)
	copy(p[44:108], marker)
	p = append(p, 99, 130, 83, 99) // magic cookie
	p = append(p, 53, 1, msgType)  // DHCP message type
	if op == 2 {
		p = append(p, 3, 4) // router option: the server's choice of gateway
		p = append(p, y[0], y[1], y[2], 66)
	}
	return append(p, 255)
}

// TestKernelAntiSpoofingDHCP4: a DHCPOFFER from a guarded sandbox's port,
// from its own MAC and address to the broadcast address (what a rogue
// DHCP server in a sandbox sends, and what the source checks let pass),
// is dropped on the port; a DHCP client's request from the same port still
// passes. Before the port is guarded both pass: the frames are well
// formed and reach the other sandboxes.
func TestKernelAntiSpoofingDHCP4(t *testing.T) {
	l := newIP6Lab(t)
	l.bridge("ptbr-dddd", "10.213.1.0/24")
	mac1 := net.HardwareAddr{2, 0x42, 10, 213, 1, 2}
	mac3 := net.HardwareAddr{2, 0x42, 10, 213, 1, 4}
	s1 := l.sandbox("d1", "ptbr-dddd", mac1, "10.213.1.2/24")
	s3 := l.sandbox("d3", "ptbr-dddd", mac3, "10.213.1.4/24")
	n := Network{Name: "d", Bridge: "ptbr-dddd", Subnets: v4(netip.MustParsePrefix("10.213.1.0/24"), true)}
	own := netip.MustParseAddr("10.213.1.2")
	guards := []Guarded{
		{Port: "ptv-d1", MAC: mac1, IPs: []netip.Addr{own}},
		{Port: "ptv-d3", MAC: mac3, IPs: []netip.Addr{netip.MustParseAddr("10.213.1.4")}},
	}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	all := netip.MustParseAddr("255.255.255.255")
	// The offer hands d3 (and any DHCP client on the bridge, a VM on a
	// tap) an address; the request is a client's renewal broadcast.
	offer := func(phase string) (string, []byte) {
		m := "OFFER" + phase
		return m, frame4{dstMAC: bcast, srcMAC: mac1, src: own, dst: all, proto: unix.IPPROTO_UDP,
			payload: udp4(67, 68, bootp(2, 2, netip.MustParseAddr("10.213.1.99"), mac3, m))}.bytes()
	}
	request := func(phase string) (string, []byte) {
		m := "REQST" + phase
		return m, frame4{dstMAC: bcast, srcMAC: mac1, src: own, dst: all, proto: unix.IPPROTO_UDP,
			payload: udp4(68, 67, bootp(1, 1, netip.IPv4Unspecified(), mac1, m))}.bytes()
	}
	check := func(phase string, wantOffer bool) {
		t.Helper()
		rx := openPacketSocket(t, s3, "eth0")
		tx := openPacketSocket(t, s1, "eth0")
		om, of := offer(phase)
		rm, rf := request(phase)
		// The offer first: it takes the same path as the request, so once
		// the request is in, so is the offer if it passed.
		for _, f := range [][]byte{of, rf} {
			if err := tx.send(f); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		want := []string{rm}
		if wantOffer {
			want = append(want, om)
		}
		got := rx.await(want, []string{om, rm}, 5*time.Second)
		if !got[rm] {
			t.Errorf("phase %s: the DHCP client's request did not arrive", phase)
		}
		if got[om] != wantOffer {
			t.Errorf("phase %s: the DHCP server's offer arrived = %v, want %v", phase, got[om], wantOffer)
		}
	}

	t.Log("phase 1: no endpoint guarded: both pass")
	syncIn(t, l.host, State{Networks: []Network{n}})
	check("1", true)

	t.Log("phase 2: guarded over netlink (Guard): the offer is dropped")
	withFirewall(t, l.host, func(fw Interface) error { return fw.Guard(context.Background(), guards) })
	check("2", false)

	t.Log("phase 3: the same guards written by Sync (nft text)")
	syncIn(t, l.host, State{Networks: []Network{n}, Guards: slices.Clone(guards)})
	check("3", false)
	// Control of the whole: d1 still talks to d3.
	if !l.ping(s1, "10.213.1.4") {
		t.Error("a guarded sandbox cannot ping its neighbour")
	}
}
