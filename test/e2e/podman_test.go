package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
)

// podman drives Debian 12's Podman (4.3) on its CNI backend, configured
// the way docs/runtimes.md says, but with every directory the test's own:
// CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF
// name files in the test's directory, storage is vfs under it, and the
// conflists and plugins are found in the test's directories.
type podman struct {
	e      *rtEnv
	env    []string
	global []string
}

// runArgs are what every `podman run` here needs: ulimits that root here
// may set (Podman raises nofile and nproc beyond them, and root lacks
// CAP_SYS_RESOURCE in this machine's container) and the test's own
// cgroup.
func (p *podman) runArgs() []string {
	return []string{"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768", "--cgroup-parent", "/" + p.e.cgroup}
}

func newPodman(t testing.TB) *podman {
	t.Helper()
	requireTools(t, "podman runc", "podman", "runc", "conmon")
	layer := busyboxLayer(t)
	e := newRuntimeEnv(t, false)
	d := e.dir
	files := map[string]string{
		"containers.conf": `[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "runc"
tmp_dir = "` + filepath.Join(d, "tmp") + `"

[network]
network_backend = "cni"
cni_plugin_dirs = ["` + e.pluginDir + `", "/usr/lib/cni"]
network_config_dir = "` + e.confDir + `"
`,
		"storage.conf": `[storage]
driver = "vfs"
graphroot = "` + filepath.Join(d, "storage") + `"
runroot = "` + filepath.Join(d, "run") + `"
`,
		"registries.conf": "",
		"bb.tar":          string(layer),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &podman{e: e,
		env: []string{"CONTAINERS_CONF=" + filepath.Join(d, "containers.conf"), "CONTAINERS_STORAGE_CONF=" + filepath.Join(d, "storage.conf"),
			"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(d, "registries.conf")},
		global: []string{"--root", filepath.Join(d, "storage"), "--runroot", filepath.Join(d, "run"), "--tmpdir", filepath.Join(d, "tmp"),
			"--runtime", "runc", "--cgroup-manager", "cgroupfs", "--network-config-dir", e.confDir},
	}
	// Runs before the daemon stops (cleanups run last-registered first):
	// the containers' DELs reach it.
	t.Cleanup(func() {
		if out, err := p.try("rm", "--all", "--force", "--time", "0"); err != nil {
			t.Logf("podman rm --all: %v\n%s", err, out)
		}
	})
	p.must("import", filepath.Join(d, "bb.tar"), "localhost/bb")
	return p
}

func (p *podman) try(args ...string) (string, error) {
	return p.e.run(p.env, append(append([]string{"podman"}, p.global...), args...)...)
}

func (p *podman) must(args ...string) string {
	p.e.t.Helper()
	out, err := p.try(args...)
	if err != nil {
		p.e.t.Fatalf("podman %s: %v\n%s\ndaemon log:\n%s", strings.Join(args, " "), err, out, p.e.h.Log())
	}
	return strings.TrimSpace(out)
}

// runD starts a detached container with the ulimits this machine needs.
func (p *podman) runD(name string, args ...string) string {
	p.e.t.Helper()
	return p.must(append(append([]string{"run", "-d", "--name", name}, p.runArgs()...), args...)...)
}

// cniSandbox returns the pontoon sandbox of the CNI container whose
// runtime name (CNI_ARGS K8S_POD_NAME) is name, or nil.
func cniSandbox(t *testing.T, h *Host, name string) *model.SandboxInfo {
	t.Helper()
	var sbs []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("sandbox", "ls", "--format", "json")), &sbs); err != nil {
		t.Fatal(err)
	}
	for _, sb := range sbs {
		if sb.Labels["cni.pod_name"] == name {
			return sb
		}
	}
	return nil
}

// Podman on its CNI backend with a pontoon network: containers find each
// other by name and alias, --ip and --mac-address are honoured, -p is
// reached from the LAN, network connect and disconnect add and remove an
// interface, and rm frees the address — with the daemon restarted in
// between.
func TestPodmanCNI(t *testing.T) {
	p := newPodman(t)
	h := p.e.h
	h.P("network", "create", "pnet", "--subnet", "10.91.0.0/24")
	p.e.conflist("pnet.conflist", "pnet")
	if out := p.must("network", "ls", "--format", "{{.Name}} {{.Driver}}"); !strings.Contains(out, "pnet pontoon") {
		t.Fatalf("podman network ls does not show the conflist:\n%s", out)
	}

	web := "echo web1 > /www/index.html && exec httpd -f -p 80 -h /www"
	p.runD("web1", "--network", "pnet", "--ip", "10.91.0.6", "--mac-address", "02:00:00:00:00:05", "--network-alias", "www",
		"-p", "8080:80", "localhost/bb", "sh", "-c", web)
	p.runD("web2", "--network", "pnet", "localhost/bb", "sleep", "600")

	// --ip and --mac-address, inside the container and in pontoon.
	if out := p.must("exec", "web1", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, "10.91.0.6/24") {
		t.Fatalf("web1's eth0 has not the --ip address:\n%s", out)
	}
	if out := p.must("exec", "web1", "cat", "/sys/class/net/eth0/address"); out != "02:00:00:00:00:05" {
		t.Fatalf("web1's MAC %q, want --mac-address 02:00:00:00:00:05", out)
	}
	sb := cniSandbox(t, h, "web1")
	if sb == nil || len(sb.Endpoints) != 1 {
		t.Fatalf("no pontoon sandbox labelled cni.pod_name=web1:\n%s", h.P("sandbox", "ls"))
	}
	ep := sb.Endpoints[0]
	if ep.FirstIP().String() != "10.91.0.6" || ep.MAC != "02:00:00:00:00:05" || len(ep.Aliases) == 0 || ep.Aliases[0] != "web1" || !slices.Contains(ep.Aliases, "www") {
		t.Fatalf("web1's endpoint: ip %s mac %s aliases %q; want 10.91.0.6, 02:00:00:00:00:05, the name first and www", ep.IPString(), ep.MAC, ep.Aliases)
	}

	// By name, by alias and by name under the network, through the
	// resolver Podman wrote into resolv.conf from the CNI result.
	// Then the host's name servers: the test's mount namespace gives
	// the outside world's, never the machine's.
	if out := p.must("exec", "web2", "cat", "/etc/resolv.conf"); !strings.HasPrefix(out, "search pnet\nnameserver 10.91.0.1\n") ||
		!strings.HasSuffix(out, "nameserver "+RouterIP) {
		t.Fatalf("web2's resolv.conf has not pontoon's resolver first and the outside world's after it:\n%s", out)
	}
	byName := func(from string, names ...string) {
		t.Helper()
		for _, n := range names {
			if out := p.must("exec", from, "ping", "-c1", "-W2", n); !strings.Contains(out, "10.91.0.6") {
				t.Fatalf("ping %s from %s did not reach 10.91.0.6:\n%s", n, from, out)
			}
		}
	}
	byName("web2", "web1", "www", "web1.pnet")
	if out := p.must("exec", "web2", "wget", "-qO-", "http://web1/"); out != "web1" {
		t.Fatalf("web2 → http://web1/: %q", out)
	}
	// -p 8080:80 from the LAN (the outside world's namespace).
	fromLAN := func() {
		t.Helper()
		var body string
		var err error
		if _, ok := within(10*time.Second, func() (string, bool) {
			body, err = httpGetFrom(t, h.Outside, HostUplinkIP+":8080")
			return body, err == nil && body == "web1"
		}); !ok {
			t.Fatalf("LAN → %s:8080 (-p 8080:80) → web1: %q, %v\n%s", HostUplinkIP, body, err, h.P("port", "ls"))
		}
	}
	fromLAN()

	// A conflist in an older CNI version (Podman writes its own in 0.4.0)
	// works too: the plugin answers in that version (the unit tests check
	// the answer's version).
	p.e.conflistFor("pold.conflist", "pold", "pnet", "0.4.0")
	if out := p.must(append(append([]string{"run", "--rm"}, p.runArgs()...), "--network", "pold", "localhost/bb", "ping", "-c1", "-W2", "10.91.0.6")...); !strings.Contains(out, "1 packets received") {
		t.Fatalf("a container on a 0.4.0 conflist did not reach web1:\n%s", out)
	}

	// Bad input: a clear error, nothing made.
	before := h.P("sandbox", "ls", "-q")
	out, err := p.try(append(append([]string{"run", "--rm", "--name", "bad"}, p.runArgs()...), "--network", "pnet", "--ip", "10.92.0.6", "localhost/bb", "true")...)
	if err == nil || !strings.Contains(out, "10.92.0.6") || !strings.Contains(out, "pnet") {
		t.Fatalf("--ip outside the network: %v, want pontoon's error about the address\n%s", err, out)
	}
	t.Logf("podman run --ip 10.92.0.6 on pnet (10.91.0.0/24) fails as it should:\n%s", out)
	if after := h.P("sandbox", "ls", "-q"); after != before {
		t.Fatalf("a refused ADD left a sandbox:\n%s\nbefore:\n%s", after, before)
	}

	// The daemon restarts: the attachments, names and ports stay.
	h.Stop()
	h.Start()
	byName("web2", "web1", "www")
	fromLAN()

	// network connect / disconnect: a second interface on a second
	// network, and back.
	h.P("network", "create", "pnet2", "--subnet", "10.91.1.0/24")
	p.e.conflist("pnet2.conflist", "pnet2")
	p.runD("db", "--network", "pnet2", "localhost/bb", "sleep", "600")
	dbIP := cniSandbox(t, h, "db").Endpoints[0].FirstIP().String()
	p.must("network", "connect", "pnet2", "web2")
	if sb := cniSandbox(t, h, "web2"); len(sb.Endpoints) != 2 {
		t.Fatalf("after network connect, web2 has %d endpoints in pontoon, want 2", len(sb.Endpoints))
	}
	if out := p.must("exec", "web2", "ip", "-o", "-4", "addr", "show", "eth1"); !strings.Contains(out, "10.91.1.") {
		t.Fatalf("web2 has no address on pnet2 after network connect:\n%s", out)
	}
	p.must("exec", "web2", "ping", "-c1", "-W2", dbIP)
	p.must("network", "disconnect", "pnet2", "web2")
	if sb := cniSandbox(t, h, "web2"); len(sb.Endpoints) != 1 || sb.Endpoints[0].Network != "pnet" {
		t.Fatalf("after network disconnect, web2's endpoints: %+v", sb.Endpoints)
	}
	if out, ok := within(5*time.Second, func() (string, bool) {
		out, _ := p.try("exec", "web2", "ip", "-o", "link")
		return out, !strings.Contains(out, "eth1")
	}); !ok {
		t.Fatalf("eth1 left in web2 after network disconnect:\n%s", out)
	}
	if out, err := p.try("exec", "web2", "ping", "-c1", "-W1", dbIP); err == nil {
		t.Fatalf("web2 still reaches db after network disconnect:\n%s", out)
	}

	// rm frees the address and the names: another container gets
	// 10.91.0.6, and web1 resolves no more.
	hostIf := cniSandbox(t, h, "web1").Endpoints[0].HostIf
	p.must("rm", "--force", "--time", "0", "web1")
	if sb := cniSandbox(t, h, "web1"); sb != nil {
		t.Fatalf("podman rm left web1's sandbox %s", sb.Name)
	}
	if _, ok := within(5*time.Second, func() (string, bool) { return "", len(h.HostLinks(hostIf)) == 0 }); !ok {
		t.Fatalf("podman rm left web1's host veth %s", hostIf)
	}
	p.runD("web3", "--network", "pnet", "--ip", "10.91.0.6", "localhost/bb", "sleep", "600")
	// From a new container: web2's neighbour entry for 10.91.0.6 may
	// still hold web1's MAC (web3 has another) until it expires; pontoon
	// sends no gratuitous ARP (docs/runtimes.md, limits).
	p.runD("web4", "--network", "pnet", "localhost/bb", "sleep", "600")
	byName("web4", "web3")
	if out, err := p.try("exec", "web2", "ping", "-c1", "-W1", "web1"); err == nil {
		t.Fatalf("web1 still resolves after podman rm:\n%s", out)
	}

	p.must("rm", "--all", "--force", "--time", "0")
	if out := h.P("sandbox", "ls", "-q"); out != "" {
		t.Fatalf("sandboxes left after podman rm --all:\n%s", out)
	}
}
