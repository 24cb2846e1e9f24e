package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"pontoon/internal/model"
)

// revision is the store's revision, as a View reads it.
func revision(t *testing.T, s Store) int64 {
	t.Helper()
	var rev int64
	view(t, s, func(tx Tx) error { rev = tx.Revision(); return nil })
	return rev
}

// advanced checks that a commit moved the revision from before to after:
// by exactly one on memory and bbolt, forward on etcd (etcd's revision).
func advanced(t *testing.T, s Store, before, after int64) {
	t.Helper()
	if _, etcd := s.(*etcdStore); etcd && after > before {
		return
	}
	if after != before+1 {
		t.Errorf("revision %d after a commit at %d, want %d", after, before, before+1)
	}
}

func TestUpdateContext(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		rev := revision(t, s)
		// Ended before: fn never runs, nothing is written.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ran := false
		if err := s.Update(ctx, func(tx Tx) error { ran = true; return tx.PutNetwork(&model.Network{ID: "a", Name: "a"}) }); !errors.Is(err, context.Canceled) || ran {
			t.Errorf("Update with an ended ctx: %v, fn ran: %v", err, ran)
		}
		if err := s.View(ctx, func(tx Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
			t.Errorf("View with an ended ctx: %v, fn ran: %v", err, ran)
		}

		// Ended while fn runs: rolled back. fn drops the error of its read
		// after the end (etcd's read fails, the others' succeed): the
		// Update still fails.
		ctx, cancel = context.WithCancel(context.Background())
		err := s.Update(ctx, func(tx Tx) error {
			cancel()
			_, _ = tx.Network("x")
			return tx.PutNetwork(&model.Network{ID: "a", Name: "a"})
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Update whose ctx ended while it ran: %v, want context.Canceled", err)
		}
		// A read after the end reports it (etcd) or succeeds (the
		// others, which do not read through a network).
		ctx, cancel = context.WithCancel(context.Background())
		var readErr error
		_ = s.View(ctx, func(tx Tx) error { cancel(); _, readErr = tx.Network("x"); return nil })
		if _, etcd := s.(*etcdStore); etcd != errors.Is(readErr, context.Canceled) {
			t.Errorf("read after the end of a View's ctx: %v", readErr)
		}

		// Ended while waiting for the writer: gives up at once, and the
		// Update holding the writer commits.
		hold, holding := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		var once sync.Once
		go func() {
			first <- s.Update(context.Background(), func(tx Tx) error {
				once.Do(func() { close(holding) })
				<-hold
				return tx.PutNetwork(&model.Network{ID: "first", Name: "first"})
			})
		}()
		<-holding
		ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
		err = s.Update(ctx, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "waiter", Name: "waiter"}) })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Update waiting for the writer past its deadline: %v", err)
		}
		close(hold)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		view(t, s, func(tx Tx) error {
			ns, err := tx.Networks()
			if got := names(ns, func(n *model.Network) string { return n.Name }); got != "first" || err != nil {
				t.Errorf("networks %q (%v), want only first", got, err)
			}
			return nil
		})
		advanced(t, s, rev, revision(t, s))
	})
}

// The revision moves with every writing commit and only then; a Tx reads
// at the revision before its own writes.
func TestRevision(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		r0 := revision(t, s)
		var inside int64
		update(t, s, func(tx Tx) error { inside = tx.Revision(); return tx.PutNetwork(&model.Network{ID: "a", Name: "a"}) })
		if inside != r0 {
			t.Errorf("Update read at revision %d, want %d", inside, r0)
		}
		r1 := revision(t, s)
		advanced(t, s, r0, r1)

		_ = s.Update(context.Background(), func(tx Tx) error {
			_ = tx.PutNetwork(&model.Network{ID: "b", Name: "b"})
			return errors.New("abort")
		})
		update(t, s, func(tx Tx) error { _, err := tx.Networks(); return err }) // reads only
		if r := revision(t, s); r != r1 {
			t.Errorf("revision %d after a failed and a read-only Update, want %d", r, r1)
		}

		// Concurrent Updates (bbolt: group commits): one revision each.
		const n = 16
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if err := s.Update(context.Background(), func(tx Tx) error {
					return tx.Reserve("a", netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), fmt.Sprint(i))
				}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		r2 := revision(t, s)
		if _, etcd := s.(*etcdStore); (etcd && r2 < r1+n) || (!etcd && r2 != r1+n) {
			t.Errorf("revision %d after %d Updates at %d", r2, n, r1)
		}
	})
}

// ev is an Event without its revision and with a short value, to compare.
type ev struct {
	Kind  Kind
	Op    Op
	Key   string
	Value string
}

func short(e Event) ev {
	v := string(e.Value)
	if e.Kind == KindNetwork || e.Kind == KindEndpoint || e.Kind == KindSandbox {
		var rec struct{ ID string }
		if err := json.Unmarshal(e.Value, &rec); err == nil && e.Value != nil {
			v = "id=" + rec.ID
		}
	}
	return ev{e.Kind, e.Op, e.Key, v}
}

// collect reads n events from ch, grouped by revision, and checks that
// revisions increase.
func collect(t *testing.T, ch <-chan Event, n int) ([][]ev, []int64) {
	t.Helper()
	var groups [][]ev
	var revs []int64
	timeout := time.After(10 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d events, want %d", got, n)
			}
			if e.Err != nil {
				t.Fatalf("watch ended: %v", e.Err)
			}
			if len(revs) == 0 || e.Revision != revs[len(revs)-1] {
				if len(revs) > 0 && e.Revision < revs[len(revs)-1] {
					t.Fatalf("revision %d after %d", e.Revision, revs[len(revs)-1])
				}
				revs = append(revs, e.Revision)
				groups = append(groups, nil)
			}
			groups[len(groups)-1] = append(groups[len(groups)-1], short(e))
		case <-timeout:
			t.Fatalf("timed out after %d events, want %d: %v", got, n, groups)
		}
	}
	return groups, revs
}

// quiet checks that ch has nothing more for a moment.
func quiet(t *testing.T, ch <-chan Event) {
	t.Helper()
	select {
	case e := <-ch:
		t.Errorf("unexpected event %v", e)
	case <-time.After(100 * time.Millisecond):
	}
}

// The changes, in revision order: a watch started before them and one
// started after them from the same revision see exactly the same.
func TestWatch(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		update(t, s, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "n0", Name: "old"}) })
		r0 := revision(t, s)
		live1, err := s.Watch(ctx, r0)
		if err != nil {
			t.Fatal(err)
		}
		live2, err := s.Watch(ctx, r0)
		if err != nil {
			t.Fatal(err)
		}
		ip, ip2 := addr("10.7.0.2"), addr("10.7.0.3")
		ep := &model.Endpoint{ID: "e1", Sandbox: "sb", Network: "web", IfName: "eth0", Aliases: []string{"x"}}
		steps := []struct {
			fn   func(Tx) error
			want []ev
		}{
			{func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "n1", Name: "web"}) },
				[]ev{{KindNetwork, OpPut, "n1", "id=n1"}}},
			{func(tx Tx) error {
				return errors.Join(tx.PutSandbox(&model.Sandbox{ID: "s1", Name: "sb"}), tx.PutEndpoint(ep),
					tx.Reserve("n1", ip, "e1"), tx.Reserve("n1", ip2, "e1"), tx.SetCursor("n1", ip2))
			}, []ev{
				{KindSandbox, OpPut, "s1", "id=s1"},
				{KindEndpoint, OpPut, "e1", "id=e1"},
				{KindReservation, OpPut, "n1/10.7.0.2", "e1"},
				{KindReservation, OpPut, "n1/10.7.0.3", "e1"},
				{KindCursor, OpPut, "n1/ipv4", "10.7.0.3"},
			}},
			{func(tx Tx) error { return errors.Join(tx.Release("n1", ip), tx.Release("n1", addr("10.7.0.99"))) },
				[]ev{{KindReservation, OpDelete, "n1/10.7.0.2", ""}}}, // a missing key has no event
			{func(tx Tx) error { return tx.DeleteEndpoint("sb", "web") },
				[]ev{{KindEndpoint, OpDelete, "e1", ""}}},
			{func(tx Tx) error {
				return errors.Join(tx.DeleteNetwork("web"), tx.DeleteNetwork("old"), tx.SetMeta("k", "v"))
			},
				[]ev{
					{KindNetwork, OpDelete, "n0", ""},
					{KindNetwork, OpDelete, "n1", ""},
					{KindReservation, OpDelete, "n1/10.7.0.3", ""},
					{KindCursor, OpDelete, "n1/ipv4", ""},
					{KindMeta, OpPut, "k", "v"},
				}},
		}
		var want [][]ev
		for _, st := range steps {
			update(t, s, st.fn)
			// Failed and read-only Updates in between have no events.
			_ = s.Update(ctx, func(tx Tx) error {
				_ = tx.PutNetwork(&model.Network{ID: "nope", Name: "nope"})
				return errors.New("abort")
			})
			update(t, s, func(tx Tx) error { _, err := tx.Network("web"); _ = err; return nil })
			want = append(want, st.want)
		}
		late, err := s.Watch(ctx, r0)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, w := range want {
			total += len(w)
		}
		for name, ch := range map[string]<-chan Event{"live1": live1, "live2": live2, "late": late} {
			got, revs := collect(t, ch, total)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: events (-want +got):\n%s", name, diff)
			}
			if revs[0] <= r0 {
				t.Errorf("%s: first revision %d, watched from %d", name, revs[0], r0)
			}
			if _, etcd := s.(*etcdStore); !etcd && revs[len(revs)-1] != r0+int64(len(want)) {
				t.Errorf("%s: revisions %v from %d", name, revs, r0)
			}
			quiet(t, ch)
		}
		// From the last revision: nothing until the next commit.
		last, err := s.Watch(ctx, revision(t, s))
		if err != nil {
			t.Fatal(err)
		}
		quiet(t, last)
		update(t, s, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "n9", Name: "next"}) })
		if got, _ := collect(t, last, 1); !cmp.Equal(got, [][]ev{{{KindNetwork, OpPut, "n9", "id=n9"}}}) {
			t.Errorf("watch from the last revision: %v", got)
		}

		// A cancelled watch's channel closes.
		wctx, wcancel := context.WithCancel(ctx)
		w, err := s.Watch(wctx, revision(t, s))
		if err != nil {
			t.Fatal(err)
		}
		wcancel()
		closed(t, w)
	})
}

// closed checks that ch closes (after any events it had).
func closed(t *testing.T, ch <-chan Event) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return
			}
			if e.Err != nil {
				t.Errorf("event before the close: %v", e)
			}
		case <-timeout:
			t.Fatal("watch channel not closed")
		}
	}
}

// compact forgets the history up to the store's current revision:
// memory and bbolt keep only one commit, etcd compacts.
func compact(t *testing.T, s Store) {
	t.Helper()
	switch s := s.(type) {
	case *memStore:
		shrink(s.hub)
	case *boltStore:
		shrink(s.hub)
	case *etcdStore:
		var rev int64
		view(t, s, func(tx Tx) error { rev = tx.Revision(); return nil })
		if _, err := s.cli.Compact(context.Background(), rev); err != nil {
			t.Fatal(err)
		}
	}
}

func shrink(h *hub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.size, h.ring, h.head = 1, nil, 0
	h.floor = h.rev
}

func TestWatchCompacted(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		r0 := revision(t, s)
		for i := range 3 {
			update(t, s, func(tx Tx) error {
				return tx.PutNetwork(&model.Network{ID: fmt.Sprint("n", i), Name: fmt.Sprint("n", i)})
			})
		}
		compact(t, s)
		update(t, s, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "after", Name: "after"}) })
		if _, err := s.Watch(context.Background(), r0); !errors.Is(err, ErrCompacted) || !strings.Contains(err.Error(), "list again") {
			t.Errorf("watch from before the history: %v, want ErrCompacted", err)
		}
	})
}

// A watcher that does not read never holds up a commit: it falls out of
// the history and ends with ErrCompacted (memory and bbolt; etcd's own
// watch buffers on the server).
func TestSlowWatcher(t *testing.T) {
	for _, impl := range impls[:2] {
		t.Run(impl.name, func(t *testing.T) {
			s := impl.open(t)
			var h *hub
			switch s := s.(type) {
			case *memStore:
				h = s.hub
			case *boltStore:
				h = s.hub
			}
			h.mu.Lock()
			h.size = 8
			h.mu.Unlock()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w, err := s.Watch(ctx, revision(t, s))
			if err != nil {
				t.Fatal(err)
			}
			// More commits than the channel and the history hold.
			for i := range watchBuffer + 2*8 {
				update(t, s, func(tx Tx) error {
					return tx.PutNetwork(&model.Network{ID: fmt.Sprint("n", i), Name: fmt.Sprint("n", i)})
				})
			}
			var n int
			var last Event
			for e := range w {
				n++
				last = e
			}
			if !errors.Is(last.Err, ErrCompacted) || n > watchBuffer+8+1 {
				t.Errorf("slow watcher: %d events, the last %v; want at most %d and ErrCompacted", n, last, watchBuffer+8+1)
			}
		})
	}
}

// Close ends the watches with an error event.
func TestWatchEndsAtClose(t *testing.T) {
	forEach(t, func(t *testing.T, s Store) {
		w, err := s.Watch(context.Background(), revision(t, s))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		var last Event
		for e := range w {
			last = e
		}
		if last.Err == nil {
			t.Errorf("watch ended at Close without saying why")
		}
	})
}

// Two daemons on one prefix: one writes, the other watches.
func TestEtcdWatchAcrossDaemons(t *testing.T) {
	a, b, _ := twoDaemons(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r0 := revision(t, b)
	w, err := b.Watch(ctx, r0)
	if err != nil {
		t.Fatal(err)
	}
	update(t, a, func(tx Tx) error {
		return errors.Join(tx.PutNetwork(&model.Network{ID: "n1", Name: "web"}), tx.Reserve("n1", addr("10.8.0.2"), "e1"))
	})
	update(t, a, func(tx Tx) error { return tx.DeleteNetwork("web") })
	got, revs := collect(t, w, 4)
	want := [][]ev{
		{{KindNetwork, OpPut, "n1", "id=n1"}, {KindReservation, OpPut, "n1/10.8.0.2", "e1"}},
		{{KindNetwork, OpDelete, "n1", ""}, {KindReservation, OpDelete, "n1/10.8.0.2", ""}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("b's watch of a's writes (-want +got):\n%s", diff)
	}
	// b lists at a's last revision and sees what the watch said.
	var rb int64
	view(t, b, func(tx Tx) error {
		rb = tx.Revision()
		if _, err := tx.Network("web"); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("b after the delete: %v", err)
		}
		return nil
	})
	if rb < revs[1] {
		t.Errorf("b reads at %d, before the watched revision %d", rb, revs[1])
	}
}

// The bbolt revision's ceiling is in the state file: a reopen (same boot)
// goes on from above every revision given, and a watch from before the
// reopen is ErrCompacted.
func TestBoltRevisionSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	withBoot(t, "boot-1")
	s := mustOpen(t, path)
	update(t, s, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "a", Name: "a"}) })
	update(t, s, func(tx Tx) error { return tx.PutSandbox(&model.Sandbox{ID: "b", Name: "b"}) })
	rev := revision(t, s)
	s.Close()
	s = mustOpen(t, path)
	defer s.Close()
	r := revision(t, s)
	if r < rev {
		t.Errorf("revision %d after reopen, before %d", r, rev)
	}
	update(t, s, func(tx Tx) error { return tx.PutNetwork(&model.Network{ID: "c", Name: "c"}) })
	if r2 := revision(t, s); r2 != r+1 {
		t.Errorf("revision %d after a commit at %d", r2, r)
	}
	if _, err := s.Watch(context.Background(), rev-1); !errors.Is(err, ErrCompacted) {
		t.Errorf("watch from before the reopen: %v", err)
	}
	if err := s.Update(context.Background(), func(tx Tx) error { return tx.SetMeta(revisionKey, "1") }); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("SetMeta of the revision key: %v", err)
	}
}
