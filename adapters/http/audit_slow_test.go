package http_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
)

// TestAuditEventsOnSlowDatabase: when GET /audit/events meets a database
// that does not answer in time — a statement stuck behind a lock another
// session holds, or an appending transaction left open, which the export
// waits for to settle — the auditor gets a clear 503 JSON error with
// Retry-After, whichever deadline gives up first (the database's
// statement_timeout, the handler's settle bound, the request's deadline),
// instead of an internal error or a hang; the stuck statement is cancelled
// rather than left queued behind the lock; the access log holds a whole
// row for each read that got as far as recording it (it is recorded before
// the read) and none for a read whose recording was cut; and once the lock
// is gone the same read is served.
//
// No duration is measured: each case's deadline is configured, and the
// test only waits (under its own deadline) for the answer and for the
// database to show the cancelled statement gone.
func TestAuditEventsOnSlowDatabase(t *testing.T) {
	t.Parallel()
	ctx := pgtest.Context(t)
	dbURL := pgtest.NewURL(t)
	// Two pools on the same database: one whose statements the server
	// gives up on after a second (production sets 10 s), one without such
	// a bound, where only the request's deadline can end the wait.
	open := func(statementTimeout time.Duration) *sql.DB {
		db, err := postgres.Open(ctx, postgres.Config{URL: dbURL, StatementTimeout: statementTimeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	serverTimeout, noTimeout := open(time.Second), open(time.Hour)

	// Something to export: two bookings, i.e. two events.
	store, err := bookingstore.New(bookingstore.Config{DB: noTimeout})
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(t, store, nil, nil)
	for i := range 2 {
		if _, err := svc.CreateBooking(ctx, domain.NewBookingParams{
			ResourceID: newResource("slow-audit"), CheckIn: defaultCheckIn, CheckOut: defaultCheckOut,
			Amount: defaultAmount, Currency: defaultCurrency, CustomerEmail: "guest@example.com",
		}, "api:slow-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	var events int
	if err := noTimeout.QueryRowContext(ctx, `SELECT count(*) FROM ledger_events`).Scan(&events); err != nil || events == 0 {
		t.Fatalf("%d events to export (%v)", events, err)
	}

	const (
		lockLog       = `LOCK TABLE ledger_events IN ACCESS EXCLUSIVE MODE`
		lockAccessLog = `LOCK TABLE audit_access_log IN ACCESS EXCLUSIVE MODE`
		// What an INSERT into the log takes: the settled bound waits for
		// every transaction holding it.
		openAppend = `LOCK TABLE ledger_events IN ROW EXCLUSIVE MODE`
	)
	cases := []struct {
		name string
		// db is the handler's pool; requestTimeout its guard's deadline.
		db             *sql.DB
		requestTimeout time.Duration
		// lock is taken by another session for the time of the request.
		lock string
		// wantError is the answer's error text.
		wantError string
		// accessRows is how many access log rows the read leaves: -1 for
		// "0 or 1" when the deadline may come before or after the
		// recording (both are whole rows or none).
		accessRows int
	}{
		{"statement timeout, the export waits for a lock", serverTimeout, time.Minute, lockLog, "request timed out", 1},
		{"statement timeout, the access log waits for a lock", serverTimeout, time.Minute, lockAccessLog, "request timed out", 0},
		// The handler's settle bound (10 s) ends the wait; the statements
		// themselves are quick.
		{"an appending transaction left open", serverTimeout, time.Minute, openAppend, "busy, try again", 1},
		{"request deadline, the export waits for a lock", noTimeout, 2 * time.Second, lockLog, "request timed out", -1},
		{"request deadline, the access log waits for a lock", noTimeout, 2 * time.Second, lockAccessLog, "request timed out", 0},
		{"request deadline, an appending transaction left open", noTimeout, 2 * time.Second, openAppend, "request timed out", -1},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logBuffer{}
			logger := slog.New(slog.NewJSONHandler(logs, nil))
			verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{testSecret}})
			if err != nil {
				t.Fatal(err)
			}
			cfgStore, err := bookingstore.New(bookingstore.Config{DB: tc.db, Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			auditor, err := audit.NewAuditor(audit.AuditorConfig{DB: tc.db})
			if err != nil {
				t.Fatal(err)
			}
			cfg := ledgerhttp.Config{
				Ledger: newService(t, cfgStore, nil, logger), Verifier: verifier, APIToken: testToken,
				Logger: logger, Audit: auditor, RequestTimeout: tc.requestTimeout,
			}
			handler, err := ledgerhttp.NewHandler(cfg)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(checkContract(t, cfg, handler))
			defer srv.Close()
			agent := "slow-db-test/" + strconv.Itoa(i)
			get := func() response {
				t.Helper()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/audit/events", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+testToken)
				req.Header.Set("User-Agent", agent)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatalf("GET /audit/events got no answer: %v", err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("GET /audit/events: read the answer: %v", err)
				}
				return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
			}

			// The lock is held by a session of its own, in a transaction
			// that stays open until the answer came.
			locker, err := noTimeout.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer locker.Close()
			tx, err := locker.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, tc.lock); err != nil {
				t.Fatal(err)
			}

			r := get()
			r.wantError(t, http.StatusServiceUnavailable, tc.wantError)
			if r.Header.Get("Retry-After") != "1" {
				t.Errorf("answer without Retry-After: %v", r.Header)
			}
			if !strings.Contains(logs.String(), `"level":"ERROR"`) {
				t.Errorf("the failure is not in the log:\n%s", logs)
			}
			// Before the lock goes: the request's statements must have
			// been cancelled, not left queued behind it (where an access
			// log row could still commit after the answer).
			waitIdle(ctx, t, noTimeout)
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			rows := accessRows(ctx, t, noTimeout, agent)
			if tc.accessRows >= 0 && len(rows) != tc.accessRows || len(rows) > 1 {
				t.Errorf("access log rows of the read: %v, want %d", rows, tc.accessRows)
			}

			// The pool recovered: the same read is served, and logged.
			r = get()
			if r.Status != http.StatusOK || r.Header.Get("X-Ledger-Events") != strconv.Itoa(events) {
				t.Fatalf("after the lock: %s %v", r, r.Header)
			}
			for line := range strings.SplitSeq(strings.TrimSpace(string(r.Body)), "\n") {
				var e audit.ExportLine
				if err := json.Unmarshal([]byte(line), &e); err != nil || e.Hash == "" {
					t.Fatalf("export line %q: %v", line, err)
				}
			}
			if again := accessRows(ctx, t, noTimeout, agent); len(again) != len(rows)+1 {
				t.Errorf("access log rows after the served read: %v, want one more than %v", again, rows)
			}
		})
	}
}

// waitIdle returns once no other session of db's database runs a
// statement or waits for a lock, failing the test when ctx ends first.
func waitIdle(ctx context.Context, t *testing.T, db *sql.DB) {
	t.Helper()
	pgtest.Poll(ctx, t, "the request's statements to end", func(ctx context.Context) (string, error) {
		var busy []string
		err := db.QueryRowContext(ctx, `SELECT coalesce(array_agg(query), '{}') FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'`).Scan(pq.Array(&busy))
		if err != nil || len(busy) == 0 {
			return "", err
		}
		return fmt.Sprintf("running %q", busy), nil
	})
}

// accessRows lists the access log rows left by user agent agent, each as
// "actor channel action target remote", failing on a row with a field
// missing.
func accessRows(ctx context.Context, t *testing.T, db *sql.DB, agent string) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, `SELECT actor, channel, action, coalesce(target, ''), coalesce(remote_addr, '')
		FROM audit_access_log WHERE user_agent = $1 ORDER BY id`, agent)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var actor, channel, action, target, remote string
		if err := rows.Scan(&actor, &channel, &action, &target, &remote); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(actor, "token:") || channel != "http" || action != "events" ||
			target != "after=0&limit=1000" || !strings.HasPrefix(remote, "127.0.0.1:") {
			t.Errorf("access log row incomplete: actor %q channel %q action %q target %q remote %q", actor, channel, action, target, remote)
		}
		out = append(out, strings.Join([]string{actor, channel, action, target, remote}, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
