// Package dockerdrv is pontoon as a Docker network and IPAM driver: the
// remote-driver protocol (JSON over HTTP on a unix socket that dockerd
// finds in /run/docker/plugins) served by the daemon, mapped onto the
// engine.
//
// Design notes:
//   - Docker joins an endpoint before the container's namespace exists
//     (runc makes it; the sandbox key is a placeholder until then), and
//     moves the driver's interface into it afterwards. So at Join pontoon
//     records the container as a sandbox of kind docker and attaches it
//     like any other — the address reserved, anti-spoofing, the veth's
//     host end a port of the bridge — but makes the veth's other end on
//     the host (ptp-…), with the endpoint's MAC and MTU, and answers with
//     its name: dockerd moves it into the container, renames it ethN and
//     gives it the address and the gateway the driver reported. Docker's
//     gateway service is turned off (it would add a docker_gwbridge
//     interface). Docker's embedded resolver (127.0.0.11) answers
//     container names and --network-alias on the network.
//   - Docker asks its IPAM for addresses before the endpoint exists (the
//     gateway even before the network exists). pontoon's IPAM driver
//     reserves them in pontoon's store under a placeholder owner
//     (engine.ReserveAddress); the attach at Join takes the reservation
//     over (AttachSpec.Claim). With Docker's default IPAM instead, the
//     attach reserves the address Docker chose as a static one.
//   - A network is named docker-<first 12 characters of Docker's ID> in
//     pontoon (Docker does not tell a driver its network's name), labelled
//     with the ID. A container's sandbox is docker-<its sandbox's 12
//     characters>.
//   - Endpoints Docker created but not yet joined, and which sandbox a
//     joined one is in, are kept in a file in the daemon's state
//     directory, so that a restarted daemon still knows them.
package dockerdrv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"pontoon/internal/model"
)

// Engine is what the driver needs of pontoon's engine (*engine.Engine).
type Engine interface {
	CreateNetwork(ctx context.Context, spec model.NetworkSpec) (*model.Network, error)
	RemoveNetwork(ctx context.Context, name string, force bool) error
	Networks() ([]*model.NetworkInfo, error)
	PickSubnet(v6 bool) (netip.Prefix, error)
	ReserveAddress(network string, ip netip.Addr) (netip.Addr, error)
	ReserveAddress6(network string) (netip.Addr, error)
	ReleaseAddress(network string, ip netip.Addr) error
	Sandbox(name string) (*model.SandboxInfo, error)
	CreateSandbox(ctx context.Context, spec model.SandboxSpec) (*model.SandboxInfo, error)
	Connect(ctx context.Context, sandbox string, a model.AttachSpec) (*model.Endpoint, error)
	Disconnect(ctx context.Context, network, sandbox string) error
	RemoveSandbox(ctx context.Context, name string) error
	PublishPorts(ctx context.Context, network, sandbox string, ports []model.PortMapping) error
	UnpublishPorts(ctx context.Context, network, sandbox string) error
	SetContainer(sandbox, containerID string, labels map[string]string) error
}

// Labels pontoon puts on what it makes for Docker.
const (
	LabelNetworkID = "docker.network.id"
	LabelSandbox   = "docker.sandbox.key"
	LabelContainer = "docker.container.name"
	// AddressSpace is the one address space pontoon's IPAM has.
	AddressSpace = "pontoon"
	// DefaultSocket is where dockerd finds the plugin named pontoon.
	DefaultSocket = "/run/docker/plugins/pontoon.sock"
)

// Driver serves the protocol.
type Driver struct {
	eng       Engine
	log       *slog.Logger
	statePath string
	// api is Docker's API socket, asked which container an endpoint is
	// for ("": not asked).
	api string

	mu  sync.Mutex // one protocol call changes state at a time
	eps map[string]*endpoint
}

// endpoint is what the driver keeps of one of Docker's endpoints.
type endpoint struct {
	NetworkID string         `json:"network_id"`
	Network   string         `json:"network"` // pontoon's name
	Addrs     []netip.Prefix `json:"addrs"`
	MAC       string         `json:"mac"`
	Sandbox   string         `json:"sandbox,omitempty"` // pontoon's, once joined
}

// New returns a driver keeping its state in statePath. dockerAPI is the
// path of Docker's API socket, asked for the ID and name of the container
// each joined endpoint is for ("": not asked).
func New(eng Engine, statePath, dockerAPI string, log *slog.Logger) (*Driver, error) {
	d := &Driver{eng: eng, log: log, statePath: statePath, api: dockerAPI, eps: map[string]*endpoint{}}
	data, err := os.ReadFile(statePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("docker driver state: %w", err)
	default:
		if err := json.Unmarshal(data, &d.eps); err != nil {
			return nil, fmt.Errorf("docker driver state %s: %w", statePath, err)
		}
	}
	return d, nil
}

// save writes the endpoints (under d.mu), replacing the file atomically.
func (d *Driver) save() error {
	data, err := json.Marshal(d.eps)
	if err != nil {
		return err
	}
	tmp := d.statePath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("docker driver state: %w", err)
	}
	return os.Rename(tmp, d.statePath)
}

// NetworkName is pontoon's name for Docker's network id.
func NetworkName(id string) string { return "docker-" + short(id) }

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Serve answers the protocol on a unix socket at path until ctx ends. The
// directory is made if missing; a stale socket is replaced.
func (d *Driver) Serve(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("docker plugin socket: %w", err)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("docker plugin socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = os.Remove(path)
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("docker plugin socket stopped", "err", err)
		}
	}()
	return nil
}

// Handler is the protocol's HTTP handler.
func (d *Driver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"Implements": []string{"NetworkDriver", "IpamDriver"}})
	})
	calls := map[string]func(ctx context.Context, body []byte) (any, error){
		"GetCapabilities":             d.capabilities,
		"CreateNetwork":               d.createNetwork,
		"DeleteNetwork":               d.deleteNetwork,
		"CreateEndpoint":              d.createEndpoint,
		"DeleteEndpoint":              d.deleteEndpoint,
		"EndpointOperInfo":            d.endpointInfo,
		"Join":                        d.join,
		"Leave":                       d.leave,
		"ProgramExternalConnectivity": d.programExternal,
		"RevokeExternalConnectivity":  d.revokeExternal,
		"DiscoverNew":                 nothing,
		"DiscoverDelete":              nothing,
	}
	for name, f := range calls {
		mux.HandleFunc("POST /NetworkDriver."+name, d.call("NetworkDriver."+name, "Err", f))
	}
	ipam := map[string]func(ctx context.Context, body []byte) (any, error){
		"GetCapabilities":         func(context.Context, []byte) (any, error) { return map[string]bool{"RequiresMACAddress": false}, nil },
		"GetDefaultAddressSpaces": d.addressSpaces,
		"RequestPool":             d.requestPool,
		"ReleasePool":             nothing,
		"RequestAddress":          d.requestAddress,
		"ReleaseAddress":          d.releaseAddress,
	}
	for name, f := range ipam {
		mux.HandleFunc("POST /IpamDriver."+name, d.call("IpamDriver."+name, "Error", f))
	}
	return mux
}

func nothing(context.Context, []byte) (any, error) { return struct{}{}, nil }

// call runs one protocol call: errors go back in the body's errField (Err
// for the network driver, Error for IPAM), as dockerd reads them.
func (d *Driver) call(name, errField string, f func(ctx context.Context, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			reply(w, map[string]string{errField: "read request: " + err.Error()})
			return
		}
		out, err := f(r.Context(), body)
		if err != nil {
			d.log.Warn("docker: "+name, "err", err, "took", time.Since(start).String())
			reply(w, map[string]string{errField: err.Error()})
			return
		}
		d.log.Debug("docker: "+name, "took", time.Since(start).String())
		reply(w, out)
	}
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1+json")
	_ = json.NewEncoder(w).Encode(v)
}

func decode(body []byte, v any) error {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("bad request from dockerd: %w", err)
	}
	return nil
}

func (d *Driver) capabilities(context.Context, []byte) (any, error) {
	return map[string]string{"Scope": "local", "ConnectivityScope": "local"}, nil
}

// ipamData is one pool of a network as CreateNetwork gets it.
type ipamData struct {
	AddressSpace string
	Pool         string
	Gateway      string
}

func (d *Driver) createNetwork(ctx context.Context, body []byte) (any, error) {
	var req struct {
		NetworkID          string
		Options            map[string]any
		IPv4Data, IPv6Data []ipamData
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	spec := model.NetworkSpec{Name: NetworkName(req.NetworkID), Labels: map[string]string{LabelNetworkID: req.NetworkID}}
	for _, data := range append(req.IPv4Data, req.IPv6Data...) {
		p, err := netip.ParsePrefix(data.Pool)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", data.Pool, err)
		}
		s := model.Subnet{Prefix: p.Masked()}
		if data.Gateway != "" {
			gw, err := netip.ParsePrefix(data.Gateway)
			if err != nil {
				return nil, fmt.Errorf("gateway %q: %w", data.Gateway, err)
			}
			s.Gateway = gw.Addr()
		}
		spec.Subnets = append(spec.Subnets, s)
	}
	if v, ok := req.Options["com.docker.network.internal"].(bool); ok {
		spec.Internal = v
	}
	if generic, ok := req.Options["com.docker.network.generic"].(map[string]any); ok {
		if mtu, ok := generic["com.docker.network.driver.mtu"].(string); ok {
			fmt.Sscan(mtu, &spec.MTU)
		}
		if icc, ok := generic["com.docker.network.bridge.enable_icc"].(string); ok {
			on := icc != "false"
			spec.ICC = &on
		}
	}
	if _, err := d.eng.CreateNetwork(ctx, spec); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (d *Driver) deleteNetwork(ctx context.Context, body []byte) (any, error) {
	var req struct{ NetworkID string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	err := d.eng.RemoveNetwork(ctx, NetworkName(req.NetworkID), true)
	if errors.Is(err, model.ErrNotFound) {
		err = nil
	}
	return struct{}{}, err
}

// endpointIface is an endpoint's interface as Docker describes it.
type endpointIface struct {
	Address     string `json:",omitempty"`
	AddressIPv6 string `json:",omitempty"`
	MacAddress  string `json:",omitempty"`
}

func (d *Driver) createEndpoint(_ context.Context, body []byte) (any, error) {
	var req struct {
		NetworkID, EndpointID string
		Interface             *endpointIface
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	ep := &endpoint{NetworkID: req.NetworkID, Network: NetworkName(req.NetworkID)}
	var resp endpointIface
	if i := req.Interface; i != nil {
		for _, a := range []string{i.Address, i.AddressIPv6} {
			if a == "" {
				continue
			}
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, fmt.Errorf("address %q: %w", a, err)
			}
			ep.Addrs = append(ep.Addrs, p)
		}
		ep.MAC = i.MacAddress
	}
	if len(ep.Addrs) == 0 {
		return nil, errors.New("no address for the endpoint: give the network a subnet (docker network create --subnet), with pontoon's or Docker's IPAM")
	}
	if ep.MAC == "" {
		// As Docker derives one: 02:42 and the IPv4 address.
		ep.MAC = model.MACFromIP(ep.Addrs[0].Addr()).String()
		resp.MacAddress = ep.MAC
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.eps[req.EndpointID] = ep
	if err := d.save(); err != nil {
		return nil, err
	}
	if resp.MacAddress == "" {
		return struct{}{}, nil
	}
	return map[string]any{"Interface": resp}, nil
}

func (d *Driver) deleteEndpoint(_ context.Context, body []byte) (any, error) {
	var req struct{ NetworkID, EndpointID string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.eps, req.EndpointID)
	return struct{}{}, d.save()
}

func (d *Driver) endpointInfo(context.Context, []byte) (any, error) {
	return map[string]any{"Value": map[string]any{}}, nil
}

// SandboxName is pontoon's name for the sandbox of a container whose
// namespace is at key (/var/run/docker/netns/<id>).
func SandboxName(key string) string { return "docker-" + short(filepath.Base(key)) }

func (d *Driver) join(ctx context.Context, body []byte) (any, error) {
	var req struct {
		NetworkID, EndpointID, SandboxKey string
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ep := d.eps[req.EndpointID]
	if ep == nil {
		return nil, fmt.Errorf("endpoint %s is unknown to pontoon: recreate it (docker network disconnect, connect)", short(req.EndpointID))
	}
	name := SandboxName(req.SandboxKey)
	if sb, err := d.eng.Sandbox(name); errors.Is(err, model.ErrNotFound) {
		spec := model.SandboxSpec{Name: name, Netns: req.SandboxKey, Docker: true, Labels: map[string]string{LabelSandbox: req.SandboxKey}}
		if _, err := d.eng.CreateSandbox(ctx, spec); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	} else if sb.Netns != req.SandboxKey {
		return nil, fmt.Errorf("sandbox %s is %s, not %s", name, sb.Netns, req.SandboxKey)
	}
	a := model.AttachSpec{Network: ep.Network, MAC: ep.MAC, Claim: true}
	for _, p := range ep.Addrs {
		a.IPs = append(a.IPs, p.Addr())
	}
	pe, err := d.eng.Connect(ctx, name, a)
	if err != nil {
		d.dropIfEmpty(ctx, name)
		return nil, err
	}
	ep.Sandbox = name
	if err := d.save(); err != nil {
		return nil, err
	}
	if d.api != "" {
		go d.identify(req.EndpointID, name)
	}
	resp := map[string]any{
		"InterfaceName":         map[string]string{"SrcName": model.PeerVethName(pe.ID), "DstPrefix": "eth"},
		"DisableGatewayService": true,
	}
	if a4, ok := pe.Addr4(); ok && a4.Gateway.IsValid() {
		resp["Gateway"] = a4.Gateway.String()
	}
	if a6, ok := pe.Addr6(); ok && a6.Gateway.IsValid() {
		resp["GatewayIPv6"] = a6.Gateway.String()
	}
	return resp, nil
}

// dropIfEmpty removes a Docker sandbox left with no endpoint (its
// namespace is Docker's: adopted, never deleted by pontoon).
func (d *Driver) dropIfEmpty(ctx context.Context, name string) {
	sb, err := d.eng.Sandbox(name)
	if err != nil || len(sb.Endpoints) > 0 {
		return
	}
	if err := d.eng.RemoveSandbox(ctx, name); err != nil && !errors.Is(err, model.ErrNotFound) {
		d.log.Warn("docker: remove sandbox", "sandbox", name, "err", err)
	}
}

// joined decodes a request that names an endpoint and returns the
// endpoint, nil when it is unknown or has not joined a container. It
// returns with d.mu held: the caller unlocks.
func (d *Driver) joined(body []byte) (ep *endpoint, id string, err error) {
	var req struct{ NetworkID, EndpointID string }
	if err := decode(body, &req); err != nil {
		return nil, "", err
	}
	d.mu.Lock()
	ep = d.eps[req.EndpointID]
	if ep == nil || ep.Sandbox == "" {
		return nil, req.EndpointID, nil
	}
	return ep, req.EndpointID, nil
}

func (d *Driver) leave(ctx context.Context, body []byte) (any, error) {
	ep, _, err := d.joined(body)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	if ep == nil {
		return struct{}{}, nil
	}
	err = d.eng.Disconnect(ctx, ep.Network, ep.Sandbox)
	if errors.Is(err, model.ErrNotFound) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	d.dropIfEmpty(ctx, ep.Sandbox)
	ep.Sandbox = ""
	return struct{}{}, d.save()
}

// portBinding is one of Docker's port mappings (libnetwork's
// types.PortBinding).
type portBinding struct {
	Proto       int
	IP          string
	Port        int
	HostIP      string
	HostPort    int
	HostPortEnd int
}

var protos = map[int]string{6: "tcp", 17: "udp", 132: "sctp"}

func (d *Driver) programExternal(ctx context.Context, body []byte) (any, error) {
	var req struct {
		NetworkID, EndpointID string
		Options               map[string]json.RawMessage
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	var binds []portBinding
	if raw, ok := req.Options["com.docker.network.portmap"]; ok {
		if err := json.Unmarshal(raw, &binds); err != nil {
			return nil, fmt.Errorf("port map: %w", err)
		}
	}
	if len(binds) == 0 {
		return struct{}{}, nil
	}
	var ports []model.PortMapping
	for _, b := range binds {
		proto, ok := protos[b.Proto]
		if !ok {
			return nil, fmt.Errorf("port %d: protocol %d is not TCP, UDP or SCTP", b.Port, b.Proto)
		}
		if b.HostPort == 0 {
			return nil, fmt.Errorf("port %d/%s: give a host port (-p 8080:%d): pontoon does not pick one", b.Port, proto, b.Port)
		}
		spec := fmt.Sprintf("%d:%d/%s", b.HostPort, b.Port, proto)
		if b.HostPortEnd > b.HostPort {
			spec = fmt.Sprintf("%d-%d:%d-%d/%s", b.HostPort, b.HostPortEnd, b.Port, b.Port+b.HostPortEnd-b.HostPort, proto)
		}
		if h := b.HostIP; h != "" && h != "0.0.0.0" && h != "::" {
			hip, err := netip.ParseAddr(h)
			if err != nil {
				return nil, fmt.Errorf("host address %q: %w", h, err)
			}
			if hip.Is6() {
				spec = "[" + h + "]:" + spec
			} else {
				spec = h + ":" + spec
			}
		}
		m, err := model.ParsePortMapping(spec)
		if err != nil {
			return nil, err
		}
		ports = append(ports, m)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ep := d.eps[req.EndpointID]
	if ep == nil || ep.Sandbox == "" {
		return nil, fmt.Errorf("endpoint %s has not joined a container", short(req.EndpointID))
	}
	return struct{}{}, d.eng.PublishPorts(ctx, ep.Network, ep.Sandbox, ports)
}

func (d *Driver) revokeExternal(ctx context.Context, body []byte) (any, error) {
	ep, _, err := d.joined(body)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	if ep == nil {
		return struct{}{}, nil
	}
	return struct{}{}, d.eng.UnpublishPorts(ctx, ep.Network, ep.Sandbox)
}

func (d *Driver) addressSpaces(context.Context, []byte) (any, error) {
	return map[string]string{"LocalDefaultAddressSpace": AddressSpace, "GlobalDefaultAddressSpace": AddressSpace}, nil
}

// poolPrefix is a pool's ID: its prefix.
func poolPrefix(id string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimPrefix(id, AddressSpace+"/"))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("pool %q is not pontoon's", id)
	}
	return p, nil
}

func (d *Driver) requestPool(_ context.Context, body []byte) (any, error) {
	var req struct {
		AddressSpace, Pool, SubPool string
		V6                          bool
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.SubPool != "" && req.SubPool != req.Pool {
		return nil, errors.New("--ip-range is not supported by pontoon's IPAM driver: leave it out, or use Docker's default IPAM")
	}
	var p netip.Prefix
	if req.Pool != "" {
		var err error
		if p, err = netip.ParsePrefix(req.Pool); err != nil {
			return nil, fmt.Errorf("pool %q: %w", req.Pool, err)
		}
		if err := model.CheckPrefix("subnet", p); err != nil {
			return nil, err
		}
	} else {
		var err error
		if p, err = d.eng.PickSubnet(req.V6); err != nil {
			return nil, err
		}
	}
	return map[string]any{"PoolID": AddressSpace + "/" + p.String(), "Pool": p.String(), "Data": map[string]string{}}, nil
}

// networkOf finds pontoon's network whose subnet is p.
func (d *Driver) networkOf(p netip.Prefix) (string, bool) {
	nets, err := d.eng.Networks()
	if err != nil {
		return "", false
	}
	for _, n := range nets {
		for _, s := range n.Subnets {
			if s.Prefix == p {
				return n.Name, true
			}
		}
	}
	return "", false
}

func (d *Driver) requestAddress(_ context.Context, body []byte) (any, error) {
	var req struct {
		PoolID, Address string
		Options         map[string]string
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	p, err := poolPrefix(req.PoolID)
	if err != nil {
		return nil, err
	}
	var ip netip.Addr
	if req.Address != "" {
		if ip, err = netip.ParseAddr(req.Address); err != nil {
			return nil, fmt.Errorf("address %q: %w", req.Address, err)
		}
	}
	if req.Options["RequestAddressType"] == "com.docker.network.gateway" {
		// The network does not exist yet; its gateway is the bridge's,
		// never a sandbox's.
		if !ip.IsValid() {
			ip = p.Addr().Next()
		}
		return map[string]any{"Address": netip.PrefixFrom(ip, p.Bits()).String(), "Data": map[string]string{}}, nil
	}
	network, ok := d.networkOf(p)
	if !ok {
		return nil, fmt.Errorf("no pontoon network has subnet %s: create the network with -d pontoon --ipam-driver pontoon", p)
	}
	if p.Addr().Is6() && !ip.IsValid() {
		ip, err = d.eng.ReserveAddress6(network)
	} else {
		ip, err = d.eng.ReserveAddress(network, ip)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"Address": netip.PrefixFrom(ip, p.Bits()).String(), "Data": map[string]string{}}, nil
}

func (d *Driver) releaseAddress(_ context.Context, body []byte) (any, error) {
	var req struct{ PoolID, Address string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	p, err := poolPrefix(req.PoolID)
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(req.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", req.Address, err)
	}
	network, ok := d.networkOf(p)
	if !ok {
		return struct{}{}, nil // the network went, and its reservations with it
	}
	return struct{}{}, d.eng.ReleaseAddress(network, ip)
}

// identify asks Docker's API which container endpoint eid is for, and
// records its ID and name on the sandbox: the join itself does not carry
// them, and the container lists the endpoint only once its start went on
// past the join (so this polls, 20 times at most, 250 ms apart).
func (d *Driver) identify(eid, sandbox string) {
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", d.api)
		}}}
	defer cl.CloseIdleConnections()
	for range 20 {
		time.Sleep(250 * time.Millisecond)
		resp, err := cl.Get("http://docker/containers/json?all=1")
		if err != nil {
			d.log.Debug("docker: ask the API for the container", "err", err)
			continue
		}
		var cs []struct {
			ID              string `json:"Id"`
			Names           []string
			NetworkSettings struct {
				Networks map[string]struct{ EndpointID string }
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&cs)
		resp.Body.Close()
		if err != nil {
			d.log.Warn("docker: read the API's container list", "err", err)
			return
		}
		for _, c := range cs {
			for _, n := range c.NetworkSettings.Networks {
				if n.EndpointID != eid {
					continue
				}
				var labels map[string]string
				if len(c.Names) > 0 {
					labels = map[string]string{LabelContainer: strings.TrimPrefix(c.Names[0], "/")}
				}
				if err := d.eng.SetContainer(sandbox, c.ID, labels); err != nil {
					d.log.Warn("docker: record the container of a sandbox", "sandbox", sandbox, "err", err)
				}
				return
			}
		}
	}
	d.log.Warn("docker: no container found for an endpoint; its sandbox shows no container", "sandbox", sandbox, "endpoint", short(eid))
}
