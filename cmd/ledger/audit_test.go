package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// runLedger runs the ledger command line against dbURL, as `ledger ARGS`
// would, with the seed's webhook secret configured.
func runLedger(t *testing.T, dbURL string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("LEDGER_RUNTIME_ROLE", pgtest.RuntimeRole(t))
	t.Setenv("STRIPE_WEBHOOK_SECRET", ledgertest.Secret)
	t.Setenv("LEDGER_DATA_DIR", t.TempDir())
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	// `audit verify` seals first, which waits for older transactions.
	err = root.ExecuteContext(pgtest.Context(t))
	return out.String(), errOut.String(), err
}

// tamperTx runs statements with the tables' triggers disabled, as someone
// with the database owner's rights could.
func tamperTx(t *testing.T, db *sql.DB, tables []string, stmts ...string) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, table := range tables {
		if _, err := tx.Exec(`ALTER TABLE ` + table + ` DISABLE TRIGGER USER`); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stmts {
		if _, err := tx.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	for _, table := range tables {
		if _, err := tx.Exec(`ALTER TABLE ` + table + ` ENABLE TRIGGER USER`); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func queryInt(t *testing.T, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// middleEvent is the position of a sealed event in the middle of the log
// whose stream goes on after it.
func middleEvent(t *testing.T, db *sql.DB, typ string) int64 {
	t.Helper()
	return queryInt(t, db, `SELECT e.position FROM ledger_events e
		WHERE e.event_type = $1 AND EXISTS (SELECT 1 FROM ledger_events n WHERE n.stream_id = e.stream_id AND n.stream_version > e.stream_version)
		ORDER BY e.position OFFSET (SELECT count(*) / 3 FROM ledger_events WHERE event_type = $1) LIMIT 1`, typ)
}

// TestAuditVerifyDetectsTampering: `ledger audit verify` exits 0 on an
// untouched ledger and, for each way of tampering with it behind the
// triggers' back, fails naming the position (or inbox row) tampered with.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name string
		// tamper changes the ledger and returns what the error must name.
		tamper func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string
	}{
		{"untouched", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string { return "" }},
		{"payload changed", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			p := middleEvent(t, db, "BookingRequested")
			tamperTx(t, db, []string{"ledger_events"},
				fmt.Sprintf(`UPDATE ledger_events SET payload = jsonb_set(payload, '{amount}', '1') WHERE position = %d`, p))
			return fmt.Sprintf("position %d: stream", p)
		}},
		{"payload changed and its stream re-hashed", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			p := middleEvent(t, db, "BookingRequested")
			rehashFrom(t, db, p, func(payload map[string]any) { payload["amount"] = 1 })
			return fmt.Sprintf("position %d: stream", p)
		}},
		{"event deleted in the middle", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			p := middleEvent(t, db, "PaymentSucceeded")
			tamperTx(t, db, []string{"ledger_events"}, fmt.Sprintf(`DELETE FROM ledger_events WHERE position = %d`, p))
			return fmt.Sprintf("position %d: sealed at chain seq", p)
		}},
		{"newest events deleted with their links", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			// The chain's tail from the third newest event on (the access
			// log's rows are links too).
			tamperTx(t, db, []string{"ledger_events", "ledger_chain"},
				`DELETE FROM ledger_events WHERE position IN (SELECT position FROM ledger_chain WHERE kind = 'event' ORDER BY seq DESC LIMIT 3)`,
				`DELETE FROM ledger_chain WHERE seq >= (SELECT min(seq) FROM (SELECT seq FROM ledger_chain WHERE kind = 'event' ORDER BY seq DESC LIMIT 3) x)`)
			return fmt.Sprintf("position %d: the kept chain head is gone", head.Position)
		}},
		{"two events' positions swapped", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			a := middleEvent(t, db, "BookingRequested")
			b := queryInt(t, db, `SELECT position FROM ledger_events WHERE position > $1 AND stream_id <> (SELECT stream_id FROM ledger_events WHERE position = $1)
				ORDER BY position OFFSET 2 LIMIT 1`, a)
			tamperTx(t, db, []string{"ledger_events"},
				fmt.Sprintf(`UPDATE ledger_events SET position = -1 WHERE position = %d`, a),
				fmt.Sprintf(`UPDATE ledger_events SET position = %d WHERE position = %d`, a, b),
				fmt.Sprintf(`UPDATE ledger_events SET position = %d WHERE position = -1`, b))
			return fmt.Sprintf("position %d: ", a)
		}},
		{"inbox raw body changed", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			id := queryInt(t, db, `SELECT id FROM stripe_inbox WHERE outcome = 'processed' ORDER BY id OFFSET 1 LIMIT 1`)
			tamperTx(t, db, []string{"stripe_inbox"},
				fmt.Sprintf(`UPDATE stripe_inbox SET payload = payload || '\x20'::bytea WHERE id = %d`, id))
			return fmt.Sprintf("stripe_inbox row %d: ", id)
		}},
		{"inbox raw body and its hash changed", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			id := queryInt(t, db, `SELECT id FROM stripe_inbox WHERE outcome = 'processed' ORDER BY id OFFSET 1 LIMIT 1`)
			tamperTx(t, db, []string{"stripe_inbox"},
				fmt.Sprintf(`UPDATE stripe_inbox SET payload = convert_to(replace(convert_from(payload, 'UTF8'), '"livemode": false', '"livemode": true'), 'UTF8') WHERE id = %d`, id),
				fmt.Sprintf(`UPDATE stripe_inbox SET payload_sha256 = sha256(payload) WHERE id = %d`, id))
			// Since hash version 2 the row's link catches it first.
			return fmt.Sprintf("stripe_inbox row %d: row differs from the one sealed at chain seq", id)
		}},
		{"inbox outcome changed", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			id := queryInt(t, db, `SELECT id FROM stripe_inbox WHERE outcome = 'processed' ORDER BY id OFFSET 1 LIMIT 1`)
			tamperTx(t, db, []string{"stripe_inbox"}, fmt.Sprintf(`UPDATE stripe_inbox SET outcome = 'ignored', booking_id = NULL WHERE id = %d`, id))
			return fmt.Sprintf("stripe_inbox row %d: row differs from the one sealed at chain seq", id)
		}},
		{"access-log row deleted", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			id := queryInt(t, db, `SELECT min(id) FROM audit_access_log`)
			tamperTx(t, db, []string{"audit_access_log"}, fmt.Sprintf(`DELETE FROM audit_access_log WHERE id = %d`, id))
			return fmt.Sprintf("audit_access_log row %d: sealed at chain seq", id)
		}},
		{"event inserted behind the chain head", func(t *testing.T, db *sql.DB, head eventlog.ChainHead) string {
			p := forgeOldEvent(t, db)
			return fmt.Sprintf("position %d: stream", p)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbURL := pgtest.NewURL(t)
			db := openTestDB(t, dbURL)
			ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 8, Seed: 42})
			out, _, err := runLedger(t, dbURL, "audit", "head", "--seal-timeout", "5m")
			if err != nil {
				t.Fatal(err)
			}
			anchor := strings.TrimSpace(out)
			head, err := audit.Head(context.Background(), db)
			if err != nil || head.Anchor() != anchor || queryInt(t, db, `SELECT count(*) FROM ledger_chain WHERE kind = 'event'`) != queryInt(t, db, `SELECT count(*) FROM ledger_events`) {
				t.Fatalf("audit head printed %q; chain head %+v (%v)", anchor, head, err)
			}
			want := tt.tamper(t, db, head)
			stdout, stderr, err := runLedger(t, dbURL, "audit", "verify", "--anchor", anchor, "--seal-timeout", "5m")
			if want == "" {
				if err != nil || !strings.Contains(stdout, "OK") {
					t.Fatalf("untouched ledger: %v\n%s%s", err, stdout, stderr)
				}
				return
			}
			if err == nil {
				t.Fatalf("tampering not detected:\n%s", stdout)
			}
			if !strings.Contains(err.Error(), "ledger broken at "+want) {
				t.Fatalf("error %q does not name %q first\n%s", err, want, stderr)
			}
		})
	}
}

// rehashFrom changes the payload of the event at position p and recomputes
// its hash and those of every later event of its stream, so that the
// stream chain alone verifies again: only the global chain can tell.
func rehashFrom(t *testing.T, db *sql.DB, p int64, edit func(map[string]any)) {
	t.Helper()
	ctx := context.Background()
	stream := queryInt(t, db, `SELECT stream_id FROM ledger_events WHERE position = $1`, p)
	events, err := eventstore.NewEventStore(eventstore.EventStoreConfig{}).LoadStream(ctx, db, stream)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	prev := eventlog.GenesisHash
	for _, e := range events {
		if e.Position == p {
			var payload map[string]any
			if err := json.Unmarshal(e.Payload, &payload); err != nil {
				t.Fatal(err)
			}
			edit(payload)
			b, _ := json.Marshal(payload)
			if e.Payload, err = eventlog.CanonicalJSON(b); err != nil {
				t.Fatal(err)
			}
		} else if e.Payload, err = eventlog.CanonicalJSON(e.Payload); err != nil {
			t.Fatal(err)
		}
		e.Hash = eventlog.EventHash(e, prev)
		stmts = append(stmts, fmt.Sprintf(`UPDATE ledger_events SET payload = '%s', prev_hash = '\x%x', hash = '\x%x' WHERE position = %d`,
			strings.ReplaceAll(string(e.Payload), "'", "''"), prev, e.Hash, e.Position))
		prev = e.Hash
	}
	tamperTx(t, db, []string{"ledger_events"}, stmts...)
	events, _ = eventstore.NewEventStore(eventstore.EventStoreConfig{}).LoadStream(ctx, db, stream)
	if pos, err := eventlog.VerifyStream(events); err != nil {
		t.Fatalf("the re-hashed stream does not verify on its own (position %d: %v): the case tests nothing", pos, err)
	}
}

// forgeOldEvent inserts a well-formed event of a new stream (its hash
// right) with an old transaction id, as if it had always been there, and
// returns its position.
func forgeOldEvent(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	e := eventstore.StoredEvent{
		EventID: "5f0c3c1e-7d0b-4c4a-9a55-2f1b7b0e9d01", StreamID: 999999, StreamVersion: 1, Type: "BookingCancelled",
		SchemaVersion: 1, OccurredAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), RecordedAt: time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC),
		CausationID: "api:forged", Payload: []byte(`{"reason":"customer_request"}`),
	}
	e.Hash = eventlog.EventHash(e, eventlog.GenesisHash)
	var p int64
	err := db.QueryRow(`INSERT INTO ledger_events (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, recorded_at,
			causation_id, payload, prev_hash, hash, transaction_id)
		VALUES ($1, $2, 1, $3, 1, $4, $5, $6, $7, $8, $9, '3'::xid8) RETURNING position`,
		e.EventID, e.StreamID, e.Type, e.OccurredAt, e.RecordedAt, e.CausationID, []byte(e.Payload), eventlog.GenesisHash, e.Hash).Scan(&p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAuditVerifyHundredThousandEvents: an untouched ledger of 100,000
// events verifies with exit 0 (the rate is measured by BenchmarkVerify and
// printed by the command; see the README).
func TestAuditVerifyHundredThousandEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 events: not in -short")
	}
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	if n := ledgertest.Bulk(t, db, 10000, 10); n != 100000 {
		t.Fatalf("appended %d", n)
	}
	stdout, stderr, err := runLedger(t, dbURL, "audit", "verify", "--seal-timeout", "5m")
	if err != nil {
		t.Fatalf("verify: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "events:     100000 in 10000 streams, 100000 sealed, 0 not sealed yet") || !strings.Contains(stdout, "OK") {
		t.Fatalf("report:\n%s", stdout)
	}
	t.Log(strings.TrimSpace(stdout))
}

// TestAuditExportEqualsAPIPaging: `ledger audit export` and paging
// through GET /audit/events give the same bytes.
func TestAuditExportEqualsAPIPaging(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 12, Seed: 5})
	app := startApp(t, testConfig(t, dbURL))

	exported, _, err := runLedger(t, dbURL, "audit", "export")
	if err != nil {
		t.Fatal(err)
	}
	n := queryInt(t, db, `SELECT count(*) FROM ledger_events`)
	if got := strings.Count(exported, "\n"); int64(got) != n || n == 0 {
		t.Fatalf("export has %d lines, the log %d events", got, n)
	}
	for _, limit := range []int{1, 5, 1000} {
		var paged bytes.Buffer
		after := "0"
		for {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/audit/events?after=%s&limit=%d", app.Addr(), after, limit), nil)
			req.Header.Set("Authorization", "Bearer test-token-0123456789abcdefghijklmnop")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /audit/events: %d %s", resp.StatusCode, body)
			}
			paged.Write(body)
			if c, _ := strconv.Atoi(resp.Header.Get("X-Ledger-Events")); c < limit {
				break
			}
			after = resp.Header.Get("X-Ledger-Last-Position")
		}
		if paged.String() != exported {
			t.Fatalf("pages of %d differ from `ledger audit export`", limit)
		}
	}

	// A time range and CSV select the same events.
	var from, to time.Time
	db.QueryRow(`SELECT min(recorded_at) + (max(recorded_at) - min(recorded_at)) / 3, min(recorded_at) + 2 * (max(recorded_at) - min(recorded_at)) / 3 FROM ledger_events`).Scan(&from, &to)
	ranged, _, err := runLedger(t, dbURL, "audit", "export", "--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano))
	if err != nil {
		t.Fatal(err)
	}
	rangedCSV, _, err := runLedger(t, dbURL, "audit", "export", "--format", "csv", "--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano))
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(strings.NewReader(rangedCSV)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := queryInt(t, db, `SELECT count(*) FROM ledger_events WHERE recorded_at >= $1 AND recorded_at < $2`, from, to)
	if int64(strings.Count(ranged, "\n")) != want || int64(len(records)-1) != want || want == 0 || want == n {
		t.Fatalf("range export: %d lines, %d csv rows, want %d of %d", strings.Count(ranged, "\n"), len(records)-1, want, n)
	}
}

// TestAuditHistoryCommand: the three formats and --as-of.
func TestAuditHistoryCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 6, Seed: 11})
	ctx := context.Background()
	auditor, err := audit.NewAuditor(audit.AuditorConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	// The booking with the most events.
	id := queryInt(t, db, `SELECT stream_id FROM ledger_events GROUP BY stream_id ORDER BY count(*) DESC, stream_id LIMIT 1`)
	want, err := auditor.History(ctx, id, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runLedger(t, dbURL, "audit", "history", "--booking-id", strconv.FormatInt(id, 10), "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.MarshalIndent(want, "", "  ")
	if strings.TrimSpace(out) != string(wantJSON) {
		t.Fatalf("json history:\n%s\nwant\n%s", out, wantJSON)
	}

	out, _, err = runLedger(t, dbURL, "audit", "history", "--booking-id", strconv.FormatInt(id, 10), "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 1+len(want.Events)+len(want.StripeEvents) {
		t.Fatalf("csv: %d records for %d events and %d stripe events", len(records), len(want.Events), len(want.StripeEvents))
	}
	for i, e := range want.Events {
		if records[1+i][0] != "event" || records[1+i][1] != strconv.FormatInt(e.Position, 10) || records[1+i][3] != e.Type {
			t.Fatalf("csv row %d: %v, want event %d %s", i, records[1+i], e.Position, e.Type)
		}
	}

	out, _, err = runLedger(t, dbURL, "audit", "history", "--booking-id", strconv.FormatInt(id, 10))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range want.Events {
		if !regexp.MustCompile(`(?m)^` + strconv.FormatInt(e.Position, 10) + `\s+` + strconv.Itoa(e.StreamVersion) + `\s+` + e.Type + `\s`).MatchString(out) {
			t.Fatalf("table does not show event %d %s:\n%s", e.Position, e.Type, out)
		}
	}

	// --as-of: the state at the first event is the requested booking.
	first := want.Events[0].RecordedAt
	out, _, err = runLedger(t, dbURL, "audit", "history", "--booking-id", strconv.FormatInt(id, 10), "--format", "json", "--as-of", first.Format(time.RFC3339Nano))
	if err != nil {
		t.Fatal(err)
	}
	var cut audit.BookingHistory
	if err := json.Unmarshal([]byte(out), &cut); err != nil {
		t.Fatal(err)
	}
	asOf, err := auditor.BookingAsOf(ctx, id, first)
	if err != nil {
		t.Fatal(err)
	}
	cutJSON, _ := json.Marshal(cut.Booking)
	asOfJSON, _ := json.Marshal(asOf)
	if cut.Booking.Status != "pending" || !bytes.Equal(cutJSON, asOfJSON) || cut.AsOf == nil || len(cut.Events) >= len(want.Events) {
		t.Fatalf("as of %s: %+v, want %+v", first, cut.Booking, asOf)
	}
	if _, _, err := runLedger(t, dbURL, "audit", "history", "--booking-id", "999999"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown booking: %v", err)
	}
	if _, _, err := runLedger(t, dbURL, "audit", "history", "--booking-id", "1", "--as-of", "tomorrow"); err == nil {
		t.Fatal("bad --as-of accepted")
	}
	// Every command above is in the access log.
	if n := queryInt(t, db, `SELECT count(*) FROM audit_access_log WHERE channel = 'cli' AND action = 'history' AND actor LIKE 'cli:%'`); n < 5 {
		t.Fatalf("%d history reads logged", n)
	}
}

// TestAppSealsInTheBackground: the server's sealer chains what the
// webhook path appends, without being asked, and stops with the app.
func TestAppSealsInTheBackground(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	app := startApp(t, testConfig(t, dbURL))
	ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 3, Seed: 9})
	events := queryInt(t, db, `SELECT count(*) FROM ledger_events`)
	// Sealing waits for every older transaction in the cluster to end, so
	// this polls; it asserts that sealing happens, not how fast.
	pgtest.Poll(pgtest.Context(t), t, "the app's sealer", func(ctx context.Context) (string, error) {
		var sealed int64
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM ledger_chain`).Scan(&sealed); err != nil || sealed >= events {
			return "", err
		}
		return fmt.Sprintf("%d of %d events sealed", sealed, events), nil
	})
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runLedger(t, dbURL, "audit", "verify", "--no-seal")
	if err != nil || !strings.Contains(stdout, "OK") {
		t.Fatalf("verify after the app sealed: %v\n%s", err, stdout)
	}
}
