package http_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
)

// TestUnmatchedRetriedWhenTheBookingAppears: a payment for a Checkout
// Session no booking has yet is answered 404 and kept; when the booking is
// created with that session, the server decides it at once, exactly once,
// and Stripe's later retry is a duplicate. A dispute that arrived before
// the payment is decided when the payment records its PaymentIntent.
func TestUnmatchedRetriedWhenTheBookingAppears(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withUnmatchedRetry())
	session := stripe.NewSessionID()
	tb := stripe.TestBooking{SessionID: session, PaymentIntentID: stripe.NewPaymentIntentID(), ChargeID: "ch_3early",
		Amount: defaultAmount, Currency: defaultCurrency}
	paid := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
	dispute := h.buildEvent(stripe.EventChargeDisputeCreated, tb)
	h.deliver(dispute, pickSigner(0)).wantError(t, http.StatusNotFound, "booking not found")
	h.deliver(paid, pickSigner(1)).wantError(t, http.StatusNotFound, "booking not found")

	req := bookingRequest(newResource("early"))
	req["session_id"] = session
	b := h.createBooking(req)
	h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed, evDisputeOpened)
	h.wantStatus(b.ID, "confirmed", "paid")
	for _, ev := range []event{paid, dispute} {
		if got := h.inboxOutcome(ev.ID); got != "processed" {
			t.Errorf("%s: inbox outcome %q", ev.Type, got)
		}
	}
	// Stripe's retries now find them decided.
	h.deliver(paid, pickSigner(2)).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
	h.deliver(dispute, pickSigner(3)).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
	h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed, evDisputeOpened)
	var source string
	if err := h.db.QueryRow(`SELECT source FROM stripe_inbox WHERE event_id = $1`, paid.ID).Scan(&source); err != nil || source != "replay" {
		t.Errorf("source %q (%v), want replay", source, err)
	}
}

// TestReplayStoredDeliveries: the operator's replay (app.Replayer over the
// PostgreSQL store): a 404'd delivery, once its booking exists, confirms
// it exactly once however often it is replayed; an event of a type ignored
// before is decided under "replay:<id>".
func TestReplayStoredDeliveries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withPostgres())
	ledger := h.store.(*sqlBackend).ledger
	svc := newServiceWith(t, app.Config{Bookings: ledger})
	replayer := app.Replayer{Service: svc, Parse: stripe.ParseDelivery}
	ctx := context.Background()

	b := h.createBooking(bookingRequest(newResource("replay")))
	tb := testBooking(b)
	anonymous := tb
	anonymous.ID = 0
	early := h.buildEvent(stripe.EventPaymentIntentSucceeded, anonymous)
	h.deliver(early, pickSigner(0)).wantError(t, http.StatusNotFound, "booking not found")
	h.deliver(early, pickSigner(1)).wantError(t, http.StatusNotFound, "booking not found")

	stored, err := ledger.StoredDeliveries(ctx, app.DeliveryFilter{Outcome: app.OutcomeUnmatched})
	if err != nil || len(stored) != 1 || stored[0].EventID != early.ID || stored[0].Deliveries != 2 {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	// The booking learns its PaymentIntent (the session completes, through
	// a channel that names the booking).
	if r := replayer.Replay(ctx, stored, true); len(r) != 1 || r[0].Err != nil || r[0].Outcome != "" {
		t.Fatalf("dry run %+v", r)
	}
	h.wantStream(b.ID, evRequested)
	h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, tb), pickSigner(2))
	for range 2 {
		res := replayer.Replay(ctx, stored, false)
		if len(res) != 1 || res[0].Err != nil || res[0].ReplayedAs != early.ID {
			t.Fatalf("replay %+v", res)
		}
	}
	h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed)
	if left, _ := ledger.StoredDeliveries(ctx, app.DeliveryFilter{Outcome: app.OutcomeUnmatched}); len(left) != 0 {
		t.Errorf("still listed after the replay: %+v", left)
	}

	// An ignored type (as if a bug fix taught the ledger about it later):
	// its inbox row holds the id, the replay decides it as replay:<id>.
	ignored := h.buildEvent("charge.dispute.evidence_submitted", tb)
	h.deliver(ignored, pickSigner(3)).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
	list, err := ledger.StoredDeliveries(ctx, app.DeliveryFilter{Outcome: app.OutcomeIgnored, EventID: ignored.ID})
	if err != nil || len(list) != 1 {
		t.Fatalf("ignored %+v, %v", list, err)
	}
	res := replayer.Replay(ctx, list, false)
	if len(res) != 1 || res[0].ReplayedAs != "replay:"+ignored.ID || res[0].Outcome != app.OutcomeIgnored {
		t.Errorf("replay of an ignored type %+v", res)
	}
	if again, _ := ledger.StoredDeliveries(ctx, app.DeliveryFilter{Outcome: app.OutcomeIgnored, EventID: ignored.ID}); len(again) != 0 {
		t.Errorf("listed again after its replay: %+v", again)
	}
}
