package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
)

// Defaults of the Stripe API settings (see loadStripeConfig).
const (
	defaultPublicURL          = "http://localhost:8000"
	defaultStripeTimeout      = 15 * time.Second
	defaultStripeRetries      = 2
	defaultCheckoutSessionTTL = time.Hour
)

// loadStripeConfig reads the Stripe API settings beyond the keys:
// LEDGER_PUBLIC_URL, STRIPE_TIMEOUT, STRIPE_MAX_NETWORK_RETRIES and
// LEDGER_CHECKOUT_TTL.
func (c *Config) loadStripeConfig() error {
	c.PublicURL = env("LEDGER_PUBLIC_URL", defaultPublicURL)
	var err error
	if c.StripeTimeout, err = time.ParseDuration(env("STRIPE_TIMEOUT", defaultStripeTimeout.String())); err != nil || c.StripeTimeout <= 0 {
		return fmt.Errorf("STRIPE_TIMEOUT: must be a positive duration such as 15s")
	}
	if c.StripeMaxNetworkRetries, err = strconv.Atoi(env("STRIPE_MAX_NETWORK_RETRIES", strconv.Itoa(defaultStripeRetries))); err != nil || c.StripeMaxNetworkRetries < 0 {
		return fmt.Errorf("STRIPE_MAX_NETWORK_RETRIES: must be an integer from 0")
	}
	if c.CheckoutSessionTTL, err = time.ParseDuration(env("LEDGER_CHECKOUT_TTL", defaultCheckoutSessionTTL.String())); err != nil {
		return fmt.Errorf("LEDGER_CHECKOUT_TTL: %w", err)
	}
	return nil
}

// stripeClient returns the Stripe API client the configuration describes,
// or nil when STRIPE_SECRET_KEY is not set.
func (c Config) stripeClient(logger *slog.Logger) (*stripe.Client, error) {
	if c.StripeSecretKey == "" {
		return nil, nil
	}
	client, err := stripe.NewClient(stripe.ClientConfig{
		SecretKey:         c.StripeSecretKey,
		BaseURL:           c.StripeAPIBaseURL,
		Timeout:           c.StripeTimeout,
		MaxNetworkRetries: c.StripeMaxNetworkRetries,
		Logger:            logger,
	})
	if err != nil {
		return nil, fmt.Errorf("STRIPE_SECRET_KEY / STRIPE_API_BASE_URL: %w", err)
	}
	return client, nil
}

// startStripe wires what needs Stripe's API when STRIPE_SECRET_KEY is set:
// it starts the refund worker and returns the use cases' checkout
// configuration. Without a key it returns nil, and refunds wait in the log
// until a worker runs.
func (a *App) startStripe(ctx context.Context, db *sql.DB, ledger *bookingstore.Store) (*app.CheckoutConfig, error) {
	client, err := a.cfg.stripeClient(a.logger)
	if err != nil || client == nil {
		return nil, err
	}
	checkout := &app.CheckoutConfig{
		Payments:   client,
		PublicURL:  a.cfg.PublicURL,
		SessionTTL: a.cfg.CheckoutSessionTTL,
	}
	if err := checkout.Validate(); err != nil {
		return nil, fmt.Errorf("LEDGER_PUBLIC_URL / LEDGER_CHECKOUT_TTL: %w", err)
	}
	worker, err := bookingstore.NewRefundWorker(bookingstore.RefundWorkerConfig{
		DB: db, Store: ledger, Refunder: client, Logger: a.logger,
	})
	if err != nil {
		return nil, err
	}
	a.refunds = worker
	a.refundsDone = make(chan error, 1)
	go func() { a.refundsDone <- worker.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-worker.Running():
	case err := <-a.refundsDone:
		return nil, fmt.Errorf("refund worker: %w", err)
	}
	a.logger.Info("refund worker running", "consumer_group", bookingstore.RefundConsumerGroup)
	return checkout, nil
}

// stopRefunds stops the refund worker, if one runs.
func (a *App) stopRefunds() error {
	if a.refunds == nil {
		return nil
	}
	err := a.refunds.Close()
	if runErr := <-a.refundsDone; runErr != nil {
		err = errors.Join(err, runErr)
	}
	a.refunds = nil
	return err
}
