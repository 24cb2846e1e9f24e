package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"pontoon/internal/testutil"
)

// lab is a throwaway topology, nothing of it in the machine's namespace:
//
//	host ns ("the daemon's")                 sandbox ns
//	  br0     10.88.0.1/24  ── vh0 ═══ veth ═══ eth0 10.88.0.2/24
//	          fd00:88::1/64                          fd00:88::2/64
//	  up0     198.51.100.53/24, .54/24  (port-less bridge: the fake upstream
//	          2001:db8::53/64, ::54/64   on .53 and ::53, nothing on .54, ::54)
//	  203.0.113.0/24 dev up0  (up0 has no ports: a silent upstream)
//
// IPv6 addresses are added without duplicate address detection (nodad), as
// pontoon adds its own, so that they are usable at once.
type lab struct {
	t       testing.TB
	host    string
	sandbox string
}

var labNet = Network{Name: "app", Gateways: prefixes("10.88.0.1/24", "fd00:88::1/64")}

func newLab(t testing.TB) *lab {
	t.Helper()
	l := &lab{t: t, host: testutil.NewNetns(t), sandbox: testutil.NewNetns(t)}
	l.ip(l.host,
		"link add br0 type bridge",
		"addr add 10.88.0.1/24 dev br0",
		"addr add fd00:88::1/64 dev br0 nodad",
		"link set br0 up",
		"link add vh0 type veth peer name eth0 netns "+l.sandbox,
		"link set vh0 master br0 up",
		// No dummy module on this kernel: a port-less bridge drops what
		// it is given just as well.
		"link add up0 type bridge",
		"addr add 198.51.100.53/24 dev up0",
		"addr add 198.51.100.54/24 dev up0",
		"addr add 2001:db8::53/64 dev up0 nodad",
		"addr add 2001:db8::54/64 dev up0 nodad",
		"link set up0 up",
		"route add 203.0.113.0/24 dev up0",
		// A permanent neighbour, so the silence lasts: no ARP failure turns
		// into a fast "host unreachable".
		"neigh add 203.0.113.1 lladdr 02:00:00:00:00:01 dev up0 nud permanent",
	)
	l.ip(l.sandbox,
		"addr add 10.88.0.2/24 dev eth0",
		"addr add fd00:88::2/64 dev eth0 nodad",
		"link set eth0 up",
	)
	return l
}

// ip runs `ip` commands inside the namespace at ns.
func (l *lab) ip(ns string, cmds ...string) {
	l.t.Helper()
	err := testutil.InNetns(l.t, ns, func() error {
		for _, c := range cmds {
			if out, err := exec.Command("ip", strings.Fields(c)...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %s: %v: %s", c, err, out)
			}
		}
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
}

// dialer dials upstreams from inside the host namespace, where the daemon
// would run.
func (l *lab) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = testutil.InNetns(l.t, l.host, func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// startServer starts a resolver for labNet in the host namespace.
func (l *lab) startServer(o Options) *Server {
	l.t.Helper()
	if o.ResolvConf == "" {
		o.ResolvConf = l.t.TempDir() + "/none" // never /etc
	}
	o.Dial = l.dialer()
	s, err := New(o)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { s.Close() })
	s.ReplaceRecords("app", []Record{
		{Name: "db", Aliases: []string{"database"}, IPs: addrs("10.88.0.2", "fd00:88::2")},
		{Name: "web", IPs: addrs("10.88.0.3")},
	})
	// The sockets are made here, on a thread inside the host namespace; the
	// thread is discarded when InNetns returns and the listeners are served
	// by goroutines on other threads: a socket keeps the namespace it was
	// created in.
	if err := testutil.InNetns(l.t, l.host, func() error { return s.SetNetworks([]Network{labNet}) }); err != nil {
		l.t.Fatal(err)
	}
	return s
}

// fakeUpstream serves on 198.51.100.53:53 and [2001:db8::53]:53 (UDP and
// TCP) in the host namespace: A 192.0.2.80 for every name (AAAA
// 2001:db8::80 when asked for AAAA), 60 A records for big.example.
type fakeUpstream struct {
	udp, tcp atomic.Int32
	v6       atomic.Int32 // queries that arrived on ::53
	names    sync.Map     // names asked
}

func (l *lab) startUpstream() *fakeUpstream {
	l.t.Helper()
	u := &fakeUpstream{}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		_, isTCP := w.RemoteAddr().(*net.TCPAddr)
		if isTCP {
			u.tcp.Add(1)
		} else {
			u.udp.Add(1)
		}
		if ap, err := netip.ParseAddrPort(w.LocalAddr().String()); err == nil && ap.Addr().Is6() {
			u.v6.Add(1)
		}
		q := r.Question[0]
		u.names.Store(q.Name, true)
		m := new(mdns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		n := 1
		if q.Name == "big.example." {
			n = 60
		}
		for i := range n {
			if q.Qtype == mdns.TypeAAAA {
				m.Answer = append(m.Answer, &mdns.AAAA{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: 60},
					AAAA: net.ParseIP(fmt.Sprintf("2001:db8::%d", 80+i))})
				continue
			}
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
				A: net.IPv4(192, 0, 2, byte(80+i))})
		}
		if !isTCP {
			m.Truncate(udpSize(r))
		}
		w.WriteMsg(m)
	})
	var servers []*mdns.Server
	err := testutil.InNetns(l.t, l.host, func() error {
		for _, addr := range []string{"198.51.100.53:53", "[2001:db8::53]:53"} {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				pc.Close()
				return err
			}
			servers = append(servers, &mdns.Server{PacketConn: pc, Handler: h}, &mdns.Server{Listener: ln, Handler: h})
		}
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
	var s Server // for activate's logger
	s.log = discardLog()
	for _, srv := range servers {
		if err := s.activate(srv); err != nil {
			l.t.Fatal(err)
		}
		l.t.Cleanup(func() { shutdown(srv) })
	}
	return u
}

// client is a DNS client socket made in a namespace, to a server address.
type client struct {
	conn *mdns.Conn
}

func (l *lab) client(ns, network, server string, local string) *client {
	l.t.Helper()
	var c net.Conn
	err := testutil.InNetns(l.t, ns, func() (err error) {
		d := net.Dialer{}
		if local != "" {
			if network == "udp" {
				d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(local)}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
			}
		}
		c, err = d.Dial(network, server)
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	return &client{conn: &mdns.Conn{Conn: c}}
}

func (c *client) exchange(name string, qtype uint16, edns bool) (*mdns.Msg, error) {
	return c.exchangeWithin(name, qtype, edns, 3*time.Second)
}

func (c *client) exchangeWithin(name string, qtype uint16, edns bool, d time.Duration) (*mdns.Msg, error) {
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	if edns {
		q.SetEdns0(4096, false)
	}
	cl := mdns.Client{Timeout: d}
	m, _, err := cl.ExchangeWithConn(q, c.conn)
	return m, err
}

func (l *lab) must(c *client, name string, qtype uint16, rcode int, want ...string) *mdns.Msg {
	l.t.Helper()
	m, err := c.exchange(name, qtype, false)
	if err != nil {
		l.t.Fatalf("%s: %v", name, err)
	}
	got := answers(m)
	if m.Rcode != rcode || strings.Join(got, ",") != strings.Join(want, ",") {
		l.t.Fatalf("%s %s: %s %v; want %s %v", name, mdns.TypeToString[qtype], mdns.RcodeToString[m.Rcode], got,
			mdns.RcodeToString[rcode], want)
	}
	return m
}

func TestKernelResolve(t *testing.T) {
	l := newLab(t)
	up := l.startUpstream()
	s := l.startServer(Options{Upstreams: []string{"198.51.100.53"}})

	for _, proto := range []string{"udp", "tcp"} {
		c := l.client(l.sandbox, proto, "10.88.0.1:53", "")
		l.must(c, "db.", mdns.TypeA, mdns.RcodeSuccess, "A 10.88.0.2")
		l.must(c, "Database.App.", mdns.TypeA, mdns.RcodeSuccess, "A 10.88.0.2")
		l.must(c, "web.app.", mdns.TypeA, mdns.RcodeSuccess, "A 10.88.0.3")
		if m := l.must(c, "nope.app.", mdns.TypeA, mdns.RcodeNameError); !m.Authoritative {
			t.Errorf("%s: NXDOMAIN not authoritative", proto)
		}
		l.must(c, "3.0.88.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, "PTR web.app.")
		l.must(c, "example.org.", mdns.TypeA, mdns.RcodeSuccess, "A 192.0.2.80")
	}
	if _, ok := up.names.Load("example.org."); !ok {
		t.Error("upstream never saw example.org.")
	}
	if _, ok := up.names.Load("db."); ok {
		t.Error("local name leaked upstream")
	}

	// From outside the subnet (the host namespace, source 198.51.100.53):
	// refused.
	outsider := l.client(l.host, "udp", "10.88.0.1:53", "198.51.100.53")
	l.must(outsider, "db.", mdns.TypeA, mdns.RcodeRefused)

	// Removal is visible at once; no listener restart.
	c := l.client(l.sandbox, "udp", "10.88.0.1:53", "")
	s.RemoveRecord("app", netip.MustParseAddr("10.88.0.3"))
	l.must(c, "web.", mdns.TypeA, mdns.RcodeNameError)
	s.SetRecord("app", Record{Name: "web", IPs: addrs("10.88.0.3")})
	l.must(c, "web.", mdns.TypeA, mdns.RcodeSuccess, "A 10.88.0.3")

	// SetNetworks again (same networks, from another namespace even: nothing
	// is rebound) keeps serving on the same socket.
	if err := s.SetNetworks([]Network{labNet}); err != nil {
		t.Fatal(err)
	}
	l.must(c, "db.", mdns.TypeA, mdns.RcodeSuccess, "A 10.88.0.2")

	// A network whose gateway is not on any link fails alone.
	other := Network{Name: "other", Gateways: prefixes("10.89.0.1/24")}
	err := testutil.InNetns(t, l.host, func() error { return s.SetNetworks([]Network{labNet, other}) })
	if err == nil || !strings.Contains(err.Error(), "other") || !strings.Contains(err.Error(), "no interface") {
		t.Fatalf("unbindable network: %v", err)
	}
	l.must(c, "db.", mdns.TypeA, mdns.RcodeSuccess, "A 10.88.0.2")
	if got := s.Stats().Listening; strings.Join(got, ",") != "app" {
		t.Errorf("listening %v", got)
	}
	// Once the address is there, the next call starts it.
	l.ip(l.host, "link add br1 type bridge", "addr add 10.89.0.1/24 dev br1", "link set br1 up")
	if err := testutil.InNetns(t, l.host, func() error { return s.SetNetworks([]Network{labNet, other}) }); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Listening; strings.Join(got, ",") != "app,other" {
		t.Errorf("listening %v", got)
	}

	st := s.Stats()
	if st.Queries < 14 || st.Forwarded != 2 || st.RefusedSource != 1 || st.Answers["NXDOMAIN"] < 3 ||
		st.ForwardLatency.Count != 2 {
		t.Errorf("stats %+v", st)
	}

	// Removing the network stops its listener: the port is closed.
	if err := s.SetNetworks(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.exchange("db.", mdns.TypeA, false); err == nil {
		t.Error("answer after the network was removed")
	}
}

// TestKernelDualStack: the resolver of a dual-stack network answers on its
// IPv4 and its IPv6 gateway, over UDP and TCP, A and AAAA for a name from
// the same record, PTR for both families, and forwards to an IPv6
// upstream; a client of the IPv6 gateway from outside the subnets is
// refused.
func TestKernelDualStack(t *testing.T) {
	l := newLab(t)
	up := l.startUpstream()
	s := l.startServer(Options{Upstreams: []string{"2001:db8::53"}})
	for _, server := range []string{"10.88.0.1:53", "[fd00:88::1]:53"} {
		for _, proto := range []string{"udp", "tcp"} {
			c := l.client(l.sandbox, proto, server, "")
			l.must(c, "db.", mdns.TypeA, mdns.RcodeSuccess, "A 10.88.0.2")
			l.must(c, "db.", mdns.TypeAAAA, mdns.RcodeSuccess, "AAAA fd00:88::2")
			l.must(c, "Database.app.", mdns.TypeAAAA, mdns.RcodeSuccess, "AAAA fd00:88::2")
			l.must(c, "web.", mdns.TypeAAAA, mdns.RcodeSuccess) // v4 only: NODATA
			l.must(c, "2.0.88.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, "PTR db.app.")
			l.must(c, rev6("fd00:88::2"), mdns.TypePTR, mdns.RcodeSuccess, "PTR db.app.")
			l.must(c, rev6("fd00:88::77"), mdns.TypePTR, mdns.RcodeNameError)
			l.must(c, "example.org.", mdns.TypeAAAA, mdns.RcodeSuccess, "AAAA 2001:db8::80")
		}
	}
	if got := up.v6.Load(); got != 4 {
		t.Errorf("the IPv6 upstream got %d queries, want 4", got)
	}
	// The host namespace has 2001:db8::53, outside app's subnets.
	outsider := l.client(l.host, "udp", "[fd00:88::1]:53", "2001:db8::53")
	l.must(outsider, "db.", mdns.TypeAAAA, mdns.RcodeRefused)

	if got := s.Stats().Listening; strings.Join(got, ",") != "app" {
		t.Errorf("listening %v", got)
	}
	// An IPv6 gateway that is on no interface fails alone, and says why;
	// the IPv4 one of the same network is served, and the network is not
	// reported as listening until both are.
	half := Network{Name: "half", Gateways: prefixes("10.89.0.1/24", "fd00:89::1/64")}
	l.ip(l.host, "link add br1 type bridge", "addr add 10.89.0.1/24 dev br1", "link set br1 up")
	err := testutil.InNetns(t, l.host, func() error { return s.SetNetworks([]Network{labNet, half}) })
	if err == nil || !strings.Contains(err.Error(), "fd00:89::1") || !strings.Contains(err.Error(), "no interface") {
		t.Fatalf("unbindable v6 gateway: %v", err)
	}
	if got := s.Stats().Listening; strings.Join(got, ",") != "app" {
		t.Errorf("listening %v", got)
	}
	s.SetRecord("half", Record{Name: "h", IPs: addrs("10.89.0.2")})
	l.ip(l.host, "link add vh1 type veth peer name eth1 netns "+l.sandbox, "link set vh1 master br1 up")
	l.ip(l.sandbox, "addr add 10.89.0.2/24 dev eth1", "link set eth1 up")
	l.must(l.client(l.sandbox, "udp", "10.89.0.1:53", ""), "h.", mdns.TypeA, mdns.RcodeSuccess, "A 10.89.0.2")
	// Its address added, the next call binds the missing gateway only.
	l.ip(l.host, "addr add fd00:89::1/64 dev br1 nodad")
	s.mu.Lock()
	v4 := s.nets["half"].listeners[netip.MustParseAddrPort("10.89.0.1:53")]
	s.mu.Unlock()
	if err := testutil.InNetns(t, l.host, func() error { return s.SetNetworks([]Network{labNet, half}) }); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	kept := s.nets["half"].listeners[netip.MustParseAddrPort("10.89.0.1:53")] == v4
	s.mu.Unlock()
	if !kept {
		t.Error("the IPv4 listener was restarted when the IPv6 one was added")
	}
	if got := s.Stats().Listening; strings.Join(got, ",") != "app,half" {
		t.Errorf("listening %v", got)
	}
	// Dropping the IPv6 gateway closes its port and keeps the other.
	half.Gateways = half.Gateways[:1]
	if err := s.SetNetworks([]Network{labNet, half}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	n := len(s.nets["half"].listeners)
	s.mu.Unlock()
	if n != 1 {
		t.Errorf("%d listeners after the IPv6 gateway was dropped", n)
	}
	l.must(l.client(l.sandbox, "udp", "10.89.0.1:53", ""), "h.", mdns.TypeA, mdns.RcodeSuccess, "A 10.89.0.2")
	err = testutil.InNetns(t, l.host, func() error {
		c, err := net.ListenPacket("udp6", "[fd00:89::1]:53")
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("[fd00:89::1]:53 still bound after the gateway was dropped: %v", err)
	}
}

// TestKernelTentativeGateway: an IPv6 gateway added with duplicate address
// detection is tentative for about two seconds, when bind() on it fails.
// SetNetworks must still succeed, and the resolver answer on it as soon as
// the kernel makes the address usable, without another SetNetworks. An
// address that failed detection is an error.
func TestKernelTentativeGateway(t *testing.T) {
	l := newLab(t)
	s := l.startServer(Options{Upstreams: []string{"198.51.100.53"}})
	l.ip(l.host,
		"link add br2 type bridge", "link set br2 up",
		"link add vh2 type veth peer name eth2 netns "+l.sandbox, "link set vh2 master br2 up",
		"addr add 10.87.0.1/24 dev br2",
		"addr add fd00:87::1/64 dev br2", // with DAD
	)
	l.ip(l.sandbox, "addr add fd00:87::2/64 dev eth2 nodad", "link set eth2 up")
	tent := Network{Name: "tent", Gateways: prefixes("10.87.0.1/24", "fd00:87::1/64")}
	s.SetRecord("tent", Record{Name: "t2", IPs: addrs("10.87.0.2", "fd00:87::2")})
	var before, after int
	err := testutil.InNetns(t, l.host, func() error {
		before = addrFlags(t, "fd00:87::1")
		err := s.SetNetworks([]Network{labNet, tent})
		after = addrFlags(t, "fd00:87::1")
		return err
	})
	if err != nil {
		t.Fatalf("SetNetworks with a tentative gateway: %v", err)
	}
	if before&after&unix.IFA_F_TENTATIVE == 0 {
		t.Fatalf("fd00:87::1 was not tentative around SetNetworks (flags %#x, %#x): the test proves nothing", before, after)
	}
	c := l.client(l.sandbox, "udp", "[fd00:87::1]:53", "")
	t0 := time.Now()
	for i := 0; ; i++ {
		m, err := c.exchangeWithin("t2.", mdns.TypeAAAA, false, 500*time.Millisecond)
		if err == nil {
			if got := answers(m); m.Rcode != mdns.RcodeSuccess || strings.Join(got, ",") != "AAAA fd00:87::2" {
				t.Fatalf("t2 AAAA: %s %v", mdns.RcodeToString[m.Rcode], got)
			}
			t.Logf("answered on the tentative gateway after %v (%d tries)", time.Since(t0), i+1)
			break
		}
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("no answer on [fd00:87::1]:53 %v after it was bound: %v", time.Since(t0), err)
		}
	}
	if flags := addrFlagsIn(t, l.host, "fd00:87::1"); flags&unix.IFA_F_TENTATIVE != 0 {
		t.Errorf("answered while the address was still tentative (flags %#x)", flags)
	}
	// The TCP socket, bound the same way, answers too.
	l.must(l.client(l.sandbox, "tcp", "[fd00:87::1]:53", ""), "t2.", mdns.TypeA, mdns.RcodeSuccess, "A 10.87.0.2")

	// A duplicate: the sandbox has fd00:87::3 already, the bridge's copy
	// fails detection and stays unusable; binding it is an error.
	l.ip(l.sandbox, "addr add fd00:87::3/64 dev eth2 nodad")
	l.ip(l.host, "addr add fd00:87::3/64 dev br2")
	for i := 0; addrFlagsIn(t, l.host, "fd00:87::3")&unix.IFA_F_DADFAILED == 0; i++ {
		if i == 100 {
			t.Fatalf("fd00:87::3 never failed detection (flags %#x)", addrFlagsIn(t, l.host, "fd00:87::3"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	dup := Network{Name: "dup", Gateways: prefixes("fd00:87::3/64")}
	err = testutil.InNetns(t, l.host, func() error { return s.SetNetworks([]Network{labNet, tent, dup}) })
	if err == nil || !strings.Contains(err.Error(), "duplicate address detection") {
		t.Fatalf("gateway that failed detection: %v", err)
	}
}

// addrFlags returns the IFA_F_* flags of ip in the calling thread's
// namespace (0 when it is not there).
func addrFlags(t *testing.T, ip string) int {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V6)
	if err != nil {
		t.Error(err)
		return 0
	}
	for _, a := range addrs {
		if a.IP.Equal(net.ParseIP(ip)) {
			return a.Flags
		}
	}
	return 0
}

func addrFlagsIn(t *testing.T, ns, ip string) (flags int) {
	if err := testutil.InNetns(t, ns, func() error { flags = addrFlags(t, ip); return nil }); err != nil {
		t.Fatal(err)
	}
	return flags
}

// TestKernelListenerNamespace checks that the listening socket lives in the
// namespace SetNetworks ran in, not in the namespace of the threads that
// serve it.
func TestKernelListenerNamespace(t *testing.T) {
	l := newLab(t)
	s := l.startServer(Options{Upstreams: []string{"198.51.100.53"}})
	s.mu.Lock()
	var pcs []*net.UDPConn // one per gateway
	for _, ln := range s.nets["app"].listeners {
		pcs = append(pcs, ln.udp.PacketConn.(*net.UDPConn))
	}
	s.mu.Unlock()
	if len(pcs) != 2 {
		t.Fatalf("%d listeners, want 2", len(pcs))
	}
	var want uint64
	if err := testutil.InNetns(t, l.host, func() error {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer c.Close()
		want, err = netnsCookie(c.(*net.UDPConn))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, pc := range pcs {
		got, err := netnsCookie(pc)
		if err != nil {
			t.Skipf("SO_NETNS_COOKIE: %v", err)
		}
		if got != want {
			t.Fatalf("listener on %s in netns cookie %d, host netns is %d", pc.LocalAddr(), got, want)
		}
	}
}

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14); x/sys/unix lacks it.
const soNetnsCookie = 71

func netnsCookie(c syscall.Conn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cookie uint64
	var serr error
	err = rc.Control(func(fd uintptr) {
		var v uint64
		serr = getsockoptUint64(int(fd), unix.SOL_SOCKET, soNetnsCookie, &v)
		cookie = v
	})
	if err != nil {
		return 0, err
	}
	return cookie, serr
}

// TestKernelUpstreamDown checks what the resolver does when upstreams
// refuse or are silent, by what it did (answers, attempts, whether it
// waited for a timeout), not by how fast: timings are
// BenchmarkUpstreamRefused's business. A refusing upstream must not cost a
// timeout, so its cases use a Timeout far above any scheduling delay (the
// answer comes long before it, or the resolver waited); a silent one must
// cost at least one.
func TestKernelUpstreamDown(t *testing.T) {
	l := newLab(t)
	up := l.startUpstream()
	const short, long = 300 * time.Millisecond, 20 * time.Second
	tests := []struct {
		name      string
		upstreams []string
		timeout   time.Duration
		rcode     int
		errors    uint64 // failed upstream attempts
		waits     bool   // the answer comes after one timeout at least
	}{
		// Nothing listens on .54 or ::54: ICMP port unreachable, no waiting.
		{"refused", []string{"198.51.100.54"}, long, mdns.RcodeServerFailure, 1, false},
		{"refused v6", []string{"2001:db8::54"}, long, mdns.RcodeServerFailure, 1, false},
		{"refused, then v6", []string{"198.51.100.54", "[2001:db8::53]:53"}, long, mdns.RcodeSuccess, 1, false},
		// 203.0.113.1 is routed into a port-less bridge: silence, one timeout.
		{"silent", []string{"203.0.113.1"}, short, mdns.RcodeServerFailure, 1, true},
		{"both down", []string{"198.51.100.54", "203.0.113.1"}, short, mdns.RcodeServerFailure, 2, true},
		// Failover past a silent upstream to a working one.
		{"failover", []string{"203.0.113.1", "198.51.100.53"}, short, mdns.RcodeSuccess, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := l.startServer(Options{Upstreams: tt.upstreams, Timeout: tt.timeout})
			defer s.Close()
			v6Before := up.v6.Load()
			c := l.client(l.sandbox, "udp", "10.88.0.1:53", "")
			t0 := time.Now()
			m, err := c.exchangeWithin("example.org.", mdns.TypeA, false, long+5*time.Second)
			d := time.Since(t0)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s after %v", mdns.RcodeToString[m.Rcode], d)
			if m.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if tt.waits && d < tt.timeout {
				t.Errorf("answered after %v, before the %v timeout of a silent upstream", d, tt.timeout)
			}
			if !tt.waits && d >= tt.timeout {
				t.Errorf("answered after %v: the resolver waited for the %v timeout of a refusing upstream", d, tt.timeout)
			}
			st := s.Stats()
			if st.UpstreamErrors != tt.errors {
				t.Errorf("%d failed upstream attempts, want %d", st.UpstreamErrors, tt.errors)
			}
			if failed := tt.rcode == mdns.RcodeServerFailure; (st.ForwardFailed == 1) != failed {
				t.Errorf("forward failed %d times, want failure %v", st.ForwardFailed, failed)
			}
			if strings.Contains(tt.name, "then v6") && up.v6.Load() != v6Before+1 {
				t.Errorf("the IPv6 upstream got %d queries, want 1", up.v6.Load()-v6Before)
			}
			if tt.name == "failover" {
				// The working upstream is now preferred: the silent one is
				// not tried again.
				if m, err := c.exchange("example.net.", mdns.TypeA, false); err != nil || m.Rcode != mdns.RcodeSuccess {
					t.Fatalf("%v %v", m, err)
				}
				if st := s.Stats(); st.UpstreamErrors != tt.errors {
					t.Errorf("second query: the silent upstream was tried again (%d failed attempts)", st.UpstreamErrors)
				}
			}
		})
	}
}

// BenchmarkUpstreamRefused measures how long a client waits for SERVFAIL
// when the only upstream refuses (ICMP port unreachable): the time the
// flaky bound of TestKernelUpstreamDown used to assert.
func BenchmarkUpstreamRefused(b *testing.B) {
	l := newLab(b)
	s := l.startServer(Options{Upstreams: []string{"198.51.100.54"}, Timeout: 20 * time.Second})
	c := l.client(l.sandbox, "udp", "10.88.0.1:53", "")
	for b.Loop() {
		m, err := c.exchange("example.org.", mdns.TypeA, false)
		if err != nil || m.Rcode != mdns.RcodeServerFailure {
			b.Fatalf("%v %v", m, err)
		}
	}
	b.StopTimer()
	if st := s.Stats(); st.ForwardFailed != st.Forwarded {
		b.Fatalf("stats %+v", st)
	}
}

func TestKernelTruncatedRetriesTCP(t *testing.T) {
	l := newLab(t)
	up := l.startUpstream()
	s := l.startServer(Options{Upstreams: []string{"198.51.100.53"}})
	c := l.client(l.sandbox, "udp", "10.88.0.1:53", "")
	// pontoon forwards the client's query as is. Without EDNS the upstream
	// truncates at 512 bytes; pontoon asks again over TCP, and has to
	// truncate the full answer again for this UDP client (which would then
	// retry over TCP itself).
	m, err := c.exchange("big.example.", mdns.TypeA, false)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || up.tcp.Load() != 1 || up.udp.Load() != 1 {
		t.Fatalf("no-EDNS client: tc=%v upstream udp=%d tcp=%d", m.Truncated, up.udp.Load(), up.tcp.Load())
	}
	// Over TCP the client gets all 60.
	tc := l.client(l.sandbox, "tcp", "10.88.0.1:53", "")
	m, err = tc.exchange("big.example.", mdns.TypeA, false)
	if err != nil || len(m.Answer) != 60 || m.Truncated {
		t.Fatalf("tcp client: %d answers, tc=%v, %v", len(m.Answer), m.Truncated, err)
	}
	if st := s.Stats(); st.TCPRetries != 1 {
		t.Errorf("tcp retries %d", st.TCPRetries)
	}
	// With EDNS 4096 the upstream answers in full over UDP: no retry.
	m, err = c.exchange("big.example.", mdns.TypeA, true)
	if err != nil || len(m.Answer) != 60 || m.Truncated {
		t.Fatalf("edns client: %d answers, tc=%v, %v", len(m.Answer), m.Truncated, err)
	}
}

// rawExchange sends one query and returns the answer's bytes as they came
// off the socket.
func (c *client) rawExchange(t *testing.T, name string, qtype uint16) []byte {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	_ = c.conn.SetDeadline(time.Now().Add(3 * time.Second))
	if err := c.conn.WriteMsg(q); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	raw, err := c.conn.ReadMsgHeader(nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return raw
}

// TestKernelTCPAnswerCompressed reads answers off a real TCP connection:
// 45 endpoints sharing the alias "pool" and a forwarded answer of 60
// records, every owner name a compression pointer, local TTLs localTTL.
func TestKernelTCPAnswerCompressed(t *testing.T) {
	l := newLab(t)
	l.startUpstream()
	s := l.startServer(Options{Upstreams: []string{"198.51.100.53"}})
	for i := range 45 {
		s.SetRecord("app", Record{Name: fmt.Sprintf("p%d", i), Aliases: []string{"pool"},
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 88, 0, byte(100 + i)})}})
	}
	tc := l.client(l.sandbox, "tcp", "10.88.0.1:53", "")
	for _, tt := range []struct {
		name string
		n    int
		ttl  uint32
	}{{"pool.", 45, localTTL}, {"pool.app.", 45, localTTL}, {"big.example.", 60, 60}} {
		raw := tc.rawExchange(t, tt.name, mdns.TypeA)
		rrs, err := wireAnswers(raw)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(rrs) != tt.n {
			t.Fatalf("%s: %d answers, want %d", tt.name, len(rrs), tt.n)
		}
		for i, rr := range rrs {
			if !rr.pointer || rr.ttl != tt.ttl {
				t.Fatalf("%s: answer %d: owner name a pointer %v, TTL %d; want a pointer and TTL %d",
					tt.name, i, rr.pointer, rr.ttl, tt.ttl)
			}
		}
		// Spelled out, each record would carry the whole owner name.
		m := new(mdns.Msg)
		if err := m.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		spelled, _ := m.Pack() // Compress is false after Unpack
		t.Logf("%s over TCP: %d bytes (%d spelled out)", tt.name, len(raw), len(spelled))
		if len(raw) >= len(spelled) {
			t.Errorf("%s: %d bytes on the wire, %d without compression", tt.name, len(raw), len(spelled))
		}
	}
}

// TestKernelConcurrentChurn: 1000 queries from 8 goroutines while records
// change every 2ms. Stable names must always answer right, churning names
// either NXDOMAIN or their one right address; no query may go unanswered.
func TestKernelConcurrentChurn(t *testing.T) {
	l := newLab(t)
	s := l.startServer(Options{Upstreams: []string{"198.51.100.53"}})
	for i := range 20 {
		s.SetRecord("app", Record{Name: fmt.Sprintf("stable%d", i), IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 88, 0, byte(10 + i)})}})
	}
	const workers, perWorker = 8, 125
	clients := make([]*client, workers)
	for i := range clients {
		clients[i] = l.client(l.sandbox, "udp", "10.88.0.1:53", "")
	}
	stop := make(chan struct{})
	var churns atomic.Int32
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		deadline := time.After(30 * time.Second)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			n := i % 10
			ip := netip.AddrFrom4([4]byte{10, 88, 0, byte(100 + n)})
			if (i/10)%2 == 0 {
				s.SetRecord("app", Record{Name: fmt.Sprintf("churn%d", n), Aliases: []string{fmt.Sprintf("alias%d", n)}, IPs: []netip.Addr{ip}})
			} else {
				s.RemoveRecord("app", ip)
			}
			churns.Add(1)
		}
	}()
	var wg sync.WaitGroup
	var lost, wrong, nx atomic.Int32
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				var name string
				var want netip.Addr
				if i%2 == 0 {
					k := (w + i) % 20
					name, want = fmt.Sprintf("stable%d.app.", k), netip.AddrFrom4([4]byte{10, 88, 0, byte(10 + k)})
				} else {
					k := (w + i) % 10
					name, want = fmt.Sprintf("churn%d.", k), netip.AddrFrom4([4]byte{10, 88, 0, byte(100 + k)})
				}
				m, err := clients[w].exchange(name, mdns.TypeA, false)
				switch {
				case err != nil:
					lost.Add(1)
				case m.Rcode == mdns.RcodeNameError && strings.HasPrefix(name, "churn"):
					nx.Add(1)
				case m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != want.String():
					wrong.Add(1)
					t.Errorf("%s: %v", name, m)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-churnDone
	t.Logf("1000 queries, %d record changes meanwhile, %d churn NXDOMAINs", churns.Load(), nx.Load())
	if lost.Load() != 0 || wrong.Load() != 0 {
		t.Fatalf("lost %d, wrong %d", lost.Load(), wrong.Load())
	}
	if churns.Load() < 5 {
		t.Errorf("only %d record changes during the queries", churns.Load())
	}
	if st := s.Stats(); st.Queries != workers*perWorker || st.Local != workers*perWorker {
		t.Errorf("stats %+v", st)
	}
}

// BenchmarkResolveLocal measures local-name answers per second over UDP,
// from a sandbox namespace across a veth and bridge to the resolver.
func BenchmarkResolveLocal(b *testing.B) {
	l := newLab(b)
	s := l.startServer(Options{Upstreams: []string{"198.51.100.53"}})
	for i := range 200 {
		s.SetRecord("app", Record{Name: fmt.Sprintf("svc%d", i), IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 88, 1, byte(i)})}})
	}
	var mu sync.Mutex
	var next int
	// Several queries in flight per CPU, as from many sandboxes.
	b.SetParallelism(4)
	b.ResetTimer()
	t0 := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		c := l.client(l.sandbox, "udp", "10.88.0.1:53", "")
		id := next
		next++
		mu.Unlock()
		q := new(mdns.Msg)
		q.SetQuestion(fmt.Sprintf("svc%d.app.", id%200), mdns.TypeA)
		buf, _ := q.Pack()
		in := make([]byte, 512)
		c.conn.SetDeadline(time.Now().Add(time.Minute))
		for pb.Next() {
			if _, err := c.conn.Conn.Write(buf); err != nil {
				b.Error(err)
				return
			}
			n, err := c.conn.Conn.Read(in)
			if err != nil || n < 12 || in[3]&0x0f != 0 {
				b.Errorf("read %d %v", n, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "answers/s")
}
