// Package store keeps pontoon's state: networks, sandboxes, endpoints and
// IP reservations. Open gives the bbolt implementation (one file under the
// daemon's root); NewMemory an in-memory one with the same semantics for
// unit tests. A Tx sees a consistent snapshot; Update commits atomically or
// not at all, so an IP reservation and the endpoint that owns it are always
// written together.
//
// Every committing Update advances the store's revision, and Watch streams
// the changes committed after a revision (watch.go): a cluster layer lists
// the state in a View, takes the View's Tx.Revision, and watches from
// there, missing nothing and seeing nothing twice.
package store

import (
	"context"
	"net/netip"

	"pontoon/internal/model"
)

// Store is a transactional state store.
type Store interface {
	// Update runs fn in a read-write transaction, committed when fn
	// returns nil and rolled back otherwise; it returns after the commit.
	// Concurrent Updates may share one commit (group commit), and fn may
	// run more than once before it commits — bbolt's group commit reruns
	// a batch without a failed member, etcd's optimistic transactions rerun
	// fn when another writer changed what it read: fn must be free of side
	// effects outside the transaction (no sends, no appends to outer
	// slices, no counters), except setting variables it sets afresh on
	// every run, so that it is safe to retry. NewMemory runs every
	// successful fn twice to catch those.
	//
	// ctx bounds the Update until its commit begins: the wait for the
	// writer (bbolt: for a group commit), every read, back-off and retry
	// (etcd). When ctx ends before the commit, Update returns ctx.Err()
	// (wrapped for etcd reads; test with errors.Is) and nothing of fn's is
	// written. A commit that has begun is finished and stands: Update then
	// returns its outcome whatever ctx does meanwhile (etcd: the commit
	// request is bounded by requestTimeout, not by ctx), so an error never
	// leaves the caller wondering whether its writes landed.
	//
	// An Update that writes (any Put, Delete, Reserve, Release, Set…)
	// advances the revision when it commits; one that only reads, fails
	// or is rolled back does not. memory and bbolt: by exactly one per
	// Update, even when Updates share a group commit. etcd: to the
	// revision of its commit, which also counts other writers of the same
	// etcd (other daemons, other prefixes): it increases, not by one.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction (write methods fail) on one
	// consistent state; ctx bounds its reads (etcd) and is checked before
	// fn runs (all).
	View(ctx context.Context, fn func(Tx) error) error
	// Watch streams every change committed at a revision > fromRev, in
	// revision order, until ctx ends (then the channel closes). See Event
	// for what a change looks like and watch.go for the guarantees. A
	// fromRev older than the history the store keeps gives ErrCompacted
	// (wrapped): list again in a View and watch from its Tx.Revision.
	Watch(ctx context.Context, fromRev int64) (<-chan Event, error)
	Close() error
}

// Tx is a transaction. Getters return model.ErrNotFound (wrapped, test with
// errors.Is) for missing objects. Returned objects are copies.
//
// Records are stored under their ID (layout in tx.go); the getters by name
// go through a name index. Put* of a record needs its ID and name. A
// record put again under its ID with another name is renamed (the old name
// is free at once); a name held by another record is an ErrConflict. The
// Delete* methods succeed when the name is missing.
type Tx interface {
	// Revision is the revision of the state the transaction reads: every
	// change committed at a revision ≤ it is visible, none after. In an
	// Update it is the revision before the Update's own writes. etcd: a
	// Tx that has not read yet takes its snapshot here (a read); when that
	// read fails, Revision returns 0 and the transaction fails with the
	// read's error.
	Revision() int64

	Network(name string) (*model.Network, error)
	NetworkByID(id string) (*model.Network, error)
	Networks() ([]*model.Network, error) // sorted by name
	PutNetwork(n *model.Network) error
	// DeleteNetwork also deletes the network's reservations and cursors.
	DeleteNetwork(name string) error

	Sandbox(name string) (*model.Sandbox, error)
	SandboxByID(id string) (*model.Sandbox, error)
	Sandboxes() ([]*model.Sandbox, error) // sorted by name
	PutSandbox(s *model.Sandbox) error
	DeleteSandbox(name string) error
	// SandboxesOfContainer returns the names of the sandboxes recorded
	// with a container ID, sorted; it reads an index kept by PutSandbox
	// and DeleteSandbox.
	SandboxesOfContainer(containerID string) ([]string, error)

	// Endpoints are found by (sandbox, network) name, through an index: a
	// sandbox has at most one endpoint per network, and PutEndpoint of an
	// endpoint with another ID on the same pair replaces the one there.
	Endpoint(sandbox, network string) (*model.Endpoint, error)
	Endpoints() ([]*model.Endpoint, error)                        // sorted by sandbox, then network
	EndpointsOfSandbox(sandbox string) ([]*model.Endpoint, error) // sorted by IfName index (eth0, eth1, … eth10)
	EndpointsOnNetwork(network string) ([]*model.Endpoint, error) // sorted by sandbox
	PutEndpoint(e *model.Endpoint) error
	DeleteEndpoint(sandbox, network string) error
	// NameHolders returns the sandboxes whose endpoint on network answers
	// to the DNS name key (model.DNSKey) as their sandbox name, or with
	// alias set as one of their aliases; sorted. It reads an index kept by
	// PutEndpoint and DeleteEndpoint: its cost is that of the holders, not
	// of the network's endpoints.
	NameHolders(network, key string, alias bool) ([]string, error)
	// EndpointsOnHostPort returns the endpoints, in any state, with a
	// mapping of proto that covers host port port, on any host address;
	// sorted by sandbox, then network. It reads an index kept by
	// PutEndpoint and DeleteEndpoint: its cost is that of the holders, not
	// of every endpoint (port conflict checks).
	EndpointsOnHostPort(proto string, port uint16) ([]*model.Endpoint, error)

	// IP reservations, per network, IPv4 and IPv6 alike, keyed by the
	// network's ID (model.Network.ID: a network removed and created again
	// under its name starts with none). Owner is an endpoint ID. An
	// address with a zone, or the zero Addr, is an ErrInvalid.
	Reservation(networkID string, ip netip.Addr) (owner string, ok bool, err error)
	Reserve(networkID string, ip netip.Addr, owner string) error // ErrConflict if held
	Release(networkID string, ip netip.Addr) error               // missing is success
	Reservations(networkID string) (map[netip.Addr]string, error)
	// Cursor is the last address handed out on a network in a family
	// (IPv6 when v6; next-fit allocation); the zero Addr when none.
	// SetCursor sets the cursor of ip's family.
	Cursor(networkID string, v6 bool) (netip.Addr, error)
	SetCursor(networkID string, ip netip.Addr) error

	// Meta is a small key/value space (schema version, etc.).
	Meta(key string) (string, error) // "" when unset
	SetMeta(key, value string) error
}
