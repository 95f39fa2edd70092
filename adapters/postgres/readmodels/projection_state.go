package readmodels

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/projections"
)

// ProjectionStatus is what `ledger projections status` and /readyz report
// about one projection.
type ProjectionStatus struct {
	Name string `json:"name"`
	// Inline projections are written in the appending transaction; the
	// others by a subscriber.
	Inline bool `json:"inline"`
	// CodeVersion is this binary's version of the projection, StoredVersion
	// the version that built the stored read model; Stale when they differ
	// (rebuild it).
	CodeVersion   int  `json:"code_version"`
	StoredVersion int  `json:"stored_version"`
	Stale         bool `json:"stale"`
	// Position is the position of the last event applied (for an inline
	// projection, the head: it is always current), Head the highest
	// committed position.
	Position int64 `json:"position"`
	Head     int64 `json:"head"`
	// LagEvents counts the committed events not applied yet; LagSeconds is
	// the age of the oldest of them (0 when none).
	LagEvents  int64   `json:"lag_events"`
	LagSeconds float64 `json:"lag_seconds"`
	// DeadLettered counts the events this code version could not apply
	// (dead letters are recorded per version).
	DeadLettered int64      `json:"dead_lettered"`
	LastError    string     `json:"last_error,omitempty"`
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"`
	RebuiltAt    *time.Time `json:"rebuilt_at,omitempty"`
}

// ProjectionStatuses reports every projection of this binary, in the order
// of projections.All. A projection without a row in projection_state (a
// database older than this binary) is reported with stored version 0, so
// stale.
func ProjectionStatuses(ctx context.Context, q postgres.Querier) ([]ProjectionStatus, error) {
	var head int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(max(position), 0) FROM ledger_events`).Scan(&head); err != nil {
		return nil, fmt.Errorf("postgres: head position: %w", err)
	}
	var out []ProjectionStatus
	for _, p := range projections.All() {
		s := ProjectionStatus{Name: p.Name, Inline: p.Inline, CodeVersion: p.Version, Head: head}
		var lastError sql.NullString
		var lastErrorAt, rebuiltAt sql.NullTime
		var position int64
		err := q.QueryRowContext(ctx, `SELECT version, applied_position, last_error, last_error_at, rebuilt_at,
				(SELECT count(*) FROM projection_dead_letters d WHERE d.projection = s.name AND d.projection_version = $2)
			FROM projection_state s WHERE name = $1`, p.Name, p.Version).
			Scan(&s.StoredVersion, &position, &lastError, &lastErrorAt, &rebuiltAt, &s.DeadLettered)
		if err != nil && err != sql.ErrNoRows {
			return nil, fmt.Errorf("postgres: state of projection %s: %w", p.Name, err)
		}
		s.LastError = lastError.String
		if lastErrorAt.Valid {
			t := lastErrorAt.Time.UTC()
			s.LastErrorAt = &t
		}
		if rebuiltAt.Valid {
			t := rebuiltAt.Time.UTC()
			s.RebuiltAt = &t
		}
		s.Stale = s.StoredVersion != s.CodeVersion
		if p.Inline {
			s.Position = head
		} else {
			s.Position = position
			if err := q.QueryRowContext(ctx, `SELECT lag_events, lag_seconds FROM monitoring_ingestion_lag`).Scan(&s.LagEvents, &s.LagSeconds); err != nil && err != sql.ErrNoRows {
				return nil, fmt.Errorf("postgres: lag of projection %s: %w", p.Name, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// StaleProjections returns the names of the projections whose stored
// version differs from this binary's.
func StaleProjections(ctx context.Context, q postgres.Querier) ([]string, error) {
	all, err := ProjectionStatuses(ctx, q)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, s := range all {
		if s.Stale {
			stale = append(stale, s.Name)
		}
	}
	return stale, nil
}
