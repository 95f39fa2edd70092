package main

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	httpapi "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/idempotency"
	"github.com/booking-ledger/ledger/adapters/postgres/sessionstore"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
)

// App is the composition root of `ledger serve`: it builds every part from
// a Config, runs the HTTP server, and closes everything in order. End-to-end
// tests start it on 127.0.0.1:0.
type App struct {
	cfg    Config
	logger *slog.Logger

	db     *sql.DB
	proj   projectionsRuntime
	ln     net.Listener
	srv    *http.Server
	served chan error

	// refunds runs while STRIPE_SECRET_KEY is set (stripe.go).
	refunds     *bookingstore.RefundWorker
	refundsDone chan error
	audit       auditRuntime
	// reconcile runs with ReconcileEvery (reconcile.go).
	reconcile reconcileRuntime
	started   time.Time
	// ownerDB is the owner's pool that --dev --rebuild-stale rebuilds
	// with (openDatabase); nil otherwise.
	ownerDB *sql.DB
	// forward runs with LEDGER_FORWARD_NATS_URL (forward.go).
	forward forwardRuntime
}

// NewApp returns an App for cfg; Start brings it up.
func NewApp(cfg Config, logger *slog.Logger) *App {
	return &App{cfg: cfg, logger: logger}
}

// Start opens the database as the runtime role (under --dev after
// creating it when missing, migrating it and setting the role up as its
// owner: openDatabase), and starts serving on cfg.Addr. It returns once the
// listener is open.
func (a *App) Start(ctx context.Context) error {
	// One line per start with the whole configuration in effect (secrets
	// redacted), before anything can fail.
	a.logger.Info("starting", "config", a.cfg)
	if err := a.cfg.validateServe(); err != nil {
		return err
	}
	db, err := a.openDatabase(ctx)
	if err != nil {
		return err
	}
	a.db = db
	a.started = time.Now()
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: a.cfg.WebhookSecrets})
	if err != nil {
		return err
	}
	ledger, err := bookingstore.New(bookingstore.Config{DB: db, Logger: a.logger, GroupCommit: a.cfg.GroupCommit})
	if err != nil {
		return err
	}
	checkout, err := a.startStripe(ctx, db, ledger)
	if err != nil {
		return err
	}
	mode, _, err := a.cfg.stripeMode()
	if err != nil {
		return err
	}
	svc, err := app.NewService(app.Config{Bookings: ledger, Checkout: checkout, Mode: mode, Logger: a.logger,
		Unmatched: &app.UnmatchedRetry{Deliveries: ledger, Parse: stripe.ParseDelivery}})
	if err != nil {
		return err
	}
	if err := a.startReconcile(svc); err != nil {
		return err
	}
	auditor, err := a.startAudit(db)
	if err != nil {
		return err
	}
	if err := a.startProjections(); err != nil {
		return err
	}
	if err := a.startForward(); err != nil {
		return err
	}
	a.proj.registry.MustRegister(ledger.Collectors()...)
	sessions, err := sessionstore.New(db, 0)
	if err != nil {
		return err
	}
	handler, err := httpapi.NewHandler(a.withForwarding(a.withMonitoring(httpapi.Config{
		Ledger:   svc,
		Verifier: verifier,
		APIToken: a.cfg.APIToken,
		Ready:    a.ready,
		Logger:   a.logger,

		Tokens:          a.cfg.Edge.Tokens,
		Sessions:        sessions,
		InsecureCookies: a.cfg.Dev || a.cfg.Edge.InsecureCookies,
		BodyTimeout:     a.cfg.Edge.BodyTimeout,
		TrustedProxies:  a.cfg.Edge.TrustedProxies,
		EventTypes:      stripe.HandledEventTypes,

		MaxBodyBytes:         a.cfg.Edge.MaxWebhookBody,
		MaxBufferedBodyBytes: a.cfg.Edge.MaxBufferedBodies,

		MaxInFlight:    a.cfg.MaxInFlight,
		RequestTimeout: a.cfg.RequestTimeout,
		PublishableKey: a.cfg.StripePublicKey,
		Audit:          auditor,
		Idempotency:    idempotency.New(a.db),
		Obligations:    a.obligations(),
	})))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	a.srv, a.ln = httpapi.NewServer(handler, ln, httpapi.ServerConfig{MaxConns: a.cfg.Edge.MaxConns,
		MaxHeaderBytes: int(a.cfg.Edge.MaxHeaderBytes), Logger: a.logger})
	a.served = make(chan error, 1)
	if a.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
		if err != nil {
			a.ln.Close()
			return fmt.Errorf("TLS certificate: %w", err)
		}
		a.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		go func() { a.served <- a.srv.ServeTLS(a.ln, "", "") }()
	} else {
		go func() { a.served <- a.srv.Serve(a.ln) }()
	}
	a.logger.Info("listening", "addr", a.Addr(), "tls", a.cfg.TLSCert != "")
	return nil
}

// Addr is the address the server listens on (useful with port 0).
func (a *App) Addr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Wait blocks until the server stops by itself (an error) or ctx ends.
func (a *App) Wait(ctx context.Context) error {
	select {
	case err := <-a.served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		return nil
	}
}

// Close stops accepting connections, lets in-flight requests finish within
// the grace period, then closes the database.
func (a *App) Close() error {
	var errs []error
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
		defer cancel()
		if err := a.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
	}
	errs = append(errs, a.stopRefunds())
	a.stopReconcile()
	a.stopAudit()
	a.stopForward()
	errs = append(errs, a.stopProjections())
	if a.db != nil {
		errs = append(errs, a.db.Close())
	}
	if a.ownerDB != nil {
		errs = append(errs, a.ownerDB.Close())
	}
	return errors.Join(errs...)
}

// ready: the database answers and has every migration this binary carries.
func (a *App) ready(ctx context.Context) error {
	if err := a.db.PingContext(ctx); err != nil {
		return errors.New("database unreachable")
	}
	pending, err := postgres.MigrationsPending(ctx, a.db)
	if err != nil {
		return errors.New("database unreachable")
	}
	if pending {
		return errors.New("migrations pending")
	}
	return nil
}
