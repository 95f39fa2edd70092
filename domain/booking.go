package domain

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// BookingID identifies a booking and its event stream. Valid ids are
// positive; the id is allocated by the store before NewBooking is called.
type BookingID int64

// ParseBookingID parses a positive decimal booking id, as found in a URL path,
// Stripe metadata.booking_id or client_reference_id. Anything else returns a
// *FieldError naming "booking_id" (matching ErrInvalid).
func ParseBookingID(s string) (BookingID, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fieldErr("booking_id", "must be a positive integer")
	}
	return BookingID(n), nil
}

// String returns the decimal form of id.
func (id BookingID) String() string { return strconv.FormatInt(int64(id), 10) }

// Limits on new input. They guard the bookings table and the client-facing
// API; replay never checks them.
const (
	MaxResourceIDLen = 100 // characters
	MaxEmailLen      = 254 // bytes, the SMTP path limit
	maxStripeIDLen   = 255
)

// Booking is the aggregate: the current state of one booking, derived only
// from its events. All fields are unexported so that the only ways to obtain
// one are NewBooking (validated new input) and Rehydrate/Apply (recorded
// facts); a Booking therefore always corresponds to some event stream.
//
// A Booking is not safe for concurrent mutation; decisions only read it.
type Booking struct {
	id              BookingID
	resourceID      string
	stay            DateRange
	price           Money
	customerEmail   string
	sessionID       string
	paymentIntentID string
	status          Status
	paymentStatus   PaymentStatus
	cancelReason    CancelReason
	requestedAt     time.Time
	version         int

	// The payments already recorded, so that a decision can recognise a
	// redelivered or cross-reported fact and record it only once.
	succeeded  []paymentRef
	failed     []paymentRef
	mismatched []paymentRef

	refundsRequested []RefundRequested
	refundsIssued    []RefundIssued
	refundsFailed    []RefundFailed

	// paidAmount is the amount of the payment of record, against which its
	// refunds are measured (see PaymentStatus).
	paidAmount int64
	// The money given back and disputed, by Stripe id (refunds.go,
	// disputes.go). Nil until the first such event.
	refunds      map[string]refundState
	refundTotals map[string]refundTotal // by charge id
	chargePI     map[string]string      // charge id → PaymentIntent id
	disputes     map[string]disputeState
}

// paymentRef is what identifies one payment: Stripe reports the same payment
// with its PaymentIntent id, its Checkout Session id, or both, depending on
// the event type and the order of delivery.
type paymentRef struct {
	paymentIntentID string
	sessionID       string
}

// NewBookingParams is the input of NewBooking, in the shape of the
// POST /bookings request plus the server-assigned id and time.
type NewBookingParams struct {
	ID            BookingID
	ResourceID    string
	CheckIn       string // YYYY-MM-DD
	CheckOut      string // YYYY-MM-DD, exclusive
	Amount        int64  // minor units
	Currency      string // ISO 4217, any case
	CustomerEmail string
	SessionID     string // optional Checkout Session id ("cs_...")
	RequestedAt   time.Time
}

// NewBooking validates a booking request and returns the new booking, with the
// BookingRequested event already applied (Version 1, status pending, payment
// status unpaid), together with that event for the caller to append.
//
// Every invalid field is reported, as *FieldError values joined with
// errors.Join (errors.Is(err, ErrInvalid) holds; errors.As finds the first).
// Field names are the JSON names: "booking_id" (must be positive),
// "resource_id" (non-blank, at most 100 characters, printable, no
// surrounding spaces), "check_in"/"check_out" (see ParseDateRange), "amount"
// and "currency" (see NewMoney), "customer_email" (one '@' with text on both
// sides, no spaces, at most 254 bytes), "session_id" (empty or "cs_..."),
// "requested_at" (must be set).
//
// NewBooking does not check availability: whether the stay is free is only
// known to the store (see FindConflict and ErrConflict).
func NewBooking(p NewBookingParams) (*Booking, []Event, error) {
	var errs fieldErrors
	if p.ID <= 0 {
		errs.Add("booking_id", "must be a positive integer")
	}
	errs.AddErr(validateResourceID(p.ResourceID))
	stay, err := ParseDateRange(p.CheckIn, p.CheckOut)
	errs.AddErr(err)
	price, err := NewMoney(p.Amount, p.Currency)
	errs.AddErr(err)
	errs.AddErr(validateEmail(p.CustomerEmail))
	if p.SessionID != "" {
		errs.AddErr(CheckStripeID("session_id", "cs_", p.SessionID))
	}
	if p.RequestedAt.IsZero() {
		errs.Add("requested_at", "is required")
	}
	if err := errs.Err(); err != nil {
		return nil, nil, err
	}

	ev := BookingRequested{
		BookingID:     p.ID,
		ResourceID:    p.ResourceID,
		CheckIn:       stay.CheckInString(),
		CheckOut:      stay.CheckOutString(),
		Amount:        price.Amount,
		Currency:      price.Currency,
		CustomerEmail: p.CustomerEmail,
		SessionID:     p.SessionID,
		// UTC and no monotonic reading, so the value survives a JSON round
		// trip unchanged and replay equals the original.
		RequestedAt: p.RequestedAt.UTC(),
	}
	b := &Booking{}
	if err := b.Apply(ev); err != nil {
		// Unreachable: the event was built from validated input.
		return nil, nil, err
	}
	return b, []Event{ev}, nil
}

// Rehydrate rebuilds booking id from its recorded events, in stream order.
//
// It returns an error wrapping ErrNotFound when events is empty, and an error
// wrapping ErrInvalid (naming the 1-based stream version) when an event cannot
// be applied: the stream does not start with BookingRequested, the
// BookingRequested is for another booking id, or an event is unknown.
// Rehydrate(id, events) equals applying the same events one by one.
func Rehydrate(id BookingID, events []Event) (*Booking, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("booking %d: %w", id, ErrNotFound)
	}
	b := &Booking{id: id}
	for i, e := range events {
		if err := b.Apply(e); err != nil {
			return nil, fmt.Errorf("booking %d, version %d: %w", id, i+1, err)
		}
	}
	return b, nil
}

// Apply records one event in the booking's state and increments Version.
//
// Apply never re-evaluates business rules; it records facts, so that a
// replay gives the same state even after the rules change. Its effects:
// BookingRequested sets every field, status pending, payment status unpaid;
// CheckoutSessionOpened sets the session id; PaymentSucceeded sets payment
// status paid, remembers the payment's ids, and, when the booking was not
// already paid, makes its PaymentIntent id (and the session id, if the
// booking had none) the booking's; PaymentFailed sets payment status failed and
// the PaymentIntent id if the booking had none; BookingConfirmed sets status
// confirmed; BookingCancelled sets status cancelled and the reason;
// RefundIssued, PaymentRefunded, PaymentRefundedTotal and a RefundFailed
// with a refund id change the money given back (RefundedAmount, each refund
// counted once), from which PaymentStatus derives partially_refunded and
// refunded for the payment of record (a refunded duplicate payment leaves
// it paid); the dispute events change the disputes (LatestDispute);
// AvailabilityConflict, PaymentMismatch, RefundRequested, a RefundFailed
// without refund id and the dispute events change no status.
//
// It returns an error wrapping ErrInvalid, leaving the booking unchanged, for
// a nil or unregistered event, any event before BookingRequested, a
// BookingRequested for an already requested booking or for another id than
// the one being rehydrated, or unparsable recorded dates.
func (b *Booking) Apply(e Event) error {
	if b == nil {
		return fmt.Errorf("%w: apply to nil booking", ErrInvalid)
	}
	e, err := normaliseEvent(e)
	if err != nil {
		return err
	}
	if b.version == 0 {
		req, ok := e.(BookingRequested)
		if !ok {
			return fmt.Errorf("%w: %s before BookingRequested", ErrInvalid, e.EventType())
		}
		return b.applyRequested(req)
	}

	switch ev := e.(type) {
	case BookingRequested:
		return fmt.Errorf("%w: booking %d already requested", ErrInvalid, b.id)
	case CheckoutSessionOpened:
		b.sessionID = ev.SessionID
	case PaymentSucceeded:
		// The first success after unpaid/failed/refunded is the payment of
		// record: a failed earlier attempt must not stay in the bookings
		// table, and a later refund of this PaymentIntent must be able to
		// mark the booking refunded. A success on an already paid booking
		// is a duplicate and does not replace it.
		if !b.holdsPayment() {
			if ev.PaymentIntentID != "" {
				b.paymentIntentID = ev.PaymentIntentID
			}
			if b.sessionID == "" {
				b.sessionID = ev.SessionID
			}
			b.paidAmount = ev.Amount
		}
		b.succeeded = append(b.succeeded, paymentRef{ev.PaymentIntentID, ev.SessionID})
		b.paymentStatus = PaymentStatusPaid
	case PaymentFailed:
		if b.paymentIntentID == "" {
			b.paymentIntentID = ev.PaymentIntentID
		}
		b.failed = append(b.failed, paymentRef{ev.PaymentIntentID, ev.SessionID})
		b.paymentStatus = PaymentStatusFailed
	case PaymentMismatch:
		b.mismatched = append(b.mismatched, paymentRef{ev.PaymentIntentID, ev.SessionID})
	case AvailabilityConflict:
		// Recorded for audit and monitoring; the BookingCancelled that
		// accompanies it carries the status change.
	case BookingConfirmed:
		b.status = StatusConfirmed
	case BookingCancelled:
		b.status = StatusCancelled
		b.cancelReason = ev.Reason
	case RefundRequested:
		b.refundsRequested = append(b.refundsRequested, ev)
	case RefundIssued:
		b.refundsIssued = append(b.refundsIssued, ev)
		// A refund recorded without a PaymentIntent id (none was known to
		// the request) refunds the payment of record.
		pi := ev.PaymentIntentID
		if pi == "" {
			pi = b.paymentIntentID
		}
		b.noteRefund(ev.RefundID, "", pi, ev.Amount, RefundStatusPending)
	case RefundFailed:
		// A refusal of the ledger's request (no RefundID): the money is
		// still with the ledger's account, no status changes, the request
		// is no longer pending (see PendingRefunds). A refund that failed
		// after Stripe accepted it (RefundID): its money is taken off.
		b.refundsFailed = append(b.refundsFailed, ev)
		if ev.RefundID != "" {
			b.noteRefund(ev.RefundID, ev.ChargeID, ev.PaymentIntentID, ev.Amount, RefundStatusFailed)
		}
	case PaymentRefunded:
		b.noteRefund(ev.RefundID, ev.ChargeID, ev.PaymentIntentID, ev.Amount, ev.Status)
	case PaymentRefundedTotal:
		if b.refundTotals == nil {
			b.refundTotals = map[string]refundTotal{}
		}
		if t := b.refundTotals[ev.ChargeID]; ev.AmountRefunded > t.amount {
			b.refundTotals[ev.ChargeID] = refundTotal{paymentIntentID: ev.PaymentIntentID, amount: ev.AmountRefunded}
		}
		b.noteCharge(ev.ChargeID, ev.PaymentIntentID)
	case DisputeOpened, DisputeUpdated, DisputeClosed, DisputeFundsWithdrawn, DisputeFundsReinstated:
		// Disputes change no status: the stay is the operator's decision.
		b.applyDispute(ev)
	default:
		// normaliseEvent accepted it, so it is registered: a new event type
		// was added without teaching Apply about it.
		return fmt.Errorf("%w: booking cannot apply %s", ErrInvalid, e.EventType())
	}
	b.version++
	return nil
}

func (b *Booking) applyRequested(ev BookingRequested) error {
	if b.id != 0 && ev.BookingID != b.id {
		return fmt.Errorf("%w: BookingRequested for booking %d in stream of booking %d", ErrInvalid, ev.BookingID, b.id)
	}
	stay, err := parseRecordedRange(ev.CheckIn, ev.CheckOut)
	if err != nil {
		return err
	}
	*b = Booking{
		id:            ev.BookingID,
		resourceID:    ev.ResourceID,
		stay:          stay,
		price:         Money{Amount: ev.Amount, Currency: ev.Currency},
		customerEmail: ev.CustomerEmail,
		sessionID:     ev.SessionID,
		status:        StatusPending,
		paymentStatus: PaymentStatusUnpaid,
		requestedAt:   ev.RequestedAt,
		version:       1,
	}
	return nil
}

// ID returns the booking id.
func (b *Booking) ID() BookingID { return b.id }

// ResourceID returns the booked resource (e.g. "room-12").
func (b *Booking) ResourceID() string { return b.resourceID }

// Stay returns the booked dates.
func (b *Booking) Stay() DateRange { return b.stay }

// Price returns the amount the booking must be paid with.
func (b *Booking) Price() Money { return b.price }

// CustomerEmail returns the customer's email address as given.
func (b *Booking) CustomerEmail() string { return b.customerEmail }

// SessionID returns the Checkout Session id, "" if none is known.
func (b *Booking) SessionID() string { return b.sessionID }

// PaymentIntentID returns the PaymentIntent of record: the one that paid the
// booking, or else the first one that failed; "" if none is known.
func (b *Booking) PaymentIntentID() string { return b.paymentIntentID }

// Status returns the booking status.
func (b *Booking) Status() Status { return b.status }

// PaymentStatus returns the payment status: unpaid, failed, or, once paid,
// paid, partially_refunded or refunded by comparing the money given back on
// the payment of record with its amount (RefundedAmount counts all
// payments: a duplicate payment given back leaves the booking paid).
func (b *Booking) PaymentStatus() PaymentStatus {
	if b.paymentStatus != PaymentStatusPaid {
		return b.paymentStatus
	}
	switch refunded := b.refundedOfRecord(); {
	case refunded <= 0:
		return PaymentStatusPaid
	case refunded >= b.paidAmount:
		return PaymentStatusRefunded
	default:
		return PaymentStatusPartiallyRefunded
	}
}

// holdsPayment reports whether the booking is paid and its payment of
// record not given back in full (paid or partially_refunded): a further
// payment is then a duplicate.
func (b *Booking) holdsPayment() bool {
	s := b.PaymentStatus()
	return s == PaymentStatusPaid || s == PaymentStatusPartiallyRefunded
}

// CancelReason returns why the booking was last cancelled, "" if it never was.
func (b *Booking) CancelReason() CancelReason { return b.cancelReason }

// RequestedAt returns when the booking was requested (UTC).
func (b *Booking) RequestedAt() time.Time { return b.requestedAt }

// Version returns the number of events applied, which is the stream version
// of the last one; the next event to append gets Version()+1.
func (b *Booking) Version() int { return b.version }

// RefundPending reports whether a refund of paymentIntentID was requested
// and is neither issued nor failed for good (see PendingRefunds).
func (b *Booking) RefundPending(paymentIntentID string) bool {
	for _, r := range b.PendingRefunds() {
		if r.PaymentIntentID == paymentIntentID {
			return true
		}
	}
	return false
}

// PendingRefunds returns the refunds requested but neither issued nor
// failed for good, oldest first, each matched to an issued (RefundIssued) or
// refused (RefundFailed) refund by PaymentIntent id. The Stripe adapter uses
// it to (re)issue refunds after a crash.
func (b *Booking) PendingRefunds() []RefundRequested {
	pending := append([]RefundRequested(nil), b.refundsRequested...)
	settled := make([]string, 0, len(b.refundsIssued)+len(b.refundsFailed))
	for _, issued := range b.refundsIssued {
		settled = append(settled, issued.PaymentIntentID)
	}
	for _, failed := range b.refundsFailed {
		// A failure with a refund id came after Stripe accepted the
		// refund, which its RefundIssued (if the ledger's) settled.
		if failed.RefundID == "" {
			settled = append(settled, failed.PaymentIntentID)
		}
	}
	for _, pi := range settled {
		for i, req := range pending {
			if req.PaymentIntentID == pi {
				pending = append(pending[:i], pending[i+1:]...)
				break
			}
		}
	}
	return pending
}

// FailedRefunds returns the refunds Stripe refused for good, oldest first.
func (b *Booking) FailedRefunds() []RefundFailed {
	return append([]RefundFailed(nil), b.refundsFailed...)
}

// samePayment reports whether a fact with the given ids describes the
// recorded payment r. PaymentIntent ids decide when both sides have one.
// Otherwise the Checkout Session ids decide, a missing one standing for the
// booking's own session: payment_intent.succeeded usually carries no session
// id while checkout.session.completed does, and either may come first.
//
// When no id can be compared at all (a booking that never knew its session,
// paid by a PaymentIntent-only fact, then told about a session without a
// PaymentIntent) the two are taken to be the same payment: wrongly seeing a
// duplicate would refund the customer's only payment, which is worse than
// missing a duplicate in a case Stripe practically never produces.
func (b *Booking) samePayment(r paymentRef, paymentIntentID, sessionID string) bool {
	if r.paymentIntentID != "" && paymentIntentID != "" {
		return r.paymentIntentID == paymentIntentID
	}
	rs, fs := r.sessionID, sessionID
	if rs == "" {
		rs = b.sessionID
	}
	if fs == "" {
		fs = b.sessionID
	}
	if rs == "" || fs == "" {
		return true
	}
	return rs == fs
}

func (b *Booking) seen(refs []paymentRef, paymentIntentID, sessionID string) bool {
	for _, r := range refs {
		if b.samePayment(r, paymentIntentID, sessionID) {
			return true
		}
	}
	return false
}

func (b *Booking) refundIssued(refundID string) bool {
	for _, r := range b.refundsIssued {
		if r.RefundID == refundID {
			return true
		}
	}
	return false
}

func validateResourceID(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return fieldErr("resource_id", "is required")
	case utf8.RuneCountInString(s) > MaxResourceIDLen:
		return fieldErr("resource_id", fmt.Sprintf("must be at most %d characters", MaxResourceIDLen))
	case !printable(s):
		return fieldErr("resource_id", "must be printable text")
	case strings.TrimSpace(s) != s:
		return fieldErr("resource_id", "must not start or end with spaces")
	}
	return nil
}

func validateEmail(s string) error {
	const msg = "must be an email address"
	if s == "" {
		return fieldErr("customer_email", "is required")
	}
	if len(s) > MaxEmailLen {
		return fieldErr("customer_email", fmt.Sprintf("must be at most %d bytes", MaxEmailLen))
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return fieldErr("customer_email", msg)
	}
	if !printable(s) || strings.ContainsFunc(s, unicode.IsSpace) {
		return fieldErr("customer_email", msg)
	}
	return nil
}

// CheckStripeID checks the shape of a Stripe object id: the object's prefix
// (e.g. "cs_"), then letters, digits and underscores. It keeps arbitrary text
// out of the event log and out of URL paths without tying us to Stripe's
// exact id lengths. Anything else is a *FieldError naming field.
func CheckStripeID(field, prefix, s string) error {
	if !strings.HasPrefix(s, prefix) || len(s) == len(prefix) || len(s) > maxStripeIDLen {
		return fieldErr(field, fmt.Sprintf("must be a Stripe id starting with %q", prefix))
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return fieldErr(field, fmt.Sprintf("must be a Stripe id starting with %q", prefix))
		}
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}
