package model

import "net/netip"

// NetworkFDB is what a network's switch on this host knows at layer 2
// (GET /v1/networks/{name}/fdb, `pontoon network fdb`): the seeds'
// `brctl showmacs`, `bridge fdb` and `ip neigh`, read from the host's
// namespace, each entry with the sandbox (or, on an overlay's VXLAN
// device, the node) it leads to.
type NetworkFDB struct {
	Network string `json:"network"`
	Driver  string `json:"driver"`
	// Devices are the bridge and, on a VXLAN overlay, the VXLAN device.
	Devices []FDBDevice `json:"devices"`
}

// FDBDevice is one device's forwarding entries and the host's neighbour
// entries on it.
type FDBDevice struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // "bridge" or "vxlan"
	// Entries: a bridge's learned (and static) entries by port, its local
	// ones left out; a VXLAN device's entries, one per remote VTEP.
	Entries    []FDBEntry  `json:"entries"`
	Neighbours []Neighbour `json:"neighbours"`
}

// FDBEntry is one forwarding entry: frames to MAC go out of Port (a
// sandbox's host end, a VM's tap), or on a VXLAN device to the remote
// VTEP Dst.
type FDBEntry struct {
	MAC  string `json:"mac"`
	Port string `json:"port"`
	// Sandbox and IfName are the endpoint whose host end Port is ("":
	// a port that is no endpoint's).
	Sandbox string `json:"sandbox,omitempty"`
	IfName  string `json:"ifname,omitempty"`
	VLAN    int    `json:"vlan,omitempty"`
	// State: "dynamic" (learned), "stale" (learned, older than the
	// bridge's ageing time, about to go), "static" or "permanent".
	State string `json:"state"`
	// AgeSeconds is how long ago the bridge last saw a frame from MAC,
	// for learned entries.
	AgeSeconds float64 `json:"age_seconds,omitempty"`
	// Dst and Node: a VXLAN entry's remote underlay address and the node
	// that has it.
	Dst  netip.Addr `json:"dst,omitzero"`
	Node string     `json:"node,omitempty"`
}

// Neighbour is one of the host's neighbour entries on a device.
type Neighbour struct {
	IP    netip.Addr `json:"ip"`
	MAC   string     `json:"mac,omitempty"` // none while unresolved
	State string     `json:"state"`         // as ip neigh says it: REACHABLE, STALE, FAILED, …
	// Sandbox and IfName are the endpoint with that address (or, for an
	// IPv6 link-local address, that MAC); Node, on a VXLAN device, the
	// node whose slice the address is.
	Sandbox string `json:"sandbox,omitempty"`
	IfName  string `json:"ifname,omitempty"`
	Node    string `json:"node,omitempty"`
}
