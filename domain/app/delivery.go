package app

import (
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// Fact is what a Stripe event tells the ledger, whatever its type: the
// Stripe adapter maps each handled type onto one Fact (the one place that
// knows Stripe's types), and Ingest maps each Fact onto one decision.
type Fact int

// The facts the ledger decides on.
const (
	// FactNone: a type the ledger does not decide on; answered "ignored".
	FactNone Fact = iota
	// FactPaymentSucceeded: the money is in (checkout.session.completed
	// when paid, payment_intent.succeeded).
	FactPaymentSucceeded
	// FactAsyncPaymentSucceeded: a delayed payment method of a completed
	// session succeeded.
	FactAsyncPaymentSucceeded
	// FactAsyncPaymentFailed: a delayed payment method of a completed
	// session failed.
	FactAsyncPaymentFailed
	// FactPaymentFailed: an attempt to pay failed.
	FactPaymentFailed
	// FactSessionExpired: the Checkout Session expired unpaid.
	FactSessionExpired
	// FactRefund: a refund was created or changed status (Delivery.Refund).
	FactRefund
	// FactChargeRefunded: a charge's cumulative refunded amount went up
	// (Delivery.ChargeRefund).
	FactChargeRefunded
	// FactDisputeCreated, FactDisputeUpdated, FactDisputeClosed,
	// FactDisputeFundsWithdrawn and FactDisputeFundsReinstated: what
	// happened to a dispute (Delivery.Dispute).
	FactDisputeCreated
	FactDisputeUpdated
	FactDisputeClosed
	FactDisputeFundsWithdrawn
	FactDisputeFundsReinstated
)

var factNames = [...]string{"none", "payment_succeeded", "async_payment_succeeded", "async_payment_failed", "payment_failed", "session_expired",
	"refund", "charge_refunded", "dispute_created", "dispute_updated", "dispute_closed", "dispute_funds_withdrawn", "dispute_funds_reinstated"}

// String names the fact in logs.
func (f Fact) String() string {
	if f < 0 || int(f) >= len(factNames) {
		return "unknown"
	}
	return factNames[f]
}

// Delivery is one Stripe event as received: the raw body and signature kept
// for the auditors, and the facts the decision needs, already extracted by
// the Stripe adapter.
type Delivery struct {
	EventID, Type, APIVersion string
	Livemode                  bool
	// Account is the Connect account the event happened on (the event's
	// top-level "account", "acct_..."); "" for the platform's own events.
	Account string
	Created time.Time
	// Raw is the body byte for byte; Signature the Stripe-Signature header
	// ("" for events fetched from the API).
	Raw       []byte
	Signature string
	// Source is "webhook", "api" or "redirect" (domain.PaymentSource).
	Source     string
	ReceivedAt time.Time
	// Fact is what the event says happened; FactNone for a type the ledger
	// does not decide on.
	Fact    Fact
	Lookup  Lookup
	Payment domain.Payment
	// Refund, ChargeRefund and Dispute are the facts of the refund and
	// dispute types, zero for the others.
	Refund       domain.Refund
	ChargeRefund domain.ChargeRefund
	Dispute      domain.Dispute
}

// Handled reports whether the ledger decides on the delivery's type.
func (d Delivery) Handled() bool { return d.Fact != FactNone }

// Lookup holds the keys that find a booking, in the order they are tried:
// the booking ids the event names (metadata.booking_id, then
// client_reference_id: at most two, Ingest refuses more), the Checkout
// Session id, the PaymentIntent id.
type Lookup struct {
	BookingIDs      []int64
	SessionID       string
	PaymentIntentID string
}

// Outcome is what ingesting a Stripe event came to.
type Outcome string

// Outcomes of Ingest.
const (
	// OutcomeProcessed: decided and recorded (possibly with no new event,
	// when the facts change nothing).
	OutcomeProcessed Outcome = "processed"
	// OutcomeIgnored: an event type the ledger does not decide on.
	OutcomeIgnored Outcome = "ignored"
	// OutcomeDuplicate: this Stripe event was already recorded.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeUnmatched: no booking matches; the delivery is kept and the
	// event is matched again when Stripe redelivers it.
	OutcomeUnmatched Outcome = "unmatched"
)

// IngestResult reports what Ingest did.
type IngestResult struct {
	Outcome   Outcome
	BookingID int64
	// Events are the events appended, in order.
	Events []domain.Event
	// Booking is the status row after the event (zero when no booking).
	Booking projections.BookingRow
}

// Appended reports whether the result appended an event of type t.
func (r IngestResult) Appended(t string) bool {
	for _, e := range r.Events {
		if e.EventType() == t {
			return true
		}
	}
	return false
}
