package bookingstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

var _ app.DecisionInputs = (*Store)(nil)

// DecisionInputs implements app.DecisionInputs: in one REPEATABLE READ
// snapshot, the log's events grouped by the input that caused them (one
// causation, one stream, one transaction) and the inbox rows the ledger
// decided on. A group caused by a Stripe event is that event's input, with
// its raw body; an inbox row that caused no event is an input too (today's
// rules may decide something from it); any other group is a recorded
// input, decided again from its own fields.
func (l *Store) DecisionInputs(ctx context.Context, booking int64, parse app.InputParser) ([]app.DecisionInput, error) {
	var out []app.DecisionInput
	err := postgres.TransactOpts(ctx, l.db, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, func(ctx context.Context, tx *sql.Tx) error {
		out = out[:0]
		type inboxRow struct {
			eventID, source, signature string
			booking                    int64
			id                         int64
			received                   time.Time
			raw                        []byte
			used                       bool
		}
		inbox := map[string]*inboxRow{}
		var inboxOrder []*inboxRow
		rows, err := tx.QueryContext(ctx, `SELECT id, event_id, source, signature_header, booking_id, received_at, payload
			FROM stripe_inbox WHERE outcome = 'processed' AND booking_id IS NOT NULL AND ($1 = 0 OR booking_id = $1) ORDER BY id`, booking)
		if err != nil {
			return err
		}
		for rows.Next() {
			r := &inboxRow{}
			if err := rows.Scan(&r.id, &r.eventID, &r.source, &r.signature, &r.booking, &r.received, &r.raw); err != nil {
				rows.Close()
				return err
			}
			inbox[r.eventID] = r
			inboxOrder = append(inboxOrder, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		delivery := func(r *inboxRow) (*app.Delivery, error) {
			d, err := parse(r.raw, r.signature, r.source, r.eventID, r.booking, r.received)
			if err != nil {
				return nil, fmt.Errorf("inbox row %d (%s): %w", r.id, r.eventID, err)
			}
			d.EventID = r.eventID
			return &d, nil
		}

		rows, err = tx.QueryContext(ctx, `SELECT position, stream_id, event_type, schema_version, payload, causation_id, recorded_at, transaction_id::text
			FROM ledger_events WHERE ($1 = 0 OR stream_id = $1) ORDER BY stream_id, position`, booking)
		if err != nil {
			return err
		}
		defer rows.Close()
		var cur *app.DecisionInput
		var curKey string
		flush := func() {
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
		}
		for rows.Next() {
			var (
				position, stream     int64
				typ, causation, txid string
				schema               int
				payload              []byte
				recorded             time.Time
			)
			if err := rows.Scan(&position, &stream, &typ, &schema, &payload, &causation, &recorded, &txid); err != nil {
				return err
			}
			ev, err := domain.Decode(typ, schema, payload)
			if err != nil {
				return fmt.Errorf("event %d: %w", position, err)
			}
			key := fmt.Sprintf("%d/%s/%s", stream, causation, txid)
			if cur == nil || key != curKey {
				flush()
				curKey = key
				cur = &app.DecisionInput{BookingID: stream, At: recorded, Seq: position}
				if r, ok := inbox[causation]; ok && r.booking == stream && !r.used {
					r.used = true
					if cur.Delivery, err = delivery(r); err != nil {
						return err
					}
				}
			}
			cur.Events = append(cur.Events, ev)
			if cur.Delivery == nil {
				cur.Recorded = append(cur.Recorded, ev)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		flush()
		// Inbox rows that caused no event: decided to change nothing then.
		for _, r := range inboxOrder {
			if r.used {
				continue
			}
			d, err := delivery(r)
			if err != nil {
				return err
			}
			out = append(out, app.DecisionInput{BookingID: r.booking, At: r.received, Seq: -r.id, Delivery: d})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bookingstore: decision inputs: %w", err)
	}
	return out, nil
}
