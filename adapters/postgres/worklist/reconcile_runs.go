package worklist

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/domain/app"
)

// reconcileLockClass is the first key of the reconciliation's advisory lock
// (the two-key space, apart from the resource locks).
const reconcileLockClass = 0x2ec0

// ReconcileRuns records reconciliation runs in reconcile_runs
// (app.ReconcileRuns).
type ReconcileRuns struct{ DB *sql.DB }

var _ app.ReconcileRuns = ReconcileRuns{}

// Lock takes a session advisory lock on a connection of its own: a crashed
// process lets it go with its connection.
func (r ReconcileRuns) Lock(ctx context.Context) (func(), bool, error) {
	conn, err := r.DB.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("reconcile lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, 0)`, reconcileLockClass).Scan(&ok); err != nil || !ok {
		conn.Close()
		if err != nil {
			return nil, false, fmt.Errorf("reconcile lock: %w", err)
		}
		return nil, false, nil
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1, 0)`, reconcileLockClass); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}, true, nil
}

// Cursor is the window end of the last successful run.
func (r ReconcileRuns) Cursor(ctx context.Context) (time.Time, error) {
	var t sql.NullTime
	if err := r.DB.QueryRowContext(ctx, `SELECT max(until_) FROM reconcile_runs WHERE ok`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("reconcile cursor: %w", err)
	}
	return t.Time, nil
}

// Record appends the run.
func (r ReconcileRuns) Record(ctx context.Context, run app.ReconcileRun) error {
	s := run.Summary
	_, err := r.DB.ExecContext(ctx, `INSERT INTO reconcile_runs
		(started_at, finished_at, since, until_, seen, ingested, unmatched, failed, ok, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		run.StartedAt.UTC(), run.FinishedAt.UTC(), run.Since.UTC(), run.Until.UTC(), s.Seen, s.Ingested, s.Unmatched, s.Failed,
		run.OK(), run.Err)
	if err != nil {
		return fmt.Errorf("record reconcile run: %w", err)
	}
	return nil
}
