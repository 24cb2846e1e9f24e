package store

// Revisions and watches.
//
// Every committing Update that writes advances the store's revision (see
// Store.Update for by how much), and Watch(ctx, fromRev) streams the
// changes of every revision > fromRev, in revision order, as Events: one
// per record written (its final state in that revision), sorted by Kind
// and then Key within a revision. The secondary indexes (endpoints by
// network, DNS names, host ports, sandboxes by container) are derived
// from the records and have no events.
//
// The usual loop of a cluster layer: View, list what it needs and take
// tx.Revision(); Watch from that revision; apply each event; on an Event
// with Err set (ErrCompacted: it fell behind), list again and watch from
// the new revision.
//
// memory and bbolt (hub, below): each commit hands its changes to the
// store's hub after it committed, in commit order; the hub keeps the last
// historySize commits. A watcher is a goroutine that copies from that
// history into its channel, so a commit never waits for a watcher, however
// slow: a watcher whose reader falls more than historySize commits behind
// finds its next revision gone and ends with an Event whose Err wraps
// ErrCompacted, and its channel closes. A Watch from a revision older than
// the history, or from before the store was opened (the history is not
// saved), fails with ErrCompacted at once.
//
// bbolt keeps in the meta key revisionKey of the state file a ceiling of
// the revisions it handed out, written every revisionBlock revisions
// (bolt.go: writing it at every commit costs the hot path), so a reopen
// goes on from above every revision the previous run gave, skipping up
// to revisionBlock numbers. The key is saved with the networks' snapshot:
// on a new boot (Open starts from the snapshot) it resumes from the
// ceiling of the last commit that changed a network, so numbers given out
// after that in the previous boot may be given out again; watches do not
// outlive the daemon, and a watch from before this Open is ErrCompacted.
//
// etcd: the revision is etcd's, and Watch is etcd's own watch on the
// store's prefix (etcd.go); compaction there is what ends the history.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// ErrCompacted is returned (wrapped) by Watch for a revision older than
// the history the store keeps, and carried (wrapped) by the last Event of
// a watch that fell behind: list again and watch from the new revision.
var ErrCompacted = errors.New("store: revision compacted")

// Kind is what an Event's record is.
type Kind uint8

// The kinds of records, in the order Events of one revision are sorted.
const (
	// KindNetwork: Key is the network's ID, Value a model.Network (JSON;
	// its name is in it: records are keyed by ID, see tx.go).
	KindNetwork Kind = iota + 1
	// KindSandbox: Key is the sandbox's ID, Value a model.Sandbox (JSON).
	KindSandbox
	// KindEndpoint: Key is the endpoint's ID, Value a model.Endpoint
	// (JSON, naming its sandbox and network).
	KindEndpoint
	// KindReservation: Key is "networkID/address" (e.g.
	// "3f2a…/10.0.0.2"), Value the owner (an endpoint ID).
	KindReservation
	// KindCursor: Key is "networkID/ipv4" or "networkID/ipv6", Value the
	// address last handed out, as text.
	KindCursor
	// KindMeta: Key is the meta key, Value its value.
	KindMeta
)

var kindNames = [...]string{"", "network", "sandbox", "endpoint", "reservation", "cursor", "meta"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Op is what happened to an Event's record.
type Op uint8

const (
	OpPut    Op = iota + 1 // created or replaced
	OpDelete               // deleted; the Event has no Value
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", o)
}

// Event is one record's change in one committed revision.
type Event struct {
	Revision int64
	Kind     Kind
	Op       Op
	Key      string // see Kind
	Value    []byte // the record; nil for OpDelete
	// Err, when set, is the reason the watch ended; it is the last
	// Event before the channel closes and has no other field set.
	// errors.Is(Err, ErrCompacted): the watch fell behind, list again.
	// A watch ended by its ctx closes without such an Event.
	Err error
}

func (e Event) String() string {
	if e.Err != nil {
		return fmt.Sprintf("watch ended: %v", e.Err)
	}
	if e.Op == OpDelete {
		return fmt.Sprintf("%d %s %s %s", e.Revision, e.Op, e.Kind, e.Key)
	}
	return fmt.Sprintf("%d %s %s %s %s", e.Revision, e.Op, e.Kind, e.Key, e.Value)
}

// revisionKey is the meta key holding the revision of the memory and
// bbolt stores. SetMeta refuses it.
const revisionKey = "store.revision"

// eventKind tells whether writes to bucket are events, and of which kind.
func eventKind(bucket string) (Kind, bool) {
	switch bucket {
	case bNetworks:
		return KindNetwork, true
	case bSandboxes:
		return KindSandbox, true
	case bEndpoints:
		return KindEndpoint, true
	case bCursors:
		return KindCursor, true
	case bMeta:
		return KindMeta, true
	}
	if strings.HasPrefix(bucket, bIPAM+"/") {
		return KindReservation, true
	}
	return 0, false
}

// toEvent turns a write of the kv layer into an Event (val nil: deleted).
func toEvent(rev int64, bucket string, key, val []byte) (Event, error) {
	kind, ok := eventKind(bucket)
	if !ok {
		return Event{}, fmt.Errorf("store: bucket %s has no events", bucket)
	}
	ev := Event{Revision: rev, Kind: kind, Op: OpPut, Value: val}
	if val == nil {
		ev.Op = OpDelete
	}
	switch kind {
	case KindReservation:
		ip, ok := keyIP(key)
		if !ok {
			return Event{}, fmt.Errorf("store: bad reservation key %x in %s", key, bucket)
		}
		ev.Key = strings.TrimPrefix(bucket, bIPAM+"/") + "/" + ip.String()
	case KindCursor:
		net, v6, _ := strings.Cut(string(key), "\x00")
		ev.Key = net + "/ipv4"
		if v6 == "ipv6" {
			ev.Key = net + "/ipv6"
		}
		if val != nil {
			ip, ok := keyIP(val)
			if !ok {
				return Event{}, fmt.Errorf("store: bad cursor %x on network %s", val, net)
			}
			ev.Value = []byte(ip.String())
		}
	default:
		ev.Key = string(key)
	}
	return ev, nil
}

// sortEvents sorts the events of one revision by Kind and Key and keeps
// the last of each record (its final state), stably.
func sortEvents(evs []Event) []Event {
	slices.SortStableFunc(evs, func(a, b Event) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), strings.Compare(a.Key, b.Key))
	})
	out := evs[:0]
	for i, e := range evs {
		if i+1 < len(evs) && evs[i+1].Kind == e.Kind && evs[i+1].Key == e.Key {
			continue
		}
		out = append(out, e)
	}
	return out
}

// change is one write of a committed Update, as the kv layer saw it: val
// nil is a deletion. The slices are the Update's own (kv.put's callers
// hand over fresh ones; bbolt requires that too), never changed after.
type change struct {
	bucket   string
	key, val []byte
}

// recorder collects the changes of the Updates of one commit (one
// memory Update, one bbolt batch) and counts their revisions.
type recorder struct {
	rev     int64    // the revision the running fn reads at
	writes  int      // writes of the running fn, indexes included
	changes []change // the changes of every fn so far
	commits []commit // one per fn that wrote
	// Room for an attach's changes and commit, so that recording costs
	// one allocation (the recorder) per commit.
	changeBuf [4]change
	commitBuf [1]commit
}

// newRecorder returns a recorder for a commit after revision rev.
func newRecorder(rev int64) *recorder {
	r := &recorder{rev: rev}
	r.changes, r.commits = r.changeBuf[:0], r.commitBuf[:0]
	return r
}

// commit is a revision's changes: changes[from:to] of its recorder.
type commit struct {
	rev      int64
	changes  []change
	from, to int
}

// note records a write to bucket (val nil: a deletion). A nil recorder
// (a View, Open's own transaction) records nothing.
func (r *recorder) note(bucket string, key, val []byte) {
	if r == nil {
		return
	}
	r.writes++
	if _, ok := eventKind(bucket); ok {
		r.changes = append(r.changes, change{bucket, key, val})
	}
}

// wrote counts a write that changes no record (a deletion of a missing
// key, an index): it makes a revision but no event.
func (r *recorder) wrote() {
	if r != nil {
		r.writes++
	}
}

// begin starts the run of one fn.
func (r *recorder) begin() { r.writes = 0 }

// end ends the run of one fn whose writes stand (so far): when it wrote,
// it made a revision.
func (r *recorder) end(from int) {
	if r.writes == 0 {
		return
	}
	r.rev++
	r.commits = append(r.commits, commit{rev: r.rev, from: from, to: len(r.changes)})
}

// historySize is how many commits a hub keeps.
const historySize = 1024

// hub hands the commits of a memory or bbolt store to its watchers (see
// the top of the file).
type hub struct {
	mu     sync.Mutex
	floor  int64         // revisions ≤ floor were never in the history
	rev    int64         // the last published revision
	ring   []commit      // the last commits, oldest at head once full
	head   int           // index of the oldest commit once the ring is full
	size   int           // capacity of ring; historySize unless a test sets it
	wake   chan struct{} // closed at the next publish; nil when nobody waits
	closed bool
}

func newHub(rev int64) *hub { return &hub{floor: rev, rev: rev, size: historySize} }

// publish hands the commits recorded in r, all committed, to watchers.
// It never blocks on them.
func (h *hub) publish(r *recorder) {
	if len(r.commits) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range r.commits {
		c.changes = r.changes[c.from:c.to:c.to]
		if len(h.ring) < h.size {
			h.ring = append(h.ring, c)
		} else {
			h.ring[h.head] = c
			h.head = (h.head + 1) % len(h.ring)
		}
		h.rev = c.rev
	}
	if h.wake != nil {
		close(h.wake)
		h.wake = nil
	}
}

// oldestLocked is the lowest revision a watch may start from (fromRev).
func (h *hub) oldestLocked() int64 {
	return max(h.floor, h.rev-int64(len(h.ring)))
}

// sinceLocked returns the commits after rev, or ErrCompacted.
func (h *hub) sinceLocked(rev int64) ([]commit, error) {
	if rev < h.oldestLocked() {
		return nil, fmt.Errorf("%w: revision %d is older than the %d commits this store keeps (oldest %d, now %d): list again and watch from the new revision",
			ErrCompacted, rev, len(h.ring), h.oldestLocked(), h.rev)
	}
	if rev >= h.rev {
		return nil, nil
	}
	n := int(h.rev - rev)
	out := make([]commit, 0, n)
	start := (h.head + len(h.ring) - n) % len(h.ring)
	for i := range n {
		out = append(out, h.ring[(start+i)%len(h.ring)])
	}
	return out, nil
}

var errStoreClosed = errors.New("store: closed")

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.wake != nil {
		close(h.wake)
		h.wake = nil
	}
}

// watchBuffer is the capacity of a watch's channel.
const watchBuffer = 64

func (h *hub) watch(ctx context.Context, fromRev int64) (<-chan Event, error) {
	h.mu.Lock()
	_, err := h.sinceLocked(min(fromRev, h.rev))
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, errStoreClosed
	}
	if err != nil {
		return nil, err
	}
	out := make(chan Event, watchBuffer)
	go func() {
		defer close(out)
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		next := fromRev // the last revision sent
		var evs []Event
		for {
			h.mu.Lock()
			commits, err := h.sinceLocked(next)
			var wake chan struct{}
			if err == nil && len(commits) == 0 && !h.closed {
				if h.wake == nil {
					h.wake = make(chan struct{})
				}
				wake = h.wake
			}
			closed := h.closed
			h.mu.Unlock()
			if err != nil {
				send(Event{Err: err})
				return
			}
			for _, c := range commits {
				evs = evs[:0]
				for _, ch := range c.changes {
					ev, err := toEvent(c.rev, ch.bucket, ch.key, ch.val)
					if err != nil {
						send(Event{Err: err})
						return
					}
					evs = append(evs, ev)
				}
				for _, ev := range sortEvents(evs) {
					if !send(ev) {
						return
					}
				}
				next = c.rev
			}
			if len(commits) > 0 {
				continue
			}
			if closed {
				send(Event{Err: errStoreClosed})
				return
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// parseRevision reads the revision meta key ("" is 0).
func parseRevision(v []byte) (int64, error) {
	var rev int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("store: bad revision %q in meta key %s", v, revisionKey)
		}
		rev = rev*10 + int64(c-'0')
	}
	return rev, nil
}
