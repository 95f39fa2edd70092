package http

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// Audit is what the audit endpoints and the auditor UI need from the
// storage side (adapters/postgres/audit's Auditor), in the use cases' types.
type Audit interface {
	History(ctx context.Context, id int64, asOf time.Time) (app.BookingHistory, error)
	BookingAsOf(ctx context.Context, id int64, t time.Time) (projections.BookingRow, error)
	Export(ctx context.Context, w io.Writer, q app.ExportQuery) (app.ExportResult, error)
	FindBooking(ctx context.Context, query string) (int64, error)
	ChainStatus(ctx context.Context) (app.ChainStatus, error)
	RecordAccess(ctx context.Context, a app.Access) error
}

// Limits of GET /audit/events.
const (
	defaultEventsLimit = 1000
	maxEventsLimit     = 10000
	// settleTimeout bounds the wait for appending transactions that may
	// still commit below the page (the settled bound of app.ExportQuery).
	settleTimeout = 10 * time.Second
)

// routeAudit adds the audit endpoints to api (behind the bearer token) and
// the auditor UI to r (its own login); nothing when cfg.Audit is nil. It
// must run before the /bookings/{id} routes: ?as_of= is matched first.
func (s *server) routeAudit(r, api *mux.Router) {
	if s.cfg.Audit == nil {
		return
	}
	get := []string{http.MethodGet, http.MethodHead}
	s.allow(api.Handle("/bookings/{id}", http.HandlerFunc(s.getBookingAsOf)).Methods(get...).Queries("as_of", "{as_of}"), RoleAuditor)
	s.allow(api.Handle("/bookings/{id}/history", http.HandlerFunc(s.bookingHistory)).Methods(get...), RoleAuditor)
	s.allowAll(api.Handle("/bookings/{id}/history", methodNotAllowed(get...)))
	s.allow(api.Handle("/audit/events", http.HandlerFunc(s.auditEvents)).Methods(get...), RoleAuditor)
	s.allowAll(api.Handle("/audit/events", methodNotAllowed(get...)))
	s.routeEvidence(r, api)
	s.routeUI(r)
}

// recordAccess writes the access log row of a read of audit data or
// personal data before it is answered, with the token's name as the actor;
// on failure the read is answered 500 and false returned. Without
// Config.Audit there is no access log, and reads are answered unlogged.
func (s *server) recordAccess(w http.ResponseWriter, r *http.Request, channel, action, target string) bool {
	if s.cfg.Audit == nil {
		return true
	}
	err := s.cfg.Audit.RecordAccess(r.Context(), app.Access{
		Actor: actor(r), Channel: channel, Action: action, Target: target,
		RemoteAddr: s.remoteAddr(r), UserAgent: r.UserAgent(),
	})
	if err != nil {
		writeError(w, r, s.log, fmt.Errorf("record audit access: %w", err))
		return false
	}
	return true
}

func bookingID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		return 0, &domain.FieldError{Field: "id", Msg: "must be a positive integer"}
	}
	return id, nil
}

// parseAsOf reads an optional RFC 3339 moment; "" gives the zero time.
func parseAsOf(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &domain.FieldError{Field: "as_of", Msg: "must be an RFC 3339 time, e.g. 2027-01-10T12:00:00Z"}
	}
	return t, nil
}

func writeBookingNotFound(w http.ResponseWriter, r *http.Request, s *server, err error) {
	if errors.Is(err, domain.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "booking not found"})
		return
	}
	writeError(w, r, s.log, err)
}

// getBookingAsOf answers GET /bookings/{id}?as_of=RFC3339: the row folded
// from the booking's events recorded up to that moment; 404 when the
// booking did not exist yet.
func (s *server) getBookingAsOf(w http.ResponseWriter, r *http.Request) {
	id, err := bookingID(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	asOf, err := parseAsOf(r.URL.Query().Get("as_of"))
	if err == nil && asOf.IsZero() {
		err = &domain.FieldError{Field: "as_of", Msg: "must be an RFC 3339 time, e.g. 2027-01-10T12:00:00Z"}
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if !s.recordAccess(w, r, "http", "as_of", strconv.FormatInt(id, 10)+"@"+asOf.UTC().Format(time.RFC3339Nano)) {
		return
	}
	row, err := s.cfg.Audit.BookingAsOf(r.Context(), id, asOf)
	if err != nil {
		writeBookingNotFound(w, r, s, err)
		return
	}
	writeJSON(w, http.StatusOK, row)
}

// bookingHistory answers GET /bookings/{id}/history[?as_of=RFC3339].
func (s *server) bookingHistory(w http.ResponseWriter, r *http.Request) {
	id, err := bookingID(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	asOf, err := parseAsOf(r.URL.Query().Get("as_of"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	target := strconv.FormatInt(id, 10)
	if !asOf.IsZero() {
		target += "@" + asOf.UTC().Format(time.RFC3339Nano)
	}
	if !s.recordAccess(w, r, "http", "history", target) {
		return
	}
	h, err := s.cfg.Audit.History(r.Context(), id, asOf)
	if err != nil {
		writeBookingNotFound(w, r, s, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// auditEvents answers GET /audit/events?after=POS&limit=N: JSON lines,
// one event each, in position order, up to the settled position (so that
// paging with after = the last position never skips an event that commits
// later). The next page starts after X-Ledger-Last-Position; a page with
// fewer than limit lines is the current end of the log.
func (s *server) auditEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after int64
	limit := defaultEventsLimit
	var err error
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			writeError(w, r, s.log, &domain.FieldError{Field: "after", Msg: "must be a position (0 or more)"})
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxEventsLimit {
			writeError(w, r, s.log, &domain.FieldError{Field: "limit", Msg: fmt.Sprintf("must be an integer from 1 to %d", maxEventsLimit)})
			return
		}
	}
	if !s.recordAccess(w, r, "http", "events", fmt.Sprintf("after=%d&limit=%d", after, limit)) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), settleTimeout)
	defer cancel()
	var buf bytes.Buffer
	res, err := s.cfg.Audit.Export(ctx, &buf, app.ExportQuery{After: after, Limit: limit, Format: app.FormatJSONL})
	if err != nil {
		// The settle bound ended the wait (not the request's deadline):
		// ask ctx, not err, since a query cancelled by the bound reports
		// lib/pq's "canceling statement due to user request" rather than
		// the context's error (which made the answer depend on whether
		// the bound struck during a poll's query or between two).
		if ctx.Err() != nil && r.Context().Err() == nil {
			writeError(w, r, s.log, fmt.Errorf("waiting for appends to settle: %w", domain.ErrConcurrency))
			return
		}
		writeError(w, r, s.log, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Ledger-Last-Position", strconv.FormatInt(res.Last, 10))
	h.Set("X-Ledger-Settled-Position", strconv.FormatInt(res.Settled, 10))
	h.Set("X-Ledger-Events", strconv.FormatInt(res.Events, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}
