package postgres_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// TestEveryAppendOnlyTableRejectsChanges: each of the seven protected
// tables (their triggers are in migrations/*.sql) holds a row; UPDATE,
// DELETE and TRUNCATE each fail with the trigger's error
// (insufficient_privilege, "append-only") and the rows are the same
// afterwards. A migration that forgot or misnamed one trigger fails here.
func TestEveryAppendOnlyTableRejectsChanges(t *testing.T) {
	db := pgtest.NewDB(t)
	// ledger_events through the event store (it computes the hashes); the
	// other rows by plain INSERT, which the triggers allow.
	pgtest.NewScriptedLog(t, db).Append(1, time.Date(2027, 5, 1, 9, 0, 0, 0, time.UTC), pgtest.Requested(1, "room-1", 1000, "eur", time.Date(2027, 5, 1, 9, 0, 0, 0, time.UTC)))
	hash := `'\x` + strings.Repeat("ab", 32) + `'::bytea`
	for _, insert := range []string{
		`INSERT INTO stripe_inbox (event_id, event_type, api_version, livemode, created, received_at, source, outcome, booking_id, payload, payload_sha256, signature_header)
			VALUES ('evt_1', 'checkout.session.completed', '2025-01-01', false, now(), now(), 'webhook', 'processed', 1, '{}', ` + hash + `, 't=1,v1=00')`,
		`INSERT INTO stripe_deliveries (event_id, event_type, received_at, outcome, booking_id, payload, payload_sha256, signature_header)
			VALUES ('evt_1', 'checkout.session.completed', now(), 'duplicate', 1, '{}', ` + hash + `, 't=1,v1=00')`,
		`INSERT INTO projection_dead_letters (projection, projection_version, position, event_id, payload, metadata, error)
			VALUES ('monitoring', 1, 1, 'e1', '{}', '{}', 'poison')`,
		`INSERT INTO ledger_chain (seq, position, transaction_id, event_hash, prev_chain_hash, chain_hash)
			VALUES (1, 1, '1'::xid8, ` + hash + `, ` + hash + `, ` + hash + `)`,
		`INSERT INTO audit_access_log (accessed_at, actor, channel, action, target) VALUES (now(), 'cli:test', 'cli', 'history', '1')`,
		`INSERT INTO refund_failures (position, booking_id, payment_intent_id, amount, currency, reason, failure_code, failure_message, http_status, stripe_request_id, failed_at)
			VALUES (1, 1, 'pi_1', 1000, 'eur', 'duplicate_payment', 'charge_disputed', 'disputed', 400, 'req_1', now())`,
	} {
		if _, err := db.Exec(insert); err != nil {
			t.Fatalf("%s: %v", insert, err)
		}
	}

	tables := []struct {
		name, update string
	}{
		{"ledger_events", `UPDATE ledger_events SET event_type = 'BookingConfirmed'`},
		{"stripe_inbox", `UPDATE stripe_inbox SET outcome = 'ignored'`},
		{"stripe_deliveries", `UPDATE stripe_deliveries SET outcome = 'unmatched'`},
		{"projection_dead_letters", `UPDATE projection_dead_letters SET error = 'nothing to see'`},
		{"ledger_chain", `UPDATE ledger_chain SET position = 2`},
		{"audit_access_log", `UPDATE audit_access_log SET actor = 'nobody'`},
		{"refund_failures", `UPDATE refund_failures SET amount = 1`},
	}
	for _, tt := range tables {
		t.Run(tt.name, func(t *testing.T) {
			before := pgtest.QueryRows(t, db, `SELECT row_to_json(x)::text AS r FROM `+tt.name+` x ORDER BY 1`)
			if len(before) == 0 {
				t.Fatalf("%s is empty: nothing to attack", tt.name)
			}
			for _, attack := range []string{tt.update, `DELETE FROM ` + tt.name, `TRUNCATE ` + tt.name} {
				_, err := db.Exec(attack)
				var pqErr *pq.Error
				if !errors.As(err, &pqErr) || pqErr.Code != "42501" || !strings.Contains(pqErr.Message, "append-only") {
					t.Errorf("%s: %v; want the append-only trigger's insufficient_privilege error", attack, err)
				}
			}
			if after := pgtest.QueryRows(t, db, `SELECT row_to_json(x)::text AS r FROM `+tt.name+` x ORDER BY 1`); !reflect.DeepEqual(after, before) {
				t.Errorf("%s changed:\n got %q\nwant %q", tt.name, after, before)
			}
		})
	}
}
