package dockerdrv

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"pontoon/internal/model"
)

// stubEngine records what the driver asks of the engine (a fake for the
// protocol's logic; test/e2e/docker_test.go runs it against dockerd and
// the real engine).
type stubEngine struct {
	nets     []*model.NetworkInfo
	reserved []netip.Addr
	released []netip.Addr
	sandbox  *model.SandboxInfo
	attached []model.AttachSpec
	ports    []model.PortMapping
	calls    []string
}

func (s *stubEngine) CreateNetwork(_ context.Context, spec model.NetworkSpec) (*model.Network, error) {
	n := &model.Network{Name: spec.Name, Driver: "bridge", Subnets: spec.Subnets, Labels: spec.Labels, Internal: spec.Internal}
	s.nets = append(s.nets, &model.NetworkInfo{Network: *n})
	s.calls = append(s.calls, "create-network "+spec.Name)
	return n, nil
}
func (s *stubEngine) RemoveNetwork(_ context.Context, name string, _ bool) error {
	s.calls = append(s.calls, "remove-network "+name)
	return nil
}
func (s *stubEngine) Networks() ([]*model.NetworkInfo, error) { return s.nets, nil }
func (s *stubEngine) PickSubnet(bool) (netip.Prefix, error) {
	return netip.MustParsePrefix("10.89.7.0/24"), nil
}
func (s *stubEngine) ReserveAddress(_ string, ip netip.Addr) (netip.Addr, error) {
	if !ip.IsValid() {
		ip = netip.MustParseAddr("10.90.9.2")
	}
	s.reserved = append(s.reserved, ip)
	return ip, nil
}
func (s *stubEngine) ReserveAddress6(string) (netip.Addr, error) {
	return netip.MustParseAddr("fd00:9::2"), nil
}
func (s *stubEngine) ReleaseAddress(_ string, ip netip.Addr) error {
	s.released = append(s.released, ip)
	return nil
}
func (s *stubEngine) Sandbox(name string) (*model.SandboxInfo, error) {
	if s.sandbox == nil || s.sandbox.Name != name {
		return nil, model.NotFoundf("no sandbox %s", name)
	}
	return s.sandbox, nil
}
func (s *stubEngine) CreateSandbox(_ context.Context, spec model.SandboxSpec) (*model.SandboxInfo, error) {
	if !spec.Docker {
		panic("a Docker container's sandbox must be of kind docker")
	}
	s.sandbox = &model.SandboxInfo{Sandbox: model.Sandbox{Name: spec.Name, Netns: spec.Netns, Kind: model.KindDocker}}
	s.calls = append(s.calls, "create-sandbox "+spec.Name+" "+spec.Netns)
	return s.sandbox, nil
}
func (s *stubEngine) Connect(_ context.Context, sandbox string, a model.AttachSpec) (*model.Endpoint, error) {
	s.attached = append(s.attached, a)
	ep := &model.Endpoint{ID: "e1", Network: a.Network, Sandbox: sandbox,
		Addresses: []model.Address{{Addr: netip.PrefixFrom(a.IPs[0], 24), Gateway: netip.MustParseAddr("10.90.9.1")}}}
	s.sandbox.Endpoints = append(s.sandbox.Endpoints, ep)
	s.calls = append(s.calls, "connect "+sandbox+" "+a.Network)
	return ep, nil
}
func (s *stubEngine) Disconnect(_ context.Context, network, sandbox string) error {
	s.sandbox.Endpoints = nil
	s.calls = append(s.calls, "disconnect "+sandbox+" "+network)
	return nil
}
func (s *stubEngine) RemoveSandbox(_ context.Context, name string) error {
	s.calls = append(s.calls, "remove-sandbox "+name)
	s.sandbox = nil
	return nil
}
func (s *stubEngine) PublishPorts(_ context.Context, _, _ string, ports []model.PortMapping) error {
	s.ports = ports
	return nil
}
func (s *stubEngine) SetContainer(string, string, map[string]string) error { return nil }
func (s *stubEngine) UnpublishPorts(context.Context, string, string) error {
	s.ports = nil
	return nil
}

func post(t *testing.T, h http.Handler, path string, body any) map[string]any {
	t.Helper()
	data, _ := json.Marshal(body)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(data)))
	if rec.Code != http.StatusOK {
		t.Fatalf("%s: status %d", path, rec.Code)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s: %v: %s", path, err, rec.Body)
	}
	if e, _ := out["Err"].(string); e != "" {
		t.Fatalf("%s: %s", path, e)
	}
	if e, _ := out["Error"].(string); e != "" {
		t.Fatalf("%s: %s", path, e)
	}
	return out
}

// The calls dockerd makes for `docker network create -d pontoon
// --ipam-driver pontoon --subnet …`, `docker run -p …` and their removal,
// in dockerd's order.
func TestProtocolFlow(t *testing.T) {
	eng := &stubEngine{}
	d, err := New(eng, filepath.Join(t.TempDir(), "state.json"), "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := d.Handler()
	if out := post(t, h, "/Plugin.Activate", nil); !strings.Contains(strings.Join(anyStrings(out["Implements"]), ","), "IpamDriver") {
		t.Fatalf("Activate: %v", out)
	}
	pool := post(t, h, "/IpamDriver.RequestPool", map[string]any{"AddressSpace": "pontoon", "Pool": "10.90.9.0/24"})
	poolID := pool["PoolID"].(string)
	gw := post(t, h, "/IpamDriver.RequestAddress", map[string]any{"PoolID": poolID, "Options": map[string]string{"RequestAddressType": "com.docker.network.gateway"}})
	if gw["Address"] != "10.90.9.1/24" || len(eng.reserved) != 0 {
		t.Fatalf("gateway: %v (reserved %v)", gw, eng.reserved)
	}
	nid := strings.Repeat("ab", 32)
	post(t, h, "/NetworkDriver.CreateNetwork", map[string]any{"NetworkID": nid,
		"IPv4Data": []map[string]string{{"AddressSpace": "pontoon", "Pool": "10.90.9.0/24", "Gateway": "10.90.9.1/24"}},
		"Options":  map[string]any{"com.docker.network.generic": map[string]any{"com.docker.network.driver.mtu": "1400"}}})
	if len(eng.nets) != 1 || eng.nets[0].Name != "docker-abababababab" || eng.nets[0].Subnets[0].Gateway != netip.MustParseAddr("10.90.9.1") {
		t.Fatalf("network: %+v", eng.nets)
	}
	addr := post(t, h, "/IpamDriver.RequestAddress", map[string]any{"PoolID": poolID})
	if addr["Address"] != "10.90.9.2/24" {
		t.Fatalf("address: %v", addr)
	}
	eid := strings.Repeat("cd", 32)
	ce := post(t, h, "/NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": nid, "EndpointID": eid, "Interface": map[string]string{"Address": "10.90.9.2/24"}})
	if iface, _ := ce["Interface"].(map[string]any); iface["MacAddress"] != "02:42:0a:5a:09:02" {
		t.Fatalf("CreateEndpoint: %v", ce)
	}
	j := post(t, h, "/NetworkDriver.Join", map[string]any{"NetworkID": nid, "EndpointID": eid, "SandboxKey": "/var/run/docker/netns/0123456789ab"})
	if name, _ := j["InterfaceName"].(map[string]any); j["DisableGatewayService"] != true || name["SrcName"] != model.PeerVethName("e1") || name["DstPrefix"] != "eth" || j["Gateway"] != "10.90.9.1" {
		t.Fatalf("Join: %v", j)
	}
	if len(eng.attached) != 1 || !eng.attached[0].Claim || eng.attached[0].IPs[0] != netip.MustParseAddr("10.90.9.2") || eng.attached[0].MAC != "02:42:0a:5a:09:02" {
		t.Fatalf("attach: %+v", eng.attached)
	}
	post(t, h, "/NetworkDriver.ProgramExternalConnectivity", map[string]any{"NetworkID": nid, "EndpointID": eid,
		"Options": map[string]any{"com.docker.network.portmap": []map[string]any{{"Proto": 6, "Port": 80, "HostPort": 8080, "HostPortEnd": 8080}}}})
	if len(eng.ports) != 1 || eng.ports[0].String() != "8080:80/tcp" {
		t.Fatalf("ports: %v", eng.ports)
	}

	// A restarted daemon still knows the endpoint.
	d2, err := New(eng, d.statePath, "", slog.New(slog.DiscardHandler))
	if err != nil || d2.eps[eid] == nil || d2.eps[eid].Sandbox != "docker-0123456789ab" {
		t.Fatalf("state after restart: %v %+v", err, d2.eps)
	}
	h = d2.Handler()
	post(t, h, "/NetworkDriver.RevokeExternalConnectivity", map[string]any{"NetworkID": nid, "EndpointID": eid})
	post(t, h, "/NetworkDriver.Leave", map[string]any{"NetworkID": nid, "EndpointID": eid})
	post(t, h, "/NetworkDriver.DeleteEndpoint", map[string]any{"NetworkID": nid, "EndpointID": eid})
	post(t, h, "/IpamDriver.ReleaseAddress", map[string]any{"PoolID": poolID, "Address": "10.90.9.2"})
	post(t, h, "/NetworkDriver.DeleteNetwork", map[string]any{"NetworkID": nid})
	want := []string{"create-network docker-abababababab", "create-sandbox docker-0123456789ab /var/run/docker/netns/0123456789ab",
		"connect docker-0123456789ab docker-abababababab", "disconnect docker-0123456789ab docker-abababababab",
		"remove-sandbox docker-0123456789ab", "remove-network docker-abababababab"}
	if strings.Join(eng.calls, "\n") != strings.Join(want, "\n") || eng.ports != nil || len(eng.released) != 1 {
		t.Fatalf("calls:\n%s\nports %v released %v", strings.Join(eng.calls, "\n"), eng.ports, eng.released)
	}
}

// Errors reach dockerd in the field it reads: Err for the network driver,
// Error for IPAM.
func TestProtocolErrors(t *testing.T) {
	d, _ := New(&stubEngine{}, filepath.Join(t.TempDir(), "s.json"), "", slog.New(slog.DiscardHandler))
	h := d.Handler()
	for path, field := range map[string]string{"/NetworkDriver.Join": "Err", "/IpamDriver.RequestAddress": "Error"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"PoolID":"nope","EndpointID":"x"}`)))
		var out map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		if out[field] == "" {
			t.Errorf("%s: %s, want %s set", path, rec.Body, field)
		}
	}
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
