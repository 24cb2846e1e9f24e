package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pontoon/internal/model"
)

// serve runs handler with net/http's server (the daemon's) on a unix
// socket and counts the connections it accepts.
func serve(t *testing.T, handler http.HandlerFunc) (socket string, conns *atomic.Int32, stop func()) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	conns = &atomic.Int32{}
	srv := &http.Server{Handler: handler, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(l) }()
	stop = func() { _ = srv.Close() }
	t.Cleanup(stop)
	return socket, conns, stop
}

// The client speaks HTTP/1.1 to net/http's server: JSON both ways,
// connections kept for the next request, bodies of known length, chunked,
// or ending with the connection, and the API's error kinds.
func TestWireClient(t *testing.T) {
	big := strings.Repeat("x", 10000)
	socket, conns, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/networks/ok/connect": // echo the request into the answer
			var req ConnectRequest
			if r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "no JSON content type", 400)
				return
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			fmt.Fprintf(w, `{"sandbox": %q, "ifname": %q, "network": "ok"}`, req.Sandbox, req.IfName)
		case "/v1/networks/chunked": // larger than net/http buffers: chunked
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"name": "chunked", "labels": {"big": %q}}`, big)
		case "/v1/networks/closing": // HTTP/1.0-style: the body ends with the connection
			w.Header().Set("Connection", "close")
			fmt.Fprint(w, `{"name": "closing"}`)
		case "/v1/networks/conflict":
			w.WriteHeader(409)
			fmt.Fprint(w, `{"error": "network conflict is taken", "kind": "conflict"}`)
		case "/v1/networks/broken":
			w.WriteHeader(502)
			fmt.Fprint(w, "bad gateway")
		default:
			http.NotFound(w, r)
		}
	})
	c := NewClient(socket)
	ctx := context.Background()
	for i := range 3 {
		ep, err := c.Connect(ctx, "ok", ConnectRequest{Sandbox: fmt.Sprintf("a%d", i), IfName: "eth1"})
		if err != nil || ep.Sandbox != fmt.Sprintf("a%d", i) || ep.IfName != "eth1" || ep.Network != "ok" {
			t.Fatalf("connect %d: %v %+v", i, err, ep)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 requests took %d connections, want 1 kept alive", n)
	}
	n, err := c.Network(ctx, "chunked")
	if err != nil || n.Labels["big"] != big {
		t.Fatalf("chunked answer: %v (%d bytes of label)", err, len(n.Labels["big"]))
	}
	n, err = c.Network(ctx, "closing")
	if err != nil || n.Name != "closing" {
		t.Fatalf("answer ended by the connection: %v %+v", err, n)
	}
	before := conns.Load()
	if _, err := c.Network(ctx, "chunked"); err != nil {
		t.Fatal(err)
	}
	if conns.Load() != before+1 {
		t.Fatalf("a connection the server closed was used again (%d → %d connections)", before, conns.Load())
	}
	_, err = c.Network(ctx, "conflict")
	var ae *Error
	if !errors.Is(err, model.ErrConflict) || !errors.As(err, &ae) || ae.Status != 409 || err.Error() != "network conflict is taken" {
		t.Fatalf("409: %#v", err)
	}
	_, err = c.Network(ctx, "broken")
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Body.Kind != "internal" || !strings.Contains(err.Error(), "bad gateway") {
		t.Fatalf("502 without an error body: %v", err)
	}
	if _, err := c.Network(ctx, "missing"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("404: %v", err)
	}
}

// A daemon that restarts closes the kept connections: the next request
// takes a new one instead of failing; a daemon that is gone is
// ErrUnavailable; a cancelled request returns at once.
func TestWireClientDaemonGoneAndCancel(t *testing.T) {
	release := make(chan struct{})
	handler := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/networks/slow" {
			<-release
		}
		fmt.Fprint(w, `{"name": "n"}`)
	}
	socket, _, stop := serve(t, handler)
	defer close(release)
	c := NewClient(socket)
	ctx := context.Background()
	if _, err := c.Network(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	stop()
	// "Restart" on the same path.
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(handler)}
	go func() { _ = srv.Serve(l) }()
	if _, err := c.Network(ctx, "n"); err != nil {
		t.Fatalf("after the daemon restarted: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Network(cctx, "slow"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request past its deadline: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the deadline took %v to end the request", took)
	}
	_ = srv.Close()
	if _, err := c.Network(ctx, "n"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with no daemon: %v", err)
	}
}

// A stream of events (one chunked body) is read as it arrives: the first
// event reaches the caller before the daemon writes the second.
func TestWireClientStreamsEvents(t *testing.T) {
	next := make(chan struct{})
	socket, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/events" || r.URL.Query().Get("follow") != "true" || r.URL.Query().Get("network") != "app" {
			http.Error(w, "bad query "+r.URL.String(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(200)
		fmt.Fprintln(w, `{"id": 1, "kind": "attached"}`)
		w.(http.Flusher).Flush()
		<-next
		fmt.Fprintln(w, `{"id": 2, "kind": "detached"}`)
	})
	c := NewClient(socket)
	var got []string
	err := c.Events(context.Background(), EventQuery{Follow: true, Networks: []string{"app"}}, func(ev model.Event) error {
		got = append(got, fmt.Sprintf("%d %s", ev.ID, ev.Kind))
		if ev.ID == 1 {
			close(next)
		}
		return nil
	})
	if err != nil || strings.Join(got, ", ") != "1 attached, 2 detached" {
		t.Fatalf("events: %v, %v", got, err)
	}
}
