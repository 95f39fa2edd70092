package main

import (
	"bytes"
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

type reconcileFixture struct {
	db     *sql.DB
	ledger *app.Service
	fake   *stripetest.Server
	client *stripe.Client
	now    time.Time
}

func newReconcileFixture(t *testing.T, dbURL string) reconcileFixture {
	t.Helper()
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(5)
	t.Cleanup(func() { db.Close() })
	store, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	ledger, err := app.NewService(app.Config{Bookings: store, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	fake := stripetest.NewServer(t)
	client, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_reconcile", BaseURL: fake.URL, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return reconcileFixture{db: db, ledger: ledger, fake: fake, client: client, now: now}
}

// booking creates a booking of resource with a session of its own.
func (f reconcileFixture) booking(t *testing.T, resource string) stripe.TestBooking {
	t.Helper()
	sess := stripe.NewSessionID()
	row, err := f.ledger.CreateBooking(context.Background(), domain.NewBookingParams{ResourceID: resource, CheckIn: "2027-01-10",
		CheckOut: "2027-01-13", Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com", SessionID: sess}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return stripe.TestBooking{ID: row.ID, SessionID: sess, PaymentIntentID: stripe.NewPaymentIntentID(), Amount: 36000, Currency: "eur"}
}

// event builds an event created at, and makes Stripe's Events API hold it.
func (f reconcileFixture) event(t *testing.T, typ string, b stripe.TestBooking, at time.Time) (id string, raw []byte) {
	t.Helper()
	raw, err := stripe.BuildEvent(typ, b, at)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stripe.ParseEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	f.fake.AddEvent(raw)
	return ev.ID, raw
}

func (f reconcileFixture) counts(t *testing.T) (events, inbox int) {
	t.Helper()
	if err := f.db.QueryRow(`SELECT (SELECT count(*) FROM ledger_events), (SELECT count(*) FROM stripe_inbox)`).Scan(&events, &inbox); err != nil {
		t.Fatal(err)
	}
	return events, inbox
}

// TestReconcile: of the events Stripe lists, exactly those missing from the
// inbox are ingested through the decision path; a second run changes
// nothing.
func TestReconcile(t *testing.T) {
	f := newReconcileFixture(t, pgtest.NewURL(t))
	ctx := context.Background()
	delivered, missed, failed := f.booking(t, "room-1"), f.booking(t, "room-2"), f.booking(t, "room-3")

	// Delivered by the webhook in time, and listed by Stripe too.
	deliveredID, deliveredRaw := f.event(t, stripe.EventCheckoutSessionCompleted, delivered, f.now.Add(-2*time.Hour))
	ev, _ := stripe.ParseEvent(deliveredRaw)
	asWebhook := ev.Delivery(deliveredRaw, stripe.Sign(deliveredRaw, "whsec_test", f.now), "webhook", f.now)
	if _, err := f.ledger.Ingest(ctx, asWebhook); err != nil {
		t.Fatal(err)
	}
	// Missed while the endpoint was down.
	missedID, missedRaw := f.event(t, stripe.EventCheckoutSessionCompleted, missed, f.now.Add(-time.Hour))
	failedID, _ := f.event(t, stripe.EventPaymentIntentPaymentFailed, failed, f.now.Add(-50*time.Minute))
	// About no booking of this ledger.
	strayID, _ := f.event(t, stripe.EventCheckoutSessionCompleted, stripe.TestBooking{Amount: 100, Currency: "usd"}, f.now.Add(-40*time.Minute))
	// Older than --since, and a type the ledger does not handle.
	f.event(t, stripe.EventCheckoutSessionCompleted, f.booking(t, "room-4"), f.now.Add(-100*time.Hour))
	f.event(t, "customer.created", stripe.TestBooking{ID: missed.ID, Amount: 1, Currency: "eur"}, f.now.Add(-time.Hour))
	// A partial refund made in the Dashboard and a dispute, also missed:
	// they name only the PaymentIntent.
	refund := delivered
	refund.ID, refund.Refund = 0, stripe.TestRefund{Amount: 1000}
	f.event(t, stripe.EventRefundCreated, refund, f.now.Add(-30*time.Minute))
	dispute := missed
	dispute.ID = 0
	f.event(t, stripe.EventChargeDisputeCreated, dispute, f.now.Add(-20*time.Minute))

	run := func() app.ReconcileSummary {
		t.Helper()
		sum, err := newReconciler(f.ledger, f.client).Reconcile(ctx, f.now.Add(-72*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	if got, want := run(), (app.ReconcileSummary{Seen: 6, Present: 1, Ingested: 4, Unmatched: 1}); got != want {
		t.Fatalf("first run: %s, want %s", got, want)
	}
	wantBooking := func(id int64, status, payment string) {
		t.Helper()
		row, err := f.ledger.GetBooking(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if string(row.Status) != status || string(row.PaymentStatus) != payment {
			t.Errorf("booking %d is %s/%s, want %s/%s", id, row.Status, row.PaymentStatus, status, payment)
		}
	}
	wantBooking(missed.ID, "confirmed", "paid")
	wantBooking(failed.ID, "cancelled", "failed")
	wantBooking(delivered.ID, "confirmed", "partially_refunded")
	if row, _ := f.ledger.GetBooking(ctx, missed.ID); row.DisputeStatus == nil || *row.DisputeStatus != "needs_response" {
		t.Errorf("missed booking's dispute: %v", row.DisputeStatus)
	}

	for _, id := range []string{missedID, failedID} {
		var source, sig string
		var payload []byte
		if err := f.db.QueryRow(`SELECT source, signature_header, payload FROM stripe_inbox WHERE event_id = $1`, id).Scan(&source, &sig, &payload); err != nil {
			t.Fatalf("inbox row of %s: %v", id, err)
		}
		if source != "api" || sig != "" {
			t.Errorf("%s: source %q, signature %q", id, source, sig)
		}
		if id == missedID && !bytes.Equal(payload, missedRaw) {
			t.Errorf("stored payload differs from the event Stripe listed")
		}
	}
	var stray int
	f.db.QueryRow(`SELECT count(*) FROM stripe_deliveries WHERE event_id = $1 AND outcome = 'unmatched'`, strayID).Scan(&stray)
	if stray != 1 {
		t.Errorf("%d unmatched deliveries of the stray event", stray)
	}
	var source string
	f.db.QueryRow(`SELECT source FROM stripe_inbox WHERE event_id = $1`, deliveredID).Scan(&source)
	if source != "webhook" {
		t.Errorf("the delivered event's inbox row has source %q, want webhook", source)
	}

	events, inbox := f.counts(t)
	if got, want := run(), (app.ReconcileSummary{Seen: 6, Present: 5, Ingested: 0, Unmatched: 1}); got != want {
		t.Fatalf("second run: %s, want %s", got, want)
	}
	if e, i := f.counts(t); e != events || i != inbox {
		t.Errorf("second run wrote %d events and %d inbox rows", e-events, i-inbox)
	}
}

func TestReconcileCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	f := newReconcileFixture(t, dbURL)
	b := f.booking(t, "room-1")
	f.event(t, stripe.EventCheckoutSessionCompleted, b, f.now.Add(-time.Hour))

	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("STRIPE_API_BASE_URL", f.fake.URL)
	t.Run("without a key", func(t *testing.T) {
		t.Setenv("STRIPE_SECRET_KEY", "")
		cmd := newRootCmd()
		cmd.SetArgs([]string{"reconcile"})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "STRIPE_SECRET_KEY") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Setenv("STRIPE_SECRET_KEY", "sk_test_reconcile")
	for _, want := range []string{
		"seen 1, already present 0, ingested 1, unmatched 0",
		"seen 1, already present 1, ingested 0, unmatched 0",
	} {
		var out bytes.Buffer
		cmd := newRootCmd()
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"reconcile", "--since", "2h"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out.String()); got != want {
			t.Errorf("printed %q, want %q", got, want)
		}
	}
	// --since is sent to Stripe as created[gte].
	reqs := f.fake.Requests()
	gte := reqs[len(reqs)-1].Form.Get("created[gte]")
	if want := time.Now().Add(-2 * time.Hour).Unix(); gte == "" || absDiff(gte, want) > 60 {
		t.Errorf("created[gte] = %s, want about %d", gte, want)
	}
}

func absDiff(s string, n int64) int64 {
	var v int64
	for _, c := range s {
		v = v*10 + int64(c-'0')
	}
	if v > n {
		return v - n
	}
	return n - v
}
