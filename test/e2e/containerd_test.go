package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
)

// ctrd is a containerd of the test's own (its root, state, sockets and
// config in the test's directory), driven with ctr. ctr reads CNI configs
// only from /etc/cni/net.d and execs plugins from /opt/cni/bin (Debian's
// also from /usr/lib/cni): the test's mount namespace has its own
// directories there.
type ctrd struct {
	e       *rtEnv
	address string
}

func newContainerd(t *testing.T) *ctrd {
	t.Helper()
	requireTools(t, "containerd runc", "containerd", "ctr", "containerd-shim-runc-v2", "runc")
	image := ociArchive(t, busyboxLayer(t), "pontoon.test/bb:latest")
	e := newRuntimeEnv(t, true)
	d := filepath.Join(e.dir, "containerd")
	c := &ctrd{e: e, address: filepath.Join(d, "containerd.sock")}
	// The CRI plugin is off: it is Kubernetes' (and would want its own
	// CNI set-up); ctr uses containerd's own API.
	config := `version = 2
root = "` + filepath.Join(d, "root") + `"
state = "` + filepath.Join(d, "state") + `"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "` + c.address + `"

[ttrpc]
  address = "` + filepath.Join(d, "containerd-ttrpc.sock") + `"

[plugins."io.containerd.internal.v1.opt"]
  path = "` + filepath.Join(d, "opt") + `"
`
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"config.toml": []byte(config), "bb.tar": image} {
		if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.start(filepath.Join(d, "containerd.log"), "containerd", "--config", filepath.Join(d, "config.toml"))
	if out, ok := within(30*time.Second, func() (string, bool) {
		out, err := c.try("version")
		return out, err == nil
	}); !ok {
		log, _ := os.ReadFile(filepath.Join(d, "containerd.log"))
		t.Fatalf("containerd did not answer: %s\n%s", out, log)
	}
	// Runs before containerd and the daemon stop: the tasks go, each
	// with its namespace.
	t.Cleanup(func() {
		out, _ := c.try("containers", "ls", "-q")
		for _, id := range strings.Fields(out) {
			_, _ = c.try("tasks", "kill", "-s", "KILL", id)
			_, _ = c.try("tasks", "delete", "--force", id)
			_, _ = c.try("containers", "delete", id)
		}
	})
	c.must("images", "import", "--snapshotter", "native", filepath.Join(d, "bb.tar"))
	return c
}

func (c *ctrd) try(args ...string) (string, error) {
	// The containerd namespace is the test's cgroup name: ctr puts a
	// task's cgroup at /NAMESPACE/ID.
	return c.e.run(nil, append([]string{"ctr", "--address", c.address, "--namespace", c.e.cgroup}, args...)...)
}

func (c *ctrd) must(args ...string) string {
	c.e.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.e.t.Fatalf("ctr %s: %v\n%s\ndaemon log:\n%s", strings.Join(args, " "), err, out, c.e.h.Log())
	}
	return strings.TrimSpace(out)
}

// deleteTask deletes a task that was sent SIGKILL, once it stopped.
func (c *ctrd) deleteTask(id string) {
	c.e.t.Helper()
	if out, ok := within(10*time.Second, func() (string, bool) {
		out, err := c.try("tasks", "delete", id)
		return out, err == nil
	}); !ok {
		c.e.t.Fatalf("ctr tasks delete %s: %s", id, out)
	}
}

// sandboxByContainer returns the sandbox of a CNI container ID, or nil.
func sandboxByContainer(t *testing.T, h *Host, id string) *model.SandboxInfo {
	t.Helper()
	var sbs []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("sandbox", "ls", "--format", "json")), &sbs); err != nil {
		t.Fatal(err)
	}
	for _, sb := range sbs {
		if sb.ContainerID == id {
			return sb
		}
	}
	return nil
}

// containerd's ctr with `run --cni`: two containers reach each other, a
// foreground `run --rm` cleans up after itself, and a detached container
// that is killed and removed — ctr sends no DEL for it — is released by
// the daemon once its namespace is gone, freeing its address.
func TestContainerdCtrCNI(t *testing.T) {
	c := newContainerd(t)
	h := c.e.h
	h.P("network", "create", "cnet", "--subnet", "10.91.3.0/24")
	// ctr takes the first conflist in /etc/cni/net.d.
	c.e.conflist("10-cnet.conflist", "cnet")

	// IDs that share their first 12 characters and more: ctr's CNI
	// container ID is NAMESPACE-NAME.
	c.must("run", "-d", "--cni", "--snapshotter", "native", "pontoon.test/bb:latest", "web-1", "sleep", "600")
	c.must("run", "-d", "--cni", "--snapshotter", "native", "pontoon.test/bb:latest", "web-2", "sleep", "600")
	id1, id2 := c.e.cgroup+"-web-1", c.e.cgroup+"-web-2"
	sb1, sb2 := sandboxByContainer(t, h, id1), sandboxByContainer(t, h, id2)
	if sb1 == nil || sb2 == nil || len(sb1.Endpoints) != 1 || len(sb2.Endpoints) != 1 {
		t.Fatalf("no sandboxes for %s and %s:\n%s", id1, id2, h.P("sandbox", "ls", "--no-trunc"))
	}
	if !strings.HasPrefix(sb1.Netns, "/proc/") {
		t.Fatalf("ctr's netns is %s, want the task's /proc/PID/ns/net", sb1.Netns)
	}
	ls := h.P("sandbox", "ls")
	if !strings.Contains(ls, " "+id1+" ") || !strings.Contains(ls, " "+id2+" ") {
		t.Fatalf("sandbox ls does not tell the two containers apart:\n%s", ls)
	}
	t.Logf("sandbox ls:\n%s", ls)
	ip1, ip2 := sb1.Endpoints[0].FirstIP().String(), sb2.Endpoints[0].FirstIP().String()
	c.must("tasks", "exec", "--exec-id", "ping1", "web-1", "ping", "-c1", "-W2", ip2)
	c.must("tasks", "exec", "--exec-id", "ping2", "web-2", "ping", "-c1", "-W2", ip1)

	// A foreground run --rm: ctr's own DEL when the task ends.
	out := c.must("run", "--rm", "--cni", "--snapshotter", "native", "pontoon.test/bb:latest", "once", "ping", "-c1", "-W2", ip1)
	if !strings.Contains(out, "1 packets received") {
		t.Fatalf("the --rm container did not reach web-1:\n%s", out)
	}
	if sb := sandboxByContainer(t, h, c.e.cgroup+"-once"); sb != nil {
		t.Fatalf("ctr run --rm left its sandbox %s", sb.Name)
	}

	// Killed and removed without a DEL: the daemon releases the sandbox
	// when the namespace dies (self-healing), and the address is free.
	c.must("tasks", "kill", "-s", "KILL", "web-1")
	c.deleteTask("web-1")
	c.must("containers", "delete", "web-1")
	if out, ok := within(10*time.Second, func() (string, bool) {
		return h.P("sandbox", "ls", "--no-trunc"), sandboxByContainer(t, h, id1) == nil
	}); !ok {
		t.Fatalf("web-1 was killed and removed, but its sandbox stays:\n%s\n%s", out, h.Log())
	}
	if !strings.Contains(h.Log(), "released sandbox: its namespace is gone\" sandbox="+sb1.Name) {
		t.Fatalf("web-1's sandbox went, but not by the self-healing release:\n%s", h.Log())
	}
	h.P("sandbox", "create", "reuse", "--network", "cnet", "--ip", ip1)
	c.must("tasks", "exec", "--exec-id", "ping3", "web-2", "ping", "-c1", "-W2", ip1)
	h.P("sandbox", "rm", "reuse")

	// The same while the daemon is down: it finds out when it starts.
	h.Stop()
	c.must("tasks", "kill", "-s", "KILL", "web-2")
	c.deleteTask("web-2")
	c.must("containers", "delete", "web-2")
	h.Start()
	if out, ok := within(10*time.Second, func() (string, bool) {
		out := h.P("sandbox", "ls", "-q")
		return out, out == ""
	}); !ok {
		t.Fatalf("web-2 was killed and removed while the daemon was down; after its restart, sandboxes are left:\n%s", out)
	}
}
