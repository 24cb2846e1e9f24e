package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"pontoon/internal/link"
	"pontoon/internal/model"
)

func fdbEntryLines(d model.FDBDevice) []string {
	var out []string
	for _, e := range d.Entries {
		out = append(out, fmt.Sprintf("%s %s %s/%s %s age %g dst %v node %s", e.MAC, e.Port, e.Sandbox, e.IfName, e.State, e.AgeSeconds, e.Dst, e.Node))
	}
	return out
}

func fdbNeighLines(d model.FDBDevice) []string {
	var out []string
	for _, n := range d.Neighbours {
		out = append(out, fmt.Sprintf("%s %s %s %s/%s node %s", n.IP, n.MAC, n.State, n.Sandbox, n.IfName, n.Node))
	}
	return out
}

// A bridge network's FDB: what the bridge learned, each port named with
// the sandbox and interface whose host end it is; the host's neighbours
// with the sandbox that has the address (by MAC for IPv6 link-local
// ones); an address nobody has stays anonymous.
func TestNetworkFDBBridge(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "app", Subnets: []model.Subnet{{Prefix: tPrefix("10.90.1.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	eps := map[string]*model.Endpoint{}
	for _, name := range []string{"a", "b"} {
		sb, err := env.e.CreateSandbox(ctx, model.SandboxSpec{Name: name, Networks: []model.AttachSpec{{Network: "app"}}})
		if err != nil {
			t.Fatal(err)
		}
		eps[name] = sb.Endpoints[0]
	}
	a, b := eps["a"], eps["b"]
	macA, _ := net.ParseMAC(a.MAC)
	macB, _ := net.ParseMAC(b.MAC)
	bridge := env.mustNet(t, "app").Bridge
	for _, err := range []error{
		env.link.Learn(a.HostIf, macA, 3*time.Second),
		env.link.Learn(b.HostIf, macB, 0),
		env.link.SetNeighbour(bridge, link.NeighEntry{Addr: a.FirstIP(), MAC: macA, State: "REACHABLE"}),
		env.link.SetNeighbour(bridge, link.NeighEntry{Addr: tAddr("fe80::42:aff:fe5a:103"), MAC: macB, State: "STALE"}),
		env.link.SetNeighbour(bridge, link.NeighEntry{Addr: tAddr("10.90.1.99"), State: "FAILED"}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := env.e.NetworkFDB(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if got.Network != "app" || got.Driver != model.DriverBridge || len(got.Devices) != 1 || got.Devices[0].Name != bridge || got.Devices[0].Kind != "bridge" {
		t.Fatalf("NetworkFDB(app) = %+v, want the bridge %s alone", got, bridge)
	}
	dev := got.Devices[0]
	wantEntries := []string{
		a.MAC + " " + a.HostIf + " a/eth0 dynamic age 3 dst invalid IP node ",
		b.MAC + " " + b.HostIf + " b/eth0 dynamic age 0 dst invalid IP node ",
	}
	slices.Sort(wantEntries) // by port, as the kernel's are
	if e := fdbEntryLines(dev); !slices.Equal(e, wantEntries) {
		t.Errorf("entries\n%q\nwant\n%q", e, wantEntries)
	}
	wantNeigh := []string{
		a.FirstIP().String() + " " + a.MAC + " REACHABLE a/eth0 node ",
		"10.90.1.99  FAILED / node ",
		"fe80::42:aff:fe5a:103 " + b.MAC + " STALE b/eth0 node ",
	}
	if n := fdbNeighLines(dev); !slices.Equal(n, wantNeigh) {
		t.Errorf("neighbours\n%q\nwant\n%q", n, wantNeigh)
	}

	// b leaves: its port and its entry go, a's stays.
	if err := env.e.RemoveSandbox(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	env.e.Flush()
	got, err = env.e.NetworkFDB(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if e := fdbEntryLines(got.Devices[0]); len(e) != 1 || !strings.HasPrefix(e[0], a.MAC+" "+a.HostIf+" a/eth0") {
		t.Errorf("entries after b left: %q", e)
	}

	// A bridge that is gone: the kernel's error, with the network.
	env.link.Break("delete", bridge)
	if _, err := env.e.NetworkFDB(ctx, "app"); err == nil || !strings.Contains(err.Error(), "network app") || !strings.Contains(err.Error(), bridge+" does not exist") {
		t.Errorf("bridge deleted: %v", err)
	}
}

// Networks without a bridge of their own are refused with where to look;
// an unknown network is not found.
func TestNetworkFDBRefusals(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	env.link.AddHostLink(link.LinkInfo{Name: "eth0", Type: "veth", MTU: 1500, Up: true})
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "wire", Driver: model.DriverLink}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.CreateNetwork(ctx, model.NetworkSpec{Name: "lan", Driver: model.DriverMacvlan,
		Subnets: []model.Subnet{{Prefix: tPrefix("10.95.0.0/24")}}, Macvlan: &model.MacvlanOptions{Parent: "eth0"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		kind error
		want string
	}{
		{"wire", model.ErrInvalid, "network wire (driver link) has no bridge: its two sandboxes are joined by one veth pair"},
		{"lan", model.ErrInvalid, "network lan (driver macvlan) has no bridge: its members are each a macvlan on eth0"},
		{"nosuch", model.ErrNotFound, "nosuch"},
	} {
		_, err := env.e.NetworkFDB(ctx, c.name)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NetworkFDB(%s): %v, want %v saying %q", c.name, err, c.kind, c.want)
		}
	}
}

// An overlay network's FDB has its VXLAN device too: the other node's
// VTEP MAC sent to its underlay address, and its slice's address resolved
// to that MAC, each named with the node.
func TestNetworkFDBOverlay(t *testing.T) {
	etcd, _, h2, _ := vtepNodes(t)
	vx := h2.mustNet(t, "web").Overlay.VXLAN
	h1mac := etcd.recordMAC("h1")
	waitDump(t, h2, peerLines(vx, "10.200.0.0", h1mac, "192.0.2.1"), nil)
	got, err := h2.e.NetworkFDB(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Devices) != 2 || got.Devices[0].Kind != "bridge" || got.Devices[1].Name != vx || got.Devices[1].Kind != "vxlan" {
		t.Fatalf("devices %+v, want the bridge and %s", got.Devices, vx)
	}
	if e, want := fdbEntryLines(got.Devices[1]), []string{h1mac + " " + vx + " / permanent age 0 dst 192.0.2.1 node h1"}; !slices.Equal(e, want) {
		t.Errorf("VXLAN entries %q, want %q", e, want)
	}
	if n, want := fdbNeighLines(got.Devices[1]), []string{"10.200.0.0 " + h1mac + " PERMANENT / node h1"}; !slices.Equal(n, want) {
		t.Errorf("VXLAN neighbours %q, want %q", n, want)
	}
}
