// Package dns is pontoon's embedded resolver: one per network, listening on
// the network's gateway address (UDP and TCP, port 53) in the daemon's
// namespace, so that sandboxes on the network find each other by name.
//
// # Zone rules
//
// For a query arriving on network N (names compared case-insensitively, with
// or without the trailing dot):
//
//   - a sandbox name or alias on N, alone ("db") or under the network
//     ("db.N"), answers A with the endpoint's address (several endpoints may
//     share an alias: all their addresses are returned, sorted; a sandbox
//     name belongs to one member only, which the engine enforces up to
//     case when it reserves an endpoint). Other types for an existing name
//     answer NOERROR with no records (NODATA), never NXDOMAIN, so that an
//     AAAA lookup running next to the A lookup does not make a stub
//     resolver give up on the name.
//   - any other single-label name, and anything under ".N." (a.b.N too), is
//     pontoon's: authoritative NXDOMAIN. N itself (the zone apex) exists:
//     NODATA, or its SOA when asked for SOA.
//   - PTR for an address in N's subnet answers NAME.N. (the endpoint's sandbox
//     name) or authoritative NXDOMAIN.
//   - everything else (including names under another pontoon network's name:
//     a resolver only knows its own network's sandboxes) is forwarded to the
//     upstreams. On an internal network it is answered REFUSED instead: the
//     network has no way out, and REFUSED (unlike SERVFAIL) makes stub
//     resolvers give up at once instead of retrying.
//
// Local answers change the moment a sandbox is attached or detached. Their
// records carry a TTL of 5 seconds (localTTL), and so does the SOA minimum
// that bounds negative caching of NXDOMAIN and NODATA: a client that caches
// sees a removed name vanish, or a new name appear, within 5 seconds, and a
// burst of connections costs one query rather than one each. Negative
// answers for single-label names outside the zone ("nope") carry no SOA and
// are not cached at all (RFC 2308 §5).
//
// Every answer, UDP and TCP, local and forwarded, is sent with name
// compression (RFC 1035 §4.1.4; RFC 1123 §6.1.2.4 requires it): 45
// endpoints sharing an alias make 45 records with the same owner name, which
// is spelled once and pointed at afterwards. Over UDP an answer larger than
// the client's buffer is truncated (TC set) after compression.
//
// Queries whose source address is outside the network's subnet are answered
// REFUSED (a short answer, no amplification, and the sender learns at once
// that it asked the wrong server instead of timing out).
//
// # Concurrency
//
// Each network's names (a map from name to addresses and from address to
// name) change in place, one record per update, under the network's write
// lock; queries answer under its read lock, which they hold for the few
// microseconds of building the answer (forwarding happens outside it). An
// update costs the same however many records the network has. Listeners
// are only started and stopped by SetNetworks, never by record changes.
//
// # Namespaces
//
// Listening sockets are created by SetNetworks on the calling goroutine's OS
// thread, so they belong to that thread's network namespace and stay there
// whichever goroutine serves them later. Upstream sockets are created per
// query by Options.Dial (default: the daemon's namespace).
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults for Options.
const (
	DefaultResolvConf     = "/etc/resolv.conf"
	DefaultStubResolvConf = "/run/systemd/resolve/resolv.conf"
	DefaultTimeout        = 2 * time.Second
	DefaultPort           = 53
)

// shutdownGrace bounds how long stopping a listener waits for queries in
// flight (a forward may wait for upstream timeouts) before closing it.
const shutdownGrace = 2 * time.Second

// maxInflightForwards: beyond this many queries waiting for upstreams, new
// outside queries get SERVFAIL at once.
const maxInflightForwards = 1024

// Options configure a Server.
type Options struct {
	// Upstreams are "ip:port" (or "ip", port 53) of the resolvers that
	// outside names are forwarded to, tried in order. Empty: read from
	// ResolvConf (see UpstreamsFromResolvConf).
	Upstreams []string
	// ResolvConf is the host's resolv.conf; default /etc/resolv.conf.
	ResolvConf string
	// StubResolvConf is read when ResolvConf lists only loopback stubs
	// (systemd-resolved's 127.0.0.53); default
	// /run/systemd/resolve/resolv.conf.
	StubResolvConf string
	// Timeout is the limit of one attempt at one upstream; default 2s.
	Timeout time.Duration
	// Port the listeners bind on the gateway; default 53.
	Port uint16
	// Dial opens the connection to an upstream ("udp" or "tcp"). Default: a
	// net.Dialer, i.e. a socket in the calling thread's namespace (the
	// daemon's). Tests use it to keep upstream traffic inside their netns.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Log receives warnings, and forwarding failures at debug level.
	Log *slog.Logger
}

// Network is what the resolver needs to know of a pontoon network.
type Network struct {
	Name     string
	Gateway  netip.Addr   // listen address; must be on the bridge before SetNetworks
	Subnet   netip.Prefix // queries from outside it are refused; PTR zone
	Internal bool         // no forwarding: outside names are REFUSED
}

// Record is one endpoint's names on one network.
type Record struct {
	Name    string // the sandbox name
	Aliases []string
	IP      netip.Addr
}

// Server is the set of per-network resolvers of one daemon.
type Server struct {
	opts  Options
	log   *slog.Logger
	dial  func(ctx context.Context, network, address string) (net.Conn, error)
	stats counters

	upstreams atomic.Pointer[[]string]
	preferred atomic.Uint32 // index of the upstream that answered last
	// own holds the listen addresses ("ip:port"): an upstream among them
	// would forward to itself forever (--dns GATEWAY), so it is skipped.
	own atomic.Pointer[map[string]bool]
	// inflight bounds concurrent forwards: each holds a goroutine for up to
	// Timeout per upstream, and a flood must not grow that without limit.
	inflight chan struct{}

	mu     sync.Mutex
	nets   map[string]*netEntry // by network name
	closed bool
}

// netEntry is one network: its records, its configuration and listeners. It
// is the dns.Handler of its listeners.
type netEntry struct {
	srv   *Server
	name  string
	zname string // lower-case zone name

	cfg atomic.Pointer[Network] // nil until SetNetworks configured it

	zmu  sync.RWMutex
	zone *zone // guarded by zmu; never nil

	// Guarded by Server.mu.
	records    map[netip.Addr]Record
	configured bool
	udp, tcp   *mdns.Server
	listenAddr netip.AddrPort
}

// New returns a Server with no networks. It fails only on an invalid
// explicit upstream; a missing resolv.conf is logged and leaves the server
// without upstreams (outside names then get SERVFAIL).
func New(o Options) (*Server, error) {
	if o.ResolvConf == "" {
		o.ResolvConf = DefaultResolvConf
	}
	if o.StubResolvConf == "" {
		o.StubResolvConf = DefaultStubResolvConf
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: o.Log, dial: o.Dial, nets: map[string]*netEntry{},
		inflight: make(chan struct{}, maxInflightForwards)}
	s.own.Store(&map[string]bool{})
	if s.dial == nil {
		d := &net.Dialer{}
		s.dial = d.DialContext
	}
	if len(o.Upstreams) > 0 {
		ups, err := ParseUpstreams(o.Upstreams)
		if err != nil {
			return nil, err
		}
		s.upstreams.Store(&ups)
	} else if err := s.ReloadUpstreams(); err != nil {
		s.log.Warn("dns: no upstream resolvers, outside names will fail", "err", err)
	}
	return s, nil
}

// ReloadUpstreams re-reads the host's resolv.conf (the daemon calls it when
// the file changed, e.g. on SIGHUP). With explicit Options.Upstreams it does
// nothing. On error the previous upstreams are kept.
func (s *Server) ReloadUpstreams() error {
	if len(s.opts.Upstreams) > 0 {
		return nil
	}
	ups, err := UpstreamsFromResolvConf(s.opts.ResolvConf, s.opts.StubResolvConf)
	if err != nil {
		if s.upstreams.Load() == nil {
			empty := []string{}
			s.upstreams.Store(&empty)
		}
		return err
	}
	s.upstreams.Store(&ups)
	s.preferred.Store(0)
	return nil
}

// Upstreams returns the resolvers outside names are forwarded to.
func (s *Server) Upstreams() []string {
	return slices.Clone(*s.upstreams.Load())
}

// entryLocked returns the entry of a network, creating it.
func (s *Server) entryLocked(network string) *netEntry {
	e := s.nets[network]
	if e == nil {
		e = &netEntry{srv: s, name: network, zname: normName(network), records: map[netip.Addr]Record{}}
		e.zone = newZone(e.zname)
		s.nets[network] = e
	}
	return e
}

// SetNetworks makes the set of served networks exactly nets: listeners start
// for new networks, stop for removed ones (whose records are dropped), and
// restart when a gateway changed; subnet and Internal changes apply at once.
// It is idempotent. A network whose listener cannot bind (typically: its
// gateway address is not on the bridge yet) is reported in the joined error
// and retried by the next call; the others are served regardless.
func (s *Server) SetNetworks(nets []Network) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: server closed")
	}
	var errs []error
	want := map[string]bool{}
	// Add and update before removing.
	for _, n := range nets {
		if err := validateNetwork(n); err != nil {
			errs = append(errs, err)
			continue
		}
		if want[n.Name] {
			errs = append(errs, fmt.Errorf("dns: network %q listed twice", n.Name))
			continue
		}
		want[n.Name] = true
		n.Gateway = n.Gateway.Unmap()
		n.Subnet = netip.PrefixFrom(n.Subnet.Addr().Unmap(), n.Subnet.Bits()).Masked()
		e := s.entryLocked(n.Name)
		e.configured = true
		e.cfg.Store(&n)
		addr := netip.AddrPortFrom(n.Gateway, s.opts.Port)
		if e.udp != nil && e.listenAddr == addr {
			continue
		}
		e.stopLocked()
		if err := e.listenLocked(addr); err != nil {
			errs = append(errs, fmt.Errorf("dns: listen for network %s on %s: %w", n.Name, addr, err))
		}
	}
	for name, e := range s.nets {
		if want[name] || !e.configured {
			continue
		}
		e.cfg.Store(nil)
		e.stopLocked()
		delete(s.nets, name)
	}
	s.updateOwnLocked()
	return errors.Join(errs...)
}

func validateNetwork(n Network) error {
	switch {
	case n.Name == "":
		return errors.New("dns: network without a name")
	case !n.Gateway.IsValid() || !n.Subnet.IsValid():
		return fmt.Errorf("dns: network %s: gateway and subnet are required", n.Name)
	case n.Gateway.IsUnspecified():
		return fmt.Errorf("dns: network %s: refusing to listen on %s", n.Name, n.Gateway)
	case !n.Subnet.Contains(n.Gateway.Unmap()):
		return fmt.Errorf("dns: network %s: gateway %s not in subnet %s", n.Name, n.Gateway, n.Subnet)
	}
	return nil
}

// listenLocked binds UDP and TCP on addr in the calling thread's namespace
// and serves them from background goroutines.
func (e *netEntry) listenLocked(addr netip.AddrPort) error {
	udpNet, tcpNet := "udp4", "tcp4"
	if addr.Addr().Is6() {
		udpNet, tcpNet = "udp6", "tcp6"
	}
	pc, err := net.ListenPacket(udpNet, addr.String())
	if err != nil {
		return err
	}
	ln, err := net.Listen(tcpNet, addr.String())
	if err != nil {
		pc.Close()
		return err
	}
	udp := &mdns.Server{PacketConn: pc, Handler: e}
	tcp := &mdns.Server{Listener: ln, Handler: e}
	if err := e.srv.activate(udp); err != nil {
		pc.Close()
		ln.Close()
		return err
	}
	if err := e.srv.activate(tcp); err != nil {
		shutdown(udp)
		ln.Close()
		return err
	}
	e.udp, e.tcp, e.listenAddr = udp, tcp, addr
	return nil
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

func (e *netEntry) stopLocked() {
	var wg sync.WaitGroup
	for _, srv := range []*mdns.Server{e.udp, e.tcp} {
		if srv != nil {
			wg.Go(func() { shutdown(srv) })
		}
	}
	wg.Wait()
	e.udp, e.tcp, e.listenAddr = nil, nil, netip.AddrPort{}
}

// SetRecord adds or replaces the endpoint with r.IP on network.
func (s *Server) SetRecord(network string, r Record) {
	if !r.IP.IsValid() {
		return
	}
	r.IP = r.IP.Unmap()
	r.Aliases = slices.Clone(r.Aliases)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked(network)
	old, had := e.records[r.IP]
	e.records[r.IP] = r
	e.zmu.Lock()
	if had {
		e.zone.unset(old)
	}
	e.zone.set(r)
	e.zmu.Unlock()
}

// RemoveRecord removes the endpoint with ip from network; absent is fine.
func (s *Server) RemoveRecord(network string, ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.nets[network]
	if e == nil {
		return
	}
	old, ok := e.records[ip.Unmap()]
	if !ok {
		return
	}
	delete(e.records, ip.Unmap())
	e.zmu.Lock()
	e.zone.unset(old)
	e.zmu.Unlock()
}

// ReplaceRecords sets all of a network's records at once.
func (s *Server) ReplaceRecords(network string, rs []Record) {
	m := make(map[netip.Addr]Record, len(rs))
	for _, r := range rs {
		if r.IP.IsValid() {
			r.IP = r.IP.Unmap()
			r.Aliases = slices.Clone(r.Aliases)
			m[r.IP] = r
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked(network)
	e.records = m
	z := buildZone(e.zname, m)
	e.zmu.Lock()
	e.zone = z
	e.zmu.Unlock()
}

// Close stops all listeners. Queries in flight are given shutdownGrace.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var wg sync.WaitGroup
	for _, e := range s.nets {
		e.cfg.Store(nil)
		wg.Go(e.stopLocked)
	}
	wg.Wait()
	clear(s.nets)
	return nil
}

func (s *Server) updateOwnLocked() {
	own := map[string]bool{}
	for _, e := range s.nets {
		if e.udp != nil {
			own[e.listenAddr.String()] = true
		}
	}
	s.own.Store(&own)
}

// listening returns the networks with a running listener, sorted.
func (s *Server) listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, e := range s.nets {
		if e.udp != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// normName lower-cases a name and drops its trailing dot.
func normName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
