package app

import (
	"context"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// CancelBooking cancels booking id on request (domain.DecideCancel) with
// note, refunding refund minor units (nil: everything refundable; 0: no
// refund), in one transaction: BookingCancelled and, when refunding,
// RefundRequested, which the refund worker issues. It returns the row
// after. causationID names the request (e.g. "api:<Idempotency-Key>").
//
// Errors: domain.ErrNotFound for an unknown booking; domain.ErrInvalid,
// domain.ErrWrongState (already cancelled) and domain.ErrNotRefundable as
// DecideCancel gives them; nothing is written then.
func (s *Service) CancelBooking(ctx context.Context, id int64, note string, refund *int64, causationID string) (projections.BookingRow, error) {
	row, err := retry(ctx, func() (projections.BookingRow, error) {
		return s.cfg.Bookings.Update(ctx, id, causationID, func(b *domain.Booking) ([]domain.Event, error) {
			return domain.DecideCancel(b, note, refund)
		})
	})
	if err == nil {
		s.log.InfoContext(ctx, "Booking cancelled on request", "booking_id", id, "causation_id", causationID,
			"payment_status", string(row.PaymentStatus))
	}
	return row, err
}

// FindCaused returns the row of the booking an earlier request with
// causationID wrote to (its effect, when its answer was lost), and false
// when no event has that causation.
func (s *Service) FindCaused(ctx context.Context, causationID string) (projections.BookingRow, bool, error) {
	id, ok, err := s.cfg.Bookings.CausedBy(ctx, causationID)
	if err != nil || !ok {
		return projections.BookingRow{}, false, err
	}
	row, err := s.cfg.Bookings.GetBooking(ctx, id)
	return row, err == nil, err
}
