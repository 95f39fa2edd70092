package domain

import (
	"errors"
	"testing"
)

var failedRefund = RefundFailed{PaymentIntentID: "pi_1", Amount: 36000, Currency: "EUR", Reason: RefundAvailabilityConflict,
	FailureCode: "charge_already_refunded", FailureMessage: "Charge ch_1 has already been refunded.", HTTPStatus: 400}

func with2(f RefundFailed, mod func(*RefundFailed)) RefundFailed {
	mod(&f)
	return f
}

// TestRefundSettlement walks a refund request to its end, issued or
// refused, and checks what is still pending, what each decision records and
// that a failure never changes the booking's statuses.
func TestRefundSettlement(t *testing.T) {
	taken := Stay{BookingID: 3, Range: mustRange(t, "2027-01-12", "2027-01-15")}
	issued := RefundIssued{RefundID: "re_1", PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur"}
	recorded := with2(failedRefund, func(f *RefundFailed) { f.Currency = "eur" })
	tests := []struct {
		name        string
		steps       []step
		wantPending int
		wantFailed  int
		wantPayment PaymentStatus
	}{
		{"requested only", []step{
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
		}, 1, 0, PaymentStatusPaid},
		{"refused for good", []step{
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
			{refundFailed(failedRefund), []Event{recorded}},
			// A redelivered request, refused again, is not recorded twice.
			{refundFailed(failedRefund), nil},
		}, 0, 1, PaymentStatusPaid},
		{"issued, then a late refusal is ignored", []step{
			{succeeded(sessionCompleted, taken), conflictPath(sessionCompleted, 3)},
			{refundIssued(issued), []Event{withChange(issued, 36000)}},
			{refundFailed(failedRefund), nil},
		}, 0, 0, PaymentStatusRefunded},
		{"refusal of a payment never requested", []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{refundFailed(failedRefund), nil},
		}, 0, 0, PaymentStatusPaid},
		{"duplicate payment refused, first payment untouched", []step{
			{succeeded(sessionCompleted), []Event{succeededFrom(sessionCompleted), confirmedEv}},
			{succeeded(otherPayment), []Event{succeededFrom(otherPayment),
				RefundRequested{PaymentIntentID: "pi_2", Amount: 36000, Currency: "eur", Reason: RefundDuplicatePayment}}},
			{refundFailed(with2(failedRefund, func(f *RefundFailed) { f.PaymentIntentID, f.Reason = "pi_1", RefundDuplicatePayment })), nil},
			{refundFailed(with2(failedRefund, func(f *RefundFailed) { f.PaymentIntentID, f.Reason = "pi_2", RefundDuplicatePayment })),
				[]Event{with2(recorded, func(f *RefundFailed) { f.PaymentIntentID, f.Reason = "pi_2", RefundDuplicatePayment })}},
		}, 0, 1, PaymentStatusPaid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBooking(t, nil)
			for i, s := range tt.steps {
				got, err := s.decide(b)
				if err != nil {
					t.Fatalf("step %d: %v", i+1, err)
				}
				if !sameEvents(got, s.want) {
					t.Fatalf("step %d:\n got %#v\nwant %#v", i+1, got, s.want)
				}
				mustApply(t, b, got...)
			}
			if n := len(b.PendingRefunds()); n != tt.wantPending {
				t.Errorf("PendingRefunds() = %v, want %d", b.PendingRefunds(), tt.wantPending)
			}
			if n := len(b.FailedRefunds()); n != tt.wantFailed {
				t.Errorf("FailedRefunds() = %v, want %d", b.FailedRefunds(), tt.wantFailed)
			}
			if b.PaymentStatus() != tt.wantPayment {
				t.Errorf("PaymentStatus() = %s, want %s", b.PaymentStatus(), tt.wantPayment)
			}
		})
	}
}

// withChange is r as DecideRefundIssued records it: with the change to the
// booking's refunded amount.
func withChange(r RefundIssued, change int64) RefundIssued {
	r.RefundedChange = &change
	return r
}

func TestDecideRetryRefund(t *testing.T) {
	taken := Stay{BookingID: 3, Range: mustRange(t, "2027-01-12", "2027-01-15")}
	b := mustBooking(t, nil)
	events, _ := DecidePaymentSucceeded(b, sessionCompleted, []Stay{taken})
	mustApply(t, b, events...)
	if _, err := DecideRetryRefund(b, "pi_1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("nothing failed yet: %v", err)
	}
	refused := RefundFailed{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", Reason: RefundAvailabilityConflict, FailureCode: "x"}
	events, err := DecideRefundFailed(b, refused)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, events...)
	got, err := DecideRetryRefund(b, "pi_1")
	want := []Event{RefundRequested{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", Reason: RefundAvailabilityConflict}}
	if err != nil || !sameEvents(got, want) {
		t.Fatalf("retry %v, %v", got, err)
	}
	mustApply(t, b, got...)
	if !b.RefundPending("pi_1") {
		t.Error("the retried refund is not pending")
	}
	if _, err := DecideRetryRefund(b, "pi_1"); !errors.Is(err, ErrWrongState) {
		t.Errorf("while pending: %v", err)
	}
}
