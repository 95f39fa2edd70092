package app

import (
	"context"
	"fmt"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// CreateBooking validates p, then in one transaction allocates the booking
// id, checks that the stay overlaps no confirmed booking of the resource and
// that the session id (if any) belongs to no other booking, appends
// BookingRequested and writes the status row.
//
// Errors: domain.ErrInvalid (a *domain.FieldError names the field) with
// nothing written, not even a sequence value; domain.ErrConflict when the
// stay overlaps a confirmed booking or the session id belongs to another
// booking.
func (s *Service) CreateBooking(ctx context.Context, p domain.NewBookingParams, causationID string) (projections.BookingRow, error) {
	p.RequestedAt = s.cfg.Now()
	// Validate before touching the database, with a stand-in id.
	check := p
	check.ID = 1
	b, _, err := domain.NewBooking(check)
	if err != nil {
		return projections.BookingRow{}, err
	}
	create := func(id domain.BookingID, stays []domain.Stay, sessionOwner int64) ([]domain.Event, error) {
		p := p
		p.ID = id
		b, events, err := domain.NewBooking(p)
		if err != nil {
			return nil, err
		}
		if c, ok := domain.FindConflict(b.ID(), b.Stay(), stays); ok {
			return nil, fmt.Errorf("stay %s overlaps confirmed booking %d: %w", b.Stay(), c.BookingID, domain.ErrConflict)
		}
		if sessionOwner != 0 {
			return nil, fmt.Errorf("session_id %s belongs to booking %d: %w", p.SessionID, sessionOwner, domain.ErrConflict)
		}
		return events, nil
	}
	row, err := retry(ctx, func() (projections.BookingRow, error) {
		return s.cfg.Bookings.Create(ctx, b.ResourceID(), b.Stay(), p.SessionID, causationID, create)
	})
	if err == nil && p.SessionID != "" {
		s.retryUnmatched(ctx, p.SessionID)
	}
	return row, err
}
