package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// S1 Q9: `pontoon capture --host-end` shows a's echo requests on both ends
// of its veth pair, eth0 in the sandbox and the host end in the daemon's
// namespace (the CLI runs in the test's namespace, not the daemon's).
func TestCaptureBothEnds(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("SKIP: tcpdump is not installed, so pontoon capture is not tested: apt-get install tcpdump (scripts/deps.sh does)")
	}
	h := NewHost(t)
	h.P("sandbox", "create", "a", "b")
	ipA, ipB := h.IP("a", "pontoon"), h.IP("b", "pontoon")
	hostIf := h.Sandbox("a").Endpoints[0].HostIf

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	capture := exec.CommandContext(ctx, filepath.Join(binDir, "pontoon"), "--socket", h.Socket,
		"capture", "a", "--host-end", "-c", "2", "--", "icmp")
	var stdout, stderr testutil.LockedBuffer
	capture.Stdout, capture.Stderr = &stdout, &stderr
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- capture.Wait() }()

	// Both sides listen before the first ping, so that each sees it.
	if out, ok := within(20*time.Second, func() (string, bool) {
		s := stderr.String()
		return s, strings.Count(s, "listening on") == 2
	}); !ok {
		t.Fatalf("capture does not listen on both sides:\n%s", out)
	}
	// One ping is a request and a reply on each side: -c 2 ends both.
	// A few more in case one is lost; the capture's timeout bounds it all.
	var err error
	exited := false
	for i := 0; i < 5 && !exited; i++ {
		h.Ping("a", ipB)
		select {
		case err = <-done:
			exited = true
		case <-time.After(2 * time.Second):
		}
	}
	if !exited {
		err = <-done
	}
	out := stdout.String()
	if err != nil {
		t.Fatalf("capture: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	t.Logf("capture:\n%s%s", out, stderr.String())
	for _, side := range []string{"eth0", hostIf} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(side) + ` *\| .*IP ` + regexp.QuoteMeta(ipA) + ` > ` + regexp.QuoteMeta(ipB) + `: ICMP echo request`)
		if !re.MatchString(out) {
			t.Errorf("no echo request %s > %s seen on %s:\n%s", ipA, ipB, side, out)
		}
	}

	// What cannot be captured is refused.
	if out := h.PFail("capture", "a", "--network", "nosuch"); !strings.Contains(out, "not on network nosuch") {
		t.Errorf("capture on a network a is not on: %s", out)
	}
}
