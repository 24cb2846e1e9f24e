package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"pontoon/internal/testutil"
)

// fakeUpstream is a DNS server in the outside-world namespace at
// RouterIP:53 that answers A example.org with 203.0.113.80.
type fakeUpstream struct {
	srv     *mdns.Server
	queries atomic.Int64
}

func startUpstream(t *testing.T, h *Host) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	var pc net.PacketConn
	if err := testutil.InNetns(t, h.Outside, func() (err error) {
		pc, err = net.ListenPacket("udp4", RouterIP+":53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	u.srv = &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		u.queries.Add(1)
		m := new(mdns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Qtype == mdns.TypeA && strings.EqualFold(r.Question[0].Name, "example.org.") {
			rr, _ := mdns.NewRR("example.org. 60 IN A 203.0.113.80")
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	u.srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = u.srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = u.srv.Shutdown() })
	return u
}

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
	_ = up.srv.Shutdown()
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
