package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dockerEnv is a dockerd of the test's own: Debian 12's docker.io (20.10)
// in the runtime tests' private mount namespace (rtEnv) and the
// throwaway host namespace, with its data, socket, pidfile, config and
// log in the test's directory and its exec root (state, containerd's
// sockets, the containers' namespace files) in the namespace's /run. The
// pontoon daemon runs in the same mount namespace, so
// /run/docker/plugins — where dockerd looks for remote network and IPAM
// drivers, and which it makes, in a /run/docker of mode 0700 — is the
// test's, and so are the containers' namespace files
// (NetworkSettings.SandboxKey) the driver is handed at Join. A driver
// whose socket is missing or refuses connections costs 15 s: dockerd
// retries the lookup that long before it fails the request.
//
// dockerd changes nothing of the machine's: no iptables rules, no
// docker0, no userland proxy, no ip_forward (the host namespace's is
// pontoon's to set); vfs storage (no overlay mounts); cgroupfs cgroups
// under the test's cgroup; its own containerd, supervised under the exec
// root (the machine's /run/containerd would not be seen anyway: /run is
// the namespace's tmpfs, where containerd's shims also put their
// sockets, /run/containerd/s). The image is imported from the same
// busybox layer as Podman's, so no registry is needed.
type dockerEnv struct {
	e *rtEnv
	// dir holds data-root, pidfile, log and the client's config.
	dir string
	// host is the daemon's socket (-H unix://…).
	host string
	log  string
	// pid is dockerd's; it is stopped with SIGTERM when the test ends.
	pid int
	// startup is how long dockerd took to answer `docker version`.
	startup time.Duration
	t       testing.TB
	cmd     *exec.Cmd
	starts  int // dockerd's starts so far (each logs to log.N)
}

// dockerCLI is docker.io's own client, 20.10 like its daemon. A newer
// client found first in PATH (/usr/local/bin/docker on some machines)
// negotiates the API version down too, but the tests pin the pair Debian
// ships.
const dockerCLI = "/usr/bin/docker"

// dockerImage is the busybox image every container runs.
const dockerImage = "bb:latest"

func newDocker(t testing.TB) *dockerEnv {
	t.Helper()
	requireTools(t, "docker.io runc containerd", "dockerd", dockerCLI, "containerd", "containerd-shim-runc-v2", "runc")
	if fi, err := os.Stat("/etc/docker"); err != nil || !fi.IsDir() {
		t.Skip("/etc/docker does not exist, so the test cannot hide it behind its own directory (apt-get install docker.io makes it)")
	}
	layer := busyboxLayer(t)
	e := newRuntimeEnv(t, false)
	d := &dockerEnv{e: e, dir: filepath.Join(e.dir, "docker"), t: t}
	d.host = "unix://" + filepath.Join(d.dir, "docker.sock")
	d.log = filepath.Join(d.dir, "dockerd.log")
	for _, sub := range []string{"", "etc", "client"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string][]byte{"bb.tar": layer, "daemon.json": []byte("{}\n")} {
		if err := os.WriteFile(filepath.Join(d.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What dockerd and its containerd would write outside the directories
	// they are given is hidden in the namespace: /etc/docker (20.10 keeps
	// its identity in /etc/docker/key.json and has no flag to move it)
	// behind the test's directory, /opt (containerd's opt plugin makes
	// /opt/containerd) behind a tmpfs. Without /etc/docker to mount over,
	// dockerd would make it in the machine's /etc.
	if out, err := e.run(nil, "sh", "-c", "set -e; mount --bind "+filepath.Join(d.dir, "etc")+" /etc/docker; mount -t tmpfs tmpfs /opt"); err != nil {
		t.Fatalf("mounts for dockerd: %v\n%s", err, out)
	}
	// Runs last: the log of a failed test, dockerd's shutdown included.
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(d.log + ".*")
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("dockerd log %s:\n%s", filepath.Base(l), b)
			}
		}
	})
	d.startDaemon()

	// Runs before dockerd is stopped (cleanups run last-registered
	// first): containers go with their namespaces, and the network
	// driver — the pontoon daemon, stopped later — is told so. A shim
	// left behind is ended by the namespace's cleanup.
	t.Cleanup(func() {
		ids, err := d.try("ps", "-aq")
		if err != nil || strings.TrimSpace(ids) == "" {
			return
		}
		if out, err := d.try(append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
			t.Logf("docker rm -f: %v\n%s", err, out)
		}
	})
	d.run("import", "--change", `CMD ["/bin/sh"]`, filepath.Join(d.dir, "bb.tar"), dockerImage)
	return d
}

// try runs the docker client against the test's dockerd, in its mount
// and network namespaces, and returns the combined output, trimmed.
func (d *dockerEnv) try(args ...string) (string, error) {
	out, err := d.e.run([]string{"DOCKER_CONFIG=" + filepath.Join(d.dir, "client")},
		append([]string{dockerCLI, "-H", d.host}, args...)...)
	return strings.TrimSpace(out), err
}

// run is try that fails the test on an error.
func (d *dockerEnv) run(args ...string) string {
	d.e.t.Helper()
	out, err := d.try(args...)
	if err != nil {
		d.e.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// A dockerd of the test's own runs containers from the imported busybox
// image; a container's SandboxKey is a network namespace the pontoon
// daemon's mount namespace sees (what the remote driver is handed at
// Join), and dockerd looks for remote drivers in that namespace's
// /run/docker/plugins.
func TestDockerRuns(t *testing.T) {
	d := newDocker(t)
	t.Logf("dockerd %s answered after %v", d.run("version", "--format", "{{.Server.Version}}"), d.startup.Round(time.Millisecond))

	if out := d.run("run", "--rm", "--network", "none", dockerImage, "echo", "hello"); out != "hello" {
		t.Fatalf("docker run echo hello printed %q", out)
	}

	d.run("run", "-d", "--network", "none", "--name", "c1", dockerImage, "sleep", "30")
	var info []struct {
		State           struct{ Pid int }
		NetworkSettings struct{ SandboxKey string }
	}
	if err := json.Unmarshal([]byte(d.run("inspect", "c1")), &info); err != nil || len(info) != 1 {
		t.Fatalf("docker inspect c1: %v", err)
	}
	key, pid := info[0].NetworkSettings.SandboxKey, info[0].State.Pid
	if key == "" || pid == 0 {
		t.Fatalf("c1 has no sandbox key or no process: %+v", info[0])
	}
	// The key, seen from the pontoon daemon's mount namespace, is the
	// container's network namespace: same inode as its process's.
	out, err := d.e.run(nil, "stat", "-L", "-c", "%i", key, fmt.Sprintf("/proc/%d/ns/net", pid))
	if f := strings.Fields(out); err != nil || len(f) != 2 || f[0] != f[1] {
		t.Fatalf("c1's sandbox key %s is not its process's network namespace in the daemon's mount namespace: %v\n%s", key, err, out)
	}
	if out, err := d.e.run(nil, "nsenter", "--net="+key, "--", "ip", "-o", "link"); err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, ": lo:") {
		t.Fatalf("in c1's namespace %s, want lo alone (--network none): %v\n%s", key, err, out)
	}
	t.Logf("c1's sandbox key: %s", key)

	// Plugin discovery: a driver named x that answers 404 to everything,
	// listening in the namespace's /run/docker/plugins.
	reqs := fakePlugin(t, d.e, "x")
	if out, err := d.try("network", "create", "-d", "x", "n"); err == nil {
		t.Fatalf("docker network create -d x succeeded with a driver that answers 404:\n%s", out)
	} else {
		t.Logf("docker network create -d x: %s", out)
	}
	if got := reqs(); !slices.Contains(got, "POST /Plugin.Activate") {
		t.Fatalf("dockerd did not ask /run/docker/plugins/x.sock to activate; requests: %q", got)
	}

}

// BenchmarkDockerRun measures what the test harness costs: dockerd's
// start (exec until `docker version` answers), and `docker run --rm
// --network none bb true`, exec of the client to its exit, the median of
// -docker-runs runs after one warm-up — the baseline a pontoon network's
// share is measured against:
//
//	go test ./test/e2e -run XXX -bench DockerRun -benchtime 1x
func BenchmarkDockerRun(b *testing.B) {
	d := newDocker(b)
	for b.Loop() {
		d.run("run", "--rm", "--network", "none", dockerImage, "true")
		settle(b)
		var times []time.Duration
		for range *dockerRuns {
			start := time.Now()
			d.run("run", "--rm", "--network", "none", dockerImage, "true")
			times = append(times, time.Since(start))
		}
		fmt.Printf("\ndockerd start-up %.1f ms; docker run --rm --network none bb true, %d runs (ms): p10 %.1f median %.1f p90 %.1f\n",
			float64(d.startup.Microseconds())/1000, *dockerRuns, quantile(times, 10), quantile(times, 50), quantile(times, 90))
		b.ReportMetric(float64(d.startup.Microseconds())/1000, "dockerd-start-ms")
		b.ReportMetric(quantile(times, 50), "run-none-median-ms")
	}
}

var dockerRuns = flag.Int("docker-runs", 5, "BenchmarkDockerRun: measured runs")

// fakePlugin serves a Docker plugin named name on
// /run/docker/plugins/NAME.sock of the env's mount namespace, answering
// every request with 404; it returns the requests seen so far.
func fakePlugin(t testing.TB, e *rtEnv, name string) func() []string {
	t.Helper()
	// The keeper's root is the namespace's: a socket bound there is
	// dockerd's /run/docker/plugins/NAME.sock.
	dir := filepath.Join(strings.TrimSuffix(e.mnt, "ns/mnt"), "root", "run", "docker", "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		http.NotFound(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// startDaemon starts dockerd with the test's flags and waits until it
// answers; stopDaemon stops it (SIGTERM: it stops its containers first,
// telling their network drivers). The environment's cleanup stops a
// daemon still running at the end.
func (d *dockerEnv) startDaemon() {
	t, e := d.t, d.e
	t.Helper()
	start := time.Now()
	cmd := e.start(d.log+fmt.Sprintf(".%d", d.starts), "dockerd",
		"--data-root", filepath.Join(d.dir, "root"),
		// In the namespace's /run: short paths for the unix sockets
		// dockerd and containerd make under it (108 bytes at most), gone
		// with the namespace.
		"--exec-root", "/run/pontoon-dockerd",
		"--pidfile", filepath.Join(d.dir, "docker.pid"),
		"-H", d.host,
		"--config-file", filepath.Join(d.dir, "daemon.json"),
		"--storage-driver", "vfs",
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--cgroup-parent", "/"+e.cgroup,
		"--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
		"--bridge=none", "--userland-proxy=false",
		// Lowering it needs CAP_SYS_RESOURCE, which root lacks in some
		// containers (this machine's); nothing here needs it.
		"--oom-score-adjust=0",
		// Containers here ignore SIGTERM (a shell or httpd as PID 1): stop
		// them after 1 s, not 15, when dockerd shuts down.
		"--shutdown-timeout", "1",
		"--log-level", "debug")
	d.pid = cmd.Process.Pid // nsenter execs dockerd: the same process
	exited := false
	if out, ok := within(60*time.Second, func() (string, bool) {
		out, err := d.try("version", "--format", "{{.Server.Version}}")
		// Signal 0: is it still there (or was it reaped, having failed)?
		exited = err != nil && syscall.Kill(d.pid, 0) != nil
		return out, err == nil || exited
	}); exited {
		t.Fatalf("dockerd exited during start-up: %s", out)
	} else if !ok {
		t.Fatalf("dockerd did not answer within 60s: %s", out)
	}
	d.startup = time.Since(start)
	d.starts++
	d.cmd = cmd
}

func (d *dockerEnv) stopDaemon() {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if _, ok := within(60*time.Second, func() (string, bool) { return "", syscall.Kill(d.pid, 0) != nil }); !ok {
		d.t.Fatalf("dockerd did not stop within 60 s")
	}
}

// pontoonArgs are the pontoon daemon's flags for serving Docker's driver
// to this dockerd: the plugin socket where dockerd looks, and the API
// socket pontoon asks for the containers' IDs and names.
func (d *dockerEnv) pontoonArgs() []string {
	return []string{"--docker-plugin", "/run/docker/plugins/pontoon.sock", "--docker-api", strings.TrimPrefix(d.host, "unix://")}
}
