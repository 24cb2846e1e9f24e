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

import "sync"

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
func (b *Batcher[T]) Do(item T) error {
	c := &call[T]{item: item, wake: make(chan bool, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.running {
		b.mu.Unlock()
		if lead := <-c.wake; !lead {
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

// Queued returns how many items wait for the next batch (for tests).
func (b *Batcher[T]) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
