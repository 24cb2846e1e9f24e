package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

const debianCNIDir = "/usr/lib/cni"

// cniEnv is a runtime's view: a plugin directory holding pontoon-cni as
// "pontoon" next to Debian's reference plugins, and libcni.
type cniEnv struct {
	h     *Host
	cni   *libcni.CNIConfig
	cache string
}

func newCNIEnv(t testing.TB, h *Host) *cniEnv {
	t.Helper()
	if _, err := os.Stat(filepath.Join(binDir, "pontoon-cni")); err != nil {
		t.Fatalf("pontoon-cni was not built: %v", err)
	}
	if _, err := os.Stat(filepath.Join(debianCNIDir, "bandwidth")); err != nil {
		t.Fatalf("Debian's CNI plugins are missing (apt-get install containernetworking-plugins; scripts/deps.sh does): %v", err)
	}
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(binDir, "pontoon-cni"), filepath.Join(dir, "pontoon")); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	return &cniEnv{h: h, cni: libcni.NewCNIConfigWithCacheDir([]string{dir, debianCNIDir}, cache, nil), cache: cache}
}

// in runs fn on a thread inside the host namespace, so that the plugins
// libcni execs (bandwidth creates ifb devices on the host side) act there.
func (c *cniEnv) in(t testing.TB, fn func(ctx context.Context) error) error {
	t.Helper()
	return testutil.InNetns(t, c.h.NS, func() error { return fn(context.Background()) })
}

func (c *cniEnv) conflist(t testing.TB, version string, chained bool) *libcni.NetworkConfigList {
	t.Helper()
	plugins := []map[string]any{{"type": "pontoon", "network": "cninet", "socket": c.h.Socket,
		"capabilities": map[string]bool{"ips": true, "mac": true, "portMappings": true}}}
	if chained {
		plugins = append(plugins,
			map[string]any{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
			map[string]any{"type": "tuning", "sysctl": map[string]string{"net.ipv4.conf.eth0.arp_filter": "1"}})
	}
	data, _ := json.Marshal(map[string]any{"cniVersion": version, "name": "cninet", "plugins": plugins})
	l, err := libcni.ConfListFromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func rt(id, ns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: ns, IfName: "eth0"}
}

func TestCNIChainedAddCheckDel(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "cninet", "--subnet", "10.99.5.0/24")
	c := newCNIEnv(t, h)
	// Debian's plugins (1.1.1) speak CNI 1.0.0.
	list := c.conflist(t, "1.0.0", true)
	ns1, ns2 := testutil.NewNetns(t), testutil.NewNetns(t)
	r1 := rt("ctr1", ns1)
	r1.CapabilityArgs = map[string]any{
		"bandwidth":    map[string]int{"ingressRate": 100000000, "ingressBurst": 1000000, "egressRate": 100000000, "egressBurst": 1000000},
		"ips":          []string{"10.99.5.50/24"},
		"portMappings": []map[string]any{{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}},
	}
	var res1, res2 types.Result
	if err := c.in(t, func(ctx context.Context) (err error) {
		if res1, err = c.cni.AddNetworkList(ctx, list, r1); err != nil {
			return err
		}
		res2, err = c.cni.AddNetworkList(ctx, list, rt("ctr2", ns2))
		return err
	}); err != nil {
		t.Fatalf("ADD: %v\n%s", err, h.Log())
	}
	r, err := current.NewResultFromResult(res1)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.99.5.50/24" || r.IPs[0].Gateway.String() != "10.99.5.1" {
		t.Fatalf("result IPs %+v", r.IPs)
	}
	if len(r.Interfaces) < 2 || r.Interfaces[1].Sandbox != ns1 || r.Interfaces[1].Name != "eth0" {
		t.Fatalf("result interfaces %+v", r.Interfaces)
	}
	if len(r.DNS.Nameservers) != 1 || r.DNS.Nameservers[0] != "10.99.5.1" || len(r.DNS.Search) != 1 || r.DNS.Search[0] != "cninet" {
		t.Fatalf("result DNS %+v", r.DNS)
	}
	// The attachments are ordinary pontoon endpoints.
	ls := h.P("sandbox", "ls")
	if !strings.Contains(ls, "cni-ctr1") || !strings.Contains(ls, "ctr1") || !strings.Contains(ls, ns1) {
		t.Fatalf("sandbox ls:\n%s", ls)
	}
	sb := h.Sandbox("cni-ctr1")
	if sb.ContainerID != "ctr1" || sb.Kind != model.KindNetns || sb.Endpoints[0].FirstIP().String() != "10.99.5.50" {
		t.Fatalf("inspect: %+v", sb)
	}
	// The chained plugins did their part: tuning's sysctl, bandwidth's qdisc.
	if out := h.In(ns1, "sysctl", "-n", "net.ipv4.conf.eth0.arp_filter"); strings.TrimSpace(out) != "1" {
		t.Fatalf("tuning did not run: %q", out)
	}
	if out := h.In(h.NS, "tc", "qdisc", "show", "dev", sb.Endpoints[0].HostIf); !strings.Contains(out, "tbf") {
		t.Fatalf("bandwidth did not shape the host end: %s", out)
	}
	// Real traffic between the two CNI-attached namespaces.
	r2, _ := current.NewResultFromResult(res2)
	ip2 := r2.IPs[0].Address.IP.String()
	if out, err := h.TryIn(ns1, "ping", "-c1", "-W1", ip2); err != nil {
		t.Fatalf("ctr1 → ctr2: %v\n%s", err, out)
	}
	srv := ServeTCP(t, ns2, ip2+":7100")
	if _, err := DialFrom(t, ns1, srv.Addr); err != nil {
		t.Fatalf("tcp ctr1 → ctr2: %v", err)
	}
	// The portMappings capability publishes ctr1:80 on the host's 8090.
	web := ServeTCP(t, ns1, "0.0.0.0:80")
	if _, err := DialFrom(t, h.Outside, HostUplinkIP+":8090"); err != nil || len(web.Peers()) != 1 {
		t.Fatalf("LAN → host:8090 (CNI portMappings) → ctr1:80: %v", err)
	}
	if err := c.in(t, func(ctx context.Context) error { return c.cni.CheckNetworkList(ctx, list, r1) }); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	// DEL (in reverse through the chain), twice: idempotent.
	for i := 0; i < 2; i++ {
		if err := c.in(t, func(ctx context.Context) error { return c.cni.DelNetworkList(ctx, list, r1) }); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if _, err := h.TryP("sandbox", "inspect", "cni-ctr1"); err == nil {
		t.Fatal("DEL left the sandbox")
	}
	// DEL returns once eth0 carries no traffic; the veth pair is deleted
	// in the background (the kernel's RCU wait).
	if out, ok := within(5*time.Second, func() (string, bool) {
		out := h.In(ns1, "ip", "-o", "link")
		return out, !strings.Contains(out, "eth0")
	}); !ok {
		t.Fatalf("DEL left eth0 in the namespace:\n%s", out)
	}
}

func TestCNICheckStatusGCAndRecovery(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "cninet", "--subnet", "10.99.6.0/24")
	c := newCNIEnv(t, h)
	list := c.conflist(t, "1.1.0", false)
	ns1, ns2, ns3 := testutil.NewNetns(t), testutil.NewNetns(t), testutil.NewNetns(t)
	add := func(id, ns string) {
		t.Helper()
		if err := c.in(t, func(ctx context.Context) error {
			_, err := c.cni.AddNetworkList(ctx, list, rt(id, ns))
			return err
		}); err != nil {
			t.Fatalf("ADD %s: %v", id, err)
		}
	}
	add("c1", ns1)
	add("c2", ns2)

	if err := c.in(t, func(ctx context.Context) error { return c.cni.GetStatusNetworkList(ctx, list) }); err != nil {
		t.Fatalf("STATUS with the daemon up: %v", err)
	}
	// CHECK notices drift: the address was removed behind pontoon's back.
	h.In(ns1, "ip", "addr", "flush", "dev", "eth0")
	err := c.in(t, func(ctx context.Context) error { return c.cni.CheckNetworkList(ctx, list, rt("c1", ns1)) })
	if err == nil || !strings.Contains(err.Error(), "does not have address") {
		t.Fatalf("CHECK after drift: %v", err)
	}
	var cerr *types.Error
	if !errors.As(err, &cerr) || cerr.Code == 0 {
		t.Fatalf("CHECK error is not CNI error JSON with a code: %#v", err)
	}

	// Daemon restarted between ADD and DEL.
	h.Stop()
	err = c.in(t, func(ctx context.Context) error { return c.cni.GetStatusNetworkList(ctx, list) })
	if !errors.As(err, &cerr) || cerr.Code != types.ErrPluginNotAvailable {
		t.Fatalf("STATUS with the daemon down: %v, want code 50", err)
	}
	h.Start()
	if err := c.in(t, func(ctx context.Context) error { return c.cni.DelNetworkList(ctx, list, rt("c2", ns2)) }); err != nil {
		t.Fatalf("DEL after a daemon restart: %v", err)
	}

	// DEL after the namespace is gone.
	add("c3", ns3)
	hostIf := h.Sandbox("cni-c3").Endpoints[0].HostIf
	deleteNetns(t, ns3)
	if err := c.in(t, func(ctx context.Context) error { return c.cni.DelNetworkList(ctx, list, rt("c3", ns3)) }); err != nil {
		t.Fatalf("DEL after the netns was deleted: %v", err)
	}
	if _, ok := within(5*time.Second, func() (string, bool) { return "", len(h.HostLinks(hostIf)) == 0 }); !ok {
		t.Fatalf("veth %s left", hostIf)
	}

	// GC after a simulated runtime crash: the runtime lost its cache, so
	// libcni cannot DEL c4 itself; the plugin's GC must remove it.
	ns4 := testutil.NewNetns(t)
	add("c4", ns4)
	ip4 := h.IP("cni-c4", "cninet")
	if err := os.RemoveAll(c.cache); err != nil {
		t.Fatal(err)
	}
	if err := c.in(t, func(ctx context.Context) error {
		return c.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "c1", IfName: "eth0"}}})
	}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	ls := h.P("sandbox", "ls")
	if strings.Contains(ls, "cni-c4") || !strings.Contains(ls, "cni-c1") {
		t.Fatalf("after GC (valid: c1):\n%s", ls)
	}
	var nets []*model.NetworkInfo
	if err := json.Unmarshal([]byte(h.P("network", "inspect", "--format", "json", "cninet")), &nets); err != nil {
		t.Fatal(err)
	}
	if len(nets[0].Endpoints) != 1 || nets[0].Endpoints[0].Sandbox != "cni-c1" {
		t.Fatalf("endpoints after GC: %+v", nets[0].Endpoints)
	}
	// c4's address is free again: a new attachment with it succeeds.
	ns5 := testutil.NewNetns(t)
	if err := c.in(t, func(ctx context.Context) error {
		r := rt("c5", ns5)
		r.CapabilityArgs = map[string]any{"ips": []string{ip4 + "/24"}}
		_, err := c.cni.AddNetworkList(ctx, list, r)
		return err
	}); err != nil {
		t.Fatalf("ADD with a GC'd address: %v", err)
	}
}

// deleteNetns unmounts a test namespace early (its cleanup tolerates that).
func deleteNetns(t *testing.T, path string) {
	t.Helper()
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", path, err)
	}
}
