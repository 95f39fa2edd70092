package http

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/domain"
)

// routeOperatorActions adds the operator's endpoints (behind the API
// token, operator role unless said otherwise): POST /bookings/{id}/cancel,
// and the worklist (GET /obligations, also for auditors, and POST
// /obligations/{id}/ack) when Config.Obligations is set.
func (s *server) routeOperatorActions(api *mux.Router) {
	api.Handle("/bookings/{id}/cancel", s.idempotent(s.cancelBooking)).Methods(http.MethodPost)
	s.allowAll(api.Handle("/bookings/{id}/cancel", methodNotAllowed(http.MethodPost)))
	if s.cfg.Obligations != nil {
		// Reading the worklist is an auditor's read; acknowledging is an
		// operator's write.
		s.allow(api.Handle("/obligations", http.HandlerFunc(s.listObligations)).Methods(http.MethodGet, http.MethodHead), RoleAuditor)
		s.allowAll(api.Handle("/obligations", methodNotAllowed(http.MethodGet, http.MethodHead)))
		api.Handle("/obligations/{id}/ack", http.HandlerFunc(s.ackObligation)).Methods(http.MethodPost)
		s.allowAll(api.Handle("/obligations/{id}/ack", methodNotAllowed(http.MethodPost)))
	}
}

// cancelRequest is the body of POST /bookings/{id}/cancel. RefundAmount nil
// means everything paid and not refunded yet; 0 means no refund.
type cancelRequest struct {
	Reason       string `json:"reason"`
	RefundAmount *int64 `json:"refund_amount"`
}

// cancelBooking answers 200 with the row (status cancelled); 404 unknown
// booking; 409 already cancelled; 422 refund_amount above what is
// refundable; 400 a malformed body.
func (s *server) cancelBooking(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		writeError(w, r, s.log, &domain.FieldError{Field: "id", Msg: "must be a positive integer"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var req cancelRequest
	if len(bytes.TrimSpace(body)) > 0 {
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
	}
	causationID := "api:" + requestID(r)
	if recovered(r.Context()) {
		// The first request with this key stored no answer: if it
		// cancelled the booking, answer as it would have.
		if row, ok, err := s.cfg.Ledger.FindCaused(r.Context(), causationID); err != nil || ok && row.ID == id {
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			writeJSON(w, http.StatusOK, row)
			return
		}
	}
	row, err := s.cfg.Ledger.CancelBooking(r.Context(), id, req.Reason, req.RefundAmount, causationID)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, row)
}
