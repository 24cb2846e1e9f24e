package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"pontoon/internal/model"
)

// migrateToIDKeys moves a bbolt state file of layout 1 to layout 2 (tx.go),
// inside Open's transaction, before anything reads it through a Tx:
//
//   - networks, sandboxes: name → record becomes ID → record, plus the name
//     indexes network-names and sandbox-names;
//   - endpoints: "sandbox \x00 network" → record becomes ID → record, plus
//     the index endpoint-keys; endpoints-net entries get the endpoint's ID as
//     value (they were empty);
//   - reservations and cursors keyed by a network's name move to its ID.
//
// A record without an ID (none were ever written without one) is given a
// new one. Reservations and cursors of a name that has no network record
// cannot be reached by anything and are dropped, and counted. The other
// indexes (DNS names, container IDs, host ports) name sandboxes and
// networks by name, as before, and are kept. The meta key layoutKey
// records the layout; a file that has it at layoutVersion is left alone,
// and so is a new, empty one (it only gets the key).
func migrateToIDKeys(btx *bolt.Tx) (moved, dropped int, err error) {
	meta := btx.Bucket([]byte(bMeta))
	if string(meta.Get([]byte(layoutKey))) == layoutVersion {
		return 0, 0, nil
	}
	netIDs := map[string]string{} // network name → ID
	for _, m := range []struct{ bucket, index string }{{bNetworks, bNetNames}, {bSandboxes, bSbNames}} {
		n, err := rekeyByID(btx, m.bucket, m.index, func(name, id string) {
			if m.bucket == bNetworks {
				netIDs[name] = id
			}
		})
		if err != nil {
			return 0, 0, fmt.Errorf("move %s to ID keys: %w", m.bucket, err)
		}
		moved += n
	}
	n, err := rekeyEndpoints(btx)
	if err != nil {
		return 0, 0, fmt.Errorf("move endpoints to ID keys: %w", err)
	}
	moved += n
	d, err := rekeyIPAM(btx, netIDs)
	if err != nil {
		return 0, 0, fmt.Errorf("move reservations to network IDs: %w", err)
	}
	return moved, d, meta.Put([]byte(layoutKey), []byte(layoutVersion))
}

type pair struct{ k, v []byte }

// pairs returns a copy of every key/value of b (nested buckets excluded).
func pairs(b *bolt.Bucket) ([]pair, error) {
	var out []pair
	err := b.ForEach(func(k, v []byte) error {
		if v != nil {
			out = append(out, pair{bytes.Clone(k), bytes.Clone(v)})
		}
		return nil
	})
	return out, err
}

// identity is what migration reads of a record.
type identity struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// withID returns the record v with an ID: its own, or a new one written
// into it.
func withID(v []byte) (identity, []byte, error) {
	var id identity
	if err := json.Unmarshal(v, &id); err != nil {
		return id, nil, fmt.Errorf("corrupt record: %w", err)
	}
	if id.ID != "" {
		return id, v, nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(v, &all); err != nil {
		return id, nil, fmt.Errorf("corrupt record: %w", err)
	}
	id.ID = model.NewID()
	all["id"], _ = json.Marshal(id.ID)
	v, err := json.Marshal(all)
	return id, v, err
}

// rekeyByID moves the records of bucket from name keys to ID keys and
// fills index (name → ID).
func rekeyByID(btx *bolt.Tx, bucket, index string, seen func(name, id string)) (int, error) {
	b, ix := btx.Bucket([]byte(bucket)), btx.Bucket([]byte(index))
	old, err := pairs(b)
	if err != nil {
		return 0, err
	}
	for _, p := range old { // every old key first: an ID may equal some name
		if err := b.Delete(p.k); err != nil {
			return 0, err
		}
	}
	for _, p := range old {
		id, v, err := withID(p.v)
		if err != nil {
			return 0, fmt.Errorf("record %q: %w", p.k, err)
		}
		if id.Name == "" {
			id.Name = string(p.k)
		}
		if err := errors.Join(b.Put([]byte(id.ID), v), ix.Put([]byte(id.Name), []byte(id.ID))); err != nil {
			return 0, err
		}
		seen(id.Name, id.ID)
	}
	return len(old), nil
}

// rekeyEndpoints moves endpoints from "sandbox \x00 network" keys to their
// IDs.
func rekeyEndpoints(btx *bolt.Tx) (int, error) {
	b, keys, byNet := btx.Bucket([]byte(bEndpoints)), btx.Bucket([]byte(bEpKeys)), btx.Bucket([]byte(bEpByNet))
	old, err := pairs(b)
	if err != nil {
		return 0, err
	}
	for _, p := range old {
		if err := b.Delete(p.k); err != nil {
			return 0, err
		}
	}
	for _, p := range old {
		sb, nw, ok := bytes.Cut(p.k, []byte{0})
		if !ok {
			return 0, fmt.Errorf("endpoint key %q is not sandbox and network", p.k)
		}
		id, v, err := withID(p.v)
		if err != nil {
			return 0, fmt.Errorf("endpoint %q: %w", p.k, err)
		}
		if err := errors.Join(b.Put([]byte(id.ID), v),
			keys.Put(key2(string(sb), string(nw)), []byte(id.ID)),
			byNet.Put(key2(string(nw), string(sb)), []byte(id.ID))); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

// rekeyIPAM moves each network's reservation bucket and cursors from its
// name to its ID (netIDs), dropping those of names without a network.
func rekeyIPAM(btx *bolt.Tx, netIDs map[string]string) (dropped int, err error) {
	parent, cursors := btx.Bucket([]byte(bIPAM)), btx.Bucket([]byte(bCursors))
	held := map[string][]pair{}
	var names [][]byte
	if err := parent.ForEach(func(k, v []byte) error {
		if v == nil {
			names = append(names, bytes.Clone(k))
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, name := range names {
		ps, err := pairs(parent.Bucket(name))
		if err != nil {
			return 0, err
		}
		if err := parent.DeleteBucket(name); err != nil {
			return 0, err
		}
		if _, ok := netIDs[string(name)]; !ok {
			dropped += len(ps)
			continue
		}
		held[string(name)] = ps
	}
	for name, ps := range held {
		b, err := parent.CreateBucketIfNotExists([]byte(netIDs[name]))
		if err != nil {
			return 0, err
		}
		for _, p := range ps {
			if err := b.Put(p.k, p.v); err != nil {
				return 0, err
			}
		}
	}
	old, err := pairs(cursors)
	if err != nil {
		return 0, err
	}
	for _, p := range old {
		if err := cursors.Delete(p.k); err != nil {
			return 0, err
		}
	}
	for _, p := range old {
		name, fam, v6 := bytes.Cut(p.k, []byte{0})
		id, ok := netIDs[string(name)]
		if !ok {
			dropped++
			continue
		}
		k := []byte(id)
		if v6 {
			k = key2(id, string(fam))
		}
		if err := cursors.Put(k, p.v); err != nil {
			return 0, err
		}
	}
	return dropped, nil
}
