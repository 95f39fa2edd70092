package http

import (
	"fmt"
	"net/http"

	"github.com/booking-ledger/ledger/adapters/http/webhookmetrics"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

var errBookingNotFound = fmt.Errorf("booking not found: %w", domain.ErrNotFound)

// webhook answers Stripe: 400 for anything unverified or malformed (nothing
// written), 200 {"status":"success"} once the decision is committed, 200
// {"status":"ignored"} for unhandled types, duplicates and events that are
// not the ledger's (the other mode, a foreign Connect account), 404 when no
// booking matches (the delivery is kept; Stripe's retry matches it again),
// 500 for internal failures, which Stripe retries.
func (s *server) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	header := r.Header.Get("Stripe-Signature")
	if len(r.Header.Values("Stripe-Signature")) > 1 {
		writeError(w, r, s.log, fmt.Errorf("more than one Stripe-Signature header: %w", domain.ErrInvalid))
		return
	}
	if err := s.cfg.Verifier.Verify(body, header); err != nil {
		s.log.InfoContext(r.Context(), "Rejected webhook", "outcome", "rejected", "error", err)
		writeError(w, r, s.log, err)
		return
	}
	d, err := s.cfg.Verifier.ParseDelivery(body, header, string(domain.SourceWebhook), s.cfg.Now())
	if err != nil {
		s.log.InfoContext(r.Context(), "Rejected webhook", "outcome", "rejected", "error", err)
		writeError(w, r, s.log, err)
		return
	}
	webhookmetrics.Label(r.Context(), d)
	log := s.log.With("event_type", d.Type, "event_id", d.EventID)
	res, err := s.cfg.Ledger.Ingest(r.Context(), d)
	// "Processing webhook event: <type>" is logged once the outcome is
	// known (after the commit), so that the line carries it: alerts count
	// these lines by outcome.
	processing := "Processing webhook event: " + d.Type
	if err != nil {
		log.ErrorContext(r.Context(), processing, "booking_id", res.BookingID, "outcome", "error", "error", err)
		writeError(w, r, s.log, err)
		return
	}
	log = log.With("booking_id", res.BookingID, "outcome", string(res.Outcome))
	switch res.Outcome {
	case app.OutcomeUnmatched:
		log.WarnContext(r.Context(), processing, "error", errBookingNotFound.Error())
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "booking not found"})
		return
	case app.OutcomeIgnored, app.OutcomeDuplicate, app.OutcomeWrongMode, app.OutcomeForeignAccount:
		log.InfoContext(r.Context(), processing)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ignored"})
		return
	}
	// The decision's own lines ("Booking <id> confirmed successfully via
	// webhook", ...) were logged by the use case.
	log.InfoContext(r.Context(), processing)
	writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
}
