package app

import (
	"context"
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// Replayer decides stored deliveries again (`ledger deliveries replay`):
// each goes through Service.Ingest like a webhook, from source "replay",
// and is as idempotent as any delivery.
type Replayer struct {
	Service *Service
	// Parse reads a stored raw event (the Stripe adapter's ParseDelivery).
	Parse EventParser
}

// ReplayResult is what replaying one stored delivery came to.
type ReplayResult struct {
	EventID string
	// ReplayedAs is the event id it was ingested under: the Stripe event's
	// own for unmatched, wrong-mode and foreign-account deliveries (a later
	// retry by Stripe is then a duplicate), "replay:<id>" for an event
	// ignored before, whose own id the inbox holds already.
	ReplayedAs string
	Outcome    Outcome
	BookingID  int64
	Err        error
}

// ReplayID is the event id d is replayed under (see ReplayResult).
func ReplayID(d StoredDelivery) string {
	if d.Outcome == OutcomeIgnored {
		return "replay:" + d.EventID
	}
	return d.EventID
}

// Replay ingests each of stored again, in order, and returns what each came
// to; with dryRun it only parses them (Outcome empty). A delivery that
// fails is reported in its result and the others go on.
func (r Replayer) Replay(ctx context.Context, stored []StoredDelivery, dryRun bool) []ReplayResult {
	out := make([]ReplayResult, 0, len(stored))
	for _, s := range stored {
		res := ReplayResult{EventID: s.EventID, ReplayedAs: ReplayID(s)}
		d, err := r.Parse(s.Raw, s.Signature, string(domain.SourceReplay), r.Service.Now())
		switch {
		case err != nil:
			res.Err = fmt.Errorf("stored event %s does not parse: %w", s.EventID, err)
		case dryRun:
		default:
			d.EventID = res.ReplayedAs
			var ir IngestResult
			ir, res.Err = r.Service.Ingest(ctx, d)
			res.Outcome, res.BookingID = ir.Outcome, ir.BookingID
		}
		out = append(out, res)
	}
	return out
}

// UnmatchedRetry is what the service needs to decide unmatched deliveries
// again (Config.Unmatched).
type UnmatchedRetry struct {
	Deliveries DeliveryStore
	Parse      EventParser
}

// unmatchedWindow bounds the unmatched deliveries retried at once: older
// ones are the operator's (the unmatched_delivery obligation).
const unmatchedWindow = 72 * time.Hour

// retryUnmatched decides again the unmatched deliveries whose raw body
// names one of keys. Best effort: failures are logged, and Stripe's own
// retries or an operator's replay remain.
func (s *Service) retryUnmatched(ctx context.Context, keys ...string) {
	u := s.cfg.Unmatched
	if u == nil || len(keys) == 0 {
		return
	}
	stored, err := u.Deliveries.StoredDeliveries(ctx, DeliveryFilter{Outcome: OutcomeUnmatched, Mentions: keys,
		Since: s.cfg.Now().Add(-unmatchedWindow), Limit: 50})
	if err != nil {
		s.log.WarnContext(ctx, "unmatched deliveries not retried", "error", err)
		return
	}
	for _, res := range (Replayer{Service: s, Parse: u.Parse}).Replay(ctx, stored, false) {
		log := s.log.With("event_id", res.EventID, "outcome", string(res.Outcome), "booking_id", res.BookingID)
		if res.Err != nil {
			log.WarnContext(ctx, "unmatched delivery retried in vain", "error", res.Err)
			continue
		}
		log.InfoContext(ctx, "unmatched delivery decided again")
	}
}
