package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// metricsText scrapes GET /metrics on the API socket.
func (h *Host) metricsText(t *testing.T) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.Socket)
	}}}
	resp, err := c.Get("http://pontoon/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// metric returns the value of the sample whose line starts with name (with
// its labels), or -1.
func metric(text, name string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return -1
}

// `pontoon events` follows the feed while a script of operations runs;
// --since replays it; the metrics count the same operations.
func TestEventsAndMetrics(t *testing.T) {
	h := NewHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := exec.CommandContext(ctx, filepath.Join(binDir, "pontoon"), "--socket", h.Socket, "events", "--format", "json", "--filter", "network=app")
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = follow.Wait() })
	lines := make(chan model.Event, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev model.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				lines <- ev
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the stream is open
	h.P("network", "create", "app", "--subnet", "10.97.8.0/24")
	h.P("sandbox", "create", "a", "--network", "app", "-p", "8080:80")
	h.P("sandbox", "create", "b", "--network", "app")
	h.P("network", "disconnect", "app", "b")
	h.P("sandbox", "rm", "a")
	want := []string{"network-created", "attached", "published", "attached", "detached", "detached", "unpublished"}
	var got []string
	for len(got) < len(want) {
		select {
		case ev := <-lines:
			if ev.Network != "app" {
				t.Errorf("the filter let through %+v", ev)
			}
			got = append(got, ev.Kind)
		case <-time.After(3 * time.Second):
			t.Fatalf("followed events %v, want %v", got, want)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("followed events %v, want %v", got, want)
	}
	// Replay: the same, from the CLI, without following.
	replay := h.P("events", "--since", "1m", "--no-follow", "--filter", "network=app", "--filter", "kind=attached")
	if n := strings.Count(replay, "attached"); n != 2 || !strings.Contains(replay, "sandbox=a") || !strings.Contains(replay, "sandbox=b") {
		t.Fatalf("replay of attaches:\n%s", replay)
	}
	// A failure is an event too.
	h.PFail("network", "connect", "nope", "b")
	var failed []model.Event
	if err := api.NewClient(h.Socket).Events(ctx, api.EventQuery{SinceTime: time.Now().Add(-time.Minute), Kinds: []string{"failed"}}, func(ev model.Event) error {
		failed = append(failed, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].Op != "attach" || !strings.Contains(failed[0].Detail, "nope") {
		t.Fatalf("failed events: %+v", failed)
	}

	m := h.metricsText(t)
	for name, want := range map[string]float64{
		`pontoon_operation_duration_seconds_count{op="attach"}`: 2,
		`pontoon_operation_duration_seconds_count{op="detach"}`: 2,
		`pontoon_operation_errors_total{op="attach"}`:           1,
		`pontoon_endpoints{network="app"}`:                      0,
		`pontoon_networks`:                                      2,
		`pontoon_sandboxes{kind="pontoon"}`:                     1,
	} {
		if got := metric(m, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if metric(m, "go_goroutines") <= 0 {
		t.Error("no Go runtime metrics")
	}
	// A repair shows in the metrics.
	h.In(h.NS, "ip", "link", "del", model.DefaultBridge)
	deadline := time.Now().Add(2 * time.Second)
	for metric(h.metricsText(t), `pontoon_repairs_total{kind="bridge"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("bridge repair not counted:\n%s", h.metricsText(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
