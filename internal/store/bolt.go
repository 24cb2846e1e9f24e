package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Open opens (creating if needed) the bbolt state file at path. Commits are
// fsynced: the store is what makes a crash leak nothing.
func Open(path string, log *slog.Logger) (Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("state file %s is locked by another pontoon daemon: stop it, or give this one another --root", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	if err := db.Update(func(btx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := btx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise state file %s: %w", path, err)
	}
	return &boltStore{db: db}, nil
}

type boltStore struct{ db *bolt.DB }

func (s *boltStore) Update(fn func(Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(tx{kv: boltKV{btx}}) })
}

func (s *boltStore) View(fn func(Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(tx{kv: boltKV{btx}}) })
}

func (s *boltStore) Close() error { return s.db.Close() }

type boltKV struct{ tx *bolt.Tx }

func (k boltKV) get(bucket string, key []byte) []byte {
	v := k.tx.Bucket([]byte(bucket)).Get(key)
	if v == nil {
		return nil
	}
	return bytes.Clone(v) // bbolt's slices die with the transaction
}

func (k boltKV) put(bucket string, key, val []byte) error {
	return k.tx.Bucket([]byte(bucket)).Put(key, val)
}

func (k boltKV) del(bucket string, key []byte) error {
	return k.tx.Bucket([]byte(bucket)).Delete(key)
}

func (k boltKV) scan(bucket string, prefix []byte, fn func(k, v []byte) error) error {
	c := k.tx.Bucket([]byte(bucket)).Cursor()
	for key, v := c.Seek(prefix); key != nil && bytes.HasPrefix(key, prefix); key, v = c.Next() {
		if err := fn(key, v); err != nil {
			return err
		}
	}
	return nil
}

func (k boltKV) writable() bool { return k.tx.Writable() }
