package domain

import "fmt"

// EventRefundFailed is the wire name of RefundFailed. It is stored with every
// such event and never changes.
const EventRefundFailed = "RefundFailed"

// RefundFailed records that Stripe refused a requested refund for good (a 4xx
// answer such as charge_already_refunded or a PaymentIntent Stripe does not
// know), or that a refund failed after Stripe accepted it (RefundID set,
// see DecideRefund): the money was not given back and an operator must
// look at it. Transient failures (network, 5xx, rate limits) are retried and
// never recorded as RefundFailed.
type RefundFailed struct {
	PaymentIntentID string `json:"payment_intent_id"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
	// Reason is why the refund was requested (from RefundRequested).
	Reason RefundReason `json:"reason"`
	// FailureCode is Stripe's error code (e.g. "charge_already_refunded"),
	// or its error type when the error has no code; FailureMessage is
	// Stripe's message.
	FailureCode    string `json:"failure_code"`
	FailureMessage string `json:"failure_message"`
	// HTTPStatus is Stripe's answer status (e.g. 400).
	HTTPStatus int `json:"http_status"`
	// StripeRequestID is the Request-Id of Stripe's answer ("req_..."), for
	// Stripe's support; "" when unknown.
	StripeRequestID string `json:"stripe_request_id"`
	// RefundID is set when a refund Stripe had accepted failed (or was
	// canceled) afterwards, as refund.failed / refund.updated report it;
	// ChargeID is its charge. RefundedChange is how much that took off the
	// booking's refunded amount (0 or negative). All three are absent for
	// a refusal of the ledger's own request.
	RefundID       string `json:"refund_id,omitempty"`
	ChargeID       string `json:"charge_id,omitempty"`
	RefundedChange int64  `json:"refunded_change,omitempty"`
}

// EventType returns EventRefundFailed.
func (RefundFailed) EventType() string { return EventRefundFailed }

// SchemaVersion returns 1.
func (RefundFailed) SchemaVersion() int { return 1 }

func init() {
	register[RefundFailed]()
}

// DecideRefundFailed records that Stripe refused the refund requested for
// f.PaymentIntentID: RefundFailed, or nothing when that request is no longer
// pending (already issued, or its failure already recorded), so a
// redelivered request never records a failure twice.
//
// It returns an error wrapping ErrInvalid for a nil or unrequested booking,
// or a *FieldError naming "payment_intent_id" (neither empty nor "pi_...":
// a request recorded without one can only be refused), "amount" (not
// positive), "currency", "reason" (unknown) or "failure_code" (empty).
func DecideRefundFailed(b *Booking, f RefundFailed) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var errs fieldErrors
	if f.PaymentIntentID != "" {
		errs.AddErr(CheckStripeID("payment_intent_id", "pi_", f.PaymentIntentID))
	}
	m, err := NewMoney(f.Amount, f.Currency)
	errs.AddErr(err)
	if !f.Reason.Valid() {
		errs.Add("reason", fmt.Sprintf("unknown refund reason %q", f.Reason))
	}
	if f.FailureCode == "" {
		errs.Add("failure_code", "is required")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if !b.RefundPending(f.PaymentIntentID) {
		return nil, nil
	}
	f.Currency = m.Currency
	return []Event{f}, nil
}

// DecideRetryRefund asks again for the refund of paymentIntentID that
// failed last (an operator's retry, after fixing what made it fail):
// RefundRequested with the failed refund's amount, currency and reason.
//
// Errors, with no events: ErrInvalid for a nil or unrequested booking;
// ErrNotFound when no refund of paymentIntentID failed; ErrWrongState
// while a refund of it is pending.
func DecideRetryRefund(b *Booking, paymentIntentID string) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var last *RefundFailed
	for i, f := range b.refundsFailed {
		if f.PaymentIntentID == paymentIntentID {
			last = &b.refundsFailed[i]
		}
	}
	if last == nil {
		return nil, fmt.Errorf("booking %d: no failed refund of PaymentIntent %q: %w", b.id, paymentIntentID, ErrNotFound)
	}
	if b.RefundPending(paymentIntentID) {
		return nil, fmt.Errorf("booking %d: a refund of %s is pending already: %w", b.id, paymentIntentID, ErrWrongState)
	}
	return []Event{RefundRequested{PaymentIntentID: paymentIntentID, Amount: last.Amount, Currency: last.Currency, Reason: last.Reason}}, nil
}
