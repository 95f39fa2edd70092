package pgtest

import (
	"context"
	"database/sql"
	"testing"
)

// syntheticLog appends, server-side, the streams of bookings $1+1 .. $1+$2
// in ten shapes that cover every event type: most bookings are paid and
// confirmed; others fail then succeed, lose their dates to a conflict, expire,
// or are refunded. Stays of one resource never overlap, so the rebuilt table
// satisfies the exclusion constraint. Events are inserted step by step (every
// booking's first event, then every second one, ...), so that a booking's
// events lie far apart in the log, as they do in production. Hashes are
// random (rebuilds do not check them).
const syntheticLog = `
WITH b AS (
	SELECT i,
		'room-' || (i % 1000) AS resource,
		(date '2027-01-01' + ((i / 1000) * 4)::int) AS check_in,
		10000 + (i % 7) * 1000 AS amount,
		'cs_synth_' || i AS session,
		'pi_synth_' || i AS intent,
		timestamptz '2026-06-01 00:00:00+00' + (i * interval '7 seconds') AS at
	FROM generate_series($1::bigint + 1, $1::bigint + $2::bigint) AS i
), steps AS (
	SELECT b.i, s.v, s.type, s.payload, b.at + s.v * interval '1 hour' AS at
	FROM b CROSS JOIN LATERAL (VALUES
		(1, 'BookingRequested', jsonb_build_object('booking_id', b.i, 'resource_id', b.resource,
			'check_in', to_char(b.check_in, 'YYYY-MM-DD'), 'check_out', to_char(b.check_in + 3, 'YYYY-MM-DD'),
			'amount', b.amount, 'currency', 'eur', 'customer_email', 'guest' || b.i || '@example.com',
			'session_id', CASE WHEN b.i % 10 = 8 THEN '' ELSE b.session END,
			'requested_at', to_char(b.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))),
		(2, CASE b.i % 10 WHEN 6 THEN 'PaymentFailed' WHEN 8 THEN 'CheckoutSessionOpened' ELSE 'PaymentSucceeded' END,
			CASE b.i % 10
			WHEN 6 THEN jsonb_build_object('payment_intent_id', b.intent || 'x', 'session_id', b.session, 'failure_code', 'card_declined',
				'failure_message', 'Your card was declined.', 'source', 'webhook', 'stripe_event_type', 'payment_intent.payment_failed')
			WHEN 8 THEN jsonb_build_object('session_id', b.session, 'url', 'https://checkout.stripe.com/c/pay/' || b.session,
				'expires_at', to_char((b.at + interval '1 day') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
			ELSE jsonb_build_object('payment_intent_id', b.intent, 'session_id', b.session, 'amount', b.amount, 'currency', 'eur',
				'source', 'webhook', 'stripe_event_type', 'checkout.session.completed') END),
		(3, CASE b.i % 10 WHEN 6 THEN 'BookingCancelled' WHEN 7 THEN 'AvailabilityConflict' WHEN 8 THEN 'BookingCancelled' ELSE 'BookingConfirmed' END,
			CASE b.i % 10
			WHEN 6 THEN jsonb_build_object('reason', 'payment_failed')
			WHEN 7 THEN jsonb_build_object('resource_id', b.resource, 'check_in', to_char(b.check_in, 'YYYY-MM-DD'),
				'check_out', to_char(b.check_in + 3, 'YYYY-MM-DD'), 'conflicting_booking_id', b.i + 1)
			WHEN 8 THEN jsonb_build_object('reason', 'session_expired')
			ELSE jsonb_build_object('resource_id', b.resource, 'check_in', to_char(b.check_in, 'YYYY-MM-DD'),
				'check_out', to_char(b.check_in + 3, 'YYYY-MM-DD')) END),
		(4, CASE b.i % 10 WHEN 6 THEN 'PaymentSucceeded' WHEN 7 THEN 'BookingCancelled' WHEN 9 THEN 'RefundIssued' ELSE NULL END,
			CASE b.i % 10
			WHEN 6 THEN jsonb_build_object('payment_intent_id', b.intent, 'session_id', b.session, 'amount', b.amount, 'currency', 'eur',
				'source', 'webhook', 'stripe_event_type', 'payment_intent.succeeded')
			WHEN 7 THEN jsonb_build_object('reason', 'availability_conflict')
			WHEN 9 THEN jsonb_build_object('refund_id', 're_synth_' || b.i, 'payment_intent_id', b.intent, 'amount', b.amount, 'currency', 'eur')
			END),
		(5, CASE b.i % 10 WHEN 6 THEN 'BookingConfirmed' WHEN 7 THEN 'RefundRequested' ELSE NULL END,
			CASE b.i % 10
			WHEN 6 THEN jsonb_build_object('resource_id', b.resource, 'check_in', to_char(b.check_in, 'YYYY-MM-DD'),
				'check_out', to_char(b.check_in + 3, 'YYYY-MM-DD'))
			WHEN 7 THEN jsonb_build_object('payment_intent_id', b.intent, 'amount', b.amount, 'currency', 'eur', 'reason', 'availability_conflict')
			END)
	) AS s(v, type, payload)
	WHERE s.type IS NOT NULL
)
INSERT INTO ledger_events (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, recorded_at,
	causation_id, payload, prev_hash, hash)
SELECT gen_random_uuid(), i, v, type, 1, at, at, 'synthetic', payload,
	sha256(('prev' || i || '.' || v)::bytea), sha256((i || '.' || v)::bytea)
FROM steps ORDER BY v, i`

// FillLog appends the event streams of bookings first+1 .. first+n to the
// log in one statement (see the query for their shapes) and returns the
// number of events appended: 35 per 10 bookings. The bookings table is
// not written: a rebuild derives it.
func FillLog(tb testing.TB, db *sql.DB, first, n int64) int64 {
	tb.Helper()
	res, err := db.ExecContext(context.Background(), syntheticLog, first, n)
	if err != nil {
		tb.Fatalf("pgtest: fill log: %v", err)
	}
	events, _ := res.RowsAffected()
	if _, err := db.ExecContext(context.Background(), `SELECT setval('booking_id_seq', $1)`, first+n); err != nil {
		tb.Fatalf("pgtest: booking ids: %v", err)
	}
	if _, err := db.ExecContext(context.Background(), `ANALYZE ledger_events`); err != nil {
		tb.Fatalf("pgtest: analyze: %v", err)
	}
	return events
}
