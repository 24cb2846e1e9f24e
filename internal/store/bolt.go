package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned by Open when another process (another pontoon
// daemon on the same --root) holds the state file.
var ErrLocked = errors.New("state file is locked")

type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("state file %s is locked by another pontoon daemon; stop it or use --root to give this one another state directory", e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// lockTimeout bounds how long Open waits for the state file's flock.
const lockTimeout = time.Second

// Open opens (creating it and its directory if needed) the bbolt state file
// at path.
//
// Every commit is fsynced (bbolt's default, kept on purpose): the store is
// what lets a restarted daemon find every reservation it made, so an
// endpoint is never lost and no address handed out twice after a crash.
// That costs two fdatasyncs per Update (pages, then the meta page):
// measured on this VM class's disk, p50 0.25–0.35 ms for one key, 0.4–0.55
// ms for an attach's writes (reservation, cursor, endpoint and its index),
// p99 1–5 ms (BenchmarkUpdate gives the mean).
//
// bbolt holds an exclusive flock on the file while open: a second daemon
// on the same root gets ErrLocked after lockTimeout instead of hanging.
func Open(path string, log *slog.Logger) (Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	start := time.Now()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &lockedError{path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	migrated := 0
	if err := db.Update(func(btx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := btx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		var err error
		migrated, err = migrateFlatIPAM(btx)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise state file %s: %w", path, err)
	}
	if migrated > 0 {
		log.Info("state file: moved reservations into per-network buckets", "path", path, "reservations", migrated)
	}
	log.Debug("state file open", "path", path, "took", time.Since(start))
	return &boltStore{db: db}, nil
}

// migrateFlatIPAM moves reservations written by the first layout (one ipam
// bucket keyed "network\x00IP") into the per-network buckets ipam/<network>.
func migrateFlatIPAM(btx *bolt.Tx) (int, error) {
	parent := btx.Bucket([]byte(bIPAM))
	type rec struct{ k, v []byte }
	var old []rec
	if err := parent.ForEach(func(k, v []byte) error {
		if v != nil { // nil value: a nested bucket, the current layout
			old = append(old, rec{bytes.Clone(k), bytes.Clone(v)})
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, r := range old {
		network, ip, ok := bytes.Cut(r.k, []byte{0})
		if !ok || len(ip) != 4 {
			return 0, fmt.Errorf("unknown reservation key %q", r.k)
		}
		b, err := parent.CreateBucketIfNotExists(network)
		if err != nil {
			return 0, err
		}
		if err := b.Put(ip, r.v); err != nil {
			return 0, err
		}
		if err := parent.Delete(r.k); err != nil {
			return 0, err
		}
	}
	return len(old), nil
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

// bucket resolves a bucket name: "parent/child" is a nested bucket, created
// when create is set (in a writable transaction). nil when missing.
func (k boltKV) bucket(name string, create bool) (*bolt.Bucket, error) {
	parent, child, nested := strings.Cut(name, "/")
	b := k.tx.Bucket([]byte(parent))
	if b == nil {
		return nil, fmt.Errorf("store: bucket %s missing from the state file", parent)
	}
	if !nested {
		return b, nil
	}
	if create {
		return b.CreateBucketIfNotExists([]byte(child))
	}
	return b.Bucket([]byte(child)), nil
}

func (k boltKV) get(bucket string, key []byte) []byte {
	b, _ := k.bucket(bucket, false)
	if b == nil {
		return nil
	}
	return bytes.Clone(b.Get(key)) // bbolt's slices die with the transaction
}

func (k boltKV) put(bucket string, key, val []byte) error {
	b, err := k.bucket(bucket, true)
	if err != nil {
		return err
	}
	return b.Put(key, val)
}

func (k boltKV) del(bucket string, key []byte) error {
	b, err := k.bucket(bucket, false)
	if b == nil {
		return err
	}
	return b.Delete(key)
}

func (k boltKV) scan(bucket string, prefix []byte, fn func(k, v []byte) error) error {
	b, err := k.bucket(bucket, false)
	if b == nil {
		return err
	}
	c := b.Cursor()
	for key, v := c.Seek(prefix); key != nil && bytes.HasPrefix(key, prefix); key, v = c.Next() {
		if err := fn(key, v); err != nil {
			return err
		}
	}
	return nil
}

func (k boltKV) dropBucket(bucket string) error {
	parent, child, nested := strings.Cut(bucket, "/")
	if !nested {
		return fmt.Errorf("store: will not drop top-level bucket %s", bucket)
	}
	err := k.tx.Bucket([]byte(parent)).DeleteBucket([]byte(child))
	if errors.Is(err, bolterrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

func (k boltKV) writable() bool { return k.tx.Writable() }
