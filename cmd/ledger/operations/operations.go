// Package operations holds the operator's commands of `ledger`: obligations,
// deliveries, refunds, projection dead letters and decisions. The ledger
// command wires them with an Env.
package operations

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/adapters/postgres/worklist"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// Env is what the operator's commands take from the ledger command, which
// they do not import.
type Env struct {
	// OpenMigrated opens the database of DATABASE_URL, migrated first when
	// the runtime role is not the tables' owner.
	OpenMigrated func(ctx context.Context) (*sql.DB, error)
	// LoadConfig reads the configuration from the environment.
	LoadConfig func() (Config, error)
}

// Config is the part of the ledger's configuration the commands use.
type Config struct {
	// ReconcileEvery is LEDGER_RECONCILE_EVERY.
	ReconcileEvery time.Duration
	// NewLogger is the logger of LEDGER_LOG_FORMAT, on stderr.
	NewLogger func() *slog.Logger
	// StripeMode is the Stripe mode in effect and what set it.
	StripeMode func() (mode app.Mode, source string, err error)
}

// The operator's commands: the worklist (obligations) and the stored
// deliveries (list, replay). Their logic is in domain/app and the
// adapters; these commands wire and print.

func NewObligationsCmd(env Env) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "obligations [--format table|json]",
		Short: "List what needs a human: failed refunds, disputes due, unmatched deliveries, ... (GET /obligations)",
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			cfg, err := env.LoadConfig()
			if err != nil {
				return err
			}
			obs, err := worklist.Obligations{DB: db, ReconcileEvery: cfg.ReconcileEvery}.List(cmd.Context())
			if err != nil {
				return err
			}
			return printObligations(cmd.OutOrStdout(), format, obs)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	cmd.AddCommand(newAckCmd(env, "an open obligation"))
	return cmd
}

// cliActor names who acts from the command line: "cli:<user>".
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	if name := os.Getenv("USER"); name != "" {
		return "cli:" + name
	}
	return "cli"
}

// printList prints a list command's answer in format: "json", {key:
// list} indented; "table", header and then each line that lines writes,
// tab-separated cells aligned in columns two spaces apart; any other
// format is an error.
func printList(w io.Writer, format, key string, list any, header string, lines func(tw io.Writer)) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{key: list})
	case "table":
	default:
		return fmt.Errorf("--format: %q is neither table nor json", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	lines(tw)
	return tw.Flush()
}

func printObligations(w io.Writer, format string, obs []app.Obligation) error {
	if obs == nil {
		obs = []app.Obligation{}
	}
	err := printList(w, format, "obligations", obs, "ID\tBOOKING\tOPENED\tDUE\tDETAIL\tSUGGESTED ACTION", func(tw io.Writer) {
		for _, ob := range obs {
			booking, due := "-", "-"
			if ob.BookingID != nil {
				booking = fmt.Sprint(*ob.BookingID)
			}
			if ob.DueBy != nil {
				due = ob.DueBy.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ob.ID, booking, ob.OpenedAt.Format(time.RFC3339), due, ob.Detail, ob.SuggestedAction)
		}
	})
	if err == nil && format == "table" && len(obs) == 0 {
		fmt.Fprintln(w, "nothing to do")
	}
	return err
}

func NewDeliveriesCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "The Stripe events kept without a decision (unmatched, ignored, other mode or account): list, replay",
	}
	var (
		outcome, format, event string
		since                  time.Duration
		dryRun                 bool
	)
	filter := func() (app.DeliveryFilter, error) {
		f := app.DeliveryFilter{Outcome: app.Outcome(outcome), EventID: event}
		switch f.Outcome {
		case "", app.OutcomeUnmatched, app.OutcomeIgnored, app.OutcomeWrongMode, app.OutcomeForeignAccount:
		default:
			return f, fmt.Errorf("--outcome: %q is none of unmatched, ignored, wrong_mode, foreign_account", outcome)
		}
		if since > 0 {
			f.Since = time.Now().Add(-since)
		}
		return f, nil
	}
	list := &cobra.Command{
		Use:   "list [--outcome unmatched|ignored|wrong_mode|foreign_account] [--since 72h] [--format table|json]",
		Short: "List the events kept without a decision, oldest first (the latest delivery of each)",
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := filter()
			if err != nil {
				return err
			}
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			store, err := bookingstore.New(bookingstore.Config{DB: db})
			if err != nil {
				return err
			}
			stored, err := store.StoredDeliveries(cmd.Context(), f)
			if err != nil {
				return err
			}
			return printDeliveries(cmd.OutOrStdout(), format, stored)
		},
	}
	list.Flags().StringVar(&outcome, "outcome", "", "unmatched, ignored, wrong_mode or foreign_account (default: all)")
	list.Flags().DurationVar(&since, "since", 0, "only deliveries received this recently (default: all)")
	list.Flags().StringVar(&format, "format", "table", "table or json")

	replay := &cobra.Command{
		Use:   "replay (--event evt_... | --outcome unmatched [--since 72h]) [--dry-run]",
		Short: "Decide stored events again, through the webhook's decision path (source replay)",
		Long: `Decides again the events selected, oldest first, through the same decision
path as a webhook, recorded with source "replay". As idempotent as any
delivery: an event decided once is not decided again. An event of a type
the ledger ignored before (say, before a fix taught it the type) is
decided under the id "replay:<evt_...>", since the inbox holds its own id.
Prints one line per event: its id, the outcome and the booking.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if event == "" && outcome == "" {
				return errors.New("name the events: --event evt_... or --outcome unmatched (with --since)")
			}
			f, err := filter()
			if err != nil {
				return err
			}
			cfg, err := env.LoadConfig()
			if err != nil {
				return err
			}
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			logger := cfg.NewLogger()
			store, err := bookingstore.New(bookingstore.Config{DB: db, Logger: logger})
			if err != nil {
				return err
			}
			mode, _, err := cfg.StripeMode()
			if err != nil {
				return err
			}
			svc, err := app.NewService(app.Config{Bookings: store, Mode: mode, Logger: logger})
			if err != nil {
				return err
			}
			stored, err := store.StoredDeliveries(cmd.Context(), f)
			if err != nil {
				return err
			}
			if event != "" && len(stored) == 0 {
				return fmt.Errorf("event %s: no delivery kept without a decision (unknown, or decided already)", event)
			}
			results := app.Replayer{Service: svc, Parse: stripe.ParseDelivery}.Replay(cmd.Context(), stored, dryRun)
			var failed int
			for _, r := range results {
				switch {
				case r.Err != nil:
					failed++
					fmt.Fprintf(cmd.OutOrStdout(), "%s\terror\t%v\n", r.EventID, r.Err)
				case dryRun:
					fmt.Fprintf(cmd.OutOrStdout(), "%s\twould replay as %s\n", r.EventID, r.ReplayedAs)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\tbooking %d\n", r.ReplayedAs, r.Outcome, r.BookingID)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d event(s) not replayed", failed, len(results))
			}
			return nil
		},
	}
	replay.Flags().StringVar(&event, "event", "", "the Stripe event id (evt_...) to replay")
	replay.Flags().StringVar(&outcome, "outcome", "", "replay every event kept with this outcome (unmatched, ignored, wrong_mode, foreign_account)")
	replay.Flags().DurationVar(&since, "since", 72*time.Hour, "with --outcome: only deliveries received this recently")
	replay.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be replayed, change nothing")
	cmd.AddCommand(list, replay)
	return cmd
}

func printDeliveries(w io.Writer, format string, stored []app.StoredDelivery) error {
	// JSON: the delivery without its raw body and signature.
	type row struct {
		EventID    string    `json:"event_id"`
		EventType  string    `json:"event_type"`
		Outcome    string    `json:"outcome"`
		ReceivedAt time.Time `json:"received_at"`
		Deliveries int       `json:"deliveries"`
	}
	rows := make([]row, 0, len(stored))
	for _, d := range stored {
		rows = append(rows, row{d.EventID, d.EventType, string(d.Outcome), d.ReceivedAt, d.Deliveries})
	}
	return printList(w, format, "deliveries", rows, "EVENT\tTYPE\tOUTCOME\tLAST RECEIVED\tDELIVERIES", func(tw io.Writer) {
		for _, d := range stored {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", d.EventID, d.EventType, d.Outcome, d.ReceivedAt.Format(time.RFC3339), d.Deliveries)
		}
	})
}

func NewRefundsCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "refunds",
		Short: "Refunds that failed: list, retry (a new request under a new idempotency key), acknowledge",
	}
	var format string
	list := &cobra.Command{
		Use:   "list [--format table|json]",
		Short: "List every refund that failed, oldest first, and whether it is still open",
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			failures, err := bookingstore.RefundFailures(cmd.Context(), db)
			if err != nil {
				return err
			}
			open, err := worklist.Obligations{DB: db}.List(cmd.Context())
			if err != nil {
				return err
			}
			isOpen := map[string]bool{}
			for _, ob := range open {
				isOpen[ob.ID] = true
			}
			rows := make([]refundFailureRow, 0, len(failures))
			for _, f := range failures {
				id := fmt.Sprintf("%s:%d", app.ObligationRefundFailed, f.Position)
				rows = append(rows, refundFailureRow{f, id, isOpen[id]})
			}
			return printRefundFailures(cmd.OutOrStdout(), format, rows)
		},
	}
	list.Flags().StringVar(&format, "format", "table", "table or json")
	retry := &cobra.Command{
		Use:   "retry ID",
		Short: "Ask again for a failed refund (ID from `ledger refunds list`): the refund worker issues it",
		Long: `Appends a new RefundRequested for the failed refund's PaymentIntent, amount
and reason; the refund worker of a server with STRIPE_SECRET_KEY issues it
under a new idempotency key (Stripe would otherwise answer with the cached
failure). The obligation closes when the refund succeeds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			failures, err := bookingstore.RefundFailures(cmd.Context(), db)
			if err != nil {
				return err
			}
			for _, f := range failures {
				if fmt.Sprintf("%s:%d", app.ObligationRefundFailed, f.Position) != args[0] {
					continue
				}
				store, err := bookingstore.New(bookingstore.Config{DB: db})
				if err != nil {
					return err
				}
				svc, err := app.NewService(app.Config{Bookings: store})
				if err != nil {
					return err
				}
				row, err := svc.RetryRefund(cmd.Context(), f.BookingID, f.PaymentIntentID, cliActor()+":retry:"+args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "refund of %d %s for booking %d requested again (payment status %s)\n",
					f.Amount, f.Currency, row.ID, row.PaymentStatus)
				return nil
			}
			return fmt.Errorf("no refund failure %q (see `ledger refunds list`)", args[0])
		},
	}
	cmd.AddCommand(list, retry, newAckCmd(env, "the failed refund (ID from `ledger refunds list`)"))
	return cmd
}

// refundFailureRow is a line of `ledger refunds list`: the failure, its
// obligation id and whether that is still open.
type refundFailureRow struct {
	bookingstore.RefundFailure
	ID   string `json:"id"`
	Open bool   `json:"open"`
}

func printRefundFailures(w io.Writer, format string, rows []refundFailureRow) error {
	return printList(w, format, "refund_failures", rows, "ID\tBOOKING\tPAYMENT INTENT\tAMOUNT\tREASON\tCODE\tFAILED\tOPEN", func(tw io.Writer) {
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d %s\t%s\t%s\t%s\t%v\n", r.ID, r.BookingID, r.PaymentIntentID, r.Amount, r.Currency,
				r.Reason, r.FailureCode, r.FailedAt.Format(time.RFC3339), r.Open)
		}
	})
}

func NewDeadLettersCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead-letters",
		Short: "Events a projection could not apply: list, retry (after a fix), acknowledge",
	}
	var format string
	list := &cobra.Command{
		Use:   "list [--format table|json]",
		Short: "List the dead letters of this code's projection versions",
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			dls, err := readmodels.DeadLetters(cmd.Context(), db)
			if err != nil {
				return err
			}
			return printDeadLetters(cmd.OutOrStdout(), format, dls)
		},
	}
	list.Flags().StringVar(&format, "format", "table", "table or json")
	retry := &cobra.Command{
		Use:   "retry ID",
		Short: "Apply a dead-lettered event again (after a fix of the projection); closes it when applied",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			if err := readmodels.RetryDeadLetter(cmd.Context(), db, args[0], cliActor(), time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, retry, newAckCmd(env, "the dead letter (ID from `ledger projections dead-letters list`)"))
	return cmd
}

func printDeadLetters(w io.Writer, format string, dls []readmodels.DeadLetter) error {
	return printList(w, format, "dead_letters", dls, "ID\tEVENT TYPE\tERROR\tAT\tCLOSED", func(tw io.Writer) {
		for _, d := range dls {
			closed := d.Closed
			if closed == "" {
				closed = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.EventType, d.Error, d.At.Format(time.RFC3339), closed)
		}
	})
}

// newAckCmd is the `ack ID --reason` of a family of obligations.
func newAckCmd(env Env, what string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "ack ID --reason TEXT",
		Short: "Close " + what + " without acting in the ledger, saying why (recorded with who and when)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			if err := (worklist.Obligations{DB: db}).Ack(cmd.Context(), args[0], reason, cliActor()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "acknowledged %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why it is closed (required)")
	cmd.MarkFlagRequired("reason")
	return cmd
}

func NewDecisionsCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "decisions",
		Short: "What today's decision rules make of the stored inputs",
	}
	var booking int64
	diff := &cobra.Command{
		Use:   "diff [--booking N]",
		Short: "Run today's rules over every booking's stored inputs, in memory; print the bookings they decide differently",
		Long: `Reads, in one snapshot, every input the bookings' events were decided from
(requests, Stripe deliveries with their raw bodies, operators' actions, the
refund worker's outcomes) and decides them again with this binary's rules,
in the order they were decided, each booking seeing the others as today's
rules leave them. Prints, per booking whose events would differ, the
recorded and the re-decided event types, then a count. Read-only: a rule
fix changes no recorded event; act on the list with compensating
operations (a cancellation, a refund).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.OpenMigrated(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			store, err := bookingstore.New(bookingstore.Config{DB: db})
			if err != nil {
				return err
			}
			inputs, err := store.DecisionInputs(cmd.Context(), booking, storedInputParser)
			if err != nil {
				return err
			}
			diffs, seen, err := app.DiffDecisions(inputs)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, d := range diffs {
				fmt.Fprintf(w, "booking %d\n  recorded: %s\n  decided:  %s\n", d.BookingID, strings.Join(d.Recorded, " "), strings.Join(d.Decided, " "))
			}
			fmt.Fprintf(w, "%d of %d booking(s) would be decided differently (%d inputs)\n", len(diffs), seen, len(inputs))
			return nil
		},
	}
	diff.Flags().Int64Var(&booking, "booking", 0, "only this booking (its inputs alone: other bookings' stays are not seen)")
	cmd.AddCommand(diff)
	return cmd
}

// storedInputParser is app.InputParser on the Stripe adapter: events by
// ParseDelivery, redirect checks by ParseRedirectDelivery.
func storedInputParser(raw []byte, header, source, eventID string, booking int64, receivedAt time.Time) (app.Delivery, error) {
	if source == string(domain.SourceRedirect) {
		return stripe.ParseRedirectDelivery(raw, booking, receivedAt)
	}
	return stripe.ParseDelivery(raw, header, source, receivedAt)
}
