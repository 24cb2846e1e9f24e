package model

import (
	"net/netip"
	"strings"
)

// Topology is the picture of one host as it is now: networks, their
// bridges and ports, each port's veth pair and sandbox, addresses,
// published ports and DNS names, with drift marked where the kernel
// disagrees with the state (GET /v1/topology, `pontoon topology`).
type Topology struct {
	Host      string            `json:"host"` // the daemon's hostname
	Networks  []*TopoNetwork    `json:"networks"`
	Sandboxes []*TopoSandbox    `json:"sandboxes"`
	Drift     []string          `json:"drift,omitempty"` // host-wide (firewall, ip_forward)
	Healing   map[string]uint64 `json:"repairs,omitempty"`
	Uplinks   []TopoUplink      `json:"uplinks,omitempty"`
}

// TopoUplink is a host link with a default route: the way out.
type TopoUplink struct {
	Name  string `json:"name"`
	Index int    `json:"ifindex"`
	MTU   int    `json:"mtu"`
}

// TopoNetwork is a network and its bridge.
type TopoNetwork struct {
	Name        string      `json:"name"`
	Driver      string      `json:"driver"`
	Subnets     []Subnet    `json:"subnets"`
	Internal    bool        `json:"internal"`
	Bridge      string      `json:"bridge"`
	BridgeIndex int         `json:"bridge_ifindex"`
	Ports       []*TopoPort `json:"ports"`
	Drift       []string    `json:"drift,omitempty"`
}

// TopoPort is one endpoint: a bridge port (the host end of a veth pair)
// and its peer inside a sandbox.
type TopoPort struct {
	Sandbox   string       `json:"sandbox"`
	HostIf    string       `json:"host_if"`
	HostIndex int          `json:"host_ifindex"`
	IfName    string       `json:"ifname"`
	IPs       []netip.Addr `json:"ips"`
	MAC       string       `json:"mac"`
	Names     []string     `json:"names"`               // DNS names on the network
	Published []string     `json:"published,omitempty"` // host side → sandbox port
	Drift     []string     `json:"drift,omitempty"`
	// Stats are the endpoint's counters as the sandbox sees them, read
	// from its host end (as Endpoint.Stats); nil without a host end, or
	// when it is missing.
	Stats *EndpointStats `json:"stats,omitempty"`
}

// TopoSandbox is a sandbox and where its namespace comes from.
type TopoSandbox struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	Netns    string   `json:"netns"`
	Networks []string `json:"networks"`
	Drift    []string `json:"drift,omitempty"`
}

// SubnetString renders the network's subnets: "10.90.1.0/24, fd00:1::/64".
func (n *TopoNetwork) SubnetString() string {
	return joinAddrs(n.Subnets, func(s Subnet) string { return s.Prefix.String() })
}

// GatewayString renders the network's gateways: "10.90.1.1, fd00:1::1".
func (n *TopoNetwork) GatewayString() string {
	s := joinAddrs(n.Subnets, func(s Subnet) string {
		if !s.Gateway.IsValid() {
			return ""
		}
		return s.Gateway.String()
	})
	if strings.Trim(s, ", ") == "" {
		return "none"
	}
	return s
}

// IPString renders the port's addresses: "10.90.1.5, fd00:1::5".
func (p *TopoPort) IPString() string {
	return joinAddrs(p.IPs, netip.Addr.String)
}

func joinAddrs[T any](xs []T, f func(T) string) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ", "
		}
		s += f(x)
	}
	return s
}
