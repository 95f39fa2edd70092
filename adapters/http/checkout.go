package http

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// CheckoutStripe is what the checkout endpoints need from Stripe's API (the
// Stripe adapter's *stripe.Client).
type CheckoutStripe interface {
	CreateCheckoutSession(ctx context.Context, p stripe.CheckoutSessionParams) (stripe.CheckoutSession, error)
	RetrieveCheckoutSession(ctx context.Context, id string) (stripe.CheckoutSession, error)
}

// CheckoutLedger records an opened Checkout Session (postgres.Ledger).
type CheckoutLedger interface {
	OpenCheckoutSession(ctx context.Context, id int64, sessionID, url string, expiresAt time.Time, causationID string) (projections.BookingRow, error)
}

// CheckoutConfig turns on Stripe Checkout: POST /bookings without a
// session_id opens a Checkout Session, and GET /bookings/{id}/success checks
// the payment with Stripe when the customer comes back. Stripe, Ledger and
// PublicURL are required.
type CheckoutConfig struct {
	Stripe CheckoutStripe
	Ledger CheckoutLedger
	// PublicURL is the service's address as customers' browsers reach it
	// (LEDGER_PUBLIC_URL), the base of the success and cancel URLs.
	PublicURL string
	// PublishableKey ("pk_...") is handed to clients with the session, for
	// Stripe.js; "" leaves it out.
	PublishableKey string
	// SessionTTL is how long a session stays payable after the booking was
	// requested: 35 minutes to 24 hours (default 1 hour). Stripe wants 30
	// minutes at least; the margin covers the time between the booking and
	// the session.
	SessionTTL time.Duration
}

// Validate reports a configuration that cannot work.
func (c *CheckoutConfig) Validate() error {
	var errs []error
	if c.Stripe == nil || c.Ledger == nil {
		errs = append(errs, errors.New("http: checkout needs the Stripe client and the ledger"))
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("http: public URL %q must be an absolute http(s) URL without query", c.PublicURL))
	}
	if ttl := c.SessionTTL; ttl != 0 && (ttl < 35*time.Minute || ttl > 24*time.Hour) {
		errs = append(errs, fmt.Errorf("http: checkout session lifetime %s is outside 35m to 24h", ttl))
	}
	return errors.Join(errs...)
}

func (c *CheckoutConfig) sessionTTL() time.Duration {
	if c.SessionTTL == 0 {
		return time.Hour
	}
	return c.SessionTTL
}

// checkoutIdempotencyKey names the one session of a booking. The creation
// time keeps keys apart when booking ids are reused (a fresh database),
// since Stripe remembers keys for 24 hours.
func checkoutIdempotencyKey(row projections.BookingRow) string {
	return fmt.Sprintf("checkout-session-%d-%d", row.ID, row.CreatedAt.UnixMicro())
}

// openCheckout answers POST /bookings for a booking just created without a
// session: it opens the Checkout Session, records CheckoutSessionOpened and
// answers 201 with the row, checkout_url and the publishable key; 502 when
// Stripe fails (the booking stays pending, without a session).
func (s *server) openCheckout(w http.ResponseWriter, r *http.Request, row projections.BookingRow, causationID string) {
	c := s.cfg.Checkout
	log := s.log.With("booking_id", row.ID)
	base := strings.TrimSuffix(c.PublicURL, "/") + "/bookings/" + strconv.FormatInt(row.ID, 10)
	// Every parameter derives from the booking, so that a repeated request
	// matches the first one and Stripe's idempotency returns its session.
	params := stripe.CheckoutSessionParams{
		BookingID:      row.ID,
		Amount:         row.Amount,
		Currency:       row.Currency,
		ProductName:    fmt.Sprintf("%s, %s to %s", row.ResourceID, row.CheckIn, row.CheckOut),
		CustomerEmail:  row.CustomerEmail,
		SuccessURL:     base + "/success?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:      base + "/success?cancelled=true",
		ExpiresAt:      row.CreatedAt.Add(c.sessionTTL()).Truncate(time.Second),
		IdempotencyKey: checkoutIdempotencyKey(row),
	}
	sess, err := c.Stripe.CreateCheckoutSession(r.Context(), params)
	if err != nil {
		log.ErrorContext(r.Context(), "Checkout Session not created", "outcome", "error", "error", err)
		writeJSON(w, http.StatusBadGateway, map[string]any{
			"error":      fmt.Sprintf("booking %d was created but Stripe did not open a Checkout Session; it stays pending without one", row.ID),
			"booking_id": row.ID,
		})
		return
	}
	row, err = c.Ledger.OpenCheckoutSession(r.Context(), row.ID, sess.ID, sess.URL, sess.ExpiresAt, causationID)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	log.InfoContext(r.Context(), "Checkout Session opened", "session_id", sess.ID)
	w.Header().Set("Location", "/bookings/"+strconv.FormatInt(row.ID, 10))
	writeJSON(w, http.StatusCreated, struct {
		BookingID int64 `json:"booking_id"`
		projections.BookingRow
		CheckoutURL       string    `json:"checkout_url"`
		CheckoutExpiresAt time.Time `json:"checkout_expires_at"`
		PublishableKey    string    `json:"publishable_key,omitempty"`
	}{row.ID, row, sess.URL, sess.ExpiresAt, c.PublishableKey})
}

// successAnswer is the JSON of GET /bookings/{id}/success. Without a
// checked session only the statuses are shown: the page needs no token.
type successAnswer struct {
	BookingID     int64                `json:"booking_id"`
	Status        domain.Status        `json:"status"`
	PaymentStatus domain.PaymentStatus `json:"payment_status"`
	// Checked is true when the session was retrieved from Stripe.
	Checked               bool   `json:"checked"`
	SessionID             string `json:"session_id,omitempty"`
	CheckoutStatus        string `json:"checkout_status,omitempty"`
	CheckoutPaymentStatus string `json:"checkout_payment_status,omitempty"`
	Amount                int64  `json:"amount,omitempty"`
	Currency              string `json:"currency,omitempty"`
	// Outcome is what the check did: "recorded" (events were appended
	// now), "already_recorded" (the webhook or an earlier visit came
	// first), "not_paid" or "not_checked".
	Outcome string `json:"outcome"`
}

// checkoutSuccess is the redirect fallback. Stripe sends the customer to
// /bookings/{id}/success?session_id=cs_... after paying. The session is
// retrieved from Stripe (the query string is only a pointer), must belong to
// the booking, and when it is paid the payment goes through the webhook's
// decision path as a Stripe delivery from source "redirect" with event id
// "redirect:<session id>": whichever of the redirect and the webhook comes
// second records nothing, so a payment confirms once.
//
// Answers: 200 with a small HTML page, or JSON on Accept: application/json;
// 400 for a malformed id or session id; 404 for an unknown booking or a
// session that is not the booking's; 502 when Stripe cannot be asked; 503
// without Stripe configured. Without session_id (the cancel URL) Stripe is
// not asked and only the statuses are shown.
func (s *server) checkoutSuccess(w http.ResponseWriter, r *http.Request) {
	c := s.cfg.Checkout
	if c == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "Stripe API not configured"})
		return
	}
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		writeError(w, r, s.log, &domain.FieldError{Field: "id", Msg: "must be a positive integer"})
		return
	}
	ctx := r.Context()
	row, err := s.cfg.Ledger.GetBooking(ctx, id)
	if errors.Is(err, domain.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "booking not found"})
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	answer := successAnswer{BookingID: row.ID, Status: row.Status, PaymentStatus: row.PaymentStatus, Outcome: "not_checked"}
	sessionID := r.URL.Query().Get("session_id")
	if sessionID == "" {
		s.renderSuccess(w, r, answer)
		return
	}
	if err := stripe.CheckSessionID(sessionID); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	errNotHers := fmt.Errorf("checkout session not found for booking %d: %w", id, domain.ErrNotFound)
	if row.SessionID != nil && *row.SessionID != sessionID {
		// Cheap refusal: this page needs no token, so an unknown visitor
		// must not be able to make the ledger call Stripe at will.
		writeError(w, r, s.log, errNotHers)
		return
	}
	sess, err := c.Stripe.RetrieveCheckoutSession(ctx, sessionID)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		writeError(w, r, s.log, errNotHers)
		return
	case errors.Is(err, domain.ErrInvalid):
		writeError(w, r, s.log, err)
		return
	case err != nil:
		s.log.ErrorContext(ctx, "Redirect check failed", "booking_id", id, "session_id", sessionID, "outcome", "error", "error", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "could not check the payment with Stripe; reload the page in a moment"})
		return
	}
	if owner, ok := sess.BookingID(); !(ok && owner == id) && (row.SessionID == nil || *row.SessionID != sess.ID) {
		writeError(w, r, s.log, errNotHers)
		return
	}
	answer.Checked = true
	answer.SessionID = sess.ID
	answer.CheckoutStatus = sess.Status
	answer.CheckoutPaymentStatus = sess.PaymentStatus
	answer.Amount, answer.Currency = row.Amount, row.Currency
	answer.Outcome = "not_paid"
	if sess.PaymentStatus == "paid" {
		res, err := s.cfg.Ledger.Ingest(ctx, redirectDelivery(id, sess, s.cfg.Now()))
		if err != nil {
			s.log.WarnContext(ctx, "Redirect check not recorded", "booking_id", id, "session_id", sess.ID, "outcome", "error", "error", err)
			writeError(w, r, s.log, err)
			return
		}
		answer.Outcome = "already_recorded"
		if len(res.Events) > 0 {
			answer.Outcome = "recorded"
		}
		for _, e := range res.Events {
			switch e.Type {
			case domain.EventBookingConfirmed:
				s.log.InfoContext(ctx, fmt.Sprintf("Booking %d confirmed successfully via redirect", id),
					"booking_id", id, "session_id", sess.ID, "outcome", string(res.Outcome))
			case domain.EventAvailabilityConflict:
				s.log.WarnContext(ctx, fmt.Sprintf("Booking %d cancelled due to availability conflict", id),
					"booking_id", id, "session_id", sess.ID, "outcome", string(res.Outcome))
			}
		}
		if res.Booking.ID != 0 {
			answer.Status, answer.PaymentStatus = res.Booking.Status, res.Booking.PaymentStatus
		}
	}
	s.renderSuccess(w, r, answer)
}

// redirectDelivery is the paid session as a Stripe delivery for the
// webhook's decision path: a completed session, fetched from Stripe's API,
// its raw JSON kept, no signature, source "redirect", and one event id per
// session so that repeated visits are duplicates.
func redirectDelivery(bookingID int64, sess stripe.CheckoutSession, now time.Time) postgres.StripeDelivery {
	return postgres.StripeDelivery{
		EventID:    "redirect:" + sess.ID,
		Type:       postgres.StripeCheckoutCompleted,
		APIVersion: stripe.APIVersion,
		Livemode:   sess.Livemode,
		Created:    now,
		Raw:        sess.Raw,
		Source:     string(domain.SourceRedirect),
		ReceivedAt: now,
		Handled:    true,
		Lookup:     postgres.BookingLookup{BookingIDs: []int64{bookingID}, SessionID: sess.ID, PaymentIntentID: sess.PaymentIntentID},
		Payment: domain.Payment{
			SessionID:       sess.ID,
			PaymentIntentID: sess.PaymentIntentID,
			Amount:          sess.AmountTotal,
			Currency:        sess.Currency,
			PaymentStatus:   sess.PaymentStatus,
			Source:          string(domain.SourceRedirect),
		},
	}
}

func (s *server) renderSuccess(w http.ResponseWriter, r *http.Request, a successAnswer) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, http.StatusOK, a)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if err := successPage.Execute(w, successView{successAnswer: a, Message: successMessage(a), Price: formatMoney(a.Amount, a.Currency)}); err != nil {
		s.log.WarnContext(r.Context(), "success page not written", "error", err)
	}
}

type successView struct {
	successAnswer
	Message string
	Price   string
}

func successMessage(a successAnswer) string {
	switch {
	case a.Status == domain.StatusConfirmed && a.PaymentStatus == domain.PaymentStatusPaid:
		return "Payment received. Your booking is confirmed."
	case a.Status == domain.StatusCancelled && a.PaymentStatus == domain.PaymentStatusRefunded:
		return "Your booking was cancelled and your payment has been refunded."
	case a.Status == domain.StatusCancelled && a.PaymentStatus == domain.PaymentStatusPaid:
		return "Your payment arrived after these dates were taken. The booking is cancelled and your payment will be refunded."
	case a.Status == domain.StatusCancelled:
		return "This booking is cancelled."
	case a.CheckoutStatus == "complete" && a.CheckoutPaymentStatus == "unpaid":
		return "Your payment is being processed. This page shows the result once your bank confirms it."
	default:
		return "We have not received your payment yet."
	}
}

// zeroDecimal are the currencies Stripe counts in whole units.
var zeroDecimal = map[string]bool{"bif": true, "clp": true, "djf": true, "gnf": true, "jpy": true, "kmf": true,
	"krw": true, "mga": true, "pyg": true, "rwf": true, "ugx": true, "vnd": true, "vuv": true, "xaf": true, "xof": true, "xpf": true}

func formatMoney(amount int64, currency string) string {
	if currency == "" {
		return ""
	}
	code := strings.ToUpper(currency)
	if zeroDecimal[currency] {
		return fmt.Sprintf("%d %s", amount, code)
	}
	return fmt.Sprintf("%d.%02d %s", amount/100, amount%100, code)
}

var successPage = template.Must(template.New("success").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Booking {{.BookingID}}</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">
<h1>Booking {{.BookingID}}</h1>
<p>{{.Message}}</p>
<dl>
<dt>Status</dt><dd id="status">{{.Status}}</dd>
<dt>Payment</dt><dd id="payment_status">{{.PaymentStatus}}</dd>
{{- if .Price}}
<dt>Amount</dt><dd id="amount">{{.Price}}</dd>
{{- end}}
</dl>
</body>
</html>
`))
