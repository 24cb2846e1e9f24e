package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// listen binds UDP and TCP on addr in the calling thread's namespace and
// serves them, for network e, from background goroutines. A gateway that
// is still tentative is bound with freebind (see the package doc); local
// caches the namespace's addresses across the binds of one SetNetworks.
func (s *Server) listen(addr netip.AddrPort, e *netEntry, local *localAddrs) (*listener, error) {
	pc, ln, err := bind(addr, false)
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		tentative, lerr := local.tentative(addr.Addr())
		switch {
		case lerr != nil:
			err = lerr // says why the address is not available
		case tentative:
			pc, ln, err = bind(addr, true)
		}
	}
	if err != nil {
		return nil, err
	}
	return s.serve(pc, ln, e)
}

// serve serves the bound sockets pc and ln for h from background
// goroutines; on error both are closed.
func (s *Server) serve(pc net.PacketConn, ln net.Listener, h mdns.Handler) (*listener, error) {
	l := &listener{udp: &mdns.Server{PacketConn: pc, Handler: h}, tcp: &mdns.Server{Listener: ln, Handler: h}}
	if err := s.activate(l.udp); err != nil {
		pc.Close()
		ln.Close()
		return nil, err
	}
	if err := s.activate(l.tcp); err != nil {
		shutdown(l.udp)
		ln.Close()
		return nil, err
	}
	return l, nil
}

// bind opens the UDP and TCP sockets on addr, with IP(V6)_FREEBIND when
// freebind is set: the bind then succeeds on an address the kernel does not
// accept yet, and the socket receives once it does.
func bind(addr netip.AddrPort, freebind bool) (net.PacketConn, net.Listener, error) {
	udpNet, tcpNet := "udp4", "tcp4"
	level, opt := unix.SOL_IP, unix.IP_FREEBIND
	if addr.Addr().Is6() {
		udpNet, tcpNet = "udp6", "tcp6"
		level, opt = unix.SOL_IPV6, unix.IPV6_FREEBIND // Linux 4.15
	}
	var lc net.ListenConfig
	if freebind {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set freebind: %w", serr)
			}
			return nil
		}
	}
	ctx := context.Background()
	pc, err := lc.ListenPacket(ctx, udpNet, addr.String())
	if err != nil {
		return nil, nil, err
	}
	ln, err := lc.Listen(ctx, tcpNet, addr.String())
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	return pc, ln, nil
}

// localAddrs is the namespace's addresses with their flags, read once.
type localAddrs struct {
	flags map[netip.Addr]int // IFA_F_*
	read  bool
}

// tentative reports whether ip is on an interface of the calling thread's
// namespace and waiting for duplicate address detection to finish. An
// address that failed detection, or that is on no interface, is an error
// saying so.
func (l *localAddrs) tentative(ip netip.Addr) (bool, error) {
	if !l.read {
		// A dump interrupted by a concurrent change is retried once; a
		// second interruption is rare enough to report.
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL)
		}
		if err != nil {
			return false, fmt.Errorf("list addresses: %w", err)
		}
		l.flags = make(map[netip.Addr]int, len(addrs))
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				l.flags[ip.Unmap()] = a.Flags
			}
		}
		l.read = true
	}
	f, ok := l.flags[ip]
	switch {
	case !ok:
		return false, fmt.Errorf("address %s is on no interface of this namespace: is the bridge up with its address?", ip)
	case f&unix.IFA_F_DADFAILED != 0:
		return false, fmt.Errorf("address %s failed duplicate address detection: another host on the link has it", ip)
	}
	return f&unix.IFA_F_TENTATIVE != 0, nil
}

// activate serves srv in the background and waits until it runs, so that a
// Shutdown right after it cannot find it "not started" and leak the socket.
func (s *Server) activate(srv *mdns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
		go func() {
			if err := <-errc; err != nil {
				s.log.Warn("dns: listener stopped", "err", err)
			}
		}()
		return nil
	case err := <-errc:
		if err == nil {
			err = errors.New("listener stopped at once")
		}
		return err
	}
}

func shutdown(srv *mdns.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = srv.ShutdownContext(ctx) // closes the socket even when ctx expires
}

// stopAll shuts the listeners down, all at once.
func stopAll(ls []*listener) {
	var wg sync.WaitGroup
	for _, l := range ls {
		for _, srv := range []*mdns.Server{l.udp, l.tcp} {
			wg.Go(func() { shutdown(srv) })
		}
	}
	wg.Wait()
}
