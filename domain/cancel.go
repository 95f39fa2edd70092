package domain

import (
	"fmt"
	"unicode/utf8"
)

// MaxCancelNoteLen bounds the operator's note of a cancellation.
const MaxCancelNoteLen = 500 // characters

// Refundable returns what a refund of the booking may still give back, in
// minor units of its currency: the payment of record's amount less what was
// given back on it and what the ledger already asked to give back and is
// not settled yet. 0 when the booking holds no payment.
func (b *Booking) Refundable() int64 {
	if !b.holdsPayment() {
		return 0
	}
	left := b.paidAmount - b.refundedOfRecord()
	for _, req := range b.PendingRefunds() {
		if req.PaymentIntentID == b.paymentIntentID {
			left -= req.Amount
		}
	}
	return max(left, 0)
}

// DecideCancel decides a cancellation on request (an operator, or the
// client through the API) with note, refunding refund minor units of the
// payment of record (nil: everything Refundable; 0: no refund):
// BookingCancelled{requested, note}, then RefundRequested{cancellation}
// when there is something to refund. The refund itself is made by the
// refund worker, as for every RefundRequested. The dates are free once the
// booking is cancelled.
//
// Errors, with no events: ErrInvalid for a nil or unrequested booking, a
// note longer than MaxCancelNoteLen or not printable, a negative refund
// (*FieldError naming "reason" or "refund_amount"); ErrWrongState for a
// booking already cancelled; ErrNotRefundable for a refund above
// Refundable, or of a payment whose PaymentIntent is unknown.
func DecideCancel(b *Booking, note string, refund *int64) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var errs fieldErrors
	if utf8.RuneCountInString(note) > MaxCancelNoteLen {
		errs.Add("reason", fmt.Sprintf("must be at most %d characters", MaxCancelNoteLen))
	} else if !printable(note) {
		errs.Add("reason", "must be printable text")
	}
	if refund != nil && *refund < 0 {
		errs.Add("refund_amount", "must not be negative")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if b.status == StatusCancelled {
		return nil, fmt.Errorf("booking %d is already cancelled: %w", b.id, ErrWrongState)
	}
	refundable := b.Refundable()
	amount := refundable
	if refund != nil {
		amount = *refund
	}
	if amount > refundable {
		return nil, fmt.Errorf("refund_amount %d is more than the %d %s refundable on booking %d: %w",
			amount, refundable, b.price.Currency, b.id, ErrNotRefundable)
	}
	events := []Event{BookingCancelled{Reason: CancelRequested, Note: note}}
	if amount == 0 {
		return events, nil
	}
	if b.paymentIntentID == "" {
		return nil, fmt.Errorf("booking %d: the payment's PaymentIntent is unknown, nothing to refund it with: %w", b.id, ErrNotRefundable)
	}
	return append(events, RefundRequested{PaymentIntentID: b.paymentIntentID, Amount: amount, Currency: b.price.Currency,
		Reason: RefundCancellation}), nil
}
