package model

import "time"

// Event kinds.
const (
	EventNetworkCreated = "network-created"
	EventNetworkRemoved = "network-removed"
	EventSandboxCreated = "sandbox-created"
	EventSandboxRemoved = "sandbox-removed"
	EventAttached       = "attached"
	EventDetached       = "detached"
	EventPublished      = "published"
	EventUnpublished    = "unpublished"
	EventRepaired       = "repaired" // self-healing put something back
	EventReleased       = "released" // a sandbox whose adopted namespace died
	EventProblem        = "problem"  // self-healing could not repair something
	EventFirewallSynced = "firewall-synced"
	EventFailed         = "failed" // an operation (Op) failed and was rolled back
	// EventGap tells a reader of the stream that Lost events were dropped
	// because it read too slowly.
	EventGap = "gap"
)

// Event is one entry of the event feed (GET /v1/events, `pontoon events`).
type Event struct {
	ID      uint64    `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Network string    `json:"network,omitempty"`
	Sandbox string    `json:"sandbox,omitempty"`
	// Op names the operation of a "failed" event (attach, detach,
	// create-network, …) and the kind of object of a "repaired" one
	// (bridge, veth, port, address, …).
	Op     string `json:"op,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Seconds is how long the operation took (attach, detach, publish,
	// firewall sync, repair), when it is timed.
	Seconds float64 `json:"seconds,omitempty"`
	// Lost is set on a "gap" event a subscriber's reader gets: that many
	// events were dropped because it read too slowly.
	Lost uint64 `json:"lost,omitempty"`
}
