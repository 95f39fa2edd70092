package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

func newSendTestWebhookCmd() *cobra.Command {
	var bookingID, refundAmount, amountRefunded int64
	var eventType, target, objectID, status string
	cmd := &cobra.Command{
		Use:   "send-test-webhook --booking-id N --event-type TYPE [--url URL]",
		Short: "Build a realistic Stripe event for a booking, sign it, post it, print the answer",
		Long: `Builds a Stripe event of the given type for the booking (its session id,
PaymentIntent id, amount, currency and metadata.booking_id), signs it with the
first STRIPE_WEBHOOK_SECRET (or the one a dev server saved), posts it to the
webhook endpoint, and prints the status and body. Any type may be sent;
unhandled ones are answered "ignored".

Refund and dispute events (refund.*, charge.refund.updated, charge.refunded,
charge.dispute.*) are about the booking's PaymentIntent and a charge named
after it; --id names the refund or dispute (fresh when empty: send the same
--id to report one refund or dispute twice), --status its Stripe status,
--amount a refund's amount and --amount-refunded charge.refunded's
cumulative amount (both default to the booking's price).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			cfg.loadDevSecrets()
			if len(cfg.WebhookSecrets) == 0 {
				return fmt.Errorf("no webhook secret: set STRIPE_WEBHOOK_SECRET or start the server with --dev first")
			}
			if target == "" {
				target = "http://" + localAddr(cfg.Addr) + "/webhooks/stripe/"
			}
			db, err := openDB(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			row, err := bookingstore.GetBooking(cmd.Context(), db, bookingID)
			if err != nil {
				return err
			}
			b := stripe.TestBooking{ID: row.ID, Amount: row.Amount, Currency: row.Currency, CustomerEmail: row.CustomerEmail}
			if row.SessionID != nil {
				b.SessionID = *row.SessionID
			}
			if row.PaymentIntentID != nil {
				b.PaymentIntentID = *row.PaymentIntentID
				b.ChargeID = "ch_" + strings.TrimPrefix(b.PaymentIntentID, "pi_")
			}
			b.AmountRefunded = amountRefunded
			b.Refund = stripe.TestRefund{ID: objectID, Amount: refundAmount, Status: status}
			b.Dispute = stripe.TestDispute{ID: objectID, Status: status}
			now := time.Now()
			payload, err := stripe.BuildEvent(eventType, b, now)
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, target, bytes.NewReader(payload))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Stripe-Signature", stripe.Sign(payload, cfg.WebhookSecrets[0], now))
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
			if err != nil {
				return fmt.Errorf("post %s: %w", target, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n%s\n", resp.Proto, resp.Status, strings.TrimSpace(string(body)))
			if resp.StatusCode >= 300 {
				return fmt.Errorf("answered %s", resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&bookingID, "booking-id", 0, "booking the event is about (required)")
	cmd.Flags().StringVar(&eventType, "event-type", "checkout.session.completed", "Stripe event type")
	cmd.Flags().StringVar(&target, "url", "", "webhook URL (default http://<LEDGER_ADDR>/webhooks/stripe/)")
	cmd.Flags().StringVar(&objectID, "id", "", "refund (re_...) or dispute (dp_...) id of refund and dispute events (default: a fresh one)")
	cmd.Flags().StringVar(&status, "status", "", "refund or dispute status (default: what the event type usually carries)")
	cmd.Flags().Int64Var(&refundAmount, "amount", 0, "refund amount in minor units (default: the booking's price)")
	cmd.Flags().Int64Var(&amountRefunded, "amount-refunded", 0, "charge.refunded's cumulative amount_refunded (default: the booking's price)")
	cmd.MarkFlagRequired("booking-id")
	return cmd
}

// localAddr turns a listen address such as ":8000" into one to dial.
func localAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
