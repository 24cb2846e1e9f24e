// Package dns is pontoon's embedded resolver: one per network, listening on
// each of the network's gateway addresses (IPv4 and IPv6; UDP and TCP, port
// 53) in the daemon's namespace, so that sandboxes on the network find each
// other by name, over either family.
//
// # Zone rules
//
// For a query arriving on network N (names compared case-insensitively, with
// or without the trailing dot):
//
//   - a sandbox name or alias on N, alone ("db") or under the network
//     ("db.N"), answers A with the endpoint's IPv4 address and AAAA with its
//     IPv6 address, from the same record (several endpoints may share an
//     alias: all their addresses are returned, sorted; a sandbox
//     name belongs to one member only, which the engine enforces up to
//     case when it reserves an endpoint). Other types for an existing name
//     answer NOERROR with no records (NODATA), never NXDOMAIN, so that an
//     AAAA lookup running next to the A lookup does not make a stub
//     resolver give up on the name.
//   - any other single-label name, and anything under ".N." (a.b.N too), is
//     pontoon's: authoritative NXDOMAIN. N itself (the zone apex) exists:
//     NODATA, or its SOA when asked for SOA.
//   - PTR for an address in one of N's subnets, in-addr.arpa for IPv4 and
//     ip6.arpa (32 nibbles, RFC 3596 §2.5) for IPv6, answers NAME.N. (the
//     endpoint's sandbox name) or authoritative NXDOMAIN. A partial reverse
//     name (a zone cut such as 0.88.10.in-addr.arpa) is not pontoon's.
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
// Queries whose source address is outside the network's subnets are answered
// REFUSED (a short answer, no amplification, and the sender learns at once
// that it asked the wrong server instead of timing out).
//
// # Sandbox resolvers
//
// A network the host cannot reach (a veth pair between two sandboxes,
// macvlan) is declared with Subnets instead of Gateways and gets no
// listener. SetSandbox starts, for each of its sandboxes, a resolver on
// 127.0.0.11:53 inside the sandbox's own namespace (what Docker does for
// every container), listing the networks whose names it answers; the
// sandbox's resolv.conf is SandboxResolvConf. The zone rules above apply
// with the sandbox's networks taken together: a name on any of them
// exists, a name on several answers with the addresses of all, PTR
// answers for an address in any of their subnets, and outside names are
// forwarded unless every one of the networks is internal. No source is
// refused: only the sandbox's namespace reaches the socket.
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
// whichever goroutine serves them later. SetSandbox makes its sockets on a
// locked thread that enters the sandbox's namespace and returns to its own
// before it is unlocked (netns.DoChecked); a socket keeps a reference to
// its namespace, so a sandbox's lives until RemoveSandbox or Close. Upstream sockets are created per
// query by Options.Dial (default: the daemon's namespace); upstreams may be
// of either family, whatever the family a query arrived on.
//
// # Tentative IPv6 gateways
//
// An IPv6 address is tentative for about two seconds after it is added
// (duplicate address detection), and bind() on it fails with
// EADDRNOTAVAIL meanwhile. When that happens and the address is on an
// interface of the namespace, tentative, the listener binds with
// IPV6_FREEBIND (IP_FREEBIND for IPv4: the same code, and IPv4 has no
// tentative state): the socket exists at once and receives from the moment
// the kernel makes the address usable, without SetNetworks being called
// again. Retrying instead would hold SetNetworks (and the engine's lock
// around it) for the whole detection, or give up and leave the network
// without a v6 resolver until the next network change; IFA_F_NODAD on the
// bridge address avoids the wait but is the bridge's owner's choice, and
// addresses added by an older version or by hand lack it. An address on no
// interface, or one that failed detection (IFA_F_DADFAILED), is still an
// error: freebind would hide a gateway that will never work.
package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
	Name string
	// Gateways are the bridge's addresses, each with its subnet's length
	// (10.88.0.1/24, fd00:1::1/64), at most one per family. The resolver
	// listens on each (the address must be on the bridge before
	// SetNetworks), refuses queries from outside the subnets and answers
	// PTR for addresses inside them.
	Gateways []netip.Prefix
	// Subnets are the subnets (10.88.0.0/24, fd00:1::/64, at most one per
	// family) of a network without gateways: one whose sandboxes have no
	// way to the host (a veth pair between two sandboxes, macvlan). It
	// gets no listener here; its sandboxes ask the resolver SetSandbox
	// makes inside each of them, and the subnets say which addresses have
	// a PTR answer. Set either Gateways or Subnets, never both: the
	// gateways carry their subnets.
	Subnets  []netip.Prefix
	Internal bool // no forwarding: outside names are REFUSED
}

// contains reports whether ip is in one of the network's subnets.
func (n *Network) contains(ip netip.Addr) bool {
	for _, g := range n.Gateways {
		if g.Contains(ip) { // Contains ignores the host bits of g
			return true
		}
	}
	for _, p := range n.Subnets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Record is one endpoint's names on one network.
type Record struct {
	Name    string // the sandbox name
	Aliases []string
	// IPs are the endpoint's addresses, one per family (more are served
	// too): the names answer A with the IPv4 ones and AAAA with the IPv6
	// ones, and each has a PTR. Any one of them identifies the endpoint
	// (see SetRecord).
	IPs []netip.Addr
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

	mu        sync.Mutex
	nets      map[string]*netEntry // by network name
	sandboxes map[string]*sandbox  // by namespace path (SetSandbox)
	closed    bool
	// entries is a copy of nets, replaced whenever an entry comes or goes
	// (publishLocked), for sandbox queries to look networks up without mu.
	entries atomic.Pointer[map[string]*netEntry]
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
	records    map[netip.Addr]*Record // every address of every record
	configured bool
	listeners  map[netip.AddrPort]*listener
}

// listener is the UDP and TCP server on one gateway address.
type listener struct {
	udp, tcp *mdns.Server
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
		sandboxes: map[string]*sandbox{}, inflight: make(chan struct{}, maxInflightForwards)}
	s.own.Store(&map[string]bool{})
	s.entries.Store(&map[string]*netEntry{})
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
		e = &netEntry{srv: s, name: network, zname: normName(network),
			records: map[netip.Addr]*Record{}, listeners: map[netip.AddrPort]*listener{}}
		e.zone = newZone(e.zname)
		s.nets[network] = e
		s.publishLocked()
	}
	return e
}

// SetNetworks makes the set of served networks exactly nets: listeners start
// for new networks and new gateways, stop for removed ones (a removed
// network's records are dropped); subnet and Internal changes apply at once,
// and a gateway that stays keeps its sockets. It is idempotent. A gateway
// that cannot be bound (typically: its address is not on the bridge yet) is
// reported in the joined error and retried by the next call; the other
// gateways and networks are served regardless.
func (s *Server) SetNetworks(nets []Network) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: server closed")
	}
	var errs []error
	want, keep := map[string]bool{}, map[string]bool{}
	var local localAddrs // read from the kernel once, when a bind needs it
	// Add and update before removing.
	for _, n := range nets {
		n, err := normNetwork(n)
		if err != nil {
			keep[n.Name] = true // a network that was served stays as it was
			errs = append(errs, err)
			continue
		}
		if want[n.Name] {
			errs = append(errs, fmt.Errorf("dns: network %q listed twice", n.Name))
			continue
		}
		want[n.Name] = true
		e := s.entryLocked(n.Name)
		e.configured = true
		e.cfg.Store(&n)
		addrs := make([]netip.AddrPort, len(n.Gateways))
		for i, g := range n.Gateways {
			addrs[i] = netip.AddrPortFrom(g.Addr(), s.opts.Port)
		}
		var gone []*listener
		for addr, l := range e.listeners {
			if !slices.Contains(addrs, addr) {
				gone = append(gone, l)
				delete(e.listeners, addr)
			}
		}
		stopAll(gone)
		for _, addr := range addrs {
			if e.listeners[addr] != nil {
				continue
			}
			l, err := s.listen(addr, e, &local)
			if err != nil {
				errs = append(errs, fmt.Errorf("dns: listen for network %s on %s: %w", n.Name, addr, err))
				continue
			}
			e.listeners[addr] = l
		}
	}
	for name, e := range s.nets {
		if want[name] || keep[name] || !e.configured {
			continue
		}
		e.cfg.Store(nil)
		e.stopLocked()
		delete(s.nets, name)
	}
	s.publishLocked()
	s.updateOwnLocked()
	return errors.Join(errs...)
}

// normNetwork checks n and returns it with its gateways unmapped, IPv4
// first, in a slice of its own.
func normNetwork(n Network) (Network, error) {
	if n.Name == "" {
		return n, errors.New("dns: network without a name")
	}
	if len(n.Gateways) > 0 && len(n.Subnets) > 0 {
		return n, fmt.Errorf("dns: network %s: both gateways and subnets given: give the gateways (with their subnet's length) for a network the host reaches, the subnets for one it does not", n.Name)
	}
	if len(n.Subnets) > 0 {
		return normSubnets(n)
	}
	if len(n.Gateways) == 0 {
		return n, fmt.Errorf("dns: network %s: no gateway address to listen on, and no subnets: give Subnets for a network without gateways", n.Name)
	}
	gws := make([]netip.Prefix, 0, len(n.Gateways))
	for _, g := range n.Gateways {
		g = unmapPrefix(g)
		switch {
		case !g.IsValid():
			return n, fmt.Errorf("dns: network %s: invalid gateway %s: want an address with its subnet's length, e.g. 10.88.0.1/24", n.Name, g)
		case !g.Addr().IsGlobalUnicast(): // 10/8 and fd00::/8 are "global" here
			return n, fmt.Errorf("dns: network %s: refusing to listen on %s: want a unicast address of the network's subnet (not unspecified, loopback, link-local or multicast)", n.Name, g.Addr())
		}
		for _, o := range gws {
			if o.Addr().Is4() == g.Addr().Is4() {
				return n, fmt.Errorf("dns: network %s: two gateways of one family (%s, %s): at most one IPv4 and one IPv6", n.Name, o, g)
			}
		}
		gws = append(gws, g)
	}
	n.Gateways = v4First(gws)
	return n, nil
}

// normSubnets checks the subnets of a network without gateways and returns
// it with them masked, unmapped, IPv4 first, in a slice of their own.
func normSubnets(n Network) (Network, error) {
	ps := make([]netip.Prefix, 0, len(n.Subnets))
	for _, p := range n.Subnets {
		p = unmapPrefix(p)
		if !p.IsValid() {
			return n, fmt.Errorf("dns: network %s: invalid subnet %s: want a prefix, e.g. 10.88.0.0/24", n.Name, p)
		}
		p = p.Masked()
		for _, o := range ps {
			if o.Addr().Is4() == p.Addr().Is4() {
				return n, fmt.Errorf("dns: network %s: two subnets of one family (%s, %s): at most one IPv4 and one IPv6", n.Name, o, p)
			}
		}
		ps = append(ps, p)
	}
	n.Subnets = v4First(ps)
	return n, nil
}

// unmapPrefix turns ::ffff:10.88.0.1/120 into 10.88.0.1/24 (invalid when
// the length does not fit IPv4).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() {
		return p
	}
	if p.Bits() < 96 {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
}

// v4First sorts gateways IPv4 first, in place, and returns them.
func v4First(gws []netip.Prefix) []netip.Prefix {
	slices.SortStableFunc(gws, func(a, b netip.Prefix) int {
		return cmp.Compare(a.Addr().BitLen(), b.Addr().BitLen())
	})
	return gws
}

// stopLocked stops all of the network's listeners.
func (e *netEntry) stopLocked() {
	stopAll(slices.Collect(maps.Values(e.listeners)))
	clear(e.listeners)
}

// normRecord returns r with its addresses valid, unmapped, sorted and
// unique, and slices of its own; ok is false when none is left.
func normRecord(r Record) (_ *Record, ok bool) {
	ips := make([]netip.Addr, 0, len(r.IPs))
	for _, ip := range r.IPs {
		if ip.IsValid() {
			ips = append(ips, ip.Unmap())
		}
	}
	if len(ips) == 0 {
		return nil, false
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	r.IPs = slices.Compact(ips)
	r.Aliases = slices.Clone(r.Aliases)
	return &r, true
}

// putLocked adds r to records and z, replacing the records that hold any of
// its addresses (entirely: all their addresses and names go).
func putLocked(records map[netip.Addr]*Record, z *zone, r *Record) {
	for _, ip := range r.IPs {
		if old := records[ip]; old != nil {
			dropLocked(records, z, old)
		}
	}
	for _, ip := range r.IPs {
		records[ip] = r
	}
	z.set(*r)
}

// dropLocked removes r, and every address of it, from records and z.
func dropLocked(records map[netip.Addr]*Record, z *zone, r *Record) {
	for _, ip := range r.IPs {
		delete(records, ip)
	}
	z.unset(*r)
}

// SetRecord adds an endpoint's record to network. An address identifies an
// endpoint: a record holding any of r.IPs is replaced, all of it (an
// endpoint whose addresses changed is set with its new ones; its old
// record goes as soon as they share one). Invalid addresses are ignored; a
// record with none is.
func (s *Server) SetRecord(network string, r Record) {
	nr, ok := normRecord(r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked(network)
	e.zmu.Lock()
	putLocked(e.records, e.zone, nr)
	e.zmu.Unlock()
}

// RemoveRecord removes from network the endpoint that has ip among its
// addresses, with all its addresses; absent is fine.
func (s *Server) RemoveRecord(network string, ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.nets[network]
	if e == nil {
		return
	}
	old := e.records[ip.Unmap()]
	if old == nil {
		return
	}
	e.zmu.Lock()
	dropLocked(e.records, e.zone, old)
	e.zmu.Unlock()
}

// ReplaceRecords sets all of a network's records at once, as SetRecord
// would one after the other (a later record sharing an address with an
// earlier one replaces it).
func (s *Server) ReplaceRecords(network string, rs []Record) {
	m := make(map[netip.Addr]*Record, len(rs))
	z := newZone(normName(network))
	for _, r := range rs {
		if nr, ok := normRecord(r); ok {
			putLocked(m, z, nr) // m and z are still this goroutine's own
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked(network)
	e.records = m
	e.zmu.Lock()
	e.zone = z
	e.zmu.Unlock()
}

// Close stops all listeners, the networks' and the sandboxes'. Queries in
// flight are given shutdownGrace.
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
	var sbs []*listener
	for _, sb := range s.sandboxes {
		sbs = append(sbs, sb.l)
	}
	wg.Go(func() { stopAll(sbs) })
	wg.Wait()
	clear(s.nets)
	clear(s.sandboxes)
	s.publishLocked()
	return nil
}

func (s *Server) updateOwnLocked() {
	own := map[string]bool{}
	for _, e := range s.nets {
		for addr := range e.listeners {
			own[addr.String()] = true
		}
	}
	s.own.Store(&own)
}

// listening returns the networks with a running listener on every one of
// their gateways, sorted: a network missing from it has a gateway that
// SetNetworks could not bind (and reported).
func (s *Server) listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, e := range s.nets {
		cfg := e.cfg.Load()
		if cfg == nil || len(e.listeners) == 0 || len(e.listeners) != len(cfg.Gateways) {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// normName lower-cases a name and drops its trailing dot.
func normName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
