package e2e

import (
	"strings"
	"testing"
)

// What the README says of --internal networks and the host: a host
// service on all addresses answers on the internal network's gateway and
// nowhere else the sandbox can reach; the outside stays unreachable.
func TestInternalReachesOnlyItsGateway(t *testing.T) {
	h := NewHost(t)
	h.P("network", "create", "back", "--subnet", "10.91.7.0/24", "--internal")
	h.P("sandbox", "create", "i", "--network", "back")
	srv := ServeTCP(t, h.NS, "0.0.0.0:7300")
	got, err := DialFrom(t, h.SandboxNS("i"), "10.91.7.1:7300")
	if err != nil || !strings.HasPrefix(got, "hello") {
		t.Fatalf("internal sandbox → host service on its gateway: %q %v", got, err)
	}
	if p := srv.Peers(); len(p) != 1 || !strings.HasPrefix(p[0], "10.91.7.2:") {
		t.Fatalf("the host service saw %v, want the sandbox's own address", p)
	}
	if _, err := DialFrom(t, h.SandboxNS("i"), HostUplinkIP+":7300"); err == nil {
		t.Fatal("internal sandbox reached the host's uplink address")
	}
	if h.Ping("i", RouterIP) {
		t.Fatal("internal sandbox reached the outside")
	}
}
