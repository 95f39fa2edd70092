package bookingstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/domain/app"
)

var _ app.DeliveryStore = (*Store)(nil)

// StoredDeliveries implements app.DeliveryStore: the latest delivery of
// each event kept without a decision, oldest first. Unmatched, wrong-mode
// and foreign-account events come from stripe_deliveries, left out once an
// inbox row decided them; ignored ones from the inbox, left out once a
// replay ("replay:<id>") decided them.
func (l *Store) StoredDeliveries(ctx context.Context, f app.DeliveryFilter) ([]app.StoredDelivery, error) {
	return l.storedDeliveries(ctx, f, true)
}

// storedDeliveriesQuery answers any filter ($1 outcome or ”, $2 since or
// NULL, $3 event id or ”, $4 mentions, $5 limit). It is planned on every
// call and reads every delivery kept, so it is for operators' commands.
const storedDeliveriesQuery = `WITH kept AS (
		SELECT DISTINCT ON (d.event_id) d.event_id, d.event_type, d.outcome, d.received_at, d.payload, d.signature_header,
			count(*) OVER (PARTITION BY d.event_id) AS n
		FROM stripe_deliveries d
		WHERE d.outcome IN ('unmatched', 'wrong_mode', 'foreign_account')
			AND NOT EXISTS (SELECT 1 FROM stripe_inbox i WHERE i.event_id = d.event_id)
		ORDER BY d.event_id, d.received_at DESC, d.id DESC
	), ignored AS (
		SELECT i.event_id, i.event_type, i.outcome, i.received_at, i.payload, i.signature_header, 1 AS n
		FROM stripe_inbox i
		WHERE i.outcome = 'ignored' AND i.source <> 'replay'
			AND NOT EXISTS (SELECT 1 FROM stripe_inbox r WHERE r.event_id = 'replay:' || i.event_id)
	)
	SELECT event_id, event_type, outcome, received_at, payload, signature_header, n FROM (
		SELECT * FROM kept UNION ALL SELECT * FROM ignored
	) s
	WHERE ($1 = '' OR outcome = $1) AND ($2::timestamptz IS NULL OR received_at >= $2) AND ($3 = '' OR event_id = $3)
		AND (coalesce(cardinality($4::bytea[]), 0) = 0 OR EXISTS (SELECT 1 FROM unnest($4::bytea[]) m WHERE position(m IN payload) > 0))
	ORDER BY received_at, event_id
	LIMIT $5`

// recentUnmatchedQuery is storedDeliveriesQuery for outcome "unmatched",
// since $1, mentions $2, limit $3: the filter of app's retry of unmatched
// deliveries, which runs after every payment recorded. It gives the same
// rows, prepared (no planning) and reading only the deliveries of events
// with an unmatched delivery since $1 (the partial index
// stripe_deliveries_unmatched_idx), each by stripe_deliveries_event_id_idx,
// not the whole table: an event's latest kept delivery can only be an
// unmatched one received since $1 if such a delivery exists. All the
// deliveries of those events are read, so that the latest and the count
// are those of all of them.
const recentUnmatchedQuery = `WITH candidates AS MATERIALIZED (
		SELECT DISTINCT event_id FROM stripe_deliveries WHERE outcome = 'unmatched' AND received_at >= $1
	)
	SELECT k.event_id, k.event_type, k.outcome, k.received_at, k.payload, k.signature_header, k.n
	FROM candidates c CROSS JOIN LATERAL (
		SELECT d.event_id, d.event_type, d.outcome, d.received_at, d.payload, d.signature_header, count(*) OVER () AS n
		FROM stripe_deliveries d
		WHERE d.event_id = c.event_id AND d.outcome IN ('unmatched', 'wrong_mode', 'foreign_account')
		ORDER BY d.received_at DESC, d.id DESC
		LIMIT 1
	) k
	WHERE NOT EXISTS (SELECT 1 FROM stripe_inbox i WHERE i.event_id = c.event_id)
		AND k.outcome = 'unmatched' AND k.received_at >= $1
		AND (coalesce(cardinality($2::bytea[]), 0) = 0 OR EXISTS (SELECT 1 FROM unnest($2::bytea[]) m WHERE position(m IN k.payload) > 0))
	ORDER BY k.received_at, k.event_id
	LIMIT $3`

// storedDeliveries is StoredDeliveries; fast allows recentUnmatchedQuery
// for the filters it answers (tests compare the two).
func (l *Store) storedDeliveries(ctx context.Context, f app.DeliveryFilter, fast bool) ([]app.StoredDelivery, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	var mentions [][]byte
	for _, m := range f.Mentions {
		mentions = append(mentions, []byte(m))
	}
	var (
		rows *sql.Rows
		err  error
	)
	if fast && f.Outcome == app.OutcomeUnmatched && !f.Since.IsZero() && f.EventID == "" {
		l.prepare(ctx)
		rows, err = l.stmts.QueryDB(ctx, l.db, recentUnmatchedQuery, f.Since.UTC(), pq.ByteaArray(mentions), limit)
	} else {
		rows, err = l.db.QueryContext(ctx, storedDeliveriesQuery,
			string(f.Outcome), nullTime(f.Since), f.EventID, pq.ByteaArray(mentions), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("bookingstore: stored deliveries: %w", err)
	}
	defer rows.Close()
	var out []app.StoredDelivery
	for rows.Next() {
		var d app.StoredDelivery
		var outcome string
		if err := rows.Scan(&d.EventID, &d.EventType, &outcome, &d.ReceivedAt, &d.Raw, &d.Signature, &d.Deliveries); err != nil {
			return nil, fmt.Errorf("bookingstore: stored deliveries: %w", err)
		}
		d.Outcome = app.Outcome(outcome)
		d.ReceivedAt = d.ReceivedAt.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bookingstore: stored deliveries: %w", err)
	}
	return out, nil
}

// nullTime is NULL for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}
