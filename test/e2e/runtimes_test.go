package e2e

// What the tests of real container runtimes (Podman, containerd) share: a
// private mount namespace, an image built from Debian's busybox-static,
// and a CNI plugin directory holding pontoon-cni as "pontoon".
//
// The runtimes write where they always write: Podman pins container
// namespaces under /run/netns and keeps locks in /dev/shm, libcni caches
// results under /var/lib/cni, ctr reads /etc/cni/net.d and execs plugins
// from /opt/cni/bin. So each test runs the runtime, the processes it
// starts and the pontoon daemon in a mount namespace of their own, with
// empty tmpfs over /run, /var/lib and /dev/shm, the test's own
// directories over the CNI paths and its own /etc/resolv.conf (the
// outside world's resolver): nothing of the machine's is read or changed
// there, and the daemon sees the runtime's namespace pins. The
// network side is the harness's: everything runs in the throwaway host
// namespace.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"pontoon/internal/testutil"
)

// rtEnv is one runtime test's world: the mount namespace, the daemon's
// host and the CNI directories.
type rtEnv struct {
	t   testing.TB
	h   *Host
	dir string
	// mnt is the mount namespace (/proc/PID/ns/mnt of a process that
	// keeps it).
	mnt string
	// cgroup names the cgroup under which the runtime puts its
	// containers (Podman's --cgroup-parent, ctr's namespace): removed
	// when the test ends.
	cgroup string
	// confDir holds the conflists; pluginDir holds "pontoon".
	confDir, pluginDir string
}

// newRuntimeEnv makes the mount namespace, then the host with the daemon
// running in it. With defaultPaths, the test's conflist and plugin
// directories are also mounted over CNI's default ones, /etc/cni/net.d and
// /opt/cni/bin, for a runtime that cannot be pointed elsewhere (ctr).
func newRuntimeEnv(t testing.TB, defaultPaths bool) *rtEnv {
	t.Helper()
	testutil.RequireRoot(t)
	if defaultPaths {
		// Mounted over, never written: /etc/cni/net.d comes with Podman's
		// package, /opt with Debian's base system.
		for _, d := range []string{"/etc/cni/net.d", "/opt"} {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				t.Skipf("%s does not exist, so the test cannot hide it behind its own directory (apt-get install podman makes /etc/cni/net.d)", d)
			}
		}
	}
	e := &rtEnv{t: t, dir: t.TempDir()}
	e.confDir, e.pluginDir = filepath.Join(e.dir, "net.d"), filepath.Join(e.dir, "plugins")
	for _, d := range []string{e.confDir, e.pluginDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(binDir, "pontoon-cni"), filepath.Join(e.pluginDir, "pontoon")); err != nil {
		t.Fatal(err)
	}
	e.cgroup = fmt.Sprintf("pontoon-e2e-%d", time.Now().UnixNano()%1e9)
	// Runs after the keeper's cleanup: every process is gone by then.
	t.Cleanup(func() { removeCgroups(t, e.cgroup) })
	// The keeper: a process that holds the namespace until the test ends
	// (its cleanup runs last: everything in the namespace is stopped by
	// then).
	keeper := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "echo ready; exec sleep 3600")
	out, err := keeper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := keeper.Start(); err != nil {
		t.Fatalf("unshare --mount: %v", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = keeper.Process.Kill()
		_ = keeper.Wait()
		t.Fatalf("the mount namespace's keeper did not start: %q %v", line, err)
	}
	e.mnt = fmt.Sprintf("/proc/%d/ns/mnt", keeper.Process.Pid)
	ns, err := os.Readlink(e.mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// What the runtimes left running in the namespace (Podman's
		// "container cleanup" after rm, a shim) is the test's: wait
		// for it, then end it, before the directories go.
		if _, ok := within(10*time.Second, func() (string, bool) { return "", len(inMountNS(ns, keeper.Process.Pid)) == 0 }); !ok {
			for _, pid := range inMountNS(ns, keeper.Process.Pid) {
				t.Logf("ending process %d, left in the runtime's mount namespace", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = keeper.Process.Kill()
		_ = keeper.Wait()
	})
	// The runtimes copy the host's name servers into containers (Podman
	// after the network's resolver): they get the outside world's.
	resolv := filepath.Join(e.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+RouterIP+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := []string{"set -e", "mount -t tmpfs tmpfs /run", "mkdir /run/netns", "mount -t tmpfs tmpfs /var/lib",
		"mount -t tmpfs tmpfs /dev/shm", "mount --bind " + resolv + " /etc/resolv.conf"}
	if defaultPaths {
		script = append(script, "mount --bind "+e.confDir+" /etc/cni/net.d", "mount -t tmpfs tmpfs /opt", "mkdir /opt/cni",
			"ln -s "+e.pluginDir+" /opt/cni/bin")
	}
	if out, err := exec.Command("nsenter", "--mount="+e.mnt, "--", "sh", "-c", strings.Join(script, "\n")).CombinedOutput(); err != nil {
		t.Fatalf("mounts in the runtime's mount namespace: %v\n%s", err, out)
	}
	e.h = newHostIn(t, e.mnt)
	return e
}

// removeCgroups removes the cgroup name, with what is below it, from
// every hierarchy it was made in.
func removeCgroups(t testing.TB, name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if fi, err := os.Stat("/sys/fs/cgroup/" + name); err == nil && fi.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+name)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- { // deepest first
			if err := syscall.Rmdir(dirs[i]); err != nil {
				t.Logf("remove cgroup %s: %v", dirs[i], err)
			}
		}
	}
}

// inMountNS lists the processes in the mount namespace ns ("mnt:[…]"),
// but the keeper's.
func inMountNS(ns string, keeper int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == keeper {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", d.Name(), "ns/mnt")); err == nil && l == ns {
			out = append(out, pid)
		}
	}
	return out
}

// run runs argv in the mount namespace and the host namespace, with env
// added to ours, and returns its combined output.
func (e *rtEnv) run(env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--mount=" + e.mnt, "--net=" + e.h.NS, "--"}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// start starts a long-running program (a runtime's daemon) like run, with
// its output in log; it is stopped with SIGTERM when the test ends.
func (e *rtEnv) start(log string, argv ...string) *exec.Cmd {
	e.t.Helper()
	f, err := os.Create(log)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command("nsenter", append([]string{"--mount=" + e.mnt, "--net=" + e.h.NS, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", argv[0], err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

// conflist writes the CNI config of a pontoon network as the docs give it:
// cniVersion 1.0.0 (Debian 12's runtimes cannot read 1.1.0 results), the
// capabilities Podman and containerd use, the test daemon's socket.
func (e *rtEnv) conflist(file, name string) { e.conflistFor(file, name, name, "1.0.0") }

// conflistFor writes a conflist named name for the pontoon network
// network, in CNI version version.
func (e *rtEnv) conflistFor(file, name, network, version string) {
	e.t.Helper()
	data, _ := json.MarshalIndent(map[string]any{"cniVersion": version, "name": name, "plugins": []any{map[string]any{
		"type": "pontoon", "network": network, "socket": e.h.Socket,
		"capabilities": map[string]bool{"ips": true, "mac": true, "portMappings": true, "aliases": true},
	}}}, "", "  ")
	if err := os.WriteFile(filepath.Join(e.confDir, file), data, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// requireTools skips the test when a program it drives is not installed.
func requireTools(t testing.TB, pkgs string, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed: apt-get install %s (scripts/deps.sh does)", p, pkgs)
		}
	}
}

// busyboxApplets are the commands the test images offer.
var busyboxApplets = []string{"sh", "ping", "ip", "nslookup", "sleep", "cat", "echo", "mkdir", "httpd", "wget", "true", "hostname"}

// busyboxLayer returns an image layer (an uncompressed tar) holding
// Debian's static busybox as /bin/busybox with its applets as links, and
// the directories a runtime mounts over. Skips the test when /bin/busybox
// is not static (the busybox package rather than busybox-static).
func busyboxLayer(t testing.TB) []byte {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("no /bin/busybox: apt-get install busybox-static (scripts/deps.sh does): %v", err)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("/bin/busybox: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Skip("/bin/busybox is linked dynamically, so it cannot be an image alone: apt-get install busybox-static (scripts/deps.sh does)")
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mod := time.Unix(1700000000, 0)
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/", "www/"} {
		_ = tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mod})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: mod})
	_, _ = tw.Write(bin)
	for _, a := range busyboxApplets {
		_ = tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: mod})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ociArchive wraps a layer into an OCI image layout archive, which
// `ctr images import` reads, with the image name in the index.
func ociArchive(t testing.TB, layer []byte, name string) []byte {
	t.Helper()
	blobs := map[string][]byte{}
	blob := func(b []byte) map[string]any {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return map[string]any{"digest": d, "size": len(b)}
	}
	platform := map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	layerDesc := blob(layer)
	layerDesc["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
	config, _ := json.Marshal(map[string]any{"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/bin/sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []any{layerDesc["digest"]}}})
	configDesc := blob(config)
	configDesc["mediaType"] = "application/vnd.oci.image.config.v1+json"
	manifest, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": configDesc, "layers": []any{layerDesc}})
	manifestDesc := blob(manifest)
	manifestDesc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
	manifestDesc["platform"] = platform
	manifestDesc["annotations"] = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{manifestDesc}})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(path string, b []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: path, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(1700000000, 0)})
		_, _ = tw.Write(b)
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	file("index.json", index)
	for d, b := range blobs {
		file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// httpGetFrom sends a GET to addr from inside the namespace at ns and
// returns the body.
func httpGetFrom(t testing.TB, ns, addr string) (string, error) {
	t.Helper()
	var body string
	err := testutil.InNetns(t, ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		resp, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		_, b, ok := strings.Cut(string(resp), "\r\n\r\n")
		if !ok {
			return fmt.Errorf("not an HTTP answer: %q", resp)
		}
		body = strings.TrimSpace(b)
		return nil
	})
	return body, err
}
