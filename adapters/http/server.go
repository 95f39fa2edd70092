// Package http is the HTTP edge of the ledger: the Stripe webhook, the
// bookings API and the health endpoints, routed with gorilla/mux. Errors are
// mapped to status codes in one place (errors.go).
package http

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// Ledger is what the handlers need from the use cases (*app.Service).
type Ledger interface {
	Ingest(ctx context.Context, d app.Delivery) (app.IngestResult, error)
	CreateBooking(ctx context.Context, p domain.NewBookingParams, causationID string) (projections.BookingRow, error)
	GetBooking(ctx context.Context, id int64) (projections.BookingRow, error)
	ListBookings(ctx context.Context, f app.BookingFilter) ([]projections.BookingRow, int64, error)
	// CheckoutEnabled reports whether Stripe Checkout is on: then POST
	// /bookings without a session opens one (OpenCheckout), and the success
	// page checks payments with Stripe (ConfirmRedirect).
	CheckoutEnabled() bool
	OpenCheckout(ctx context.Context, row projections.BookingRow, causationID string) (projections.BookingRow, app.CheckoutSession, error)
	ConfirmRedirect(ctx context.Context, id int64, sessionID string) (app.Redirect, error)
}

var _ Ledger = (*app.Service)(nil)

// Verifier is the edge's port to Stripe's webhook format (the Stripe
// adapter's *stripe.Verifier): it checks a Stripe-Signature header against
// the raw body, then turns the verified body into a delivery for the use
// cases. Both return errors wrapping domain.ErrInvalid or
// domain.ErrUnauthorized for what the sender got wrong.
type Verifier interface {
	Verify(payload []byte, header string) error
	ParseDelivery(raw []byte, header, source string, receivedAt time.Time) (app.Delivery, error)
}

// Config configures the handler. Ledger, Verifier and APIToken are required.
type Config struct {
	Ledger   Ledger
	Verifier Verifier
	// APIToken is the bearer token of every endpoint but the webhook and
	// the health checks.
	APIToken string
	// Ready reports whether the service can take traffic (database
	// reachable, migrations applied); nil means always ready.
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
	// MaxBodyBytes bounds a webhook body (default 1 MiB: real Stripe events
	// outgrow the 64 KiB of Stripe's own example).
	MaxBodyBytes int64
	// MaxInFlight bounds the requests handled at once (default 128); more
	// are answered 503.
	MaxInFlight int
	// Now is the clock for received_at; nil means time.Now.
	Now func() time.Time
	// RequestTimeout bounds one request's work (default 15 s).
	RequestTimeout time.Duration
	// PublishableKey ("pk_...") is handed to clients with a Checkout
	// Session, for Stripe.js; "" leaves it out.
	PublishableKey string
	// Audit serves the audit endpoints and the auditor UI (audit.go,
	// ui.go); nil leaves them out.
	Audit Audit
	// Monitoring serves GET /monitoring/summary and the projections in
	// /readyz; Registry serves GET /metrics and gets the webhook metrics.
	// Either may be nil (monitoring.go).
	Monitoring Monitoring
	Registry   *prometheus.Registry
	// EventTypes are the handled Stripe event types (stripe.HandledEventTypes):
	// the only values of the webhook metrics' event_type label besides
	// "other", created up front.
	EventTypes []string
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 128
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 15 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Ledger == nil:
		return errors.New("http: no ledger")
	case c.Verifier == nil:
		return errors.New("http: no webhook verifier")
	case c.APIToken == "":
		return errors.New("http: no API token")
	case c.MaxInFlight < 0 || c.RequestTimeout < 0:
		return errors.New("http: negative limits")
	}
	return nil
}

type server struct {
	cfg      Config
	log      *slog.Logger
	inFlight chan struct{}
}

// NewHandler returns the ledger's HTTP handler.
func NewHandler(cfg Config) (http.Handler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, log: cfg.Logger, inFlight: make(chan struct{}, cfg.MaxInFlight)}
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint"})
	})

	route := func(path string, h http.Handler, methods ...string) {
		r.Handle(path, h).Methods(methods...)
		// Same path, any other method: 405 with the methods it takes.
		r.Handle(path, methodNotAllowed(methods...))
	}
	// Health checks are not guarded: they must answer during a burst.
	route("/webhooks/stripe/", s.guard(http.HandlerFunc(s.webhook)), http.MethodPost)
	route("/webhooks/stripe", s.guard(http.HandlerFunc(s.webhook)), http.MethodPost)
	route("/healthz", http.HandlerFunc(s.healthz), http.MethodGet, http.MethodHead)
	route("/readyz", http.HandlerFunc(s.readyz), http.MethodGet, http.MethodHead)
	route("/bookings/{id}/success", s.guard(http.HandlerFunc(s.checkoutSuccess)), http.MethodGet, http.MethodHead)

	api := r.NewRoute().Subrouter()
	api.Use(s.requireToken, s.guard)
	s.routeAudit(r, api) // before /bookings/{id}: ?as_of= is matched first
	api.Handle("/bookings", http.HandlerFunc(s.createBooking)).Methods(http.MethodPost)
	api.Handle("/bookings", http.HandlerFunc(s.listBookings)).Methods(http.MethodGet, http.MethodHead)
	api.Handle("/bookings", methodNotAllowed(http.MethodGet, http.MethodHead, http.MethodPost))
	api.Handle("/bookings/{id}", http.HandlerFunc(s.getBooking)).Methods(http.MethodGet, http.MethodHead)
	api.Handle("/bookings/{id}", methodNotAllowed(http.MethodGet, http.MethodHead))
	s.routeMonitoring(r, api)
	return r, nil
}

func methodNotAllowed(methods ...string) http.Handler {
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed; allowed: " + allow})
	})
}

// requireToken checks `Authorization: Bearer <token>` in constant time.
func (s *server) requireToken(next http.Handler) http.Handler {
	want := []byte("Bearer " + s.cfg.APIToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ledger"`)
			writeError(w, r, s.log, errUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

var errUnauthorized = fmt.Errorf("missing or wrong bearer token: %w", domain.ErrUnauthorized)

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		// The check runs apart, so that a database that stops answering
		// (which lib/pq cannot cancel) gives "not ready" at the deadline.
		checked := make(chan error, 1)
		go func() { checked <- s.cfg.Ready(ctx) }()
		var err error
		select {
		case err = <-checked:
		case <-ctx.Done():
			err = errors.New("readiness check timed out")
		}
		if err != nil {
			s.log.WarnContext(r.Context(), "not ready", "error", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, s.readyBody(r.Context(), "ready"))
}
