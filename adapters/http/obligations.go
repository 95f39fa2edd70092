package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// Obligations is the operators' worklist (adapters/postgres/readmodels).
type Obligations interface {
	// List returns the open obligations, the ones due first.
	List(ctx context.Context) ([]app.Obligation, error)
	// Ack closes open obligation id with reason, by actor;
	// app.ErrObligationNotOpen when it is not open, domain.ErrInvalid
	// without a reason.
	Ack(ctx context.Context, id, reason, actor string) error
}

// listObligations answers 200 {"obligations": [...]}, the ones due first.
func (s *server) listObligations(w http.ResponseWriter, r *http.Request) {
	obs, err := s.cfg.Obligations.List(r.Context())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if obs == nil {
		obs = []app.Obligation{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"obligations": obs})
}

// ackObligation closes an open obligation: 200 {"acknowledged": id}; 404
// when it is not open; 400 without a reason.
func (s *server) ackObligation(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
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
	if err := s.cfg.Obligations.Ack(r.Context(), id, req.Reason, actor(r)); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.log.InfoContext(r.Context(), "Obligation acknowledged", "obligation_id", id, "reason", req.Reason)
	writeJSON(w, http.StatusOK, map[string]string{"acknowledged": id})
}
