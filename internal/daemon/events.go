package daemon

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"pontoon/internal/model"
)

// events serves GET /v1/events: the kept events after ?since=ID (or after
// ?since_time=RFC3339), then, with ?follow=true, new ones as they happen,
// one JSON object a line (application/x-ndjson), flushed each. Filters:
// network=, sandbox=, kind= (each may repeat). A reader that falls behind
// gets {"kind":"gap","lost":N} in place of what it missed.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeErrorStatus(w, http.StatusServiceUnavailable, "unavailable", "the daemon is starting (reconciling state): try again in a moment")
		return
	}
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, model.Invalidf("since=%q is not an event ID (a number)", v))
			return
		}
		since = n
	}
	var sinceTime time.Time
	if v := q.Get("since_time"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, model.Invalidf("since_time=%q is not an RFC 3339 time like 2026-11-30T10:00:00Z", v))
			return
		}
		sinceTime = t
	}
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	match := eventFilter(q["network"], q["sandbox"], q["kind"])
	replay := q.Has("since") || q.Has("since_time") || !follow
	past, sub := s.eng.Subscribe(since, replay)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	write := func(ev model.Event) bool {
		if err := enc.Encode(ev); err != nil {
			return false
		}
		return true
	}
	for _, ev := range past {
		if ev.Time.Before(sinceTime) || !match(ev) {
			continue
		}
		if !write(ev) {
			return
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	if !follow {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-sub.C:
			if n := sub.Lost(); n > 0 && !write(model.Event{Kind: model.EventGap, Time: time.Now().UTC(), Lost: n}) {
				return
			}
			if match(ev) && !write(ev) {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

func eventFilter(networks, sandboxes, kinds []string) func(model.Event) bool {
	in := func(set []string, v string) bool {
		if len(set) == 0 {
			return true
		}
		for _, s := range set {
			for _, one := range strings.Split(s, ",") {
				if one == v {
					return true
				}
			}
		}
		return false
	}
	return func(ev model.Event) bool {
		return in(networks, ev.Network) && in(sandboxes, ev.Sandbox) && in(kinds, ev.Kind)
	}
}
