package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// OpenCheckoutSession records that Checkout Session sessionID (payment page
// url, expiring at expiresAt) was created for booking id: it appends
// CheckoutSessionOpened and writes the status row (session_id) in one
// transaction, re-running the decision when it loses a race for the stream
// version. Recording the same session again appends nothing.
//
// Errors: domain.ErrNotFound for an unknown booking; domain.ErrInvalid for a
// malformed session, or a booking no longer awaiting payment (confirmed,
// paid or refunded); anything else is an internal failure. Nothing is
// written on error.
func (l *Ledger) OpenCheckoutSession(ctx context.Context, id int64, sessionID, url string, expiresAt time.Time, causationID string) (projections.BookingRow, error) {
	var row projections.BookingRow
	var err error
	for attempt := 1; attempt <= maxDecisionAttempts; attempt++ {
		err = Transact(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
			b, stored, err := loadBooking(ctx, l.store, tx, id)
			if err != nil {
				return err
			}
			decided, err := domain.DecideCheckoutSessionOpened(b, sessionID, url, expiresAt)
			if err != nil {
				return fmt.Errorf("booking %d: %w", id, err)
			}
			if len(decided) == 0 {
				row, err = GetBooking(ctx, tx, id)
				return err
			}
			row, err = l.appendAndProject(ctx, tx, b.ID(), stored, decided, l.now(), causationID)
			return err
		})
		if !errors.Is(err, domain.ErrConcurrency) {
			break
		}
	}
	return row, err
}
