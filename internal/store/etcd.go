package store

// The etcd store (OpenEtcd): the same Tx (tx.go) over etcd v3, so that
// several pontoon daemons on several hosts can share one state.
//
// Layout. Every key lives under the store's prefix (e.g. "/pontoon/"). A
// bucket becomes a key prefix: bucket b's key k is stored at
//
//	prefix + esc(b) + "/" + esc(k)
//
// where esc keeps the bytes [A-Za-z0-9._-] and writes every other byte as
// %XX (so "ipam/web" is "ipam%2Fweb", the endpoint key "sb\x00net" is
// "sb%00net", and `etcdctl get --prefix /pontoon/` stays readable). esc
// is a prefix code: a key has prefix p exactly when its escaped form has
// esc(p) as prefix, so the bucket scans of tx.go are etcd prefix ranges.
// It does not keep byte order ('%' sorts before letters), so scan sorts
// what it read by the unescaped key. Beside the buckets, prefix +
// "!del/" + esc(b) is the deletion guard of bucket b (below); '!' never
// starts an escaped name, so guards are in no bucket's range.
//
// Update is an optimistic transaction. fn runs against a snapshot: the
// first read takes etcd's current revision R (a linearizable read) and
// every later read is made at R (WithRev), so fn sees one consistent
// state, plus its own writes, which are buffered and not sent. Every read
// is recorded:
//
//   - a key read with Get: its ModRevision at R (0 when it was missing);
//   - a scan (bucket, key prefix): the prefix's range.
//
// The commit is one etcd Txn. Its If() holds, for every key read,
// ModRevision(key) == the recorded one (0 for a missing key: etcd gives a
// missing key revisions of 0, so this is CreateRevision == 0 too), and for
// every scanned range, ModRevision(range) < R+1 — a compare over a range
// holds when every key now in the range satisfies it, so it fails when
// any key in the range was changed or created after R — and
// ModRevision(guard of the bucket) < R+1. A deleted key leaves the range
// and no range compare sees it go; that is what the guard is for: every
// commit that deletes in a bucket (del, dropBucket) also puts that
// bucket's guard, so a scan fails its compare when anything was deleted
// from its bucket after R. The guard is per bucket, not per prefix: a
// deletion elsewhere in the bucket fails a scan too (a needless retry,
// never a missed conflict). Its Then() applies the buffered writes: puts,
// deletes, and dropBucket as a delete of the bucket's range (minus the
// keys the same transaction then puts: etcd refuses a Txn whose put falls
// in one of its delete ranges). When a compare fails, another writer
// changed something fn read: fn runs again from scratch on a new
// snapshot, after a short random back-off, up to maxAttempts times, and
// then Update returns ErrContention. So fn may run more than once — the
// Store contract already says so.
//
// Why this is serializable: a commit succeeds only if nothing fn read —
// the value of each key it got, and the set and values of the keys of
// each range it scanned — changed between R and the commit's own
// revision C. So fn's reads are what they would be at C-1, and its writes
// land at C: the transaction is equivalent to running fn alone, at once,
// at C. etcd applies Txns one at a time, so the committed Updates of
// every daemon sharing the prefix run as if serially in the order of
// their revisions. That covers pontoon's read-modify-writes: reserving
// the next free address (read the cursor and the reservation, write
// both), the DNS-name and port indexes (read the index, write it), and
// "is this network still in use" checks (a scan that a concurrent attach
// or detach changes). Blind writes (a key written without being read) are
// not compared: the last commit wins, as in any serial order.
//
// Compares are bounded: etcd refuses a Txn with more than --max-txn-ops
// (default 128) compares or writes. Reads covered by a scanned range need
// no compare of their own, and when one bucket has more than
// maxKeyCompares point reads they become one range compare over the whole
// bucket plus its guard (coarser, still sound). So an Update's compares
// grow with the buckets and prefixes it read, not with the keys: at most
// maxKeyCompares key compares per bucket, one range compare per prefix
// scanned and one guard per bucket scanned (a dozen or so for an attach).
// Its writes are those of one Update, since Updates of one Store are not
// batched; an Update that passes the limit fails with an error that says
// so. Guards are never deleted (a deleted guard reads as revision 0 and
// would pass the compare): a bucket that was ever deleted from keeps one
// empty key, even after its network is gone.
//
// Updates of one Store run one at a time (as bbolt's single writer), so a
// daemon's own Updates never conflict with each other: conflicts, and
// retries, come only from other daemons on the same prefix. Group commit
// (several Updates in one Txn, as bolt.go does) is the next step if one
// daemon's Update rate needs it; it must split batches that pass
// --max-txn-ops.
//
// View reads at one revision the same way, writes nothing and never runs
// fn twice. A read at a revision that etcd has compacted since fails the
// transaction: Update runs fn again, View returns the error.
//
// ctx (Store.Update): it bounds the wait for the writer, every read and
// every back-off, and is checked before the commit; the commit request
// itself is bounded by requestTimeout and not by ctx, so that an Update
// that returns ctx's error has written nothing (a commit cut off midway
// could have landed or not, and the caller could not tell). A failed read
// is an error of the Tx getter that made it, and fails the transaction
// even when fn drops it.
//
// Revisions and Watch. Tx.Revision is the snapshot's revision R. Watch is
// etcd's watch of the prefix from fromRev+1 (with WithRequireLeader: a
// member cut off from its leader ends the watch rather than go silent);
// keys map back to bucket and key as the layout above, guard keys and
// the secondary indexes have no events. Watch first reads at fromRev+1,
// so that a compacted revision is ErrCompacted from Watch itself; a
// compaction that overtakes a running watch ends it with an Event whose
// Err wraps ErrCompacted. Close ends the store's watches (with an Event
// whose Err says so).
//
// OpenEtcd does not own the client: Close leaves it open (the caller closes
// it) and only makes later Updates and Views fail.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"pontoon/internal/model"
)

// ErrContention is returned (wrapped) by an etcd store's Update that gave
// up after maxAttempts runs, each of which found that another writer had
// changed what it read.
var ErrContention = errors.New("store: too much contention")

const (
	// maxAttempts bounds the runs of one Update's fn.
	maxAttempts = 20
	// maxKeyCompares is the number of point reads in one bucket above
	// which they are compared as one range over the bucket.
	maxKeyCompares = 8
	// requestTimeout bounds each request to etcd.
	requestTimeout = 10 * time.Second
	// guardPrefix starts the deletion guards' keys (after the prefix).
	guardPrefix = "!del/"
	// revKey (after the prefix) is a key never written: Tx.Revision reads
	// it to take a snapshot's revision.
	revKey = "!rev"
)

// OpenEtcd returns a Store kept in etcd under prefix, which must end with
// '/'; cli stays the caller's. It checks with one read (bounded by ctx)
// that etcd answers. The layout and the transactions are described at the
// top of etcd.go.
func OpenEtcd(ctx context.Context, cli *clientv3.Client, prefix string, log *slog.Logger) (Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cli == nil {
		return nil, errors.New("store: no etcd client given")
	}
	if !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("store: etcd key prefix %q does not end with '/': give one such as \"/pontoon/\"", prefix)
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("store: read etcd prefix %s (endpoints %v): %w", prefix, cli.Endpoints(), err)
	}
	log.Debug("etcd store open", "prefix", prefix, "keys", resp.Count, "revision", resp.Header.Revision)
	stop, cancel := context.WithCancel(context.Background())
	return &etcdStore{
		cli:         cli,
		prefix:      prefix,
		log:         log,
		writer:      make(chan struct{}, 1),
		stop:        stop,
		cancel:      cancel,
		maxAttempts: maxAttempts,
	}, nil
}

type etcdStore struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger

	writer      chan struct{} // one Update at a time (see the top of the file); held when full
	closed      atomic.Bool
	stop        context.Context // ends at Close: ends the watches
	cancel      context.CancelFunc
	maxAttempts int          // maxAttempts; tests lower it
	conflicts   atomic.Int64 // failed commits, for tests
}

var errClosed = errors.New("store: the etcd store is closed")

func (s *etcdStore) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writer }()
	for attempt := 1; ; attempt++ {
		if s.closed.Load() {
			return errClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		k := s.newKV(ctx, true)
		err := fn(tx{kv: k})
		switch {
		case k.err != nil && errors.Is(k.err, rpctypes.ErrCompacted) && ctx.Err() == nil:
			// Read at a revision compacted meanwhile: run again on a new
			// snapshot, whatever fn made of the failed read.
		case err != nil:
			return err // fn's own error, or a failed read fn passed on
		case k.err != nil:
			// A failed read fn dropped: it saw nil where etcd had not
			// answered, so its writes may rest on nothing.
			return k.err
		default:
			if err := ctx.Err(); err != nil {
				return err // the last moment ctx counts (see the top of the file)
			}
			ok, err := k.commit()
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			s.conflicts.Add(1)
		}
		if attempt >= s.maxAttempts {
			return fmt.Errorf("%w: gave up after %d attempts, each found that another writer (another pontoon daemon on etcd prefix %s) had changed what it read; try again", ErrContention, attempt, s.prefix)
		}
		s.log.Debug("etcd store: transaction conflicted, running it again", "attempt", attempt)
		// Full jitter, growing to ~64 ms: contenders spread out.
		t := time.NewTimer(time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6))))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (s *etcdStore) View(ctx context.Context, fn func(Tx) error) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k := s.newKV(ctx, false)
	err := fn(tx{kv: k})
	if err != nil {
		return err
	}
	return k.err
}

func (s *etcdStore) Close() error {
	s.closed.Store(true)
	s.cancel()
	return nil
}

func (s *etcdStore) newKV(ctx context.Context, rw bool) *etcdKV {
	return &etcdKV{
		s:       s,
		ctx:     ctx,
		rw:      rw,
		cache:   map[string]cached{},
		pend:    map[string]map[string][]byte{},
		dropped: map[string]bool{},
		reads:   map[string]map[string]int64{},
		scans:   map[string][]string{},
	}
}

// escSafe tells which bytes esc keeps.
func escSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

const hexDigits = "0123456789ABCDEF"

// esc escapes a bucket name or key for etcd (see the top of the file).
func esc(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		if escSafe(c) {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('%')
			sb.WriteByte(hexDigits[c>>4])
			sb.WriteByte(hexDigits[c&15])
		}
	}
	return sb.String()
}

// unesc reverses esc.
func unesc(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) {
			return nil, fmt.Errorf("store: bad escaped etcd key %q", s)
		}
		c, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("store: bad escaped etcd key %q", s)
		}
		out = append(out, byte(c))
		i += 2
	}
	return out, nil
}

// bucketKey is where bucket's keys start in etcd.
func (s *etcdStore) bucketKey(bucket string) string { return s.prefix + esc([]byte(bucket)) + "/" }

func (s *etcdStore) guardKey(bucket string) string {
	return s.prefix + guardPrefix + esc([]byte(bucket))
}

// cached is a key read from etcd in this transaction.
type cached struct {
	val []byte // nil when missing
	rev int64  // ModRevision, 0 when missing
}

// etcdKV is one run of a transaction (see the top of the file).
type etcdKV struct {
	s   *etcdStore
	ctx context.Context // the caller's: bounds every read
	rw  bool
	rev int64 // the snapshot's revision; 0 until the first read
	err error // the first failed read; the transaction fails with it

	cache   map[string]cached            // etcd key → what etcd had at rev
	pend    map[string]map[string][]byte // buffered writes, as memKV's (nil: deleted)
	dropped map[string]bool
	reads   map[string]map[string]int64 // bucket → etcd key → ModRevision read
	scans   map[string][]string         // bucket → escaped key prefixes scanned
}

// read reads from etcd at the snapshot's revision. The first read sets it:
// a linearizable read, so the snapshot holds every commit that returned
// before the transaction began, whichever daemon made it.
func (k *etcdKV) read(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if k.err != nil {
		return nil, k.err
	}
	ctx, cancel := context.WithTimeout(k.ctx, requestTimeout)
	defer cancel()
	var resp *clientv3.GetResponse
	var err error
	if k.rev != 0 {
		// A revision's content never changes, so any member that has
		// applied it may answer from its own state (serializable, no
		// ReadIndex round: 0.22 against 0.35 ms here, one member on a
		// unix socket). A member behind rev says so (ErrFutureRev); then
		// the read is made linearizable.
		opts = append(opts, clientv3.WithRev(k.rev))
		resp, err = k.s.cli.Get(ctx, key, append(opts, clientv3.WithSerializable())...)
		if errors.Is(err, rpctypes.ErrFutureRev) {
			resp, err = k.s.cli.Get(ctx, key, opts...)
		}
	} else {
		resp, err = k.s.cli.Get(ctx, key, opts...)
	}
	if err != nil {
		k.err = fmt.Errorf("store: read %s from etcd: %w", key, err)
		return nil, k.err
	}
	if k.rev == 0 {
		k.rev = resp.Header.Revision
	}
	return resp, nil
}

func (k *etcdKV) get(bucket string, key []byte) ([]byte, error) {
	if v, ok := k.pend[bucket][string(key)]; ok {
		return bytes.Clone(v), nil
	}
	if k.dropped[bucket] {
		return nil, nil
	}
	ek := k.s.bucketKey(bucket) + esc(key)
	c, ok := k.cache[ek]
	if !ok {
		resp, err := k.read(ek)
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 1 {
			c = cached{val: resp.Kvs[0].Value, rev: resp.Kvs[0].ModRevision}
			if c.val == nil {
				c.val = []byte{}
			}
		}
		k.cache[ek] = c
	}
	if k.reads[bucket] == nil {
		k.reads[bucket] = map[string]int64{}
	}
	k.reads[bucket][ek] = c.rev
	return bytes.Clone(c.val), nil
}

func (k *etcdKV) write(bucket string, key []byte, val []byte) {
	p := k.pend[bucket]
	if p == nil {
		p = map[string][]byte{}
		k.pend[bucket] = p
	}
	p[string(key)] = val
}

func (k *etcdKV) put(bucket string, key, val []byte) error {
	if val == nil {
		val = []byte{} // nil marks a deletion in pend
	}
	k.write(bucket, key, bytes.Clone(val))
	return nil
}

func (k *etcdKV) del(bucket string, key []byte) error {
	k.write(bucket, key, nil)
	return nil
}

func (k *etcdKV) dropBucket(bucket string) error {
	k.dropped[bucket] = true
	delete(k.pend, bucket)
	return nil
}

func (k *etcdKV) writable() bool { return k.rw }

// revision is the snapshot's revision, taken now when nothing was read yet
// (a read of a key never written; not a read to compare at the commit).
func (k *etcdKV) revision() int64 {
	if k.rev == 0 {
		_, _ = k.read(k.s.prefix + revKey) // on failure k.err fails the transaction
	}
	return k.rev
}

func (k *etcdKV) scan(bucket string, prefix []byte, fn func(k, v []byte) error) error {
	type rec struct{ k, v []byte }
	var recs []rec
	if !k.dropped[bucket] {
		bk := k.s.bucketKey(bucket)
		ep := esc(prefix)
		resp, err := k.read(bk+ep, clientv3.WithPrefix())
		if err != nil {
			return err
		}
		k.scans[bucket] = append(k.scans[bucket], ep)
		for _, kv := range resp.Kvs {
			raw, err := unesc(string(kv.Key[len(bk):]))
			if err != nil {
				return err
			}
			k.cache[string(kv.Key)] = cached{val: kv.Value, rev: kv.ModRevision}
			if _, ok := k.pend[bucket][string(raw)]; !ok {
				recs = append(recs, rec{raw, kv.Value})
			}
		}
	}
	for key, v := range k.pend[bucket] {
		if v != nil && strings.HasPrefix(key, string(prefix)) {
			recs = append(recs, rec{[]byte(key), v})
		}
	}
	slices.SortFunc(recs, func(a, b rec) int { return bytes.Compare(a.k, b.k) })
	for _, r := range recs {
		if err := fn(r.k, bytes.Clone(r.v)); err != nil {
			return err
		}
	}
	return nil
}

// compares returns the If() of the commit: what this run read has not
// changed since rev.
func (k *etcdKV) compares() []clientv3.Cmp {
	if k.rev == 0 {
		return nil // read nothing
	}
	after := k.rev + 1
	var cmps []clientv3.Cmp
	for _, bucket := range sortedKeys(k.reads, k.scans) {
		bk := k.s.bucketKey(bucket)
		scans := k.scans[bucket]
		var points []string
		for ek := range k.reads[bucket] {
			if !slices.ContainsFunc(scans, func(p string) bool { return strings.HasPrefix(ek, bk+p) }) {
				points = append(points, ek)
			}
		}
		if len(points) > maxKeyCompares {
			scans, points = []string{""}, nil // the whole bucket
		}
		slices.Sort(points)
		for _, ek := range points {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(ek), "=", k.reads[bucket][ek]))
		}
		if len(scans) > 0 {
			for _, p := range compactPrefixes(scans) {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(bk+p).WithPrefix(), "<", after))
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k.s.guardKey(bucket)), "<", after))
		}
	}
	return cmps
}

// sortedKeys returns the buckets of a and b, sorted.
func sortedKeys(a map[string]map[string]int64, b map[string][]string) []string {
	var out []string
	for x := range a {
		out = append(out, x)
	}
	for x := range b {
		out = append(out, x)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// compactPrefixes drops the prefixes that another one covers.
func compactPrefixes(ps []string) []string {
	ps = slices.Clone(ps)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	var out []string
	for _, p := range ps {
		if len(out) == 0 || !strings.HasPrefix(p, out[len(out)-1]) {
			out = append(out, p)
		}
	}
	return out
}

// ops returns the Then() of the commit: the buffered writes.
func (k *etcdKV) ops() []clientv3.Op {
	var ops []clientv3.Op
	guards := map[string]bool{}
	for _, bucket := range slices.Sorted(maps.Keys(k.dropped)) {
		guards[bucket] = true
		// Delete the bucket's range around the keys this run puts into
		// it: [start, k1), [k1\x00, k2), …, [kn\x00, end).
		bk := k.s.bucketKey(bucket)
		start, end := bk, clientv3.GetPrefixRangeEnd(bk)
		var kept []string
		for key, v := range k.pend[bucket] {
			if v != nil {
				kept = append(kept, bk+esc([]byte(key)))
			}
		}
		slices.Sort(kept)
		for _, ek := range kept {
			if start < ek {
				ops = append(ops, clientv3.OpDelete(start, clientv3.WithRange(ek)))
			}
			start = ek + "\x00"
		}
		ops = append(ops, clientv3.OpDelete(start, clientv3.WithRange(end)))
	}
	for _, bucket := range slices.Sorted(maps.Keys(k.pend)) {
		bk := k.s.bucketKey(bucket)
		for _, key := range slices.Sorted(maps.Keys(k.pend[bucket])) {
			v := k.pend[bucket][key]
			ek := bk + esc([]byte(key))
			switch {
			case v != nil:
				ops = append(ops, clientv3.OpPut(ek, string(v)))
			case !k.dropped[bucket]: // else the range delete has it
				ops = append(ops, clientv3.OpDelete(ek))
				guards[bucket] = true
			}
		}
	}
	for _, bucket := range slices.Sorted(maps.Keys(guards)) {
		ops = append(ops, clientv3.OpPut(k.s.guardKey(bucket), ""))
	}
	return ops
}

// commit sends the run's writes if what it read has not changed; false
// when it has (run fn again).
func (k *etcdKV) commit() (bool, error) {
	ops := k.ops()
	if len(ops) == 0 {
		return true, nil // read-only: the snapshot was serializable as it was
	}
	// Not bounded by the caller's ctx: a commit that has begun is finished
	// (see the top of the file).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(k.ctx), requestTimeout)
	defer cancel()
	cmps := k.compares()
	resp, err := k.s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if errors.Is(err, rpctypes.ErrTooManyOps) {
		return false, fmt.Errorf("store: commit %d writes and %d compares to etcd under %s: %w: raise etcd's --max-txn-ops (default 128)", len(ops), len(cmps), k.s.prefix, err)
	}
	if err != nil {
		return false, fmt.Errorf("store: commit %d writes to etcd under %s: %w", len(ops), k.s.prefix, err)
	}
	return resp.Succeeded, nil
}

// Watch streams the changes under the prefix after fromRev (see the top of
// the file).
func (s *etcdStore) Watch(ctx context.Context, fromRev int64) (<-chan Event, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if fromRev < 0 {
		return nil, model.Invalidf("store: watch from revision %d: give a revision ≥ 0 (a Tx's Revision)", fromRev)
	}
	// etcd tells a compacted revision on the watch's first response; a
	// read at it tells now, so that Watch itself can say so.
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	_, err := s.cli.Get(rctx, s.prefix+revKey, clientv3.WithRev(fromRev+1), clientv3.WithSerializable())
	cancel()
	if err != nil && !errors.Is(err, rpctypes.ErrFutureRev) {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, fmt.Errorf("%w: etcd has compacted revision %d: list again and watch from the new revision", ErrCompacted, fromRev+1)
		}
		return nil, fmt.Errorf("store: watch etcd prefix %s from revision %d: %w", s.prefix, fromRev+1, err)
	}
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	stopWatch := context.AfterFunc(s.stop, wcancel)
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev+1))
	out := make(chan Event, watchBuffer)
	go func() {
		defer close(out)
		defer wcancel()
		defer stopWatch()
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-wctx.Done():
				return false
			}
		}
		fail := func(err error) {
			// Not through send: wctx may be what ended (Close).
			select {
			case out <- Event{Err: err}:
			case <-ctx.Done():
			}
		}
		var evs []Event
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					err = fmt.Errorf("%w: etcd compacted revision %d while it was watched: list again and watch from the new revision", ErrCompacted, resp.CompactRevision)
				} else {
					err = fmt.Errorf("store: watch of etcd prefix %s: %w", s.prefix, err)
				}
				fail(err)
				return
			}
			evs = evs[:0]
			for _, e := range resp.Events {
				ev, ok, err := s.event(e)
				if err != nil {
					fail(err)
					return
				}
				if ok {
					evs = append(evs, ev)
				}
			}
			// One revision's events come in one response: sort each
			// revision's as memory and bbolt do.
			for len(evs) > 0 {
				n := 1
				for n < len(evs) && evs[n].Revision == evs[0].Revision {
					n++
				}
				for _, ev := range sortEvents(evs[:n]) {
					if !send(ev) {
						return
					}
				}
				evs = evs[n:]
			}
		}
		switch {
		case ctx.Err() != nil:
		case s.closed.Load():
			fail(errStoreClosed)
		default:
			fail(fmt.Errorf("store: watch of etcd prefix %s ended (etcd closed it); watch again", s.prefix))
		}
	}()
	return out, nil
}

// event maps an etcd event back to a store Event; false for keys that have
// none (guards, indexes).
func (s *etcdStore) event(e *clientv3.Event) (Event, bool, error) {
	rest, ok := strings.CutPrefix(string(e.Kv.Key), s.prefix)
	if !ok || strings.HasPrefix(rest, "!") {
		return Event{}, false, nil
	}
	eb, ek, ok := strings.Cut(rest, "/")
	if !ok {
		return Event{}, false, nil
	}
	bucket, err := unesc(eb)
	if err != nil {
		return Event{}, false, err
	}
	if _, ok := eventKind(string(bucket)); !ok {
		return Event{}, false, nil
	}
	key, err := unesc(ek)
	if err != nil {
		return Event{}, false, err
	}
	var val []byte
	if e.Type == mvccpb.PUT {
		val = e.Kv.Value
		if val == nil {
			val = []byte{}
		}
	}
	ev, err := toEvent(e.Kv.ModRevision, string(bucket), key, val)
	return ev, err == nil, err
}
