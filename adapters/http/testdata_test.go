package http_test

import (
	"bytes"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json from stripe.BuildEvent")

// The fixed ids and values the testdata events were generated with; they
// are rewritten at load time for the booking a test is about.
const (
	fixtureBookingID     = 4242
	fixtureSessionID     = "cs_test_a1FixtureSession0000000000000000000000000000000000000000"
	fixturePaymentIntent = "pi_3FixturePaymentIntent000000"
	fixtureAmount        = 36000
	fixtureCurrency      = "eur"
	fixtureEmail         = "guest@example.com"
)

var fixtureTime = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// testdataEvents are the representative events kept in testdata: one of
// every handled type and one unhandled, each with the state a fresh pending
// booking ends in.
var testdataEvents = []struct {
	file, typ             string
	answer                string
	status, paymentStatus string
}{
	{"checkout_session_completed.json", stripe.EventCheckoutSessionCompleted, "success", "confirmed", "paid"},
	{"checkout_session_async_payment_succeeded.json", stripe.EventCheckoutSessionAsyncPaymentSucceeded, "success", "confirmed", "paid"},
	{"checkout_session_async_payment_failed.json", stripe.EventCheckoutSessionAsyncPaymentFailed, "success", "cancelled", "failed"},
	{"checkout_session_expired.json", stripe.EventCheckoutSessionExpired, "success", "cancelled", "unpaid"},
	{"payment_intent_succeeded.json", stripe.EventPaymentIntentSucceeded, "success", "confirmed", "paid"},
	{"payment_intent_payment_failed.json", stripe.EventPaymentIntentPaymentFailed, "success", "cancelled", "failed"},
	{"charge_succeeded.json", "charge.succeeded", "ignored", "pending", "unpaid"},
}

// fixtureEventID is the fixed event id of a testdata file, e.g.
// "evt_1FixtureChargeSucceeded".
func fixtureEventID(file string) string {
	id := "evt_1Fixture"
	for part := range strings.SplitSeq(strings.TrimSuffix(file, ".json"), "_") {
		id += strings.ToUpper(part[:1]) + part[1:]
	}
	return id
}

// TestTestdataEvents checks the stored events (and rewrites them with
// -update): complete events of the right type, with the fixed ids.
func TestTestdataEvents(t *testing.T) {
	for _, td := range testdataEvents {
		path := filepath.Join("testdata", td.file)
		if *update {
			body, err := stripe.BuildEvent(td.typ, stripe.TestBooking{
				ID: fixtureBookingID, SessionID: fixtureSessionID, PaymentIntentID: fixturePaymentIntent,
				Amount: fixtureAmount, Currency: fixtureCurrency, CustomerEmail: fixtureEmail,
			}, fixtureTime)
			if err != nil {
				t.Fatal(err)
			}
			ev := editEvent(t, body, setEventField("id", fixtureEventID(td.file)))
			if err := os.WriteFile(path, append(ev.Body, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestTestdataEvents -update)", err)
		}
		ev, err := stripe.ParseEvent(body)
		if err != nil {
			t.Errorf("%s: %v", td.file, err)
			continue
		}
		if ev.ID != fixtureEventID(td.file) || ev.Type != td.typ || !ev.Created.Equal(fixtureTime) {
			t.Errorf("%s: id %s, type %s, created %v", td.file, ev.ID, ev.Type, ev.Created)
		}
		if ev.Handled() != (td.answer == "success") {
			t.Errorf("%s: handled %v", td.file, ev.Handled())
		}
		if l := ev.Lookup(); len(l.BookingIDs) == 0 || l.BookingIDs[0] != fixtureBookingID {
			t.Errorf("%s: lookup %+v", td.file, l)
		}
	}
}

// loadTestdataEvent reads a stored event and rewrites it for booking b: a
// fresh event id, b's session and PaymentIntent ids wherever the fixed ones
// appear (ids, URLs, client secret), b's id in metadata and
// client_reference_id, b's price, and created = now.
func loadTestdataEvent(t testing.TB, file string, b stripe.TestBooking, now time.Time) event {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.ReplaceAll(body, []byte(fixtureSessionID), []byte(b.SessionID))
	body = bytes.ReplaceAll(body, []byte(fixturePaymentIntent), []byte(b.PaymentIntentID))
	return editEvent(t, body,
		setEventField("id", stripe.NewEventID()),
		setEventField("created", now.Unix()),
		func(_, obj map[string]any) {
			obj["metadata"] = map[string]any{"booking_id": itoa(b.ID)}
			if _, ok := obj["client_reference_id"]; ok {
				obj["client_reference_id"] = itoa(b.ID)
			}
			for _, k := range []string{"amount", "amount_total", "amount_subtotal"} {
				if _, ok := obj[k]; ok {
					obj[k] = b.Amount
				}
			}
			obj["currency"] = b.Currency
		})
}

// TestWebhookTestdataEvents posts each stored event, rewritten for a fresh
// booking, and checks the answer and the booking's state; then posts it
// again (a duplicate).
func TestWebhookTestdataEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for i, td := range testdataEvents {
		t.Run(td.file, func(t *testing.T) {
			h := h.with(t)
			b := h.createBooking(bookingRequest(newResource("testdata")))
			tb := testBooking(b)
			ev := loadTestdataEvent(t, td.file, tb, h.now)
			if bytes.Contains(ev.Body, []byte(fixtureSessionID)) || bytes.Contains(ev.Body, []byte(fixturePaymentIntent)) {
				t.Fatal("fixed ids left in the rewritten event")
			}
			s := pickSigner(i)
			h.deliver(ev, s).wantBody(t, http.StatusOK, `{"status":"`+td.answer+`"}`)
			h.wantStatus(b.ID, td.status, td.paymentStatus)
			outcome := map[string]string{"success": "processed", "ignored": "ignored"}[td.answer]
			if got := h.inboxOutcome(ev.ID); got != outcome {
				t.Errorf("inbox outcome %q, want %q", got, outcome)
			}
			// The inbox keeps the body byte for byte, with its signature.
			row, ok := h.store.inbox(t, ev.ID)
			if !ok {
				t.Fatalf("no inbox row of %s", ev.ID)
			}
			if !bytes.Equal(row.Payload, ev.Body) || row.Signature != s.sign(ev.Body, testSecret, h.now) {
				t.Errorf("inbox row differs from the delivery (signature %q)", row.Signature)
			}
			before := h.counts()
			h.deliver(ev, pickSigner(i+1)).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
			if got := h.counts(); got.Events != before.Events || got.Inbox != before.Inbox || got.Deliveries != before.Deliveries+1 {
				t.Errorf("duplicate: rows %+v → %+v", before, got)
			}
		})
	}
}
