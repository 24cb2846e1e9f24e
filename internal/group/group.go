// Package group runs concurrent requests for one serial resource in
// batches, the way databases commit concurrent transactions together
// (group commit): a request that finds the resource idle runs at once,
// alone; requests that arrive while a batch runs queue, and when it ends
// the first of them leads the next batch with all that queued meanwhile.
// No timer and no added latency for a request alone, and under load one
// round trip to the resource serves many requests.
//
// The store (one bbolt commit) and the firewall (one nftables transaction)
// use it.
package group

import (
	"context"
	"slices"
	"sync"
)

// Batcher batches items for Run. The zero value is not usable: set Run.
type Batcher[T any] struct {
	// Run does one batch, in the leader's goroutine, and returns one error
	// per item (nil for success). Batches never overlap.
	Run func(items []T) []error

	mu      sync.Mutex
	queue   []*call[T]
	running bool // a leader is running a batch
}

type call[T any] struct {
	item T
	err  error
	wake chan bool // true: lead the next batch; false: done, err is set
}

// Do runs item in the next batch and returns its error. It returns after
// the batch that holds item has run.
func (b *Batcher[T]) Do(item T) error { return b.DoContext(nil, item) }

// DoContext is Do, except that when ctx ends while item waits in the queue
// it leaves the queue and DoContext returns ctx.Err() at once; item is
// then in no batch. Once a batch holds item (or item leads one), it waits
// for that batch: Run decides what an ended ctx means there. A nil ctx
// never ends.
func (b *Batcher[T]) DoContext(ctx context.Context, item T) error {
	c := &call[T]{item: item, wake: make(chan bool, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.running {
		b.mu.Unlock()
		lead, err := b.wait(ctx, c)
		if err != nil {
			return err
		}
		if !lead {
			return c.err
		}
		b.mu.Lock()
	}
	b.running = true
	batch := b.queue
	b.queue = nil
	b.mu.Unlock()

	items := make([]T, len(batch))
	for i, x := range batch {
		items[i] = x.item
	}
	errs := b.Run(items)
	for i, x := range batch {
		if i < len(errs) {
			x.err = errs[i]
		}
	}

	b.mu.Lock()
	if len(b.queue) > 0 {
		b.queue[0].wake <- true // hand over: the next batch is its leader's
	} else {
		b.running = false
	}
	b.mu.Unlock()
	for _, x := range batch {
		if x != c {
			x.wake <- false
		}
	}
	return c.err
}

// wait waits for c's wake-up: lead the next batch (true) or done (false).
// When ctx ends first and c still waits in the queue, c leaves it.
func (b *Batcher[T]) wait(ctx context.Context, c *call[T]) (bool, error) {
	if ctx == nil {
		return <-c.wake, nil
	}
	select {
	case lead := <-c.wake:
		return lead, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case lead := <-c.wake:
		// Handed the lead (sent under mu) or done meanwhile: go on as
		// woken; a batch that holds c decides about its ctx.
		b.mu.Unlock()
		return lead, nil
	default:
	}
	if i := slices.Index(b.queue, c); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		b.mu.Unlock()
		return false, ctx.Err()
	}
	// A running batch holds c: its outcome is c's.
	b.mu.Unlock()
	return <-c.wake, nil
}

// Queued returns how many items wait for the next batch (for tests).
func (b *Batcher[T]) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
