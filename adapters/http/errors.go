package http

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// statusOf is the one table from the domain's error vocabulary to HTTP
// status codes. Anything not in it is an internal failure.
var statusOf = []struct {
	err    error
	status int
}{
	{domain.ErrInvalid, http.StatusBadRequest},
	{domain.ErrUnauthorized, http.StatusUnauthorized},
	{domain.ErrNotFound, http.StatusNotFound},
	{domain.ErrConflict, http.StatusConflict},
	{domain.ErrDuplicate, http.StatusConflict},
	{domain.ErrWrongState, http.StatusConflict},
	{domain.ErrNotRefundable, http.StatusUnprocessableEntity},
	{app.ErrObligationNotOpen, http.StatusNotFound},
	// A stream version lost to a concurrent writer after every retry: the
	// client may simply try again.
	{domain.ErrConcurrency, http.StatusServiceUnavailable},
	// The database gave up on a statement (a statement or lock timeout, a
	// query cancelled at the deadline): nothing was decided.
	{domain.ErrUnavailable, http.StatusServiceUnavailable},
}

// msgTimedOut is the answer to a request whose work outlasted a deadline,
// whichever gave up first: the guard's (limits.go), the handler's own, or
// the database's statement timeout. One text, so that a client sees the
// same answer whichever deadline won the race.
const msgTimedOut = "request timed out"

// errorStatus maps err to an HTTP status and the message the client may
// see: the error's own text for client errors, which name the problem (and
// never carry secrets), and a fixed text for internal failures, whose details
// go to the log only.
func errorStatus(err error) (int, string) {
	var maxBytes *http.MaxBytesError
	if errors.As(err, &maxBytes) {
		return http.StatusRequestEntityTooLarge, "request body too large"
	}
	var body *bodyError
	if errors.As(err, &body) {
		if body.timeout() {
			return http.StatusRequestTimeout, "request body not received in time"
		}
		return http.StatusBadRequest, "request body could not be read"
	}
	for _, m := range statusOf {
		if errors.Is(err, m.err) {
			if m.err == domain.ErrUnavailable {
				return m.status, msgTimedOut
			}
			if m.status == http.StatusServiceUnavailable {
				return m.status, "busy, try again"
			}
			return m.status, err.Error()
		}
	}
	return http.StatusInternalServerError, "internal error"
}

// writeError answers {"error": "..."} with the status errorStatus gives,
// logging internal failures with their details. 503 answers carry
// Retry-After.
//
// An internal failure once the request's context has ended is the
// deadline's doing (lib/pq reports a query it cancelled as the server's
// "canceling statement due to user request", not as the context's error):
// it is answered 503 "request timed out", as the guard answers when it
// gives up first, so that the answer does not depend on which of the two
// noticed the deadline first.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	status, msg := errorStatus(err)
	if status == http.StatusInternalServerError && r.Context().Err() != nil {
		status, msg = http.StatusServiceUnavailable, msgTimedOut
	}
	var body *bodyError
	switch {
	case status >= 500:
		logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	case errors.As(err, &body):
		// Any client can cut its own body short: not an error of ours.
		logger.InfoContext(r.Context(), "request body not read", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeJSON answers v as JSON. Every JSON answer carries Cache-Control:
// no-store: many name customers, and none is worth a cached copy.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
