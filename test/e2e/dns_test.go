package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"pontoon/internal/testutil"
)

// fakeUpstream is the outside world's resolver at RouterIP:53 (see
// Host.serveUpstream) answering A example.org with 203.0.113.80; down makes
// it silent.
type fakeUpstream struct {
	queries atomic.Int64
	silent  atomic.Bool
}

func startUpstream(t *testing.T, h *Host) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	f := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		if u.silent.Load() {
			return
		}
		u.queries.Add(1)
		m := new(mdns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Qtype == mdns.TypeA && strings.EqualFold(r.Question[0].Name, "example.org.") {
			rr, _ := mdns.NewRR("example.org. 60 IN A 203.0.113.80")
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})
	h.dnsHandler.Store(&f)
	return u
}

// down makes the upstream stop answering.
func (u *fakeUpstream) down() { u.silent.Store(true) }

// lookup runs busybox nslookup inside a sandbox (with the sandbox's
// resolv.conf, as `pontoon exec` sets it up).
func (h *Host) lookup(sandbox string, args ...string) (string, error) {
	return h.TryP(append([]string{"exec", sandbox, "--", "busybox", "nslookup"}, args...)...)
}

func TestDNSNamesAliasesAndForwarding(t *testing.T) {
	h := NewHost(t)
	up := startUpstream(t, h)
	h.P("network", "create", "app", "--subnet", "10.97.1.0/24")
	h.P("sandbox", "create", "db", "--network", "app", "--alias", "database")
	h.P("sandbox", "create", "web", "--network", "app")
	h.P("sandbox", "create", "other") // default network
	dbIP := h.IP("db", "app")

	if rc := h.P("exec", "web", "--", "cat", "/etc/resolv.conf"); !strings.Contains(rc, "nameserver 10.97.1.1") || !strings.Contains(rc, "search app") {
		t.Fatalf("web's resolv.conf:\n%s", rc)
	}
	for _, name := range []string{"db", "database", "db.app", "DB.APP."} {
		out, err := h.lookup("web", name)
		if err != nil || !strings.Contains(out, "Address: "+dbIP) {
			t.Errorf("nslookup %s from web: %v\n%s", name, err, out)
		}
	}
	// pontoon run sees the same resolver.
	out := h.P("run", "--rm", "--network", "app", "--", "busybox", "nslookup", "database")
	if !strings.Contains(out, "Address: "+dbIP) {
		t.Fatalf("run --network app nslookup database:\n%s", out)
	}
	// PTR
	out, err := h.lookup("web", dbIP)
	if err != nil || !strings.Contains(out, "db.app") {
		t.Fatalf("reverse lookup of %s: %v\n%s", dbIP, err, out)
	}
	// Another network does not know db, and says so authoritatively.
	out, err = h.lookup("other", "db")
	if err == nil || !strings.Contains(out, "NXDOMAIN") {
		t.Fatalf("db from the default network: %v\n%s", err, out)
	}
	// Outside names are forwarded to the upstream.
	before := up.queries.Load()
	out, err = h.lookup("web", "example.org")
	if err != nil || !strings.Contains(out, "203.0.113.80") {
		t.Fatalf("forwarded example.org: %v\n%s", err, out)
	}
	if up.queries.Load() == before {
		t.Fatal("the upstream saw no query")
	}
	// Detach: NXDOMAIN at once.
	h.P("network", "disconnect", "app", "db")
	out, err = h.lookup("web", "db")
	if err == nil || !strings.Contains(out, "NXDOMAIN") {
		t.Fatalf("db after detach: %v\n%s", err, out)
	}
	// Attach again: answers at once.
	h.P("network", "connect", "app", "db")
	if out, err := h.lookup("web", "db"); err != nil || !strings.Contains(out, "Address: "+h.IP("db", "app")) {
		t.Fatalf("db after re-attach: %v\n%s", err, out)
	}
	// Counters through the API.
	var st map[string]any
	raw := h.apiGet(t, "/v1/dns")
	if err := json.Unmarshal([]byte(raw), &st); err != nil || !strings.Contains(raw, "NXDOMAIN") {
		t.Fatalf("dns stats: %v %s", err, raw)
	}
}

func TestDNSRefusalsAndUpstreamDown(t *testing.T) {
	h := NewHost(t)
	up := startUpstream(t, h)
	h.P("network", "create", "app", "--subnet", "10.97.2.0/24")
	h.P("network", "create", "int", "--subnet", "10.97.3.0/24", "--internal")
	h.P("sandbox", "create", "a", "--network", "app")
	h.P("sandbox", "create", "i", "--network", "int")
	h.P("sandbox", "create", "i2", "--network", "int")
	h.P("sandbox", "create", "other")
	// A query from another network, sent straight to app's resolver: refused.
	out, err := h.lookup("other", "a", "10.97.2.1")
	if err == nil || !strings.Contains(out, "REFUSED") {
		t.Fatalf("query from the default network to app's resolver: %v\n%s", err, out)
	}
	// Internal networks resolve their names but do not forward.
	if out, err := h.lookup("i", "i2"); err != nil || !strings.Contains(out, "Address: "+h.IP("i2", "int")) {
		t.Fatalf("internal name: %v\n%s", err, out)
	}
	before := up.queries.Load()
	if out, err := h.lookup("i", "example.org"); err == nil {
		t.Fatalf("internal network resolved an outside name:\n%s", out)
	}
	if up.queries.Load() != before {
		t.Fatal("an internal network's query was forwarded")
	}
	// Upstream down: SERVFAIL, fast (the daemon runs with --dns-timeout 500ms).
	up.down()
	start := time.Now()
	out, err = h.lookup("a", "example.org")
	took := time.Since(start)
	if err == nil || !strings.Contains(out, "SERVFAIL") {
		t.Fatalf("upstream down: %v\n%s", err, out)
	}
	if took > 3*time.Second {
		t.Fatalf("SERVFAIL took %v", took)
	}
}

// apiGet fetches an API path through curl-free Go: the CLI has no command
// for every route, and the test wants the raw JSON.
func (h *Host) apiGet(t *testing.T, path string) string {
	t.Helper()
	c, err := net.Dial("unix", h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET " + path + " HTTP/1.0\r\nHost: pontoon\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	_, body, _ := strings.Cut(b.String(), "\r\n\r\n")
	return body
}

// SIGHUP re-reads the host's resolv.conf for upstream resolvers.
func TestDNSReloadOnSIGHUP(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 198.51.100.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := NewHost(t, "--dns", "", "--resolv-conf", rc) // later flags win over the harness's --dns
	if st := h.apiGet(t, "/v1/dns"); !strings.Contains(st, `"198.51.100.2:53"`) {
		t.Fatalf("upstreams from %s: %s", rc, st)
	}
	if err := os.WriteFile(rc, []byte("nameserver 198.51.100.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	_ = h.daemon.Process.Signal(syscall.SIGHUP)
	h.mu.Unlock()
	for start := time.Now(); !strings.Contains(h.apiGet(t, "/v1/dns"), `"198.51.100.3:53"`); {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("after SIGHUP, upstreams: %s", h.apiGet(t, "/v1/dns"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.P("network", "ls") // still serving
}

// queryFrom asks server (ip:53) for name's A records from inside the
// namespace at ns, over proto ("udp" or "tcp").
func queryFrom(t *testing.T, ns, proto, server, name string) *mdns.Msg {
	t.Helper()
	var m *mdns.Msg
	if err := testutil.InNetns(t, ns, func() error {
		c, err := net.DialTimeout(proto, server, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		cl := mdns.Client{Net: proto, Timeout: 3 * time.Second}
		m, _, err = cl.ExchangeWithConn(q, &mdns.Conn{Conn: c})
		return err
	}); err != nil {
		t.Fatalf("%s %s from %s: %v", proto, name, ns, err)
	}
	return m
}

// Issue 10 part 4: names that differ only in case are one DNS name. The
// second of them is refused on the network, by every way onto it, and
// leaves nothing behind; the name answers with the first one's address
// only, with a short TTL.
func TestDNSNamesDifferingOnlyInCase(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "app", "--subnet", "10.97.4.0/24")
	h.P("sandbox", "create", "MyWeb", "--network", "app", "--alias", "front")
	h.P("sandbox", "create", "client", "--network", "app")
	webIP := h.IP("MyWeb", "app")
	pinsBefore, linksBefore := h.Pins(), h.HostLinks("ptv-")

	out := h.PFail("sandbox", "create", "myweb", "--network", "app")
	t.Logf("sandbox create myweb --network app: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "sandbox MyWeb") || !strings.Contains(out, "case") {
		t.Errorf("sandbox create myweb: the error does not name the holder and the reason:\n%s", out)
	}
	if out, err := h.TryP("sandbox", "inspect", "myweb"); err == nil {
		t.Errorf("sandbox myweb exists after the refused create:\n%s", out)
	}
	// An alias equal to a member's name, and a name equal to a member's
	// alias, through create and through connect.
	h.PFail("sandbox", "create", "x", "--network", "app", "--alias", "MYWEB")
	h.PFail("sandbox", "create", "Front", "--network", "app")
	h.P("sandbox", "create", "y")
	if out := h.PFail("network", "connect", "app", "y", "--alias", "myWeb"); !strings.Contains(out, "sandbox MyWeb") {
		t.Errorf("network connect --alias myWeb: %s", out)
	}
	h.P("sandbox", "create", "mYwEb") // on the default network only: no clash there
	h.PFail("network", "connect", "app", "mYwEb")
	for _, n := range []string{"myweb", "x", "Front"} {
		if _, err := h.TryP("sandbox", "inspect", n); err == nil {
			t.Errorf("sandbox %s exists after a refused create", n)
		}
	}
	// Only y and mYwEb (on the default network) were added: one pin and
	// one veth each.
	wantPins := append(slices.Clone(pinsBefore), "y", "mYwEb")
	slices.Sort(wantPins)
	if got := h.Pins(); !slices.Equal(got, wantPins) {
		t.Errorf("pins %v, want %v", got, wantPins)
	}
	if got := h.HostLinks("ptv-"); len(got) != len(linksBefore)+2 {
		t.Errorf("host veths %v, before %v (+2 expected)", got, linksBefore)
	}

	// Every spelling answers with MyWeb's address alone, over UDP and TCP.
	client := h.SandboxNS("client")
	for _, proto := range []string{"udp", "tcp"} {
		for _, name := range []string{"MyWeb", "myweb", "MYWEB.app", "front"} {
			m := queryFrom(t, client, proto, "10.97.4.1:53", name)
			var got []string
			for _, rr := range m.Answer {
				if a, ok := rr.(*mdns.A); ok {
					got = append(got, a.A.String())
					if a.Hdr.Ttl != 5 {
						t.Errorf("%s %s: TTL %d, want 5", proto, name, a.Hdr.Ttl)
					}
				}
			}
			if m.Rcode != mdns.RcodeSuccess || strings.Join(got, ",") != webIP {
				t.Errorf("%s %s: %s %v, want only %s", proto, name, mdns.RcodeToString[m.Rcode], got, webIP)
			}
		}
	}
	// busybox nslookup, as a user would ask.
	if out, err := h.lookup("client", "myweb"); err != nil || strings.Count(out, "Address: 10.97.4.") != 1 || !strings.Contains(out, webIP) {
		t.Errorf("nslookup myweb from client: %v\n%s", err, out)
	}

	// CNI ADD goes the same way: container "ctr9" would be sandbox
	// cni-ctr9, and CNI-CTR9 is on the network already.
	h.P("network", "create", "cninet", "--subnet", "10.97.5.0/24")
	h.P("sandbox", "create", "CNI-CTR9", "--network", "cninet")
	c := newCNIEnv(t, h)
	ns := testutil.NewNetns(t)
	err := c.in(t, func(ctx context.Context) error {
		_, err := c.cni.AddNetworkList(ctx, c.conflist(t, "1.0.0", false), rt("ctr9", ns))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "CNI-CTR9") {
		t.Fatalf("CNI ADD of ctr9: %v, want a conflict naming CNI-CTR9", err)
	}
	if _, err := h.TryP("sandbox", "inspect", "cni-ctr9"); err == nil {
		t.Error("sandbox cni-ctr9 exists after the refused ADD")
	}
	if out := h.In(ns, "ip", "-o", "link", "show"); strings.Contains(out, "eth0") {
		t.Errorf("the refused ADD left an interface in the container's namespace:\n%s", out)
	}
}
