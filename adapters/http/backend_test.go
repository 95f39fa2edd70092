package http_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/app/apptest"
)

// The tests run the handler in front of app.Service on one of two booking
// stores: the in-memory one of domain/app/apptest (the default: the
// contract tests need no database) or the real PostgreSQL store (the
// end-to-end tests, and the conformance runs of forEachBackend). What a
// test reads of the store goes through backend, so that the same test
// reads both.

// backend is a booking store and what the tests read of it.
type backend interface {
	// name is "memory" or "postgres", for subtest names.
	name() string
	bookings() app.Bookings
	counts(t testing.TB) counts
	// status reads a booking's status and payment status; ok is false
	// when there is no row.
	status(t testing.TB, id int64) (status, paymentStatus string, ok bool)
	// stream lists the event types of a booking's stream in stream order.
	stream(t testing.TB, id int64) []string
	// inbox reads a Stripe event's inbox row; ok is false when there is
	// none.
	inbox(t testing.TB, eventID string) (r inboxRow, ok bool)
	// deliveries lists the delivery rows of a Stripe event ("" for all)
	// in arrival order.
	deliveries(t testing.TB, eventID string) []deliveryRow
	// digest summarises every table a webhook may write, so that two
	// digests differ when anything was written.
	digest(t testing.TB) tableDigest
	// lastBookingID is the last booking id drawn from the sequence, 0
	// before the first.
	lastBookingID(t testing.TB) int64
	// breakDown makes every later call fail as an internal error and
	// returns a fragment of the error the handler logs.
	breakDown(t testing.TB) string
	// hold makes the writes about resource wait until release; waitHeld
	// returns once n writes wait.
	hold(t testing.TB, resource string) (release func())
	waitHeld(t testing.TB, n int)
}

type inboxRow struct {
	Outcome, Source, Signature string
	BookingID                  int64
	Payload                    []byte
}

type deliveryRow struct {
	Outcome   string
	BookingID int64 // 0 for none
}

type tableDigest struct {
	Events, Inbox, Deliveries, Bookings string
	NDeliveries                         int
}

// ---------------------------------------------------------------- memory

type memBackend struct{ store *apptest.Store }

func newMemBackend(testing.TB) *memBackend { return &memBackend{store: apptest.New(nil)} }

func (b *memBackend) name() string           { return "memory" }
func (b *memBackend) bookings() app.Bookings { return b.store }

func (b *memBackend) counts(testing.TB) counts {
	c := b.store.Counts()
	return counts{Events: c.Events, Inbox: c.Inbox, Deliveries: c.Deliveries, Bookings: c.Bookings}
}

func (b *memBackend) status(_ testing.TB, id int64) (string, string, bool) {
	r, ok := b.store.Booking(id)
	return string(r.Status), string(r.PaymentStatus), ok
}

func (b *memBackend) stream(_ testing.TB, id int64) []string { return b.store.StreamTypes(id) }

func (b *memBackend) inbox(_ testing.TB, eventID string) (inboxRow, bool) {
	r, ok := b.store.Inbox(eventID)
	return inboxRow{Outcome: string(r.Outcome), Source: r.Source, Signature: r.Signature, BookingID: r.BookingID, Payload: r.Payload}, ok
}

func (b *memBackend) deliveries(_ testing.TB, eventID string) []deliveryRow {
	var rows []apptest.DeliveryRow
	if eventID == "" {
		rows = b.store.Tables().Deliveries
	} else {
		rows = b.store.Deliveries(eventID)
	}
	var out []deliveryRow
	for _, d := range rows {
		out = append(out, deliveryRow{Outcome: string(d.Outcome), BookingID: d.BookingID})
	}
	return out
}

func (b *memBackend) digest(testing.TB) tableDigest {
	t := b.store.Tables()
	// JSON, not %v: the rows' optional fields are pointers, whose
	// addresses change with every copy.
	sum := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return fmt.Sprintf("%x", sha256.Sum256(b))
	}
	return tableDigest{Events: sum(t.Events), Inbox: sum(t.Inbox), Deliveries: sum(t.Deliveries), Bookings: sum(t.Bookings), NDeliveries: len(t.Deliveries)}
}

func (b *memBackend) lastBookingID(testing.TB) int64 { return b.store.LastBookingID() }

func (b *memBackend) breakDown(testing.TB) string {
	b.store.Fail(errors.New("the store is broken on purpose"))
	return "the store is broken on purpose"
}

func (b *memBackend) hold(testing.TB, string) func() { return b.store.Hold() }

func (b *memBackend) waitHeld(t testing.TB, n int) {
	t.Helper()
	if err := b.store.WaitHeld(pgtest.Context(t), n); err != nil {
		t.Fatalf("waiting for %d held writes: %v", n, err)
	}
}

// ---------------------------------------------------------------- postgres

type sqlBackend struct {
	db     *sql.DB
	ledger *bookingstore.Store
}

// newSQLBackend is the real store on a fresh, migrated database.
func newSQLBackend(t testing.TB, logger *slog.Logger) *sqlBackend {
	t.Helper()
	db := pgtest.NewDB(t)
	ledger, err := bookingstore.New(bookingstore.Config{DB: db, Logger: logger})
	if err != nil {
		t.Fatalf("NewLedger: %v", err)
	}
	return &sqlBackend{db: db, ledger: ledger}
}

func (b *sqlBackend) name() string           { return "postgres" }
func (b *sqlBackend) bookings() app.Bookings { return b.ledger }

func (b *sqlBackend) counts(t testing.TB) counts {
	t.Helper()
	var c counts
	err := b.db.QueryRow(`SELECT
		(SELECT count(*) FROM ledger_events),
		(SELECT count(*) FROM stripe_inbox),
		(SELECT count(*) FROM stripe_deliveries),
		(SELECT count(*) FROM bookings)`).Scan(&c.Events, &c.Inbox, &c.Deliveries, &c.Bookings)
	if err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return c
}

func (b *sqlBackend) status(t testing.TB, id int64) (status, paymentStatus string, ok bool) {
	t.Helper()
	err := b.db.QueryRow(`SELECT status, payment_status FROM bookings WHERE id = $1`, id).Scan(&status, &paymentStatus)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false
	}
	if err != nil {
		t.Fatalf("booking %d: %v", id, err)
	}
	return status, paymentStatus, true
}

func (b *sqlBackend) stream(t testing.TB, id int64) []string {
	t.Helper()
	return b.strings(t, `SELECT event_type FROM ledger_events WHERE stream_id = $1 ORDER BY stream_version`, id)
}

func (b *sqlBackend) strings(t testing.TB, query string, args ...any) []string {
	t.Helper()
	rows, err := b.db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

func (b *sqlBackend) inbox(t testing.TB, eventID string) (inboxRow, bool) {
	t.Helper()
	var r inboxRow
	var booking sql.NullInt64
	err := b.db.QueryRow(`SELECT outcome, source, signature_header, booking_id, payload FROM stripe_inbox WHERE event_id = $1`, eventID).
		Scan(&r.Outcome, &r.Source, &r.Signature, &booking, &r.Payload)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false
	}
	if err != nil {
		t.Fatalf("inbox %s: %v", eventID, err)
	}
	r.BookingID = booking.Int64
	return r, true
}

func (b *sqlBackend) deliveries(t testing.TB, eventID string) []deliveryRow {
	t.Helper()
	rows, err := b.db.Query(`SELECT outcome, coalesce(booking_id, 0) FROM stripe_deliveries WHERE $1 = '' OR event_id = $1 ORDER BY id`, eventID)
	if err != nil {
		t.Fatalf("deliveries %s: %v", eventID, err)
	}
	defer rows.Close()
	var out []deliveryRow
	for rows.Next() {
		var d deliveryRow
		if err := rows.Scan(&d.Outcome, &d.BookingID); err != nil {
			t.Fatalf("deliveries %s: %v", eventID, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("deliveries %s: %v", eventID, err)
	}
	return out
}

func (b *sqlBackend) digest(t testing.TB) tableDigest {
	t.Helper()
	table := func(name, order string) string {
		var d string
		q := fmt.Sprintf(`SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY %s)), '') FROM %s t`, order, name)
		if err := b.db.QueryRow(q).Scan(&d); err != nil {
			t.Fatalf("digest %s: %v", name, err)
		}
		return d
	}
	d := tableDigest{
		Events: table("ledger_events", "position"), Inbox: table("stripe_inbox", "id"),
		Deliveries: table("stripe_deliveries", "id"), Bookings: table("bookings", "id"),
	}
	if err := b.db.QueryRow(`SELECT count(*) FROM stripe_deliveries`).Scan(&d.NDeliveries); err != nil {
		t.Fatal(err)
	}
	return d
}

func (b *sqlBackend) lastBookingID(t testing.TB) int64 {
	t.Helper()
	var last int64
	var called bool
	if err := b.db.QueryRow(`SELECT last_value, is_called FROM booking_id_seq`).Scan(&last, &called); err != nil {
		t.Fatalf("booking_id_seq: %v", err)
	}
	if !called {
		return 0
	}
	return last
}

func (b *sqlBackend) breakDown(t testing.TB) string {
	t.Helper()
	if err := b.db.Close(); err != nil {
		t.Fatal(err)
	}
	return "database is closed"
}

// hold takes the resource's advisory lock in a transaction of its own,
// which every decision about the resource waits for.
func (b *sqlBackend) hold(t testing.TB, resource string) func() {
	t.Helper()
	ctx := context.Background()
	conn, err := b.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SELECT pg_advisory_xact_lock(`+bookingstore.ResourceLockKey("$1")+`)`, resource); err != nil {
		t.Fatal(err)
	}
	return func() {
		tx.Rollback()
		conn.Close()
	}
}

// waitHeld polls pg_locks: the waiters are other sessions, which nothing in
// this process can observe otherwise.
func (b *sqlBackend) waitHeld(t testing.TB, n int) {
	t.Helper()
	pgtest.Poll(pgtest.Context(t), t, fmt.Sprintf("%d requests to reach the database", n), func(ctx context.Context) (string, error) {
		var waiting int
		err := b.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting)
		if err != nil || waiting >= n {
			return "", err
		}
		return fmt.Sprintf("%d waiting", waiting), nil
	})
}

// ---------------------------------------------------------------- both

// backendKinds are the stores forEachBackend runs a test on.
var backendKinds = []struct {
	name string
	opts []harnessOption
}{
	{"memory", nil},
	{"postgres", []harnessOption{withPostgres()}},
}

// forEachBackend runs test once per store, as parallel subtests: the
// conformance runs that show the in-memory store keeps the SQL store's
// contract. The postgres run is skipped when no server answers.
func forEachBackend(t *testing.T, test func(t *testing.T, opts ...harnessOption)) {
	for _, k := range backendKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			test(t, k.opts...)
		})
	}
}

// newService is the use-case layer on bookings, logging to logger.
func newService(t testing.TB, bookings app.Bookings, checkout *app.CheckoutConfig, logger *slog.Logger) *app.Service {
	t.Helper()
	return newServiceWith(t, app.Config{Bookings: bookings, Checkout: checkout, Logger: logger})
}

// newServiceWith is the use-case layer configured by cfg.
func newServiceWith(t testing.TB, cfg app.Config) *app.Service {
	t.Helper()
	svc, err := app.NewService(cfg)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	return svc
}
