package daemon

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCheckWeb(t *testing.T) {
	for _, c := range []struct {
		o  Options
		ok bool
	}{
		{Options{}, true},
		{Options{Web: "127.0.0.1:9380"}, true},
		{Options{Web: "0.0.0.0:9380"}, false},
		{Options{Web: "0.0.0.0:9380", WebAllowRemote: true}, true},
		{Options{WebTrace: true}, false},
		{Options{WebAllowRemote: true}, false},
	} {
		if err := checkWeb(c.o); (err == nil) != c.ok {
			t.Errorf("checkWeb(%+v) = %v, want ok %v", c.o, err, c.ok)
		}
	}
}

// The page offers trace only when the daemon has the trace route and
// --web-trace asks for it; the token file exists while the page is served.
func TestStartWebTrace(t *testing.T) {
	for _, c := range []struct {
		route, flag, want bool
	}{
		{false, false, false},
		{false, true, false},
		{true, false, false},
		{true, true, true},
	} {
		srv := NewServer(nil, slog.New(slog.DiscardHandler))
		if !c.route { // a daemon built without the trace feature
			srv.patterns = slices.DeleteFunc(srv.patterns, func(p string) bool { return p == "POST /v1/trace" })
		} else if !slices.Contains(srv.patterns, "POST /v1/trace") {
			t.Fatal("the server has no POST /v1/trace route")
		}
		root := t.TempDir()
		pageURL, stop, err := startWeb(Options{Root: root, Web: "127.0.0.1:0", WebTrace: c.flag}, srv, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		token, err := os.ReadFile(filepath.Join(root, webTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(root, webTokenFile)); fi.Mode().Perm() != 0o600 {
			t.Errorf("token file mode %v", fi.Mode().Perm())
		}
		base, tok, _ := strings.Cut(pageURL, "/?token=")
		if tok != strings.TrimSpace(string(token)) {
			t.Errorf("the page URL %s does not carry the token of the file", pageURL)
		}
		req, _ := http.NewRequest(http.MethodGet, base+"/api/config", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct{ Trace bool }
		_ = json.NewDecoder(res.Body).Decode(&cfg)
		res.Body.Close()
		if cfg.Trace != c.want {
			t.Errorf("route %v, --web-trace %v: the page offers trace: %v", c.route, c.flag, cfg.Trace)
		}
		stop()
		if _, err := os.Stat(filepath.Join(root, webTokenFile)); !os.IsNotExist(err) {
			t.Errorf("the token file outlived the page: %v", err)
		}
	}
}
