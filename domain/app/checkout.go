package app

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// CheckoutConfig turns on Stripe Checkout: a booking created without a
// session gets a Checkout Session, and the redirect check asks Stripe about
// the payment when the customer comes back. Payments and PublicURL are
// required.
type CheckoutConfig struct {
	Payments Payments
	// PublicURL is the service's address as customers' browsers reach it
	// (LEDGER_PUBLIC_URL), the base of the success and cancel URLs.
	PublicURL string
	// SessionTTL is how long a session stays payable after the booking was
	// requested: 35 minutes to 24 hours (default 1 hour). Stripe wants 30
	// minutes at least; the margin covers the time between the booking and
	// the session.
	SessionTTL time.Duration
}

// Validate reports a configuration that cannot work.
func (c *CheckoutConfig) Validate() error {
	var errs []error
	if c.Payments == nil {
		errs = append(errs, errors.New("app: checkout needs the Stripe client"))
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("app: public URL %q must be an absolute http(s) URL without query", c.PublicURL))
	}
	if ttl := c.SessionTTL; ttl != 0 && (ttl < 35*time.Minute || ttl > 24*time.Hour) {
		errs = append(errs, fmt.Errorf("app: checkout session lifetime %s is outside 35m to 24h", ttl))
	}
	return errors.Join(errs...)
}

func (c *CheckoutConfig) sessionTTL() time.Duration {
	if c.SessionTTL == 0 {
		return time.Hour
	}
	return c.SessionTTL
}

// ErrBookingNotFound is the redirect check's error for an unknown booking.
var ErrBookingNotFound = fmt.Errorf("booking not found: %w", domain.ErrNotFound)

// ErrPaymentProvider wraps a failure of the payment provider (Stripe did
// not answer, or refused): the HTTP edge answers 502.
var ErrPaymentProvider = errors.New("payment provider failed")

// checkoutIdempotencyKey names the one session of a booking. The creation
// time keeps keys apart when booking ids are reused (a fresh database),
// since Stripe remembers keys for 24 hours.
func checkoutIdempotencyKey(row projections.BookingRow) string {
	return fmt.Sprintf("checkout-session-%d-%d", row.ID, row.CreatedAt.UnixMicro())
}

// OpenCheckout opens the Checkout Session of a booking just created without
// one and records CheckoutSessionOpened (the status row's session_id).
// Every parameter derives from the booking, so that a repeated call matches
// the first one and Stripe's idempotency returns its session.
//
// Errors: ErrNoPayments without Checkout; an error wrapping
// ErrPaymentProvider when Stripe fails (the booking stays pending without a
// session); domain.ErrInvalid when the booking no longer awaits payment.
func (s *Service) OpenCheckout(ctx context.Context, row projections.BookingRow, causationID string) (projections.BookingRow, CheckoutSession, error) {
	c := s.cfg.Checkout
	if c == nil {
		return row, CheckoutSession{}, ErrNoPayments
	}
	base := strings.TrimSuffix(c.PublicURL, "/") + "/bookings/" + strconv.FormatInt(row.ID, 10)
	sess, err := c.Payments.CreateCheckoutSession(ctx, CheckoutSessionParams{
		BookingID:      row.ID,
		Amount:         row.Amount,
		Currency:       row.Currency,
		ProductName:    fmt.Sprintf("%s, %s to %s", row.ResourceID, row.CheckIn, row.CheckOut),
		CustomerEmail:  row.CustomerEmail,
		SuccessURL:     base + "/success?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:      base + "/success?cancelled=true",
		ExpiresAt:      row.CreatedAt.Add(c.sessionTTL()).Truncate(time.Second),
		IdempotencyKey: checkoutIdempotencyKey(row),
	})
	if err != nil {
		return row, CheckoutSession{}, fmt.Errorf("booking %d: Checkout Session not created: %w: %w", row.ID, ErrPaymentProvider, err)
	}
	row, err = retry(ctx, func() (projections.BookingRow, error) {
		return s.cfg.Bookings.Update(ctx, row.ID, causationID, func(b *domain.Booking) ([]domain.Event, error) {
			events, err := domain.DecideCheckoutSessionOpened(b, sess.ID, sess.URL, sess.ExpiresAt)
			if err != nil {
				return nil, fmt.Errorf("booking %d: %w", row.ID, err)
			}
			return events, nil
		})
	})
	if err != nil {
		return row, sess, err
	}
	s.log.InfoContext(ctx, "Checkout Session opened", "booking_id", row.ID, "session_id", sess.ID)
	return row, sess, nil
}

// RedirectOutcome is what a redirect check did.
type RedirectOutcome string

// Outcomes of ConfirmRedirect.
const (
	// RedirectNotChecked: no session to check; Stripe was not asked.
	RedirectNotChecked RedirectOutcome = "not_checked"
	// RedirectNotPaid: the session is not paid (yet).
	RedirectNotPaid RedirectOutcome = "not_paid"
	// RedirectRecorded: the payment was recorded now.
	RedirectRecorded RedirectOutcome = "recorded"
	// RedirectAlreadyRecorded: the webhook or an earlier visit came first.
	RedirectAlreadyRecorded RedirectOutcome = "already_recorded"
)

// Redirect is the answer of a redirect check.
type Redirect struct {
	// Booking is the status row, after the payment was recorded.
	Booking projections.BookingRow
	// Session is the session as Stripe answered (zero when not checked).
	Session CheckoutSession
	Outcome RedirectOutcome
}

// ConfirmRedirect is the redirect fallback: Stripe sends the customer to
// the booking's success page with the session id after paying. The session
// is retrieved from Stripe (the query string is only a pointer), must belong
// to the booking, and when it is paid the payment goes through Ingest as a
// delivery from source "redirect" with event id "redirect:<session id>":
// whichever of the redirect and the webhook comes second records nothing,
// so a payment confirms once. With sessionID "" (the cancel URL) Stripe is
// not asked.
//
// Errors: ErrBookingNotFound for an unknown booking; domain.ErrNotFound for a
// session that is not the booking's; domain.ErrInvalid for a malformed session id; ErrNoPayments
// without Checkout; ErrPaymentProvider when Stripe cannot be asked.
func (s *Service) ConfirmRedirect(ctx context.Context, id int64, sessionID string) (Redirect, error) {
	c := s.cfg.Checkout
	if c == nil {
		return Redirect{}, ErrNoPayments
	}
	row, err := s.cfg.Bookings.GetBooking(ctx, id)
	if errors.Is(err, domain.ErrNotFound) {
		return Redirect{}, ErrBookingNotFound
	}
	if err != nil {
		return Redirect{}, err
	}
	out := Redirect{Booking: row, Outcome: RedirectNotChecked}
	if sessionID == "" {
		return out, nil
	}
	if err := domain.CheckStripeID("session_id", "cs_", sessionID); err != nil {
		return out, err
	}
	errNotHers := fmt.Errorf("checkout session not found for booking %d: %w", id, domain.ErrNotFound)
	if row.SessionID == nil || *row.SessionID != sessionID {
		// Cheap refusal: the success page needs no token, so only the
		// booking's own (unguessable) session opens it, and an unknown
		// visitor cannot make the ledger call Stripe at will. A booking
		// without a recorded session has no success page: its payment
		// still arrives by the webhook.
		return out, errNotHers
	}
	sess, err := c.Payments.RetrieveCheckoutSession(ctx, sessionID)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		return out, errNotHers
	case errors.Is(err, domain.ErrInvalid):
		return out, err
	case err != nil:
		return out, fmt.Errorf("booking %d: redirect check of %s: %w: %w", id, sessionID, ErrPaymentProvider, err)
	}
	if sess.ID != sessionID {
		return out, errNotHers
	}
	out.Session = sess
	out.Outcome = RedirectNotPaid
	if sess.PaymentStatus != "paid" {
		return out, nil
	}
	res, err := s.Ingest(ctx, c.Payments.RedirectDelivery(id, sess, s.cfg.Now()))
	if err != nil {
		return out, err
	}
	out.Outcome = RedirectAlreadyRecorded
	if len(res.Events) > 0 {
		out.Outcome = RedirectRecorded
	}
	if res.Booking.ID != 0 {
		out.Booking = res.Booking
	}
	return out, nil
}
