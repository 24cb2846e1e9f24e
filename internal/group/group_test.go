package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Items queued while a batch runs go into the next batch, all together;
// every caller gets its own item's error; batches never overlap; an item
// alone runs at once.
func TestBatches(t *testing.T) {
	var (
		mu      sync.Mutex
		batches [][]int
		running atomic.Int32
	)
	release := make(chan struct{})
	b := &Batcher[int]{Run: func(items []int) []error {
		if running.Add(1) != 1 {
			t.Error("two batches at once")
		}
		defer running.Add(-1)
		if items[0] == -1 {
			<-release // the first batch holds the resource
		}
		mu.Lock()
		batches = append(batches, append([]int(nil), items...))
		mu.Unlock()
		errs := make([]error, len(items))
		for i, x := range items {
			if x%3 == 0 {
				errs[i] = fmt.Errorf("item %d failed", x)
			}
		}
		return errs
	}}
	first := make(chan error, 1)
	go func() { first <- b.Do(-1) }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.running })
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = b.Do(i + 1) })
	}
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == n })
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if x := i + 1; (x%3 == 0) != (err != nil) {
			t.Errorf("item %d: error %v", x, err)
		}
	}
	if len(batches) != 2 || len(batches[0]) != 1 || len(batches[1]) != n {
		t.Fatalf("batches %v, want the first alone and then all %d together", batches, n)
	}
	// Alone again: runs at once, in a batch of its own.
	if err := b.Do(3); err == nil || len(batches) != 3 || len(batches[2]) != 1 {
		t.Fatalf("lone item: err %v, batches %v", err, batches)
	}
}

// Many callers at once, over and over (run with -race): every item runs
// exactly once.
func TestEveryItemOnce(t *testing.T) {
	var seen sync.Map
	var dup atomic.Bool
	b := &Batcher[int]{Run: func(items []int) []error {
		for _, x := range items {
			if _, loaded := seen.LoadOrStore(x, true); loaded {
				dup.Store(true)
			}
		}
		time.Sleep(50 * time.Microsecond)
		return nil
	}}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := range 50 {
				if err := b.Do(w*1000 + i); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	if n != 32*50 || dup.Load() {
		t.Fatalf("%d items ran (want %d), duplicates: %v", n, 32*50, dup.Load())
	}
}

// A Run that returns fewer errors than items leaves the rest nil.
func TestShortErrors(t *testing.T) {
	b := &Batcher[int]{Run: func([]int) []error { return nil }}
	if err := b.Do(1); err != nil {
		t.Fatal(err)
	}
	want := errors.New("x")
	b.Run = func([]int) []error { return []error{want} }
	if err := b.Do(1); err != want {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// An item whose ctx ends while it waits in the queue leaves it: DoContext
// returns at once, the item never runs, and the batcher goes on.
func TestDoContextLeavesQueue(t *testing.T) {
	var mu sync.Mutex
	var ran []int
	release := make(chan struct{})
	b := &Batcher[int]{Run: func(items []int) []error {
		if items[0] == -1 {
			<-release
		}
		mu.Lock()
		ran = append(ran, items...)
		mu.Unlock()
		return make([]error, len(items))
	}}
	first := make(chan error, 1)
	go func() { first <- b.Do(-1) }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.running })
	ctx, cancel := context.WithCancel(context.Background())
	gave := make(chan error, 1)
	go func() { gave <- b.DoContext(ctx, 1) }()
	kept := make(chan error, 1)
	waitFor(t, func() bool { return b.Queued() == 1 })
	go func() { kept <- b.DoContext(context.Background(), 2) }()
	waitFor(t, func() bool { return b.Queued() == 2 })
	cancel()
	if err := <-gave; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while queued: %v", err)
	}
	if b.Queued() != 1 {
		t.Fatalf("%d queued after the cancel, want 1", b.Queued())
	}
	close(release)
	if err := errors.Join(<-first, <-kept); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ran) != "[-1 2]" {
		t.Errorf("ran %v, want [-1 2]: the cancelled item must not run", ran)
	}
}
