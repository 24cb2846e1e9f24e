package dns

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"

	mdns "github.com/miekg/dns"

	"pontoon/internal/netns"
)

// SandboxAddr is the address of the resolver SetSandbox starts inside a
// sandbox (Docker's embedded resolver uses the same). 127.0.0.0/8 is local
// on lo in every namespace, so it binds wherever lo is up, with no address
// to add.
const SandboxAddr = "127.0.0.11"

var sandboxIP = netip.MustParseAddr(SandboxAddr)

// sandbox is a resolver inside one sandbox's namespace: a listener on
// 127.0.0.11 there, answering with the names of the sandbox's networks. It
// is the dns.Handler of its listener.
type sandbox struct {
	srv  *Server
	path string // the namespace's path, the key in Server.sandboxes
	ino  uint64 // the identity of the namespace the sockets are in
	l    *listener
	// nets are the names of the sandbox's networks, sorted; replaced
	// whole (never changed in place) under Server.mu.
	nets atomic.Pointer[[]string]
}

// SetSandbox serves the names of networks inside the network namespace at
// netns, on 127.0.0.11 (SandboxAddr), port Options.Port (53), UDP and
// TCP, for a sandbox that cannot reach a gateway on the host (link and
// macvlan networks).
//
// The namespace is checked to be the one with identity ino (netns.Ino;
// 0: whichever namespace the path names) on the opened file before the
// sockets are made in it; another namespace is refused with an error
// wrapping netns.ErrGone, and nothing changes. The networks must be known
// from SetNetworks (with Subnets when they have no gateway) for their names
// to be answered; one that is not is skipped until it is.
//
// Called again for the same path, it replaces the list of networks; the
// sockets stay (when ino is 0 or the namespace's, else they are made
// anew in the namespace the path names now). An empty list is
// RemoveSandbox.
//
// Queries there come from the sandbox's own namespace, so no source is
// refused; a name on several of the networks answers with all their
// addresses, PTR answers for addresses of any of them, and outside names
// are forwarded unless every network is internal (then REFUSED).
//
// The sockets hold a reference to the namespace: it lives on, even with
// its pin removed, until RemoveSandbox or Close.
func (s *Server) SetSandbox(netns string, ino uint64, networks []string) error {
	if len(networks) == 0 {
		return s.RemoveSandbox(netns)
	}
	if netns == "" {
		return errors.New("dns: sandbox without a network namespace path")
	}
	nets := make([]string, 0, len(networks))
	for _, n := range networks {
		if n == "" {
			return fmt.Errorf("dns: sandbox %s: a network without a name in %q", netns, networks)
		}
		nets = append(nets, n)
	}
	slices.Sort(nets)
	nets = slices.Compact(nets)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("dns: server closed")
	}
	old := s.sandboxes[netns]
	if old != nil && (ino == 0 || ino == old.ino) {
		old.nets.Store(&nets)
		s.mu.Unlock()
		return nil
	}
	sb := &sandbox{srv: s, path: netns}
	sb.nets.Store(&nets)
	l, id, err := s.listenIn(netns, ino, sb)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	sb.l, sb.ino = l, id
	s.sandboxes[netns] = sb
	s.mu.Unlock()
	if old != nil {
		stopAll([]*listener{old.l})
	}
	return nil
}

// RemoveSandbox stops the resolver SetSandbox started in the namespace at
// netns (the same path); none is fine. Queries in flight are given
// shutdownGrace.
func (s *Server) RemoveSandbox(netns string) error {
	s.mu.Lock()
	sb := s.sandboxes[netns]
	delete(s.sandboxes, netns)
	s.mu.Unlock()
	if sb != nil {
		stopAll([]*listener{sb.l})
	}
	return nil
}

// listenIn binds 127.0.0.11 (UDP and TCP) inside the namespace at path,
// checked against ino, from a locked thread that returns to the daemon's
// namespace afterwards (netns.DoChecked), and serves it for h. It returns
// the identity of the namespace the sockets are in.
func (s *Server) listenIn(path string, ino uint64, h mdns.Handler) (*listener, uint64, error) {
	addr := netip.AddrPortFrom(sandboxIP, s.opts.Port)
	var pc net.PacketConn
	var ln net.Listener
	var id uint64
	err := netns.DoChecked(path, ino, func() (err error) {
		if id, err = netns.Ino("/proc/thread-self/ns/net"); err != nil {
			return err
		}
		pc, ln, err = bind(addr, false)
		return err
	})
	if err != nil {
		if errors.Is(err, netns.ErrGone) {
			return nil, 0, fmt.Errorf("dns: sandbox resolver not started: %w", err)
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, 0, fmt.Errorf("dns: listen on %s in network namespace %s: %w: a DNS server in the sandbox holds port %d, or this namespace has a resolver under another path", addr, path, err, addr.Port())
		}
		return nil, 0, fmt.Errorf("dns: listen on %s in network namespace %s: %w", addr, path, err)
	}
	l, err := s.serve(pc, ln, h)
	if err != nil {
		return nil, 0, fmt.Errorf("dns: serve %s in network namespace %s: %w", addr, path, err)
	}
	return l, id, nil
}

// ServeDNS answers one query that arrived inside the sandbox.
func (sb *sandbox) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	sb.srv.respond(w, r, func(_ netip.Addr, tcp bool) *mdns.Msg { return sb.srv.answerSandbox(sb, tcp, r) })
}

// answerSandbox builds the reply to a query from inside sb.
func (s *Server) answerSandbox(sb *sandbox, tcp bool, r *mdns.Msg) *mdns.Msg {
	entries := *s.entries.Load()
	names := *sb.nets.Load()
	views := make([]view, 0, len(names))
	for _, n := range names {
		if e := entries[n]; e != nil {
			if cfg := e.cfg.Load(); cfg != nil {
				views = append(views, view{e, cfg})
			}
		}
	}
	if len(views) == 0 {
		// None of its networks is configured (yet, or any more).
		s.stats.refusedSource.Add(1)
		return reply(r, mdns.RcodeRefused)
	}
	return s.resolve(views, tcp, r)
}

// sandboxCount is the number of sandboxes with a resolver.
func (s *Server) sandboxCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sandboxes)
}

// publishLocked makes the current set of network entries the one sandbox
// queries look networks up in (they do not take Server.mu, which is held
// while sockets are bound and listeners stop). Call it whenever an entry is
// added to or removed from s.nets.
func (s *Server) publishLocked() {
	m := maps.Clone(s.nets)
	s.entries.Store(&m)
}
