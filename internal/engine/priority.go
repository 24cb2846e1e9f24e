package engine

import (
	"log/slog"
	"runtime"

	"golang.org/x/sys/unix"
)

// idlePriority locks the calling goroutine to its thread and puts that
// thread in the SCHED_IDLE class (scheduling policies are per thread on
// Linux): every other runnable thread goes first, and it still gets a
// sliver of a busy CPU, so its work is late but never starved. Measured in
// a burst of 8 parallel attaches, for the resolv.conf worker: 535 attaches
// a second at normal priority, 600 at nice 19, 646 at SCHED_IDLE
// (docs/benchmarks.md). The goroutine must never unlock its thread: the
// thread ends with the goroutine instead of going back to the runtime.
func idlePriority(log *slog.Logger) {
	runtime.LockOSThread()
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		log.Debug("lower the priority of a background thread", "err", err)
	}
}
