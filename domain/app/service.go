package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/booking-ledger/ledger/projections"
)

// Config configures a Service. Bookings is required.
type Config struct {
	Bookings Bookings
	// Checkout turns on Stripe Checkout and the redirect check; nil turns
	// them off (OpenCheckout and ConfirmRedirect return ErrNoPayments).
	Checkout *CheckoutConfig
	// Mode is the Stripe mode and the Connect accounts whose events are
	// decided; the others are kept and ignored. The zero Mode is test mode
	// with every account.
	Mode Mode
	// Unmatched, when set, makes the service decide again, at once, the
	// unmatched deliveries that name a booking's Checkout Session when the
	// booking is created with it, and its PaymentIntent when a payment
	// records it, instead of waiting for Stripe's retry (hours apart).
	Unmatched *UnmatchedRetry
	Logger    *slog.Logger
	// Now is the clock of requested_at and of received_at when a delivery
	// has none; nil means time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Bookings == nil {
		return errors.New("app: no booking store")
	}
	if err := c.Mode.Validate(); err != nil {
		return fmt.Errorf("app: mode: %w", err)
	}
	if c.Checkout != nil {
		return c.Checkout.Validate()
	}
	return nil
}

// ErrNoPayments is returned by the Checkout use cases when no payment
// provider is configured.
var ErrNoPayments = errors.New("app: Stripe API not configured")

// Service runs the booking use cases: ingest, create, Checkout, the redirect
// check and the status reads.
type Service struct {
	cfg Config
	log *slog.Logger
}

// NewService returns a Service with cfg's defaults applied.
func NewService(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger}, nil
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.cfg.Now() }

// CheckoutEnabled reports whether a payment provider is configured.
func (s *Service) CheckoutEnabled() bool { return s.cfg.Checkout != nil }

// GetBooking returns one row of the status table, or an error wrapping
// domain.ErrNotFound.
func (s *Service) GetBooking(ctx context.Context, id int64) (projections.BookingRow, error) {
	return s.cfg.Bookings.GetBooking(ctx, id)
}

// ListBookings returns a page of the status table.
func (s *Service) ListBookings(ctx context.Context, f BookingFilter) ([]projections.BookingRow, int64, error) {
	return s.cfg.Bookings.ListBookings(ctx, f)
}
