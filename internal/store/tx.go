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

// Buckets. Keys are names; endpoint keys join two names with a NUL, which
// no name may contain (model.ValidateName), so prefix scans are exact.
const (
	bNetworks  = "networks"
	bSandboxes = "sandboxes"
	bEndpoints = "endpoints"     // sandbox \x00 network → endpoint
	bEpByNet   = "endpoints-net" // network \x00 sandbox → empty (index)
	bIPAM      = "ipam"          // parent of ipam/<network>: IP (4 or 16 bytes) → owner
	bCursors   = "cursors"       // network → IPv4 (4 bytes); network \x00 "ipv6" → IPv6 (16 bytes)
	bMeta      = "meta"
)

var buckets = []string{bNetworks, bSandboxes, bSbContainers, bEndpoints, bEpByNet, bEpNames, bEpPorts, bIPAM, bCursors, bMeta}

// ipamBucket names the bucket of a network's reservations.
func ipamBucket(network string) string { return bIPAM + "/" + network }

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

func key2(a, b string) []byte { return []byte(a + "\x00" + b) }

func (t tx) Network(name string) (*model.Network, error) {
	v, err := t.kv.get(bNetworks, []byte(name))
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, model.NotFoundf("network %q not found: list networks with `pontoon network ls`", name)
	}
	return decode[model.Network](v)
}

func (t tx) Networks() ([]*model.Network, error) { return list[model.Network](t, bNetworks, nil) }

func (t tx) PutNetwork(n *model.Network) error { return t.put(bNetworks, []byte(n.Name), n) }

func (t tx) DeleteNetwork(name string) error {
	if err := t.del(bNetworks, []byte(name)); err != nil {
		return err
	}
	if err := t.kv.dropBucket(ipamBucket(name)); err != nil {
		return err
	}
	if err := t.del(bCursors, cursorKey(name, false)); err != nil {
		return err
	}
	return t.del(bCursors, cursorKey(name, true))
}

func (t tx) Sandbox(name string) (*model.Sandbox, error) {
	v, err := t.kv.get(bSandboxes, []byte(name))
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, model.NotFoundf("sandbox %q not found: list sandboxes with `pontoon sandbox ls`", name)
	}
	return decode[model.Sandbox](v)
}

func (t tx) Sandboxes() ([]*model.Sandbox, error) { return list[model.Sandbox](t, bSandboxes, nil) }

func (t tx) PutSandbox(s *model.Sandbox) error {
	old, err := t.storedSandbox(s.Name)
	if err != nil {
		return err
	}
	if err := t.put(bSandboxes, []byte(s.Name), s); err != nil {
		return err
	}
	return t.reindexContainer(old, s)
}

func (t tx) DeleteSandbox(name string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	old, err := t.storedSandbox(name)
	if err != nil {
		return err
	}
	if err := t.del(bSandboxes, []byte(name)); err != nil {
		return err
	}
	return t.reindexContainer(old, nil)
}

func (t tx) Endpoint(sandbox, network string) (*model.Endpoint, error) {
	v, err := t.kv.get(bEndpoints, key2(sandbox, network))
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, model.NotFoundf("sandbox %s has no endpoint on network %s", sandbox, network)
	}
	return decode[model.Endpoint](v)
}

func (t tx) Endpoints() ([]*model.Endpoint, error) { return list[model.Endpoint](t, bEndpoints, nil) }

// ifIndex orders interface names: eth2 before eth10, other names after.
func ifIndex(name string) int {
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "eth")); err == nil && strings.HasPrefix(name, "eth") {
		return n
	}
	return 1 << 30
}

func (t tx) EndpointsOfSandbox(sandbox string) ([]*model.Endpoint, error) {
	eps, err := list[model.Endpoint](t, bEndpoints, []byte(sandbox+"\x00"))
	slices.SortStableFunc(eps, func(a, b *model.Endpoint) int {
		if d := ifIndex(a.IfName) - ifIndex(b.IfName); d != 0 {
			return d
		}
		return strings.Compare(a.IfName, b.IfName)
	})
	return eps, err
}

func (t tx) EndpointsOnNetwork(network string) ([]*model.Endpoint, error) {
	var out []*model.Endpoint
	err := t.kv.scan(bEpByNet, []byte(network+"\x00"), func(k, _ []byte) error {
		sb := string(k[len(network)+1:])
		ep, err := t.Endpoint(sb, network)
		if err != nil {
			return fmt.Errorf("store: endpoint index names %s on %s: %w", sb, network, err)
		}
		out = append(out, ep)
		return nil
	})
	return out, err
}

func (t tx) PutEndpoint(e *model.Endpoint) error {
	old, err := t.storedEndpoint(e.Sandbox, e.Network)
	if err != nil {
		return err
	}
	if err := t.put(bEndpoints, key2(e.Sandbox, e.Network), e); err != nil {
		return err
	}
	if err := t.reindexNames(old, e); err != nil {
		return err
	}
	if err := t.reindexPorts(old, e); err != nil {
		return err
	}
	return t.kv.put(bEpByNet, key2(e.Network, e.Sandbox), []byte{})
}

func (t tx) DeleteEndpoint(sandbox, network string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	old, err := t.storedEndpoint(sandbox, network)
	if err != nil {
		return err
	}
	if err := t.del(bEndpoints, key2(sandbox, network)); err != nil {
		return err
	}
	if err := t.reindexNames(old, nil); err != nil {
		return err
	}
	if err := t.reindexPorts(old, nil); err != nil {
		return err
	}
	return t.del(bEpByNet, key2(network, sandbox))
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

func (t tx) Reservation(network string, ip netip.Addr) (string, bool, error) {
	k, err := ipKey(ip)
	if err != nil {
		return "", false, err
	}
	v, err := t.kv.get(ipamBucket(network), k)
	if err != nil {
		return "", false, err
	}
	if v == nil {
		return "", false, nil
	}
	return string(v), true, nil
}

func (t tx) Reserve(network string, ip netip.Addr, owner string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if network == "" {
		return model.Invalidf("store: reservation on a network with an empty name")
	}
	k, err := ipKey(ip)
	if err != nil {
		return err
	}
	cur, err := t.kv.get(ipamBucket(network), k)
	if err != nil {
		return err
	}
	if cur != nil {
		if string(cur) == owner {
			return nil
		}
		return model.Conflictf("address %s on network %s is already reserved by %s", ip, network, cur)
	}
	return t.kv.put(ipamBucket(network), k, []byte(owner))
}

func (t tx) Release(network string, ip netip.Addr) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	k, err := ipKey(ip)
	if err != nil {
		return err
	}
	return t.kv.del(ipamBucket(network), k)
}

func (t tx) Reservations(network string) (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	err := t.kv.scan(ipamBucket(network), nil, func(k, v []byte) error {
		ip, ok := keyIP(k)
		if !ok {
			return fmt.Errorf("store: bad reservation key %x on network %s", k, network)
		}
		out[ip] = string(v)
		return nil
	})
	return out, err
}

// cursorKey is the key of a network's cursor of a family in bCursors: the
// network's name for IPv4 (the key state files have had from the start),
// the name and "\x00ipv6" for IPv6 (no name holds a NUL).
func cursorKey(network string, v6 bool) []byte {
	if v6 {
		return key2(network, "ipv6")
	}
	return []byte(network)
}

func (t tx) Cursor(network string, v6 bool) (netip.Addr, error) {
	v, err := t.kv.get(bCursors, cursorKey(network, v6))
	if err != nil {
		return netip.Addr{}, err
	}
	if len(v) == 0 {
		return netip.Addr{}, nil
	}
	if ip, ok := keyIP(v); ok && ip.Is6() == v6 {
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("store: bad cursor %x on network %s", v, network)
}

func (t tx) SetCursor(network string, ip netip.Addr) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if network == "" {
		return model.Invalidf("store: cursor of a network with an empty name")
	}
	k, err := ipKey(ip)
	if err != nil {
		return err
	}
	return t.kv.put(bCursors, cursorKey(network, ip.Is6()), k)
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
