package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"pontoon/internal/model"
)

// kv is the sorted key/value space a transaction works on. bbolt and the
// in-memory store implement it, so both share one Tx implementation and
// have the same semantics by construction.
//
// Bucket names are the constants below, or "ipam/<network>" for a network's
// reservations (a nested bucket in bbolt, created on first write).
type kv interface {
	// get returns nil, nil when the key is missing, and an error when it
	// could not read (etcd: a failed request).
	get(bucket string, key []byte) ([]byte, error)
	put(bucket string, key, val []byte) error
	del(bucket string, key []byte) error // missing is success
	// scan calls fn for every key with the prefix, in key order. fn must
	// not write to the bucket being scanned.
	scan(bucket string, prefix []byte, fn func(k, v []byte) error) error
	dropBucket(bucket string) error // missing is success
	writable() bool
	// revision is the revision the transaction reads at (Tx.Revision).
	revision() int64
}

// Buckets (layout 2, layoutVersion). Records are keyed by their ID; names
// reach them through name indexes, so that a rename rewrites one index
// entry and not every record that refers to the name, and a name freed and
// taken again never aliases the records of the one before (a network's
// reservations are keyed by its ID). Index keys join two names with a NUL,
// which no name may contain (model.ValidateName), so prefix scans are
// exact.
const (
	bNetworks  = "networks"      // network ID → network
	bNetNames  = "network-names" // network name → network ID (index)
	bSandboxes = "sandboxes"     // sandbox ID → sandbox
	bSbNames   = "sandbox-names" // sandbox name → sandbox ID (index)
	bEndpoints = "endpoints"     // endpoint ID → endpoint
	bEpKeys    = "endpoint-keys" // sandbox \x00 network → endpoint ID (index)
	bEpByNet   = "endpoints-net" // network \x00 sandbox → endpoint ID (index)
	bIPAM      = "ipam"          // parent of ipam/<network ID>: IP (4 or 16 bytes) → owner
	bCursors   = "cursors"       // network ID → IPv4 (4 bytes); network ID \x00 "ipv6" → IPv6 (16 bytes)
	bMeta      = "meta"
)

// layoutVersion is the layout of the buckets above, in meta key layoutKey.
// 1 (or no key): records keyed by name, reservations and cursors by
// network name; Open of a bbolt file moves it to 2 (migrateToIDKeys).
const (
	layoutVersion = "2"
	layoutKey     = "store.layout"
)

var buckets = []string{bNetworks, bNetNames, bSandboxes, bSbNames, bSbContainers, bEndpoints, bEpKeys, bEpByNet, bEpNames, bEpPorts, bIPAM, bCursors, bMeta}

// ipamBucket names the bucket of a network's reservations.
func ipamBucket(networkID string) string { return bIPAM + "/" + networkID }

// ErrReadOnly is returned by write methods in a View transaction.
var ErrReadOnly = errors.New("store: write in a read-only transaction")

type tx struct{ kv kv }

func (t tx) Revision() int64 { return t.kv.revision() }

func (t tx) checkWritable() error {
	if !t.kv.writable() {
		return ErrReadOnly
	}
	return nil
}

func (t tx) put(bucket string, key []byte, v any) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if len(key) == 0 {
		return model.Invalidf("store: cannot save a record with an empty name")
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.kv.put(bucket, key, data)
}

func (t tx) del(bucket string, key []byte) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	return t.kv.del(bucket, key)
}

func decode[T any](data []byte) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("store: corrupt record: %w", err)
	}
	// Records written by an older layout are read into today's.
	if u, ok := any(v).(interface{ UpgradeFrom([]byte) error }); ok {
		if err := u.UpgradeFrom(data); err != nil {
			return nil, fmt.Errorf("store: upgrade record: %w", err)
		}
	}
	return v, nil
}

func list[T any](t tx, bucket string, prefix []byte) ([]*T, error) {
	var out []*T
	err := t.kv.scan(bucket, prefix, func(_, v []byte) error {
		x, err := decode[T](v)
		if err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// record returns the record of bucket keyed id; nil, nil when missing.
func record[T any](t tx, bucket, id string) (*T, error) {
	if id == "" {
		return nil, nil
	}
	v, err := t.kv.get(bucket, []byte(id))
	if v == nil || err != nil {
		return nil, err
	}
	return decode[T](v)
}

// idOf reads a name index: the ID key maps to, "" when none.
func (t tx) idOf(index string, key []byte) (string, error) {
	v, err := t.kv.get(index, key)
	return string(v), err
}

// byName resolves name through index and reads the record it names; nil,
// nil when the name is not taken. An index entry without its record is a
// corrupt state file, and says so.
func byName[T any](t tx, index, bucket string, key []byte) (*T, error) {
	id, err := t.idOf(index, key)
	if id == "" || err != nil {
		return nil, err
	}
	r, err := record[T](t, bucket, id)
	if r == nil && err == nil {
		return nil, fmt.Errorf("store: index %s names %q as record %s, which is missing (corrupt state: restore the state file from a backup)", index, key, id)
	}
	return r, err
}

// claimName checks that name is free in index or already maps to id, for
// a record about to be put under id.
func (t tx) claimName(index, what, name, id string) error {
	switch {
	case id == "":
		return model.Invalidf("store: %s %q has no ID", what, name)
	case name == "":
		return model.Invalidf("store: cannot save a %s with an empty name", what)
	}
	held, err := t.idOf(index, []byte(name))
	if err != nil {
		return err
	}
	if held != "" && held != id {
		return model.Conflictf("%s name %q is taken by another %s (ID %s): remove it first, or pick another name", what, name, what, held)
	}
	return nil
}

func key2(a, b string) []byte { return []byte(a + "\x00" + b) }

func (t tx) Network(name string) (*model.Network, error) {
	n, err := byName[model.Network](t, bNetNames, bNetworks, []byte(name))
	if n == nil && err == nil {
		return nil, model.NotFoundf("network %q not found: list networks with `pontoon network ls`", name)
	}
	return n, err
}

func (t tx) NetworkByID(id string) (*model.Network, error) {
	n, err := record[model.Network](t, bNetworks, id)
	if n == nil && err == nil {
		return nil, model.NotFoundf("no network with ID %q: list networks with `pontoon network ls`", id)
	}
	return n, err
}

func (t tx) Networks() ([]*model.Network, error) {
	nets, err := list[model.Network](t, bNetworks, nil)
	slices.SortFunc(nets, func(a, b *model.Network) int { return strings.Compare(a.Name, b.Name) })
	return nets, err
}

func (t tx) PutNetwork(n *model.Network) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if err := t.claimName(bNetNames, "network", n.Name, n.ID); err != nil {
		return err
	}
	old, err := record[model.Network](t, bNetworks, n.ID)
	if err != nil {
		return err
	}
	if err := t.put(bNetworks, []byte(n.ID), n); err != nil {
		return err
	}
	if old != nil && old.Name == n.Name {
		return nil
	}
	if old != nil { // renamed: so are its endpoints' references
		if err := t.kv.del(bNetNames, []byte(old.Name)); err != nil {
			return err
		}
		eps, err := t.EndpointsOnNetwork(old.Name)
		if err != nil {
			return err
		}
		if err := t.rehome(eps, func(ep *model.Endpoint) { ep.Network = n.Name }); err != nil {
			return err
		}
	}
	return t.kv.put(bNetNames, []byte(n.Name), []byte(n.ID))
}

// rehome carries a rename of a sandbox or a network to the endpoints that
// name it: each is unindexed, changed by set, written and indexed again.
func (t tx) rehome(eps []*model.Endpoint, set func(*model.Endpoint)) error {
	for _, ep := range eps {
		if err := t.unindexEndpoint(ep); err != nil {
			return err
		}
		set(ep)
		if err := t.put(bEndpoints, []byte(ep.ID), ep); err != nil {
			return err
		}
		if err := t.indexEndpoint(ep); err != nil {
			return err
		}
	}
	return nil
}

func (t tx) DeleteNetwork(name string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	id, err := t.idOf(bNetNames, []byte(name))
	if id == "" || err != nil {
		return err // missing is success
	}
	if err := errors.Join(t.kv.del(bNetworks, []byte(id)), t.kv.del(bNetNames, []byte(name))); err != nil {
		return err
	}
	if err := t.kv.dropBucket(ipamBucket(id)); err != nil {
		return err
	}
	if err := t.kv.del(bCursors, cursorKey(id, false)); err != nil {
		return err
	}
	return t.kv.del(bCursors, cursorKey(id, true))
}

func (t tx) Sandbox(name string) (*model.Sandbox, error) {
	s, err := t.storedSandbox(name)
	if s == nil && err == nil {
		return nil, model.NotFoundf("sandbox %q not found: list sandboxes with `pontoon sandbox ls`", name)
	}
	return s, err
}

func (t tx) SandboxByID(id string) (*model.Sandbox, error) {
	s, err := record[model.Sandbox](t, bSandboxes, id)
	if s == nil && err == nil {
		return nil, model.NotFoundf("no sandbox with ID %q: list sandboxes with `pontoon sandbox ls`", id)
	}
	return s, err
}

func (t tx) Sandboxes() ([]*model.Sandbox, error) {
	sbs, err := list[model.Sandbox](t, bSandboxes, nil)
	slices.SortFunc(sbs, func(a, b *model.Sandbox) int { return strings.Compare(a.Name, b.Name) })
	return sbs, err
}

func (t tx) PutSandbox(s *model.Sandbox) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if err := t.claimName(bSbNames, "sandbox", s.Name, s.ID); err != nil {
		return err
	}
	old, err := record[model.Sandbox](t, bSandboxes, s.ID)
	if err != nil {
		return err
	}
	if err := t.put(bSandboxes, []byte(s.ID), s); err != nil {
		return err
	}
	if old == nil || old.Name != s.Name {
		if old != nil { // renamed: so are its endpoints' references
			if err := t.kv.del(bSbNames, []byte(old.Name)); err != nil {
				return err
			}
			eps, err := t.EndpointsOfSandbox(old.Name)
			if err != nil {
				return err
			}
			if err := t.rehome(eps, func(ep *model.Endpoint) { ep.Sandbox = s.Name }); err != nil {
				return err
			}
		}
		if err := t.kv.put(bSbNames, []byte(s.Name), []byte(s.ID)); err != nil {
			return err
		}
	}
	return t.reindexContainer(old, s)
}

func (t tx) DeleteSandbox(name string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	id, err := t.idOf(bSbNames, []byte(name))
	if id == "" || err != nil {
		return err // missing is success
	}
	old, err := record[model.Sandbox](t, bSandboxes, id)
	if err != nil {
		return err
	}
	if err := errors.Join(t.kv.del(bSandboxes, []byte(id)), t.kv.del(bSbNames, []byte(name))); err != nil {
		return err
	}
	if old == nil {
		return nil
	}
	return t.reindexContainer(old, nil)
}

func (t tx) Endpoint(sandbox, network string) (*model.Endpoint, error) {
	ep, err := t.storedEndpoint(sandbox, network)
	if ep == nil && err == nil {
		return nil, model.NotFoundf("sandbox %s has no endpoint on network %s", sandbox, network)
	}
	return ep, err
}

func (t tx) Endpoints() ([]*model.Endpoint, error) {
	eps, err := list[model.Endpoint](t, bEndpoints, nil)
	slices.SortFunc(eps, func(a, b *model.Endpoint) int {
		if c := strings.Compare(a.Sandbox, b.Sandbox); c != 0 {
			return c
		}
		return strings.Compare(a.Network, b.Network)
	})
	return eps, err
}

// ifIndex orders interface names: eth2 before eth10, other names after.
func ifIndex(name string) int {
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "eth")); err == nil && strings.HasPrefix(name, "eth") {
		return n
	}
	return 1 << 30
}

// indexed reads the endpoints an index's entries under prefix name (their
// values are endpoint IDs), in key order.
func (t tx) indexed(index string, prefix []byte) ([]*model.Endpoint, error) {
	var ids []string
	if err := t.kv.scan(index, prefix, func(k, v []byte) error {
		ids = append(ids, string(v))
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]*model.Endpoint, 0, len(ids))
	for _, id := range ids {
		ep, err := record[model.Endpoint](t, bEndpoints, id)
		if err != nil {
			return nil, err
		}
		if ep == nil {
			return nil, fmt.Errorf("store: index %s names endpoint %s, which is missing (corrupt state: restore the state file from a backup)", index, id)
		}
		out = append(out, ep)
	}
	return out, nil
}

func (t tx) EndpointsOfSandbox(sandbox string) ([]*model.Endpoint, error) {
	eps, err := t.indexed(bEpKeys, []byte(sandbox+"\x00"))
	slices.SortStableFunc(eps, func(a, b *model.Endpoint) int {
		if d := ifIndex(a.IfName) - ifIndex(b.IfName); d != 0 {
			return d
		}
		return strings.Compare(a.IfName, b.IfName)
	})
	return eps, err
}

func (t tx) EndpointsOnNetwork(network string) ([]*model.Endpoint, error) {
	return t.indexed(bEpByNet, []byte(network+"\x00"))
}

// indexEndpoint adds every index entry of ep.
func (t tx) indexEndpoint(ep *model.Endpoint) error {
	return errors.Join(
		t.kv.put(bEpKeys, key2(ep.Sandbox, ep.Network), []byte(ep.ID)),
		t.kv.put(bEpByNet, key2(ep.Network, ep.Sandbox), []byte(ep.ID)),
		t.reindexNames(nil, ep),
		t.reindexPorts(nil, ep))
}

// unindexEndpoint removes every index entry of ep (not its record).
func (t tx) unindexEndpoint(ep *model.Endpoint) error {
	return errors.Join(
		t.kv.del(bEpKeys, key2(ep.Sandbox, ep.Network)),
		t.kv.del(bEpByNet, key2(ep.Network, ep.Sandbox)),
		t.reindexNames(ep, nil),
		t.reindexPorts(ep, nil))
}

func (t tx) PutEndpoint(e *model.Endpoint) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if e.ID == "" {
		return model.Invalidf("store: endpoint of %s on %s has no ID", e.Sandbox, e.Network)
	}
	if e.Sandbox == "" || e.Network == "" {
		return model.Invalidf("store: endpoint %s names no sandbox or no network", e.ID)
	}
	slot, err := t.idOf(bEpKeys, key2(e.Sandbox, e.Network))
	if err != nil {
		return err
	}
	old, err := record[model.Endpoint](t, bEndpoints, slot)
	if err != nil {
		return err
	}
	if slot != e.ID {
		// e takes the (sandbox, network) slot from another endpoint, or
		// comes from another slot: neither leaves anything behind.
		if old != nil {
			if err := errors.Join(t.kv.del(bEndpoints, []byte(slot)), t.unindexEndpoint(old)); err != nil {
				return err
			}
		}
		prev, err := record[model.Endpoint](t, bEndpoints, e.ID)
		if err != nil {
			return err
		}
		if prev != nil {
			if err := t.unindexEndpoint(prev); err != nil {
				return err
			}
		}
		old = nil
	}
	if err := t.put(bEndpoints, []byte(e.ID), e); err != nil {
		return err
	}
	if err := t.reindexNames(old, e); err != nil {
		return err
	}
	if err := t.reindexPorts(old, e); err != nil {
		return err
	}
	if slot == e.ID {
		return nil
	}
	return errors.Join(
		t.kv.put(bEpKeys, key2(e.Sandbox, e.Network), []byte(e.ID)),
		t.kv.put(bEpByNet, key2(e.Network, e.Sandbox), []byte(e.ID)))
}

func (t tx) DeleteEndpoint(sandbox, network string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	slot, err := t.idOf(bEpKeys, key2(sandbox, network))
	if slot == "" || err != nil {
		return err // missing is success
	}
	old, err := record[model.Endpoint](t, bEndpoints, slot)
	if err != nil {
		return err
	}
	if err := t.kv.del(bEndpoints, []byte(slot)); err != nil {
		return err
	}
	if old == nil {
		old = &model.Endpoint{Sandbox: sandbox, Network: network}
	}
	return t.unindexEndpoint(old)
}

// ipKey is the reservation key of an address: its 4 bytes for IPv4 (the
// layout state files have had from the start) and its 16 for IPv6, so
// that within a family keys sort like addresses.
func ipKey(ip netip.Addr) ([]byte, error) {
	switch {
	case !ip.IsValid():
		return nil, model.Invalidf("store: reservation of no address")
	case ip.Zone() != "":
		return nil, model.Invalidf("address %s has a zone: reserve it without one", ip)
	case ip.Is4():
		b := ip.As4()
		return b[:], nil
	}
	b := ip.As16()
	return b[:], nil
}

// keyIP is the address of a reservation key or cursor value (ipKey).
func keyIP(k []byte) (netip.Addr, bool) {
	switch len(k) {
	case 4:
		return netip.AddrFrom4([4]byte(k)), true
	case 16:
		return netip.AddrFrom16([16]byte(k)), true
	}
	return netip.Addr{}, false
}

func (t tx) Reservation(networkID string, ip netip.Addr) (string, bool, error) {
	k, err := ipKey(ip)
	if err != nil {
		return "", false, err
	}
	v, err := t.kv.get(ipamBucket(networkID), k)
	if err != nil {
		return "", false, err
	}
	if v == nil {
		return "", false, nil
	}
	return string(v), true, nil
}

func (t tx) Reserve(networkID string, ip netip.Addr, owner string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if networkID == "" {
		return model.Invalidf("store: reservation on a network without an ID")
	}
	k, err := ipKey(ip)
	if err != nil {
		return err
	}
	cur, err := t.kv.get(ipamBucket(networkID), k)
	if err != nil {
		return err
	}
	if cur != nil {
		if string(cur) == owner {
			return nil
		}
		return model.Conflictf("address %s is already reserved by %s (network ID %s)", ip, cur, networkID)
	}
	return t.kv.put(ipamBucket(networkID), k, []byte(owner))
}

func (t tx) Release(networkID string, ip netip.Addr) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	k, err := ipKey(ip)
	if err != nil {
		return err
	}
	return t.kv.del(ipamBucket(networkID), k)
}

func (t tx) Reservations(networkID string) (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	err := t.kv.scan(ipamBucket(networkID), nil, func(k, v []byte) error {
		ip, ok := keyIP(k)
		if !ok {
			return fmt.Errorf("store: bad reservation key %x on network ID %s", k, networkID)
		}
		out[ip] = string(v)
		return nil
	})
	return out, err
}

// cursorKey is the key of a network's cursor of a family in bCursors: the
// network's ID for IPv4, the ID and "\x00ipv6" for IPv6.
func cursorKey(networkID string, v6 bool) []byte {
	if v6 {
		return key2(networkID, "ipv6")
	}
	return []byte(networkID)
}

func (t tx) Cursor(networkID string, v6 bool) (netip.Addr, error) {
	v, err := t.kv.get(bCursors, cursorKey(networkID, v6))
	if err != nil {
		return netip.Addr{}, err
	}
	if len(v) == 0 {
		return netip.Addr{}, nil
	}
	if ip, ok := keyIP(v); ok && ip.Is6() == v6 {
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("store: bad cursor %x on network ID %s", v, networkID)
}

func (t tx) SetCursor(networkID string, ip netip.Addr) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if networkID == "" {
		return model.Invalidf("store: cursor of a network without an ID")
	}
	k, err := ipKey(ip)
	if err != nil {
		return err
	}
	return t.kv.put(bCursors, cursorKey(networkID, ip.Is6()), k)
}

func (t tx) Meta(key string) (string, error) {
	v, err := t.kv.get(bMeta, []byte(key))
	return string(v), err
}

func (t tx) SetMeta(key, value string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if key == revisionKey {
		return model.Invalidf("store: meta key %s is the store's own revision: pick another key", key)
	}
	return t.kv.put(bMeta, []byte(key), []byte(value))
}
