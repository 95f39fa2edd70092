package readmodels

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// ProjectionStatus is one projection's state; declared by domain/app, where
// the HTTP edge consumes it.
type ProjectionStatus = app.ProjectionStatus

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
