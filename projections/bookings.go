package projections

import (
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// BookingsName is the name of the booking status table projection.
const BookingsName = "bookings"

// BookingsVersion is the code version of FoldBooking. Bump it whenever
// FoldBooking would give a different row for the same events, so that
// `ledger projections status` flags the stored table as stale.
const BookingsVersion = 1

// Envelope is one event of the log with the envelope fields the read models
// use.
type Envelope struct {
	Position   int64
	StreamID   int64
	RecordedAt time.Time
	Event      domain.Event
}

// BookingRow is one row of the `bookings` status table. JSON field names are
// the column names; optional ids are null when unknown.
type BookingRow struct {
	ID                int64                `json:"id"`
	ResourceID        string               `json:"resource_id"`
	CheckIn           string               `json:"check_in"`
	CheckOut          string               `json:"check_out"`
	Status            domain.Status        `json:"status"`
	PaymentStatus     domain.PaymentStatus `json:"payment_status"`
	Amount            int64                `json:"amount"`
	Currency          string               `json:"currency"`
	CustomerEmail     string               `json:"customer_email"`
	SessionID         *string              `json:"session_id"`
	PaymentIntentID   *string              `json:"payment_intent_id"`
	CreatedAt         time.Time            `json:"created_at"`
	UpdatedAt         time.Time            `json:"updated_at"`
	LastEventPosition int64                `json:"last_event_position"`
}

// FoldBooking folds one booking's events, in stream order, into its status
// row: the state the events record (domain.Rehydrate), created_at and
// updated_at from the first and last event's recorded_at, and the last
// event's position.
//
// It returns an error wrapping domain.ErrNotFound for no events and
// domain.ErrInvalid for a stream the domain cannot replay.
func FoldBooking(events []Envelope) (BookingRow, error) {
	if len(events) == 0 {
		return BookingRow{}, fmt.Errorf("projections: fold booking: %w", domain.ErrNotFound)
	}
	evs := make([]domain.Event, len(events))
	for i, e := range events {
		evs[i] = e.Event
	}
	id := domain.BookingID(events[0].StreamID)
	b, err := domain.Rehydrate(id, evs)
	if err != nil {
		return BookingRow{}, fmt.Errorf("projections: fold booking %d: %w", id, err)
	}
	last := events[len(events)-1]
	return RowFromBooking(b, events[0].RecordedAt, last.RecordedAt, last.Position), nil
}

// RowFromBooking is the status row of a rehydrated booking.
func RowFromBooking(b *domain.Booking, createdAt, updatedAt time.Time, lastPosition int64) BookingRow {
	return BookingRow{
		ID:                int64(b.ID()),
		ResourceID:        b.ResourceID(),
		CheckIn:           b.Stay().CheckInString(),
		CheckOut:          b.Stay().CheckOutString(),
		Status:            b.Status(),
		PaymentStatus:     b.PaymentStatus(),
		Amount:            b.Price().Amount,
		Currency:          b.Price().Currency,
		CustomerEmail:     b.CustomerEmail(),
		SessionID:         optional(b.SessionID()),
		PaymentIntentID:   optional(b.PaymentIntentID()),
		CreatedAt:         createdAt.UTC(),
		UpdatedAt:         updatedAt.UTC(),
		LastEventPosition: lastPosition,
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
