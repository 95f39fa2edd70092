package readmodels

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// DeadLetter is an event a projection of this code's version could not
// apply (projection_dead_letters), with whether an operator closed it.
type DeadLetter struct {
	// ID is its obligation id: "dead_letter:<projection>:<version>:<position>".
	ID         string    `json:"id"`
	Projection string    `json:"projection"`
	Version    int       `json:"version"`
	Position   int64     `json:"position"`
	EventType  string    `json:"event_type"`
	Error      string    `json:"error"`
	At         time.Time `json:"dead_lettered_at"`
	// Closed is the acknowledgement's reason ("retried: applied ..." for a
	// retry), "" while open.
	Closed string `json:"closed"`
}

// DeadLetters lists the dead letters of this code's projection versions,
// oldest first.
func DeadLetters(ctx context.Context, q postgres.Querier) ([]DeadLetter, error) {
	rows, err := q.QueryContext(ctx, `SELECT d.projection, d.projection_version, d.position, COALESCE(d.event_type, ''), d.error,
			d.dead_lettered_at, COALESCE(a.reason, '')
		FROM projection_dead_letters d
		LEFT JOIN obligation_acks a ON a.obligation_id = 'dead_letter:' || d.projection || ':' || d.projection_version || ':' || d.position
		WHERE (d.projection, d.projection_version) IN (($1, $2), ($3, $4))
		ORDER BY d.id`, projections.MonitoringName, projections.MonitoringVersion, projections.BookingsName, projections.BookingsVersion)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	defer rows.Close()
	out := []DeadLetter{}
	for rows.Next() {
		var d DeadLetter
		if err := rows.Scan(&d.Projection, &d.Version, &d.Position, &d.EventType, &d.Error, &d.At, &d.Closed); err != nil {
			return nil, fmt.Errorf("dead letters: %w", err)
		}
		d.ID = fmt.Sprintf("%s:%s:%d:%d", app.ObligationDeadLetter, d.Projection, d.Version, d.Position)
		d.At = d.At.UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// RetryDeadLetter applies the dead-lettered event id again (after a fix of
// the projection that made it fail), and closes it with the reason
// "retried: applied", by actor, in one transaction: the event is applied
// at most once. Only the monitoring projection has dead letters (the
// bookings table is written inline). domain.ErrNotFound for an unknown or
// closed dead letter; an error naming the cause when the event still
// cannot be applied (nothing written).
func RetryDeadLetter(ctx context.Context, db *sql.DB, id, actor string, now time.Time) error {
	parts := strings.Split(id, ":")
	if len(parts) != 4 || parts[0] != app.ObligationDeadLetter || parts[1] != projections.MonitoringName {
		return fmt.Errorf("dead letter %q: want dead_letter:monitoring:<version>:<position>: %w", id, domain.ErrInvalid)
	}
	version, verr := strconv.Atoi(parts[2])
	position, perr := strconv.ParseInt(parts[3], 10, 64)
	if verr != nil || perr != nil || version != projections.MonitoringVersion {
		return fmt.Errorf("dead letter %q: not one of this code's version %d: %w", id, projections.MonitoringVersion, domain.ErrNotFound)
	}
	return postgres.TransactOnce(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		var open bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM projection_dead_letters WHERE projection = $1
			AND projection_version = $2 AND position = $3)`, projections.MonitoringName, version, position).Scan(&open); err != nil {
			return err
		}
		if !open {
			return fmt.Errorf("dead letter %s: %w", id, domain.ErrNotFound)
		}
		var typ string
		var schema int
		var payload []byte
		var stream int64
		var recorded time.Time
		err := tx.QueryRowContext(ctx, `SELECT event_type, schema_version, payload, stream_id, recorded_at FROM ledger_events WHERE position = $1`,
			position).Scan(&typ, &schema, &payload, &stream, &recorded)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("dead letter %s: no event at position %d: %w", id, position, domain.ErrNotFound)
		}
		if err != nil {
			return err
		}
		ev, err := domain.Decode(typ, schema, payload)
		if err != nil {
			return fmt.Errorf("dead letter %s still fails: %w", id, err)
		}
		deltas, err := projections.MonitoringDeltas(projections.Envelope{Position: position, StreamID: stream, RecordedAt: recorded, Event: ev})
		if err != nil {
			return fmt.Errorf("dead letter %s still fails: %w", id, err)
		}
		// The acknowledgement is the gate: a second retry finds it and
		// applies nothing.
		query, args, err := deltasStatement(`WITH applied AS (
			INSERT INTO obligation_acks (obligation_id, reason, acked_by, acked_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (obligation_id) DO NOTHING RETURNING 1)`,
			[]any{id, "retried: applied", actor, now.UTC()}, deltas)
		if err != nil {
			return err
		}
		var applied int
		if err := tx.QueryRowContext(ctx, query, args...).Scan(&applied); err != nil {
			return err
		}
		if applied == 0 {
			return fmt.Errorf("dead letter %s is closed already: %w", id, domain.ErrNotFound)
		}
		return nil
	})
}
