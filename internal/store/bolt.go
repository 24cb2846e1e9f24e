package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"pontoon/internal/group"
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

// The files beside the state file (path + suffix).
const (
	// networksSuffix: the durable part of the state — every network and
	// the meta keys, as JSON, fsynced and renamed into place before the
	// transaction that changed them commits.
	networksSuffix = ".networks"
	// bootSuffix: the boot ID of the kernel the state file is written
	// under, fsynced before the first unsynced commit.
	bootSuffix = ".boot"
	// previousSuffix: the state file of an earlier boot, kept for a look.
	previousSuffix = ".previous-boot"
)

// Files lists the files Open keeps for the state file at path: the file
// itself and those beside it (for `pontoon daemon --uninstall`).
func Files(path string) []string {
	return []string{path, path + networksSuffix, path + bootSuffix, path + previousSuffix}
}

// bootID returns this boot's ID ("" when unknown). A variable for tests.
var bootID = func() string {
	data, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// Open opens (creating it and its directory if needed) the bbolt state file
// at path.
//
// Durability follows what the state describes. Sandboxes, endpoints and IP
// reservations describe namespaces and links that live only as long as the
// running kernel, so their commits are not fsynced (bbolt's NoSync): a
// commit is a write into the page cache, which outlives the daemon — a
// SIGKILL loses nothing, and a restarted daemon still finds every
// reservation it made. Only a crash of the kernel itself loses page-cache
// writes, and then every namespace the lost records described is gone too.
// Networks are the part that must survive a reboot: every transaction
// that changes a network (or a meta key) first writes all of them to the
// snapshot file path+".networks", fsynced and renamed into place, and
// commits only then. The boot ID recorded in path+".boot" tells Open which
// case it is in: the same boot opens the state file as it is; a new boot
// sets the old file aside (it may hold torn pages) and starts from the
// snapshot's networks, with no sandbox and no reservation. Without a boot
// ID (no /proc) every commit is fsynced, as bbolt does by default.
//
// An fsynced commit costs two fdatasyncs (pages, then the meta page):
// measured on this VM class's disk, 0.25–0.55 ms each, p99 1–5 ms; an
// attach makes two commits. Unsynced, a commit takes ~0.08 ms
// (BenchmarkUpdate).
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
	boot := bootID()
	snap, snapErr := readSnapshot(path + networksSuffix)
	if snapErr != nil && !errors.Is(snapErr, os.ErrNotExist) {
		return nil, snapErr
	}
	written, _ := os.ReadFile(path + bootSuffix)
	sameBoot := boot != "" && strings.TrimSpace(string(written)) == boot
	// A state file from another boot was written unsynced (a snapshot
	// exists from then on): take the networks from the snapshot. Without a
	// snapshot the file predates unsynced commits and is whole.
	fresh := snap != nil && !sameBoot
	if fresh {
		if err := setAside(path); err != nil {
			return nil, err
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &lockedError{path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	s := &boltStore{db: db, snapshot: path + networksSuffix}
	s.group.Run = func(items []batchItem) []error { return commitBatch(items, s.runBatch) }
	migrated, rekeyed, dropped, indexed, indexedCtr, indexedPorts := 0, 0, 0, -1, -1, -1
	if err := db.Update(func(btx *bolt.Tx) error {
		noNames := btx.Bucket([]byte(bEpNames)) == nil
		noContainers := btx.Bucket([]byte(bSbContainers)) == nil
		noPorts := btx.Bucket([]byte(bEpPorts)) == nil
		for _, b := range buckets {
			if _, err := btx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		// The oldest layouts first: flat reservations, then name keys.
		var err error
		if migrated, err = migrateFlatIPAM(btx); err != nil {
			return err
		}
		if rekeyed, dropped, err = migrateToIDKeys(btx); err != nil {
			return err
		}
		if fresh {
			if err := snap.restore(btx); err != nil {
				return err
			}
		}
		if noNames {
			// A state file from before the name index: build it.
			if indexed, err = (tx{kv: boltKV{tx: btx}}).indexAllNames(); err != nil {
				return fmt.Errorf("index endpoint names: %w", err)
			}
		}
		if noContainers {
			// A state file from before the container index: build it.
			if indexedCtr, err = (tx{kv: boltKV{tx: btx}}).indexAllContainers(); err != nil {
				return fmt.Errorf("index sandboxes by container: %w", err)
			}
		}
		if noPorts {
			// A state file from before the host port index: build it.
			if indexedPorts, err = (tx{kv: boltKV{tx: btx}}).indexAllPorts(); err != nil {
				return fmt.Errorf("index published host ports: %w", err)
			}
		}
		// The snapshot may lag the file (a commit that failed after it was
		// written) or be missing (first start): write it from the file.
		return s.writeSnapshot(btx)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise state file %s: %w", path, err)
	}
	if fresh {
		log.Info("state file: new boot, starting from the saved networks; sandboxes and reservations of the previous boot are gone with it",
			"path", path, "networks", len(snap.Networks), "previous", path+previousSuffix)
	}
	if migrated > 0 {
		log.Info("state file: moved reservations into per-network buckets", "path", path, "reservations", migrated)
	}
	if rekeyed > 0 || dropped > 0 {
		log.Info("state file: records keyed by ID, names in indexes (layout 2)", "path", path, "records", rekeyed,
			"dropped_reservations", dropped)
	}
	if indexed > 0 {
		log.Info("state file: indexed the DNS names of endpoints", "path", path, "endpoints", indexed)
	}
	if indexedCtr > 0 {
		log.Info("state file: indexed sandboxes by container ID", "path", path, "sandboxes", indexedCtr)
	}
	if indexedPorts > 0 {
		log.Info("state file: indexed published host ports", "path", path, "endpoints", indexedPorts)
	}
	if boot != "" && !sameBoot {
		if err := writeFileSync(path+bootSuffix, []byte(boot+"\n")); err != nil {
			db.Close()
			return nil, fmt.Errorf("record boot ID beside state file %s: %w", path, err)
		}
	}
	var rev int64
	if err := db.View(func(btx *bolt.Tx) (err error) {
		rev, err = parseRevision(btx.Bucket([]byte(bMeta)).Get([]byte(revisionKey)))
		s.noteTxRev(btx.ID(), rev)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("read the revision of state file %s: %w", path, err)
	}
	// The stored value is a ceiling of the revisions handed out (see
	// revisionBlock): go on from it.
	s.rev, s.ceiling = rev, rev
	s.hub = newHub(rev)
	db.NoSync = boot != ""
	log.Debug("state file open", "path", path, "fsync_each_commit", !db.NoSync, "took", time.Since(start))
	return s, nil
}

// setAside moves the state file of an earlier boot out of the way — unless
// a daemon has it open (bbolt's flock), whatever the boot file says.
func setAside(path string) error {
	if f, err := os.Open(path); err == nil {
		busy := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
		f.Close() // drops the lock
		if busy {
			return &lockedError{path: path}
		}
	}
	err := os.Rename(path, path+previousSuffix)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("set aside state file %s of an earlier boot: %w", path, err)
	}
	return nil
}

// snapshot is the durable part of the state (see Open).
type snapshot struct {
	Networks map[string]json.RawMessage `json:"networks"`
	Meta     map[string]string          `json:"meta,omitempty"`
}

func readSnapshot(path string) (*snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read saved networks %s: %w (restore it from a backup, or remove it to start without networks)", path, err)
	}
	return &s, nil
}

// restore writes the snapshot's networks and meta keys into a new, empty
// state file of today's layout. A snapshot written by layout 1 keyed its
// networks by name, one of layout 2 by ID: either way the records say
// both (a record without an ID gets one).
func (s *snapshot) restore(btx *bolt.Tx) error {
	nb, ix, mb := btx.Bucket([]byte(bNetworks)), btx.Bucket([]byte(bNetNames)), btx.Bucket([]byte(bMeta))
	for key, v := range s.Networks {
		id, v, err := withID(v)
		if err != nil {
			return fmt.Errorf("saved network %q: %w", key, err)
		}
		if err := errors.Join(nb.Put([]byte(id.ID), v), ix.Put([]byte(id.Name), []byte(id.ID))); err != nil {
			return err
		}
	}
	for k, v := range s.Meta {
		if k == layoutKey {
			continue // the new file's own
		}
		if err := mb.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// writeSnapshot saves the networks and meta keys of btx, durably.
func (s *boltStore) writeSnapshot(btx *bolt.Tx) error {
	snap := snapshot{Networks: map[string]json.RawMessage{}, Meta: map[string]string{}}
	if err := btx.Bucket([]byte(bNetworks)).ForEach(func(k, v []byte) error {
		snap.Networks[string(k)] = bytes.Clone(v)
		return nil
	}); err != nil {
		return err
	}
	if err := btx.Bucket([]byte(bMeta)).ForEach(func(k, v []byte) error {
		snap.Meta[string(k)] = string(v)
		return nil
	}); err != nil {
		return err
	}
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(s.snapshot, append(data, '\n')); err != nil {
		return fmt.Errorf("save networks to %s: %w", s.snapshot, err)
	}
	return nil
}

// writeFileSync replaces path with data so that after a crash it holds
// either the old or the new content: temporary file, fsync, rename, fsync
// of the directory.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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

type boltStore struct {
	db       *bolt.DB
	snapshot string // path of the saved networks
	group    group.Batcher[batchItem]
	hub      *hub // watchers (watch.go)

	// The revision. Only the group commit's leader changes rev and
	// ceiling (batches never overlap). The state file holds ceiling, not
	// rev: writing the meta key at every commit costs ~10 allocations
	// and ~5% of an Update, so it is written every revisionBlock
	// revisions, as a ceiling of those handed out, and Open goes on from
	// the ceiling (a reopen skips up to revisionBlock numbers). A View
	// learns the revision of its snapshot from txRevs: the revision each
	// recent bbolt transaction ID committed, noted before the commit.
	rev, ceiling int64
	txMu         sync.Mutex
	txRevs       [256]txRev
}

type txRev struct {
	txid int
	rev  int64
}

// revisionBlock is how many revisions one write of the revision meta key
// covers.
const revisionBlock = 1024

// noteTxRev notes that bbolt transaction txid holds revision rev.
func (s *boltStore) noteTxRev(txid int, rev int64) {
	s.txMu.Lock()
	s.txRevs[txid%len(s.txRevs)] = txRev{txid, rev}
	s.txMu.Unlock()
}

// txRevision is the revision of bbolt transaction txid's snapshot.
func (s *boltStore) txRevision(txid int) (int64, error) {
	s.txMu.Lock()
	e := s.txRevs[txid%len(s.txRevs)]
	s.txMu.Unlock()
	if e.txid != txid {
		// len(txRevs) commits between bbolt's begin and this lookup.
		return 0, fmt.Errorf("store: revision of state file transaction %d forgotten; try again", txid)
	}
	return e.rev, nil
}

// batchItem is one Update in the group commit.
type batchItem struct {
	ctx context.Context
	fn  func(Tx) error
}

// Update commits fn's writes, in one commit with the Updates that queued
// while the previous commit ran (group commit, group.go); when they touched
// a network or a meta key, the snapshot of those is saved (fsynced) before
// the commit. fn may run more than once. ctx bounds the wait in the queue;
// in a batch, an Update whose ctx has ended by the time the batch is about
// to commit is dropped from it with ctx.Err() (the others commit).
func (s *boltStore) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.group.DoContext(ctx, batchItem{ctx, fn})
}

// runBatch runs items in one bbolt transaction and commits it
// (commitBatch). Each Update that writes gets the next revision; after the
// commit they go to the watchers.
func (s *boltStore) runBatch(items []batchItem) (int, error) {
	failed, ferr := -1, error(nil)
	rec := newRecorder(s.rev)
	ceiling := s.ceiling
	err := s.db.Update(func(btx *bolt.Tx) error {
		var durable bool
		t := tx{kv: boltKV{tx: btx, durable: &durable, rec: rec}}
		for i, it := range items {
			if err := it.ctx.Err(); err != nil {
				failed, ferr = i, err
				return errBatchFailed
			}
			rec.begin()
			from := len(rec.changes)
			if err := it.fn(t); err != nil {
				failed, ferr = i, err
				return errBatchFailed
			}
			rec.end(from)
		}
		// The last moment a caller's end counts: after this, the commit
		// stands (Store.Update).
		for i, it := range items {
			if err := it.ctx.Err(); err != nil {
				failed, ferr = i, err
				return errBatchFailed
			}
		}
		if rec.rev > ceiling {
			ceiling = rec.rev + revisionBlock
			if err := btx.Bucket([]byte(bMeta)).Put([]byte(revisionKey), strconv.AppendInt(nil, ceiling, 10)); err != nil {
				return err
			}
		}
		s.noteTxRev(btx.ID(), rec.rev) // before Views can see it
		if durable {
			return s.writeSnapshot(btx)
		}
		return nil
	})
	if failed >= 0 {
		return failed, ferr
	}
	if err == nil {
		s.rev, s.ceiling = rec.rev, ceiling
		s.hub.publish(rec)
	}
	return -1, err
}

func (s *boltStore) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(btx *bolt.Tx) error {
		rev, err := s.txRevision(btx.ID())
		if err != nil {
			return err
		}
		return fn(tx{kv: boltKV{tx: btx, rev: rev}})
	})
}

func (s *boltStore) Watch(ctx context.Context, fromRev int64) (<-chan Event, error) {
	return s.hub.watch(ctx, fromRev)
}

func (s *boltStore) Close() error {
	s.hub.close()
	return s.db.Close()
}

type boltKV struct {
	tx      *bolt.Tx
	durable *bool     // set when a write touches a bucket that survives reboots
	rec     *recorder // an Update's writes; nil outside Updates
	rev     int64     // a View's revision
}

// touch notes a write to bucket.
func (k boltKV) touch(bucket string) {
	if k.durable != nil && (bucket == bNetworks || bucket == bMeta) {
		*k.durable = true
	}
}

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

func (k boltKV) get(bucket string, key []byte) ([]byte, error) {
	b, err := k.bucket(bucket, false)
	if b == nil {
		return nil, err
	}
	return bytes.Clone(b.Get(key)), nil // bbolt's slices die with the transaction
}

func (k boltKV) put(bucket string, key, val []byte) error {
	k.touch(bucket)
	b, err := k.bucket(bucket, true)
	if err != nil {
		return err
	}
	if k.rec != nil {
		if val == nil {
			val = []byte{} // nil is a deletion to the recorder
		}
		k.rec.note(bucket, key, val)
	}
	return b.Put(key, val)
}

func (k boltKV) del(bucket string, key []byte) error {
	k.touch(bucket)
	b, err := k.bucket(bucket, false)
	if b == nil {
		if k.rec != nil {
			k.rec.wrote()
		}
		return err
	}
	if k.rec != nil {
		if _, ok := eventKind(bucket); ok && b.Get(key) == nil {
			k.rec.wrote() // a write, no change: no event (as etcd)
		} else {
			k.rec.note(bucket, key, nil)
		}
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
	if k.rec != nil {
		k.rec.wrote()
		if b := k.tx.Bucket([]byte(parent)).Bucket([]byte(child)); b != nil {
			if err := b.ForEach(func(key, _ []byte) error {
				k.rec.note(bucket, bytes.Clone(key), nil)
				return nil
			}); err != nil {
				return err
			}
		}
	}
	err := k.tx.Bucket([]byte(parent)).DeleteBucket([]byte(child))
	if errors.Is(err, bolterrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

func (k boltKV) writable() bool { return k.tx.Writable() }

func (k boltKV) revision() int64 {
	if k.rec != nil {
		return k.rec.rev
	}
	return k.rev
}
