package web

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"pontoon/internal/model"
	"pontoon/internal/topoview"
)

const token = "0123456789abcdef0123456789abcdef"

// fakeAPI stands for the daemon's API: the read routes the page uses, a
// trace route, and a mutating route the page must never reach.
type fakeAPI struct {
	mux     *http.ServeMux
	mutated atomic.Int32
	traced  atomic.Int32
	// lastQuery is the query of the last GET /v1/events.
	lastQuery atomic.Pointer[string]
	// topologies counts GET /v1/topology; the port's counters move with it.
	topologies atomic.Uint64
}

func newFakeAPI() *fakeAPI {
	f := &fakeAPI{mux: http.NewServeMux()}
	f.mux.HandleFunc("GET /v1/topology", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Cookie") != "" || r.Header.Get("Authorization") != "" {
			http.Error(w, "the browser's credentials reached the API", http.StatusTeapot)
			return
		}
		t := model.Topology{Host: "h1",
			Networks: []*model.TopoNetwork{{Name: "app", Bridge: "ptbr-1", Subnets: []model.Subnet{{Prefix: netip.MustParsePrefix("10.90.1.0/24")}},
				Ports: []*model.TopoPort{{Sandbox: "a", HostIf: "ptv-a", IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.90.1.2")}, Drift: []string{"host end ptv-a is down"},
					Stats: &model.EndpointStats{RxBytes: 1000 * f.topologies.Add(1)}}}}},
			Sandboxes: []*model.TopoSandbox{{Name: "a", Kind: "pontoon", Networks: []string{"app"}}}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(t)
	})
	f.mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.RawQuery
		f.lastQuery.Store(&q)
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, `{"id":1,"kind":"sandbox-created","sandbox":"a"}`+"\n")
	})
	f.mux.HandleFunc("POST /v1/trace", func(w http.ResponseWriter, r *http.Request) {
		f.traced.Add(1)
		var spec model.TraceSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// A packet from a, dropped at its bridge; the probe says what was asked.
		_ = json.NewEncoder(w).Encode(model.Trace{Probe: model.TraceProbe{From: "sandbox " + spec.Src, To: spec.Dst},
			Hops: []model.TraceHop{
				{Kind: model.HopRoute, Where: "sandbox a", Text: "10.90.1.3 dev eth0 src 10.90.1.2"},
				{Kind: model.HopLink, Where: "host", Text: "eth0 → ptv-a (ifindex 7): the host end of the veth pair"},
				{Kind: model.HopBridge, Where: "host", Text: "ptv-a is a port of bridge ptbr-1"},
				{Kind: model.HopNft, Where: "host", Text: "bridge pontoon anti-spoof (prerouting, iif ptv-a): drop"},
			},
			Verdict: model.TraceVerdict{Result: model.VerdictDropped, Where: "bridge ptbr-1", Sentence: "dropped"}})
	})
	f.mux.HandleFunc("POST /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) { f.mutated.Add(1) })
	f.mux.HandleFunc("DELETE /v1/sandboxes/{name}", func(w http.ResponseWriter, r *http.Request) { f.mutated.Add(1) })
	return f
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

func newHandler(t *testing.T, trace bool) (*Handler, *fakeAPI) {
	t.Helper()
	api := newFakeAPI()
	h, err := New(Options{API: api, Token: token, Port: 9380, Trace: trace, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return h, api
}

// do sends a request as a browser on the page's own origin would, with
// the given header changes.
func do(h http.Handler, method, target string, body string, hdr map[string]string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, "http://127.0.0.1:9380"+target, rd)
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var bearer = map[string]string{"Authorization": "Bearer " + token}

func TestTokenRequired(t *testing.T) {
	h, _ := newHandler(t, false)
	for _, tc := range []struct {
		name   string
		target string
		hdr    map[string]string
		want   int
	}{
		{"page without token", "/", nil, 401},
		{"api without token", "/api/topology", nil, 401},
		{"asset without token", "/assets/app.js", nil, 401},
		{"wrong bearer", "/api/topology", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"wrong cookie", "/api/topology", map[string]string{"Cookie": "pontoon-web-9380=nope"}, 401},
		{"another port's cookie", "/api/topology", map[string]string{"Cookie": "pontoon-web-9381=" + token}, 401},
		{"wrong token in the address", "/?token=nope", nil, 401},
		{"bearer", "/api/topology", bearer, 200},
		{"cookie", "/api/topology", map[string]string{"Cookie": "pontoon-web-9380=" + token}, 200},
		{"token in an api address", "/api/topology?token=" + token, nil, 200},
	} {
		if w := do(h, "GET", tc.target, "", tc.hdr); w.Code != tc.want {
			t.Errorf("%s: GET %s = %d %s, want %d", tc.name, tc.target, w.Code, w.Body, tc.want)
		} else if tc.want == 401 && !strings.Contains(w.Body.String(), "token") {
			t.Errorf("%s: the 401 does not say what to do: %s", tc.name, w.Body)
		}
	}
}

// Opening the printed address sets the cookie and drops the token from
// the address; the cookie then opens the page and its API.
func TestTokenURLSetsCookie(t *testing.T) {
	h, _ := newHandler(t, false)
	w := do(h, "GET", "/?token="+url.QueryEscape(token), "", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Fatalf("GET /?token= = %d, Location %q; want 303 to /", w.Code, w.Header().Get("Location"))
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "pontoon-web-9380" || cookies[0].Value != token ||
		!cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie: %+v", cookies)
	}
	c := map[string]string{"Cookie": cookies[0].String()}
	page := do(h, "GET", "/", "", c)
	if page.Code != 200 || !strings.Contains(page.Body.String(), `src="/assets/app.js"`) {
		t.Fatalf("page: %d %s", page.Code, page.Body)
	}
	for _, hd := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if page.Header().Get(hd) == "" {
			t.Errorf("the page has no %s header", hd)
		}
	}
	if js := do(h, "GET", "/assets/app.js", "", c); js.Code != 200 || !strings.Contains(js.Body.String(), "/api/topology") {
		t.Errorf("app.js: %d", js.Code)
	}
}

// A browser on another site, or a name rebound to this machine, cannot
// use the page even with the token (the cookie would go along).
func TestForeignRequestsRefused(t *testing.T) {
	h, _ := newHandler(t, true)
	with := func(kv ...string) map[string]string {
		m := map[string]string{"Authorization": "Bearer " + token}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		method string
		target string
		hdr    map[string]string
		want   int
	}{
		{"foreign origin", "GET", "/api/topology", with("Origin", "http://evil.example"), 403},
		{"another port of this host", "GET", "/api/topology", with("Origin", "http://127.0.0.1:8000"), 403},
		{"foreign origin posts a trace", "POST", "/api/trace", with("Origin", "http://evil.example", "Content-Type", "application/json"), 403},
		{"DNS rebinding: a name as Host", "GET", "/api/topology", with("Host", "rebind.evil.example:9380"), 403},
		{"cross-site fetch", "GET", "/api/topology", with("Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors"), 403},
		{"same-site image", "GET", "/api/topology", with("Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "no-cors"), 403},
		{"own origin", "GET", "/api/topology", with("Origin", "http://127.0.0.1:9380", "Sec-Fetch-Site", "same-origin"), 200},
		{"localhost", "GET", "/api/topology", with("Host", "localhost:9380"), 200},
		{"IPv6 loopback", "GET", "/api/topology", with("Host", "[::1]:9380"), 200},
		{"a link from elsewhere", "GET", "/", with("Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"), 200},
	} {
		r := httptest.NewRequest(tc.method, "http://127.0.0.1:9380"+tc.target, strings.NewReader(`{"src":"a","dst":"b"}`))
		for k, v := range tc.hdr {
			if k == "Host" {
				r.Host = v
			} else {
				r.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
		}
	}
}

// Only the read routes reach the API; nothing mutates through the page.
func TestReadOnly(t *testing.T) {
	h, api := newHandler(t, false)
	hdr := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	for _, tc := range []struct{ method, target string }{
		{"POST", "/api/sandboxes"}, {"POST", "/api/v1/sandboxes"}, {"POST", "/v1/sandboxes"},
		{"DELETE", "/api/v1/sandboxes/a"}, {"DELETE", "/v1/sandboxes/a"}, {"POST", "/api/topology"},
		{"POST", "/api/trace"}, // not without Options.Trace
	} {
		if w := do(h, tc.method, tc.target, `{"name":"x"}`, hdr); w.Code < 400 {
			t.Errorf("%s %s = %d, want an error", tc.method, tc.target, w.Code)
		}
	}
	if n := api.mutated.Load(); n != 0 {
		t.Fatalf("%d mutating API calls went through the page", n)
	}
	if n := api.traced.Load(); n != 0 {
		t.Fatalf("a trace went through without Options.Trace")
	}
}

func TestTopologyView(t *testing.T) {
	h, _ := newHandler(t, false)
	w := do(h, "GET", "/api/topology", "", bearer)
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	// The page redraws only when a snapshot differs from the last one: the
	// counters, which move with any traffic, are left out of it.
	if again := do(h, "GET", "/api/topology", "", bearer); again.Body.String() != w.Body.String() || strings.Contains(w.Body.String(), "rx_bytes") {
		t.Errorf("two snapshots of an unchanged host differ, or carry counters:\n%s\n%s", w.Body, again.Body)
	}
	var v struct {
		Topology model.Topology   `json:"topology"`
		Picture  topoview.Picture `json:"picture"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Topology.Host != "h1" || len(v.Topology.Networks) != 1 || v.Topology.Networks[0].Ports[0].IPString() != "10.90.1.2" {
		t.Errorf("topology: %+v", v.Topology)
	}
	// The picture is of the same snapshot, in parts, with its drift in red;
	// its SVG is sent as is (no \u003c for each <).
	if strings.Contains(w.Body.String(), `\u003c`) {
		t.Errorf("the picture's SVG is escaped for HTML:\n%s", w.Body)
	}
	svg := map[string]string{}
	for _, p := range v.Picture.Parts {
		svg[p.Kind+":"+p.Name] = p.SVG
	}
	for key, want := range map[string]string{"sandbox:a": `<g class="sandbox" data-name="a">`, "network:app": `<g class="network" data-name="app">`,
		"port:ptv-a": `<g class="port" data-name="ptv-a"><line x1="`, "hostlink:app": `<g class="hostlink" data-name="app">`} {
		if !strings.HasPrefix(svg[key], want) {
			t.Errorf("part %s is %q, want it to start %s", key, svg[key], want)
		}
	}
	if !strings.Contains(svg["port:ptv-a"], `stroke="#d00"`) || v.Picture.Width == 0 || v.Picture.Height == 0 {
		t.Errorf("the drifted port is not red, or the picture has no size: %+v", v.Picture)
	}
}

func TestEventsProxied(t *testing.T) {
	h, api := newHandler(t, false)
	w := do(h, "GET", "/api/events?follow=true&since=3&token="+token, "", nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/x-ndjson" || !strings.Contains(w.Body.String(), `"sandbox-created"`) {
		t.Fatalf("%d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if q := api.lastQuery.Load(); q == nil || *q != "follow=true&since=3" {
		t.Fatalf("the API got the query %v, want follow=true&since=3 (and never the token)", q)
	}
}

func TestTrace(t *testing.T) {
	h, api := newHandler(t, true)
	if w := do(h, "GET", "/api/config", "", bearer); !strings.Contains(w.Body.String(), `"trace":true`) {
		t.Fatalf("config: %s", w.Body)
	}
	post := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	w := do(h, "POST", "/api/trace", `{"src":"a","dst":"b:80/tcp"}`, post)
	var ans TraceAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &ans); w.Code != 200 || err != nil || ans.Probe.To != "b:80/tcp" || len(ans.Hops) != 4 {
		t.Fatalf("trace (%v): %d %s", err, w.Code, w.Body)
	}
	// With the path on the picture: the objects crossed, and where it stops.
	var steps []string
	for _, s := range ans.Path.Steps {
		steps = append(steps, s.Kind+":"+s.Name)
	}
	if got := strings.Join(steps, " "); got != "sandbox:a port:ptv-a network:app" || ans.Path.Stop == nil || ans.Path.Stop.Name != "app" || ans.Path.Result != model.VerdictDropped {
		t.Errorf("path %s, stop %+v, result %s; want sandbox:a port:ptv-a network:app, stopped at network app", got, ans.Path.Stop, ans.Path.Result)
	}
	// A form of another site can only send form encodings.
	post["Content-Type"] = "application/x-www-form-urlencoded"
	if w := do(h, "POST", "/api/trace", `src=a`, post); w.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("form-encoded trace: %d", w.Code)
	}
	// The page predicts only: a live trace changes the host's firewall.
	post["Content-Type"] = "application/json"
	if w := do(h, "POST", "/api/trace", `{"src":"a","dst":"b","live":true}`, post); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "pontoon trace") {
		t.Fatalf("live trace: %d %s", w.Code, w.Body)
	}
	if w := do(h, "POST", "/api/trace", `{"src":"a","dst":"b","evil":1}`, post); w.Code != http.StatusBadRequest {
		t.Fatalf("unknown field: %d %s", w.Code, w.Body)
	}
	if api.traced.Load() != 1 {
		t.Fatalf("traces: %d, want 1", api.traced.Load())
	}
	h, _ = newHandler(t, false)
	if w := do(h, "GET", "/api/config", "", bearer); !strings.Contains(w.Body.String(), `"trace":false`) {
		t.Fatalf("config without trace: %s", w.Body)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr        string
		allowRemote bool
		remote, ok  bool
	}{
		{"127.0.0.1:9380", false, false, true},
		{"[::1]:9380", false, false, true},
		{"localhost:9380", false, false, true},
		{"127.0.0.2:0", false, false, true},
		{"0.0.0.0:9380", false, true, false},
		{":9380", false, true, false},
		{"198.51.100.1:9380", false, true, false},
		{"198.51.100.1:9380", true, true, true},
		{":9380", true, true, true},
		{"example.com:9380", true, false, false},
		{"127.0.0.1", false, false, false},
		{"127.0.0.1:http", false, false, false},
		{"127.0.0.1:70000", false, false, false},
	} {
		remote, err := CheckAddr(tc.addr, tc.allowRemote)
		if (err == nil) != tc.ok || (tc.ok && remote != tc.remote) {
			t.Errorf("CheckAddr(%q, %v) = %v, %v; want remote %v, ok %v", tc.addr, tc.allowRemote, remote, err, tc.remote, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--web") {
			t.Errorf("CheckAddr(%q): the error does not name the flag: %v", tc.addr, err)
		}
	}
}

func TestPageURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:9380": "http://127.0.0.1:9380/?token=" + token,
		"0.0.0.0:9380":   "http://127.0.0.1:9380/?token=" + token,
		"[::1]:9380":     "http://[::1]:9380/?token=" + token,
	} {
		a, _ := net.ResolveTCPAddr("tcp", addr)
		if got := PageURL(a, token); got != want {
			t.Errorf("PageURL(%s) = %s, want %s", addr, got, want)
		}
	}
	a, b := must(NewToken()), must(NewToken())
	if a == b || len(a) < 40 {
		t.Errorf("tokens %q and %q", a, b)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
