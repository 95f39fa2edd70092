// Package http is the HTTP edge of the ledger: the Stripe webhook, the
// bookings API and the health endpoints, routed with gorilla/mux. Errors are
// mapped to status codes in one place (errors.go).
package http

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/booking-ledger/ledger/adapters/http/access"
	"github.com/booking-ledger/ledger/adapters/http/listen"
	"github.com/booking-ledger/ledger/adapters/http/probe"
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
	CancelBooking(ctx context.Context, id int64, note string, refund *int64, causationID string) (projections.BookingRow, error)
	// FindCaused finds the booking an earlier request wrote to (its
	// Idempotency-Key's causation id), for a retry whose first answer was
	// lost.
	FindCaused(ctx context.Context, causationID string) (projections.BookingRow, bool, error)
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

// Config configures the handler. Ledger, Verifier and a token (APIToken
// or Tokens) are required.
type Config struct {
	Ledger   Ledger
	Verifier Verifier
	// APIToken is one operator token (LEDGER_API_TOKEN), named "default";
	// Tokens are named tokens with roles (LEDGER_API_TOKENS). Both may be
	// given; each token has at least MinTokenLength characters.
	APIToken string
	Tokens   []Token
	// Ready reports whether the service can take traffic (database
	// reachable, migrations applied); nil means always ready. /readyz
	// calls it at most once per ReadyCacheTTL.
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
	// MaxBodyBytes bounds a webhook body (default 1 MiB: real Stripe events
	// outgrow the 64 KiB of Stripe's own example).
	MaxBodyBytes int64
	// MaxInFlight bounds the requests handled at once (default 128); more
	// are answered 503.
	MaxInFlight int
	// BodyTimeout bounds the time to receive a request's whole body
	// (default 5 s; 408 beyond). Bodies are read before an in-flight slot
	// is taken, so slow senders never hold one.
	BodyTimeout time.Duration
	// MaxBufferedBodyBytes bounds the memory of bodies being received at
	// once, all requests together (default 64 MiB; 503 beyond).
	MaxBufferedBodyBytes int64
	// Now is the clock for received_at and sessions; nil means time.Now.
	Now func() time.Time
	// RequestTimeout bounds one request's work (default 15 s).
	RequestTimeout time.Duration
	// PublishableKey ("pk_...") is handed to clients with a Checkout
	// Session, for Stripe.js; "" leaves it out.
	PublishableKey string
	// Audit serves the audit endpoints and the auditor UI (audit.go,
	// ui.go), and records the reads of personal data; nil leaves them out.
	Audit Audit
	// Sessions keeps the auditor UI's sign-ins (ui.go); nil turns the
	// login form off (the UI then takes a bearer header only).
	Sessions Sessions
	// InsecureCookies drops the Secure attribute of the UI's session
	// cookie: for `serve --dev` on plain HTTP only. Behind a TLS proxy the
	// browser sees HTTPS, so the default is right there too.
	InsecureCookies bool
	// SessionIdle and SessionMax end a UI session after that long unused
	// (default 8 h) and after that long in all (default 24 h).
	SessionIdle, SessionMax time.Duration
	// AuthFailureEvery and AuthFailureBurst rate-limit failed
	// authentications (bearer tokens, the login form) per client
	// address: a burst of AuthFailureBurst (default 10), then one per
	// AuthFailureEvery (default 6 s); beyond, 429 with Retry-After.
	AuthFailureEvery time.Duration
	AuthFailureBurst int
	// TrustedProxies are the networks of the reverse proxies in front
	// (LEDGER_TRUSTED_PROXIES): from their peers the client's address is
	// taken from X-Forwarded-For, for the rate limit and the access log.
	TrustedProxies []netip.Prefix
	// ReadyCacheTTL is how long a readiness probe's result is reused
	// (default 1 s): /readyz costs at most one database round trip per
	// TTL, however often it is asked.
	ReadyCacheTTL time.Duration
	// Monitoring serves GET /monitoring/summary and the projections in
	// /readyz; Registry serves GET /metrics and gets the webhook metrics.
	// Either may be nil (monitoring.go).
	Monitoring Monitoring
	Registry   *prometheus.Registry
	// Forwarding adds the forwarder's status to /readyz's details
	// (readyz.go); nil leaves it out.
	Forwarding Forwarding
	// Obligations serves GET /obligations and POST /obligations/{id}/ack
	// (obligations.go); nil leaves them out.
	Obligations Obligations
	// Idempotency keeps the answers of POST /bookings and POST
	// /bookings/{id}/cancel sent with an Idempotency-Key (idempotency.go);
	// nil: the header only names the request's causation, as before.
	Idempotency app.Idempotency
	// EventTypes are the handled Stripe event types (stripe.HandledEventTypes):
	// the only values of the webhook metrics' event_type label besides
	// "other", created up front.
	EventTypes []string
}

// The default size limits (Config.MaxBodyBytes, Config.MaxBufferedBodyBytes,
// ServerConfig.MaxHeaderBytes).
const (
	DefaultMaxBodyBytes         = 1 << 20
	DefaultMaxBufferedBodyBytes = 64 << 20
	DefaultMaxHeaderBytes       = listen.DefaultMaxHeaderBytes
)

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
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
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 5 * time.Second
	}
	if c.MaxBufferedBodyBytes == 0 {
		c.MaxBufferedBodyBytes = DefaultMaxBufferedBodyBytes
	}
	if c.SessionIdle == 0 {
		c.SessionIdle = 8 * time.Hour
	}
	if c.SessionMax == 0 {
		c.SessionMax = 24 * time.Hour
	}
	if c.AuthFailureEvery == 0 {
		c.AuthFailureEvery = 6 * time.Second
	}
	if c.AuthFailureBurst == 0 {
		c.AuthFailureBurst = 10
	}
	if c.ReadyCacheTTL == 0 {
		c.ReadyCacheTTL = time.Second
	}
}

// allTokens is APIToken as the operator token "default", then Tokens.
func (c Config) allTokens() []Token {
	var all []Token
	if c.APIToken != "" {
		all = append(all, Token{Name: DefaultTokenName, Role: RoleOperator, Secret: c.APIToken})
	}
	return append(all, c.Tokens...)
}

// Validate reports a configuration that cannot work. Token errors name
// the token, never its secret.
func (c Config) Validate() error {
	switch {
	case c.Ledger == nil:
		return errors.New("http: no ledger")
	case c.Verifier == nil:
		return errors.New("http: no webhook verifier")
	case c.MaxInFlight < 0 || c.RequestTimeout < 0 || c.BodyTimeout < 0 || c.MaxBufferedBodyBytes < 0 ||
		c.SessionIdle < 0 || c.SessionMax < 0 || c.AuthFailureEvery < 0 || c.AuthFailureBurst < 0 || c.ReadyCacheTTL < 0:
		return errors.New("http: negative limits")
	case c.MaxBufferedBodyBytes > 0 && c.MaxBufferedBodyBytes < c.MaxBodyBytes:
		return errors.New("http: MaxBufferedBodyBytes below MaxBodyBytes")
	}
	return ValidateTokens(c.allTokens())
}

type server struct {
	cfg      Config
	log      *slog.Logger
	inFlight chan struct{}
	tokens   *access.TokenSet
	// roles are the roles besides operator each API route admits (allow).
	roles    map[*mux.Route]map[Role]bool
	failures *access.FailureLimiter
	bodies   *semaphore.Weighted
	ready    *probe.Probe
	details  *probe.Probe
}

// NewHandler returns the ledger's HTTP handler.
//
// Every route but the webhook, the health checks, /openapi.json, the
// success page and the UI's own login goes through requireToken (bearer token and role, see
// allow); every route but the health checks goes through guard (in-flight
// bound and request timeout); bodies are received whole, under
// BodyTimeout, before guard (preread).
func NewHandler(cfg Config) (http.Handler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := openAPIJSON(); err != nil {
		return nil, err
	}
	s := &server{
		cfg: cfg, log: cfg.Logger, inFlight: make(chan struct{}, cfg.MaxInFlight),
		tokens:   access.NewTokenSet(cfg.allTokens()),
		roles:    map[*mux.Route]map[Role]bool{},
		failures: access.NewFailureLimiter(cfg.AuthFailureEvery, cfg.AuthFailureBurst, cfg.Now),
		bodies:   semaphore.NewWeighted(cfg.MaxBufferedBodyBytes),
	}
	s.ready = probe.New(cfg.ReadyCacheTTL, s.checkReady)
	s.details = probe.New(cfg.ReadyCacheTTL, s.readyDetails)
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint"})
	})

	route := func(path string, h http.Handler, methods ...string) {
		r.Handle(path, h).Methods(methods...)
		// Same path, any other method: 405 with the methods it takes.
		r.Handle(path, methodNotAllowed(methods...))
	}
	// Health checks are not guarded: they must answer during a burst
	// (/readyz answers from a cached probe).
	webhook := s.preread(s.cfg.MaxBodyBytes, s.guard(http.HandlerFunc(s.webhook)))
	route("/webhooks/stripe/", webhook, http.MethodPost)
	route("/webhooks/stripe", webhook, http.MethodPost)
	route("/healthz", http.HandlerFunc(s.healthz), http.MethodGet, http.MethodHead)
	route("/readyz", http.HandlerFunc(s.readyz), http.MethodGet, http.MethodHead)
	route("/openapi.json", http.HandlerFunc(s.openAPI), http.MethodGet, http.MethodHead)
	route("/bookings/{id}/success", s.guard(http.HandlerFunc(s.checkoutSuccess)), http.MethodGet, http.MethodHead)

	api := r.NewRoute().Subrouter()
	api.Use(s.requireToken, s.prereadAPI, s.guard)
	s.routeAudit(r, api) // before /bookings/{id}: ?as_of= is matched first
	api.Handle("/bookings", s.idempotent(s.createBooking)).Methods(http.MethodPost)
	s.allow(api.Handle("/bookings", http.HandlerFunc(s.listBookings)).Methods(http.MethodGet, http.MethodHead), RoleAuditor)
	s.allowAll(api.Handle("/bookings", methodNotAllowed(http.MethodGet, http.MethodHead, http.MethodPost)))
	s.allow(api.Handle("/bookings/{id}", http.HandlerFunc(s.getBooking)).Methods(http.MethodGet, http.MethodHead), RoleAuditor)
	s.allowAll(api.Handle("/bookings/{id}", methodNotAllowed(http.MethodGet, http.MethodHead)))
	s.routeOperatorActions(api)
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
