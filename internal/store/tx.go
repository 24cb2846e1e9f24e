package store

import (
	"bytes"
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
type kv interface {
	get(bucket string, key []byte) []byte
	put(bucket string, key, val []byte) error
	del(bucket string, key []byte) error
	// scan calls fn for every key with the prefix, in key order.
	scan(bucket string, prefix []byte, fn func(k, v []byte) error) error
	writable() bool
}

const (
	bNetworks  = "networks"
	bSandboxes = "sandboxes"
	bEndpoints = "endpoints"     // sandbox \x00 network → endpoint
	bEpByNet   = "endpoints-net" // network \x00 sandbox → nil
	bIPAM      = "ipam"          // network \x00 4-byte IP → owner
	bCursors   = "cursors"       // network → 4-byte IP
	bMeta      = "meta"
)

var buckets = []string{bNetworks, bSandboxes, bEndpoints, bEpByNet, bIPAM, bCursors, bMeta}

// ErrReadOnly is returned by write methods in a View transaction.
var ErrReadOnly = errors.New("store: write in a read-only transaction")

type tx struct{ kv kv }

func (t tx) put(bucket string, key []byte, v any) error {
	if !t.kv.writable() {
		return ErrReadOnly
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.kv.put(bucket, key, data)
}

func (t tx) del(bucket string, key []byte) error {
	if !t.kv.writable() {
		return ErrReadOnly
	}
	return t.kv.del(bucket, key)
}

func decode[T any](data []byte) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("store: corrupt record: %w", err)
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
	v := t.kv.get(bNetworks, []byte(name))
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
	var keys [][]byte
	if err := t.kv.scan(bIPAM, []byte(name+"\x00"), func(k, _ []byte) error {
		keys = append(keys, bytes.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := t.del(bIPAM, k); err != nil {
			return err
		}
	}
	return t.del(bCursors, []byte(name))
}

func (t tx) Sandbox(name string) (*model.Sandbox, error) {
	v := t.kv.get(bSandboxes, []byte(name))
	if v == nil {
		return nil, model.NotFoundf("sandbox %q not found: list sandboxes with `pontoon sandbox ls`", name)
	}
	return decode[model.Sandbox](v)
}

func (t tx) Sandboxes() ([]*model.Sandbox, error) { return list[model.Sandbox](t, bSandboxes, nil) }

func (t tx) PutSandbox(s *model.Sandbox) error { return t.put(bSandboxes, []byte(s.Name), s) }

func (t tx) DeleteSandbox(name string) error { return t.del(bSandboxes, []byte(name)) }

func (t tx) Endpoint(sandbox, network string) (*model.Endpoint, error) {
	v := t.kv.get(bEndpoints, key2(sandbox, network))
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
	if err := t.put(bEndpoints, key2(e.Sandbox, e.Network), e); err != nil {
		return err
	}
	return t.kv.put(bEpByNet, key2(e.Network, e.Sandbox), []byte{})
}

func (t tx) DeleteEndpoint(sandbox, network string) error {
	if err := t.del(bEndpoints, key2(sandbox, network)); err != nil {
		return err
	}
	return t.del(bEpByNet, key2(network, sandbox))
}

func ipKey(network string, ip netip.Addr) []byte {
	b := ip.As4()
	return append([]byte(network+"\x00"), b[:]...)
}

func (t tx) Reservation(network string, ip netip.Addr) (string, bool, error) {
	v := t.kv.get(bIPAM, ipKey(network, ip))
	if v == nil {
		return "", false, nil
	}
	return string(v), true, nil
}

func (t tx) Reserve(network string, ip netip.Addr, owner string) error {
	if !t.kv.writable() {
		return ErrReadOnly
	}
	if cur, ok, _ := t.Reservation(network, ip); ok && cur != owner {
		return model.Conflictf("address %s on network %s is already reserved by %s", ip, network, cur)
	}
	return t.kv.put(bIPAM, ipKey(network, ip), []byte(owner))
}

func (t tx) Release(network string, ip netip.Addr) error { return t.del(bIPAM, ipKey(network, ip)) }

func (t tx) Reservations(network string) (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	err := t.kv.scan(bIPAM, []byte(network+"\x00"), func(k, v []byte) error {
		raw := k[len(network)+1:]
		if len(raw) != 4 {
			return fmt.Errorf("store: bad reservation key %q", k)
		}
		out[netip.AddrFrom4([4]byte(raw))] = string(v)
		return nil
	})
	return out, err
}

func (t tx) Cursor(network string) (netip.Addr, error) {
	v := t.kv.get(bCursors, []byte(network))
	if len(v) != 4 {
		return netip.Addr{}, nil
	}
	return netip.AddrFrom4([4]byte(v)), nil
}

func (t tx) SetCursor(network string, ip netip.Addr) error {
	if !t.kv.writable() {
		return ErrReadOnly
	}
	b := ip.As4()
	return t.kv.put(bCursors, []byte(network), b[:])
}

func (t tx) Meta(key string) (string, error) { return string(t.kv.get(bMeta, []byte(key))), nil }

func (t tx) SetMeta(key, value string) error {
	if !t.kv.writable() {
		return ErrReadOnly
	}
	return t.kv.put(bMeta, []byte(key), []byte(value))
}
