package daemon

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"pontoon/internal/api"
)

// A known path with a method it does not take is 405 with Allow; an
// unknown path is 404. Both carry the API's error body.
func TestUnknownMethodIs405(t *testing.T) {
	s := NewServer(nil, slog.New(slog.DiscardHandler)) // no route below reaches the engine
	for _, c := range []struct {
		method, path string
		code         int
		allow, kind  string
	}{
		{"PUT", "/v1/networks", 405, "GET, POST", "invalid"},
		{"PATCH", "/v1/networks/app", 405, "GET, DELETE", "invalid"},
		{"GET", "/v1/networks/app/connect", 405, "POST", "invalid"},
		{"DELETE", "/v1/status", 405, "GET", "invalid"},
		{"GET", "/v1/nosuch", 404, "", "not_found"},
		{"GET", "/v2/networks", 404, "", "not_found"},
	} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		var body api.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
			t.Errorf("%s %s: body %q is not an error body (%v)", c.method, c.path, w.Body.String(), err)
		}
		if w.Code != c.code || w.Header().Get("Allow") != c.allow || body.Kind != c.kind {
			t.Errorf("%s %s: %d Allow %q kind %q, want %d %q %q", c.method, c.path, w.Code, w.Header().Get("Allow"), body.Kind, c.code, c.allow, c.kind)
		}
	}
	// Routes that exist still answer (503 until ready).
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/networks", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /v1/networks before ready: %d", w.Code)
	}
}
