package app

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// The ports: what the use cases need from the outside, declared here where
// they are consumed. adapters/postgres/bookingstore implements Bookings and
// RefundLedger; adapters/stripe's *Client implements Payments, Refunder and
// EventLister.

// Decision is an update closure: the store calls it inside its transaction
// with the booking as its stream left it and the confirmed stays of other
// bookings of its resource that overlap its stay, and appends what it
// returns. It must not keep b.
type Decision func(b *domain.Booking, stays []domain.Stay) ([]domain.Event, error)

// Creation is the update closure of a new booking: the store calls it with
// the id it allocated, the confirmed stays of the resource that overlap the
// stay, and the booking that already holds the session id (0 for none), and
// appends what it returns as the booking's stream.
type Creation func(id domain.BookingID, stays []domain.Stay, sessionOwner int64) ([]domain.Event, error)

// Bookings is the booking write side and the status table. Every write runs
// in one transaction and returns after its commit; a write that loses a
// race returns an error wrapping domain.ErrConcurrency and wrote nothing.
type Bookings interface {
	// Record records one Stripe delivery: the inbox row (raw body and
	// signature) and, when the event is new, handled and its booking found,
	// decide's events with the status row, under a lock on the booking's
	// resource. A duplicate or an unmatched event gets a delivery row only,
	// an unhandled one an inbox row only; decide is then not called.
	// A decision error is returned wrapped, with nothing written.
	Record(ctx context.Context, d Delivery, decide Decision) (IngestResult, error)
	// RecordDelivery keeps d as a delivery row with outcome, and nothing
	// else: no inbox row, no lookup, no lock. Ingest calls it for the
	// events that are not the ledger's (OutcomeWrongMode,
	// OutcomeForeignAccount); an event id may have any number of them.
	RecordDelivery(ctx context.Context, d Delivery, outcome Outcome) error
	// Create allocates a booking id, locks resourceID, finds the confirmed
	// stays overlapping stay and the holder of sessionID ("" for none), and
	// appends decide's events as the new booking's stream.
	Create(ctx context.Context, resourceID string, stay domain.DateRange, sessionID, causationID string, decide Creation) (projections.BookingRow, error)
	// Update loads booking id's stream and appends decide's events (called
	// without stays). With no event decided it returns the row as it is.
	// Errors: domain.ErrNotFound for an unknown booking.
	Update(ctx context.Context, id int64, causationID string, decide func(b *domain.Booking) ([]domain.Event, error)) (projections.BookingRow, error)
	// KnownStripeEvents returns which of ids the inbox holds (decided or
	// ignored); an event known only as an unmatched delivery is not known.
	KnownStripeEvents(ctx context.Context, ids []string) (map[string]bool, error)
	// CausedBy returns the booking whose stream holds an event caused by
	// causationID ("api:<Idempotency-Key>"), and false when none does.
	CausedBy(ctx context.Context, causationID string) (int64, bool, error)
	BookingReader
}

// BookingReader reads the status table.
type BookingReader interface {
	// GetBooking returns one row, or an error wrapping domain.ErrNotFound.
	GetBooking(ctx context.Context, id int64) (projections.BookingRow, error)
	// ListBookings returns a page in id order and the After of the next
	// page (0 for the last).
	ListBookings(ctx context.Context, f BookingFilter) ([]projections.BookingRow, int64, error)
}

// BookingFilter selects rows of the status table. Zero fields select all.
type BookingFilter struct {
	Status        domain.Status
	PaymentStatus domain.PaymentStatus
	// After is the last id of the previous page; Limit the page size
	// (default 100, at most 1000).
	After int64
	Limit int
}

// Payments is what Checkout and the redirect check need from Stripe's API.
type Payments interface {
	// CreateCheckoutSession opens a session, at most once per
	// p.IdempotencyKey.
	CreateCheckoutSession(ctx context.Context, p CheckoutSessionParams) (CheckoutSession, error)
	// RetrieveCheckoutSession fetches a session: domain.ErrNotFound when
	// Stripe does not know it, domain.ErrInvalid for a malformed id.
	RetrieveCheckoutSession(ctx context.Context, id string) (CheckoutSession, error)
	// RedirectDelivery is a paid session, checked on the customer's return,
	// as a delivery for Ingest: the Stripe event it stands for, source
	// "redirect", no signature, and one event id per session, so that
	// repeated visits are duplicates and the webhook of the same payment
	// confirms nothing twice.
	RedirectDelivery(bookingID int64, sess CheckoutSession, receivedAt time.Time) Delivery
}

// CheckoutSessionParams is what the ledger asks Stripe for when it opens a
// Checkout Session for a booking.
type CheckoutSessionParams struct {
	// BookingID is written to client_reference_id, metadata.booking_id and
	// payment_intent_data.metadata.booking_id (Session metadata does not
	// reach the PaymentIntent otherwise), so every event about the payment
	// names the booking.
	BookingID int64
	// Amount in minor units and Currency (lower case) of the one line item.
	Amount   int64
	Currency string
	// ProductName is the line item's name shown on the payment page.
	ProductName string
	// CustomerEmail prefills the payment page; "" leaves it to the customer.
	CustomerEmail string
	// SuccessURL and CancelURL are where Stripe sends the customer back.
	// SuccessURL may hold Stripe's {CHECKOUT_SESSION_ID} placeholder.
	SuccessURL, CancelURL string
	// ExpiresAt is when the session expires: 30 minutes to 24 hours after
	// its creation, as Stripe requires.
	ExpiresAt time.Time
	// IdempotencyKey makes a repeated request return the first session.
	// Stripe rejects a repeated key with different parameters, so derive
	// every parameter, ExpiresAt included, from the booking.
	IdempotencyKey string
}

// CheckoutSession is a Checkout Session as Stripe answered it, reduced to
// what the ledger uses, with the answer's raw JSON.
type CheckoutSession struct {
	ID string
	// URL is the payment page ("" once the session is complete or expired).
	URL string
	// Status is "open", "complete" or "expired"; PaymentStatus "paid",
	// "unpaid" or "no_payment_required".
	Status, PaymentStatus string
	// PaymentIntentID is "" until the customer tries to pay.
	PaymentIntentID   string
	ClientReferenceID string
	Metadata          map[string]string
	// BookingID is the booking the session names (metadata.booking_id,
	// else client_reference_id), 0 when it names none.
	BookingID int64
	// AmountTotal in minor units and Currency (lower case).
	AmountTotal int64
	Currency    string
	ExpiresAt   time.Time
	Livemode    bool
	// APIVersion is the version the session was rendered in.
	APIVersion string
	// Raw is the answer's body, byte for byte.
	Raw []byte
	// RequestID is the answer's Request-Id.
	RequestID string
}

// Refunder gives a payment back through the payment provider.
type Refunder interface {
	// RefundPayment refunds req of booking at most once per
	// idempotencyKey, however often it is called, and returns the refund
	// as RefundIssued. An error that is a RefundRefusal with Permanent()
	// true means the provider refused for good; any other error is
	// transient and the call is repeated later with the same key.
	RefundPayment(ctx context.Context, booking domain.BookingID, req domain.RefundRequested, idempotencyKey string) (domain.RefundIssued, error)
}

// RefundRefusal is what a Refunder's errors implement to describe the
// provider's answer (the Stripe adapter's *stripe.APIError does).
type RefundRefusal interface {
	error
	// Permanent reports whether repeating the request cannot succeed.
	Permanent() bool
	// FailureCode is the provider's error code, e.g.
	// "charge_already_refunded".
	FailureCode() string
	// FailureMessage is the provider's message.
	FailureMessage() string
	// HTTPStatusCode is the answer's status, 0 without an answer.
	HTTPStatusCode() int
	// ProviderRequestID identifies the answer for the provider's support.
	ProviderRequestID() string
}

// RefundLedger is the booking write side as the refund worker sees it: bound
// to the worker's transaction, so that what it appends commits with the
// consumer group's offset.
type RefundLedger interface {
	// Update: see Bookings.Update; on the worker's transaction.
	Update(ctx context.Context, id int64, causationID string, decide func(b *domain.Booking) ([]domain.Event, error)) (projections.BookingRow, error)
	// RecordRefundFailure keeps a refund refused for good, appended as
	// RefundFailed at position, for the operators' worklist.
	RecordRefundFailure(ctx context.Context, booking domain.BookingID, f domain.RefundFailed, position int64, at time.Time) error
}

// EventLister is what reconciliation needs from Stripe's Events API.
type EventLister interface {
	// ListEvents returns the raw events of types created at or after since,
	// oldest first.
	ListEvents(ctx context.Context, since time.Time, types []string) ([]json.RawMessage, error)
}

// EventParser turns a raw Stripe event into a delivery (the Stripe
// adapter's ParseDelivery); it returns domain.ErrInvalid for a malformed
// event.
type EventParser func(raw []byte, header, source string, receivedAt time.Time) (Delivery, error)

// Idempotency keeps the answers of requests sent with an Idempotency-Key
// (adapters/postgres/idempotency), for the HTTP edge.
type Idempotency interface {
	// Claim takes key in scope (e.g. "POST /bookings") for one request
	// whose method, path and body hash to requestHash: ErrIdempotencyInProgress
	// while another request holds it, ErrIdempotencyKeyReused when it was
	// used with another request.
	Claim(ctx context.Context, scope, key string, requestHash []byte) (IdempotencyClaim, error)
}

// IdempotencyClaim is one request's hold on its key.
type IdempotencyClaim interface {
	// Stored is the answer of an earlier identical request, nil if none.
	Stored() *StoredAnswer
	// Recovered reports that an earlier request claimed the key and
	// stored no answer (it crashed, or failed): its effect, if any, is in
	// the log under the causation id "api:<key>".
	Recovered() bool
	// Complete stores the answer and lets the key go.
	Complete(ctx context.Context, a StoredAnswer) error
	// Release lets the key go without an answer.
	Release()
}

// StoredAnswer is an answer kept for a retry.
type StoredAnswer struct {
	Status      int
	ContentType string
	Body        []byte
}

// The refusals of Idempotency.Claim.
var (
	ErrIdempotencyInProgress = errors.New("a request with this Idempotency-Key is in progress")
	ErrIdempotencyKeyReused  = errors.New("Idempotency-Key was used with a different request")
)

// StoredDelivery is a Stripe event as the ledger kept it without deciding
// on it: unmatched, of another mode or account (stripe_deliveries), or of
// a type it did not handle then (an ignored inbox row).
type StoredDelivery struct {
	EventID, EventType string
	// Outcome is the one it was kept with: unmatched, ignored, wrong_mode
	// or foreign_account.
	Outcome    Outcome
	ReceivedAt time.Time
	// Deliveries is how often it was delivered (the latest is kept here).
	Deliveries int
	Raw        []byte
	Signature  string
}

// DeliveryFilter selects stored deliveries. Zero fields do not filter.
type DeliveryFilter struct {
	Outcome Outcome
	Since   time.Time
	EventID string
	// Mentions keeps deliveries whose raw body holds one of these strings
	// (a Checkout Session or PaymentIntent id).
	Mentions []string
	Limit    int
}

// DeliveryStore reads the deliveries kept without a decision, the latest
// delivery of each event, oldest first; an event decided since (its inbox
// row) is left out.
type DeliveryStore interface {
	StoredDeliveries(ctx context.Context, f DeliveryFilter) ([]StoredDelivery, error)
}
