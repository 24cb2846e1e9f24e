package model

import (
	"net/netip"
	"time"
)

// Request and response shapes shared by the engine, the API server and its
// clients (CLI, CNI plugin). They live here so that a client does not link
// the engine and its kernel adapters.

// AttachSpec asks for a sandbox's endpoint on a network.
type AttachSpec struct {
	Network string `json:"network"`
	// IPs asks for static addresses, at most one per family of the
	// network; a family left out gets an address from the IPAM.
	IPs     []netip.Addr `json:"ips,omitempty"`
	Aliases []string     `json:"aliases,omitempty"`
	// IfName names the interface inside the sandbox (CNI_IFNAME); default
	// the lowest free ethN.
	IfName string `json:"ifname,omitempty"`
	// MAC overrides the MAC derived from the address (CNI's "mac"
	// capability).
	MAC string `json:"mac,omitempty"`
	// Ports to publish (clients parse the -p syntax with
	// ParsePortMapping).
	Ports []PortMapping `json:"ports,omitempty"`
	// VLAN puts the endpoint in that VLAN (1–4094), on a network created
	// with vlan_filtering only.
	VLAN int `json:"vlan,omitempty"`
	// Tap makes the endpoint a VM's tap device; set by SandboxSpec.Tap.
	Tap *TapSpec `json:"-"`
	// Claim: the IPs were handed out ahead of the endpoint
	// (engine.ReserveAddress, for Docker's IPAM) and the attach takes
	// their reservations over. In-process callers only.
	Claim bool `json:"-"`
}

// TapSpec asks for a VM's tap device (`pontoon tap create`).
type TapSpec struct {
	// Name of the tap device; default ptt- and a hash of the endpoint.
	Name string `json:"name,omitempty"`
	TapOptions
}

// Check validates a tap request: a valid interface name when one is
// given, owner and group -1 (anyone) or a user and group ID.
func (t *TapSpec) Check() error {
	if t.Name != "" {
		if err := ValidateIfName("tap name", t.Name); err != nil {
			return err
		}
	}
	if t.Owner < -1 || t.Group < -1 {
		return Invalidf("tap owner %d, group %d: give a user and group ID, or -1 for anyone", t.Owner, t.Group)
	}
	return nil
}

// SandboxSpec asks for a sandbox.
type SandboxSpec struct {
	Name string `json:"name"`
	// Netns adopts an existing namespace by path; PID adopts a process's.
	// With neither, pontoon creates and pins a new namespace.
	Netns string `json:"netns,omitempty"`
	PID   int    `json:"pid,omitempty"`
	// Host makes a sandbox that stands for the host's own namespace
	// (`--network host`): no new namespace, no endpoints.
	Host bool `json:"host,omitempty"`
	// Tap makes a VM's sandbox: no namespace, one network (Networks holds
	// exactly one), whose endpoint is a tap device the hypervisor opens.
	Tap *TapSpec `json:"tap,omitempty"`
	// Docker makes a Docker container's sandbox (Netns is dockerd's
	// sandbox key, which need not be a namespace yet); set by pontoon's
	// Docker driver, in process.
	Docker      bool              `json:"-"`
	ContainerID string            `json:"container_id,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Networks    []AttachSpec      `json:"networks,omitempty"`
}

// SandboxInfo is a sandbox with its endpoints, in interface order.
type SandboxInfo struct {
	Sandbox
	Endpoints []*Endpoint `json:"endpoints"`
	// ResolvConf is the sandbox's resolv.conf (its primary network's
	// resolver), bind-mounted over /etc/resolv.conf by `pontoon exec`.
	ResolvConf string `json:"resolv_conf,omitempty"`
	// Drift says where the host's kernel disagrees with the records: the
	// namespace, and each endpoint's host end ("eth0: host end ptv-… is
	// down"), as the topology reports them. Absent when they agree.
	Drift []string `json:"drift,omitempty"`
}

// NetworkInfo is a network with its endpoints.
type NetworkInfo struct {
	Network
	Endpoints []*Endpoint `json:"endpoints"`
	// Drift says where the host's kernel disagrees with the records: the
	// bridge, and each endpoint's host end ("sandbox a eth0: host end
	// ptv-… is down"), as the topology reports them. Absent when they agree.
	Drift []string `json:"drift,omitempty"`
	// Cluster is an overlay network across the cluster's nodes, as etcd
	// has it when asked; absent on other networks.
	Cluster *ClusterNetwork `json:"cluster,omitempty"`
}

// ClusterNetwork is an overlay network across the cluster (the network's
// "overlay" has its whole subnet, VNI and slice size).
type ClusterNetwork struct {
	// (How the slices reach each other is the network's overlay mode.)
	// Nodes are the nodes holding a slice of the network, by name: this
	// one (self) and its peers, live or not (a node that died keeps its
	// slice for when it comes back).
	Nodes []ClusterNetworkNode `json:"nodes"`
	// StaticIPs are the addresses reserved across the cluster by a static
	// --ip, with their holders ("node/sandbox").
	StaticIPs map[netip.Addr]string `json:"static_ips,omitempty"`
	// Error says why the cluster could not be read (etcd unreachable);
	// the other fields are then empty, the local part stands.
	Error string `json:"error,omitempty"`
}

// ClusterNetworkNode is one node's part of an overlay network.
type ClusterNetworkNode struct {
	Node string `json:"node"`
	// Slices are the node's slices of the network, one per family of its
	// subnets, IPv4 first.
	Slices []netip.Prefix `json:"slices"`
	// Underlay and VTEPMAC are where the node's VXLAN device is reached
	// (absent while the node is not live; VTEPMAC only in vxlan mode):
	// the node's record's, the same as in its ClusterNode.
	Underlay netip.Addr `json:"underlay,omitzero"`
	VTEPMAC  string     `json:"vtep_mac,omitempty"`
	Live     bool       `json:"live"`           // its etcd record is kept alive
	Self     bool       `json:"self,omitempty"` // the node answering
}

// PortInfo is one published mapping as GET /v1/ports lists it.
type PortInfo struct {
	Sandbox string `json:"sandbox"`
	Network string `json:"network"`
	// IPs are the endpoint's addresses the mapping forwards to, one per
	// family.
	IPs     []netip.Addr `json:"ips"`
	Mapping PortMapping  `json:"mapping"`
	// Reachable says from where, for people: "LAN, host, sandboxes (every
	// host address; …)", "host only (127.0.0.1)".
	Reachable string `json:"reachable"`
	// ReachableFrom says the same for programs: "lan", "host",
	// "sandboxes", read off the firewall's rules for the mapping.
	ReachableFrom []string `json:"reachable_from"`
}

// ClusterNode is one node of the cluster as `pontoon node ls` shows it
// (GET /v1/nodes).
type ClusterNode struct {
	Name     string     `json:"name"`
	Underlay netip.Addr `json:"underlay"`
	// VTEPMAC is the MAC of all of the node's VXLAN devices, one per
	// node, as its record in etcd has it: what the other nodes program
	// for it (neighbour and FDB entries).
	VTEPMAC string `json:"vtep_mac,omitempty"`
	// Slices are the node's slices, by overlay network: one per family
	// of the network's subnets, IPv4 first.
	Slices   map[string][]netip.Prefix `json:"slices"`
	Started  time.Time                 `json:"started"`
	LastSeen time.Time                 `json:"last_seen"`
	Self     bool                      `json:"self,omitempty"` // the node answering
	// Health is the answering node's trouble with the cluster ("": none):
	// etcd unreachable, its membership lost. Its data plane stays as it
	// was meanwhile.
	Health string `json:"health,omitempty"`
}

// ClusterNodeInfo is one node as `pontoon node inspect` shows it (GET
// /v1/nodes/{name}).
type ClusterNodeInfo struct {
	ClusterNode
	// StaticIPs are the addresses the node's sandboxes hold by a static
	// --ip, by overlay network: address → sandbox.
	StaticIPs map[string]map[netip.Addr]string `json:"static_ips,omitempty"`
}

// ForgottenNode is what `pontoon node rm` released of a node gone for good
// (DELETE /v1/nodes/{name}): its slices of each overlay network, the names
// of its sandboxes, and its static addresses.
type ForgottenNode struct {
	Slices map[string][]string `json:"slices"` // network → its slices, IPv4 first
	Names  int                 `json:"names"`
	Static int                 `json:"static_ips"`
}
