package e2e

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pontoon/internal/testutil"
)

// udpEcho serves UDP in a namespace, answers "echo", and records who asked.
type udpEcho struct {
	mu    sync.Mutex
	peers []string
}

func (u *udpEcho) Peers() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.peers...)
}

func serveUDP(t *testing.T, ns, addr string) *udpEcho {
	t.Helper()
	return serveUDPAs(t, ns, addr, "echo")
}

// udpAsk sends one datagram from a namespace and waits 1 s for the answer.
func udpAsk(t *testing.T, ns, addr string) (string, error) {
	t.Helper()
	var reply string
	err := testutil.InNetns(t, ns, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			return err
		}
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		reply = string(buf[:n])
		return err
	})
	return reply, err
}

func TestPublishedPorts(t *testing.T) {
	h := NewHost(t)
	h.P("sandbox", "create", "web", "-p", "8080:80", "-p", "127.0.0.1:9090:90/udp", "-p", "9091:91/udp",
		"-p", "30000-30002:31000-31002")
	webNS := h.SandboxNS("web")
	srv := ServeTCP(t, webNS, "0.0.0.0:80")
	rng := ServeTCP(t, webNS, "0.0.0.0:31002")
	u90 := serveUDP(t, webNS, "0.0.0.0:90")
	u91 := serveUDP(t, webNS, "0.0.0.0:91")
	h.P("sandbox", "create", "other")

	// A LAN client reaches web:80 and web sees its real address.
	if _, err := DialFrom(t, h.Outside, HostUplinkIP+":8080"); err != nil {
		t.Fatalf("LAN → host:8080: %v", err)
	}
	if p := srv.Peers(); !strings.HasPrefix(p[len(p)-1], RouterIP+":") {
		t.Fatalf("web saw %s, want the LAN client's own address %s", p[len(p)-1], RouterIP)
	}
	if _, err := DialFrom(t, h.Outside, HostUplinkIP+":30002"); err != nil || len(rng.Peers()) != 1 {
		t.Fatalf("LAN → host:30002 (range 30000-30002 → 31000-31002): %v", err)
	}
	// From the host: 127.0.0.1 and its own address.
	for _, a := range []string{"127.0.0.1:8080", HostUplinkIP + ":8080"} {
		if _, err := DialFrom(t, h.NS, a); err != nil {
			t.Fatalf("host → %s: %v", a, err)
		}
	}
	// Hairpin: another sandbox, and web itself, through the host's address.
	for _, sb := range []string{"other", "web"} {
		if _, err := DialFrom(t, h.SandboxNS(sb), HostUplinkIP+":8080"); err != nil {
			t.Fatalf("%s → host:8080 (hairpin): %v", sb, err)
		}
	}
	// UDP both ways, from the host through 127.0.0.1, and from the LAN.
	if r, err := udpAsk(t, h.NS, "127.0.0.1:9090"); err != nil || r != "echo hi" {
		t.Fatalf("host → 127.0.0.1:9090/udp: %q %v", r, err)
	}
	if r, err := udpAsk(t, h.Outside, HostUplinkIP+":9091"); err != nil || r != "echo hi" {
		t.Fatalf("LAN → host:9091/udp: %q %v", r, err)
	}
	// The 127.0.0.1 mapping is not on the host's other addresses...
	before := len(u90.Peers())
	if _, err := udpAsk(t, h.Outside, HostUplinkIP+":9090"); err == nil || len(u90.Peers()) != before {
		t.Fatal("LAN reached the 127.0.0.1-only mapping through the host's address")
	}
	// ...nor reachable from a LAN neighbour that routes 127.0.0.1 at us
	// (raw frames from the outside namespace; the same path to the
	// every-address mapping 9091 is the control).
	n91 := len(u91.Peers())
	sendRawUDP(t, h, netip.MustParseAddr(HostUplinkIP), 9091)
	sendRawUDP(t, h, netip.MustParseAddr("127.0.0.1"), 9090)
	time.Sleep(300 * time.Millisecond)
	if len(u91.Peers()) != n91+1 {
		t.Fatalf("control: a raw frame to %s:9091 did not arrive (%d → %d): the test proves nothing", HostUplinkIP, n91, len(u91.Peers()))
	}
	if len(u90.Peers()) != before {
		t.Fatal("a LAN neighbour reached the 127.0.0.1 mapping by routing 127.0.0.1 at the host")
	}

	// Conflicts: published by pontoon, and bound by a host process.
	if out := h.PFail("sandbox", "create", "web2", "-p", "8080:81"); !strings.Contains(out, "already published by sandbox web") {
		t.Fatalf("pontoon conflict: %s", out)
	}
	var l net.Listener
	if err := testutil.InNetns(t, h.NS, func() (err error) { l, err = net.Listen("tcp4", "0.0.0.0:8081"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if out := h.PFail("sandbox", "create", "web3", "-p", "8081:80"); !strings.Contains(out, "in use by process") {
		t.Fatalf("host process conflict: %s", out)
	}
	if _, err := h.TryP("sandbox", "inspect", "web3"); err == nil {
		t.Fatal("a refused sandbox was left")
	}

	// port ls shows every mapping and where it is reachable from.
	out := h.P("port", "ls")
	for _, want := range []string{"8080:80/tcp", "127.0.0.1:9090:90/udp", "host only", "30000-30002:31000-31002/tcp"} {
		if !strings.Contains(out, want) {
			t.Errorf("port ls lacks %q:\n%s", want, out)
		}
	}
	// A mapping goes with its endpoint.
	h.P("network", "disconnect", "pontoon", "web")
	if _, err := DialFrom(t, h.Outside, HostUplinkIP+":8080"); err == nil {
		t.Fatal("host:8080 still answers after web was disconnected")
	}
	if out := h.P("port", "ls"); strings.Contains(out, "8080") {
		t.Fatalf("port ls after disconnect:\n%s", out)
	}
	if m := h.In(h.NS, "nft", "list", "map", "inet", "pontoon", "ports-any"); strings.Contains(m, "8080") {
		t.Fatalf("element left in the map:\n%s", m)
	}
}

// sendRawUDP sends one UDP datagram to dst:port from the outside namespace
// as a raw Ethernet frame to the host's uplink MAC — what a LAN neighbour
// that routes dst at us would put on the wire, whatever dst is.
func sendRawUDP(t *testing.T, h *Host, dst netip.Addr, port uint16) {
	t.Helper()
	var mac net.HardwareAddr
	fields := strings.Fields(h.In(h.NS, "ip", "-o", "link", "show", "uplink0"))
	for i, f := range fields {
		if f == "link/ether" && i+1 < len(fields) {
			mac, _ = net.ParseMAC(fields[i+1])
		}
	}
	if len(mac) != 6 {
		t.Fatalf("no MAC for uplink0 in: %v", fields)
	}
	if err := rawUDP(t, h.Outside, "wan0", mac, nil, netip.MustParseAddr(RouterIP), dst, port); err != nil {
		t.Fatalf("raw frame to %s:%d: %v", dst, port, err)
	}
}

// rawUDP sends one UDP datagram "hi" as a raw Ethernet frame out of ifname
// in the namespace ns, with any source MAC (nil: the interface's) and
// source address: what a sandbox or a LAN host could put on the wire.
func rawUDP(t *testing.T, ns, ifname string, dstMAC, srcMAC net.HardwareAddr, srcIP, dst netip.Addr, port uint16) error {
	t.Helper()
	return testutil.InNetns(t, ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if srcMAC == nil {
			srcMAC = ifi.HardwareAddr
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		src := srcIP.As4()
		d := dst.As4()
		payload := []byte("hi")
		udp := make([]byte, 8+len(payload))
		binary.BigEndian.PutUint16(udp[0:], 40000)
		binary.BigEndian.PutUint16(udp[2:], port)
		binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
		copy(udp[8:], payload) // checksum 0: none, allowed for IPv4
		ip := make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		copy(ip[12:], src[:])
		copy(ip[16:], d[:])
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		frame := append(append(append(append([]byte{}, dstMAC...), srcMAC...), 0x08, 0x00), append(ip, udp...)...)
		addr := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		copy(addr.Addr[:], dstMAC)
		return unix.Sendto(fd, frame, 0, addr)
	})
}
