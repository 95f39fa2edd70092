package http

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/adapters/http/successpage"
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

// successAnswer is the JSON of GET /bookings/{id}/success (successpage).
type successAnswer = successpage.Answer

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
	if err := successpage.Write(w, a); err != nil {
		s.log.WarnContext(r.Context(), "success page not written", "error", err)
	}
}
