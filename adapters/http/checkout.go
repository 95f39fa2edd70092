package http

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// openCheckout answers POST /bookings for a booking just created without a
// session: the use case opens the Checkout Session and records it; 201 with
// the row, checkout_url and the publishable key; 502 when Stripe fails (the
// booking stays pending, without a session).
func (s *server) openCheckout(w http.ResponseWriter, r *http.Request, row projections.BookingRow, causationID string) {
	row, sess, err := s.cfg.Ledger.OpenCheckout(r.Context(), row, causationID)
	if errors.Is(err, app.ErrPaymentProvider) {
		s.log.ErrorContext(r.Context(), "Checkout Session not created", "booking_id", row.ID, "outcome", "error", "error", err)
		writeJSON(w, http.StatusBadGateway, map[string]any{
			"error":      fmt.Sprintf("booking %d was created but Stripe did not open a Checkout Session; it stays pending without one", row.ID),
			"booking_id": row.ID,
		})
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.Header().Set("Location", "/bookings/"+strconv.FormatInt(row.ID, 10))
	writeJSON(w, http.StatusCreated, struct {
		BookingID int64 `json:"booking_id"`
		projections.BookingRow
		CheckoutURL       string    `json:"checkout_url"`
		CheckoutExpiresAt time.Time `json:"checkout_expires_at"`
		PublishableKey    string    `json:"publishable_key,omitempty"`
	}{row.ID, row, sess.URL, sess.ExpiresAt, s.cfg.PublishableKey})
}

// successAnswer is the JSON of GET /bookings/{id}/success. The page needs
// no token, so it shows a booking's statuses only to the holder of the
// booking's own Checkout Session id; without one (the cancel URL) it shows
// nothing about the booking.
type successAnswer struct {
	BookingID     int64                `json:"booking_id"`
	Status        domain.Status        `json:"status,omitempty"`
	PaymentStatus domain.PaymentStatus `json:"payment_status,omitempty"`
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
// /bookings/{id}/success?session_id=cs_... after paying. Only the session
// recorded for the booking opens the page (its id is unguessable; booking
// ids are not): it is retrieved from Stripe (the query string is only a
// pointer), and when it is paid the payment goes through the webhook's
// decision path as a Stripe delivery from source "redirect" with event id
// "redirect:<session id>": whichever of the redirect and the webhook comes
// second records nothing, so a payment confirms once.
//
// Answers: 200 with a small HTML page, or JSON on Accept: application/json;
// 400 for a malformed id or session id; 404 {"error": "booking not found"}
// alike for an unknown booking and for a session that is not the
// booking's (nothing tells one from the other); 502 when Stripe cannot be
// asked; 503 without Stripe configured. Without session_id (the cancel URL)
// neither the database nor Stripe is asked, and the page says only that
// no payment was taken.
func (s *server) checkoutSuccess(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Ledger.CheckoutEnabled() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "Stripe API not configured"})
		return
	}
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		writeError(w, r, s.log, &domain.FieldError{Field: "id", Msg: "must be a positive integer"})
		return
	}
	ctx := r.Context()
	sessionID := r.URL.Query().Get("session_id")
	if sessionID == "" {
		s.renderSuccess(w, r, successAnswer{BookingID: id, Outcome: string(app.RedirectNotChecked)})
		return
	}
	red, err := s.cfg.Ledger.ConfirmRedirect(ctx, id, sessionID)
	switch {
	case errors.Is(err, app.ErrBookingNotFound), errors.Is(err, domain.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "booking not found"})
		return
	case errors.Is(err, app.ErrPaymentProvider):
		s.log.ErrorContext(ctx, "Redirect check failed", "booking_id", id, "session_id", sessionID, "outcome", "error", "error", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "could not check the payment with Stripe; reload the page in a moment"})
		return
	case err != nil:
		// writeError logs internal failures with the path (the booking).
		writeError(w, r, s.log, err)
		return
	}
	answer := successAnswer{BookingID: red.Booking.ID, Status: red.Booking.Status, PaymentStatus: red.Booking.PaymentStatus, Outcome: string(red.Outcome)}
	if red.Outcome != app.RedirectNotChecked {
		answer.Checked = true
		answer.SessionID = red.Session.ID
		answer.CheckoutStatus = red.Session.Status
		answer.CheckoutPaymentStatus = red.Session.PaymentStatus
		answer.Amount, answer.Currency = red.Booking.Amount, red.Booking.Currency
	}
	s.renderSuccess(w, r, answer)
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
	case a.Outcome == string(app.RedirectNotChecked):
		return "No payment was taken. You can close this page."
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
{{- if .Status}}
<dt>Status</dt><dd id="status">{{.Status}}</dd>
<dt>Payment</dt><dd id="payment_status">{{.PaymentStatus}}</dd>
{{- end}}
{{- if .Price}}
<dt>Amount</dt><dd id="amount">{{.Price}}</dd>
{{- end}}
</dl>
</body>
</html>
`))
