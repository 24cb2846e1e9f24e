package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// webAddr is where the tests' daemons serve the page: the loopback of the
// throwaway host namespace, which only what runs in that namespace reaches.
const webAddr = "127.0.0.1:9380"

// requireChromium skips a test when Debian's chromium is not installed,
// saying so (scripts/deps.sh installs it; CI runs these tests).
func requireChromium(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("SKIP: chromium is not installed, so the web page is not tested in a browser: apt-get install chromium (scripts/deps.sh does)")
	}
	return path
}

// browser starts chromium headless inside the network namespace ns (its
// loopback is where the page is) and returns a chromedp context for a tab.
// chromedp talks to it over a pipe, so nothing of the browser listens; the
// browser and its profile go when the test ends.
func browser(t testing.TB, chromium, ns string) context.Context {
	t.Helper()
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("nsenter: %v (apt-get install util-linux)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("no-sandbox", true),
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 860),
		// A new, empty profile in a temporary directory, which chromedp
		// removes when the browser has gone.
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{"nsenter", "--net=" + ns, "--", cmd.Path}, cmd.Args[1:]...)
			cmd.Path = nsenter
			// nsenter execs chromium: the browser itself dies with the test.
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium in %s: %v", ns, err)
	}
	return ctx
}

// browse runs one browser action and returns its value, failing the test
// on error.
func browse[T any](t testing.TB, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// pageText is the text of the first element that matches the CSS selector
// sel ("" if none), read in one step: the page redraws its panels on each
// snapshot, so a node found in one step may be gone in the next.
func pageText(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return browse(t, ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.innerText ?? ""`, sel)))
}

// click clicks the element that matches sel with the mouse, again if a
// redraw replaced it between finding it and clicking.
func click(t testing.TB, ctx context.Context, sel string) {
	t.Helper()
	var err error
	for range 3 {
		if err = chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel))); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("click %s: %v", sel, err)
}

// webToken reads the page's token from the daemon's --root.
func webToken(t testing.TB, h *Host) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.Root, "web-token"))
	if err != nil {
		t.Fatalf("the daemon wrote no web-token under --root: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(h.Root, "web-token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("web-token has mode %v, want 0600", fi.Mode().Perm())
	}
	return strings.TrimSpace(string(b))
}

// webRequest sends one HTTP request to the page's server from inside the
// namespace ns, over a connection made there, and returns the status.
func webRequest(t *testing.T, ns, method, path string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	var conn net.Conn
	if err := testutil.InNetns(t, ns, func() (err error) {
		conn, err = net.DialTimeout("tcp4", webAddr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connect to the page at %s: %v", webAddr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.NewRequest(method, "http://"+webAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	n, _ := res.Body.Read(buf)
	sb.Write(buf[:n])
	return res.StatusCode, sb.String()
}

// artifactDir is where browser tests leave screenshots: $PONTOON_TEST_ARTIFACTS,
// or pontoon-e2e-artifacts in the system's temporary directory. It is
// kept after the test (a t.TempDir would not be), to be looked at.
func artifactDir(t testing.TB) string {
	dir := os.Getenv("PONTOON_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "pontoon-e2e-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The page in a real browser: it shows the host, a sandbox created after
// it loaded appears without a reload and goes when it is removed, drift
// shows in red, a click shows an object's details; and nobody without the
// token, no other origin and no rebound name gets anything.
func TestWebPage(t *testing.T) {
	chromium := requireChromium(t)
	// Self-healing off: the drift made below stays to be seen.
	h := NewHost(t, "--web", webAddr, "--self-heal=false")
	token := webToken(t, h)
	pageURL := "http://" + webAddr + "/?token=" + token
	ready := ""
	for _, line := range strings.Split(h.Log(), "\n") {
		if strings.Contains(line, `msg="pontoon daemon ready"`) {
			ready = line
		}
	}
	if !strings.Contains(ready, `web="`+pageURL+`"`) {
		t.Fatalf("the ready log line does not give the page's address %s:\n%s", pageURL, ready)
	}
	h.P("network", "create", "app", "--subnet", "10.97.10.0/24")
	h.P("sandbox", "create", "before", "--network", "app")

	ctx := browser(t, chromium, h.NS)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	css := func(sel string, a ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(sel, a...)) }
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: %v\npage:\n%s", what, err, page)
		}
	}
	do("open the page", chromedp.Navigate(pageURL),
		chromedp.WaitVisible(css(`g.network[data-name="app"]`)),
		chromedp.WaitVisible(css(`g.sandbox[data-name="before"]`)),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)))
	if loc := browse(t, ctx, chromedp.Location()); loc != "http://"+webAddr+"/" {
		t.Errorf("after the token was taken the address is %s, want it without the token", loc)
	}
	// A mark on the page's window: a reload would lose it.
	do("mark the page", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	notReloaded := func() {
		t.Helper()
		if !browse(t, ctx, chromedp.Evaluate[bool](`window.notReloaded === true`)) {
			t.Fatal("the page was reloaded")
		}
	}

	// A sandbox created after the page loaded appears in the picture.
	h.P("sandbox", "create", "web1", "--network", "app", "-p", "8080:80")
	do("see web1 appear", chromedp.WaitVisible(css(`g.sandbox[data-name="web1"]`)))
	notReloaded()
	// It came with the event feed (the page also refreshes every 15 s,
	// for drift that no event reports): an event asked for the snapshot
	// that drew it, and the events list shows it.
	// (The page notes that once the picture is on screen, a frame or two
	// after it is in the DOM.)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.pontoonPage.lastEventToScreenMs !== null`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("no event led to a new picture: %v", err)
	}
	if evs := pageText(t, ctx, `#events`); !strings.Contains(evs, "sandbox-created") || !strings.Contains(evs, "sandbox web1") {
		t.Errorf("the events list does not show web1's creation:\n%s", evs)
	}

	// Clicking it shows its details, from the topology.
	ep := h.Sandbox("web1").Endpoints[0]
	do("see web1's port", chromedp.WaitVisible(css(`g.port[data-name=%q]`, ep.HostIf)))
	click(t, ctx, `g.sandbox[data-name="web1"] rect`)
	details := pageText(t, ctx, `#details`)
	for _, want := range []string{"sandbox web1", h.SandboxNS("web1"), ep.FirstIP().String(), ep.HostIf} {
		if !strings.Contains(details, want) {
			t.Errorf("the details of web1 do not show %q:\n%s", want, details)
		}
	}
	// And a click on its port line, the port's.
	click(t, ctx, fmt.Sprintf(`g.port[data-name=%q] text`, ep.HostIf))
	details = pageText(t, ctx, `#details`)
	for _, want := range []string{"port " + ep.HostIf, ep.MAC, "8080:80/tcp"} {
		if !strings.Contains(details, want) {
			t.Errorf("the details of port %s do not show %q:\n%s", ep.HostIf, want, details)
		}
	}

	// Drift: web1's host end goes down behind pontoon's back. No event
	// says so (self-healing is off); the next event's snapshot shows it.
	h.In(h.NS, "ip", "link", "set", ep.HostIf, "down")
	h.P("sandbox", "create", "web2", "--network", "app")
	do("see the drift", chromedp.WaitVisible(css(`g.sandbox[data-name="web2"]`)), chromedp.WaitVisible(css(`#drift`)))
	banner := pageText(t, ctx, `#drift`)
	stroke := browse(t, ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('g.port[data-name=%q] line').getAttribute("stroke")`, ep.HostIf)))
	if stroke != "#d00" || !strings.Contains(banner, ep.HostIf+" is down") {
		t.Errorf("drift: web1's port line is drawn in %q (want red, #d00); banner %q", stroke, banner)
	}
	if color := browse(t, ctx, chromedp.Evaluate[string](`getComputedStyle(document.getElementById("drift")).color`)); color != "rgb(221, 0, 0)" {
		t.Errorf("the drift banner's colour is %s, want red", color)
	}
	notReloaded()

	// The find box selects an object by name.
	do("find web2", chromedp.SendKeys(css(`#find`), "web2"+kb.Enter), chromedp.WaitVisible(css(`g.sandbox.selected[data-name="web2"]`)))
	if d := pageText(t, ctx, `#details h2`); d != "sandbox web2" {
		t.Errorf("the find box selected %q, want sandbox web2", d)
	}
	click(t, ctx, fmt.Sprintf(`g.port[data-name=%q] text`, ep.HostIf))

	png := browse(t, ctx, chromedp.FullScreenshot(100))
	shot := filepath.Join(artifactDir(t), "TestWebPage.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the page: %s", shot)

	// Removed, it disappears, and its details say it is gone.
	click(t, ctx, `g.sandbox[data-name="web1"] rect`)
	h.P("sandbox", "rm", "web1")
	do("see web1 go", chromedp.WaitNotPresent(css(`g.sandbox[data-name="web1"]`)))
	if details := pageText(t, ctx, `#details`); !strings.Contains(details, "sandbox web1 is gone") {
		t.Errorf("the details of the removed sandbox say:\n%s", details)
	}
	if n := browse(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("g.sandbox").length`)); n != 2 {
		t.Errorf("the picture has %d sandboxes, want 2 (before, web2)", n)
	}
	notReloaded()

	// Without --web-trace there is no trace form.
	if shown := browse(t, ctx, chromedp.Evaluate[bool](`!document.getElementById("trace").hidden`)); shown {
		t.Error("the trace form shows without --web-trace")
	}

	// Another origin in the same browser (a page of another server on
	// this host, which the page's cookie would go along to: same site)
	// cannot read the API.
	other := serveForeignPage(t, h.NS, "127.0.0.1:9381", "http://"+webAddr+"/api/topology")
	do("open another origin", chromedp.Navigate(other))
	if outcome := browse(t, ctx, chromedp.Poll[string](`window.outcome`, chromedp.WithPollingTimeout(20*time.Second))); !strings.HasPrefix(outcome, "failed") {
		t.Errorf("a page of another origin fetched the API: %s", outcome)
	}
	if !strings.Contains(h.Log(), `Origin \"http://127.0.0.1:9381\" is not this page's`) {
		t.Errorf("the daemon did not refuse the other origin's request (no 403 logged):\n%s", h.Log())
	}

	// Without the browser: the token is required, foreign origins and
	// names are refused, and nothing changes anything.
	bearer := "Bearer " + token
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		want               int
	}{
		{"the page without the token", "GET", "/", nil, 401},
		{"the API without the token", "GET", "/api/topology", nil, 401},
		{"a wrong token", "GET", "/api/topology", map[string]string{"Authorization": "Bearer x" + token}, 401},
		{"a foreign Origin", "GET", "/api/topology", map[string]string{"Authorization": bearer, "Origin": "http://evil.example"}, 403},
		{"a rebound name", "GET", "/api/topology", map[string]string{"Authorization": bearer, "Host": "rebind.example:9380"}, 403},
		{"a mutation", "POST", "/api/v1/sandboxes", map[string]string{"Authorization": bearer, "Content-Type": "application/json"}, 404},
		{"a trace without --web-trace", "POST", "/api/trace", map[string]string{"Authorization": bearer, "Content-Type": "application/json"}, 404},
		{"the token", "GET", "/api/topology", map[string]string{"Authorization": bearer}, 200},
	} {
		code, body := webRequest(t, h.NS, tc.method, tc.path, tc.hdr, `{"name":"intruder"}`)
		if code != tc.want {
			t.Errorf("%s: %s %s = %d %s, want %d", tc.name, tc.method, tc.path, code, body, tc.want)
		}
	}
	if out := h.P("sandbox", "ls", "-q"); strings.Contains(out, "intruder") {
		t.Errorf("a sandbox was created through the page:\n%s", out)
	}

	// The token file goes with the daemon.
	h.Stop()
	if _, err := os.Stat(filepath.Join(h.Root, "web-token")); !os.IsNotExist(err) {
		t.Errorf("web-token is still there after the daemon stopped: %v", err)
	}
}

// With --web-trace the page traces a packet: the form's answer is the
// daemon's prediction, as `pontoon trace --predict` prints it, and the
// path is drawn on the picture: the objects the packet crosses marked,
// the one where it is dropped in red.
func TestWebTrace(t *testing.T) {
	chromium := requireChromium(t)
	h := NewHost(t, "--web", webAddr, "--web-trace")
	h.P("network", "create", "other", "--subnet", "10.97.11.0/24")
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b")
	h.P("sandbox", "create", "c", "--network", "other")
	predict := func(dst string) model.Trace {
		// (It exits 1 when the packet is dropped.)
		out, _ := h.try("trace", "a", dst, "--predict", "--format", "json")
		var tr model.Trace
		if err := json.Unmarshal([]byte(out), &tr); err != nil {
			t.Fatalf("pontoon trace a %s --predict: %v\n%s", dst, err, out)
		}
		return tr
	}
	portA, portB := h.Sandbox("a").Endpoints[0].HostIf, h.Sandbox("b").Endpoints[0].HostIf
	ctx := browser(t, chromium, h.NS)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+webAddr+"/?token="+webToken(t, h)),
		chromedp.WaitVisible(chromedp.CSS(`#trace-form`)),
		chromedp.WaitVisible(chromedp.CSS(`g.sandbox[data-name="c"]`))); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	// marked lists the picture's objects with class cls, as kind:name.
	marked := func(cls string) []string {
		return browse(t, ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
			`[...document.querySelectorAll("#picture g.%s")].map(g => g.classList[0] + ":" + (g.dataset.name ?? ""))`, cls)))
	}
	for _, c := range []struct {
		dst, shot string
		path      []string // the objects crossed, in the picture's order
		stop      string
	}{
		// On one bridge: a's veth, the bridge, b's veth, delivered.
		{"b:80/tcp", "TestWebTrace-delivered.png",
			[]string{"network:pontoon", "port:" + portA, "port:" + portB, "sandbox:a", "sandbox:b"}, ""},
		// To another network: up to the host, where isolation drops it.
		{"c:80/tcp", "TestWebTrace.png",
			[]string{"host:", "hostlink:pontoon", "network:pontoon", "port:" + portA, "sandbox:a"}, "host:"},
	} {
		want := predict(c.dst)
		form := chromedp.CSS(`#trace-form input[name=dst]`)
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS(`#trace-form input[name=src]`), "a"),
			chromedp.SetValue(form, c.dst),
			chromedp.Click(chromedp.CSS(`#trace-form button[type=submit]`))); err != nil {
			t.Fatalf("trace a → %s from the page: %v", c.dst, err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector("#trace-result .verdict")?.innerText === %q`, want.Verdict.Sentence),
			chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("trace a → %s from the page (want the verdict %q): %v\n%s", c.dst, want.Verdict.Sentence, err, pageText(t, ctx, "#trace-result"))
		}
		if n := browse(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#trace-result li").length`)); n != len(want.Hops) {
			t.Errorf("a → %s: the page lists %d hops, the trace has %d", c.dst, n, len(want.Hops))
		}
		if got := marked("on-path"); !slices.Equal(got, c.path) {
			t.Errorf("a → %s: the path on the picture is %v, want %v", c.dst, got, c.path)
		}
		stop := strings.Join(marked("path-stop"), " ")
		if stop != c.stop {
			t.Errorf("a → %s: the path stops at %q on the picture, want %q", c.dst, stop, c.stop)
		}
		if stop != "" {
			// Drawn in red, whatever the SVG says.
			if color := browse(t, ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("#picture g.path-stop > rect")).stroke`)); color != "rgb(221, 0, 0)" {
				t.Errorf("a → %s: the object where it stops is drawn in %s, want red", c.dst, color)
			}
		}
		png := browse(t, ctx, chromedp.FullScreenshot(100))
		shot := filepath.Join(artifactDir(t), c.shot)
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the page with the path of a → %s: %s", c.dst, shot)
	}

	// The path stays through an update of the picture, until cleared.
	h.P("sandbox", "create", "d")
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`g.sandbox[data-name="d"]`))); err != nil {
		t.Fatal(err)
	}
	if got := marked("path-stop"); len(got) != 1 || len(marked("on-path")) != 5 {
		t.Errorf("after an update the path is %v, stopping at %v", marked("on-path"), got)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#trace-clear`))); err != nil {
		t.Fatal(err)
	}
	if got := marked("on-path"); len(got) != 0 || browse(t, ctx, chromedp.Evaluate[bool](`document.querySelector("#picture svg").classList.contains("tracing")`)) {
		t.Errorf("after Clear the path is still drawn: %v", got)
	}
}

// serveForeignPage serves, inside ns on addr, a page that fetches target
// with credentials and records the outcome in window.outcome.
func serveForeignPage(t *testing.T, ns, addr, target string) string {
	t.Helper()
	var l net.Listener
	if err := testutil.InNetns(t, ns, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	page := fmt.Sprintf(`<!doctype html><script>
fetch(%q, {credentials: "include"}).then(r => r.text()).then(b => { window.outcome = "read: " + b.slice(0, 80) },
  e => { window.outcome = "failed: " + e });
</script>`, target)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(page))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + addr + "/"
}

// A --web address that is not loopback is refused before the daemon
// touches anything, unless --web-allow-remote says so.
func TestWebRemoteRefused(t *testing.T) {
	testutil.RequireRoot(t)
	// In a namespace of its own: were the start not refused, the daemon
	// would run there, not in the machine's namespace.
	ns := testutil.NewNetns(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+ns, "--", filepath.Join(binDir, "pontoon"), "daemon",
		"--root", root, "--socket", filepath.Join(dir, "s.sock"), "--netns-dir", filepath.Join(dir, "netns"),
		"--etc-netns-dir", filepath.Join(dir, "etc-netns"), "--web", "0.0.0.0:9380").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a loopback address") || !strings.Contains(string(out), "--web-allow-remote") {
		t.Fatalf("--web 0.0.0.0:9380 was not refused: %v\n%s", err, out)
	}
	for _, p := range []string{root, filepath.Join(dir, "s.sock"), filepath.Join(dir, "netns")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("the refused start made %s", p)
		}
	}
}
