package app

import (
	"context"
	"fmt"

	"github.com/booking-ledger/ledger/domain"
)

// Ingest records one Stripe delivery and its consequences in one
// transaction: the inbox row, the decision on the booking it names, the
// appended events and the status row; or, for a duplicate or an unmatched
// event, a delivery row only; or, for an event of the other mode or of a
// foreign Connect account (Config.Mode), a delivery row only, without
// looking its booking up. It returns after the commit, so a result
// without error is durable. Webhooks, the redirect check, reconciliation and
// replays all come through here, so they decide alike.
//
// A race lost on the stream version, the inbox key or the overlap backstop
// re-runs the decision, which then sees the winner. Errors:
// domain.ErrInvalid for facts the domain rejects (nothing written); anything
// else is an internal failure (nothing written).
func (s *Service) Ingest(ctx context.Context, d Delivery) (IngestResult, error) {
	if d.EventID == "" || d.Type == "" {
		return IngestResult{}, fmt.Errorf("stripe event without id or type: %w", domain.ErrInvalid)
	}
	if len(d.Lookup.BookingIDs) > 2 {
		return IngestResult{}, fmt.Errorf("stripe event %s names %d booking ids, at most two are looked up: %w", d.EventID, len(d.Lookup.BookingIDs), domain.ErrInvalid)
	}
	if d.ReceivedAt.IsZero() {
		d.ReceivedAt = s.cfg.Now()
	}
	if d.Source == "" {
		d.Source = string(domain.SourceWebhook)
	}
	if res, ignored, err := s.gate(ctx, d); ignored {
		return res, err
	}
	decide := decision(d)
	res, err := retry(ctx, func() (IngestResult, error) {
		return s.cfg.Bookings.Record(ctx, d, decide)
	}, domain.ErrConflict)
	if err == nil {
		s.logDecisions(ctx, d, res)
		// A payment recorded its PaymentIntent: what arrived about it
		// before (a refund, a dispute) can be matched now. A replayed
		// payment does so too; the chain ends, as each replayed delivery
		// is decided once (its inbox row) and only payments start it.
		if res.Appended(domain.EventPaymentSucceeded) && d.Payment.PaymentIntentID != "" {
			s.retryUnmatched(ctx, d.Payment.PaymentIntentID)
		}
	}
	return res, err
}

// decision is the rule a delivery's fact calls for: the one place where a
// Fact meets the domain. Adding a Stripe type that means an existing fact
// touches only adapters/stripe; a new fact adds a case here.
func decision(d Delivery) Decision {
	return func(b *domain.Booking, stays []domain.Stay) ([]domain.Event, error) {
		var (
			events []domain.Event
			err    error
		)
		switch d.Fact {
		case FactPaymentSucceeded:
			events, err = domain.DecidePaymentSucceeded(b, d.Payment, stays)
		case FactAsyncPaymentSucceeded:
			events, err = domain.DecideAsyncPaymentSucceeded(b, d.Payment, stays)
		case FactAsyncPaymentFailed:
			events, err = domain.DecideAsyncPaymentFailed(b, d.Payment)
		case FactPaymentFailed:
			events, err = domain.DecidePaymentFailed(b, d.Payment)
		case FactSessionExpired:
			events, err = domain.DecideSessionExpired(b, d.Payment.SessionID)
		case FactRefund:
			events, err = domain.DecideRefund(b, d.Refund)
		case FactChargeRefunded:
			events, err = domain.DecideChargeRefunded(b, d.ChargeRefund)
		case FactDisputeCreated, FactDisputeUpdated, FactDisputeClosed, FactDisputeFundsWithdrawn, FactDisputeFundsReinstated:
			events, err = domain.DecideDispute(b, disputeFacts[d.Fact], d.Dispute)
		default:
			err = fmt.Errorf("event type %s (%s) has no decision: %w", d.Type, d.Fact, domain.ErrInvalid)
		}
		if err != nil {
			return nil, fmt.Errorf("stripe event %s for booking %d: %w", d.EventID, b.ID(), err)
		}
		return events, nil
	}
}

// disputeFacts maps the dispute facts onto the domain's.
var disputeFacts = map[Fact]domain.DisputeFact{
	FactDisputeCreated:         domain.DisputeFactCreated,
	FactDisputeUpdated:         domain.DisputeFactUpdated,
	FactDisputeClosed:          domain.DisputeFactClosed,
	FactDisputeFundsWithdrawn:  domain.DisputeFactFundsWithdrawn,
	FactDisputeFundsReinstated: domain.DisputeFactFundsReinstated,
}

// channel names a delivery's source in the alert lines.
var channel = map[string]string{
	string(domain.SourceWebhook):  "webhook",
	string(domain.SourceRedirect): "redirect",
	string(domain.SourceAPI):      "reconciliation",
	string(domain.SourceReplay):   "replay",
}

// logDecisions writes the lines existing alerts count, once per decision
// whatever the channel: "Booking <id> confirmed successfully via <channel>"
// and "Booking <id> cancelled due to availability conflict"; and warnings
// an operator acts on: "Booking <id> disputed" and "Booking <id> refund
// <refund id> failed".
func (s *Service) logDecisions(ctx context.Context, d Delivery, res IngestResult) {
	if len(res.Events) == 0 {
		return
	}
	via, ok := channel[d.Source]
	if !ok {
		via = d.Source
	}
	log := s.log.With("event_type", d.Type, "event_id", d.EventID, "booking_id", res.BookingID,
		"outcome", string(res.Outcome), "source", d.Source)
	if d.Payment.SessionID != "" {
		log = log.With("session_id", d.Payment.SessionID)
	}
	for _, e := range res.Events {
		switch e.EventType() {
		case domain.EventBookingConfirmed:
			log.InfoContext(ctx, fmt.Sprintf("Booking %d confirmed successfully via %s", res.BookingID, via))
		case domain.EventAvailabilityConflict:
			log.WarnContext(ctx, fmt.Sprintf("Booking %d cancelled due to availability conflict", res.BookingID))
		case domain.EventDisputeOpened:
			ev := e.(domain.DisputeOpened)
			log.WarnContext(ctx, fmt.Sprintf("Booking %d disputed", res.BookingID), "dispute_id", ev.DisputeID,
				"dispute_status", string(ev.Status), "amount", ev.Amount, "currency", ev.Currency)
		case domain.EventRefundFailed:
			if ev := e.(domain.RefundFailed); ev.RefundID != "" {
				log.WarnContext(ctx, fmt.Sprintf("Booking %d refund %s failed", res.BookingID, ev.RefundID),
					"failure_code", ev.FailureCode, "amount", ev.Amount, "currency", ev.Currency)
			}
		}
	}
}
