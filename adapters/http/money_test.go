package http_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// The whole payment history, end to end over HTTP against PostgreSQL:
// refunds made in Stripe's Dashboard, partial refunds seen through two
// event types in every order, the ledger's own refund failing later,
// disputes, and a dispute that arrives before its booking can be matched.

const (
	evPaymentRefunded      = "PaymentRefunded"
	evPaymentRefundedTotal = "PaymentRefundedTotal"
	evRefundFailed         = "RefundFailed"
	evDisputeOpened        = "DisputeOpened"
	evDisputeClosed        = "DisputeClosed"
)

// paidBooking creates a booking and pays it through
// checkout.session.completed: confirmed and paid, with a charge id for
// the refund and dispute events to name.
func (h *harness) paidBooking(prefix string) (createdBooking, stripe.TestBooking) {
	h.t.Helper()
	b := h.createBooking(bookingRequest(newResource(prefix)))
	tb := testBooking(b)
	tb.ChargeID = "ch_3" + strings.TrimPrefix(tb.PaymentIntentID, "pi_3")
	h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, tb), pickSigner(0)).wantBody(h.t, http.StatusOK, `{"status":"success"}`)
	h.wantStatus(b.ID, "confirmed", "paid")
	return b, tb
}

// dashboard is tb as a refund made in Stripe's Dashboard sees it: no
// booking metadata, so the ledger finds the booking by its PaymentIntent.
func dashboard(tb stripe.TestBooking) stripe.TestBooking {
	tb.ID = 0
	return tb
}

func refundEvent(h *harness, typ string, tb stripe.TestBooking, id string, amount int64, status string) event {
	tb.Refund = stripe.TestRefund{ID: id, Amount: amount, Status: status}
	return h.buildEvent(typ, tb)
}

func chargeRefundedEvent(h *harness, tb stripe.TestBooking, total int64) event {
	tb.AmountRefunded = total
	return h.buildEvent(stripe.EventChargeRefunded, tb)
}

func TestDashboardFullRefund(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withMonitoring())
	b, tb := h.paidBooking("dashboard")
	d := dashboard(tb)
	events := []event{
		refundEvent(h, stripe.EventRefundCreated, d, "re_dash1", defaultAmount, "succeeded"),
		chargeRefundedEvent(h, d, defaultAmount),
		refundEvent(h, stripe.EventRefundUpdated, d, "re_dash1", defaultAmount, "succeeded"),
	}
	for i, ev := range append(events, events...) {
		want := `{"status":"success"}`
		if i >= len(events) {
			want = `{"status":"ignored"}` // redelivered: a duplicate
		}
		h.deliver(ev, pickSigner(i)).wantBody(t, http.StatusOK, want)
	}
	h.wantStatus(b.ID, "confirmed", "refunded")
	row := h.storedRow(b.ID)
	if row.RefundedAmount != defaultAmount {
		t.Errorf("refunded_amount %d, want %d", row.RefundedAmount, defaultAmount)
	}
	if got := h.api(http.MethodGet, "/bookings/"+itoa(b.ID), nil).JSON(t); fmt.Sprint(got["refunded_amount"]) != itoa(defaultAmount) ||
		got["payment_status"] != "refunded" || got["status"] != "confirmed" {
		t.Errorf("GET /bookings/%d: %v", b.ID, got)
	}
	h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed, evPaymentRefunded, evPaymentRefundedTotal)

	summary := h.views()
	refunds, _ := summary["refunds_by_status"].([]any)
	if len(refunds) != 1 || fmt.Sprint(refunds[0]) != fmt.Sprintf("map[amount:%d currency:eur refunds:1 status:succeeded]", defaultAmount) {
		t.Errorf("refunds_by_status %v", refunds)
	}
	money, _ := summary["money_per_day"].([]any)
	if len(money) != 1 || fmt.Sprint(money[0]) != fmt.Sprintf("map[currency:eur day:%s disputed:0 net:0 paid:%d refunded:%d]",
		time.Now().UTC().Format(time.DateOnly), defaultAmount, defaultAmount) {
		t.Errorf("money_per_day %v", money)
	}
	metrics := h.metrics()
	if !strings.Contains(metrics, fmt.Sprintf(`ledger_refunded_amount{currency="eur"} %d`, defaultAmount)) {
		t.Errorf("/metrics has no refunded amount:\n%s", grepLines(metrics, "ledger_refunded"))
	}
}

// TestTwoPartialRefundsInEveryOrder: two partial refunds, each seen through
// refund.updated and charge.refunded, delivered in every order with each
// event redelivered: the booking is partially_refunded once exactly the
// first refund's events are in, refunded with the exact sum at the end.
func TestTwoPartialRefundsInEveryOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withPostgres())
	const first, second = defaultAmount / 3, defaultAmount - defaultAmount/3
	permutations(4, func(order []int) {
		b, tb := h.paidBooking("partial")
		d := dashboard(tb)
		events := []event{
			refundEvent(h, stripe.EventRefundUpdated, d, "re_p1"+itoa(b.ID), first, "succeeded"),
			chargeRefundedEvent(h, d, first),
			refundEvent(h, stripe.EventRefundUpdated, d, "re_p2"+itoa(b.ID), second, "succeeded"),
			chargeRefundedEvent(h, d, defaultAmount),
		}
		delivered := map[int]bool{}
		for i, o := range order {
			for range 2 {
				if r := h.deliver(events[o], pickSigner(i)); r.Status != http.StatusOK {
					t.Fatalf("order %v: %s: %s", order, events[o].Type, r)
				}
			}
			delivered[o] = true
			if len(delivered) == 2 && delivered[0] && delivered[1] {
				if row := h.storedRow(b.ID); row.PaymentStatus != domain.PaymentStatusPartiallyRefunded || row.RefundedAmount != first {
					t.Fatalf("order %v, after the first refund: %s, %d; want partially_refunded, %d", order, row.PaymentStatus, row.RefundedAmount, first)
				}
			}
		}
		row := h.storedRow(b.ID)
		if row.PaymentStatus != domain.PaymentStatusRefunded || row.RefundedAmount != defaultAmount || row.Status != domain.StatusConfirmed {
			t.Fatalf("order %v: %s/%s, refunded %d; want confirmed/refunded, %d", order, row.Status, row.PaymentStatus, row.RefundedAmount, defaultAmount)
		}
		if n := h.countType(b.ID, evPaymentRefunded); n != 2 {
			t.Errorf("order %v: %d PaymentRefunded, want one per refund", order, n)
		}
	})
}

// TestOwnRefundFailsLater: the ledger refunds a payment it could not
// confirm (an availability conflict); Stripe accepts, then reports the
// refund failed: RefundFailed with the refund id and the request's reason,
// payment_status back to paid, refunded_amount back to 0.
func TestOwnRefundFailsLater(t *testing.T) {
	t.Parallel()
	for _, how := range []struct{ typ, status string }{
		{stripe.EventRefundFailed, ""},
		{stripe.EventRefundUpdated, "failed"},
	} {
		t.Run(how.typ, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withPostgres())
			resource := newResource("own-refund")
			winner := h.createBooking(bookingRequest(resource))
			loser := h.createBooking(bookingRequest(resource))
			h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(winner)), pickSigner(0))
			tb := testBooking(loser)
			tb.ChargeID = "ch_3own" + itoa(loser.ID)
			h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, tb), pickSigner(1)).wantBody(t, http.StatusOK, `{"status":"success"}`)
			h.wantStatus(loser.ID, "cancelled", "paid")

			refundID := h.settleRefund(loser.ID, tb)
			h.wantStatus(loser.ID, "cancelled", "refunded")

			// Stripe's own events about it: created, then failed.
			h.deliver(refundEvent(h, stripe.EventRefundCreated, tb, refundID, defaultAmount, "pending"), pickSigner(2)).
				wantBody(t, http.StatusOK, `{"status":"success"}`)
			failed := refundEvent(h, how.typ, tb, refundID, defaultAmount, how.status)
			for i := range 2 {
				h.deliver(failed, pickSigner(i)).wantBody(t, http.StatusOK, []string{`{"status":"success"}`, `{"status":"ignored"}`}[i])
			}
			h.wantStatus(loser.ID, "cancelled", "paid")
			if row := h.storedRow(loser.ID); row.RefundedAmount != 0 {
				t.Errorf("refunded_amount %d after the failure, want 0", row.RefundedAmount)
			}
			if n := h.countType(loser.ID, evRefundFailed); n != 1 {
				t.Fatalf("%d RefundFailed, want 1", n)
			}
			var reason, id, code string
			if err := h.db.QueryRow(`SELECT payload->>'reason', payload->>'refund_id', payload->>'failure_code' FROM ledger_events
				WHERE stream_id = $1 AND event_type = 'RefundFailed'`, loser.ID).Scan(&reason, &id, &code); err != nil {
				t.Fatal(err)
			}
			if reason != "availability_conflict" || id != refundID || code != "expired_or_canceled_card" && code != "failed" {
				t.Errorf("RefundFailed reason %q, refund %q, code %q", reason, id, code)
			}
			// The operators' worklist holds it, with its refund id.
			var rows int
			if err := h.db.QueryRow(`SELECT count(*) FROM refund_failures WHERE booking_id = $1 AND refund_id = $2
				AND reason = 'availability_conflict' AND amount = $3`, loser.ID, refundID, defaultAmount).Scan(&rows); err != nil || rows != 1 {
				t.Errorf("refund_failures rows for %s: %d (%v), want 1", refundID, rows, err)
			}
			if !strings.Contains(h.logs.String(), fmt.Sprintf("Booking %d refund %s failed", loser.ID, refundID)) {
				t.Errorf("no warning line for the failed refund")
			}
		})
	}
}

// settleRefund makes the ledger's pending refund of booking id as the
// refund worker does (app.Refunds against a fake of Stripe's API) and
// returns the refund id Stripe gave.
func (h *harness) settleRefund(id int64, tb stripe.TestBooking) string {
	h.t.Helper()
	ctx := context.Background()
	fake := stripetest.NewServer(h.t)
	fake.AddPayment(tb.PaymentIntentID, defaultAmount, defaultCurrency)
	client, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_money", BaseURL: fake.URL, Timeout: 20 * time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	ledger := h.store.(*sqlBackend).ledger
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer tx.Rollback()
	req := domain.RefundRequested{PaymentIntentID: tb.PaymentIntentID, Amount: defaultAmount, Currency: defaultCurrency,
		Reason: domain.RefundAvailabilityConflict}
	if err := (app.Refunds{Refunder: client}).Settle(ctx, ledger.InTx(tx), id, req, "test:refund"); err != nil {
		h.t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		h.t.Fatal(err)
	}
	var refundID string
	if err := h.db.QueryRow(`SELECT payload->>'refund_id' FROM ledger_events WHERE stream_id = $1 AND event_type = 'RefundIssued'`, id).
		Scan(&refundID); err != nil {
		h.t.Fatalf("no RefundIssued: %v", err)
	}
	return refundID
}

// TestDisputeLifecycle: a chargeback opens (needs_response, with its
// evidence due date), the funds are withdrawn, it is lost; an older
// charge.dispute.updated arriving afterwards changes nothing. The booking
// keeps its stay and payment status; monitoring shows the open dispute
// while it is open, and the money it took.
func TestDisputeLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withMonitoring())
	b, tb := h.paidBooking("dispute")
	due := h.now.Add(10 * 24 * time.Hour).Truncate(time.Second).UTC()
	tb.Dispute = stripe.TestDispute{ID: "dp_life" + itoa(b.ID), DueBy: due, Created: h.now.Add(-time.Hour)}
	dispute := func(typ, status string) event {
		d := tb
		d.Dispute.Status = status
		return h.buildEvent(typ, d)
	}
	h.deliver(dispute(stripe.EventChargeDisputeCreated, "needs_response"), pickSigner(0)).wantBody(t, http.StatusOK, `{"status":"success"}`)
	got := h.api(http.MethodGet, "/bookings/"+itoa(b.ID), nil).JSON(t)
	if got["dispute_status"] != "needs_response" || fmt.Sprint(got["disputed_amount"]) != itoa(defaultAmount) ||
		got["dispute_evidence_due_by"] != due.Format(time.RFC3339) || got["status"] != "confirmed" || got["payment_status"] != "paid" {
		t.Errorf("after charge.dispute.created: %v", got)
	}
	open, _ := h.views()["open_disputes"].([]any)
	if len(open) != 1 || !strings.Contains(fmt.Sprint(open[0]), "status:needs_response") ||
		!strings.Contains(fmt.Sprint(open[0]), "evidence_due_by:"+due.Format(time.RFC3339)) {
		t.Errorf("open_disputes %v", open)
	}
	if n := strings.Count(h.logs.String(), fmt.Sprintf(`"msg":"Booking %d disputed"`, b.ID)); n != 1 {
		t.Errorf("%d warning lines for the dispute, want 1", n)
	}
	if m := h.metrics(); !strings.Contains(m, `ledger_open_disputes{status="needs_response"} 1`) {
		t.Errorf("/metrics:\n%s", grepLines(m, "ledger_open_disputes"))
	}

	olderUpdate := dispute(stripe.EventChargeDisputeUpdated, "under_review")
	for i, ev := range []event{
		dispute(stripe.EventChargeDisputeFundsWithdrawn, "needs_response"),
		dispute(stripe.EventChargeDisputeClosed, "lost"),
	} {
		h.deliver(ev, pickSigner(i)).wantBody(t, http.StatusOK, `{"status":"success"}`)
	}
	// Stripe's retry of the older update, after the close.
	h.deliver(olderUpdate, pickSigner(2)).wantBody(t, http.StatusOK, `{"status":"success"}`)
	got = h.api(http.MethodGet, "/bookings/"+itoa(b.ID), nil).JSON(t)
	if got["dispute_status"] != "lost" || got["status"] != "confirmed" || got["payment_status"] != "paid" {
		t.Errorf("after the close and the late update: %v", got)
	}
	h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed, evDisputeOpened, "DisputeFundsWithdrawn", evDisputeClosed)
	summary := h.views()
	if open, _ := summary["open_disputes"].([]any); len(open) != 0 {
		t.Errorf("open_disputes after the close: %v", open)
	}
	money, _ := summary["money_per_day"].([]any)
	if len(money) != 1 || !strings.Contains(fmt.Sprint(money[0]), fmt.Sprintf("disputed:%d net:0", defaultAmount)) {
		t.Errorf("money_per_day %v", money)
	}
}

// TestUnmatchedDisputeMatchedOnRetry: a dispute names a PaymentIntent no
// booking has yet: 404, kept as an unmatched delivery; once the payment is
// recorded, Stripe's retry of the same event is decided.
func TestUnmatchedDisputeMatchedOnRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withPostgres())
	b := h.createBooking(bookingRequest(newResource("early-dispute")))
	tb := testBooking(b)
	tb.ChargeID = "ch_3early" + itoa(b.ID)
	ev := h.buildEvent(stripe.EventChargeDisputeCreated, tb)
	h.deliver(ev, pickSigner(0)).wantError(t, http.StatusNotFound, "booking not found")
	if got := h.deliveryOutcomes(ev.ID); len(got) != 1 || got[0] != "unmatched" {
		t.Errorf("deliveries %v, want one unmatched", got)
	}
	h.wantStream(b.ID, evRequested)
	h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, tb), pickSigner(1)).wantBody(t, http.StatusOK, `{"status":"success"}`)
	h.deliver(ev, pickSigner(2)).wantBody(t, http.StatusOK, `{"status":"success"}`)
	h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed, evDisputeOpened)
	if got := h.inboxOutcome(ev.ID); got != "processed" {
		t.Errorf("inbox outcome %q", got)
	}
}

// TestMoneyEventsRejectBadObjects: a refund or dispute event whose object
// the ledger cannot trust is answered 400 and writes nothing.
func TestMoneyEventsRejectBadObjects(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withPostgres())
	b, tb := h.paidBooking("bad-money")
	before := h.counts()
	tests := []struct {
		name string
		ev   event
		msg  string
	}{
		{"refund with a negative amount", h.buildEvent(stripe.EventRefundCreated, tb, setField("amount", -1)), "data.object.amount: negative"},
		{"refund with an unknown status", h.buildEvent(stripe.EventRefundUpdated, tb, setField("status", "done")), "status"},
		{"charge refunded below zero", h.buildEvent(stripe.EventChargeRefunded, tb, setField("amount_refunded", -5)), "data.object.amount_refunded: negative"},
		{"dispute with a number for its charge", h.buildEvent(stripe.EventChargeDisputeCreated, tb, setField("charge", 5)), "data.object.charge"},
		{"dispute with an unknown status", h.buildEvent(stripe.EventChargeDisputeCreated, tb, setField("status", "open")), "status"},
		{"a dispute object in a refund event", h.buildEvent(stripe.EventRefundCreated, tb, setField("object", "dispute")), "data.object.object"},
	}
	for i, tt := range tests {
		r := h.deliver(tt.ev, pickSigner(i))
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), tt.msg) {
			t.Errorf("%s: %s, want 400 naming %s", tt.name, r, tt.msg)
		}
	}
	if after := h.counts(); after != before {
		t.Errorf("rejected events wrote: %+v → %+v", before, after)
	}
	h.wantStatus(b.ID, "confirmed", "paid")
}

// views reads the monitoring views of /monitoring/summary.
func (h *harness) views() map[string]any {
	h.t.Helper()
	r := h.api(http.MethodGet, "/monitoring/summary", nil)
	views, ok := r.JSON(h.t)["views"].(map[string]any)
	if r.Status != http.StatusOK || !ok {
		h.t.Fatalf("/monitoring/summary: %s", r)
	}
	return views
}

// metrics scrapes /metrics.
func (h *harness) metrics() string {
	h.t.Helper()
	r := h.api(http.MethodGet, "/metrics", nil)
	if r.Status != http.StatusOK {
		h.t.Fatalf("/metrics: %s", r)
	}
	return string(r.Body)
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// permutations calls f with every order of n indexes.
func permutations(n int, f func([]int)) {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	var rec func(int)
	rec = func(k int) {
		if k == n {
			f(append([]int(nil), idx...))
			return
		}
		for i := k; i < n; i++ {
			idx[k], idx[i] = idx[i], idx[k]
			rec(k + 1)
			idx[k], idx[i] = idx[i], idx[k]
		}
	}
	rec(0)
}

// TestMoneyHistoryInAuditViews: the auditor's history (JSON, as_of) and UI
// page of a refunded and disputed booking show the new events and
// columns.
func TestMoneyHistoryInAuditViews(t *testing.T) {
	t.Parallel()
	h := newAuditHarness(t)
	b, tb := h.paidBooking("audit-money")
	d := dashboard(tb)
	h.deliver(refundEvent(h, stripe.EventRefundCreated, d, "re_audit"+itoa(b.ID), 1000, "succeeded"), pickSigner(0)).
		wantBody(t, http.StatusOK, `{"status":"success"}`)
	beforeDispute := h.history("/bookings/" + itoa(b.ID) + "/history").Events
	due := h.now.Add(7 * 24 * time.Hour).UTC()
	tb.Dispute = stripe.TestDispute{ID: "dp_audit" + itoa(b.ID), Status: "needs_response", DueBy: due}
	h.deliver(h.buildEvent(stripe.EventChargeDisputeCreated, tb), pickSigner(1)).wantBody(t, http.StatusOK, `{"status":"success"}`)

	hist := h.history("/bookings/" + itoa(b.ID) + "/history")
	var types []string
	for _, e := range hist.Events {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, " "); got != "BookingRequested PaymentSucceeded BookingConfirmed PaymentRefunded DisputeOpened" {
		t.Errorf("history events %s", got)
	}
	if hist.Booking.PaymentStatus != domain.PaymentStatusPartiallyRefunded || hist.Booking.RefundedAmount != 1000 ||
		hist.Booking.DisputeStatus == nil || *hist.Booking.DisputeStatus != domain.DisputeNeedsResponse {
		t.Errorf("history booking %+v", hist.Booking)
	}
	// As of the refund, before the dispute.
	asOf := beforeDispute[len(beforeDispute)-1].RecordedAt.Format(time.RFC3339Nano)
	past := h.history("/bookings/" + itoa(b.ID) + "/history?as_of=" + asOf)
	if past.Booking.RefundedAmount != 1000 || past.Booking.DisputeStatus != nil || len(past.Events) != 4 {
		t.Errorf("as of the refund: %+v, %d events", past.Booking, len(past.Events))
	}

	auth := http.Header{"Authorization": {"Bearer " + testToken}}
	r := h.do(http.MethodGet, "/ui/bookings/"+itoa(b.ID), auth, nil)
	body := string(r.Body)
	for _, want := range []string{
		`<dd id="status">confirmed / partially_refunded</dd>`,
		`<dd id="refunded">1000 eur`,
		`<dd id="dispute">needs_response, 36000 eur, evidence due ` + due.Format("2006-01-02"),
		`data-type="PaymentRefunded"`, `data-type="DisputeOpened"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("UI page lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("%s", body)
	}
}
