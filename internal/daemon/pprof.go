package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	rpprof "runtime/pprof"
	"sync"
	"time"
)

// PprofEnv names the environment variable that turns on the daemon's
// profiling endpoint: a unix socket path (mode 0600) where Go's
// net/http/pprof handlers are served, with mutex and block profiling on.
// Off when unset. It is meant for measuring (cmd/pontoon-bench -profile;
// docs/benchmarks.md), not for production: mutex and block profiling cost a
// little on every contended lock and every blocking wait.
const PprofEnv = "PONTOON_PPROF"

// blockProfileRate samples blocking events of about this many nanoseconds
// and more (runtime.SetBlockProfileRate).
const blockProfileRate = 10_000

// servePprof serves the profiling endpoint on path until ctx ends.
func servePprof(ctx context.Context, path string, log *slog.Logger) error {
	l, err := Listen(path, 0o600, -1)
	if err != nil {
		return fmt.Errorf("%s: %w", PprofEnv, err)
	}
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(blockProfileRate)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// A CPU profile over a span the client decides (a benchmark phase):
	// start, then stop returns the profile.
	var cpu cpuProfile
	mux.HandleFunc("POST /debug/pprof/cpu/start", cpu.start)
	mux.HandleFunc("POST /debug/pprof/cpu/stop", cpu.stop)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = hs.Close()
		_ = os.Remove(path)
	}()
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("profiling endpoint stopped", "err", err)
		}
	}()
	log.Warn("profiling endpoint on (mutex and block profiles cost a little on every wait)", "socket", path, "env", PprofEnv)
	return nil
}

// cpuProfile is a CPU profile started and stopped by requests.
type cpuProfile struct {
	mu  sync.Mutex
	buf *bytes.Buffer // non-nil while running
}

func (c *cpuProfile) start(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf != nil {
		http.Error(w, "a CPU profile is already running: stop it first", http.StatusConflict)
		return
	}
	buf := &bytes.Buffer{}
	if err := rpprof.StartCPUProfile(buf); err != nil {
		http.Error(w, "start CPU profile: "+err.Error(), http.StatusConflict)
		return
	}
	c.buf = buf
	w.WriteHeader(http.StatusNoContent)
}

func (c *cpuProfile) stop(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		http.Error(w, "no CPU profile is running: start one first", http.StatusConflict)
		return
	}
	rpprof.StopCPUProfile()
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(c.buf.Bytes())
	c.buf = nil
}
