// Package api is the client side of pontoon's HTTP/JSON API over a unix
// socket (documented in docs/api.md) and the wire types it shares with the
// server (package daemon). It imports only model, so that clients — the
// CLI and the CNI plugin — do not link the engine's kernel adapters.
package api

import (
	"net/netip"

	"pontoon/internal/model"
)

// Version of the API, in the path of every route.
const Version = "v1"

// Status is the answer of GET /v1/status.
type Status struct {
	Ready   bool    `json:"ready"`
	PID     int     `json:"pid"`
	Version string  `json:"version"`
	Healing Healing `json:"healing"`
	// Build is the daemon binary's build (see Build).
	Build string `json:"build,omitempty"`
}

// Healing is what self-healing did since the daemon started.
type Healing struct {
	// Running is false when the daemon runs with --self-heal=false.
	Running bool `json:"running"`
	// Repairs counts repairs by kind of object: bridge, veth, port, link,
	// address, route, rule, sysctl, firewall, namespace, and released (a
	// sandbox whose adopted namespace died, released).
	Repairs map[string]uint64 `json:"repairs"`
	// Unrepaired maps an object to what is wrong with it, for drift the
	// last attempt could not repair.
	Unrepaired map[string]string `json:"unrepaired,omitempty"`
}

// ConnectRequest is the body of POST /v1/networks/{name}/connect.
// The attachment is a model.AttachSpec (its network is the path's).
type ConnectRequest struct {
	Sandbox string `json:"sandbox"`
	model.AttachSpec
}

// DisconnectRequest is the body of POST /v1/networks/{name}/disconnect.
type DisconnectRequest struct {
	Sandbox string `json:"sandbox"`
}

// CNIAddRequest is the body of POST /v1/cni/add: a CNI ADD of one
// interface of a runtime's container, as one request (the plugin sends it).
// The container's sandbox is named model.CNISandboxName(ContainerID).
type CNIAddRequest struct {
	ContainerID string `json:"container_id"`
	Netns       string `json:"netns"`
	IfName      string `json:"ifname"`
	Network     string `json:"network"`
	// IPs are static addresses (CNI's "ips" capability), one per family.
	IPs    []netip.Addr        `json:"ips,omitempty"`
	MAC    string              `json:"mac,omitempty"`
	Ports  []model.PortMapping `json:"ports,omitempty"`
	Labels map[string]string   `json:"labels,omitempty"`
	// Aliases are DNS names of the container on the network besides its
	// sandbox name: its name (CNI_ARGS K8S_POD_NAME) first, then the
	// runtime's aliases (the aliases capability).
	Aliases []string `json:"aliases,omitempty"`
}

// CNIAddResult is the answer of POST /v1/cni/add.
type CNIAddResult struct {
	Sandbox  string          `json:"sandbox"`
	Netns    string          `json:"netns"`
	Endpoint *model.Endpoint `json:"endpoint"`
}

// CNIDelRequest is the body of POST /v1/cni/del: a CNI DEL of one
// interface of a container.
type CNIDelRequest struct {
	ContainerID string `json:"container_id"`
	IfName      string `json:"ifname"`
	Network     string `json:"network"`
}

// ErrorBody is the JSON of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	// Kind is one of invalid, not_found, conflict, exhausted, unavailable,
	// internal.
	Kind string `json:"kind"`
}

// Problem is one way a sandbox's kernel state differs from what pontoon
// recorded (answer of POST /v1/sandboxes/{name}/check).
type Problem struct {
	Network string `json:"network,omitempty"`
	IfName  string `json:"ifname,omitempty"`
	Problem string `json:"problem"`
}

// Finding is one result of GET /v1/doctor.
type Finding struct {
	Level   string `json:"level"` // ok, info, warn, error
	Check   string `json:"check"`
	Message string `json:"message"`
}

// Finding levels.
const (
	LevelOK    = "ok"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)
