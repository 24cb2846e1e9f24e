package e2e

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// A sandbox cannot send frames whose source MAC or address is not its own
// endpoint's — to a neighbour, the host or the outside; its real frames
// pass. Raw frames from inside the sandbox, counted by the receivers.
func TestAntiSpoofing(t *testing.T) {
	h := NewHost(t)
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b")
	aNS := h.SandboxNS("a")
	a, b := h.Sandbox("a").Endpoints[0], h.Sandbox("b").Endpoints[0]
	aMAC, _ := net.ParseMAC(a.MAC)
	bMAC, _ := net.ParseMAC(b.MAC)
	gwMAC := net.HardwareAddr{0x02, 0x42, 10, 88, 0, 1} // the bridge's, derived from its address
	toB := serveUDP(t, h.SandboxNS("b"), "0.0.0.0:5000")
	toHost := serveUDP(t, h.NS, "10.88.0.1:5002")
	toOut := serveUDP(t, h.Outside, RouterIP+":5001")
	bIP, router := b.FirstIP(), netip.MustParseAddr(RouterIP)
	fake := netip.MustParseAddr("10.88.0.99")
	forged := net.HardwareAddr{0x02, 0x42, 10, 88, 0, 99}

	send := func(what string, dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, port uint16) {
		t.Helper()
		if err := rawUDP(t, aNS, "eth0", dstMAC, srcMAC, src, dst, port); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for _, c := range []struct {
		what     string
		recv     *udpEcho
		dstMAC   net.HardwareAddr
		srcMAC   net.HardwareAddr
		src, dst netip.Addr
		port     uint16
		pass     bool
	}{
		{"to a neighbour, real", toB, bMAC, aMAC, a.FirstIP(), bIP, 5000, true},
		{"to a neighbour, forged address", toB, bMAC, aMAC, fake, bIP, 5000, false},
		{"to a neighbour, forged MAC", toB, bMAC, forged, a.FirstIP(), bIP, 5000, false},
		{"to a neighbour, another sandbox's address", toB, bMAC, aMAC, bIP, bIP, 5000, false},
		{"to the host, real", toHost, gwMAC, aMAC, a.FirstIP(), netip.MustParseAddr("10.88.0.1"), 5002, true},
		{"to the host, forged address", toHost, gwMAC, aMAC, fake, netip.MustParseAddr("10.88.0.1"), 5002, false},
		{"to the outside, real", toOut, gwMAC, aMAC, a.FirstIP(), router, 5001, true},
		{"to the outside, forged address", toOut, gwMAC, aMAC, netip.MustParseAddr("203.0.113.9"), router, 5001, false},
		{"to the outside, forged MAC", toOut, gwMAC, forged, a.FirstIP(), router, 5001, false},
	} {
		before := len(c.recv.Peers())
		send(c.what, c.dstMAC, c.srcMAC, c.src, c.dst, c.port)
		deadline := time.Now().Add(500 * time.Millisecond)
		for len(c.recv.Peers()) == before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		got := len(c.recv.Peers()) > before
		if got != c.pass {
			t.Errorf("%s: delivered=%v, want %v", c.what, got, c.pass)
		}
	}
}
