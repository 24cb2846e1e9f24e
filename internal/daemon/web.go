package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/web"
)

// webTokenFile, under --root, holds the web page's token while the daemon
// runs (mode 0600).
const webTokenFile = "web-token"

// checkWeb refuses bad --web flags before anything is touched.
func checkWeb(o Options) error {
	if o.Web == "" {
		if o.WebAllowRemote || o.WebTrace {
			return errors.New("--web-allow-remote and --web-trace need --web ADDR")
		}
		return nil
	}
	_, err := web.CheckAddr(o.Web, o.WebAllowRemote)
	return err
}

// startWeb serves the web page on --web (package web) with a new token,
// which it writes to --root/web-token; the page URL it returns carries the
// token. stop ends the page's streams, stops the server and removes the
// token file. Without --web it does nothing.
func startWeb(o Options, srv *Server, log *slog.Logger) (pageURL string, stop func(), err error) {
	stop = func() {}
	if o.Web == "" {
		return "", stop, nil
	}
	remote, err := web.CheckAddr(o.Web, o.WebAllowRemote)
	if err != nil {
		return "", stop, err
	}
	token, err := web.NewToken()
	if err != nil {
		return "", stop, err
	}
	trace := false
	if o.WebTrace {
		// The trace route comes with the trace feature; a daemon built
		// without it serves the page without the form.
		if trace = slices.Contains(srv.patterns, "POST /v1/trace"); !trace {
			log.Warn("--web-trace: this daemon has no trace route (POST /v1/trace): the page offers no trace")
		}
	}
	l, err := net.Listen("tcp", o.Web)
	if err != nil {
		return "", stop, fmt.Errorf("--web %s: %w", o.Web, err)
	}
	h, err := web.New(web.Options{API: srv, Token: token, Port: l.Addr().(*net.TCPAddr).Port, Trace: trace, Version: api.Build(), Log: log})
	if err != nil {
		l.Close()
		return "", stop, err
	}
	tokenPath := filepath.Join(o.Root, webTokenFile)
	// A new file each start: one left by a killed daemon may have another
	// mode, which WriteFile would keep.
	_ = os.Remove(tokenPath)
	if err := os.WriteFile(tokenPath, []byte(token+"\n"), 0o600); err != nil {
		l.Close()
		return "", stop, fmt.Errorf("write the web page's token: %w", err)
	}
	// The page's event streams last as long as the page: they end when
	// this context does, so that Shutdown does not wait for them.
	ctx, cancel := context.WithCancel(context.Background())
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = hs.Serve(l) }()
	if remote {
		log.Warn("the web page is reachable from other machines (--web-allow-remote), over plain HTTP: whoever sees its traffic sees the token",
			"addr", l.Addr().String())
	}
	stop = func() {
		cancel()
		sctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = hs.Shutdown(sctx)
		_ = os.Remove(tokenPath)
	}
	return web.PageURL(l.Addr(), token), stop, nil
}

// webAttr is the ready log line's "web" attribute: the page's address with
// its token (none without --web).
func webAttr(pageURL string) slog.Attr {
	if pageURL == "" {
		return slog.Attr{}
	}
	return slog.String("web", pageURL)
}
