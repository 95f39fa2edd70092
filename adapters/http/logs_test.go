package http_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// findLog returns the log lines whose message is msg.
func findLog(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// wantAttrs checks that a log line carries event_type, booking_id and
// outcome with the given values.
func wantAttrs(t *testing.T, line map[string]any, eventType string, bookingID int64, outcome string) {
	t.Helper()
	if got := line["event_type"]; got != eventType {
		t.Errorf("event_type %v, want %s in %v", got, eventType, line)
	}
	switch got := line["booking_id"].(type) {
	case float64:
		if int64(got) != bookingID {
			t.Errorf("booking_id %v, want %d in %v", got, bookingID, line)
		}
	case string:
		if got != itoa(bookingID) {
			t.Errorf("booking_id %v, want %d in %v", got, bookingID, line)
		}
	default:
		t.Errorf("booking_id %v (%T), want %d in %v", got, got, bookingID, line)
	}
	if got := line["outcome"]; got != outcome {
		t.Errorf("outcome %v, want %s in %v", got, outcome, line)
	}
}

// TestWebhookLogs: the messages existing alerts match on, with their
// attributes, and no secret or signature anywhere in the log.
func TestWebhookLogs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	resource := newResource("logs")
	winner := h.newBooking(resource, defaultCheckIn, defaultCheckOut)
	loser := h.newBooking(resource, defaultCheckIn, defaultCheckOut)

	var signatures []string
	post := func(ev event, s signer, secret string) response {
		sig := s.sign(ev.Body, secret, h.now)
		signatures = append(signatures, sig)
		return h.postWebhook(ev.Body, sig)
	}
	won := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(winner))
	post(won, stripeGoSigner, testSecret).wantBody(t, http.StatusOK, `{"status":"success"}`)
	lost := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(loser))
	post(lost, hmacSigner, testSecret).wantBody(t, http.StatusOK, `{"status":"success"}`)
	h.wantStatus(winner.ID, "confirmed", "paid")
	h.wantStatus(loser.ID, "cancelled", "paid")
	// Rejected, duplicate, unmatched and ignored deliveries log too; none
	// of them may log what it was signed with.
	post(won, hmacSigner, otherSecret).wantError(t, http.StatusBadRequest)
	post(won, stripeGoSigner, testSecret).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
	unmatched := h.buildEvent(stripe.EventPaymentIntentSucceeded, stripe.TestBooking{Amount: 1, Currency: "eur"})
	post(unmatched, hmacSigner, testSecret).wantBody(t, http.StatusNotFound, `{"error":"booking not found"}`)
	post(h.buildEvent("customer.created", testBooking(winner)), stripeGoSigner, testSecret).
		wantBody(t, http.StatusOK, `{"status":"ignored"}`)
	stale := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(winner))
	staleSig := stripeGoSigner.sign(stale.Body, testSecret, h.now.Add(-time.Hour))
	signatures = append(signatures, staleSig)
	h.postWebhook(stale.Body, staleSig).wantError(t, http.StatusBadRequest)

	lines := h.logs.Lines(t)

	t.Run("Processing webhook event", func(t *testing.T) {
		got := findLog(lines, "Processing webhook event: checkout.session.completed")
		if len(got) == 0 {
			t.Fatalf("no line %q in\n%s", "Processing webhook event: checkout.session.completed", h.logs.String())
		}
		for _, l := range got {
			if l["event_type"] != stripe.EventCheckoutSessionCompleted {
				t.Errorf("event_type %v in %v", l["event_type"], l)
			}
		}
		if len(findLog(lines, "Processing webhook event: payment_intent.succeeded")) == 0 {
			t.Errorf("no processing line for payment_intent.succeeded")
		}
		// The design: each of these lines has event type, booking id and
		// outcome attributes.
		var first map[string]any
		for _, l := range got {
			if l["event_id"] == won.ID {
				first = l
				break
			}
		}
		if first == nil {
			t.Fatalf("no processing line with event_id %s", won.ID)
		}
		wantAttrs(t, first, stripe.EventCheckoutSessionCompleted, winner.ID, "processed")
	})

	t.Run("confirmed successfully", func(t *testing.T) {
		msg := "Booking " + itoa(winner.ID) + " confirmed successfully via webhook"
		got := findLog(lines, msg)
		if len(got) != 1 {
			t.Fatalf("%d lines %q, want 1, in\n%s", len(got), msg, h.logs.String())
		}
		wantAttrs(t, got[0], stripe.EventCheckoutSessionCompleted, winner.ID, "processed")
		if got[0]["event_id"] != won.ID {
			t.Errorf("event_id %v, want %s", got[0]["event_id"], won.ID)
		}
		if n := len(findLog(lines, "Booking "+itoa(loser.ID)+" confirmed successfully via webhook")); n != 0 {
			t.Errorf("the cancelled booking is logged as confirmed")
		}
	})

	t.Run("cancelled due to availability conflict", func(t *testing.T) {
		msg := "Booking " + itoa(loser.ID) + " cancelled due to availability conflict"
		got := findLog(lines, msg)
		if len(got) != 1 {
			t.Fatalf("%d lines %q, want 1, in\n%s", len(got), msg, h.logs.String())
		}
		wantAttrs(t, got[0], stripe.EventCheckoutSessionCompleted, loser.ID, "processed")
	})

	t.Run("no secret or signature in the log", func(t *testing.T) {
		logs := h.logs.String()
		for _, secret := range []string{testSecret, otherSecret, strings.TrimPrefix(testSecret, "whsec_")} {
			if strings.Contains(logs, secret) {
				t.Errorf("the log contains a webhook secret")
			}
		}
		for _, sig := range signatures {
			_, v1, _ := strings.Cut(sig, ",v1=")
			if strings.Contains(logs, sig) || strings.Contains(logs, v1) {
				t.Errorf("the log contains the Stripe-Signature %q", sig)
			}
		}
		// And the log is JSON throughout (Lines fails otherwise), one
		// object per line with a level and a message.
		for _, l := range lines {
			if _, ok := l["level"]; !ok {
				t.Errorf("line without level: %v", l)
			}
			if m, ok := l["msg"].(string); !ok || m == "" {
				b, _ := json.Marshal(l)
				t.Errorf("line without msg: %s", b)
			}
		}
	})
}
