package store

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// NewMemory returns an in-memory store with the bbolt store's semantics,
// for unit tests.
//
// An Update writes into a journal over the committed state (copy on write:
// reads see the journal first) and the journal is applied only when fn
// returns nil, so a failed fn leaves nothing. Its cost is that of the
// writes it makes, not of the store's size: a test attaching the 500th
// sandbox pays what the 1st did. Like bbolt, Updates run one at a time
// and a View may run beside an Update (it sees the state before it).
// Unlike bbolt's, every successful fn runs twice (see Update).
func NewMemory() Store {
	m := &memStore{data: map[string]map[string][]byte{}, writer: make(chan struct{}, 1), hub: newHub(0)}
	for _, b := range buckets {
		m.data[b] = map[string][]byte{}
	}
	return m
}

type memStore struct {
	writer chan struct{} // one Update at a time, like bbolt's single writer; held when full
	mu     sync.RWMutex  // guards data and rev: Views read them, a commit replaces parts
	data   map[string]map[string][]byte
	rev    int64 // the revision (also in data, meta key revisionKey)
	hub    *hub  // watchers (watch.go)
}

func (m *memStore) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case m.writer <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-m.writer }()
	// No m.mu here: only the holder of m.writer changes data, at commit.
	// fn runs twice and the first run's writes are dropped, as the bbolt
	// store's group commit may do: a closure with side effects (appending
	// to a slice it does not reset, counting, sending) shows in unit tests.
	for run := 0; ; run++ {
		rec := newRecorder(m.rev)
		j := &memKV{base: m.data, rw: true, pend: map[string]map[string][]byte{}, dropped: map[string]bool{}, rec: rec}
		rec.begin()
		if err := fn(tx{kv: j}); err != nil {
			return err
		}
		rec.end(0)
		if run == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err // before the commit: rolled back
		}
		m.mu.Lock()
		j.commit()
		if rec.rev != m.rev {
			m.rev = rec.rev
			m.data[bMeta][revisionKey] = strconv.AppendInt(nil, m.rev, 10)
		}
		m.mu.Unlock()
		m.hub.publish(rec)
		return nil
	}
}

func (m *memStore) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(tx{kv: &memKV{base: m.data, rev: m.rev}})
}

func (m *memStore) Watch(ctx context.Context, fromRev int64) (<-chan Event, error) {
	return m.hub.watch(ctx, fromRev)
}

func (m *memStore) Close() error {
	m.hub.close()
	return nil
}

// memKV is a transaction: the committed state (base) under a journal of
// this transaction's writes. In pend, a nil value is a deletion.
type memKV struct {
	base    map[string]map[string][]byte
	pend    map[string]map[string][]byte
	dropped map[string]bool // buckets dropped in this transaction (before pend's writes)
	rw      bool
	rev     int64     // a View's revision
	rec     *recorder // an Update's writes and revision
}

func (k *memKV) lookup(bucket, key string) ([]byte, bool) {
	if v, ok := k.pend[bucket][key]; ok {
		return v, v != nil
	}
	if k.dropped[bucket] {
		return nil, false
	}
	v, ok := k.base[bucket][key]
	return v, ok
}

func (k *memKV) get(bucket string, key []byte) ([]byte, error) {
	v, ok := k.lookup(bucket, string(key))
	if !ok {
		return nil, nil
	}
	return bytes.Clone(v), nil
}

func (k *memKV) write(bucket, key string, val []byte) {
	p := k.pend[bucket]
	if p == nil {
		p = map[string][]byte{}
		k.pend[bucket] = p
	}
	p[key] = val
}

func (k *memKV) put(bucket string, key, val []byte) error {
	if val == nil {
		val = []byte{} // nil marks a deletion in the journal
	}
	val = bytes.Clone(val)
	k.write(bucket, string(key), val)
	k.rec.note(bucket, bytes.Clone(key), val)
	return nil
}

func (k *memKV) del(bucket string, key []byte) error {
	if _, ok := k.lookup(bucket, string(key)); ok {
		k.rec.note(bucket, bytes.Clone(key), nil)
	} else {
		k.rec.wrote() // a write, no change: no event (as etcd)
	}
	k.write(bucket, string(key), nil)
	return nil
}

func (k *memKV) dropBucket(bucket string) error {
	k.rec.wrote()
	if err := k.scan(bucket, nil, func(key, _ []byte) error {
		k.rec.note(bucket, key, nil)
		return nil
	}); err != nil {
		return err
	}
	k.dropped[bucket] = true
	delete(k.pend, bucket)
	return nil
}

func (k *memKV) scan(bucket string, prefix []byte, fn func(k, v []byte) error) error {
	var keys []string
	if !k.dropped[bucket] {
		for key := range k.base[bucket] {
			if strings.HasPrefix(key, string(prefix)) {
				keys = append(keys, key)
			}
		}
	}
	for key := range k.pend[bucket] {
		if strings.HasPrefix(key, string(prefix)) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, key := range keys {
		v, ok := k.lookup(bucket, key)
		if !ok {
			continue
		}
		if err := fn([]byte(key), bytes.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}

func (k *memKV) writable() bool { return k.rw }

func (k *memKV) revision() int64 {
	if k.rec != nil {
		return k.rec.rev
	}
	return k.rev
}

// commit applies the journal to the committed state.
func (k *memKV) commit() {
	for b := range k.dropped {
		delete(k.base, b)
	}
	for b, kvs := range k.pend {
		dst := k.base[b]
		if dst == nil {
			dst = map[string][]byte{}
			k.base[b] = dst
		}
		for key, v := range kvs {
			if v == nil {
				delete(dst, key)
			} else {
				dst[key] = v
			}
		}
		if len(dst) == 0 && strings.Contains(b, "/") {
			delete(k.base, b) // an emptied nested bucket, like one never made
		}
	}
}
