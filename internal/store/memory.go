package store

import (
	"bytes"
	"maps"
	"slices"
	"sync"
)

// NewMemory returns an in-memory store with the bbolt store's semantics
// (for unit tests): Update works on a copy that replaces the state only
// when fn succeeds.
func NewMemory() Store {
	m := &memStore{data: map[string]map[string][]byte{}}
	for _, b := range buckets {
		m.data[b] = map[string][]byte{}
	}
	return m
}

type memStore struct {
	mu   sync.RWMutex // write lock for Update, like bbolt's single writer
	data map[string]map[string][]byte
}

func (m *memStore) Update(fn func(Tx) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := make(map[string]map[string][]byte, len(m.data))
	for b, kvs := range m.data {
		cp[b] = maps.Clone(kvs)
	}
	if err := fn(tx{kv: &memKV{data: cp, rw: true}}); err != nil {
		return err
	}
	m.data = cp
	return nil
}

func (m *memStore) View(fn func(Tx) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(tx{kv: &memKV{data: m.data}})
}

func (m *memStore) Close() error { return nil }

type memKV struct {
	data map[string]map[string][]byte
	rw   bool
}

func (k *memKV) get(bucket string, key []byte) []byte {
	v, ok := k.data[bucket][string(key)]
	if !ok {
		return nil
	}
	return bytes.Clone(v)
}

func (k *memKV) put(bucket string, key, val []byte) error {
	k.data[bucket][string(key)] = bytes.Clone(val)
	return nil
}

func (k *memKV) del(bucket string, key []byte) error {
	delete(k.data[bucket], string(key))
	return nil
}

func (k *memKV) scan(bucket string, prefix []byte, fn func(k, v []byte) error) error {
	keys := slices.Sorted(maps.Keys(k.data[bucket]))
	for _, key := range keys {
		if !bytes.HasPrefix([]byte(key), prefix) {
			continue
		}
		if err := fn([]byte(key), bytes.Clone(k.data[bucket][key])); err != nil {
			return err
		}
	}
	return nil
}

func (k *memKV) writable() bool { return k.rw }
