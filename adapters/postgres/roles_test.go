package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/pressly/goose/v3"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/migrations"
)

// logTables are the append-only tables the runtime role must not change.
// Each has a row (seedLogTables) before it is attacked.
var logTables = []string{"ledger_events", "stripe_inbox", "stripe_deliveries", "projection_dead_letters",
	"ledger_chain", "audit_access_log", "refund_failures", "ledger_tree_nodes", "ledger_checkpoints"}

func seedLogTables(t *testing.T, db *sql.DB) {
	t.Helper()
	at := time.Date(2027, 5, 1, 9, 0, 0, 0, time.UTC)
	pgtest.NewScriptedLog(t, db).Append(1, at, pgtest.Requested(1, "room-1", 1000, "eur", at))
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
		`INSERT INTO ledger_tree_nodes (level, idx, hash) VALUES (0, 0, ` + hash + `)`,
		`INSERT INTO ledger_checkpoints (tree_size, root_hash, origin, note) VALUES (1, ` + hash + `, 'o', 'o
1
q
')`,
	} {
		if _, err := db.Exec(insert); err != nil {
			t.Fatalf("%s: %v", insert, err)
		}
	}
}

func openURL(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestRuntimeRoleCannotChangeTheLog: connected as the runtime role that
// EnsureRuntimeRole set up, nothing gets around the append-only tables:
// UPDATE, DELETE and TRUNCATE are refused by privilege (before the
// triggers), ALTER, DROP, disabling a trigger, replacing the trigger
// function, adding a trigger and setting session_replication_role are
// refused too, and every table is the same afterwards. The role can still
// read and append, and the start-up check passes for it and fails for the
// owner.
func TestRuntimeRoleCannotChangeTheLog(t *testing.T) {
	ownerURL, runtimeURL, role := pgtest.NewRuntimeURL(t)
	owner := openURL(t, ownerURL)
	seedLogTables(t, owner)
	runtime := openURL(t, runtimeURL)
	runtime.SetMaxOpenConns(1)

	snapshot := func(table string) []string {
		return pgtest.QueryRows(t, owner, `SELECT row_to_json(x)::text AS r FROM `+table+` x ORDER BY 1`)
	}
	for _, table := range logTables {
		t.Run(table, func(t *testing.T) {
			before := snapshot(table)
			if len(before) == 0 {
				t.Fatalf("%s is empty: nothing to attack", table)
			}
			for _, attack := range []string{
				`UPDATE ` + table + ` SET ` + map[string]string{"ledger_events": "event_type = 'X'", "stripe_inbox": "outcome = 'ignored'",
					"stripe_deliveries": "outcome = 'unmatched'", "projection_dead_letters": "error = 'x'", "ledger_chain": "seq = 9",
					"audit_access_log": "actor = 'nobody'", "refund_failures": "amount = 1", "ledger_tree_nodes": "idx = 9",
					"ledger_checkpoints": "note = 'forged'"}[table],
				`DELETE FROM ` + table,
				`TRUNCATE ` + table,
				`ALTER TABLE ` + table + ` DISABLE TRIGGER USER`,
				`ALTER TABLE ` + table + ` DISABLE TRIGGER ALL`,
				`ALTER TABLE ` + table + ` ADD COLUMN forged text`,
				`ALTER TABLE ` + table + ` RENAME TO ` + table + `_old`,
				`DROP TABLE ` + table,
				`CREATE TRIGGER forged BEFORE INSERT ON ` + table + ` FOR EACH ROW EXECUTE FUNCTION ledger_reject_change()`,
			} {
				if _, err := runtime.Exec(attack); !refused(err) {
					t.Errorf("%s: %v; want a privilege error", attack, err)
				}
			}
			if after := snapshot(table); !reflect.DeepEqual(after, before) {
				t.Errorf("%s changed:\n got %q\nwant %q", table, after, before)
			}
		})
	}
	for _, attack := range []string{
		`SET session_replication_role = replica`,
		`SET SESSION session_replication_role = replica`,
		`CREATE OR REPLACE FUNCTION ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$`,
		`DROP FUNCTION ledger_reject_change() CASCADE`,
		`ALTER FUNCTION ledger_reject_change() RENAME TO nothing`,
		`GRANT ` + role + ` TO postgres`,
	} {
		if _, err := runtime.Exec(attack); !refused(err) {
			t.Errorf("%s: %v; want a privilege error", attack, err)
		}
	}

	// What the service needs still works.
	if _, err := runtime.Exec(`INSERT INTO audit_access_log (accessed_at, actor, channel, action, target) VALUES (now(), 'cli:t', 'cli', 'history', '2')`); err != nil {
		t.Errorf("append to the access log: %v", err)
	}
	if _, err := runtime.Exec(`UPDATE bookings SET updated_at = now()`); err != nil {
		t.Errorf("update a read model: %v", err)
	}
	if _, err := runtime.Exec(`SELECT nextval('booking_id_seq')`); err != nil {
		t.Errorf("allocate a booking id: %v", err)
	}
	if err := postgres.CheckRuntimeRole(context.Background(), runtime); err != nil {
		t.Errorf("the start-up check refuses the runtime role: %v", err)
	}
	err := postgres.CheckRuntimeRole(context.Background(), owner)
	var perr *postgres.PrivilegeError
	if !errors.As(err, &perr) || !strings.Contains(err.Error(), "superuser") {
		t.Errorf("the start-up check for the owner (a superuser here): %v", err)
	}
}

// refused: the statement failed for want of privilege (42501), ownership
// (42501 "must be owner") or a superuser's right (42501 too).
func refused(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "42501"
}

// TestCheckRuntimeRoleNamesEachWeakness: a role is refused, with the reason
// named, when it owns a log table, holds DELETE on one, or when a log
// trigger is no longer ENABLE ALWAYS; EnsureRuntimeRole run again repairs
// what it owns (the grants and the triggers).
func TestCheckRuntimeRoleNamesEachWeakness(t *testing.T) {
	ctx := context.Background()
	ownerURL, runtimeURL, role := pgtest.NewRuntimeURL(t)
	owner := openURL(t, ownerURL)
	runtime := openURL(t, runtimeURL)
	tests := []struct {
		name, breakSQL, want string
	}{
		{"delete granted", `GRANT DELETE ON stripe_inbox TO ` + role, "may UPDATE, DELETE, TRUNCATE or add triggers to stripe_inbox"},
		{"trigger not always", `ALTER TABLE ledger_chain ENABLE TRIGGER ledger_chain_append_only`, "not ENABLE ALWAYS: ledger_chain (ledger_chain_append_only)"},
		{"owns a log table", `ALTER TABLE refund_failures OWNER TO ` + role, "owns (or is a member of the owner of) refund_failures"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := owner.Exec(tt.breakSQL); err != nil {
				t.Fatal(err)
			}
			err := postgres.CheckRuntimeRole(ctx, runtime)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("check: %v; want %q", err, tt.want)
			}
			if tt.name == "owns a log table" {
				if err := postgres.EnsureRuntimeRole(ctx, owner, role); err == nil || !strings.Contains(err.Error(), "refund_failures") {
					t.Fatalf("EnsureRuntimeRole accepted a role that owns a log table: %v", err)
				}
				if _, err := owner.Exec(`ALTER TABLE refund_failures OWNER TO CURRENT_USER`); err != nil {
					t.Fatal(err)
				}
			}
			if err := postgres.EnsureRuntimeRole(ctx, owner, role); err != nil {
				t.Fatal(err)
			}
			if err := postgres.CheckRuntimeRole(ctx, runtime); err != nil {
				t.Fatalf("after EnsureRuntimeRole again: %v", err)
			}
		})
	}
}

// TestEnsureRuntimeRoleRefusesPrivilegedRoles: the role running the
// migrations, and a superuser, are never made the runtime role.
func TestEnsureRuntimeRoleRefusesPrivilegedRoles(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	var me string
	if err := db.QueryRow(`SELECT current_user`).Scan(&me); err != nil {
		t.Fatal(err)
	}
	if err := postgres.EnsureRuntimeRole(ctx, db, me); err == nil || !strings.Contains(err.Error(), "running the migrations") {
		t.Errorf("the migrating role as runtime role: %v", err)
	}
	super := pgtest.RuntimeRole(t)
	if _, err := db.Exec(`CREATE ROLE ` + super + ` LOGIN SUPERUSER`); err != nil {
		t.Fatal(err)
	}
	if err := postgres.EnsureRuntimeRole(ctx, db, super); err == nil || !strings.Contains(err.Error(), "superuser") {
		t.Errorf("a superuser as runtime role: %v", err)
	}
	if err := postgres.EnsureRuntimeRole(ctx, db, "Robert'); DROP TABLE x; --"); err == nil {
		t.Error("a role name that is not a plain SQL name was accepted")
	}
}

// TestMigrationsAreNeverUndone: going down past 00008 fails, so the
// evidence tables stay.
func TestMigrationsAreNeverUndone(t *testing.T) {
	db := pgtest.NewDB(t)
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Down(context.Background())
	if err == nil || !strings.Contains(err.Error(), "never undone") {
		t.Fatalf("down: %v", err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pg_tables WHERE tablename IN ('ledger_events', 'stripe_inbox', 'ledger_chain', 'audit_access_log')`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("evidence tables left: %d (%v)", n, err)
	}
}
