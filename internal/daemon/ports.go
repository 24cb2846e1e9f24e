package daemon

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	"pontoon/internal/model"
	"pontoon/internal/probe"
)

// probePorts refuses a mapping whose host port a process on the host
// already uses: DNAT in prerouting would silently take its traffic. It
// tries to bind each port in the daemon's namespace (the host's) and, when
// that fails, names the process that holds it.
//
// A mapping on every address is probed in both families: 0.0.0.0 and,
// apart, [::] (IPV6_V6ONLY), so that a server that listens only on IPv6
// is found too. A mapping on one address is probed on that address.
//
// A mapping bound to an address the host does not have is refused too:
// the kernel would never deliver a packet for it (bind says EADDRNOTAVAIL).
//
// ours reports host ports the daemon itself holds (its [::1] relays of
// mappings pontoon published): those are not a host process's, and the
// engine's own conflict check names the sandbox; nil: none.
func probePorts(m model.PortMapping, ours func(proto string, port uint16) bool) error {
	if m.HostIP.IsValid() {
		l, err := net.Listen(bindNetwork("tcp", m.HostIP), netip.AddrPortFrom(m.HostIP, 0).String())
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
	ips := []netip.Addr{m.HostIP}
	if !m.HostIP.IsValid() {
		ips = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	for p := int(m.HostPort); p <= int(m.HostPortEnd); p++ {
		for _, ip := range ips {
			if err := tryBind(m.Proto, ip, uint16(p)); errors.Is(err, syscall.EADDRINUSE) {
				if ours != nil && ours(m.Proto, uint16(p)) {
					continue
				}
				h, ok := probe.PortHolder(m.Proto, ip, uint16(p))
				who := "a process"
				if ok {
					who = h.String()
				}
				return model.Conflictf("host port %d/%s is in use by %s on the host: stop it or publish another host port", p, m.Proto, who)
			}
		}
	}
	return nil
}

// bindNetwork is proto with ip's family: "tcp6" binds [::] with
// IPV6_V6ONLY, where "tcp" would make a dual-stack socket.
func bindNetwork(proto string, ip netip.Addr) string {
	if ip.Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// tryBind binds ip:port and lets it go at once.
func tryBind(proto string, ip netip.Addr, port uint16) error {
	addr := netip.AddrPortFrom(ip, port).String()
	if proto == "udp" {
		c, err := net.ListenPacket(bindNetwork("udp", ip), addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	l, err := net.Listen(bindNetwork("tcp", ip), addr)
	if err == nil {
		l.Close()
	}
	return err
}
