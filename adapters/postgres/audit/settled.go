package audit

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// SettledPosition returns a global position P below which the log is
// final: every event with a position ≤ P that will ever commit has
// committed, so paging through the log in position order up to P never
// misses an event that commits later with a lower position than one
// already read. Appends never wait for it; it waits for them.
//
// Positions come from a sequence (no cache) inside the appending
// transaction, and an INSERT into ledger_events takes its RowExclusiveLock
// before it draws a position. So it reads the sequence's last value L, then
// lists the transactions holding that lock — all that may hold an
// uncommitted position ≤ L — and waits, polling every poll (default 5 ms),
// until each of them has ended. It returns L, or ctx's error when ctx ends
// first (an appending transaction left open blocks it, like CREATE INDEX
// CONCURRENTLY).
func SettledPosition(ctx context.Context, db *sql.DB, poll time.Duration) (int64, error) {
	if poll <= 0 {
		poll = 5 * time.Millisecond
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit: settled position: %w", err)
	}
	defer conn.Close()
	var last int64
	if err := conn.QueryRowContext(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ledger_events_position_seq`).Scan(&last); err != nil {
		return 0, fmt.Errorf("audit: settled position: sequence: %w", err)
	}
	// Read after the sequence: a transaction that drew a position ≤ last
	// held the lock before drawing it, and holds it until it ends.
	var holders []string
	err = conn.QueryRowContext(ctx, `
		SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks
		WHERE locktype = 'relation' AND relation = 'ledger_events'::regclass
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()`).Scan(pq.Array(&holders))
	if err != nil {
		return 0, fmt.Errorf("audit: settled position: appenders: %w", err)
	}
	for len(holders) > 0 {
		// Every transaction holds the lock on its own virtual transaction
		// id until it ends; virtual ids are never reused.
		var running []string
		err := conn.QueryRowContext(ctx, `SELECT coalesce(array_agg(virtualxid), '{}') FROM pg_locks
			WHERE locktype = 'virtualxid' AND virtualxid = ANY($1::text[])`, pq.Array(holders)).Scan(pq.Array(&running))
		if err != nil {
			return 0, fmt.Errorf("audit: settled position: appenders: %w", err)
		}
		holders = running
		if len(holders) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("audit: settled position: %d appending transaction(s) still running: %w", len(holders), ctx.Err())
		case <-time.After(poll):
		}
	}
	return last, nil
}
