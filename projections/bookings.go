package projections

import (
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// Envelope is a decoded event with the parts of its envelope that read
// models use.
type Envelope struct {
	// Position is the event's global position; 0 for an event appended in
	// the current transaction whose position the database has not returned
	// yet (see BookingRow.LastEventPosition).
	Position int64
	// StreamID is the booking id.
	StreamID int64
	// RecordedAt is when the ledger recorded the event (UTC, microseconds).
	RecordedAt time.Time
	Event      domain.Event
}

// BookingRow is one row of the bookings status table. The JSON names are the
// column names, which the HTTP API uses as they are.
type BookingRow struct {
	ID              int64                `json:"id"`
	ResourceID      string               `json:"resource_id"`
	CheckIn         string               `json:"check_in"`  // YYYY-MM-DD
	CheckOut        string               `json:"check_out"` // YYYY-MM-DD, exclusive
	Status          domain.Status        `json:"status"`
	PaymentStatus   domain.PaymentStatus `json:"payment_status"`
	Amount          int64                `json:"amount"`
	Currency        string               `json:"currency"`
	CustomerEmail   string               `json:"customer_email"`
	SessionID       *string              `json:"session_id"`
	PaymentIntentID *string              `json:"payment_intent_id"`
	// RefundedAmount is the money given back on all of the booking's
	// payments (minor units, each refund counted once).
	RefundedAmount int64 `json:"refunded_amount"`
	// DisputeStatus is Stripe's status of the booking's latest dispute,
	// nil when it has none; DisputedAmount that dispute's amount (0 when
	// none) and DisputeEvidenceDueBy its evidence due date (nil when none).
	DisputeStatus        *domain.DisputeStatus `json:"dispute_status"`
	DisputedAmount       int64                 `json:"disputed_amount"`
	DisputeEvidenceDueBy *time.Time            `json:"dispute_evidence_due_by"`
	// CreatedAt is the recorded_at of the stream's first event, UpdatedAt
	// that of its last.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// LastEventPosition is the position of the stream's last event. 0 means
	// "the position the current transaction just drew" to the inline
	// writer, which fills it in from the sequence.
	LastEventPosition int64 `json:"last_event_position"`
}

// The bookings projection: the status table, kept inline (in the
// transaction of the append) and rebuilt from the log on demand.
const (
	BookingsName = "bookings"
	// BookingsVersion is the version of FoldBooking. Bump it with every
	// change of what the fold produces, so that `ledger projections status`
	// flags the stored table as stale until it is rebuilt.
	BookingsVersion = 2
)

// FoldBooking folds one booking's events, in stream order, into its status
// row: a pure function of the events. Business rules are never re-evaluated;
// the row only reflects the recorded facts (see domain.Booking.Apply).
//
// It returns an error wrapping domain.ErrNotFound for no events, and one
// wrapping domain.ErrInvalid for a stream that domain.Rehydrate rejects.
func FoldBooking(envs []Envelope) (BookingRow, error) {
	if len(envs) == 0 {
		return BookingRow{}, fmt.Errorf("fold booking: no events: %w", domain.ErrNotFound)
	}
	events := make([]domain.Event, len(envs))
	for i, e := range envs {
		events[i] = e.Event
	}
	id := envs[0].StreamID
	b, err := domain.Rehydrate(domain.BookingID(id), events)
	if err != nil {
		return BookingRow{}, fmt.Errorf("fold booking %d: %w", id, err)
	}
	last := envs[len(envs)-1]
	row := BookingRow{
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
		CreatedAt:         envs[0].RecordedAt.UTC(),
		UpdatedAt:         last.RecordedAt.UTC(),
		LastEventPosition: last.Position,
		RefundedAmount:    b.RefundedAmount(),
	}
	if d, ok := b.LatestDispute(); ok {
		row.DisputeStatus = &d.Status
		row.DisputedAmount = d.Amount
		if !d.EvidenceDueBy.IsZero() {
			due := d.EvidenceDueBy.UTC()
			row.DisputeEvidenceDueBy = &due
		}
	}
	return row, nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// RawEvent is a stored event not yet decoded, as a rebuild reads it.
type RawEvent struct {
	Position      int64
	StreamID      int64
	StreamVersion int
	Type          string
	SchemaVersion int
	RecordedAt    time.Time
	Payload       []byte
}

// FoldBookingRaw folds one booking's stored events, in stream order: it
// equals FoldBooking of the events decoded with domain.Decode, errors
// included (a payload Decode rejects fails the fold with domain.ErrInvalid).
// Payloads in the shape the ledger writes take a fast path that skips
// Decode and Rehydrate.
func FoldBookingRaw(events []RawEvent) (BookingRow, error) {
	if row, ok := foldFast(events); ok {
		return row, nil
	}
	return foldBookingSlow(events)
}

func foldBookingSlow(events []RawEvent) (BookingRow, error) {
	envs := make([]Envelope, len(events))
	for i, e := range events {
		ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
		if err != nil {
			return BookingRow{}, fmt.Errorf("fold booking %d: event %d: %w", e.StreamID, e.Position, err)
		}
		envs[i] = Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: ev}
	}
	return FoldBooking(envs)
}

// FromStored decodes stored events (domain.Decode) and pairs each with its
// envelope, in the order given: the one way from a log row to what the folds
// read. It leaves room for extra more envelopes (events about to be
// appended). Errors wrap domain.ErrInvalid for an event that does not
// decode, naming it.
func FromStored(stored []eventlog.StoredEvent, extra int) ([]Envelope, error) {
	envs := make([]Envelope, len(stored), len(stored)+extra)
	for i, e := range stored {
		ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
		if err != nil {
			return nil, fmt.Errorf("projections: decode %s: %w", e, err)
		}
		envs[i] = Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: ev}
	}
	return envs, nil
}

// FoldStored is FoldBooking of stored events (FromStored).
func FoldStored(stored []eventlog.StoredEvent) (BookingRow, error) {
	envs, err := FromStored(stored, 0)
	if err != nil {
		return BookingRow{}, err
	}
	return FoldBooking(envs)
}
