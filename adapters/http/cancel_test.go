package http_test

import (
	"net/http"
	"testing"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// TestCancelBooking: the operator's cancellation, on both stores: a paid
// booking is cancelled with a refund of everything by default (a
// RefundRequested the refund worker issues), or of a part, or none; the
// dates are free again; every refusal writes nothing.
func TestCancelBooking(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		h := newHarness(t, opts...)
		paid := func() createdBooking {
			b := h.createBooking(bookingRequest(newResource("cancel")))
			h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b)), pickSigner(0)).wantBody(t, http.StatusOK, `{"status":"success"}`)
			return b
		}
		tests := []struct {
			name       string
			body       string
			wantStream []string
			wantRefund string // the RefundRequested amount, "" for none
		}{
			{"refund everything by default", `{"reason": "guest asked"}`, []string{evRequested, evSucceeded, evConfirmed, evCancelled, evRefund}, "36000"},
			{"a partial refund", `{"reason": "half", "refund_amount": 1000}`, []string{evRequested, evSucceeded, evConfirmed, evCancelled, evRefund}, "1000"},
			{"no refund", `{"refund_amount": 0}`, []string{evRequested, evSucceeded, evConfirmed, evCancelled}, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := h.with(t)
				b := paid()
				r := h.api(http.MethodPost, "/bookings/"+itoa(b.ID)+"/cancel", tt.body)
				if r.Status != http.StatusOK {
					t.Fatalf("cancel: %s", r)
				}
				if got := r.JSON(t); got["status"] != "cancelled" || got["id"] == nil {
					t.Errorf("answer %v", got)
				}
				h.wantStream(b.ID, tt.wantStream...)
				h.wantStatus(b.ID, "cancelled", "paid")
				if h.db != nil && tt.wantRefund != "" {
					var amount, reason string
					if err := h.db.QueryRow(`SELECT payload->>'amount', payload->>'reason' FROM ledger_events
						WHERE stream_id = $1 AND event_type = 'RefundRequested'`, b.ID).Scan(&amount, &reason); err != nil ||
						amount != tt.wantRefund || reason != "cancellation" {
						t.Errorf("RefundRequested %s %s (%v), want %s cancellation", amount, reason, err, tt.wantRefund)
					}
				}
				// The dates are free: another booking of them can be paid
				// and confirmed.
				req := bookingRequest(b.ResourceID)
				other := h.createBooking(req)
				h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(other)), pickSigner(1)).wantBody(t, http.StatusOK, `{"status":"success"}`)
				h.wantStatus(other.ID, "confirmed", "paid")
				// Cancelling again is refused, and writes nothing.
				h.api(http.MethodPost, "/bookings/"+itoa(b.ID)+"/cancel", `{}`).wantError(t, http.StatusConflict, "already cancelled")
				h.wantStream(b.ID, tt.wantStream...)
			})
		}
		t.Run("refusals write nothing", func(t *testing.T) {
			h := h.with(t)
			h.sendsInvalidRequests("refused cancellations: bad bodies, ids, methods, no token")
			b := paid()
			for _, c := range []struct {
				body   string
				status int
				msg    string
			}{
				{`{"refund_amount": 36001}`, http.StatusUnprocessableEntity, "more than the 36000 eur refundable"},
				{`{"refund_amount": -1}`, http.StatusBadRequest, "refund_amount"},
				{`{"refund_amount": "all"}`, http.StatusBadRequest, "refund_amount"},
				{`{"why": "x"}`, http.StatusBadRequest, "unknown field"},
				{`{"reason": "a\u0000b"}`, http.StatusBadRequest, "reason"},
				{`{} {}`, http.StatusBadRequest, "data after the object"},
			} {
				h.api(http.MethodPost, "/bookings/"+itoa(b.ID)+"/cancel", c.body).wantError(t, c.status, c.msg)
			}
			h.api(http.MethodPost, "/bookings/999999/cancel", `{}`).wantError(t, http.StatusNotFound, "not found")
			h.api(http.MethodPost, "/bookings/x/cancel", `{}`).wantError(t, http.StatusBadRequest, "id")
			if r := h.api(http.MethodGet, "/bookings/"+itoa(b.ID)+"/cancel", nil); r.Status != http.StatusMethodNotAllowed {
				t.Errorf("GET: %s", r)
			}
			if r := h.do(http.MethodPost, "/bookings/"+itoa(b.ID)+"/cancel", nil, []byte(`{}`)); r.Status != http.StatusUnauthorized {
				t.Errorf("without the token: %s", r)
			}
			h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed)
		})
	})
}
