package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// Reconciler ingests the Stripe events the webhook endpoint missed (it was
// down, disabled or misconfigured), from Stripe's Events API.
type Reconciler struct {
	Service *Service
	Events  EventLister
	// Parse turns a listed event into a delivery (stripe.ParseDelivery).
	Parse EventParser
	// Types are the event types to list: the handled ones
	// (stripe.HandledEventTypes).
	Types []string
}

// ReconcileSummary counts what one reconciliation found.
type ReconcileSummary struct {
	Seen, Present, Ingested, Unmatched, Failed int
}

func (s ReconcileSummary) String() string {
	out := fmt.Sprintf("seen %d, already present %d, ingested %d, unmatched %d", s.Seen, s.Present, s.Ingested, s.Unmatched)
	if s.Failed > 0 {
		out += fmt.Sprintf(", failed %d", s.Failed)
	}
	return out
}

// Reconcile ingests, oldest first, the events Stripe lists since then that
// the inbox lacks, as deliveries from source "api" (raw event as listed, no
// signature), through Service.Ingest like a webhook. Running it again
// ingests nothing new. It goes on after an event that fails and then returns
// an error counting the failures; an error listing or reading the inbox
// stops it.
func (r Reconciler) Reconcile(ctx context.Context, since time.Time) (ReconcileSummary, error) {
	var sum ReconcileSummary
	raws, err := r.Events.ListEvents(ctx, since, r.Types)
	if err != nil {
		return sum, err
	}
	sum.Seen = len(raws)
	deliveries := make([]Delivery, len(raws))
	ids := make([]string, 0, len(raws))
	var failures []error
	for i, raw := range raws {
		d, err := r.Parse(raw, "", string(domain.SourceAPI), r.Service.Now())
		if err != nil {
			failures = append(failures, fmt.Errorf("event %d of the listing: %w", i+1, err))
			continue
		}
		deliveries[i] = d
		ids = append(ids, d.EventID)
	}
	known, err := r.Service.cfg.Bookings.KnownStripeEvents(ctx, ids)
	if err != nil {
		return sum, err
	}
	log := r.Service.log
	for _, d := range deliveries {
		if d.EventID == "" {
			continue
		}
		if known[d.EventID] {
			sum.Present++
			continue
		}
		log := log.With("event_type", d.Type, "event_id", d.EventID)
		log.InfoContext(ctx, "Reconciling Stripe event: "+d.Type)
		d.ReceivedAt = r.Service.Now()
		res, err := r.Service.Ingest(ctx, d)
		if err != nil {
			log.WarnContext(ctx, "Stripe event not ingested", "outcome", "error", "error", err)
			failures = append(failures, fmt.Errorf("%s: %w", d.EventID, err))
			continue
		}
		log.InfoContext(ctx, "Stripe event reconciled", "booking_id", res.BookingID, "outcome", string(res.Outcome))
		switch res.Outcome {
		case OutcomeUnmatched:
			sum.Unmatched++
		case OutcomeDuplicate:
			// A webhook delivery won the race meanwhile.
			sum.Present++
		default:
			sum.Ingested++
		}
	}
	sum.Failed = len(failures)
	if len(failures) > 0 {
		return sum, fmt.Errorf("%d event(s) not ingested: %w", len(failures), errors.Join(failures...))
	}
	return sum, nil
}
