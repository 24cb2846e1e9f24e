package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// What a new user trips over, run the way the user runs it: the README's
// examples as written, typos, reserved names, several names at once, exit
// statuses, --ip-range, host addresses of published ports.

// exitCode runs the CLI and returns its output and exit status.
func (h *Host) exitCode(args ...string) (string, int) {
	h.t.Helper()
	out, err := h.try(args...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	h.t.Fatalf("pontoon %s: %v", strings.Join(args, " "), err)
	return "", -1
}

// readmeBlock returns the command lines of the first ```sh block after the
// README heading, as written there.
func readmeBlock(t *testing.T, heading string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("README: no sh block after %q", heading)
	}
	block, _, _ := strings.Cut(rest, "```")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// shell runs a README line with sh, the CLI on PATH and PONTOON_SOCKET
// pointing at the host's daemon.
func (h *Host) shell(line string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"), "PONTOON_SOCKET="+h.Socket)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestNewUser(t *testing.T) {
	h := NewHost(t)

	// The README's first steps and its Names example, exactly as written.
	t.Run("README", func(t *testing.T) {
		for _, line := range readmeBlock(t, "## Trying it") {
			if out, err := h.shell(line); err != nil {
				t.Fatalf("README (Trying it): %s: %v\n%s", line, err, out)
			}
		}
		names := readmeBlock(t, "## Names")
		ran := 0
		for _, line := range names {
			out, err := h.shell(line)
			if err != nil {
				t.Fatalf("README (Names): %s: %v\n%s", line, err, out)
			}
			if strings.Contains(line, "nslookup") {
				ran++
				if db := h.IP("db", "app"); !strings.Contains(out, db) {
					t.Errorf("README (Names): %s answered without db's address %s:\n%s", line, db, out)
				}
			}
		}
		if ran == 0 {
			t.Fatalf("the README's Names block looks nothing up: %v", names)
		}
	})

	t.Run("typos fail", func(t *testing.T) {
		for _, c := range []struct {
			args    []string
			suggest string
		}{
			{[]string{"sandbox", "craete", "typo1"}, "create"},
			{[]string{"network", "lss"}, "ls"},
		} {
			out, code := h.exitCode(c.args...)
			if code == 0 || !strings.Contains(out, "unknown command") || !strings.Contains(out, "Did you mean this?\n\t"+c.suggest) {
				t.Errorf("pontoon %s: exit %d\n%s", strings.Join(c.args, " "), code, out)
			}
		}
		if _, err := h.TryP("sandbox", "inspect", "typo1"); err == nil {
			t.Error("sandbox craete typo1 created a sandbox")
		}
	})

	t.Run("reserved network names", func(t *testing.T) {
		for _, name := range []string{"none", "host", "Host"} {
			out := h.PFail("network", "create", name, "--subnet", "10.91.9.0/24")
			if !strings.Contains(out, "reserved") {
				t.Errorf("network create %s: %s", name, out)
			}
		}
		if ls := h.P("network", "ls", "-q"); strings.Contains(ls, "none") || strings.Contains(ls, "host") {
			t.Errorf("a reserved name was created anyway:\n%s", ls)
		}
		// --network none still means loopback only.
		out := h.P("run", "--rm", "--network", "none", "--", "ip", "-o", "link")
		if strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") {
			t.Errorf("--network none:\n%s", out)
		}
	})

	t.Run("exit statuses of exec and run", func(t *testing.T) {
		h.P("sandbox", "create", "ex")
		notExec := filepath.Join(h.Dir, "not-executable")
		if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			args []string
			code int
			says string
		}{
			{[]string{"exec", "ex", "--", "no-such-command-xyz"}, 127, "executable file not found"},
			{[]string{"exec", "ex", "--", "/no/such/path"}, 127, "no such file"},
			{[]string{"exec", "ex", "--", notExec}, 126, "permission denied"},
			{[]string{"exec", "ex", "--", h.Dir}, 126, ""},
			{[]string{"exec", "ex", "--", "sh", "-c", "exit 3"}, 3, ""},
			{[]string{"run", "--rm", "--name", "ex127", "--", "no-such-command-xyz"}, 127, "executable file not found"},
			{[]string{"run", "--rm", "--name", "ex126", "--", notExec}, 126, "permission denied"},
			{[]string{"exec", "no-such-sandbox", "--", "true"}, 1, "not found"},
		} {
			out, code := h.exitCode(c.args...)
			if code != c.code || !strings.Contains(strings.ToLower(out), c.says) {
				t.Errorf("pontoon %s: exit %d, want %d saying %q:\n%s", strings.Join(c.args, " "), code, c.code, c.says, out)
			}
		}
		// run --rm removed its sandbox although the command was not found.
		if ls := h.P("sandbox", "ls", "-q"); strings.Contains(ls, "ex127") || strings.Contains(ls, "ex126") {
			t.Errorf("run --rm left its sandbox:\n%s", ls)
		}
	})

	t.Run("several names", func(t *testing.T) {
		h.P("sandbox", "create", "m1")
		h.P("sandbox", "create", "m2")
		out, code := h.exitCode("sandbox", "inspect", "m1", "nosuch", "m2")
		if code != 1 || !strings.Contains(out, "Name:     m1") || !strings.Contains(out, "Name:     m2") || !strings.Contains(out, "nosuch") {
			t.Errorf("inspect m1 nosuch m2: exit %d\n%s", code, out)
		}
		out, code = h.exitCode("sandbox", "rm", "m1", "nosuch", "m2")
		if code != 1 || !strings.Contains(out, "nosuch") {
			t.Errorf("rm m1 nosuch m2: exit %d\n%s", code, out)
		}
		if ls := h.P("sandbox", "ls", "-q"); strings.Contains(ls, "m1") || strings.Contains(ls, "m2") {
			t.Errorf("rm stopped at the failing name:\n%s", ls)
		}
		if out, code := h.exitCode("sandbox", "rm", "-f", "nosuch"); code != 0 {
			t.Errorf("rm -f nosuch: exit %d\n%s", code, out)
		}
	})

	// --ip-range limits only what pontoon picks: --ip may be anywhere in the
	// subnet, and traffic flows to and from such an address.
	t.Run("static address outside ip-range", func(t *testing.T) {
		h.P("network", "create", "rng", "--subnet", "10.91.2.0/24", "--ip-range", "10.91.2.128/25")
		h.P("sandbox", "create", "auto", "--network", "rng")
		h.P("sandbox", "create", "fixed", "--network", "rng", "--ip", "10.91.2.10")
		if ip := h.IP("auto", "rng"); !netip.MustParsePrefix("10.91.2.128/25").Contains(netip.MustParseAddr(ip)) {
			t.Errorf("automatic address %s is not in the ip-range 10.91.2.128/25", ip)
		}
		if ip := h.IP("fixed", "rng"); ip != "10.91.2.10" {
			t.Errorf("fixed got %s", ip)
		}
		h.MustPing("fixed", h.IP("auto", "rng"))
		h.MustPing("auto", "10.91.2.10")
		// The gateway, network and broadcast addresses stay refused.
		for _, ip := range []string{"10.91.2.1", "10.91.2.0", "10.91.2.255"} {
			h.PFail("sandbox", "create", "bad"+strings.ReplaceAll(ip, ".", ""), "--network", "rng", "--ip", ip)
		}
	})

	// A host address the host does not have is refused; one it has works.
	t.Run("publish on a host address", func(t *testing.T) {
		out := h.PFail("sandbox", "create", "pub1", "-p", "198.51.100.77:7300:80")
		if !strings.Contains(out, "198.51.100.77") || !strings.Contains(out, "not an address of this host") {
			t.Errorf("foreign host address: %s", out)
		}
		if _, err := h.TryP("sandbox", "inspect", "pub1"); err == nil {
			t.Error("the refused sandbox exists")
		}
		h.P("sandbox", "create", "pub2", "-p", HostUplinkIP+":7300:80")
		ServeTCP(t, h.SandboxNS("pub2"), h.IP("pub2", "pontoon")+":80")
		if line, err := DialFrom(t, h.Outside, HostUplinkIP+":7300"); err != nil || !strings.HasPrefix(line, "hello from") {
			t.Errorf("LAN -> %s:7300: %q, %v", HostUplinkIP, line, err)
		}
	})

	// What an API client gets: no CLI flags in a 409, 405 for a wrong
	// method (docs/api.md).
	t.Run("API answers", func(t *testing.T) {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", h.Socket)
			}}}
		do := func(method, path string) (int, string, string) {
			req, _ := http.NewRequest(method, "http://pontoon"+path, nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, resp.Header.Get("Allow"), string(body)
		}
		code, _, body := do("DELETE", "/v1/networks/app") // db is on it (README block)
		if code != 409 || !strings.Contains(body, "?force=true") {
			t.Errorf("DELETE a network in use: %d %s", code, body)
		}
		if code, allow, body := do("PUT", "/v1/networks"); code != 405 || allow != "GET, POST" {
			t.Errorf("PUT /v1/networks: %d Allow %q %s", code, allow, body)
		}
		if code, _, body := do("GET", "/v1/nosuch"); code != 404 {
			t.Errorf("GET /v1/nosuch: %d %s", code, body)
		}
	})

	t.Run("version prints the build", func(t *testing.T) {
		out := h.P("version")
		for _, want := range []string{"client: ", "daemon: ", "go1.", "daemon API: v1 (pid "} {
			if !strings.Contains(out, want) {
				t.Errorf("version says no %q:\n%s", want, out)
			}
		}
		if v := h.P("--version"); !strings.HasPrefix(v, "pontoon ") {
			t.Errorf("--version: %q", v)
		}
	})

	t.Run("ready line names upstream resolvers", func(t *testing.T) {
		if !strings.Contains(h.Log(), "upstream_resolvers="+RouterIP+":53") {
			t.Errorf("the ready line does not name the upstream resolver %s:53:\n%s", RouterIP, grepLines(h.Log(), "ready"))
		}
	})
}

func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// daemonPID is the PID of the host's running daemon.
func (h *Host) daemonPID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.daemon.Process.Pid
}

// tree lists every path under dir (names only: the running daemon may
// write into its files meanwhile) and the mount points below it.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		out = append(out, p)
		return nil
	})
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, "mount "+f[4])
		}
	}
	return strings.Join(out, "\n")
}

// Two daemons must not share --netns-dir (the second's start-up GC would
// delete the first's pins), --root or --socket. A second daemon on any of
// them is refused, names the first one's PID, changes nothing on disk, and
// the first one's sandboxes keep working.
func TestSecondDaemonRefused(t *testing.T) {
	h := NewHost(t)
	h.P("sandbox", "create", "a")
	h.P("sandbox", "create", "b")
	bIP := h.IP("b", "pontoon")
	h.MustPing("a", bIP)
	pins := h.Pins()
	pid := strconv.Itoa(h.daemonPID())
	other := testutil.NewNetns(t)
	fresh := filepath.Join(h.Dir, "second") // nothing exists under it

	for _, c := range []struct {
		name                   string
		root, socket, netnsDir string
		want                   []string
	}{
		{"same netns-dir", filepath.Join(fresh, "root"), filepath.Join(fresh, "run", "pontoon.sock"), h.NetnsDir,
			[]string{"--netns-dir " + h.NetnsDir + " is in use by pontoon daemon pid " + pid, "delete each other's sandboxes"}},
		{"same root", h.Root, filepath.Join(fresh, "run", "pontoon.sock"), filepath.Join(fresh, "run", "netns"),
			[]string{"--root " + h.Root + " is in use by pontoon daemon pid " + pid}},
		{"same socket", filepath.Join(fresh, "root"), h.Socket, filepath.Join(fresh, "run", "netns"),
			[]string{"pontoon daemon pid " + pid + " is listening on " + h.Socket}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := tree(t, h.Dir)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "nsenter", "--net="+other, "--", filepath.Join(binDir, "pontoon"), "daemon",
				"--root", c.root, "--socket", c.socket, "--netns-dir", c.netnsDir,
				"--etc-netns-dir", filepath.Join(fresh, "etc-netns"), "--dns", RouterIP+":53")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("second daemon: %v, want it refused\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("second daemon's error does not say %q:\n%s", w, out)
				}
			}
			if after := tree(t, h.Dir); after != before {
				t.Errorf("the refused daemon changed the disk:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if got := h.Pins(); strings.Join(got, ",") != strings.Join(pins, ",") {
				t.Errorf("pins %v, want %v", got, pins)
			}
			h.MustPing("a", bIP)
		})
	}
	// The first daemon still serves, and its sandboxes are whole.
	if ls := h.P("sandbox", "ls", "-q"); ls != "a\nb\n" {
		t.Errorf("sandboxes after the refused starts:\n%s", ls)
	}
}

// The socket is root's (mode 0660) unless the daemon is given --group: a
// user outside it gets an error that says it is a permission problem and
// what to do, and a member of the group uses the CLI without root.
func TestSocketPermissions(t *testing.T) {
	h := NewHost(t)
	// Let the unprivileged user reach the socket's directory and the CLI.
	for _, d := range []string{filepath.Dir(h.Dir), h.Dir, binDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	asNobody := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "pontoon"), append([]string{"--socket", h.Socket}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := asNobody("network", "ls")
	if err == nil {
		t.Fatalf("nobody listed networks on a root-only socket:\n%s", out)
	}
	for _, want := range []string{"permission denied on the pontoon daemon's socket " + h.Socket, "mode 0660, root's", "--group"} {
		if !strings.Contains(out, want) {
			t.Errorf("permission error does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "daemon unavailable") {
		t.Errorf("a permission problem reads as a dead daemon:\n%s", out)
	}

	h.Stop()
	h.Start("--group", "nogroup")
	fi, err := os.Stat(h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Gid != 65534 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket gid %d mode %o, want 65534 and 0660", st.Gid, fi.Mode().Perm())
	}
	out, err = asNobody("network", "ls", "-q")
	if err != nil || out != "pontoon\n" {
		t.Fatalf("nobody (group nogroup) network ls: %v\n%s", err, out)
	}
	// A daemon with a group that does not exist is refused before it starts
	// (in the throwaway host, in case it were not).
	h.Stop()
	if out, err := exec.Command("nsenter", "--net="+h.NS, "--", filepath.Join(binDir, "pontoon"), "daemon", "--group", "no-such-group-xyz",
		"--root", filepath.Join(h.Dir, "nogroup-root"), "--socket", filepath.Join(h.Dir, "nogroup.sock"),
		"--netns-dir", filepath.Join(h.Dir, "nogroup-netns")).CombinedOutput(); err == nil || !strings.Contains(string(out), `--group "no-such-group-xyz": no such group`) {
		t.Errorf("daemon --group no-such-group-xyz: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(h.Dir, "nogroup-root")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused daemon created its root: %v", err)
	}
}

// `pontoon daemon --uninstall` removes what pontoon made on the (throwaway)
// host: refused while the daemon runs; once it is stopped, no pontoon link,
// table, mount, pin, state file or socket is left, an adopted namespace
// keeps only what it had, and an adopted bridge stays.
func TestUninstall(t *testing.T) {
	h := NewHost(t)
	h.In(h.NS, "ip", "link", "add", "usrbr0", "type", "bridge")
	h.P("network", "create", "back", "--subnet", "10.91.4.0/24", "--internal")
	h.P("network", "create", "adopt", "--subnet", "10.91.5.0/24", "--bridge", "usrbr0")
	h.P("sandbox", "create", "a", "-p", "7400:80")
	h.P("sandbox", "create", "b", "--network", "back", "--network", "adopt")
	ext := testutil.NewNetns(t)
	h.P("sandbox", "create", "ext", "--netns", ext, "--network", "back")
	etcNetns := filepath.Join(h.Dir, "etc-netns")
	uninstall := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+h.NS, "--", filepath.Join(binDir, "pontoon"), "daemon", "--uninstall",
			"--root", h.Root, "--socket", h.Socket, "--netns-dir", h.NetnsDir, "--etc-netns-dir", etcNetns).CombinedOutput()
		return string(out), err
	}

	before := tree(t, h.Dir)
	out, err := uninstall()
	if err == nil || !strings.Contains(out, "stop the daemon before uninstalling") {
		t.Fatalf("uninstall with the daemon running: %v\n%s", err, out)
	}
	if after := tree(t, h.Dir); after != before {
		t.Fatalf("the refused uninstall changed the disk:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	h.MustPing("b", h.IP("ext", "back"))

	h.Stop()
	h.In(h.NS, "nft", "add", "table", "inet", "pontoon-trace-dead") // as a daemon that died mid-trace leaves it
	out, err = uninstall()
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	t.Logf("pontoon daemon --uninstall:\n%s", out)
	if !strings.Contains(out, "removed 3 sandbox(es), 3 network(s)") {
		t.Errorf("uninstall says:\n%s", out)
	}
	for _, prefix := range []string{"ptv-", "ptbr-", "pontoon0"} {
		if l := h.HostLinks(prefix); len(l) > 0 {
			t.Errorf("links left: %v", l)
		}
	}
	if l := h.HostLinks("usrbr0"); len(l) != 1 {
		t.Errorf("the adopted bridge usrbr0 was removed")
	}
	if tables := h.In(h.NS, "nft", "list", "tables"); strings.Contains(tables, "pontoon") {
		t.Errorf("nftables tables left:\n%s", tables)
	}
	if links := h.In(ext, "ip", "-o", "link", "show"); strings.Contains(links, "eth") {
		t.Errorf("the adopted namespace keeps pontoon's interface:\n%s", links)
	}
	for _, p := range []string{h.Root, h.NetnsDir, h.Socket} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left (%v)", p, err)
		}
	}
	if ents, _ := os.ReadDir(etcNetns); len(ents) > 0 {
		t.Errorf("resolv.conf directories left in %s: %v", etcNetns, ents)
	}
	if m := tree(t, h.Dir); strings.Contains(m, "mount ") {
		t.Errorf("mounts left:\n%s", grepLines(m, "mount "))
	}
	// A second run finds nothing to do and succeeds.
	if out, err := uninstall(); err != nil || !strings.Contains(out, "removed 0 sandbox(es), 0 network(s), 0 leftover link(s), 0 leftover pin(s)") {
		t.Errorf("second uninstall: %v\n%s", err, out)
	}
}
