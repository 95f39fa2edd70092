package bookingstore

import (
	"context"
	"fmt"

	"github.com/lib/pq"
)

// KnownStripeEvents returns which of ids the inbox already holds (decided
// or ignored), whatever the channel they came through. An id known only
// from stripe_deliveries (an unmatched delivery) is not known: its event was
// never decided. Errors are internal failures.
func (l *Store) KnownStripeEvents(ctx context.Context, ids []string) (map[string]bool, error) {
	known := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return known, nil
	}
	rows, err := l.db.QueryContext(ctx, `SELECT event_id FROM stripe_inbox WHERE event_id = ANY($1)`, pq.Array(ids))
	if err != nil {
		return nil, fmt.Errorf("bookingstore: known stripe events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("bookingstore: known stripe events: %w", err)
		}
		known[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bookingstore: known stripe events: %w", err)
	}
	return known, nil
}
