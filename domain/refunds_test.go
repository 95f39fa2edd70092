package domain

import (
	"fmt"
	"testing"
	"time"
)

// fact is one delivery's decision on a booking.
type fact struct {
	name   string
	decide func(*Booking) ([]Event, error)
}

func refundFact(eventType, id string, amount int64, status RefundStatus) fact {
	return fact{fmt.Sprintf("%s %s %s", eventType, id, status), func(b *Booking) ([]Event, error) {
		return DecideRefund(b, Refund{ID: id, ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: amount, Currency: "eur",
			Status: status, StripeEventType: eventType})
	}}
}

func chargeRefundedFact(total int64) fact {
	return fact{fmt.Sprintf("charge.refunded %d", total), func(b *Booking) ([]Event, error) {
		return DecideChargeRefunded(b, ChargeRefund{ChargeID: "ch_1", PaymentIntentID: "pi_1", AmountRefunded: total,
			Currency: "eur", StripeEventType: "charge.refunded"})
	}}
}

var disputeCreated = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
var disputeDue = time.Date(2026, 12, 20, 23, 59, 59, 0, time.UTC)

func disputeFact(f DisputeFact, eventType string, status DisputeStatus) fact {
	return fact{eventType + " " + string(status), func(b *Booking) ([]Event, error) {
		return DecideDispute(b, f, Dispute{ID: "dp_1", ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: 36000,
			Currency: "eur", Status: status, Reason: "fraudulent", EvidenceDueBy: disputeDue, Created: disputeCreated,
			StripeEventType: eventType})
	}}
}

// paidConfirmed is booking 7 paid with pi_1 and confirmed.
func paidConfirmed(t *testing.T) *Booking {
	b := mustBooking(t, nil)
	mustApply(t, b, succeededFrom(sessionCompleted), confirmedEv)
	return b
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

// deliver decides and applies each fact in order, each delivered twice in a
// row (a redelivery) and all of them again at the end (late redeliveries),
// and returns every event recorded.
func deliver(t *testing.T, b *Booking, facts []fact) []Event {
	t.Helper()
	var all []Event
	run := func(f fact) {
		events, err := f.decide(b)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		mustApply(t, b, events...)
		all = append(all, events...)
	}
	for _, f := range facts {
		run(f)
		run(f)
	}
	for i := len(facts) - 1; i >= 0; i-- {
		run(facts[i])
	}
	return all
}

// refundedChangeSum is what the monitoring views add up for a stream.
func refundedChangeSum(events []Event) int64 {
	var sum int64
	for _, e := range events {
		switch ev := e.(type) {
		case PaymentRefunded:
			sum += ev.RefundedChange
		case PaymentRefundedTotal:
			sum += ev.RefundedChange
		case RefundFailed:
			sum += ev.RefundedChange
		case RefundIssued:
			sum += *ev.RefundedChange
		}
	}
	return sum
}

// TestRefundFamiliesInEveryOrder delivers each family of refund reports in
// every order, with redeliveries, and expects the same money whatever the
// order: each refund counted once, a failure taken off.
func TestRefundFamiliesInEveryOrder(t *testing.T) {
	tests := []struct {
		name         string
		setup        func(*testing.T) *Booking
		facts        []fact
		wantRefunded int64
		wantPayment  PaymentStatus
		wantStatus   Status
		wantFailed   int // RefundFailed events
	}{
		{"Dashboard full refund", paidConfirmed, []fact{
			refundFact("refund.created", "re_1", 36000, RefundStatusSucceeded),
			chargeRefundedFact(36000),
			refundFact("refund.updated", "re_1", 36000, RefundStatusSucceeded),
		}, 36000, PaymentStatusRefunded, StatusConfirmed, 0},
		{"two partial refunds, each seen twice", paidConfirmed, []fact{
			refundFact("refund.updated", "re_1", 10000, RefundStatusSucceeded),
			chargeRefundedFact(10000),
			refundFact("refund.updated", "re_2", 26000, RefundStatusSucceeded),
			chargeRefundedFact(36000),
		}, 36000, PaymentStatusRefunded, StatusConfirmed, 0},
		{"one partial refund pending then succeeded", paidConfirmed, []fact{
			refundFact("refund.created", "re_1", 10000, RefundStatusPending),
			refundFact("charge.refund.updated", "re_1", 10000, RefundStatusSucceeded),
			chargeRefundedFact(10000),
		}, 10000, PaymentStatusPartiallyRefunded, StatusConfirmed, 0},
		{"a refund that fails after it succeeded is taken off", paidConfirmed, []fact{
			refundFact("refund.created", "re_1", 10000, RefundStatusSucceeded),
			chargeRefundedFact(10000),
			refundFact("refund.failed", "re_1", 10000, RefundStatusFailed),
			refundFact("refund.updated", "re_1", 10000, RefundStatusFailed),
		}, 0, PaymentStatusPaid, StatusConfirmed, 1},
		{"one of two partial refunds fails", paidConfirmed, []fact{
			refundFact("refund.updated", "re_1", 10000, RefundStatusSucceeded),
			refundFact("refund.updated", "re_2", 20000, RefundStatusSucceeded),
			chargeRefundedFact(30000),
			refundFact("refund.updated", "re_2", 20000, RefundStatusCanceled),
		}, 10000, PaymentStatusPartiallyRefunded, StatusConfirmed, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			permutations(len(tt.facts), func(order []int) {
				b := tt.setup(t)
				facts := make([]fact, len(order))
				for i, o := range order {
					facts[i] = tt.facts[o]
				}
				events := deliver(t, b, facts)
				failed := 0
				for _, e := range events {
					if _, ok := e.(RefundFailed); ok {
						failed++
					}
				}
				if b.RefundedAmount() != tt.wantRefunded || b.PaymentStatus() != tt.wantPayment ||
					b.Status() != tt.wantStatus || failed != tt.wantFailed {
					t.Fatalf("order %v: refunded %d, %s, %s, %d failures; want %d, %s, %s, %d",
						order, b.RefundedAmount(), b.PaymentStatus(), b.Status(), failed,
						tt.wantRefunded, tt.wantPayment, tt.wantStatus, tt.wantFailed)
				}
				if sum := refundedChangeSum(events); sum != b.RefundedAmount() {
					t.Fatalf("order %v: the events' refunded_change add up to %d, the booking says %d", order, sum, b.RefundedAmount())
				}
			})
		})
	}
}

// TestOwnRefundFailingLater: the ledger's refund of a conflict, accepted by
// Stripe, then failed: recorded as RefundFailed with the request's reason,
// the payment status goes back, the request stays settled.
func TestOwnRefundFailingLater(t *testing.T) {
	taken := Stay{BookingID: 3, Range: mustRange(t, "2027-01-12", "2027-01-15")}
	for _, webhookFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("webhook before the refund call's answer: %v", webhookFirst), func(t *testing.T) {
			b := mustBooking(t, nil)
			events, err := DecidePaymentSucceeded(b, sessionCompleted, []Stay{taken})
			if err != nil {
				t.Fatal(err)
			}
			mustApply(t, b, events...)
			issue := func() {
				events, err := DecideRefundIssued(b, RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"})
				if err != nil {
					t.Fatal(err)
				}
				mustApply(t, b, events...)
			}
			var all []Event
			if !webhookFirst {
				issue()
			}
			all = append(all, deliver(t, b, []fact{refundFact("refund.created", "re_1", 36000, RefundStatusPending)})...)
			if b.PaymentStatus() != PaymentStatusRefunded || b.RefundedAmount() != 36000 {
				t.Fatalf("after the refund: %s, %d", b.PaymentStatus(), b.RefundedAmount())
			}
			if webhookFirst {
				issue()
			}
			if len(b.PendingRefunds()) != 0 {
				t.Fatalf("PendingRefunds() = %v after RefundIssued", b.PendingRefunds())
			}
			all = append(all, deliver(t, b, []fact{refundFact("refund.failed", "re_1", 36000, RefundStatusFailed)})...)
			if b.PaymentStatus() != PaymentStatusPaid || b.RefundedAmount() != 0 || b.Status() != StatusCancelled {
				t.Errorf("after the failure: %s, %d, %s; want paid, 0, cancelled", b.PaymentStatus(), b.RefundedAmount(), b.Status())
			}
			failures := b.FailedRefunds()
			if len(failures) != 1 || failures[0].Reason != RefundAvailabilityConflict || failures[0].RefundID != "re_1" ||
				failures[0].FailureCode != "failed" {
				t.Errorf("FailedRefunds() = %+v", failures)
			}
			if len(b.PendingRefunds()) != 0 {
				t.Errorf("PendingRefunds() = %v: a failure after acceptance must not re-open the request", b.PendingRefunds())
			}
			for _, e := range all {
				if r, ok := e.(RefundFailed); ok && r.RefundedChange != -36000 {
					t.Errorf("RefundFailed.RefundedChange = %d, want -36000", r.RefundedChange)
				}
			}
		})
	}
}

func TestRefundOfDuplicatePaymentLeavesPaid(t *testing.T) {
	b := paidConfirmed(t)
	other := Payment{SessionID: "cs_test_2", PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur", Source: "webhook"}
	events, err := DecidePaymentSucceeded(b, other, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, events...)
	events, err = DecideRefund(b, Refund{ID: "re_2", ChargeID: "ch_2", PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur",
		Status: RefundStatusSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, events...)
	if b.PaymentStatus() != PaymentStatusPaid || b.RefundedAmount() != 36000 {
		t.Errorf("%s, %d; want paid (the duplicate went back), 36000 refunded", b.PaymentStatus(), b.RefundedAmount())
	}
}

func TestChargeRefundedWithListedRefunds(t *testing.T) {
	b := paidConfirmed(t)
	c := ChargeRefund{ChargeID: "ch_1", PaymentIntentID: "pi_1", AmountRefunded: 30000, Currency: "EUR",
		StripeEventType: "charge.refunded", Refunds: []Refund{
			{ID: "re_1", Amount: 10000, Currency: "eur", Status: RefundStatusSucceeded},
			{ID: "re_2", Amount: 20000, Currency: "eur", Status: RefundStatusPending},
			{ID: "re_2", Amount: 20000, Currency: "eur", Status: RefundStatusPending},
		}}
	events, err := DecideChargeRefunded(b, c)
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{
		PaymentRefunded{RefundID: "re_1", ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: 10000, Currency: "eur",
			Status: RefundStatusSucceeded, RefundedChange: 10000, StripeEventType: "charge.refunded"},
		PaymentRefunded{RefundID: "re_2", ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: 20000, Currency: "eur",
			Status: RefundStatusPending, RefundedChange: 20000, StripeEventType: "charge.refunded"},
		PaymentRefundedTotal{ChargeID: "ch_1", PaymentIntentID: "pi_1", AmountRefunded: 30000, Currency: "eur",
			RefundedChange: 0, StripeEventType: "charge.refunded"},
	}
	if !sameEvents(events, want) {
		t.Fatalf("got  %#v\nwant %#v", events, want)
	}
	mustApply(t, b, events...)
	if again, err := DecideChargeRefunded(b, c); err != nil || len(again) != 0 {
		t.Errorf("redelivery: %v, %v; want nothing", again, err)
	}
}

func TestRefundValidation(t *testing.T) {
	b := paidConfirmed(t)
	good := Refund{ID: "re_1", ChargeID: "ch_1", PaymentIntentID: "pi_1", Amount: 100, Currency: "eur", Status: RefundStatusPending}
	tests := []struct {
		name  string
		mod   func(*Refund)
		field string
	}{
		{"bad id", func(r *Refund) { r.ID = "ch_1" }, "refund_id"},
		{"no payment", func(r *Refund) { r.ChargeID, r.PaymentIntentID = "", "" }, "payment_intent_id"},
		{"bad charge", func(r *Refund) { r.ChargeID = "pi_1" }, "charge_id"},
		{"bad intent", func(r *Refund) { r.PaymentIntentID = "ch_1" }, "payment_intent_id"},
		{"zero amount", func(r *Refund) { r.Amount = 0 }, "amount"},
		{"bad currency", func(r *Refund) { r.Currency = "euro" }, "currency"},
		{"unknown status", func(r *Refund) { r.Status = "done" }, "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.mod(&r)
			events, err := DecideRefund(b, r)
			wantFieldError(t, err, tt.field)
			if events != nil {
				t.Errorf("events %v with an error", events)
			}
		})
	}
	if _, err := DecideRefund(b, Refund{ID: "pyr_1", ChargeID: "py_1", Amount: 1, Currency: "eur", Status: RefundStatusPending}); err != nil {
		t.Errorf("pyr_/py_ ids: %v", err)
	}
	_, err := DecideChargeRefunded(b, ChargeRefund{ChargeID: "ch_1", Currency: "eur", AmountRefunded: 1,
		Refunds: []Refund{{ID: "bad", Amount: 1, Currency: "eur", Status: RefundStatusPending}}})
	wantFieldError(t, err, "refunds[0].refund_id")
	_, err = DecideChargeRefunded(b, ChargeRefund{ChargeID: "", Currency: "eur", AmountRefunded: -1})
	wantFieldError(t, err, "charge_id")
	wantFieldError(t, err, "amount_refunded")
}

// TestDisputeFamilyInEveryOrder: a chargeback reported by every dispute
// event type, in every order with redeliveries, ends lost with its amount
// and due date; the booking keeps its stay and payment status.
func TestDisputeFamilyInEveryOrder(t *testing.T) {
	facts := []fact{
		disputeFact(DisputeFactCreated, "charge.dispute.created", DisputeNeedsResponse),
		disputeFact(DisputeFactFundsWithdrawn, "charge.dispute.funds_withdrawn", DisputeNeedsResponse),
		disputeFact(DisputeFactUpdated, "charge.dispute.updated", DisputeUnderReview),
		disputeFact(DisputeFactClosed, "charge.dispute.closed", DisputeLost),
		disputeFact(DisputeFactUpdated, "charge.dispute.updated", DisputeNeedsResponse),
	}
	permutations(len(facts), func(order []int) {
		b := paidConfirmed(t)
		ordered := make([]fact, len(order))
		for i, o := range order {
			ordered[i] = facts[o]
		}
		events := deliver(t, b, ordered)
		d, ok := b.LatestDispute()
		if !ok || d.Status != DisputeLost || d.Amount != 36000 || !d.EvidenceDueBy.Equal(disputeDue) {
			t.Fatalf("order %v: LatestDispute() = %+v, %v", order, d, ok)
		}
		if b.Status() != StatusConfirmed || b.PaymentStatus() != PaymentStatusPaid {
			t.Fatalf("order %v: a dispute changed the booking: %s/%s", order, b.Status(), b.PaymentStatus())
		}
		counts := map[string]int{}
		for _, e := range events {
			counts[e.EventType()]++
		}
		if counts[EventDisputeOpened] != 1 || counts[EventDisputeFundsWithdrawn] != 1 || counts[EventDisputeClosed]+counts[EventDisputeOpened] < 1 {
			t.Fatalf("order %v: events %v", order, counts)
		}
	})
}

func TestDisputeClosedIsNeverReopened(t *testing.T) {
	b := paidConfirmed(t)
	deliver(t, b, []fact{
		disputeFact(DisputeFactCreated, "charge.dispute.created", DisputeWarningNeedsResponse),
		disputeFact(DisputeFactClosed, "charge.dispute.closed", DisputeWarningClosed),
	})
	for _, late := range []DisputeStatus{DisputeWarningUnderReview, DisputeNeedsResponse, DisputeWon} {
		events, err := disputeFact(DisputeFactUpdated, "charge.dispute.updated", late).decide(b)
		if err != nil || len(events) != 0 {
			t.Errorf("late %s after warning_closed: %v, %v; want nothing", late, events, err)
		}
	}
	if d, _ := b.LatestDispute(); d.Status != DisputeWarningClosed {
		t.Errorf("status %s", d.Status)
	}
}

func TestLatestDisputeIsTheLastOpened(t *testing.T) {
	b := paidConfirmed(t)
	later := Dispute{ID: "dp_2", ChargeID: "ch_2", PaymentIntentID: "pi_2", Amount: 500, Currency: "eur",
		Status: DisputeWarningNeedsResponse, Created: disputeCreated.Add(time.Hour)}
	earlier := later
	earlier.ID, earlier.Amount, earlier.Status, earlier.Created = "dp_1", 36000, DisputeNeedsResponse, disputeCreated
	for _, d := range []Dispute{later, earlier} {
		events, err := DecideDispute(b, DisputeFactCreated, d)
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, b, events...)
	}
	if d, _ := b.LatestDispute(); d.Status != DisputeWarningNeedsResponse || d.Amount != 500 || !d.EvidenceDueBy.IsZero() {
		t.Errorf("LatestDispute() = %+v, want dp_2 (opened last) even though it was reported first", d)
	}
}

func TestDisputeValidation(t *testing.T) {
	b := paidConfirmed(t)
	good := Dispute{ID: "dp_1", ChargeID: "ch_1", Amount: 1, Currency: "eur", Status: DisputeNeedsResponse}
	tests := []struct {
		name  string
		fact  DisputeFact
		mod   func(*Dispute)
		field string
	}{
		{"bad id", DisputeFactCreated, func(d *Dispute) { d.ID = "re_1" }, "dispute_id"},
		{"no payment", DisputeFactCreated, func(d *Dispute) { d.ChargeID = "" }, "charge_id"},
		{"bad intent", DisputeFactCreated, func(d *Dispute) { d.PaymentIntentID = "ch_1" }, "payment_intent_id"},
		{"zero amount", DisputeFactCreated, func(d *Dispute) { d.Amount = 0 }, "amount"},
		{"unknown status", DisputeFactCreated, func(d *Dispute) { d.Status = "open" }, "status"},
		{"unknown fact", 0, func(*Dispute) {}, "type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := good
			tt.mod(&d)
			events, err := DecideDispute(b, tt.fact, d)
			wantFieldError(t, err, tt.field)
			if events != nil {
				t.Errorf("events %v with an error", events)
			}
		})
	}
}

// TestRefundFailureBeforeRefundIssued: Stripe's refund.failed may overtake
// the answer to the ledger's refund call; recording RefundIssued afterwards
// must not count the failed refund's money again.
func TestRefundFailureBeforeRefundIssued(t *testing.T) {
	taken := Stay{BookingID: 3, Range: mustRange(t, "2027-01-12", "2027-01-15")}
	b := mustBooking(t, nil)
	events, err := DecidePaymentSucceeded(b, sessionCompleted, []Stay{taken})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, events...)
	deliver(t, b, []fact{refundFact("refund.failed", "re_1", 36000, RefundStatusFailed)})
	events, err = DecideRefundIssued(b, RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, events...)
	if b.RefundedAmount() != 0 || b.PaymentStatus() != PaymentStatusPaid {
		t.Errorf("refunded %d, %s; want 0, paid", b.RefundedAmount(), b.PaymentStatus())
	}
	if r := events[0].(RefundIssued); r.RefundedChange == nil || *r.RefundedChange != 0 {
		t.Errorf("RefundIssued.RefundedChange = %v, want 0", r.RefundedChange)
	}
	if got := b.FailedRefunds(); len(got) != 1 || got[0].Reason != RefundAvailabilityConflict {
		t.Errorf("FailedRefunds() = %+v, want the conflict refund's failure", got)
	}
}
