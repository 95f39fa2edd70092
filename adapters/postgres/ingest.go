package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// Stripe event types the ledger decides on.
const (
	StripeCheckoutCompleted      = "checkout.session.completed"
	StripeCheckoutAsyncSucceeded = "checkout.session.async_payment_succeeded"
	StripeCheckoutAsyncFailed    = "checkout.session.async_payment_failed"
	StripeCheckoutExpired        = "checkout.session.expired"
	StripePaymentSucceeded       = "payment_intent.succeeded"
	StripePaymentFailed          = "payment_intent.payment_failed"
)

// StripeDelivery is one Stripe event as received: the raw body and
// signature kept for the auditors, and the facts the decision needs, already
// extracted by the Stripe adapter.
type StripeDelivery struct {
	EventID, Type, APIVersion string
	Livemode                  bool
	Created                   time.Time
	// Raw is the body byte for byte; Signature the Stripe-Signature header
	// ("" for events fetched from the API).
	Raw       []byte
	Signature string
	// Source is "webhook", "api" or "redirect".
	Source     string
	ReceivedAt time.Time
	// Handled is false for event types the ledger does not decide on.
	Handled bool
	Lookup  BookingLookup
	Payment domain.Payment
}

// BookingLookup holds the keys that find a booking, in the order they are
// tried: the booking ids the event names (metadata.booking_id, then
// client_reference_id), the Checkout Session id, the PaymentIntent id.
type BookingLookup struct {
	BookingIDs      []int64
	SessionID       string
	PaymentIntentID string
}

// Outcome is what ingesting a Stripe event came to.
type Outcome string

// Outcomes of Ingest.
const (
	// OutcomeProcessed: decided and recorded (possibly with no new event,
	// when the facts change nothing).
	OutcomeProcessed Outcome = "processed"
	// OutcomeIgnored: an event type the ledger does not decide on.
	OutcomeIgnored Outcome = "ignored"
	// OutcomeDuplicate: this Stripe event was already recorded.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeUnmatched: no booking matches; the delivery is kept and the
	// event is matched again when Stripe redelivers it.
	OutcomeUnmatched Outcome = "unmatched"
)

// IngestResult reports what Ingest did.
type IngestResult struct {
	Outcome   Outcome
	BookingID int64
	// Events are the events appended, in order.
	Events []StoredEvent
	// Booking is the status row after the event (zero when no booking).
	Booking projections.BookingRow
}

// errInboxTaken: a concurrent transaction recorded the same Stripe event
// first; the decision is run again and finds it.
var errInboxTaken = errors.New("stripe event recorded concurrently")

// Ingest records one Stripe event and its consequences in one transaction:
// the inbox row (raw body and signature), the decision on the booking it
// names, the appended events and the status row — or, for a duplicate or an
// unmatched event, a delivery row only. It returns after the commit, so a
// result without error is durable.
//
// Decisions about one resource are serialized by an advisory lock, across
// every server process; a race lost on the stream version, the inbox key or
// the overlap constraint re-runs the decision, which then sees the winner.
// Errors: domain.ErrInvalid for facts the domain rejects (nothing written);
// anything else is an internal failure (nothing written).
func (l *Ledger) Ingest(ctx context.Context, d StripeDelivery) (IngestResult, error) {
	if d.EventID == "" || d.Type == "" {
		return IngestResult{}, fmt.Errorf("stripe event without id or type: %w", domain.ErrInvalid)
	}
	if d.ReceivedAt.IsZero() {
		d.ReceivedAt = l.now()
	}
	if d.Source == "" {
		d.Source = "webhook"
	}
	var res IngestResult
	var err error
	for attempt := 1; attempt <= maxDecisionAttempts; attempt++ {
		err = Transact(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
			res, err = l.ingestTx(ctx, tx, d)
			return err
		})
		if !errors.Is(err, errInboxTaken) && !errors.Is(err, domain.ErrConcurrency) && !errors.Is(err, domain.ErrConflict) {
			break
		}
	}
	return res, err
}

func (l *Ledger) ingestTx(ctx context.Context, tx *sql.Tx, d StripeDelivery) (IngestResult, error) {
	// One round trip: is the event known, and which booking does it name.
	var known bool
	var bookingID sql.NullInt64
	var resourceID sql.NullString
	err := tx.QueryRowContext(ctx, `
		WITH found AS (
			SELECT id, resource_id FROM (
				SELECT id, resource_id, array_position($2::bigint[], id) AS rank FROM bookings WHERE id = ANY ($2::bigint[])
				UNION ALL SELECT id, resource_id, 1000 FROM bookings WHERE session_id = $3 AND $3 <> ''
				UNION ALL SELECT id, resource_id, 1001 FROM bookings WHERE payment_intent_id = $4 AND $4 <> ''
			) candidates ORDER BY rank, id LIMIT 1
		)
		SELECT EXISTS (SELECT 1 FROM stripe_inbox WHERE event_id = $1),
			(SELECT id FROM found), (SELECT resource_id FROM found)`,
		d.EventID, pq.Array(d.Lookup.BookingIDs), d.Lookup.SessionID, d.Lookup.PaymentIntentID,
	).Scan(&known, &bookingID, &resourceID)
	if err != nil {
		return IngestResult{}, fmt.Errorf("postgres: look up stripe event %s: %w", d.EventID, err)
	}
	switch {
	case known:
		var booking sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT booking_id FROM stripe_inbox WHERE event_id = $1`, d.EventID).Scan(&booking); err != nil {
			return IngestResult{}, fmt.Errorf("postgres: inbox row of %s: %w", d.EventID, err)
		}
		return IngestResult{Outcome: OutcomeDuplicate, BookingID: booking.Int64}, insertDelivery(ctx, tx, d, OutcomeDuplicate, booking)
	case !d.Handled:
		return IngestResult{Outcome: OutcomeIgnored}, insertInbox(ctx, tx, d, OutcomeIgnored, sql.NullInt64{})
	case !bookingID.Valid:
		return IngestResult{Outcome: OutcomeUnmatched}, insertDelivery(ctx, tx, d, OutcomeUnmatched, sql.NullInt64{})
	}

	if err := lockResource(ctx, tx, resourceID.String); err != nil {
		return IngestResult{}, err
	}
	b, stored, err := loadBooking(ctx, l.store, tx, bookingID.Int64)
	if err != nil {
		return IngestResult{}, err
	}
	decided, err := l.decide(ctx, tx, d, b)
	if err != nil {
		return IngestResult{}, fmt.Errorf("stripe event %s for booking %d: %w", d.EventID, b.ID(), err)
	}
	res := IngestResult{Outcome: OutcomeProcessed, BookingID: bookingID.Int64}
	if len(decided) > 0 {
		occurred := d.Created
		if occurred.IsZero() {
			occurred = d.ReceivedAt
		}
		row, err := l.appendAndProject(ctx, tx, b.ID(), stored, decided, occurred, d.EventID)
		if err != nil {
			return IngestResult{}, err
		}
		res.Booking = row
		res.Events = make([]StoredEvent, len(decided))
		for i, ev := range decided {
			res.Events[i] = StoredEvent{StreamID: int64(b.ID()), Type: ev.EventType()}
		}
	}
	if err := insertInbox(ctx, tx, d, OutcomeProcessed, bookingID); err != nil {
		return IngestResult{}, err
	}
	if len(decided) == 0 {
		if res.Booking, err = GetBooking(ctx, tx, bookingID.Int64); err != nil {
			return IngestResult{}, err
		}
	}
	return res, nil
}

func (l *Ledger) decide(ctx context.Context, tx *sql.Tx, d StripeDelivery, b *domain.Booking) ([]domain.Event, error) {
	stays := func() ([]domain.Stay, error) { return confirmedStays(ctx, tx, b) }
	switch d.Type {
	case StripeCheckoutCompleted, StripePaymentSucceeded:
		s, err := stays()
		if err != nil {
			return nil, err
		}
		return domain.DecidePaymentSucceeded(b, d.Payment, s)
	case StripeCheckoutAsyncSucceeded:
		s, err := stays()
		if err != nil {
			return nil, err
		}
		return domain.DecideAsyncPaymentSucceeded(b, d.Payment, s)
	case StripeCheckoutAsyncFailed:
		return domain.DecideAsyncPaymentFailed(b, d.Payment)
	case StripePaymentFailed:
		return domain.DecidePaymentFailed(b, d.Payment)
	case StripeCheckoutExpired:
		return domain.DecideSessionExpired(b, d.Payment.SessionID)
	}
	return nil, fmt.Errorf("event type %s has no decision: %w", d.Type, domain.ErrInvalid)
}

func insertInbox(ctx context.Context, tx *sql.Tx, d StripeDelivery, outcome Outcome, bookingID sql.NullInt64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO stripe_inbox
		(event_id, event_type, api_version, livemode, created, received_at, source, outcome, booking_id, payload, payload_sha256, signature_header)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		d.EventID, d.Type, d.APIVersion, d.Livemode, d.Created.UTC(), d.ReceivedAt.UTC(), d.Source, string(outcome),
		bookingID, d.Raw, sha256Sum(d.Raw), d.Signature)
	if constraintViolated(err, "stripe_inbox_event_id_key") {
		return fmt.Errorf("postgres: inbox %s: %w", d.EventID, errInboxTaken)
	}
	if err != nil {
		return fmt.Errorf("postgres: inbox %s: %w", d.EventID, err)
	}
	return nil
}

func insertDelivery(ctx context.Context, tx *sql.Tx, d StripeDelivery, outcome Outcome, bookingID sql.NullInt64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO stripe_deliveries
		(event_id, event_type, received_at, outcome, booking_id, payload, payload_sha256, signature_header)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		d.EventID, d.Type, d.ReceivedAt.UTC(), string(outcome), bookingID, d.Raw, sha256Sum(d.Raw), d.Signature)
	if err != nil {
		return fmt.Errorf("postgres: delivery of %s: %w", d.EventID, err)
	}
	return nil
}
