package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain/app"
)

// memRuns is an in-memory app.ReconcileRuns.
type memRuns struct {
	mu     sync.Mutex
	locked bool
	runs   []app.ReconcileRun
}

func (m *memRuns) Lock(context.Context) (func(), bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locked {
		return nil, false, nil
	}
	m.locked = true
	return func() { m.mu.Lock(); m.locked = false; m.mu.Unlock() }, true, nil
}

func (m *memRuns) Cursor(context.Context) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var c time.Time
	for _, r := range m.runs {
		if r.OK() && r.Until.After(c) {
			c = r.Until
		}
	}
	return c, nil
}

func (m *memRuns) Record(_ context.Context, r app.ReconcileRun) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs = append(m.runs, r)
	return nil
}

// sinceLister records the window each listing asked for.
type sinceLister struct {
	mu    sync.Mutex
	since []time.Time
	err   error
}

func (l *sinceLister) ListEvents(_ context.Context, since time.Time, _ []string) ([]json.RawMessage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.since = append(l.since, since)
	return nil, l.err
}

// TestReconcileRunOnce: the first run looks back the first window, the
// next ones start at the last success's end less the overlap; a failed run
// is recorded and moves no cursor; a run while another holds the lock is
// skipped, recording nothing.
func TestReconcileRunOnce(t *testing.T) {
	svc, _ := newService(t, nil)
	lister := &sinceLister{}
	r := app.Reconciler{Service: svc, Events: lister, Parse: parseListed}
	runs := &memRuns{}
	run, err := r.RunOnce(ctx, runs, time.Time{}, 72*time.Hour)
	if err != nil || !run.Since.Equal(t0.Add(-72*time.Hour)) || !run.Until.Equal(t0) || !run.OK() {
		t.Fatalf("first run %+v, %v", run, err)
	}
	lister.err = errors.New("Stripe is down")
	run, err = r.RunOnce(ctx, runs, time.Time{}, 72*time.Hour)
	if err == nil || run.OK() || !run.Since.Equal(t0.Add(-app.ReconcileOverlap)) {
		t.Fatalf("failing run %+v, %v", run, err)
	}
	lister.err = nil
	if run, err = r.RunOnce(ctx, runs, time.Time{}, 72*time.Hour); err != nil || !run.Since.Equal(t0.Add(-app.ReconcileOverlap)) {
		t.Fatalf("after a failure the cursor stays: %+v, %v", run, err)
	}
	if len(runs.runs) != 3 || runs.runs[1].Err != "Stripe is down" {
		t.Errorf("recorded %+v", runs.runs)
	}
	unlock, _, _ := runs.Lock(ctx)
	if _, err := r.RunOnce(ctx, runs, time.Time{}, time.Hour); !errors.Is(err, app.ErrReconcileBusy) || len(runs.runs) != 3 {
		t.Errorf("while locked: %v, %d runs", err, len(runs.runs))
	}
	unlock()
	explicit := t0.Add(-5 * time.Hour)
	if run, err := r.RunOnce(ctx, runs, explicit, 0); err != nil || !run.Since.Equal(explicit) {
		t.Errorf("explicit window: %+v, %v", run, err)
	}
}

// TestReconcileSchedule: Schedule runs at once, then on its period, until
// its context ends.
func TestReconcileSchedule(t *testing.T) {
	svc, _ := newService(t, nil)
	runs := &memRuns{}
	r := app.Reconciler{Service: svc, Events: &sinceLister{}, Parse: parseListed}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Schedule(ctx, runs, time.Millisecond, time.Hour, nil); close(done) }()
	deadline := time.After(time.Minute)
	for {
		runs.mu.Lock()
		n := len(runs.runs)
		runs.mu.Unlock()
		if n >= 3 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("only %d runs", n)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Schedule did not stop with its context")
	}
}
