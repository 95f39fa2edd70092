package forwarding

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// ReplayResult is what Replay went through.
type ReplayResult struct {
	// Events is the number of events handed to fn; First and Last their
	// first and last positions (0 when none).
	Events      int64
	First, Last int64
	// Beyond counts the events of the range that the forwarder has not
	// forwarded yet, which Replay leaves to it.
	Beyond int64
}

// Replay hands fn, in position order, the events with positions in
// [from, to] (to = 0: no upper bound) that the forwarder has already
// forwarded: those at or before its offset. The events after it are left to
// the forwarder, so that a replay never sends a booking's event before the
// forwarder has sent the ones before it. Pages of 1,000 events, each read in
// a statement of its own. fn's error stops the replay and is returned.
func Replay(ctx context.Context, db *sql.DB, from, to int64, fn func(eventlog.StoredEvent) error) (ReplayResult, error) {
	var res ReplayResult
	if to == 0 {
		to = 1<<63 - 1
	}
	const cutSQL = `(SELECT COALESCE(max(last_processed_transaction_id), '0') FROM ledger_events_offsets WHERE consumer_group = $1),
		(SELECT COALESCE(max(offset_acked), 0) FROM ledger_events_offsets WHERE consumer_group = $1)`
	after := from - 1
	for {
		rows, err := db.QueryContext(ctx, `SELECT `+eventstore.SelectColumns+` FROM ledger_events
			WHERE position > $2 AND position <= $3 AND (transaction_id, position) <= (`+cutSQL+`)
			ORDER BY position LIMIT 1000`, ConsumerGroup, after, to)
		if err != nil {
			return res, fmt.Errorf("forwarding: replay after %d: %w", after, err)
		}
		n := 0
		for rows.Next() {
			e, err := eventstore.ScanEvent(rows)
			if err != nil {
				rows.Close()
				return res, fmt.Errorf("forwarding: replay after %d: %w", after, err)
			}
			if err := fn(e); err != nil {
				rows.Close()
				return res, err
			}
			n++
			res.Events++
			if res.First == 0 {
				res.First = e.Position
			}
			res.Last, after = e.Position, e.Position
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return res, fmt.Errorf("forwarding: replay after %d: %w", after, err)
		}
		rows.Close()
		if n < 1000 {
			break
		}
	}
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM ledger_events
		WHERE position >= $2 AND position <= $3 AND (transaction_id, position) > (`+cutSQL+`)`, ConsumerGroup, from, to).Scan(&res.Beyond)
	if err != nil {
		return res, fmt.Errorf("forwarding: replay: events not forwarded yet: %w", err)
	}
	return res, nil
}
