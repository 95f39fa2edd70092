package domain

import (
	"fmt"
	"time"
)

// Payment is what a Stripe event (or the redirect check, or an API call) says
// about a payment, already extracted by the adapter. The decision functions
// validate it; they never see Stripe's objects.
type Payment struct {
	// SessionID is the Checkout Session id ("cs_..."), "" if unknown.
	SessionID string
	// PaymentIntentID is the PaymentIntent id ("pi_..."), "" if unknown. At
	// least one of the two ids is required.
	PaymentIntentID string
	// Amount in minor units and Currency (any case) of the money received.
	// Required for successes, ignored for failures.
	Amount   int64
	Currency string
	// PaymentStatus is Checkout's payment_status: "paid", "unpaid",
	// "no_payment_required"; "" for payment_intent events, treated as paid.
	PaymentStatus string
	// FailureCode and FailureMessage describe a failure (last_payment_error).
	FailureCode, FailureMessage string
	// Source is "webhook", "redirect", "api" or "replay".
	Source string
	// StripeEventType is the Stripe event type that reported the fact, e.g.
	// "checkout.session.completed"; "" when not from an event.
	StripeEventType string
}

// Stay is a confirmed stay of another booking of the same resource, as the
// store knows it when deciding.
type Stay struct {
	BookingID BookingID
	Range     DateRange
}

// Checkout's payment_status values, as Stripe spells them.
const (
	checkoutPaid              = "paid"
	checkoutUnpaid            = "unpaid"
	checkoutNoPaymentRequired = "no_payment_required"
)

// FindConflict returns the confirmed stay that overlaps stay, ignoring stays of
// booking self (a booking never conflicts with itself, which matters when a
// confirmed booking is paid again). Overlap is half-open: adjacent stays do
// not conflict. When several overlap, the one with the lowest booking id is
// returned, so the answer does not depend on the order the store listed them
// in. The caller passes stays of the same resource only.
func FindConflict(self BookingID, stay DateRange, confirmed []Stay) (Stay, bool) {
	var found Stay
	ok := false
	for _, c := range confirmed {
		if c.BookingID == self || !c.Range.Overlaps(stay) {
			continue
		}
		if !ok || c.BookingID < found.BookingID {
			found, ok = c, true
		}
	}
	return found, ok
}

// DecidePaymentSucceeded decides what a successful payment
// (checkout.session.completed, payment_intent.succeeded, the redirect check)
// means for booking b, given the confirmed stays of other bookings of the
// same resource. It returns the events to append, in order; none when there
// is nothing new to record:
//
//   - the same payment already recorded (as success or as mismatch), matched
//     by PaymentIntent id, or by session id when either side lacks the
//     PaymentIntent id: nothing, so every channel and redelivery of one
//     payment yields a single PaymentSucceeded;
//   - PaymentStatus "unpaid" (a delayed method; the async events follow) or
//     "no_payment_required" (a booking always costs money): nothing;
//   - amount or currency different from the booking's price: PaymentMismatch;
//   - booking already paid by another payment: PaymentSucceeded and
//     RefundRequested{duplicate_payment};
//   - booking confirmed but not paid (its payment was refunded): PaymentSucceeded;
//   - stay overlapping a confirmed stay: PaymentSucceeded,
//     AvailabilityConflict, BookingCancelled{availability_conflict},
//     RefundRequested{availability_conflict};
//   - otherwise, including a booking cancelled by a failure or by session
//     expiry: PaymentSucceeded, BookingConfirmed.
//
// It returns an error wrapping ErrInvalid, and no events, for a nil or
// unrequested booking or an invalid Payment (*FieldError naming
// "session_id", "payment_intent_id", "amount", "currency", "payment_status"
// or "source").
func DecidePaymentSucceeded(b *Booking, p Payment, confirmed []Stay) ([]Event, error) {
	return decideSucceeded(b, p, confirmed, false)
}

// DecideAsyncPaymentSucceeded decides checkout.session.async_payment_succeeded:
// the delayed payment of a session completed as "unpaid" has now succeeded.
// It behaves exactly like DecidePaymentSucceeded, and additionally requires
// p.SessionID, which that event always carries (ErrInvalid otherwise).
func DecideAsyncPaymentSucceeded(b *Booking, p Payment, confirmed []Stay) ([]Event, error) {
	return decideSucceeded(b, p, confirmed, true)
}

func decideSucceeded(b *Booking, p Payment, confirmed []Stay, requireSession bool) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var errs fieldErrors
	source := validatePaymentIDs(&errs, p, requireSession)
	if p.Amount < 0 {
		errs.Add("amount", "must not be negative")
	}
	currency, ok := normaliseCurrency(p.Currency)
	if !ok {
		errs.Add("currency", "must be a three-letter ISO 4217 code")
	}
	switch p.PaymentStatus {
	case "", checkoutPaid, checkoutUnpaid, checkoutNoPaymentRequired:
	default:
		errs.Add("payment_status", fmt.Sprintf("unknown Checkout payment_status %q", p.PaymentStatus))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}

	if p.PaymentStatus == checkoutUnpaid || p.PaymentStatus == checkoutNoPaymentRequired {
		return nil, nil
	}
	if b.seen(b.succeeded, p.PaymentIntentID, p.SessionID) || b.seen(b.mismatched, p.PaymentIntentID, p.SessionID) {
		return nil, nil
	}
	if p.Amount != b.price.Amount || currency != b.price.Currency {
		return []Event{PaymentMismatch{
			PaymentIntentID:  p.PaymentIntentID,
			SessionID:        p.SessionID,
			ExpectedAmount:   b.price.Amount,
			ExpectedCurrency: b.price.Currency,
			Amount:           p.Amount,
			Currency:         currency,
		}}, nil
	}

	succeeded := PaymentSucceeded{
		PaymentIntentID: p.PaymentIntentID,
		SessionID:       p.SessionID,
		Amount:          p.Amount,
		Currency:        currency,
		Source:          source,
		StripeEventType: p.StripeEventType,
	}
	refund := func(reason RefundReason) RefundRequested {
		return RefundRequested{PaymentIntentID: p.PaymentIntentID, Amount: p.Amount, Currency: currency, Reason: reason}
	}

	if b.holdsPayment() {
		// The customer paid twice (e.g. two Checkout Sessions). The money is
		// recorded and given back; the booking keeps its first payment.
		return []Event{succeeded, refund(RefundDuplicatePayment)}, nil
	}
	if b.status == StatusConfirmed {
		// It already holds its dates; checking availability again could
		// only find itself, which FindConflict ignores anyway.
		return []Event{succeeded}, nil
	}
	if c, conflict := FindConflict(b.id, b.stay, confirmed); conflict {
		return []Event{
			succeeded,
			AvailabilityConflict{
				ResourceID:           b.resourceID,
				CheckIn:              b.stay.CheckInString(),
				CheckOut:             b.stay.CheckOutString(),
				ConflictingBookingID: c.BookingID,
			},
			BookingCancelled{Reason: CancelAvailabilityConflict},
			refund(RefundAvailabilityConflict),
		}, nil
	}
	return []Event{
		succeeded,
		BookingConfirmed{ResourceID: b.resourceID, CheckIn: b.stay.CheckInString(), CheckOut: b.stay.CheckOutString()},
	}, nil
}

// DecidePaymentFailed decides what a failed payment
// (payment_intent.payment_failed) means for booking b:
//
//   - a failure of the same payment already recorded: nothing;
//   - booking paid or refunded: nothing, a failure never downgrades a payment
//     (Stripe delivers out of order, and a PaymentIntent may fail before it
//     succeeds);
//   - booking pending: PaymentFailed, BookingCancelled{payment_failed};
//   - booking already cancelled (by an earlier failure or expiry):
//     PaymentFailed only.
//
// It returns an error wrapping ErrInvalid for a nil or unrequested booking or
// an invalid Payment (*FieldError naming "session_id", "payment_intent_id"
// or "source"). Amount, currency and payment status are not used.
func DecidePaymentFailed(b *Booking, p Payment) ([]Event, error) {
	return decideFailed(b, p, false)
}

// DecideAsyncPaymentFailed decides checkout.session.async_payment_failed. It
// behaves exactly like DecidePaymentFailed and additionally requires
// p.SessionID (ErrInvalid otherwise).
func DecideAsyncPaymentFailed(b *Booking, p Payment) ([]Event, error) {
	return decideFailed(b, p, true)
}

func decideFailed(b *Booking, p Payment, requireSession bool) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var errs fieldErrors
	source := validatePaymentIDs(&errs, p, requireSession)
	if err := errs.Err(); err != nil {
		return nil, err
	}

	if b.seen(b.failed, p.PaymentIntentID, p.SessionID) {
		return nil, nil
	}
	// paymentStatus is the status before refunds: paid also when refunded.
	if b.paymentStatus == PaymentStatusPaid {
		return nil, nil
	}
	failed := PaymentFailed{
		PaymentIntentID: p.PaymentIntentID,
		SessionID:       p.SessionID,
		FailureCode:     p.FailureCode,
		FailureMessage:  p.FailureMessage,
		Source:          source,
		StripeEventType: p.StripeEventType,
	}
	if b.status == StatusPending {
		return []Event{failed, BookingCancelled{Reason: CancelPaymentFailed}}, nil
	}
	return []Event{failed}, nil
}

// DecideSessionExpired decides checkout.session.expired: a pending, unpaid
// booking whose Checkout Session is sessionID (or that knows no session)
// is cancelled with BookingCancelled{session_expired}. Any other booking, and
// an expired session that is not the booking's current one, gives no events.
//
// It returns an error wrapping ErrInvalid for a nil or unrequested booking or
// a sessionID that is not "cs_..." (*FieldError naming "session_id").
func DecideSessionExpired(b *Booking, sessionID string) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	if err := CheckStripeID("session_id", "cs_", sessionID); err != nil {
		return nil, err
	}
	if b.status != StatusPending || b.paymentStatus != PaymentStatusUnpaid {
		return nil, nil
	}
	if b.sessionID != "" && b.sessionID != sessionID {
		// The customer was sent to a newer session; the old one expiring
		// must not cancel the booking under them.
		return nil, nil
	}
	return []Event{BookingCancelled{Reason: CancelSessionExpired}}, nil
}

// DecideCheckoutSessionOpened records that a Checkout Session was created for
// b: CheckoutSessionOpened, or nothing when b already has that session id.
//
// It returns an error wrapping ErrInvalid for a nil or unrequested booking,
// a malformed session id, an empty url or a zero expiresAt (*FieldError
// naming "session_id", "url", "expires_at"), and for a booking that is not
// awaiting payment (confirmed, paid or refunded), because a session opened
// then could only produce a duplicate payment.
func DecideCheckoutSessionOpened(b *Booking, sessionID, url string, expiresAt time.Time) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var errs fieldErrors
	errs.AddErr(CheckStripeID("session_id", "cs_", sessionID))
	if url == "" {
		errs.Add("url", "is required")
	}
	if expiresAt.IsZero() {
		errs.Add("expires_at", "is required")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if b.sessionID == sessionID {
		return nil, nil
	}
	if b.status == StatusConfirmed || b.paymentStatus == PaymentStatusPaid {
		return nil, fmt.Errorf("%w: booking %d is %s and %s, not awaiting payment", ErrInvalid, b.id, b.status, b.PaymentStatus())
	}
	return []Event{CheckoutSessionOpened{SessionID: sessionID, URL: url, ExpiresAt: expiresAt.UTC()}}, nil
}

// DecideRefundIssued records a refund Stripe accepted for booking b:
// RefundIssued (with the currency lower-cased), or nothing when a refund with
// the same RefundID is already recorded, so retrying a refund call is safe.
//
// It returns an error wrapping ErrInvalid for a nil or unrequested booking,
// or a *FieldError naming "refund_id" (empty), "payment_intent_id" (not
// "pi_..."), "amount" (not positive) or "currency".
func DecideRefundIssued(b *Booking, r RefundIssued) ([]Event, error) {
	if err := checkBooking(b); err != nil {
		return nil, err
	}
	var errs fieldErrors
	if r.RefundID == "" {
		errs.Add("refund_id", "is required")
	}
	errs.AddErr(CheckStripeID("payment_intent_id", "pi_", r.PaymentIntentID))
	m, err := NewMoney(r.Amount, r.Currency)
	errs.AddErr(err)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if b.refundIssued(r.RefundID) {
		return nil, nil
	}
	r.Currency = m.Currency
	return withRefundedChange(b, []Event{r})
}

func checkBooking(b *Booking) error {
	if b == nil {
		return fmt.Errorf("%w: no booking to decide on", ErrInvalid)
	}
	if b.version == 0 {
		return fmt.Errorf("%w: booking %d was never requested", ErrInvalid, b.id)
	}
	return nil
}

// validatePaymentIDs checks the ids and source shared by every payment fact
// and returns the parsed source.
func validatePaymentIDs(errs *fieldErrors, p Payment, requireSession bool) PaymentSource {
	switch {
	case p.SessionID != "":
		errs.AddErr(CheckStripeID("session_id", "cs_", p.SessionID))
	case requireSession:
		errs.Add("session_id", "is required")
	case p.PaymentIntentID == "":
		errs.Add("payment_intent_id", "a PaymentIntent id or a Checkout Session id is required")
	}
	if p.PaymentIntentID != "" {
		errs.AddErr(CheckStripeID("payment_intent_id", "pi_", p.PaymentIntentID))
	}
	source, err := ParsePaymentSource(p.Source)
	if err != nil {
		errs.Add("source", `must be "webhook", "redirect", "api" or "replay"`)
	}
	return source
}
