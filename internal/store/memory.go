package store

import (
	"bytes"
	"slices"
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
	m := &memStore{data: map[string]map[string][]byte{}}
	for _, b := range buckets {
		m.data[b] = map[string][]byte{}
	}
	return m
}

type memStore struct {
	writer sync.Mutex   // one Update at a time, like bbolt's single writer
	mu     sync.RWMutex // guards data: Views read it, a commit replaces parts
	data   map[string]map[string][]byte
}

func (m *memStore) Update(fn func(Tx) error) error {
	m.writer.Lock()
	defer m.writer.Unlock()
	// No m.mu here: only the holder of m.writer changes data, at commit.
	// fn runs twice and the first run's writes are dropped, as the bbolt
	// store's group commit may do: a closure with side effects (appending
	// to a slice it does not reset, counting, sending) shows in unit tests.
	for run := 0; ; run++ {
		j := &memKV{base: m.data, rw: true, pend: map[string]map[string][]byte{}, dropped: map[string]bool{}}
		if err := fn(tx{kv: j}); err != nil {
			return err
		}
		if run == 0 {
			continue
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		j.commit()
		return nil
	}
}

func (m *memStore) View(fn func(Tx) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(tx{kv: &memKV{base: m.data}})
}

func (m *memStore) Close() error { return nil }

// memKV is a transaction: the committed state (base) under a journal of
// this transaction's writes. In pend, a nil value is a deletion.
type memKV struct {
	base    map[string]map[string][]byte
	pend    map[string]map[string][]byte
	dropped map[string]bool // buckets dropped in this transaction (before pend's writes)
	rw      bool
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

func (k *memKV) get(bucket string, key []byte) []byte {
	v, ok := k.lookup(bucket, string(key))
	if !ok {
		return nil
	}
	return bytes.Clone(v)
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
	k.write(bucket, string(key), bytes.Clone(val))
	return nil
}

func (k *memKV) del(bucket string, key []byte) error {
	k.write(bucket, string(key), nil)
	return nil
}

func (k *memKV) dropBucket(bucket string) error {
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
