package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pontoon/internal/model"
)

// SIGKILL the daemon while sandboxes are being attached in parallel: 50
// sandbox creations all at once, and 64 connects of sandboxes without a
// network 32 at a time (concurrent attaches share store commits and
// firewall transactions); after each restart nothing leaks, the store and
// the kernel agree and no address is handed out twice.
func TestKillDuringParallelAttaches(t *testing.T) {
	h := NewHost(t)
	for round, r := range []struct {
		delay    time.Duration // kill this long after the start, or
		after    int64         // once this many have succeeded
		n, par   int
		connects bool
	}{
		{30 * time.Millisecond, 0, 50, 50, false},
		{120 * time.Millisecond, 0, 50, 50, false},
		{0, 4, 64, 32, true},
		{0, 40, 64, 32, true},
	} {
		name := func(i int) string { return fmt.Sprintf("k%d-%02d", round, i) }
		if r.connects {
			for i := range r.n {
				h.P("sandbox", "create", name(i), "--network", "none")
			}
		}
		var wg sync.WaitGroup
		var ok atomic.Int64
		wg.Go(func() {
			parallel(r.n, r.par, func(i int) {
				var err error
				if r.connects {
					_, err = h.TryP("network", "connect", "pontoon", name(i))
				} else {
					_, err = h.TryP("sandbox", "create", name(i))
				}
				if err == nil {
					ok.Add(1)
				}
			})
		})
		time.Sleep(r.delay)
		for deadline := time.Now().Add(30 * time.Second); ok.Load() < r.after && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		h.Kill()
		wg.Wait()
		h.Start()
		sbs := checkConsistent(t, h)
		if r.connects {
			connected := 0
			for _, sb := range sbs {
				if strings.HasPrefix(sb.Name, name(0)[:3]) && len(sb.Endpoints) > 0 {
					connected++
				}
			}
			t.Logf("round %d: %d of %d connected before the kill", round, connected, r.n)
		}
	}
	// New sandboxes after the crashes get fresh, distinct addresses.
	for i := 0; i < 10; i++ {
		h.P("sandbox", "create", fmt.Sprintf("after%02d", i))
	}
	sbs := checkConsistent(t, h)
	var ready []string
	for _, sb := range sbs {
		ready = append(ready, sb.Name)
	}
	if len(ready) < 10 {
		t.Fatalf("only %d sandboxes", len(ready))
	}
	// Every surviving sandbox works.
	target := h.IP("after09", "pontoon")
	for _, sb := range sbs {
		if sb.Name != "after09" {
			h.MustPing(sb.Name, target)
			break
		}
	}
	// Remove them all: nothing is left.
	args := append([]string{"sandbox", "rm"}, ready...)
	h.P(args...)
	// Removals finish in the background, within the kernel's RCU waits.
	if l, ok := within(5*time.Second, func() (string, bool) {
		l := h.HostLinks(model.HostVethPrefix)
		return strings.Join(l, " "), len(l) == 0
	}); !ok {
		t.Fatalf("veths left: %v", l)
	}
	if p, ok := within(5*time.Second, func() (string, bool) { p := h.Pins(); return strings.Join(p, " "), len(p) == 0 }); !ok {
		t.Fatalf("pins left: %v", p)
	}
}

// checkConsistent checks that the store (as the API shows it) and the kernel
// agree: every sandbox is ready with working endpoints, every pontoon veth
// and pin belongs to one, and no address is used twice.
func checkConsistent(t *testing.T, h *Host) []*model.SandboxInfo {
	t.Helper()
	var sbs []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("sandbox", "ls", "--format", "json")), &sbs); err != nil {
		t.Fatal(err)
	}
	ips := map[string]string{}
	var veths, pins []string
	for _, sb := range sbs {
		if sb.State != model.SandboxReady {
			t.Fatalf("sandbox %s is %s after restart", sb.Name, sb.State)
		}
		if sb.Kind == model.KindPontoon {
			pins = append(pins, sb.Name)
		}
		for _, ep := range sb.Endpoints {
			if o, dup := ips[ep.FirstIP().String()]; dup {
				t.Fatalf("address %s is on %s and %s", ep.FirstIP(), o, sb.Name)
			}
			ips[ep.FirstIP().String()] = sb.Name
			veths = append(veths, ep.HostIf)
		}
	}
	sort.Strings(veths)
	sort.Strings(pins)
	if got := h.HostLinks(model.HostVethPrefix); strings.Join(got, ",") != strings.Join(veths, ",") {
		t.Fatalf("host veths %v, store has %v", got, veths)
	}
	if got := h.Pins(); strings.Join(got, ",") != strings.Join(pins, ",") {
		t.Fatalf("pins %v, store has %v", got, pins)
	}
	return sbs
}
