package app

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ReconcileRun is one reconciliation as recorded: the window of Stripe's
// Events API it read, what it found, and its error ("" when it succeeded).
type ReconcileRun struct {
	StartedAt, FinishedAt time.Time
	// Since and Until are the window: the events created from Since on,
	// listed at Until (the run's start). The next run starts at Until,
	// less ReconcileOverlap.
	Since, Until time.Time
	Summary      ReconcileSummary
	Err          string
}

// OK reports whether the run succeeded.
func (r ReconcileRun) OK() bool { return r.Err == "" }

// ReconcileRuns records reconciliation runs and keeps them one at a time
// across every process (adapters/postgres/readmodels).
type ReconcileRuns interface {
	// Lock takes the reconciliation lock: ok false when another process
	// holds it. unlock lets it go.
	Lock(ctx context.Context) (unlock func(), ok bool, err error)
	// Cursor is the Until of the last successful run; zero when none.
	Cursor(ctx context.Context) (time.Time, error)
	Record(ctx context.Context, run ReconcileRun) error
}

// ReconcileOverlap is how far before the last run's end the next one
// starts: an event created just before a listing can show up in Stripe's
// Events API a little later. Events already in the inbox are skipped, so
// the overlap costs a listing, never a second decision.
const ReconcileOverlap = 5 * time.Minute

// ErrReconcileBusy reports a run skipped because another process runs one.
var ErrReconcileBusy = errors.New("another reconciliation is running")

// RunOnce reconciles once under runs' lock and records the run: from the
// cursor (less ReconcileOverlap), or from since when it is set or there is
// no cursor yet (first: how far back a first run looks). ErrReconcileBusy,
// recording nothing, when another process runs one.
func (r Reconciler) RunOnce(ctx context.Context, runs ReconcileRuns, since time.Time, first time.Duration) (ReconcileRun, error) {
	unlock, ok, err := runs.Lock(ctx)
	if err != nil {
		return ReconcileRun{}, err
	}
	if !ok {
		return ReconcileRun{}, ErrReconcileBusy
	}
	defer unlock()
	now := r.Service.Now()
	if since.IsZero() {
		cursor, err := runs.Cursor(ctx)
		if err != nil {
			return ReconcileRun{}, err
		}
		since = now.Add(-first)
		if !cursor.IsZero() {
			since = cursor.Add(-ReconcileOverlap)
		}
	}
	run := ReconcileRun{StartedAt: now, Since: since, Until: now}
	run.Summary, err = r.Reconcile(ctx, since)
	run.FinishedAt = r.Service.Now()
	if err != nil {
		run.Err = err.Error()
	}
	// The record outlives a cancelled context: the run happened.
	if rerr := runs.Record(context.WithoutCancel(ctx), run); rerr != nil {
		return run, errors.Join(err, rerr)
	}
	return run, err
}

// Schedule runs RunOnce every period until ctx ends, the first time at
// once; a first run with no cursor looks back first. Failures are logged
// (the reconcile_overdue obligation and the metrics tell the operator);
// the schedule goes on.
func (r Reconciler) Schedule(ctx context.Context, runs ReconcileRuns, every, first time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		run, err := r.RunOnce(ctx, runs, time.Time{}, first)
		switch {
		case errors.Is(err, ErrReconcileBusy):
			log.InfoContext(ctx, "reconciliation skipped: another process runs it")
		case err != nil && ctx.Err() == nil:
			log.ErrorContext(ctx, "scheduled reconciliation failed", "error", err, "since", run.Since)
		case err == nil:
			log.InfoContext(ctx, "scheduled reconciliation", "since", run.Since, "result", run.Summary.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
