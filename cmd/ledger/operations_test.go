package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// TestOperatorCommands: `ledger deliveries list|replay` and `ledger
// obligations [ack]` on a seeded ledger, as an operator runs them.
func TestOperatorCommands(t *testing.T) {
	t.Setenv("LEDGER_STRIPE_MODE", "test") // a replay passes the mode gate like any delivery
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 24, Seed: 12, Money: true})
	var unmatched []string
	for _, ids := range seeded.Unmatched {
		unmatched = append(unmatched, ids...)
	}
	if len(unmatched) == 0 {
		t.Fatal("the seeded ledger has no unmatched delivery: pick another seed")
	}

	out, stderr, err := runLedger(t, dbURL, "deliveries", "list", "--outcome", "unmatched", "--format", "json")
	if err != nil {
		t.Fatalf("deliveries list: %v\n%s", err, stderr)
	}
	var listed struct {
		Deliveries []struct {
			EventID string `json:"event_id"`
			Outcome string `json:"outcome"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.Deliveries) != len(unmatched) {
		t.Fatalf("deliveries list: %s (%v); want the %d unmatched %v", out, err, len(unmatched), unmatched)
	}

	out, _, err = runLedger(t, dbURL, "deliveries", "replay", "--outcome", "unmatched", "--since", "100000h", "--dry-run")
	if err != nil || strings.Count(out, "would replay") != len(unmatched) {
		t.Errorf("dry run: %v\n%s", err, out)
	}
	events := queryInt(t, db, `SELECT count(*) FROM ledger_events`)
	id := unmatched[0]
	out, stderr, err = runLedger(t, dbURL, "deliveries", "replay", "--event", id)
	if err != nil || !strings.Contains(out, id+"\tprocessed\tbooking ") {
		t.Fatalf("replay: %v\n%s%s", err, out, stderr)
	}
	// Its booking was paid meanwhile: the replayed failure changes nothing.
	if n := queryInt(t, db, `SELECT count(*) FROM ledger_events`); n != events {
		t.Errorf("the replay appended %d events", n-events)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stripe_inbox WHERE event_id = $1 AND source = 'replay'`, id); n != 1 {
		t.Errorf("%d replay inbox rows", n)
	}
	if _, _, err := runLedger(t, dbURL, "deliveries", "replay", "--event", id); err == nil || !strings.Contains(err.Error(), "decided already") {
		t.Errorf("a second replay: %v", err)
	}
	if _, _, err := runLedger(t, dbURL, "deliveries", "replay"); err == nil {
		t.Errorf("replay without a selection ran")
	}

	out, stderr, err = runLedger(t, dbURL, "obligations", "--format", "json")
	if err != nil {
		t.Fatalf("obligations: %v\n%s", err, stderr)
	}
	var obs struct {
		Obligations []struct {
			ID, Kind string
		} `json:"obligations"`
	}
	if err := json.Unmarshal([]byte(out), &obs); err != nil || len(obs.Obligations) == 0 {
		t.Fatalf("obligations: %s (%v)", out, err)
	}
	first := obs.Obligations[0].ID
	if _, _, err := runLedger(t, dbURL, "obligations", "ack", first); err == nil {
		t.Errorf("ack without --reason ran")
	}
	out, stderr, err = runLedger(t, dbURL, "obligations", "ack", first, "--reason", "checked with the guest")
	if err != nil || !strings.Contains(out, "acknowledged "+first) {
		t.Fatalf("ack: %v\n%s%s", err, out, stderr)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM obligation_acks WHERE obligation_id = $1 AND acked_by LIKE 'cli%' AND reason = 'checked with the guest'`, first); n != 1 {
		t.Errorf("%d ack rows", n)
	}
	out, _, _ = runLedger(t, dbURL, "obligations")
	if strings.Contains(out, first+" ") {
		t.Errorf("still listed after its ack:\n%s", out)
	}
}

// TestRefundAndDeadLetterCommands: `ledger refunds list|retry|ack` on a
// refund Stripe refused, and `ledger projections dead-letters
// list|retry|ack` on an event the monitoring projection could not apply.
func TestRefundAndDeadLetterCommands(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	store, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := app.NewService(app.Config{Bookings: store})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for range 2 {
		row, err := svc.CreateBooking(ctx, domain.NewBookingParams{ResourceID: "room-1", CheckIn: "2027-01-10", CheckOut: "2027-01-13",
			Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, row.ID)
	}
	pi := stripe.NewPaymentIntentID()
	for i, id := range ids {
		p := stripe.NewPaymentIntentID()
		if i == 1 {
			p = pi
		}
		if _, err := svc.Ingest(ctx, app.Delivery{EventID: stripe.NewEventID(), Type: stripe.EventPaymentIntentSucceeded, Raw: []byte(`{}`),
			Fact: app.FactPaymentSucceeded, Lookup: app.Lookup{BookingIDs: []int64{id}},
			Payment: domain.Payment{PaymentIntentID: p, Amount: 36000, Currency: "eur", Source: "webhook"}}); err != nil {
			t.Fatal(err)
		}
	}
	// Stripe does not know the PaymentIntent: refused for good.
	fake := stripetest.NewServer(t)
	client, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_ops", BaseURL: fake.URL, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := domain.RefundRequested{PaymentIntentID: pi, Amount: 36000, Currency: "eur", Reason: domain.RefundAvailabilityConflict}
	if err := (app.Refunds{Refunder: client}).Settle(ctx, store.InTx(tx), ids[1], req, "test"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	out, stderr, err := runLedger(t, dbURL, "refunds", "list", "--format", "json")
	var listed struct {
		Failures []struct {
			ID   string `json:"id"`
			Open bool   `json:"open"`
		} `json:"refund_failures"`
	}
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed.Failures) != 1 || !listed.Failures[0].Open {
		t.Fatalf("refunds list: %v\n%s%s", err, out, stderr)
	}
	id := listed.Failures[0].ID
	out, stderr, err = runLedger(t, dbURL, "refunds", "retry", id)
	if err != nil || !strings.Contains(out, "requested again") {
		t.Fatalf("refunds retry: %v\n%s%s", err, out, stderr)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ledger_events WHERE stream_id = $1 AND event_type = 'RefundRequested'`, ids[1]); n != 2 {
		t.Errorf("%d RefundRequested after the retry, want 2", n)
	}
	if _, _, err := runLedger(t, dbURL, "refunds", "retry", id); err == nil || !strings.Contains(err.Error(), "pending") {
		t.Errorf("a second retry while pending: %v", err)
	}
	if out, _, err := runLedger(t, dbURL, "refunds", "ack", id, "--reason", "refunded by hand"); err != nil || !strings.Contains(out, "acknowledged") {
		t.Errorf("refunds ack: %v %s", err, out)
	}

	// A PaymentSucceeded the monitoring projection (as if buggy) did not
	// apply.
	position := queryInt(t, db, `SELECT min(position) FROM ledger_events WHERE event_type = 'PaymentSucceeded'`)
	if _, err := db.Exec(`INSERT INTO projection_dead_letters (projection, projection_version, position, event_id, stream_id,
		event_type, payload, metadata, error) VALUES ('monitoring', $1, $2, 'e', 1, 'PaymentSucceeded', '{}', '{}', 'a bug')`,
		projections.MonitoringVersion, position); err != nil {
		t.Fatal(err)
	}
	payments := func() int64 {
		return queryInt(t, db, `SELECT COALESCE(sum(payments), 0) FROM monitoring_revenue_by_currency`)
	}
	before := payments()
	dl := fmt.Sprintf("dead_letter:monitoring:%d:%d", projections.MonitoringVersion, position)
	out, stderr, err = runLedger(t, dbURL, "projections", "dead-letters", "retry", dl)
	if err != nil || !strings.Contains(out, "applied "+dl) {
		t.Fatalf("dead-letters retry: %v\n%s%s", err, out, stderr)
	}
	if after := payments(); after != before+1 {
		t.Errorf("payments %d → %d, want one more", before, after)
	}
	if _, _, err := runLedger(t, dbURL, "projections", "dead-letters", "retry", dl); err == nil {
		t.Errorf("a second retry applied again")
	}
	if after := payments(); after != before+1 {
		t.Errorf("payments %d after a second retry", after)
	}
	out, _, _ = runLedger(t, dbURL, "projections", "dead-letters", "list")
	if !strings.Contains(out, dl) || !strings.Contains(out, "retried: applied") {
		t.Errorf("dead-letters list:\n%s", out)
	}
}

// TestDecisionsDiff: on a ledger decided by today's rules, `ledger
// decisions diff` finds nothing; on bookings whose payments were decided by
// a test-only variant (a wrong amount accepted), it lists exactly those.
func TestDecisionsDiff(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 30, Seed: 12, Money: true})
	out, stderr, err := runLedger(t, dbURL, "decisions", "diff")
	if err != nil || !strings.HasPrefix(out, "0 of 30 booking(s) would be decided differently") {
		t.Fatalf("today's ledger: %v\n%s%s", err, out, stderr)
	}

	// The variant: a payment of the wrong amount confirms all the same.
	variant := func(d app.Delivery) app.Decision {
		return func(b *domain.Booking, stays []domain.Stay) ([]domain.Event, error) {
			p := d.Payment
			p.Amount, p.Currency = b.Price().Amount, b.Price().Currency
			return domain.DecidePaymentSucceeded(b, p, stays)
		}
	}
	var wrong []int64
	for i := range 3 {
		row, err := seeded.Service.CreateBooking(ctx, domain.NewBookingParams{ResourceID: fmt.Sprintf("variant-%d", i),
			CheckIn: "2027-05-01", CheckOut: "2027-05-03", Amount: 20000, Currency: "eur", CustomerEmail: "v@example.com"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		amount := int64(20000)
		if i < 2 {
			amount = 100 // wrong: today's rule records a mismatch
			wrong = append(wrong, row.ID)
		}
		raw, err := stripe.BuildEvent(stripe.EventPaymentIntentSucceeded, stripe.TestBooking{ID: row.ID, Amount: amount, Currency: "eur"}, seeded.Clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		d, err := stripe.ParseDelivery(raw, "", "webhook", seeded.Clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := seeded.Ledger.Record(ctx, d, variant(d)); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, err = runLedger(t, dbURL, "decisions", "diff")
	if err != nil {
		t.Fatalf("decisions diff: %v\n%s", err, stderr)
	}
	want := fmt.Sprintf("booking %d\n  recorded: BookingRequested PaymentSucceeded BookingConfirmed\n  decided:  BookingRequested PaymentMismatch\n", wrong[0]) +
		fmt.Sprintf("booking %d\n  recorded: BookingRequested PaymentSucceeded BookingConfirmed\n  decided:  BookingRequested PaymentMismatch\n", wrong[1]) +
		"2 of 33 booking(s) would be decided differently"
	if !strings.HasPrefix(out, want) {
		t.Errorf("decisions diff printed\n%s\nwant\n%s", out, want)
	}
	if out, _, err := runLedger(t, dbURL, "decisions", "diff", "--booking", fmt.Sprint(wrong[1])); err != nil || !strings.Contains(out, "1 of 1 booking(s)") {
		t.Errorf("--booking: %v\n%s", err, out)
	}
}

// TestIdempotencyKeyAcrossTwoServeProcesses: two `ledger serve` processes
// on one database; the same POST /bookings with one Idempotency-Key sent to
// each makes one booking, and the second answer is the first replayed.
func TestIdempotencyKeyAcrossTwoServeProcesses(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	a, b := startServe(t, dbURL), startServe(t, dbURL)
	body := `{"resource_id": "room-idem", "check_in": "2027-03-01", "check_out": "2027-03-03", "amount": 20000, "currency": "eur", "customer_email": "g@example.com"}`
	send := func(addr string) (int, string, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/bookings", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+serveToken)
		req.Header.Set("Idempotency-Key", "two-processes-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw), resp.Header.Get("Idempotent-Replayed")
	}
	s1, b1, _ := send(a.addr)
	s2, b2, replayed := send(b.addr)
	if s1 != http.StatusCreated || s2 != s1 || b2 != b1 || replayed != "true" {
		t.Fatalf("first %d %s; second process %d %s (replayed %q)", s1, b1, s2, b2, replayed)
	}
	if n := queryInt(t, openTestDB(t, dbURL), `SELECT count(*) FROM bookings`); n != 1 {
		t.Errorf("%d bookings, want 1", n)
	}
}

// TestServeReconcilesOnASchedule: `serve --reconcile-every` reconciles at
// start: an event the webhook missed is ingested, the run recorded, and
// /metrics reports it.
func TestServeReconcilesOnASchedule(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	db := openTestDB(t, dbURL)
	store, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := app.NewService(app.Config{Bookings: store})
	if err != nil {
		t.Fatal(err)
	}
	row, err := svc.CreateBooking(ctx, domain.NewBookingParams{ResourceID: "room-sched", CheckIn: "2027-03-01", CheckOut: "2027-03-03",
		Amount: 20000, Currency: "eur", CustomerEmail: "g@example.com"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	fake := stripetest.NewServer(t)
	raw, err := stripe.BuildEvent(stripe.EventCheckoutSessionCompleted, stripe.TestBooking{ID: row.ID, Amount: 20000, Currency: "eur"},
		time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	fake.AddEvent(raw)
	p := startServe(t, dbURL, "STRIPE_SECRET_KEY=sk_test_sched", "STRIPE_API_BASE_URL="+fake.URL, "LEDGER_RECONCILE_EVERY=1h")
	deadline := time.Now().Add(time.Minute)
	for queryInt(t, db, `SELECT count(*) FROM reconcile_runs WHERE ok`) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no successful run within a minute:\n%s", p.stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var status string
	if err := db.QueryRow(`SELECT status FROM bookings WHERE id = $1`, row.ID).Scan(&status); err != nil || status != "confirmed" {
		t.Errorf("booking %s (%v), want confirmed by the reconciliation", status, err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+serveToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `ledger_reconcile_runs_total{result="ok"} 1`) {
		t.Errorf("/metrics:\n%s", grepLinesPrefix(string(metrics), "ledger_reconcile"))
	}
}

func grepLinesPrefix(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
