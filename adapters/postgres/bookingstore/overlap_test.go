package bookingstore_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// TestOverlapProbes checks the two statements that list the confirmed stays
// overlapping a stay: they find exactly the confirmed stays of the same
// resource that overlap, and they probe the exclusion constraint's GiST
// index with its hash key (without it the probe reads much of the index:
// 12 ms instead of 20 µs on a 300,000-event ledger).
func TestOverlapProbes(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	// 200 resources with 10 confirmed, back-to-back stays each, and a
	// pending and a cancelled stay over all of them; booking 1 is room-1's
	// first stay [2027-01-01, 2027-01-04).
	if _, err := db.ExecContext(ctx, `INSERT INTO bookings (id, resource_id, check_in, check_out, status, payment_status, amount, currency,
			customer_email, created_at, updated_at, last_event_position)
		SELECT r * 100 + k + 1 - 100, 'room-' || r, date '2027-01-01' + 3 * k, date '2027-01-04' + 3 * k,
			CASE k WHEN 10 THEN 'pending' WHEN 11 THEN 'cancelled' ELSE 'confirmed' END, 'paid', 100, 'eur', 'g@example.com', now(), now(), 1
		FROM generate_series(1, 200) r, generate_series(0, 11) k`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE bookings SET check_in = date '2027-01-01', check_out = date '2027-03-01' WHERE status <> 'confirmed'`); err != nil {
		t.Fatal(err)
	}
	// One event in the streams the stream query reads.
	if _, err := db.ExecContext(ctx, `INSERT INTO ledger_events (event_id, stream_id, stream_version, event_type, schema_version,
			occurred_at, recorded_at, causation_id, payload, prev_hash, hash)
		SELECT gen_random_uuid(), id, 1, 'BookingRequested', 1, now(), now(), 'test', '{}', sha256('p'), sha256(id::text::bytea)
		FROM unnest(ARRAY[1, 11]) id`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `ANALYZE bookings`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		query string
		args  []any
		want  string
	}{
		// Booking 11 (room-1, pending, over the first 60 days) overlaps
		// every confirmed stay of room-1 but no other resource's.
		{"stream of a pending booking", bookingstore.StreamQuery, []any{int64(11)}, "{1,2,3,4,5,6,7,8,9,10}"},
		// Booking 1 overlaps no other confirmed stay: its neighbours
		// begin the day it ends.
		{"stream of a confirmed booking", bookingstore.StreamQuery, []any{int64(1)}, ""},
		{"stays of a new booking", bookingstore.ConfirmedStaysQuery, []any{"room-2", int64(0), "2027-01-02", "2027-01-08"}, "{101,102,103}"},
		{"stays of another resource", bookingstore.ConfirmedStaysQuery, []any{"room-2x", int64(0), "2027-01-02", "2027-01-08"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The ids the statement lists: the stream query lists them on
			// each of the stream's rows.
			list := `SELECT COALESCE((array_agg(id ORDER BY id))::text, '') FROM (` + tc.query + `) s`
			if tc.query == bookingstore.StreamQuery {
				list = `SELECT COALESCE(ids::text, '') FROM (` + tc.query + `) s LIMIT 1`
			}
			var ids string
			if err := db.QueryRowContext(ctx, list, tc.args...).Scan(&ids); err != nil {
				t.Fatal(err)
			}
			if ids != tc.want {
				t.Errorf("confirmed overlapping stays %q, want %q", ids, tc.want)
			}
			// The plan: the constraint's index, probed by the hash.
			var plan string
			err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				// A small table could be read whole: make the index the only
				// way, so that its conditions show.
				if _, err := tx.ExecContext(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
					return err
				}
				var err error
				plan, err = pgtest.Explain(ctx, tx, tc.query, tc.args...)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(plan, "bookings_confirmed_no_overlap") || !strings.Contains(plan, "Index Cond: ((hashtextextended(resource_id, '0'::bigint) = ") {
				t.Errorf("the overlap probe does not use the constraint's index by its hash key:\n%s", plan)
			}
		})
	}
}

// TestBatchStatementsProbeByIndex: the group commit's lookup and stream
// statements are prepared, and PostgreSQL soon runs them with a generic
// plan, made without knowing how many deliveries the arrays hold. On a
// ledger of 4,500 events (where the planner finds a scan cheap) that plan must still probe the log, the inbox and
// the bookings by index per delivery: a hash join over a scan of the whole
// log (the first version of the stream statement) grows with the ledger.
func TestBatchStatementsProbeByIndex(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	for _, q := range []string{
		`INSERT INTO bookings (id, resource_id, check_in, check_out, status, payment_status, amount, currency,
			customer_email, created_at, updated_at, last_event_position)
		SELECT id, 'room-' || id, date '2027-01-01', date '2027-01-04', 'pending', 'unpaid', 100, 'eur', 'g@example.com', now(), now(), 1
		FROM generate_series(1, 1500) id`,
		`INSERT INTO ledger_events (event_id, stream_id, stream_version, event_type, schema_version,
			occurred_at, recorded_at, causation_id, payload, prev_hash, hash)
		SELECT gen_random_uuid(), id, v, 'BookingRequested', 1, now(), now(), 'test', '{}', sha256('p'), sha256((id * 10 + v)::text::bytea)
		FROM generate_series(1, 1500) id, generate_series(1, 3) v`,
		`INSERT INTO stripe_inbox (event_id, event_type, api_version, livemode, created, received_at, source, outcome, booking_id, payload, payload_sha256, signature_header)
		SELECT 'evt_' || id, 'payment_intent.succeeded', '2023-10-16', false, now(), now(), 'webhook', 'processed', id, '\x7b7d', sha256('{}'), ''
		FROM generate_series(1, 1500) id`,
		`ANALYZE bookings, ledger_events, stripe_inbox`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query, execute string
	}{
		{"lookup", bookingstore.BatchLookupQuery, `EXECUTE q('{evt_1,evt_2,evt_x}', '{1,0,0}', '{0,0,0}', '{"","",""}', '{"","",""}')`},
		{"streams", bookingstore.BatchStreamQuery, `EXECUTE q('{1,2,3}')`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conn.ExecContext(ctx, `PREPARE q AS `+tc.query); err != nil {
				t.Fatal(err)
			}
			defer conn.ExecContext(ctx, `DEALLOCATE q`)
			plan, err := pgtest.Explain(ctx, conn, tc.execute)
			if err != nil {
				t.Fatal(err)
			}
			for _, table := range []string{"ledger_events", "stripe_inbox", "bookings"} {
				if strings.Contains(plan, "Seq Scan on "+table) {
					t.Errorf("the generic plan reads all of %s:\n%s", table, plan)
				}
			}
		})
	}
}
