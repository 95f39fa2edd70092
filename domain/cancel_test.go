package domain

import (
	"errors"
	"testing"
)

func TestDecideCancel(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	taken := Stay{BookingID: 3, Range: mustRange(t, "2027-01-12", "2027-01-15")}
	tests := []struct {
		name    string
		setup   func(*testing.T) *Booking
		refund  *int64
		want    []Event
		wantErr error
		field   string
	}{
		{"unpaid: cancelled, nothing to refund", func(t *testing.T) *Booking { return mustBooking(t, nil) }, nil,
			[]Event{BookingCancelled{Reason: CancelRequested, Note: "guest asked"}}, nil, ""},
		{"paid: refunds everything by default", paidConfirmed, nil,
			[]Event{BookingCancelled{Reason: CancelRequested, Note: "guest asked"},
				RefundRequested{PaymentIntentID: "pi_1", Amount: 36000, Currency: "eur", Reason: RefundCancellation}}, nil, ""},
		{"paid: a partial refund", paidConfirmed, n(1000),
			[]Event{BookingCancelled{Reason: CancelRequested, Note: "guest asked"},
				RefundRequested{PaymentIntentID: "pi_1", Amount: 1000, Currency: "eur", Reason: RefundCancellation}}, nil, ""},
		{"paid: no refund", paidConfirmed, n(0),
			[]Event{BookingCancelled{Reason: CancelRequested, Note: "guest asked"}}, nil, ""},
		{"paid and partly refunded: the rest only", func(t *testing.T) *Booking {
			b := paidConfirmed(t)
			deliver(t, b, []fact{refundFact("refund.updated", "re_1", 6000, RefundStatusSucceeded)})
			return b
		}, nil, []Event{BookingCancelled{Reason: CancelRequested, Note: "guest asked"},
			RefundRequested{PaymentIntentID: "pi_1", Amount: 30000, Currency: "eur", Reason: RefundCancellation}}, nil, ""},
		{"more than refundable", func(t *testing.T) *Booking {
			b := paidConfirmed(t)
			deliver(t, b, []fact{refundFact("refund.updated", "re_1", 6000, RefundStatusSucceeded)})
			return b
		}, n(30001), nil, ErrNotRefundable, ""},
		{"unpaid: any refund is too much", func(t *testing.T) *Booking { return mustBooking(t, nil) }, n(1), nil, ErrNotRefundable, ""},
		{"already cancelled", func(t *testing.T) *Booking {
			b := mustBooking(t, nil)
			events, _ := DecidePaymentSucceeded(b, sessionCompleted, []Stay{taken})
			mustApply(t, b, events...)
			return b
		}, nil, nil, ErrWrongState, ""},
		{"negative refund", paidConfirmed, n(-1), nil, ErrInvalid, "refund_amount"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.setup(t)
			got, err := DecideCancel(b, "guest asked", tt.refund)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("DecideCancel = %v, %v; want %v", got, err, tt.wantErr)
				}
				if tt.field != "" {
					wantFieldError(t, err, tt.field)
				}
				return
			}
			if err != nil || !sameEvents(got, tt.want) {
				t.Fatalf("DecideCancel = %#v, %v\nwant %#v", got, err, tt.want)
			}
			mustApply(t, b, got...)
			if b.Status() != StatusCancelled || len(b.PendingRefunds()) != len(got)-1 {
				t.Errorf("after: %s, pending refunds %v", b.Status(), b.PendingRefunds())
			}
		})
	}
	t.Run("note too long", func(t *testing.T) {
		long := make([]byte, MaxCancelNoteLen+1)
		for i := range long {
			long[i] = 'x'
		}
		_, err := DecideCancel(mustBooking(t, nil), string(long), nil)
		wantFieldError(t, err, "reason")
	})
}
