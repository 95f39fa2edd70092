// Command ledger is the booking ledger: `ledger serve` takes Stripe
// webhooks and serves the bookings API; the other commands migrate, send test
// webhooks, and (later) rebuild projections and audit the log.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/cmd/ledger/operations"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ledger:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ledger",
		Short:         "Event-sourced booking ledger fed by Stripe webhooks",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newReconcileCmd())
	root.AddCommand(newAuditCmd())
	root.AddCommand(newServeCmd(), newMigrateCmd(), newSendTestWebhookCmd(), newProjectionsCmd())
	root.AddCommand(newBenchCmd())
	ops := operationsEnv()
	root.AddCommand(operations.NewObligationsCmd(ops), operations.NewDeliveriesCmd(ops), operations.NewRefundsCmd(ops), operations.NewDecisionsCmd(ops), newStripeCmd())
	root.AddCommand(newForwardCmd())
	return root
}

func newServeCmd() *cobra.Command {
	var dev, rebuildStale bool
	var addr string
	var reconcileEvery time.Duration
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Stripe webhook and the bookings API",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			cfg.Dev = dev
			cfg.RebuildStale = rebuildStale
			if cmd.Flags().Changed("reconcile-every") {
				cfg.ReconcileEvery = reconcileEvery
			}
			if addr != "" {
				cfg.Addr = addr
			}
			logger := cfg.newLogger()
			if dev {
				if err := cfg.devSecrets(logger); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			app := NewApp(cfg, logger)
			if err := app.Start(ctx); err != nil {
				app.Close()
				return err
			}
			err = app.Wait(ctx)
			logger.Info("shutting down", "grace", cfg.ShutdownGrace)
			return errors.Join(err, app.Close())
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "generate and keep a webhook secret and API token under LEDGER_DATA_DIR when unset")
	cmd.Flags().StringVar(&addr, "addr", "", "listen address (overrides LEDGER_ADDR)")
	cmd.Flags().BoolVar(&rebuildStale, "rebuild-stale", false, "rebuild, in the background, projections whose stored version differs from the code's")
	cmd.Flags().DurationVar(&reconcileEvery, "reconcile-every", 0, "reconcile with Stripe's Events API on this period, one process at a time (overrides LEDGER_RECONCILE_EVERY; needs STRIPE_SECRET_KEY)")
	return cmd
}

func newMigrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create the database if missing, apply pending migrations and set up the runtime role",
		Long: `Connects as the tables' owner (MIGRATE_DATABASE_URL, default DATABASE_URL),
creates the database when missing, applies pending migrations, then creates or
updates the runtime role (LEDGER_RUNTIME_ROLE, default ledger_app) that
` + "`ledger serve`" + ` connects as: it may read everything and append to the log
tables, but change none of them.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			applied, err := migrateOwner(cmd.Context(), cfg, cfg.newLogger())
			if err != nil {
				return err
			}
			fmt.Printf("applied %d migration(s) %v\n", len(applied), applied)
			runtime, err := postgres.WithUser(cfg.ownerURL(), cfg.runtimeRole())
			if err == nil {
				fmt.Fprintf(os.Stderr, "runtime role %s ready: serve with DATABASE_URL=%s\n", cfg.runtimeRole(), postgres.Redact(runtime))
			}
			return nil
		},
	}
}

// operationsEnv hands the operator's commands of package
// cmd/ledger/operations the database and the configuration of the
// environment.
func operationsEnv() operations.Env {
	return operations.Env{
		OpenMigrated: openMigrated,
		LoadConfig: func() (operations.Config, error) {
			cfg, err := loadConfig()
			if err != nil {
				return operations.Config{}, err
			}
			return operations.Config{ReconcileEvery: cfg.ReconcileEvery, NewLogger: cfg.newLogger, StripeMode: cfg.stripeMode}, nil
		},
	}
}
