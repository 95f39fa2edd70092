package bookingstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// BookingColumns is the column list of the bookings table, in the order
// scanBookingRow scans it (the rebuild copies and swaps tables with it).
// last_event_position stays last: upsertBookingSQL gives it its own
// expression.
const BookingColumns = `id, resource_id, check_in, check_out, status, payment_status, amount, currency, customer_email, session_id, payment_intent_id, refunded_amount, dispute_status, disputed_amount, dispute_evidence_due_by, created_at, updated_at, last_event_position`

// upsertParams is the number of upsertArgs: every column but the position.
const upsertParams = 17

type rowScanner interface{ Scan(dest ...any) error }

func scanBookingRow(s rowScanner) (projections.BookingRow, error) {
	var r projections.BookingRow
	var checkIn, checkOut time.Time
	var status, paymentStatus string
	var session, intent, dispute sql.NullString
	var due sql.NullTime
	if err := s.Scan(&r.ID, &r.ResourceID, &checkIn, &checkOut, &status, &paymentStatus, &r.Amount, &r.Currency,
		&r.CustomerEmail, &session, &intent, &r.RefundedAmount, &dispute, &r.DisputedAmount, &due,
		&r.CreatedAt, &r.UpdatedAt, &r.LastEventPosition); err != nil {
		return r, err
	}
	if dispute.Valid {
		d := domain.DisputeStatus(dispute.String)
		if !d.Valid() {
			return r, fmt.Errorf("booking %d: unknown dispute status %q: %w", r.ID, dispute.String, domain.ErrInvalid)
		}
		r.DisputeStatus = &d
	}
	if due.Valid {
		t := due.Time.UTC()
		r.DisputeEvidenceDueBy = &t
	}
	var err error
	if r.Status, err = domain.ParseStatus(status); err != nil {
		return r, fmt.Errorf("booking %d: %w", r.ID, err)
	}
	if r.PaymentStatus, err = domain.ParsePaymentStatus(paymentStatus); err != nil {
		return r, fmt.Errorf("booking %d: %w", r.ID, err)
	}
	r.CheckIn = checkIn.Format(domain.DateLayout)
	r.CheckOut = checkOut.Format(domain.DateLayout)
	if session.Valid {
		r.SessionID = &session.String
	}
	if intent.Valid {
		r.PaymentIntentID = &intent.String
	}
	r.CreatedAt = r.CreatedAt.UTC()
	r.UpdatedAt = r.UpdatedAt.UTC()
	return r, nil
}

// upsertBooking writes a booking's status row. A row.LastEventPosition of 0
// stands for the position this session's append just drew from the
// sequence (currval): the publisher's INSERT does not return positions, and
// this saves a round trip.
//
// A confirmed stay that overlaps another confirmed stay of the resource
// violates the table's exclusion constraint: that error wraps
// domain.ErrConflict.
func (l *Store) upsertBooking(ctx context.Context, tx *sql.Tx, row projections.BookingRow) (projections.BookingRow, error) {
	out, err := scanBookingRow(l.stmts.QueryRow(ctx, tx, upsertBookingQuery, append(upsertArgs(row), row.LastEventPosition)...))
	if err != nil {
		return out, upsertError(row.ID, err)
	}
	return out, nil
}

// upsertBookingQuery is upsertBooking's statement, prepared with
// hotQueries.
var upsertBookingQuery = upsertBookingSQL("bookings", 1,
	`COALESCE(NULLIF($`+strconv.Itoa(upsertParams+1)+`::bigint, 0), currval('ledger_events_position_seq'))`) + ` RETURNING ` + BookingColumns

// upsertBookingSQL writes a status row from the upsertParams parameters from $first
// on (upsertArgs) and the SQL expression position, without a RETURNING
// clause.
func upsertBookingSQL(table string, first int, position string) string {
	var values strings.Builder
	for i := range upsertParams {
		values.WriteString("$" + strconv.Itoa(first+i) + ", ")
	}
	return `INSERT INTO ` + table + ` (` + BookingColumns + `)
		VALUES (` + values.String() + position + `)` + upsertConflictSQL
}

// upsertConflictSQL is the ON CONFLICT clause of a status row's upsert:
// every column is the decision's.
const upsertConflictSQL = `
		ON CONFLICT (id) DO UPDATE SET
			resource_id = excluded.resource_id, check_in = excluded.check_in, check_out = excluded.check_out,
			status = excluded.status, payment_status = excluded.payment_status,
			amount = excluded.amount, currency = excluded.currency, customer_email = excluded.customer_email,
			session_id = excluded.session_id, payment_intent_id = excluded.payment_intent_id,
			refunded_amount = excluded.refunded_amount, dispute_status = excluded.dispute_status,
			disputed_amount = excluded.disputed_amount, dispute_evidence_due_by = excluded.dispute_evidence_due_by,
			created_at = excluded.created_at, updated_at = excluded.updated_at,
			last_event_position = excluded.last_event_position`

// upsertArgs are the parameters of upsertBookingSQL: every column but the
// position.
func upsertArgs(row projections.BookingRow) []any {
	return []any{row.ID, row.ResourceID, row.CheckIn, row.CheckOut,
		string(row.Status), string(row.PaymentStatus), row.Amount, row.Currency, row.CustomerEmail,
		row.SessionID, row.PaymentIntentID, row.RefundedAmount, disputeStatus(row.DisputeStatus), row.DisputedAmount,
		row.DisputeEvidenceDueBy, row.CreatedAt, row.UpdatedAt}
}

// disputeStatus is the dispute_status column's value: NULL for none.
func disputeStatus(s *domain.DisputeStatus) any {
	if s == nil {
		return nil
	}
	return string(*s)
}

// upsertError maps a failed status row write: an overlap of confirmed stays
// (the exclusion constraint) wraps domain.ErrConflict.
func upsertError(id int64, err error) error {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "23P01" {
		return fmt.Errorf("bookingstore: booking %d: %w", id, domain.ErrConflict)
	}
	return fmt.Errorf("bookingstore: write booking %d: %w", id, err)
}

// GetBooking returns one row of the status table, or an error wrapping
// domain.ErrNotFound.
func GetBooking(ctx context.Context, q postgres.Querier, id int64) (projections.BookingRow, error) {
	r, err := scanBookingRow(q.QueryRowContext(ctx, `SELECT `+BookingColumns+` FROM bookings WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("booking %d: %w", id, domain.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("bookingstore: get booking %d: %w", id, err)
	}
	return r, nil
}

// ListBookings returns a page of the status table in id order, and the id
// to pass as After for the next page (0 when this page is the last).
func ListBookings(ctx context.Context, q postgres.Querier, f app.BookingFilter) ([]projections.BookingRow, int64, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	rows, err := q.QueryContext(ctx, `SELECT `+BookingColumns+` FROM bookings
		WHERE ($1 = '' OR status = $1) AND ($2 = '' OR payment_status = $2) AND id > $3
		ORDER BY id LIMIT $4`, string(f.Status), string(f.PaymentStatus), f.After, f.Limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("bookingstore: list bookings: %w", err)
	}
	defer rows.Close()
	out := []projections.BookingRow{}
	for rows.Next() {
		r, err := scanBookingRow(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("bookingstore: list bookings: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("bookingstore: list bookings: %w", err)
	}
	var next int64
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// CausedBy implements app.Bookings.CausedBy, through the partial index of
// the API's causation ids (migration 00010).
func (l *Store) CausedBy(ctx context.Context, causationID string) (int64, bool, error) {
	var id int64
	err := l.db.QueryRowContext(ctx, `SELECT stream_id FROM ledger_events WHERE causation_id = $1 AND causation_id LIKE 'api:%'
		ORDER BY position LIMIT 1`, causationID).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("bookingstore: caused by %s: %w", causationID, err)
	}
	return id, true, nil
}
