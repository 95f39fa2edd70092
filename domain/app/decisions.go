package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// A decision fix (a rule of domain/ changed) does not rewrite the log: the
// events recorded under the old rule stay. DiffDecisions shows what today's
// rules would have decided from the same inputs, so that an operator can act
// with compensating operations (a cancellation, a refund). Projection
// rebuilds fix read models; this is for rules.

// DecisionInput is one input a booking's events were decided from, in the
// order the ledger decided them.
type DecisionInput struct {
	BookingID int64
	// At orders the inputs (when they were decided); Seq breaks ties (the
	// position of the first event, or the inbox row).
	At  time.Time
	Seq int64
	// Delivery is a Stripe delivery as the ledger received it (webhook,
	// reconciliation, redirect check, replay), nil for the other inputs.
	Delivery *Delivery
	// Recorded are the events one request or worker recorded without a
	// Stripe delivery (the booking's creation, its Checkout Session, an
	// operator's cancellation, the refund worker's outcome): decided again
	// from their own fields.
	Recorded []domain.Event
	// Events are what was recorded for the input.
	Events []domain.Event
}

// DecisionInputs reads the inputs of every booking (or of one, booking >
// 0), in one snapshot (adapters/postgres/bookingstore); parse turns a
// stored Stripe input back into its delivery.
type DecisionInputs interface {
	DecisionInputs(ctx context.Context, booking int64, parse InputParser) ([]DecisionInput, error)
}

// InputParser turns a stored Stripe input back into its delivery: the raw
// event, or for source "redirect" the Checkout Session the redirect check
// retrieved, about booking (cmd/ledger builds it from the Stripe adapter).
type InputParser func(raw []byte, header, source, eventID string, booking int64, receivedAt time.Time) (Delivery, error)

// DecisionDiff is a booking today's rules decide differently.
type DecisionDiff struct {
	BookingID int64
	// Recorded and Decided are the event types of its stream, as recorded
	// and as today's rules decide them.
	Recorded, Decided []string
}

// DiffDecisions runs today's decisions over inputs, in memory and in their
// order, every booking seeing the others as today's rules leave them (an
// availability conflict depends on what else is confirmed), and returns the
// bookings whose events would differ, by id, and how many bookings it saw.
func DiffDecisions(inputs []DecisionInput) ([]DecisionDiff, int, error) {
	inputs = slices.Clone(inputs)
	slices.SortStableFunc(inputs, func(a, b DecisionInput) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return int(a.Seq - b.Seq)
	})
	bookings := map[int64]*domain.Booking{}
	recorded := map[int64][]string{}
	decided := map[int64][]string{}
	var order []int64
	for _, in := range inputs {
		for _, e := range in.Events {
			recorded[in.BookingID] = append(recorded[in.BookingID], e.EventType())
		}
		b, known := bookings[in.BookingID]
		if !known {
			if len(in.Recorded) == 0 || in.Recorded[0].EventType() != domain.EventBookingRequested {
				return nil, 0, fmt.Errorf("booking %d: its first input is not its request: %w", in.BookingID, domain.ErrInvalid)
			}
			b = &domain.Booking{}
			bookings[in.BookingID] = b
			order = append(order, in.BookingID)
		}
		events, err := redecide(b, in, bookings)
		if err != nil {
			// A rule that now refuses an input decides nothing for it.
			events = nil
		}
		for _, e := range events {
			if err := b.Apply(e); err != nil {
				return nil, 0, fmt.Errorf("booking %d: %w", in.BookingID, err)
			}
			decided[in.BookingID] = append(decided[in.BookingID], e.EventType())
		}
	}
	var diffs []DecisionDiff
	slices.Sort(order)
	for _, id := range order {
		if !slices.Equal(recorded[id], decided[id]) {
			diffs = append(diffs, DecisionDiff{BookingID: id, Recorded: recorded[id], Decided: decided[id]})
		}
	}
	return diffs, len(order), nil
}

// redecide is today's decision for one input.
func redecide(b *domain.Booking, in DecisionInput, bookings map[int64]*domain.Booking) ([]domain.Event, error) {
	if d := in.Delivery; d != nil {
		return decision(*d)(b, confirmedStays(b, bookings))
	}
	first := in.Recorded[0]
	switch ev := first.(type) {
	case domain.BookingRequested:
		return in.Recorded, nil
	case domain.CheckoutSessionOpened:
		return domain.DecideCheckoutSessionOpened(b, ev.SessionID, ev.URL, ev.ExpiresAt)
	case domain.BookingCancelled:
		if ev.Reason == domain.CancelRequested {
			var refund int64
			for _, e := range in.Recorded[1:] {
				if r, ok := e.(domain.RefundRequested); ok {
					refund = r.Amount
				}
			}
			return domain.DecideCancel(b, ev.Note, &refund)
		}
	case domain.RefundIssued:
		return domain.DecideRefundIssued(b, ev)
	case domain.RefundFailed:
		if ev.RefundID == "" {
			return domain.DecideRefundFailed(b, ev)
		}
	case domain.RefundRequested:
		return domain.DecideRetryRefund(b, ev.PaymentIntentID)
	}
	// Recorded by a path with no decision to run again: kept as it is.
	return in.Recorded, nil
}

// confirmedStays are the stays confirmed now of the other bookings of b's
// resource.
func confirmedStays(b *domain.Booking, bookings map[int64]*domain.Booking) []domain.Stay {
	var out []domain.Stay
	for id, o := range bookings {
		if o != b && o.Version() > 0 && o.ResourceID() == b.ResourceID() && o.Status() == domain.StatusConfirmed {
			out = append(out, domain.Stay{BookingID: domain.BookingID(id), Range: o.Stay()})
		}
	}
	return out
}
