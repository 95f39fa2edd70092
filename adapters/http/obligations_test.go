package http_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/worklist"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

type obligationsBody struct {
	Obligations []app.Obligation `json:"obligations"`
}

func (h *harness) obligations() []app.Obligation {
	h.t.Helper()
	var body obligationsBody
	r := h.api(http.MethodGet, "/obligations", nil)
	if r.Status != http.StatusOK {
		h.t.Fatalf("GET /obligations: %s", r)
	}
	r.decode(h.t, &body)
	return body.Obligations
}

// openObligation is the open obligation of kind about booking (0: any),
// and false when there is none.
func (h *harness) openObligation(kind string, booking int64) (app.Obligation, bool) {
	h.t.Helper()
	for _, ob := range h.obligations() {
		if ob.Kind == kind && (booking == 0 || ob.BookingID != nil && *ob.BookingID == booking) {
			return ob, true
		}
	}
	return app.Obligation{}, false
}

// TestObligationsOpenAndCloseWithTheFacts: each kind of obligation opens
// when its fact is recorded and closes by itself when the fact that settles
// it arrives, end to end over HTTP against PostgreSQL.
func TestObligationsOpenAndCloseWithTheFacts(t *testing.T) {
	t.Parallel()
	// The worklist's clock is two hours ahead: unmatched deliveries are
	// old enough to count.
	h := newHarness(t, withMonitoring(), withObligations(worklist.Obligations{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}))
	if obs := h.obligations(); len(obs) != 0 {
		t.Fatalf("a new ledger has obligations: %+v", obs)
	}

	t.Run(app.ObligationRefundedOutsideLedger, func(t *testing.T) {
		h := h.with(t)
		b, tb := h.paidBooking("outside")
		h.deliver(refundEvent(h, stripe.EventRefundCreated, dashboard(tb), "re_out"+itoa(b.ID), defaultAmount, "succeeded"), pickSigner(0))
		ob, ok := h.openObligation(app.ObligationRefundedOutsideLedger, b.ID)
		if !ok || !strings.Contains(ob.Detail, "refunded in Stripe") || ob.SuggestedAction == "" {
			t.Fatalf("not open: %+v", h.obligations())
		}
		if m := h.metrics(); !strings.Contains(m, `ledger_obligations_open{kind="refunded_outside_ledger"} 1`) ||
			!strings.Contains(m, `ledger_obligations_open{kind="reconcile_overdue"} 0`) {
			t.Errorf("/metrics:\n%s", grepLines(m, "ledger_obligation"))
		}
		h.api(http.MethodPost, "/bookings/"+itoa(b.ID)+"/cancel", `{"refund_amount": 0}`)
		if _, ok := h.openObligation(app.ObligationRefundedOutsideLedger, b.ID); ok {
			t.Errorf("still open after the cancellation")
		}
	})

	t.Run(app.ObligationDisputeResponseDue, func(t *testing.T) {
		h := h.with(t)
		b, tb := h.paidBooking("due")
		due := h.now.Add(5 * 24 * time.Hour).UTC()
		tb.Dispute = stripe.TestDispute{ID: "dp_due" + itoa(b.ID), Status: "needs_response", DueBy: due}
		h.deliver(h.buildEvent(stripe.EventChargeDisputeCreated, tb), pickSigner(0))
		ob, ok := h.openObligation(app.ObligationDisputeResponseDue, b.ID)
		if !ok || ob.DueBy == nil || !ob.DueBy.Equal(due) {
			t.Fatalf("not open with its due date: %+v", h.obligations())
		}
		tb.Dispute.Status = "under_review"
		h.deliver(h.buildEvent(stripe.EventChargeDisputeUpdated, tb), pickSigner(1))
		if _, ok := h.openObligation(app.ObligationDisputeResponseDue, b.ID); ok {
			t.Errorf("still open once the evidence is in")
		}
	})

	t.Run(app.ObligationAmountMismatch, func(t *testing.T) {
		h := h.with(t)
		b := h.createBooking(bookingRequest(newResource("mismatch")))
		tb := testBooking(b)
		wrong := tb
		wrong.Amount, wrong.PaymentIntentID = 100, stripe.NewPaymentIntentID()
		h.deliver(h.buildEvent(stripe.EventPaymentIntentSucceeded, wrong), pickSigner(0))
		if ob, ok := h.openObligation(app.ObligationAmountMismatch, b.ID); !ok || !strings.Contains(ob.Detail, "received 100 eur") {
			t.Fatalf("not open: %+v", h.obligations())
		}
		h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, tb), pickSigner(1))
		if _, ok := h.openObligation(app.ObligationAmountMismatch, b.ID); ok {
			t.Errorf("still open once the booking is paid")
		}
	})

	t.Run(app.ObligationUnmatchedDelivery, func(t *testing.T) {
		h := h.with(t)
		b := h.createBooking(bookingRequest(newResource("unmatched")))
		tb := testBooking(b)
		anonymous := tb
		anonymous.ID = 0
		early := h.buildEvent(stripe.EventPaymentIntentSucceeded, anonymous)
		h.deliver(early, pickSigner(0)).wantError(t, http.StatusNotFound, "booking not found")
		if _, ok := h.openObligation(app.ObligationUnmatchedDelivery, 0); !ok {
			t.Fatalf("not open: %+v", h.obligations())
		}
		h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, tb), pickSigner(1))
		h.deliver(early, pickSigner(2)) // Stripe's retry, now matched
		for _, ob := range h.obligations() {
			if ob.ID == app.ObligationUnmatchedDelivery+":"+early.ID {
				t.Errorf("still open once matched: %+v", ob)
			}
		}
	})

	t.Run(app.ObligationRefundFailed, func(t *testing.T) {
		h := h.with(t)
		resource := newResource("refund-failed")
		winner := h.createBooking(bookingRequest(resource))
		loser := h.createBooking(bookingRequest(resource))
		h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(winner)), pickSigner(0))
		tb := testBooking(loser)
		tb.ChargeID = "ch_3rf" + itoa(loser.ID)
		h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, tb), pickSigner(1))
		refundID := h.settleRefund(loser.ID, tb)
		h.deliver(refundEvent(h, stripe.EventRefundFailed, tb, refundID, defaultAmount, ""), pickSigner(2))
		if ob, ok := h.openObligation(app.ObligationRefundFailed, loser.ID); !ok || !strings.Contains(ob.Detail, refundID) {
			t.Fatalf("not open: %+v", h.obligations())
		}
		// The operator refunds again in the Dashboard; Stripe reports it.
		h.deliver(refundEvent(h, stripe.EventRefundUpdated, tb, "re_again"+itoa(loser.ID), defaultAmount, "succeeded"), pickSigner(3))
		if _, ok := h.openObligation(app.ObligationRefundFailed, loser.ID); ok {
			t.Errorf("still open once a refund succeeded")
		}
	})

	t.Run(app.ObligationDeadLetter+" and acknowledgements", func(t *testing.T) {
		h := h.with(t)
		// As the monitoring subscriber records an event it cannot apply.
		if _, err := h.db.Exec(`INSERT INTO projection_dead_letters (projection, projection_version, position, event_id, stream_id,
			event_type, payload, metadata, error) VALUES ('monitoring', $1, 999999, 'e1', NULL, 'Nonsense', '{}', '{}', 'unknown event Nonsense')`,
			monitoringVersion()); err != nil {
			t.Fatal(err)
		}
		ob, ok := h.openObligation(app.ObligationDeadLetter, 0)
		if !ok || !strings.Contains(ob.Detail, "unknown event Nonsense") {
			t.Fatalf("not open: %+v", h.obligations())
		}
		path := "/obligations/" + ob.ID + "/ack"
		h.sendsInvalidRequests("acknowledgements without a reason or with unknown fields")
		h.api(http.MethodPost, path, `{"reason": ""}`).wantError(t, http.StatusBadRequest, "reason")
		h.api(http.MethodPost, path, `{"reason": "a test row", "by": "me"}`).wantError(t, http.StatusBadRequest, "unknown field")
		h.api(http.MethodPost, path, `{"reason": "a test row"}`).wantBody(t, http.StatusOK, `{"acknowledged":"`+ob.ID+`"}`)
		if _, ok := h.openObligation(app.ObligationDeadLetter, 0); ok {
			t.Errorf("still open once acknowledged")
		}
		h.api(http.MethodPost, path, `{"reason": "again"}`).wantError(t, http.StatusNotFound, "no open obligation")
		h.api(http.MethodPost, "/obligations/nothing:1/ack", `{"reason": "x"}`).wantError(t, http.StatusNotFound, "no open obligation")
		var by, reason string
		if err := h.db.QueryRow(`SELECT acked_by, reason FROM obligation_acks WHERE obligation_id = $1`, ob.ID).Scan(&by, &reason); err != nil ||
			!strings.HasPrefix(by, "token:") || reason != "a test row" {
			t.Errorf("ack row %q %q (%v)", by, reason, err)
		}
	})
}

// TestReconcileOverdue: with reconciliation scheduled, the obligation opens
// twice the period after the last successful run (or the start) and closes
// with the next success.
func TestReconcileOverdue(t *testing.T) {
	t.Parallel()
	start := time.Now().Add(-3 * time.Hour)
	h := newHarness(t, withObligations(worklist.Obligations{ReconcileEvery: time.Hour, Since: start}))
	ob, ok := h.openObligation(app.ObligationReconcileOverdue, 0)
	if !ok || !strings.Contains(ob.Detail, "no reconciliation with Stripe ever succeeded") || !ob.OpenedAt.Equal(start.Add(2*time.Hour)) {
		t.Fatalf("not open at %s: %v %+v", start.Add(2*time.Hour), ok, ob)
	}
	if _, err := h.db.Exec(`INSERT INTO reconcile_runs (started_at, finished_at, since, until_, seen, ingested, unmatched, failed, ok)
		VALUES (now(), now(), now() - interval '1 hour', now(), 0, 0, 0, 0, false)`); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.openObligation(app.ObligationReconcileOverdue, 0); !ok {
		t.Fatalf("a failed run closed it")
	}
	if _, err := h.db.Exec(`INSERT INTO reconcile_runs (started_at, finished_at, since, until_, seen, ingested, unmatched, failed, ok)
		VALUES (now(), now(), now() - interval '1 hour', now(), 3, 1, 0, 0, true)`); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.openObligation(app.ObligationReconcileOverdue, 0); ok {
		t.Errorf("still open after a successful run")
	}
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func monitoringVersion() int { return projections.MonitoringVersion }
