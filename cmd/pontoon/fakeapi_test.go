package main

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// fakeDaemon answers the API routes the CLI tests need from a fixed set
// of networks and sandboxes, and records every request.
type fakeDaemon struct {
	socket    string
	networks  []string
	sandboxes []string
	labels    map[string]map[string]string // by network or sandbox name
	attached  map[string][]string          // sandbox → networks
	container map[string]string            // sandbox → container ID
	drift     map[string][]string          // by network or sandbox name

	mu   sync.Mutex
	reqs []string
}

func (f *fakeDaemon) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func newFakeDaemon(t *testing.T, networks, sandboxes []string) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{socket: filepath.Join(t.TempDir(), "api.sock"), networks: networks, sandboxes: sandboxes}
	l, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	has := func(list []string, name string) bool {
		for _, n := range list {
			if n == name {
				return true
			}
		}
		return false
	}
	reply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	notFound := func(w http.ResponseWriter, what, name string) {
		reply(w, http.StatusNotFound, api.ErrorBody{Error: what + " " + name + " not found", Kind: "not_found"})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		var v []*model.NetworkInfo
		for _, n := range f.networks {
			v = append(v, &model.NetworkInfo{Network: model.Network{Name: n, Driver: model.DriverBridge, Labels: f.labels[n]}, Drift: f.drift[n]})
		}
		reply(w, 200, v)
	})
	mux.HandleFunc("GET /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		var v []*model.SandboxInfo
		for _, n := range f.sandboxes {
			sb := &model.SandboxInfo{Sandbox: model.Sandbox{Name: n, Kind: model.KindPontoon, Labels: f.labels[n], ContainerID: f.container[n]}, Drift: f.drift[n]}
			for _, net := range f.attached[n] {
				sb.Endpoints = append(sb.Endpoints, &model.Endpoint{Network: net, Sandbox: n})
			}
			v = append(v, sb)
		}
		reply(w, 200, v)
	})
	for _, kind := range []string{"networks", "sandboxes"} {
		list := map[string][]string{"networks": f.networks, "sandboxes": f.sandboxes}[kind]
		mux.HandleFunc("GET /v1/"+kind+"/{name}", func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			if !has(list, name) {
				notFound(w, kind, name)
				return
			}
			if kind == "networks" {
				reply(w, 200, &model.NetworkInfo{Network: model.Network{Name: name}, Drift: f.drift[name]})
			} else {
				reply(w, 200, &model.SandboxInfo{Sandbox: model.Sandbox{Name: name}, Drift: f.drift[name]})
			}
		})
		mux.HandleFunc("DELETE /v1/"+kind+"/{name}", func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			if !has(list, name) {
				notFound(w, kind, name)
				return
			}
			reply(w, 200, struct{}{})
		})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return f
}

// runWith executes the CLI in-process against the fake daemon.
func runWith(t *testing.T, f *fakeDaemon, args ...string) (string, string, error) {
	t.Helper()
	return run(t, append([]string{"--socket", f.socket}, args...)...)
}

func TestCompleteNetworkFlag(t *testing.T) {
	f := newFakeDaemon(t, []string{"app", "back"}, []string{"db"})
	out, _, err := runWith(t, f, "__complete", "run", "--network", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"app\n", "back\n", "none\t", "host\t", "sandbox:db\t"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --network completes without %q:\n%s", want, out)
		}
	}
	// sandbox create refuses sandbox:NAME, so it does not offer it.
	out, _, err = runWith(t, f, "__complete", "sandbox", "create", "x", "--network", "")
	if err != nil || !strings.Contains(out, "app\n") || !strings.Contains(out, "none\t") || strings.Contains(out, "sandbox:") {
		t.Errorf("sandbox create --network completion (%v):\n%s", err, out)
	}
}

// rm and inspect with several names act on every one, report each failure,
// and exit 1 at the end (Docker's habit).
func TestSeveralNamesGoOnPastFailures(t *testing.T) {
	f := newFakeDaemon(t, []string{"n1", "n2"}, []string{"a", "b"})
	for _, c := range []struct {
		args    []string
		out     string // stdout
		errPart string // on stderr
		calls   []string
	}{
		{[]string{"sandbox", "rm", "a", "nosuch", "b"}, "a\nb\n", "sandboxes nosuch not found",
			[]string{"DELETE /v1/sandboxes/a", "DELETE /v1/sandboxes/nosuch", "DELETE /v1/sandboxes/b"}},
		{[]string{"network", "rm", "nosuch", "n1", "n2"}, "n1\nn2\n", "networks nosuch not found",
			[]string{"DELETE /v1/networks/nosuch", "DELETE /v1/networks/n1", "DELETE /v1/networks/n2"}},
		{[]string{"sandbox", "inspect", "a", "nosuch", "b"}, "Name:     b", "sandboxes nosuch not found",
			[]string{"GET /v1/sandboxes/a", "GET /v1/sandboxes/nosuch", "GET /v1/sandboxes/b"}},
		{[]string{"network", "inspect", "--format", "json", "nosuch", "n2"}, `"name": "n2"`, "networks nosuch not found",
			[]string{"GET /v1/networks/nosuch", "GET /v1/networks/n2"}},
	} {
		before := len(f.requests())
		out, stderr, err := runWith(t, f, c.args...)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 {
			t.Errorf("%v: err %v, want exit status 1", c.args, err)
		}
		if !strings.Contains(out, c.out) || !strings.Contains(stderr, c.errPart) {
			t.Errorf("%v: stdout %q stderr %q, want %q and %q", c.args, out, stderr, c.out, c.errPart)
		}
		if got := f.requests()[before:]; strings.Join(got, ",") != strings.Join(c.calls, ",") {
			t.Errorf("%v: requests %v, want %v", c.args, got, c.calls)
		}
	}
	// All found: success.
	if out, _, err := runWith(t, f, "sandbox", "rm", "a", "b"); err != nil || out != "a\nb\n" {
		t.Errorf("sandbox rm a b: %q, %v", out, err)
	}
	// -f: names that do not exist are no error.
	if out, stderr, err := runWith(t, f, "sandbox", "rm", "-f", "nosuch", "a"); err != nil || out != "a\n" || stderr != "" {
		t.Errorf("sandbox rm -f nosuch a: %q %q %v", out, stderr, err)
	}
	// No daemon: one error, not one per name.
	_, stderr, err := run(t, "sandbox", "rm", "x", "y")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the pontoon daemon") || stderr != "" {
		t.Errorf("sandbox rm without a daemon: %v, stderr %q", err, stderr)
	}
}

func TestLsQuiet(t *testing.T) {
	f := newFakeDaemon(t, []string{"n1", "n2"}, []string{"a", "b"})
	if out, _, err := runWith(t, f, "sandbox", "ls", "-q"); err != nil || out != "a\nb\n" {
		t.Errorf("sandbox ls -q: %q, %v", out, err)
	}
	if out, _, err := runWith(t, f, "network", "ls", "--quiet"); err != nil || out != "n1\nn2\n" {
		t.Errorf("network ls -q: %q, %v", out, err)
	}
}

func TestLsFilter(t *testing.T) {
	f := newFakeDaemon(t, []string{"front", "back", "db-net"}, []string{"web1", "web2", "db", "cni-x"})
	f.labels = map[string]map[string]string{
		"front": {"tier": "web"}, "back": {"tier": "data", "env": "prod"},
		"web1": {"app": "shop"}, "db": {"app": "shop", "role": "db"}, "cni-x": {"cni.network": "k8s"},
	}
	f.attached = map[string][]string{"web1": {"front"}, "web2": {"front", "back"}, "db": {"back"}}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sandbox", "ls", "-q", "--filter", "name=web"}, "web1\nweb2\n"},
		{[]string{"sandbox", "ls", "-q", "-f", "network=back"}, "web2\ndb\n"},
		{[]string{"sandbox", "ls", "-q", "-f", "label=app=shop"}, "web1\ndb\n"},
		{[]string{"sandbox", "ls", "-q", "-f", "label=role"}, "db\n"},
		// Keys must all match; values of one key are alternatives.
		{[]string{"sandbox", "ls", "-q", "-f", "label=app", "-f", "network=front"}, "web1\n"},
		{[]string{"sandbox", "ls", "-q", "-f", "name=db", "-f", "name=cni"}, "db\ncni-x\n"},
		{[]string{"sandbox", "ls", "-q", "-f", "network=nosuch"}, ""},
		{[]string{"network", "ls", "-q", "-f", "label=tier"}, "front\nback\n"},
		{[]string{"network", "ls", "-q", "-f", "label=env=prod", "-f", "driver=bridge"}, "back\n"},
		{[]string{"network", "ls", "-q", "-f", "name=net"}, "db-net\n"},
	} {
		out, _, err := runWith(t, f, c.args...)
		if err != nil || out != c.want {
			t.Errorf("%v: %q (%v), want %q", c.args, out, err, c.want)
		}
	}
	// The table and JSON show the same selection.
	if out, _, err := runWith(t, f, "sandbox", "ls", "--format", "json", "-f", "network=back"); err != nil || !strings.Contains(out, `"name": "db"`) || strings.Contains(out, `"name": "web1"`) {
		t.Errorf("json with a filter: %v\n%s", err, out)
	}
	if _, _, err := runWith(t, f, "sandbox", "ls", "-f", "colour=red"); err == nil || !strings.Contains(err.Error(), "KEY one of name, label, network, kind") {
		t.Errorf("unknown filter key: %v", err)
	}
}

// sandbox ls cuts container IDs to a prefix that stays unique among the
// listed sandboxes (ctr's IDs share long prefixes), at least 12
// characters; --no-trunc and JSON show them whole.
func TestSandboxLsContainerIDs(t *testing.T) {
	f := newFakeDaemon(t, nil, []string{"a", "b", "c", "d"})
	long := "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
	f.container = map[string]string{"a": "default-web-1", "b": "default-web-2", "c": long, "d": "default-web-1x"}
	out, _, err := runWith(t, f, "sandbox", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": " default-web-1 ", "b": " default-web-2 ", "c": " " + long[:12] + " ", "d": " default-web-1x "} {
		var row string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, name+" ") {
				row = l + " "
			}
		}
		if !strings.Contains(row, want) {
			t.Errorf("sandbox %s: row %q, want the ID shown as %q\n%s", name, row, want, out)
		}
	}
	out, _, err = runWith(t, f, "sandbox", "ls", "--no-trunc")
	if err != nil || !strings.Contains(out, long) {
		t.Errorf("--no-trunc (%v):\n%s", err, out)
	}
	out, _, err = runWith(t, f, "sandbox", "ls", "--format", "json")
	if err != nil || !strings.Contains(out, `"container_id": "`+long+`"`) {
		t.Errorf("json (%v):\n%s", err, out)
	}
}

// Drift the daemon reports shows in inspect as rows, and under ls on
// stderr, so that ls's table stays one row per object for scripts.
func TestDriftInLsAndInspect(t *testing.T) {
	f := newFakeDaemon(t, []string{"app"}, []string{"a", "b"})
	f.drift = map[string][]string{
		"a":   {"eth0: host end ptv-1 is down"},
		"app": {"bridge ptbr-1 is down", "sandbox a eth0: host end ptv-1 is down"},
	}
	out, errOut, err := runWith(t, f, "sandbox", "ls")
	if err != nil || strings.Contains(out, "✗") || errOut != "✗ sandbox a: eth0: host end ptv-1 is down\n" {
		t.Errorf("sandbox ls (%v): stdout\n%s\nstderr\n%s", err, out, errOut)
	}
	out, errOut, err = runWith(t, f, "network", "ls")
	if err != nil || strings.Contains(out, "✗") || errOut != "✗ network app: bridge ptbr-1 is down\n✗ network app: sandbox a eth0: host end ptv-1 is down\n" {
		t.Errorf("network ls (%v): stdout\n%s\nstderr\n%s", err, out, errOut)
	}
	out, _, err = runWith(t, f, "sandbox", "inspect", "a")
	if err != nil || !strings.Contains(out, "Drift:    ✗ eth0: host end ptv-1 is down\n") {
		t.Errorf("sandbox inspect a (%v):\n%s", err, out)
	}
	out, _, err = runWith(t, f, "sandbox", "inspect", "b")
	if err != nil || strings.Contains(out, "Drift") {
		t.Errorf("sandbox inspect b, which has no drift (%v):\n%s", err, out)
	}
	out, _, err = runWith(t, f, "network", "inspect", "app")
	if err != nil || !strings.Contains(out, "✗ bridge ptbr-1 is down\n") || !strings.Contains(out, "✗ sandbox a eth0: host end ptv-1 is down") {
		t.Errorf("network inspect app (%v):\n%s", err, out)
	}
}

func TestShortIDs(t *testing.T) {
	got := shortIDs([]string{"", "abcdefghijklmnop1", "abcdefghijklmnop2", "abcdefghijklmnop2", "abc", "zzzzzzzzzzzzzzzzzzz"}, 12)
	want := map[string]string{"": "", "abc": "abc", "abcdefghijklmnop1": "abcdefghijklmnop1", "abcdefghijklmnop2": "abcdefghijklmnop2",
		"zzzzzzzzzzzzzzzzzzz": "zzzzzzzzzzzz"}
	if !maps.Equal(got, want) {
		t.Fatalf("shortIDs: %v, want %v", got, want)
	}
	got = shortIDs([]string{"0123456789abcdef", "0123456789abcXYZ", "0123456789abZZZZ"}, 12)
	want = map[string]string{"0123456789abcdef": "0123456789abcd", "0123456789abcXYZ": "0123456789abcX", "0123456789abZZZZ": "0123456789abZ"}
	if !maps.Equal(got, want) {
		t.Fatalf("shortIDs: %v, want %v", got, want)
	}
}
