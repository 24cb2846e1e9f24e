package engine

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pontoon/internal/model"
)

// Events: an ordered feed of what changed, with IDs and timestamps, for
// `pontoon events`, metrics and (later) the web page.
//
// The engine keeps the last eventRing events for replay (`--since`), and
// hands each new one to every subscriber through a bounded channel. A
// subscriber that does not keep up loses events instead of holding up the
// engine: emit never blocks, and the loss is counted for that subscriber,
// which reports it to its reader as a gap.

// Event is model.Event: the engine emits them, the API serves them.
type Event = model.Event

const (
	eventRing = 4096 // events kept for replay
	// subscriberBuffer bounds what one slow subscriber can hold back.
	subscriberBuffer = 1024
)

type eventHub struct {
	mu   sync.Mutex
	next uint64
	ring []Event // the last eventRing events, oldest first
	subs map[*Subscription]struct{}
}

func newEventHub() *eventHub {
	return &eventHub{subs: map[*Subscription]struct{}{}}
}

// Subscription receives events as they happen; see Engine.Subscribe.
type Subscription struct {
	C    <-chan Event
	c    chan Event
	lost atomic.Uint64
	hub  *eventHub
	once sync.Once
}

// Lost returns, and resets, how many events were dropped for this
// subscriber since the last call.
func (s *Subscription) Lost() uint64 { return s.lost.Swap(0) }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.hub.mu.Lock()
		delete(s.hub.subs, s)
		s.hub.mu.Unlock()
	})
}

func (h *eventHub) emit(ev Event) {
	h.mu.Lock()
	h.next++
	ev.ID = h.next
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if len(h.ring) == eventRing {
		copy(h.ring, h.ring[1:])
		h.ring = h.ring[:eventRing-1]
	}
	h.ring = append(h.ring, ev)
	for s := range h.subs {
		select {
		case s.c <- ev:
		default:
			s.lost.Add(1)
		}
	}
	h.mu.Unlock()
}

// Subscribe returns a subscription to the events from now on and, with
// replay, the kept events with an ID above since before them: none is
// missed or repeated in between. Close the subscription when done.
func (e *Engine) Subscribe(since uint64, replay bool) ([]Event, *Subscription) {
	h := e.events
	s := &Subscription{c: make(chan Event, subscriberBuffer), hub: h}
	s.C = s.c
	h.mu.Lock()
	var past []Event
	if replay {
		for _, ev := range h.ring {
			if ev.ID > since {
				past = append(past, ev)
			}
		}
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return past, s
}

// emit records an event.
func (e *Engine) emit(ev Event) { e.events.emit(ev) }

// emitTimed records an event that took since start.
func (e *Engine) emitTimed(ev Event, start time.Time) {
	ev.Seconds = time.Since(start).Seconds()
	e.events.emit(ev)
}

// emitFailed records a failed operation (when *err is set).
func (e *Engine) emitFailed(op, network, sandbox string, err *error) {
	if *err != nil {
		e.emit(Event{Kind: model.EventFailed, Op: op, Network: network, Sandbox: sandbox, Detail: (*err).Error()})
	}
}

func portList(ps []model.PortMapping) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// GarbageCollected returns how many kernel objects with pontoon's names
// that no record explained were deleted since start.
func (e *Engine) GarbageCollected() uint64 { return e.garbage.Load() }

// ReaperQueue returns how many detached endpoints wait for their veths to
// be deleted.
func (e *Engine) ReaperQueue() int {
	e.reaper.mu.Lock()
	defer e.reaper.mu.Unlock()
	return len(e.reaper.queue)
}
