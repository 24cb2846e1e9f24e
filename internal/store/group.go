package store

import "errors"

// Group commit (package group). bbolt has one writer: concurrent Updates
// used to queue for it and paid one commit each (pages written, freelist,
// meta page: ~0.08 ms without fsync, BenchmarkUpdate). Now the Updates that
// queue while a commit runs go into the next transaction together and
// share its commit; an Update alone commits at once (bbolt's own db.Batch
// would wait up to MaxBatchDelay for company).
//
// The functions of a batch run one after the other in one transaction, so
// each sees the writes of those before it: the batch is equivalent to
// running them serially in that order, and every caller returns only after
// the commit that holds its writes. When a function fails, the transaction
// is rolled back (its partial writes with it), the failing caller gets its
// error — the one a serial run after the functions before it gives — and
// the batch runs again without it. So a function may run more than once:
// it must have no effect outside its transaction except on variables it
// sets afresh on every run (the Store contract).

// errBatchFailed aborts a batch's transaction when one function failed.
var errBatchFailed = errors.New("store: a function of the batch failed")

// commitBatch runs fns until they commit, dropping each function that
// fails (with its error). run runs fns in one transaction and commits it;
// on a function's error it rolls back and returns that function's index
// and error (failed < 0: the commit ran, err is its outcome).
func commitBatch[T any](fns []T, run func([]T) (failed int, err error)) []error {
	errs := make([]error, len(fns))
	idx := make([]int, len(fns)) // position in fns of each remaining function
	for i := range idx {
		idx[i] = i
	}
	left := fns
	for len(left) > 0 {
		failed, err := run(left)
		if failed >= 0 {
			errs[idx[failed]] = err
			left = append(left[:failed:failed], left[failed+1:]...)
			idx = append(idx[:failed:failed], idx[failed+1:]...)
			continue
		}
		for _, i := range idx {
			errs[i] = err
		}
		break
	}
	return errs
}
