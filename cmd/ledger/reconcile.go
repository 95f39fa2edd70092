package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/worklist"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
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
			logger := cfg.newLogger()
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
			store, err := bookingstore.New(bookingstore.Config{DB: db, Logger: logger})
			if err != nil {
				return err
			}
			// The listing is of the key's own events, so they pass the mode;
			// the gate still runs, as for every channel.
			mode, _, err := cfg.stripeMode()
			if err != nil {
				return err
			}
			svc, err := app.NewService(app.Config{Bookings: store, Mode: mode, Logger: logger})
			if err != nil {
				return err
			}
			run, err := newReconciler(svc, client).RunOnce(cmd.Context(), worklist.ReconcileRuns{DB: db}, time.Now().Add(-since), 0)
			if errors.Is(err, app.ErrReconcileBusy) {
				return errors.New("another reconciliation is running (serve --reconcile-every?): try again later")
			}
			fmt.Fprintln(cmd.OutOrStdout(), run.Summary)
			return err
		},
	}
	cmd.Flags().DurationVar(&since, "since", 72*time.Hour, "how far back to look (Stripe keeps 30 days)")
	return cmd
}

// newReconciler reconciles svc with Stripe's Events API through client.
// firstReconcileWindow is how far back the first scheduled run looks, when
// no run has succeeded yet.
const firstReconcileWindow = 72 * time.Hour

// reconcileRuntime is serve's scheduled reconciliation.
type reconcileRuntime struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startReconcile starts reconciliation on cfg.ReconcileEvery (one process
// at a time, across every server of the database), when set.
func (a *App) startReconcile(svc *app.Service) error {
	if a.cfg.ReconcileEvery <= 0 {
		return nil
	}
	client, err := a.cfg.stripeClient(a.logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.reconcile = reconcileRuntime{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.reconcile.done)
		newReconciler(svc, client).Schedule(ctx, worklist.ReconcileRuns{DB: a.db}, a.cfg.ReconcileEvery, firstReconcileWindow,
			a.logger.With("component", "reconcile"))
	}()
	return nil
}

func (a *App) stopReconcile() {
	if a.reconcile.cancel == nil {
		return
	}
	a.reconcile.cancel()
	<-a.reconcile.done
	a.reconcile = reconcileRuntime{}
}

// obligations is the worklist of this server.
func (a *App) obligations() worklist.Obligations {
	return worklist.Obligations{DB: a.db, ReconcileEvery: a.cfg.ReconcileEvery, Since: a.started}
}

func newReconciler(svc *app.Service, client app.EventLister) app.Reconciler {
	return app.Reconciler{Service: svc, Events: client, Parse: stripe.ParseDelivery, Types: stripe.HandledEventTypes}
}
