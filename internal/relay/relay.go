// Package relay answers published ports on the host's IPv6 loopback
// address, [::1], by relaying connections to the sandbox in user space.
//
// IPv4 reaches a sandbox from 127.0.0.1 through the firewall's DNAT (with
// route_localnet and a source NAT, see package firewall). IPv6 has no
// route_localnet: the kernel drops a packet with the loopback source ::1
// once it would leave the loopback device, and the replies of a DNATed
// connection from [::1] never come back (the firewall's kernel tests keep
// that on record). So for [::1] the daemon listens itself, like Docker's
// docker-proxy, but only there: the LAN, the host's other addresses and
// other sandboxes still go through the kernel's DNAT at full speed.
//
// TCP connections are spliced both ways (io.Copy between TCP sockets uses
// splice(2) on Linux, no copy through user space); UDP is relayed per
// client address, each client with its own socket to the sandbox so that
// replies find their way back, forgotten after IdleUDP without traffic.
//
// The sandbox sees the connection come from its network's gateway (the
// host's address on the bridge), as it does for 127.0.0.1.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"pontoon/internal/model"
)

// IdleUDP is how long a UDP client's session lives without traffic.
const IdleUDP = 60 * time.Second

// Loopback is where the relays listen.
var Loopback = netip.IPv6Loopback()

// Wants reports whether a mapping answers on [::1]: one on every host
// address, or one bound to ::1.
func Wants(m model.PortMapping) bool {
	return !m.HostIP.IsValid() || m.HostIP == Loopback
}

// Relay holds the listeners of every relayed mapping.
type Relay struct {
	log *slog.Logger
	mu  sync.Mutex
	// by key: proto/host port
	ls map[string]*listener
}

// New returns a relay with no listeners.
func New(log *slog.Logger) *Relay {
	return &Relay{log: log, ls: map[string]*listener{}}
}

type listener struct {
	close  func()
	target netip.AddrPort
}

func key(proto string, port uint16) string { return proto + "/" + strconv.Itoa(int(port)) }

// Publish starts relaying [::1]:HostPort… of m to target:Port… (one
// listener per port of the range). SCTP is not relayed. A port that
// cannot be bound is reported and the others are kept.
func (r *Relay) Publish(m model.PortMapping, target netip.Addr) error {
	if !Wants(m) || m.Proto == "sctp" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for i := 0; i < m.Len(); i++ {
		hp, tp := m.HostPort+uint16(i), m.Port+uint16(i)
		k := key(m.Proto, hp)
		dst := netip.AddrPortFrom(target, tp)
		if old, ok := r.ls[k]; ok {
			if old.target == dst {
				continue
			}
			old.close()
			delete(r.ls, k)
		}
		l, err := r.listen(m.Proto, hp, dst)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.ls[k] = l
	}
	return errors.Join(errs...)
}

// Unpublish stops relaying m's ports. Missing is success.
func (r *Relay) Unpublish(m model.PortMapping) {
	if !Wants(m) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i < m.Len(); i++ {
		k := key(m.Proto, m.HostPort+uint16(i))
		if l, ok := r.ls[k]; ok {
			l.close()
			delete(r.ls, k)
		}
	}
}

// Close stops every relay.
func (r *Relay) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, l := range r.ls {
		l.close()
		delete(r.ls, k)
	}
}

// Holds reports whether the relay listens on [::1]:port for proto.
func (r *Relay) Holds(proto string, port uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ls[key(proto, port)]
	return ok
}

// Listening lists the relayed host ports as proto/port, for tests and
// status.
func (r *Relay) Listening() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.ls))
	for k := range r.ls {
		out = append(out, k)
	}
	return out
}

func (r *Relay) listen(proto string, port uint16, dst netip.AddrPort) (*listener, error) {
	addr := netip.AddrPortFrom(Loopback, port).String()
	switch proto {
	case "tcp":
		l, err := net.Listen("tcp6", addr)
		if err != nil {
			return nil, fmt.Errorf("relay [::1]:%d/tcp to %s: %w", port, dst, err)
		}
		go r.serveTCP(l, dst)
		return &listener{close: func() { l.Close() }, target: dst}, nil
	case "udp":
		pc, err := net.ListenPacket("udp6", addr)
		if err != nil {
			return nil, fmt.Errorf("relay [::1]:%d/udp to %s: %w", port, dst, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go r.serveUDP(ctx, pc.(*net.UDPConn), dst)
		return &listener{close: func() { cancel(); pc.Close() }, target: dst}, nil
	}
	return nil, fmt.Errorf("relay: protocol %q is not relayed", proto)
}

func (r *Relay) serveTCP(l net.Listener, dst netip.AddrPort) {
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed
		}
		go func() {
			defer c.Close()
			up, err := net.DialTimeout("tcp", dst.String(), 5*time.Second)
			if err != nil {
				r.log.Debug("relay: dial the sandbox", "to", dst.String(), "err", err)
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(up, c)
				_ = up.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(c, up)
			_ = c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// serveUDP relays datagrams from each client to dst through a socket of
// the client's own, and the answers back.
func (r *Relay) serveUDP(ctx context.Context, pc *net.UDPConn, dst netip.AddrPort) {
	type session struct {
		up   *net.UDPConn
		last time.Time
	}
	var mu sync.Mutex
	sessions := map[netip.AddrPort]*session{}
	defer func() {
		mu.Lock()
		for _, s := range sessions {
			s.up.Close()
		}
		mu.Unlock()
	}()
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		mu.Lock()
		s := sessions[from]
		if s == nil {
			up, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				mu.Unlock()
				r.log.Debug("relay: dial the sandbox", "to", dst.String(), "err", err)
				continue
			}
			s = &session{up: up}
			sessions[from] = s
			go func() {
				rb := make([]byte, 65535)
				for {
					_ = up.SetReadDeadline(time.Now().Add(IdleUDP))
					n, err := up.Read(rb)
					if err != nil {
						var ne net.Error
						timeout := errors.As(err, &ne) && ne.Timeout()
						mu.Lock()
						if timeout && ctx.Err() == nil && time.Since(s.last) < IdleUDP {
							mu.Unlock()
							continue // the client spoke lately: keep waiting
						}
						delete(sessions, from)
						mu.Unlock()
						up.Close()
						return
					}
					_, _ = pc.WriteToUDPAddrPort(rb[:n], from)
					mu.Lock()
					s.last = time.Now()
					mu.Unlock()
				}
			}()
		}
		s.last = time.Now()
		up := s.up
		mu.Unlock()
		_, _ = up.Write(buf[:n])
	}
}

// Target is one relayed mapping and the sandbox address it goes to.
type Target struct {
	Mapping model.PortMapping
	Addr    netip.Addr
}

// Sync makes the relays match ts (start-up): mappings not in ts stop,
// missing ones start. It returns the errors of those that cannot start.
func (r *Relay) Sync(ts []Target) error {
	want := map[string]bool{}
	for _, t := range ts {
		if !Wants(t.Mapping) || t.Mapping.Proto == "sctp" {
			continue
		}
		for i := 0; i < t.Mapping.Len(); i++ {
			want[key(t.Mapping.Proto, t.Mapping.HostPort+uint16(i))] = true
		}
	}
	r.mu.Lock()
	for k, l := range r.ls {
		if !want[k] {
			l.close()
			delete(r.ls, k)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, t := range ts {
		if err := r.Publish(t.Mapping, t.Addr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
