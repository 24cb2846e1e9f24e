package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// createDaemon answers POST /v1/sandboxes as the daemon would, keeping the
// specs it was sent: a name it already has is a conflict, a spec for a
// network in missing is not found.
type createDaemon struct {
	socket  string
	missing map[string]bool // networks that do not exist

	mu    sync.Mutex
	specs []model.SandboxSpec
	names map[string]bool
}

func newCreateDaemon(t *testing.T, existing ...string) *createDaemon {
	t.Helper()
	d := &createDaemon{socket: filepath.Join(t.TempDir(), "api.sock"), names: map[string]bool{}, missing: map[string]bool{}}
	for _, n := range existing {
		d.names[n] = true
	}
	l, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	reply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		var spec model.SandboxSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			reply(w, http.StatusBadRequest, api.ErrorBody{Error: err.Error(), Kind: "invalid"})
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.specs = append(d.specs, spec)
		for _, a := range spec.Networks {
			if d.missing[a.Network] {
				reply(w, http.StatusNotFound, api.ErrorBody{Error: "network " + a.Network + " not found", Kind: "not_found"})
				return
			}
		}
		if d.names[spec.Name] {
			reply(w, http.StatusConflict, api.ErrorBody{Error: "sandbox " + spec.Name + " exists", Kind: "conflict"})
			return
		}
		d.names[spec.Name] = true
		reply(w, http.StatusCreated, &model.SandboxInfo{Sandbox: model.Sandbox{Name: spec.Name, Netns: "/run/pontoon/netns/" + spec.Name}})
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return d
}

// sent returns the names of the sandboxes the daemon was asked to create.
func (d *createDaemon) sent() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, s := range d.specs {
		out = append(out, s.Name)
	}
	return out
}

// Several names: each sandbox is created with the same options, in order,
// one line each.
func TestSandboxCreateSeveral(t *testing.T) {
	d := newCreateDaemon(t)
	out, err := runAt(t, d.socket, "sandbox", "create", "net0", "net1", "--network", "wire", "--label", "k=v", "--alias", "peer")
	if err != nil {
		t.Fatalf("create net0 net1: %v\n%s", err, out)
	}
	if out != "net0\t/run/pontoon/netns/net0\t\nnet1\t/run/pontoon/netns/net1\t\n" {
		t.Errorf("output %q, want one line per sandbox", out)
	}
	if got := strings.Join(d.sent(), ","); got != "net0,net1" {
		t.Fatalf("created %s, want net0,net1", got)
	}
	for _, s := range d.specs {
		if len(s.Networks) != 1 || s.Networks[0].Network != "wire" || s.Labels["k"] != "v" ||
			strings.Join(s.Networks[0].Aliases, ",") != "peer" {
			t.Errorf("spec of %s: %+v, want network wire, label k=v, alias peer", s.Name, s)
		}
	}
}

// Options that name one thing are refused with several names, and nothing
// is asked of the daemon; so are bad and repeated names.
func TestSandboxCreateSeveralRefusals(t *testing.T) {
	d := newCreateDaemon(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ip", "10.0.1.1"}, "--ip takes one sandbox name (a static address belongs to one sandbox), and 2 were given (net0, net1)"},
		{[]string{"--ip6", "fd00::1"}, "--ip6 takes one sandbox name"},
		{[]string{"-p", "8080:80"}, "--publish takes one sandbox name (a host port is published for one sandbox)"},
		{[]string{"--netns", "/run/netns/x"}, "--netns takes one sandbox name (an adopted namespace is one sandbox)"},
		{[]string{"--pid", "42"}, "--pid takes one sandbox name"},
	} {
		args := append([]string{"sandbox", "create", "net0", "net1"}, c.args...)
		out, err := runAt(t, d.socket, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", args, err, c.want)
		}
		if out != "" {
			t.Errorf("%v printed %q", args, out)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"net0", "net0"}, "sandbox name net0 is given twice"},
		{[]string{"net0", "bad/name"}, `sandbox name "bad/name" has characters that are not allowed`},
	} {
		args := append([]string{"sandbox", "create"}, c.args...)
		if _, err := runAt(t, d.socket, args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", args, err, c.want)
		}
	}
	if sent := d.sent(); len(sent) != 0 {
		t.Fatalf("the daemon was asked to create %v", sent)
	}
	// One name keeps every option.
	if out, err := runAt(t, d.socket, "sandbox", "create", "net0", "--ip", "10.0.1.1", "-p", "8080:80"); err != nil {
		t.Fatalf("one name with --ip and -p: %v\n%s", err, out)
	}
	if s := d.specs[0]; s.Name != "net0" || len(s.Networks) != 1 || s.Networks[0].IPs[0].String() != "10.0.1.1" || len(s.Networks[0].Ports) != 1 {
		t.Errorf("spec %+v", s)
	}
}

// A failure stops the command: what came before stays, the error says
// what was and was not created, nothing after is tried, exit status 1.
func TestSandboxCreateSeveralStopsAtFailure(t *testing.T) {
	d := newCreateDaemon(t, "b")
	out, err := runAt(t, d.socket, "sandbox", "create", "a", "b", "c")
	if err == nil {
		t.Fatalf("create a b c with b existing succeeded:\n%s", out)
	}
	if got := strings.Join(d.sent(), ","); got != "a,b" {
		t.Errorf("asked for %s, want a,b (none after the failure)", got)
	}
	if !strings.HasPrefix(out, "a\t/run/pontoon/netns/a\t\n") || strings.Contains(out, "c\t") {
		t.Errorf("stdout %q, want a's line only", out)
	}
	msg := err.Error()
	for _, want := range []string{"create sandbox b: sandbox b exists", "created before it: a", "not created: b, c"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if !errors.Is(err, model.ErrConflict) {
		t.Errorf("error %v is not a conflict", err)
	}
	// The first failing: nothing made.
	d.missing["nosuch"] = true
	_, err = runAt(t, d.socket, "sandbox", "create", "x", "y", "--network", "nosuch")
	if err == nil || !strings.Contains(err.Error(), "nothing was created; not created: x, y") {
		t.Errorf("missing network: %v", err)
	}
	// One name: the daemon's error as it is.
	_, err = runAt(t, d.socket, "sandbox", "create", "b")
	if err == nil || err.Error() != "sandbox b exists" {
		t.Errorf("create b: %v, want the daemon's error alone", err)
	}
}
