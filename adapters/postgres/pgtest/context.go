package pgtest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// WaitTimeout bounds every wait of a test for the sealer, a subscriber, a
// worker or the database (Context). It asserts nothing about speed: it is
// far above what any of them takes on a loaded machine, and only turns a
// hang into a failure of the one test, with a message, instead of a run
// killed by go test's -timeout with every goroutine's stack.
const WaitTimeout = 2 * time.Minute

// Context returns tb's context with a deadline WaitTimeout from now, for
// the waits of a test: SealCommitted and SealAll (which poll until older
// transactions end, in any database of the cluster), a subscriber's or a
// worker's Run, polling loops. It ends when the test does. A call cut by
// the deadline fails with context.DeadlineExceeded; context.Cause names
// the test and the bound.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeoutCause(tb.Context(), WaitTimeout,
		fmt.Errorf("pgtest: %s still waiting after %s: a hung wait for the sealer, a subscriber or the database", tb.Name(), WaitTimeout))
	tb.Cleanup(cancel)
	return ctx
}

// Poll calls check until it reports nothing pending (""), pausing a little
// between calls, and fails the test when ctx ends first (give it Context's
// deadline), naming what it waited for and what was still pending. An
// error of check fails the test at once.
func Poll(ctx context.Context, tb testing.TB, what string, check func(ctx context.Context) (pending string, err error)) {
	tb.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		pending, err := check(ctx)
		if err != nil {
			if ctx.Err() != nil {
				tb.Fatalf("gave up waiting for %s: %v (%v)", what, context.Cause(ctx), err)
			}
			tb.Fatalf("waiting for %s: %v", what, err)
		}
		if pending == "" {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("gave up waiting for %s, still %s: %v", what, pending, context.Cause(ctx))
		case <-tick.C:
		}
	}
}
