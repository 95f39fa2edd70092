package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// createBookingRequest is the body of POST /bookings.
type createBookingRequest struct {
	ResourceID    string `json:"resource_id"`
	CheckIn       string `json:"check_in"`
	CheckOut      string `json:"check_out"`
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	CustomerEmail string `json:"customer_email"`
	SessionID     string `json:"session_id"`
}

func (s *server) createBooking(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, 64<<10)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var req createBookingRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, r, s.log, jsonError(err))
		return
	}
	if dec.More() {
		writeError(w, r, s.log, fmt.Errorf("invalid JSON: data after the object: %w", domain.ErrInvalid))
		return
	}
	causationID := "api:" + requestID(r)
	if recovered(r.Context()) {
		// The first request with this key stored no answer (it crashed,
		// or Checkout failed after the booking was created): the booking
		// it created, if any, is answered, and its Checkout opened.
		row, ok, err := s.cfg.Ledger.FindCaused(r.Context(), causationID)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if ok {
			s.createdBooking(w, r, row, req.SessionID, causationID)
			return
		}
	}
	row, err := s.cfg.Ledger.CreateBooking(r.Context(), domain.NewBookingParams{
		ResourceID:    req.ResourceID,
		CheckIn:       req.CheckIn,
		CheckOut:      req.CheckOut,
		Amount:        req.Amount,
		Currency:      req.Currency,
		CustomerEmail: req.CustomerEmail,
		SessionID:     req.SessionID,
	}, causationID)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.createdBooking(w, r, row, req.SessionID, causationID)
}

// createdBooking answers a created booking: 201 with the row, after opening
// its Checkout Session when Checkout is on and the client brought none.
func (s *server) createdBooking(w http.ResponseWriter, r *http.Request, row projections.BookingRow, clientSession, causationID string) {
	if s.cfg.Ledger.CheckoutEnabled() && clientSession == "" {
		s.openCheckout(w, r, row, causationID)
		return
	}
	w.Header().Set("Location", "/bookings/"+strconv.FormatInt(row.ID, 10))
	writeJSON(w, http.StatusCreated, struct {
		BookingID int64 `json:"booking_id"`
		projections.BookingRow
	}{row.ID, row})
}

// jsonError names the offending field of a body that does not decode.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return &domain.FieldError{Field: typeErr.Field, Msg: "must be a JSON " + typeErr.Type.Kind().String()}
	}
	return fmt.Errorf("invalid JSON body: %v: %w", err, domain.ErrInvalid)
}

func requestID(r *http.Request) string {
	if id := r.Header.Get("Idempotency-Key"); id != "" && len(id) <= 255 {
		return id
	}
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 255 {
		return id
	}
	return uuid.NewString()
}

func (s *server) getBooking(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		writeError(w, r, s.log, &domain.FieldError{Field: "id", Msg: "must be a positive integer"})
		return
	}
	// The row names the customer: the read is access-logged.
	if !s.recordAccess(w, r, "http", "booking", strconv.FormatInt(id, 10)) {
		return
	}
	row, err := s.cfg.Ledger.GetBooking(r.Context(), id)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "booking not found"})
			return
		}
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, row)
}

func (s *server) listBookings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f app.BookingFilter
	var err error
	if v := q.Get("status"); v != "" {
		if f.Status, err = domain.ParseStatus(v); err != nil {
			writeError(w, r, s.log, &domain.FieldError{Field: "status", Msg: "must be pending, confirmed or cancelled"})
			return
		}
	}
	if v := q.Get("payment_status"); v != "" {
		if f.PaymentStatus, err = domain.ParsePaymentStatus(v); err != nil {
			writeError(w, r, s.log, &domain.FieldError{Field: "payment_status", Msg: "must be unpaid, paid, failed or refunded"})
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 1000 {
			writeError(w, r, s.log, &domain.FieldError{Field: "limit", Msg: "must be an integer from 1 to 1000"})
			return
		}
	}
	if v := q.Get("after"); v != "" {
		if f.After, err = strconv.ParseInt(v, 10, 64); err != nil || f.After < 0 {
			writeError(w, r, s.log, &domain.FieldError{Field: "after", Msg: "must be a booking id"})
			return
		}
	}
	// The rows name customers: the read is access-logged, with the query.
	if !s.recordAccess(w, r, "http", "bookings", r.URL.Query().Encode()) {
		return
	}
	rows, next, err := s.cfg.Ledger.ListBookings(r.Context(), f)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	out := struct {
		Bookings  []projections.BookingRow `json:"bookings"`
		NextAfter *int64                   `json:"next_after"`
	}{Bookings: make([]projections.BookingRow, len(rows))}
	for i, row := range rows {
		out.Bookings[i] = row
	}
	if next != 0 {
		out.NextAfter = &next
	}
	writeJSON(w, http.StatusOK, out)
}
