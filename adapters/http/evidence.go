package http

import (
	"context"
	"encoding/hex"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/domain"
)

// Evidence is what the storage side offers, when checkpoints are signed,
// for auditors who check the ledger without trusting its database: the
// newest signed checkpoint and a booking's evidence bundle
// (adapters/postgres/audit's Auditor). It is optional: Config.Audit may
// implement it.
type Evidence interface {
	// LatestCheckpoint is the newest signed checkpoint (a signed note);
	// domain.ErrNotFound when none was signed.
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	// EvidenceBundle is booking id's evidence bundle (JSON);
	// domain.ErrNotFound for an unknown booking or no checkpoint,
	// domain.ErrConflict when its newest facts are not covered by a
	// checkpoint yet.
	EvidenceBundle(ctx context.Context, id int64) ([]byte, error)
	// ConsistencyProof proves that the tree of from links is a prefix of
	// the tree of to links; domain.ErrInvalid for sizes it cannot prove.
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
}

// routeEvidence adds, when the audit side offers Evidence,
// GET /audit/checkpoints/latest and GET /bookings/{id}/evidence to api
// (behind the bearer token) and the auditor UI's download,
// GET /ui/bookings/{id}/evidence, to r.
func (s *server) routeEvidence(r, api *mux.Router) {
	ev, ok := s.cfg.Audit.(Evidence)
	if !ok {
		return
	}
	get := []string{http.MethodGet, http.MethodHead}
	// Evidence is an auditor's read.
	s.allow(api.Handle("/audit/checkpoints/latest", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.latestCheckpoint(w, r, ev)
	})).Methods(get...), RoleAuditor)
	s.allowAll(api.Handle("/audit/checkpoints/latest", methodNotAllowed(get...)))
	s.allow(api.Handle("/audit/checkpoints/consistency", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.consistencyProof(w, r, ev)
	})).Methods(get...), RoleAuditor)
	s.allowAll(api.Handle("/audit/checkpoints/consistency", methodNotAllowed(get...)))
	s.allow(api.Handle("/bookings/{id}/evidence", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.evidenceBundle(w, r, ev, "http")
	})).Methods(get...), RoleAuditor)
	s.allowAll(api.Handle("/bookings/{id}/evidence", methodNotAllowed(get...)))
	r.Handle("/ui/bookings/{id}/evidence", s.guard(s.requireUI(func(w http.ResponseWriter, r *http.Request) {
		s.evidenceBundle(w, r, ev, "ui")
	}))).Methods(get...)
	r.Handle("/ui/bookings/{id}/evidence", methodNotAllowed(get...))
}

// latestCheckpoint answers the newest signed checkpoint as text, byte for
// byte; 404 before the first.
func (s *server) latestCheckpoint(w http.ResponseWriter, r *http.Request, ev Evidence) {
	if !s.recordAccess(w, r, "http", "checkpoint", "latest") {
		return
	}
	note, err := ev.LatestCheckpoint(r.Context())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(note)
}

// consistencyProof answers GET /audit/checkpoints/consistency?from=N&to=M:
// {"from", "to", "proof": [hex, ...]}, the RFC 6962 consistency proof
// between the trees of the first N and M links.
func (s *server) consistencyProof(w http.ResponseWriter, r *http.Request, ev Evidence) {
	q := r.URL.Query()
	from, err1 := strconv.ParseUint(q.Get("from"), 10, 64)
	to, err2 := strconv.ParseUint(q.Get("to"), 10, 64)
	if err1 != nil || err2 != nil {
		writeError(w, r, s.log, &domain.FieldError{Field: "from", Msg: "from and to must be tree sizes (positive integers)"})
		return
	}
	if !s.recordAccess(w, r, "http", "consistency", q.Get("from")+".."+q.Get("to")) {
		return
	}
	proof, err := ev.ConsistencyProof(r.Context(), from, to)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	hexes := make([]string, len(proof))
	for i, h := range proof {
		hexes[i] = hex.EncodeToString(h)
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "proof": hexes})
}

// evidenceBundle answers a booking's evidence bundle as a download.
func (s *server) evidenceBundle(w http.ResponseWriter, r *http.Request, ev Evidence, channel string) {
	id, err := bookingID(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if !s.recordAccess(w, r, channel, "bundle", strconv.FormatInt(id, 10)) {
		return
	}
	b, err := ev.EvidenceBundle(r.Context(), id)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="booking-`+strconv.FormatInt(id, 10)+`-evidence.json"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}
