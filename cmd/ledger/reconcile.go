package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	httpapi "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
)

// stripeRetention is how far back Stripe's Events API lists events.
const stripeRetention = 30 * 24 * time.Hour

func newReconcileCmd() *cobra.Command {
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "reconcile [--since 72h]",
		Short: "Ingest the Stripe events the webhook endpoint missed, from Stripe's Events API",
		Long: `Lists the events of the handled types that Stripe's Events API holds for the
last --since (Stripe keeps 30 days), finds those missing from the inbox
(the endpoint was down, disabled or misconfigured) and ingests them through
the webhook's decision path, with inbox source "api" and no signature.
Running it again ingests nothing new. Prints: seen, already present,
ingested, unmatched (no booking matches; kept in stripe_deliveries and
matched again by the next run), and failed when some could not be ingested
(the command then exits non-zero).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if since <= 0 {
				return errors.New("--since must be positive")
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			logger := newLogger()
			if since > stripeRetention {
				logger.Warn("Stripe lists only the last 30 days of events", "since", since)
			}
			client, err := cfg.stripeClient(logger)
			if err != nil {
				return err
			}
			if client == nil {
				return errors.New("STRIPE_SECRET_KEY is not set: reconciliation reads Stripe's Events API")
			}
			db, err := openDB(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := postgres.Migrate(cmd.Context(), db, nil); err != nil {
				return err
			}
			ledger, err := postgres.NewLedger(postgres.LedgerConfig{DB: db, Logger: logger})
			if err != nil {
				return err
			}
			sum, err := reconcile(cmd.Context(), client, ledger, time.Now().Add(-since), time.Now, logger)
			fmt.Fprintln(cmd.OutOrStdout(), sum)
			return err
		},
	}
	cmd.Flags().DurationVar(&since, "since", 72*time.Hour, "how far back to look (Stripe keeps 30 days)")
	return cmd
}

// eventLister is what reconciliation needs from Stripe's API.
type eventLister interface {
	ListEvents(ctx context.Context, since time.Time, types []string) ([]json.RawMessage, error)
}

// reconcileLedger is what reconciliation needs from the ledger.
type reconcileLedger interface {
	KnownStripeEvents(ctx context.Context, ids []string) (map[string]bool, error)
	Ingest(ctx context.Context, d postgres.StripeDelivery) (postgres.IngestResult, error)
}

// reconcileSummary counts what one reconciliation found.
type reconcileSummary struct {
	Seen, Present, Ingested, Unmatched, Failed int
}

func (s reconcileSummary) String() string {
	out := fmt.Sprintf("seen %d, already present %d, ingested %d, unmatched %d", s.Seen, s.Present, s.Ingested, s.Unmatched)
	if s.Failed > 0 {
		out += fmt.Sprintf(", failed %d", s.Failed)
	}
	return out
}

// reconcile ingests, oldest first, the events Stripe lists since then that
// the inbox lacks, as deliveries from source "api" (raw event as listed, no
// signature). It goes on after an event that fails and then returns an
// error counting the failures; an error listing or reading the inbox stops
// it.
func reconcile(ctx context.Context, st eventLister, l reconcileLedger, since time.Time, now func() time.Time, log *slog.Logger) (reconcileSummary, error) {
	var sum reconcileSummary
	raws, err := st.ListEvents(ctx, since, stripe.HandledEventTypes)
	if err != nil {
		return sum, err
	}
	sum.Seen = len(raws)
	events := make([]stripe.Event, len(raws))
	ids := make([]string, 0, len(raws))
	var failures []error
	for i, raw := range raws {
		ev, err := stripe.ParseEvent(raw)
		if err != nil {
			failures = append(failures, fmt.Errorf("event %d of the listing: %w", i+1, err))
			continue
		}
		events[i] = ev
		ids = append(ids, ev.ID)
	}
	known, err := l.KnownStripeEvents(ctx, ids)
	if err != nil {
		return sum, err
	}
	for i, ev := range events {
		if ev.ID == "" {
			continue
		}
		if known[ev.ID] {
			sum.Present++
			continue
		}
		log := log.With("event_type", ev.Type, "event_id", ev.ID)
		log.InfoContext(ctx, "Reconciling Stripe event: "+ev.Type)
		res, err := l.Ingest(ctx, apiDelivery(ev, raws[i], now()))
		if err != nil {
			log.WarnContext(ctx, "Stripe event not ingested", "outcome", "error", "error", err)
			failures = append(failures, fmt.Errorf("%s: %w", ev.ID, err))
			continue
		}
		log.InfoContext(ctx, "Stripe event reconciled", "booking_id", res.BookingID, "outcome", string(res.Outcome))
		for _, e := range res.Events {
			switch e.Type {
			case domain.EventBookingConfirmed:
				log.InfoContext(ctx, fmt.Sprintf("Booking %d confirmed successfully via reconciliation", res.BookingID), "booking_id", res.BookingID)
			case domain.EventAvailabilityConflict:
				log.WarnContext(ctx, fmt.Sprintf("Booking %d cancelled due to availability conflict", res.BookingID), "booking_id", res.BookingID)
			}
		}
		switch res.Outcome {
		case postgres.OutcomeUnmatched:
			sum.Unmatched++
		case postgres.OutcomeDuplicate:
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

// apiDelivery is an event fetched from Stripe's Events API as a delivery
// for the webhook's decision path.
func apiDelivery(ev stripe.Event, raw []byte, now time.Time) postgres.StripeDelivery {
	return httpapi.DeliveryFromEvent(ev, raw, "", string(domain.SourceAPI), now)
}
