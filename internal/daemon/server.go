package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/dns"
	"pontoon/internal/engine"
	"pontoon/internal/model"
)

// Server serves the API.
type Server struct {
	doc   *doctor
	dns   *dns.Server
	eng   *engine.Engine
	log   *slog.Logger
	ready atomic.Bool
	mux   *http.ServeMux
	// metrics serves GET /metrics (nil until the daemon set it up).
	metrics http.Handler
	// patterns lists the routes, as "METHOD /path" (docs/api.md documents
	// each; a test checks it).
	patterns []string
}

// NewServer returns a server for eng. It answers /v1/status at once, and
// everything else once SetReady(true) was called (after reconciliation).
func NewServer(eng *engine.Engine, log *slog.Logger) *Server {
	s := &Server{eng: eng, log: log, mux: http.NewServeMux()}
	s.routes()
	return s
}

// SetReady says whether the engine has reconciled and may serve.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/events", s.events)
	s.mux.HandleFunc("GET /metrics", s.serveMetrics)
	s.patterns = append(s.patterns, "GET /v1/status", "GET /v1/events", "GET /metrics")
	s.handle("GET /v1/networks", s.listNetworks)
	s.handle("POST /v1/networks", s.createNetwork)
	s.handle("GET /v1/networks/{name}", s.getNetwork)
	s.handle("DELETE /v1/networks/{name}", s.removeNetwork)
	s.handle("GET /v1/networks/{name}/fdb", s.networkFDB)
	s.handle("POST /v1/networks/{name}/connect", s.connect)
	s.handle("POST /v1/networks/{name}/disconnect", s.disconnect)
	s.handle("GET /v1/sandboxes", s.listSandboxes)
	s.handle("POST /v1/sandboxes", s.createSandbox)
	s.handle("GET /v1/sandboxes/{name}", s.getSandbox)
	s.handle("DELETE /v1/sandboxes/{name}", s.removeSandbox)
	s.handle("POST /v1/sandboxes/{name}/check", s.checkSandbox)
	s.handle("POST /v1/cni/add", s.cniAdd)
	s.handle("POST /v1/cni/del", s.cniDel)
	s.handle("GET /v1/dns", s.dnsStats)
	s.handle("GET /v1/doctor", s.doctor)
	s.handle("GET /v1/ports", s.ports)
	s.handle("GET /v1/topology", s.topology)
	s.handle("GET /v1/nodes", s.nodes)
	s.handle("GET /v1/nodes/{name}", s.getNode)
	s.handle("DELETE /v1/nodes/{name}", s.forgetNode)
	s.handle("POST /v1/trace", s.trace)
	s.mux.HandleFunc("/", s.noRoute)
}

// noRoute answers a request no route takes: 405 with an Allow header when
// the path has routes for other methods, else 404. (The catch-all "/"
// route would otherwise turn every wrong method into a 404.)
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		writeError(w, model.NotFoundf("no API route %s %s: see docs/api.md", r.Method, r.URL.Path))
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeErrorStatus(w, http.StatusMethodNotAllowed, "invalid",
		fmt.Sprintf("%s %s is not a route: %s takes %s (see docs/api.md)", r.Method, r.URL.Path, r.URL.Path, strings.Join(allow, ", ")))
}

// handle wraps a handler that returns a value or an error.
func (s *Server) handle(pattern string, h func(r *http.Request) (int, any, error)) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if !s.ready.Load() {
			writeErrorStatus(w, http.StatusServiceUnavailable, "unavailable", "the daemon is starting (reconciling state): try again in a moment")
			return
		}
		code, v, err := h(r)
		if err != nil {
			s.log.Debug("api", "method", r.Method, "path", r.URL.Path, "err", err, "took", time.Since(start))
			writeError(w, err)
			return
		}
		s.log.Debug("api", "method", r.Method, "path", r.URL.Path, "status", code, "took", time.Since(start))
		writeJSON(w, code, v)
	})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	hs := s.eng.HealStatus()
	st := api.Status{Ready: s.ready.Load(), PID: os.Getpid(), Version: api.Version, Build: api.Build(),
		Healing: api.Healing{Running: hs.Running, Repairs: hs.Repairs, Unrepaired: hs.Unrepaired}}
	code := http.StatusOK
	if !st.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, st)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return model.Invalidf("request body is not valid JSON for this route: %v (see docs/api.md)", err)
	}
	return nil
}

func (s *Server) listNetworks(r *http.Request) (int, any, error) {
	v, err := s.eng.ListNetworks(r.Context())
	if v == nil {
		v = []*model.NetworkInfo{}
	}
	return http.StatusOK, v, err
}

func (s *Server) createNetwork(r *http.Request) (int, any, error) {
	var spec model.NetworkSpec
	if err := decode(r, &spec); err != nil {
		return 0, nil, err
	}
	n, err := s.eng.CreateNetwork(r.Context(), spec)
	return http.StatusCreated, n, err
}

func (s *Server) getNetwork(r *http.Request) (int, any, error) {
	v, err := s.eng.InspectNetwork(r.Context(), r.PathValue("name"))
	return http.StatusOK, v, err
}

func (s *Server) networkFDB(r *http.Request) (int, any, error) {
	v, err := s.eng.NetworkFDB(r.Context(), r.PathValue("name"))
	return http.StatusOK, v, err
}

func (s *Server) removeNetwork(r *http.Request) (int, any, error) {
	force := r.URL.Query().Get("force") == "true"
	return http.StatusOK, struct{}{}, s.eng.RemoveNetwork(r.Context(), r.PathValue("name"), force)
}

func (s *Server) connect(r *http.Request) (int, any, error) {
	var req api.ConnectRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	a := req.AttachSpec
	a.Network = r.PathValue("name")
	ep, err := s.eng.Connect(r.Context(), req.Sandbox, a)
	return http.StatusCreated, ep, err
}

func (s *Server) disconnect(r *http.Request) (int, any, error) {
	var req api.DisconnectRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct{}{}, s.eng.Disconnect(r.Context(), r.PathValue("name"), req.Sandbox)
}

// cniAdd and cniDel are the CNI plugin's verbs, one request each (see
// engine.AddContainer and engine.DelContainer).
func (s *Server) cniAdd(r *http.Request) (int, any, error) {
	var req api.CNIAddRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.ContainerID == "" || req.Netns == "" || req.IfName == "" || req.Network == "" {
		return 0, nil, model.Invalidf("a CNI ADD needs container_id, netns, ifname and network")
	}
	name := model.CNISandboxName(req.ContainerID)
	ep, err := s.eng.AddContainer(r.Context(), model.SandboxSpec{
		Name: name, Netns: req.Netns, ContainerID: req.ContainerID, Labels: req.Labels,
		Networks: []model.AttachSpec{{Network: req.Network, IPs: req.IPs, Aliases: req.Aliases, IfName: req.IfName, MAC: req.MAC, Ports: req.Ports}},
	})
	return http.StatusCreated, api.CNIAddResult{Sandbox: name, Netns: req.Netns, Endpoint: ep}, err
}

func (s *Server) cniDel(r *http.Request) (int, any, error) {
	var req api.CNIDelRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.ContainerID == "" {
		return 0, nil, model.Invalidf("a CNI DEL needs container_id")
	}
	return http.StatusOK, struct{}{}, s.eng.DelContainer(r.Context(), model.CNISandboxName(req.ContainerID), req.Network, req.IfName)
}

func (s *Server) listSandboxes(r *http.Request) (int, any, error) {
	v, err := s.eng.ListSandboxes(r.Context())
	if v == nil {
		v = []*model.SandboxInfo{}
	}
	return http.StatusOK, v, err
}

func (s *Server) createSandbox(r *http.Request) (int, any, error) {
	var spec model.SandboxSpec
	if err := decode(r, &spec); err != nil {
		return 0, nil, err
	}
	v, err := s.eng.CreateSandbox(r.Context(), spec)
	return http.StatusCreated, v, err
}

func (s *Server) getSandbox(r *http.Request) (int, any, error) {
	v, err := s.eng.InspectSandbox(r.Context(), r.PathValue("name"))
	return http.StatusOK, v, err
}

func (s *Server) ports(r *http.Request) (int, any, error) {
	v, err := s.eng.Ports(r.URL.Query().Get("sandbox"))
	return http.StatusOK, v, err
}

func (s *Server) doctor(r *http.Request) (int, any, error) {
	if s.doc == nil {
		return 0, nil, model.NotFoundf("doctor is not available in this daemon")
	}
	v, err := s.doc.run(r.Context())
	return http.StatusOK, v, err
}

func (s *Server) dnsStats(r *http.Request) (int, any, error) {
	if s.dns == nil {
		return 0, nil, model.NotFoundf("this daemon runs no DNS server")
	}
	return http.StatusOK, s.dns.Stats(), nil
}

func (s *Server) checkSandbox(r *http.Request) (int, any, error) {
	v, err := s.eng.CheckSandbox(r.Context(), r.PathValue("name"))
	if v == nil {
		v = []api.Problem{}
	}
	return http.StatusOK, v, err
}

func (s *Server) removeSandbox(r *http.Request) (int, any, error) {
	return http.StatusOK, struct{}{}, s.eng.RemoveSandbox(r.Context(), r.PathValue("name"))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErrorStatus(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, api.ErrorBody{Error: msg, Kind: kind})
}

func writeError(w http.ResponseWriter, err error) {
	code, kind := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, model.ErrInvalid):
		code, kind = http.StatusBadRequest, "invalid"
	case errors.Is(err, model.ErrNotFound):
		code, kind = http.StatusNotFound, "not_found"
	case errors.Is(err, model.ErrConflict):
		code, kind = http.StatusConflict, "conflict"
	case errors.Is(err, model.ErrExhausted):
		code, kind = http.StatusInsufficientStorage, "exhausted"
	}
	writeErrorStatus(w, code, kind, err.Error())
}

// Listen opens the API socket at path with the given mode, owned by group
// gid unless gid < 0, refusing when another daemon answers there and
// replacing a stale socket file.
func Listen(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := socketFree(path); err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The socket is made before its mode and group are set: until then
	// it has the umask's mode, which for root's 022 lets no one else connect.
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("give socket %s to group %d: %w", path, gid, err)
		}
	}
	return l, nil
}

// Serve serves the API on l until ctx is done, then shuts down gracefully
// (in-flight requests finish).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	}
}

func (s *Server) nodes(r *http.Request) (int, any, error) {
	v, err := s.eng.Nodes(r.Context())
	return http.StatusOK, v, err
}

func (s *Server) forgetNode(r *http.Request) (int, any, error) {
	v, err := s.eng.ForgetNode(r.Context(), r.PathValue("name"))
	return http.StatusOK, v, err
}

func (s *Server) getNode(r *http.Request) (int, any, error) {
	v, err := s.eng.Node(r.Context(), r.PathValue("name"))
	return http.StatusOK, v, err
}
