// Package web serves the page of `pontoon daemon --web`: a live picture of
// the host (the topology read model drawn by topoview.Draw), updated as the
// event feed reports changes, with details of the object clicked.
//
// The page's code is built from web/ at the repository's root by
// scripts/web.sh into dist/, which is committed and embedded here: the
// binary needs no network, no CDN and no front-end toolchain at run time.
//
// # What it serves
//
//	GET  /               the page (dist/index.html), and its /assets/*
//	GET  /api/config     {"version", "trace"}: what the page may offer
//	GET  /api/topology   {"topology": GET /v1/topology less counters, "picture": topoview.Draw of it}, one snapshot
//	GET  /api/events     GET /v1/events, its query passed on (follow, since, filters)
//	POST /api/trace      POST /v1/trace and the path it takes on the picture (topoview.TracePath),
//	                     only with Options.Trace (--web-trace), predictions only
//
// Each /api route calls the daemon's API handler in-process; nothing else
// of the API is reachable, so the web server changes nothing: even an
// allowed trace is a prediction (a live one, which arms a firewall trace
// and sends a probe, is refused).
//
// # Who may use it
//
// The story is the Jupyter one. The daemon makes a random token at start,
// prints the page's address with ?token= in its ready log line and keeps it
// in a file only root reads. A request must carry the token: as ?token= (the
// answer sets a cookie, SameSite=Strict and HttpOnly, and redirects to the
// same address without the token), as that cookie, or as an
// "Authorization: Bearer" header (curl). Otherwise it gets 401.
//
// A browser on another machine, or a web site open in the user's browser,
// cannot drive it either: the listener is on loopback unless the operator
// says otherwise, the Host header must be an IP address or "localhost"
// (a DNS name could be rebound to 127.0.0.1 by its owner's DNS server), and
// a request whose Origin is not the page's own, or that Sec-Fetch-Site
// calls cross-site or same-site (another port of the same host), is refused
// with 403; navigations are the exception, since following a link changes
// nothing and a cross-site one carries no cookie. Answers forbid framing
// and carry a strict Content-Security-Policy.
package web

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"pontoon/internal/model"
	"pontoon/internal/topoview"
)

//go:embed dist
var dist embed.FS

// Options configure a Handler.
type Options struct {
	// API is the daemon's API handler; /api routes call it in-process.
	API http.Handler
	// Token is the secret every request must carry (NewToken makes one).
	Token string
	// Port is the listening port, which names the cookie: browsers share
	// cookies between the ports of a host, so two daemons' pages must not
	// overwrite each other's.
	Port int
	// Trace passes POST /api/trace to the API's POST /v1/trace. Give it
	// only when the operator allowed it and the API has that route.
	Trace bool
	// Version is shown on the page.
	Version string
	Log     *slog.Logger
}

// Handler serves the page and its API.
type Handler struct {
	o      Options
	mux    *http.ServeMux
	cookie string
}

// New returns the handler of the page.
func New(o Options) (*Handler, error) {
	if o.API == nil {
		return nil, fmt.Errorf("web: no API handler")
	}
	if len(o.Token) < 16 {
		return nil, fmt.Errorf("web: the token is too short (make one with NewToken)")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{o: o, mux: http.NewServeMux(), cookie: "pontoon-web-" + strconv.Itoa(o.Port)}
	assets, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, err
	}
	files := http.FileServerFS(assets)
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, assets, "index.html")
	})
	h.mux.HandleFunc("GET /assets/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	h.mux.HandleFunc("GET /api/config", h.config)
	h.mux.HandleFunc("GET /api/topology", h.topology)
	h.mux.HandleFunc("GET /api/events", h.events)
	h.mux.HandleFunc("POST /api/trace", h.trace)
	h.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s on the web page's server: it serves only GET /api/config, /api/topology, /api/events and POST /api/trace", r.Method, r.URL.Path))
	})
	return h, nil
}

// NewToken returns a random token (256 bits, URL-safe base64).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make the web page's token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckAddr checks a --web address before anything listens: HOST:PORT with
// HOST an IP address or "localhost". A host that is not loopback (an empty
// one means every address) is refused unless allowRemote, and then the
// answer says so, for a warning.
func CheckAddr(addr string, allowRemote bool) (remote bool, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--web %q is not HOST:PORT, e.g. 127.0.0.1:9380", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return false, fmt.Errorf("--web %q: the port %q is not a number from 0 to 65535", addr, port)
	}
	loopback := false
	switch a, err := netip.ParseAddr(host); {
	case strings.EqualFold(host, "localhost"):
		loopback = true
	case host == "":
		// Every address of the host.
	case err != nil:
		return false, fmt.Errorf("--web %q: give an IP address (127.0.0.1, ::1), not a name", addr)
	default:
		loopback = a.IsLoopback()
	}
	if !loopback && !allowRemote {
		return true, fmt.Errorf("--web %s is not a loopback address: the page would be reachable from other machines, over plain HTTP; "+
			"use 127.0.0.1:PORT (and an SSH tunnel from elsewhere), or add --web-allow-remote if you mean it", addr)
	}
	return !loopback, nil
}

// PageURL is the address a user opens: the listener's, with the token.
func PageURL(l net.Addr, token string) string {
	host := l.String()
	if ta, ok := l.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		// Listening on every address: show one that works from here.
		host = net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	return "http://" + host + "/?token=" + url.QueryEscape(token)
}

// ServeHTTP checks where the request comes from and its token, then serves it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if msg := h.refuseSource(r); msg != "" {
		h.o.Log.Warn("web: request refused", "reason", msg, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		writeError(w, http.StatusForbidden, "forbidden", msg)
		return
	}
	if q := r.URL.Query(); q.Has("token") {
		if !h.valid(q.Get("token")) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "the token in this address is not the daemon's (it changes at every start): open the address that `pontoon daemon --web` printed in its ready log line, or read the token in --root's web-token file")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: h.cookie, Value: q.Get("token"), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		q.Del("token")
		r.URL.RawQuery = q.Encode()
		if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") {
			// The page: keep the token out of the address bar and history.
			http.Redirect(w, r, r.URL.RequestURI(), http.StatusSeeOther)
			return
		}
	} else if !h.authorized(r) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "this page needs the daemon's token: open the address that `pontoon daemon --web` printed in its ready log line (it ends in ?token=…), "+
			"or send the token of --root's web-token file as \"Authorization: Bearer TOKEN\"")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// refuseSource says why a request that may come from another site or
// through a rebound DNS name is refused ("" if it is not).
func (h *Handler) refuseSource(r *http.Request) string {
	host := r.Host
	if hp, _, err := net.SplitHostPort(host); err == nil {
		host = hp
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err != nil && !strings.EqualFold(host, "localhost") {
		return fmt.Sprintf("Host %q is a name: open the page by its address (http://127.0.0.1:PORT/); a name could be pointed at this machine by someone else's DNS", r.Host)
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
		return fmt.Sprintf("Origin %q is not this page's (http://%s): another site cannot use this page's API", o, r.Host)
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		if r.Header.Get("Sec-Fetch-Mode") != "navigate" || r.Method != http.MethodGet {
			return fmt.Sprintf("a %s request (Sec-Fetch-Site) is refused: only the page itself may use its API", site)
		}
	}
	return ""
}

func (h *Handler) valid(token string) bool {
	return subtle.ConstantTimeCompare([]byte(token), []byte(h.o.Token)) == 1
}

func (h *Handler) authorized(r *http.Request) bool {
	if c, err := r.Cookie(h.cookie); err == nil && h.valid(c.Value) {
		return true
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && h.valid(strings.TrimSpace(t)) {
		return true
	}
	return false
}

// Config is the answer of GET /api/config.
type Config struct {
	Version string `json:"version"`
	// Trace says whether POST /api/trace is served: the daemon has the
	// trace route and was started with --web-trace.
	Trace bool `json:"trace"`
}

func (h *Handler) config(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Config{Version: h.o.Version, Trace: h.o.Trace})
}

// View is the answer of GET /api/topology: one snapshot of the topology and
// its picture, so that what is drawn and what a click shows agree. The
// picture comes in parts (topoview.Draw), which the page diffs against
// what it shows.
type View struct {
	Topology json.RawMessage   `json:"topology"`
	Picture  *topoview.Picture `json:"picture"`
}

func (h *Handler) topology(w http.ResponseWriter, r *http.Request) {
	t, raw, ok := h.readTopology(w, r)
	if !ok {
		return
	}
	// The page shows no counters, and it redraws only when the snapshot
	// differs from the last one: counters, which move with any traffic,
	// would redraw it at every refresh. They stay in GET /v1/topology.
	if dropStats(t) {
		b, err := json.Marshal(t)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "internal", fmt.Sprintf("encode the topology: %v", err))
			return
		}
		raw = b
	}
	writeJSONRaw(w, http.StatusOK, View{Topology: raw, Picture: topoview.Draw(t)})
}

// dropStats clears the ports' counters of t and reports whether it had any.
func dropStats(t *model.Topology) bool {
	had := false
	for _, n := range t.Networks {
		for _, p := range n.Ports {
			had = had || p.Stats != nil
			p.Stats = nil
		}
	}
	return had
}

// readTopology gets GET /v1/topology from the API, as the API's JSON and
// decoded; on failure it has answered w.
func (h *Handler) readTopology(w http.ResponseWriter, r *http.Request) (*model.Topology, json.RawMessage, bool) {
	rec := newRecorder()
	h.o.API.ServeHTTP(rec, h.inner(r, http.MethodGet, "/v1/topology", "", nil))
	if rec.code != http.StatusOK {
		rec.copyTo(w)
		return nil, nil, false
	}
	var t model.Topology
	if err := json.Unmarshal(rec.body.Bytes(), &t); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", fmt.Sprintf("the daemon's topology is not valid JSON: %v", err))
		return nil, nil, false
	}
	return &t, bytes.TrimSpace(rec.body.Bytes()), true
}

// events streams the daemon's event feed: the API handler writes to this
// response directly (and flushes it), until the page goes away or the
// server stops.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	h.o.API.ServeHTTP(w, h.inner(r, http.MethodGet, "/v1/events", r.URL.RawQuery, nil))
}

// trace passes a trace request on, when allowed. The body must be JSON:
// a form of another site cannot send that without the browser asking this
// server first (CORS), which it never allows.
func (h *Handler) trace(w http.ResponseWriter, r *http.Request) {
	if !h.o.Trace {
		writeError(w, http.StatusNotFound, "not_found", "trace is not served by this page: the daemon needs the trace route and --web-trace")
		return
	}
	if mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(mt) != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "invalid", "POST /api/trace takes Content-Type: application/json")
		return
	}
	var spec model.TraceSpec
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("the body is not a trace request: %v (see docs/api.md)", err))
		return
	}
	// A live trace adds a table to the host's firewall and sends a packet
	// from a sandbox: the page changes nothing, so it only predicts.
	if spec.Live {
		writeError(w, http.StatusBadRequest, "invalid", "the web page predicts only, it sends no probe: run `pontoon trace` for a live trace")
		return
	}
	body, err := json.Marshal(spec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	rec := newRecorder()
	h.o.API.ServeHTTP(rec, h.inner(r, http.MethodPost, "/v1/trace", "", bytes.NewReader(body)))
	if rec.code != http.StatusOK {
		rec.copyTo(w)
		return
	}
	var ans TraceAnswer
	if err := json.Unmarshal(rec.body.Bytes(), &ans.Trace); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", fmt.Sprintf("the daemon's trace is not valid JSON: %v", err))
		return
	}
	t, _, ok := h.readTopology(w, r)
	if !ok {
		return
	}
	ans.Path = topoview.TracePath(t, &ans.Trace)
	writeJSON(w, http.StatusOK, ans)
}

// TraceAnswer is the answer of POST /api/trace: the daemon's trace, and
// the objects of the picture its path crosses (drawn on the page).
type TraceAnswer struct {
	model.Trace
	Path *topoview.Path `json:"path"`
}

// inner makes the in-process request to the API: only the method, path,
// query and body chosen here, none of the browser's headers (its cookie
// stays with the web server).
func (h *Handler) inner(r *http.Request, method, path, query string, body io.Reader) *http.Request {
	u := &url.URL{Path: path, RawQuery: query}
	in, _ := http.NewRequestWithContext(r.Context(), method, u.String(), body)
	in.Host = "pontoon"
	in.RemoteAddr = "web"
	if body != nil {
		in.Header.Set("Content-Type", "application/json")
	}
	return in
}

// recorder keeps an in-process answer of the API.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}, code: http.StatusOK} }

func (c *recorder) Header() http.Header         { return c.header }
func (c *recorder) Write(p []byte) (int, error) { return c.body.Write(p) }
func (c *recorder) WriteHeader(code int)        { c.code = code }

func (c *recorder) copyTo(w http.ResponseWriter) {
	if ct := c.header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(c.code)
	_, _ = w.Write(c.body.Bytes())
}

// errorBody is the API's error answer (api.ErrorBody), with the kinds
// unauthorized (401) and forbidden (403) of this server.
type errorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

func writeError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, errorBody{Error: msg, Kind: kind})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSONRaw is writeJSON without escaping <, > and & in strings: the
// picture's SVG text has thousands of them, which would each take six
// bytes (and the answer is JSON, never HTML: nosniff is set).
func writeJSONRaw(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
