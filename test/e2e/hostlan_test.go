package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"pontoon/internal/api"
	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// The host's own LAN cannot become a pontoon network; an overlap the host
// gains later is a doctor error; a static address the host has is never a
// sandbox's.
func TestHostLANSubnetRefused(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "app", "--subnet", "10.93.0.0/24")
	bridges := h.HostLinks("ptbr-")
	nftBefore := h.In(h.NS, "nft", "list", "table", "inet", "pontoon")

	for _, args := range [][]string{
		{"--subnet", "198.51.100.0/24"},
		{"--subnet", "198.51.100.0/24", "--gateway", "198.51.100.254"},
		{"--subnet", "198.51.100.0/24", "--ip-range", "198.51.100.128/25"},
		{"--subnet", "198.51.0.0/16"},
	} {
		out := h.PFail(append([]string{"network", "create", "clash"}, args...)...)
		if !strings.Contains(out, "overlaps 198.51.100.0/24 on uplink0 (host address 198.51.100.1), the host's own network") || !strings.Contains(out, "pick another subnet") {
			t.Errorf("network create clash %s: %s", strings.Join(args, " "), out)
		}
	}
	if out := h.PFail("network", "create", "clash", "--subnet", "198.51.100.0/24"); !strings.Contains(out, "its gateway 198.51.100.1 would be the host's address on uplink0") {
		t.Errorf("the default gateway is the uplink's address, and the error should say so: %s", out)
	}
	// Nothing was made: no bridge, no record, no firewall change.
	if got := h.HostLinks("ptbr-"); !slices.Equal(got, bridges) {
		t.Errorf("bridges %v after refused creates, were %v", got, bridges)
	}
	if ls := h.P("network", "ls"); strings.Contains(ls, "clash") {
		t.Errorf("network ls lists the refused network:\n%s", ls)
	}
	if nft := h.In(h.NS, "nft", "list", "table", "inet", "pontoon"); nft != nftBefore {
		t.Errorf("the firewall changed:\n%s\nwas\n%s", nft, nftBefore)
	}

	// A healthy host: pontoon's own bridges are not the host's networks.
	h.P("sandbox", "create", "a", "--network", "app") // 10.93.0.2
	by, err := h.doctor(t)
	if f := by["host-overlap"]; err != nil || len(f) != 1 || f[0].Level != api.LevelOK {
		t.Fatalf("doctor host-overlap on a healthy host: %v %+v", err, f)
	}

	// The host gains an address inside app's subnet (a DHCP lease, a
	// renumbered LAN): doctor names the network, the link, and the sandbox
	// holding that address, and exits 1.
	h.In(h.NS, "ip", "addr", "add", "10.93.0.2/24", "dev", "uplink0")
	by, err = h.doctor(t)
	if err == nil {
		t.Error("doctor exited 0 with a network overlapping the host's")
	}
	f := by["host-overlap"]
	if len(f) != 1 || f[0].Level != api.LevelError ||
		!strings.Contains(f[0].Message, "network app (subnet 10.93.0.0/24) overlaps 10.93.0.0/24 on uplink0 (host address 10.93.0.2)") ||
		!strings.Contains(f[0].Message, "sandbox a has 10.93.0.2") {
		t.Errorf("doctor host-overlap: %+v", f)
	}
	// A static address the host has is refused, before anything is made.
	h.P("sandbox", "create", "b", "--network", "none")
	h.In(h.NS, "ip", "addr", "add", "10.93.0.9/32", "dev", "uplink0")
	if out := h.PFail("network", "connect", "app", "b", "--ip", "10.93.0.9"); !strings.Contains(out, "address 10.93.0.9 is an address of the host, on uplink0") {
		t.Errorf("connect --ip <host address>: %s", out)
	}
	if out := h.PFail("sandbox", "create", "c", "--network", "app", "--ip", "10.93.0.9"); !strings.Contains(out, "address 10.93.0.9 is an address of the host, on uplink0") {
		t.Errorf("sandbox create --ip <host address>: %s", out)
	}
	if _, err := h.TryP("sandbox", "inspect", "c"); err == nil {
		t.Error("a refused sandbox was left")
	}
	if eps := h.Sandbox("b").Endpoints; len(eps) != 0 {
		t.Errorf("b got an endpoint: %+v", eps)
	}
	// Gone again: doctor is happy.
	h.In(h.NS, "ip", "addr", "del", "10.93.0.2/24", "dev", "uplink0")
	h.In(h.NS, "ip", "addr", "del", "10.93.0.9/32", "dev", "uplink0")
	if by, _ = h.doctor(t); len(by["host-overlap"]) != 1 || by["host-overlap"][0].Level != api.LevelOK {
		t.Errorf("doctor host-overlap after the address went: %+v", by["host-overlap"])
	}
}

// Ports are not published from an --internal network, by any way an
// endpoint comes to be (sandbox create, network connect, CNI ADD).
func TestInternalNetworkPortsRefused(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "back", "--subnet", "10.91.1.0/24", "--internal")
	want := "network back is --internal: it has no way in or out, so it cannot publish ports (7100:80/tcp); publish ports from a non-internal network"
	if out := h.PFail("sandbox", "create", "i2", "--network", "back", "-p", "7100:80"); !strings.Contains(out, want) {
		t.Errorf("sandbox create -p on an internal network: %s", out)
	}
	if _, err := h.TryP("sandbox", "inspect", "i2"); err == nil {
		t.Error("the refused sandbox exists")
	}
	if pins := h.Pins(); len(pins) != 0 {
		t.Errorf("pins left: %v", pins)
	}
	h.P("sandbox", "create", "x")
	if out := h.PFail("network", "connect", "back", "x", "-p", "7100:80"); !strings.Contains(out, want) {
		t.Errorf("network connect -p to an internal network: %s", out)
	}
	if eps := h.Sandbox("x").Endpoints; len(eps) != 1 {
		t.Errorf("x has %d endpoints after a refused connect", len(eps))
	}
	if m := h.In(h.NS, "nft", "list", "map", "inet", "pontoon", "ports-any"); strings.Contains(m, "7100") {
		t.Errorf("a refused mapping reached the firewall:\n%s", m)
	}

	// CNI: the runtime's portMappings on an internal network. The plugin
	// turns the API's "invalid" into CNI's invalid network config (7).
	h.P("network", "create", "cninet", "--subnet", "10.99.6.0/24", "--internal")
	c := newCNIEnv(t, h)
	list := c.conflist(t, "1.0.0", false)
	ns := testutil.NewNetns(t)
	r := rt("ctr-int", ns)
	r.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}}}
	err := c.in(t, func(ctx context.Context) error { _, err := c.cni.AddNetworkList(ctx, list, r); return err })
	var cerr *types.Error
	if !errors.As(err, &cerr) || cerr.Code != types.ErrInvalidNetworkConfig || !strings.Contains(cerr.Msg, "network cninet is --internal") {
		t.Errorf("CNI ADD with portMappings on an internal network: %#v", err)
	}
	if ls := h.P("sandbox", "ls"); strings.Contains(ls, "ctr-int") {
		t.Errorf("the refused CNI ADD left a sandbox:\n%s", ls)
	}
	if out, err := h.TryIn(ns, "ip", "-o", "link", "show", "eth0"); err == nil {
		t.Errorf("the refused CNI ADD left eth0 in the container: %s", out)
	}
}

// `pontoon port` says from where each mapping of a normal network is
// reachable; every claim is tried with real connections, and every place
// it does not claim must fail: a LAN client (which must also keep its own
// address), the host, a sandbox on the same network, one on another
// network, one on an internal network, each through every address it
// could use.
func TestPortReachabilityMatchesTraffic(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "side", "--subnet", "10.94.1.0/24")
	h.P("network", "create", "back", "--subnet", "10.91.1.0/24", "--internal")
	h.P("sandbox", "create", "web", "-p", "8080:80", "-p", "127.0.0.1:9090:80", "-p", HostUplinkIP+":8083:80")
	srv := ServeTCP(t, h.SandboxNS("web"), "0.0.0.0:80")
	h.P("sandbox", "create", "other")
	h.P("sandbox", "create", "far", "--network", "side")
	h.P("sandbox", "create", "inner", "--network", "back")

	var ports []model.PortInfo
	if err := json.Unmarshal([]byte(h.P("port", "web", "--format", "json")), &ports); err != nil || len(ports) != 3 {
		t.Fatalf("port web: %v %+v", err, ports)
	}
	type place struct {
		name, ns, class string
		internal        bool
		src             string
		addrs           []string
	}
	places := []place{
		{name: "LAN client", ns: h.Outside, class: "lan", src: LANClientIP, addrs: []string{HostUplinkIP}},
		{name: "host", ns: h.NS, class: "host", addrs: []string{"127.0.0.1", HostUplinkIP}},
		{name: "other (same network)", ns: h.SandboxNS("other"), class: "sandboxes", addrs: []string{HostUplinkIP, "10.88.0.1"}},
		{name: "far (network side)", ns: h.SandboxNS("far"), class: "sandboxes", addrs: []string{HostUplinkIP, "10.94.1.1"}},
		{name: "inner (internal network)", ns: h.SandboxNS("inner"), class: "sandboxes", internal: true, addrs: []string{HostUplinkIP, "10.91.1.1"}},
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	claims := 0
	for _, p := range ports {
		if !strings.Contains(p.Reachable, "not from sandboxes of --internal networks") && slices.Contains(p.ReachableFrom, "sandboxes") {
			t.Errorf("%s: the text does not say that internal networks are left out: %q", p.Mapping, p.Reachable)
		}
		tried := map[string]bool{} // classes with a claimed path to try
		for _, pl := range places {
			for _, a := range pl.addrs {
				// The claim, read as its words say: a place in
				// reachable_from, on the address the mapping is bound to
				// (any when none), sandboxes on internal networks excepted.
				claimed := slices.Contains(p.ReachableFrom, pl.class) && !(pl.internal && pl.class == "sandboxes") &&
					(!p.Mapping.HostIP.IsValid() || p.Mapping.HostIP == netip.MustParseAddr(a))
				if claimed {
					claims++
					tried[pl.class] = true
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					var seen string
					var err error
					for range 2 { // a first miss may be ARP
						if seen, err = dialSeen(t, pl.ns, pl.src, net.JoinHostPort(a, fmt.Sprint(p.Mapping.HostPort)), srv); err == nil || !claimed {
							break
						}
					}
					mu.Lock()
					defer mu.Unlock()
					switch {
					case claimed && err != nil:
						problems = append(problems, fmt.Sprintf("%s (%q): %s → %s:%d failed (%v), but port claims %v", p.Mapping, p.Reachable, pl.name, a, p.Mapping.HostPort, err, p.ReachableFrom))
					case !claimed && err == nil:
						problems = append(problems, fmt.Sprintf("%s (%q): %s → %s:%d connected, but port does not claim it", p.Mapping, p.Reachable, pl.name, a, p.Mapping.HostPort))
					case claimed && pl.class == "lan" && seen != LANClientIP:
						problems = append(problems, fmt.Sprintf("%s: web saw the LAN client as %s, want its own address %s", p.Mapping, seen, LANClientIP))
					}
				}()
			}
		}
		for _, class := range p.ReachableFrom {
			if !tried[class] {
				t.Errorf("%s claims %q, but no place of that kind has an address it answers on: a claim this test cannot try", p.Mapping, class)
			}
		}
	}
	wg.Wait()
	slices.Sort(problems)
	for _, p := range problems {
		t.Error(p)
	}
	if claims < 8 {
		t.Fatalf("only %d claimed paths: the test proves little", claims)
	}
}

// dialSeen connects from namespace ns (from address src when given) to
// addr, reads the greeting, and returns the address srv saw for it.
func dialSeen(t *testing.T, ns, src, addr string, srv *TCPServer) (string, error) {
	var local string
	err := testutil.InNetns(t, ns, func() error {
		d := net.Dialer{Timeout: time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		c, err := d.Dial("tcp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		local = c.LocalAddr().String()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		b := make([]byte, 64)
		if n, err := c.Read(b); err != nil || !strings.HasPrefix(string(b[:n]), "hello") {
			return fmt.Errorf("no greeting: %q %v", b[:n], err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	// The server records the peer before it greets; find this
	// connection's by its port (NAT keeps source ports here).
	_, port, _ := net.SplitHostPort(local)
	for _, p := range srv.Peers() {
		if strings.HasSuffix(p, ":"+port) {
			host, _, _ := net.SplitHostPort(p)
			return host, nil
		}
	}
	return "?", nil
}
