package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// defaultDatabaseURL is what `make run` uses on a fresh machine; the
// database is created when missing.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/booking_ledger?sslmode=disable"

// Config is the whole configuration, read once from the environment (and a
// .env file) by loadConfig; nothing else reads the environment.
type Config struct {
	DatabaseURL      string
	WebhookSecrets   []string
	StripeSecretKey  string
	StripePublicKey  string
	StripeAPIBaseURL string
	Addr             string
	APIToken         string
	TLSCert, TLSKey  string
	// StripeMode is LEDGER_STRIPE_MODE: "test", "live", or "" to take the
	// mode from STRIPE_SECRET_KEY or --dev (stripeMode, mode.go).
	StripeMode string
	// StripeAccounts is LEDGER_STRIPE_ACCOUNTS: the Connect accounts whose
	// events are decided; none means every account.
	StripeAccounts []string
	// DataDir holds what --dev generates (LEDGER_DATA_DIR, default .ledger).
	DataDir string
	// ShutdownGrace bounds the drain of in-flight requests on SIGTERM
	// (LEDGER_SHUTDOWN_GRACE, default 20s).
	ShutdownGrace time.Duration
	// DBMaxConns bounds the connection pool (LEDGER_DB_MAX_CONNS, default 20).
	DBMaxConns int
	// DBStatementTimeout bounds each statement (LEDGER_DB_STATEMENT_TIMEOUT, default 10s).
	DBStatementTimeout time.Duration
	// RebuildStatementTimeout bounds each statement of a projection rebuild
	// (LEDGER_REBUILD_STATEMENT_TIMEOUT, default 6h): its index builds and
	// constraint checks run for minutes on a large log.
	RebuildStatementTimeout time.Duration
	// GroupCommit is the group commit of Stripe deliveries: the most of
	// one transaction (LEDGER_INGEST_BATCH, default 32, 1 turns it off,
	// at most 256), how long a writer waits for more
	// (LEDGER_INGEST_BATCH_WAIT, default 0s: never, at most 100ms), and
	// how many batch transactions run at once (LEDGER_INGEST_WRITERS,
	// default bookingstore.DefaultGroupWriters).
	GroupCommit bookingstore.GroupCommit
	// MaxInFlight bounds concurrent requests; more get 503 (LEDGER_MAX_INFLIGHT, default 128).
	MaxInFlight int
	// RequestTimeout bounds one request (LEDGER_REQUEST_TIMEOUT, default 15s).
	RequestTimeout time.Duration
	Dev            bool
	// PublicURL is where customers' browsers reach the service, the base of
	// Checkout's return URLs (LEDGER_PUBLIC_URL, default
	// http://localhost:8000).
	PublicURL string
	// StripeTimeout bounds one request to Stripe (STRIPE_TIMEOUT, default
	// 15s); StripeMaxNetworkRetries is stripe-go's own retries
	// (STRIPE_MAX_NETWORK_RETRIES, default 2).
	StripeTimeout           time.Duration
	StripeMaxNetworkRetries int
	// CheckoutSessionTTL is how long a Checkout Session stays payable
	// (LEDGER_CHECKOUT_TTL, default 1h, 35m to 24h).
	CheckoutSessionTTL time.Duration
	// RebuildStale makes `ledger serve` rebuild, in the background, every
	// projection whose stored version differs from the code's (--rebuild-stale).
	RebuildStale bool
	// ReconcileEvery makes `ledger serve` reconcile with Stripe's Events
	// API on this period (--reconcile-every or LEDGER_RECONCILE_EVERY; 0:
	// never; needs STRIPE_SECRET_KEY).
	ReconcileEvery time.Duration
	// Edge holds the HTTP edge's limits and tokens (edge.go).
	Edge EdgeConfig
	EvidenceConfig
	// LogFormat is LEDGER_LOG_FORMAT: "text", "json", or "" for text on a
	// terminal and JSON otherwise (logging.go).
	LogFormat string
	// Forward configures forwarding to NATS JetStream (LEDGER_FORWARD_*,
	// forward.go); off without a URL.
	Forward forwardConfig
}

// loadConfig reads .env (if present, without overriding the environment)
// and the environment.
func loadConfig() (Config, error) {
	if err := godotenv.Load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf(".env: %w", err)
	}
	c := Config{
		DatabaseURL:      env("DATABASE_URL", defaultDatabaseURL),
		WebhookSecrets:   stripe.ParseSecrets(os.Getenv("STRIPE_WEBHOOK_SECRET")),
		StripeSecretKey:  os.Getenv("STRIPE_SECRET_KEY"),
		StripePublicKey:  os.Getenv("STRIPE_PUBLIC_KEY"),
		StripeAPIBaseURL: os.Getenv("STRIPE_API_BASE_URL"),
		Addr:             env("LEDGER_ADDR", ":8000"),
		APIToken:         os.Getenv("LEDGER_API_TOKEN"),
		TLSCert:          os.Getenv("LEDGER_TLS_CERT"),
		TLSKey:           os.Getenv("LEDGER_TLS_KEY"),
		DataDir:          env("LEDGER_DATA_DIR", ".ledger"),
	}
	var err error
	if c.LogFormat, err = parseLogFormat(os.Getenv("LEDGER_LOG_FORMAT")); err != nil {
		return c, err
	}
	if c.ShutdownGrace, err = time.ParseDuration(env("LEDGER_SHUTDOWN_GRACE", "20s")); err != nil {
		return c, fmt.Errorf("LEDGER_SHUTDOWN_GRACE: %w", err)
	}
	if _, err := fmt.Sscan(env("LEDGER_DB_MAX_CONNS", "20"), &c.DBMaxConns); err != nil || c.DBMaxConns < 1 {
		return c, fmt.Errorf("LEDGER_DB_MAX_CONNS: must be a positive integer")
	}
	if _, err := fmt.Sscan(env("LEDGER_INGEST_BATCH", "32"), &c.GroupCommit.MaxBatch); err != nil || c.GroupCommit.MaxBatch < 1 || c.GroupCommit.MaxBatch > bookingstore.MaxGroupBatch {
		return c, fmt.Errorf("LEDGER_INGEST_BATCH: must be an integer from 1 (no group commit) to %d", bookingstore.MaxGroupBatch)
	}
	if c.GroupCommit.MaxWait, err = time.ParseDuration(env("LEDGER_INGEST_BATCH_WAIT", "0s")); err != nil || c.GroupCommit.MaxWait < 0 || c.GroupCommit.MaxWait > bookingstore.MaxGroupWait {
		return c, fmt.Errorf("LEDGER_INGEST_BATCH_WAIT: must be a duration from 0s to %s", bookingstore.MaxGroupWait)
	}
	if _, err := fmt.Sscan(env("LEDGER_INGEST_WRITERS", strconv.Itoa(bookingstore.DefaultGroupWriters)), &c.GroupCommit.Writers); err != nil || c.GroupCommit.Writers < 1 || c.GroupCommit.Writers > 64 {
		return c, fmt.Errorf("LEDGER_INGEST_WRITERS: must be an integer from 1 to 64")
	}
	if _, err := fmt.Sscan(env("LEDGER_MAX_INFLIGHT", "128"), &c.MaxInFlight); err != nil || c.MaxInFlight < 1 {
		return c, fmt.Errorf("LEDGER_MAX_INFLIGHT: must be a positive integer")
	}
	if c.DBStatementTimeout, err = time.ParseDuration(env("LEDGER_DB_STATEMENT_TIMEOUT", "10s")); err != nil || c.DBStatementTimeout <= 0 {
		return c, fmt.Errorf("LEDGER_DB_STATEMENT_TIMEOUT: must be a positive duration")
	}
	if c.RequestTimeout, err = time.ParseDuration(env("LEDGER_REQUEST_TIMEOUT", "15s")); err != nil || c.RequestTimeout <= 0 {
		return c, fmt.Errorf("LEDGER_REQUEST_TIMEOUT: must be a positive duration")
	}
	if c.RebuildStatementTimeout, err = time.ParseDuration(env("LEDGER_REBUILD_STATEMENT_TIMEOUT", "6h")); err != nil || c.RebuildStatementTimeout <= 0 {
		return c, fmt.Errorf("LEDGER_REBUILD_STATEMENT_TIMEOUT: must be a positive duration such as 6h")
	}
	if c.ReconcileEvery, err = time.ParseDuration(env("LEDGER_RECONCILE_EVERY", "0s")); err != nil {
		return c, fmt.Errorf("LEDGER_RECONCILE_EVERY: must be a duration such as 1h")
	}
	if err := c.loadStripeConfig(); err != nil {
		return c, err
	}
	if err := c.loadStripeMode(); err != nil {
		return c, err
	}
	if err := c.loadEdgeConfig(); err != nil {
		return c, err
	}
	if err := c.loadEvidenceConfig(); err != nil {
		return c, err
	}
	if err := c.loadForwardConfig(); err != nil {
		return c, err
	}
	return c, nil
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// validateServe reports what `ledger serve` cannot start without.
func (c Config) validateServe() error {
	var errs []error
	if len(c.WebhookSecrets) == 0 {
		errs = append(errs, errors.New("STRIPE_WEBHOOK_SECRET is not set: give the endpoint's whsec_... secret (comma-separated for rotation), or run `ledger serve --dev`"))
	}
	for _, s := range c.WebhookSecrets {
		if !strings.HasPrefix(s, "whsec_") {
			errs = append(errs, errors.New("STRIPE_WEBHOOK_SECRET: every secret starts with whsec_"))
			break
		}
	}
	if err := c.validateTokens(); err != nil {
		errs = append(errs, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("LEDGER_TLS_CERT and LEDGER_TLS_KEY go together"))
	}
	if _, _, err := c.stripeMode(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateForward(); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.ReconcileEvery < 0:
		errs = append(errs, errors.New("--reconcile-every / LEDGER_RECONCILE_EVERY: must not be negative"))
	case c.ReconcileEvery > 0 && c.ReconcileEvery < time.Minute:
		errs = append(errs, errors.New("--reconcile-every / LEDGER_RECONCILE_EVERY: at least 1m (Stripe's Events API is rate-limited)"))
	case c.ReconcileEvery > 0 && c.StripeSecretKey == "":
		errs = append(errs, errors.New("--reconcile-every needs STRIPE_SECRET_KEY: reconciliation reads Stripe's Events API"))
	}
	return errors.Join(errs...)
}

// devSecrets fills in a missing webhook secret and API token from
// DataDir/dev.env, generating and saving them on first use, so that
// `make run` followed by `ledger send-test-webhook` works out of the box.
func (c *Config) devSecrets(logger *slog.Logger) error {
	path := filepath.Join(c.DataDir, "dev.env")
	saved, err := godotenv.Read(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err == nil {
		if err := tightenSecretsFile(path); err != nil {
			return err
		}
	}
	if saved == nil {
		saved = map[string]string{}
	}
	changed := false
	if saved["STRIPE_WEBHOOK_SECRET"] == "" {
		saved["STRIPE_WEBHOOK_SECRET"] = "whsec_dev_" + randomHex(24)
		changed = true
	}
	if saved["LEDGER_API_TOKEN"] == "" {
		saved["LEDGER_API_TOKEN"] = "dev_" + randomHex(24)
		changed = true
	}
	if changed {
		if err := writeSecretsFile(c.DataDir, path, saved); err != nil {
			return err
		}
	}
	// The secrets themselves are never printed: stderr ends up in logs.
	if len(c.WebhookSecrets) == 0 {
		c.WebhookSecrets = []string{saved["STRIPE_WEBHOOK_SECRET"]}
		fmt.Fprintf(os.Stderr, "dev mode: STRIPE_WEBHOOK_SECRET is kept in %s\n", path)
	}
	if c.APIToken == "" && len(c.Edge.Tokens) == 0 {
		c.APIToken = saved["LEDGER_API_TOKEN"]
		fmt.Fprintf(os.Stderr, "dev mode: LEDGER_API_TOKEN is kept in %s\n", path)
	}
	return nil
}

// loadDevSecrets is devSecrets for the client commands: it reads what a
// dev server saved, generating nothing.
func (c *Config) loadDevSecrets() {
	saved, err := godotenv.Read(filepath.Join(c.DataDir, "dev.env"))
	if err != nil {
		return
	}
	if len(c.WebhookSecrets) == 0 && saved["STRIPE_WEBHOOK_SECRET"] != "" {
		c.WebhookSecrets = []string{saved["STRIPE_WEBHOOK_SECRET"]}
	}
	if c.APIToken == "" {
		c.APIToken = saved["LEDGER_API_TOKEN"]
	}
}

// LogValue prints the configuration with every secret redacted, as it is
// in effect (the Stripe mode as stripeMode decides it). Durations are
// written as "15s" by the binary's log handler (logging.go).
func (c Config) LogValue() slog.Value {
	mode, modeFrom := c.StripeMode, ""
	if m, from, err := c.stripeMode(); err == nil {
		mode, modeFrom = m.String(), from
	}
	return slog.GroupValue(
		slog.String("database_url", postgres.Redact(c.DatabaseURL)),
		slog.Int("webhook_secrets", len(c.WebhookSecrets)),
		slog.Bool("stripe_secret_key_set", c.StripeSecretKey != ""),
		slog.String("stripe_api_base_url", c.StripeAPIBaseURL),
		slog.String("stripe_mode", mode),
		slog.String("stripe_mode_from", modeFrom),
		slog.Any("stripe_accounts", c.StripeAccounts),
		slog.String("addr", c.Addr),
		slog.Bool("api_token_set", c.APIToken != ""),
		slog.Bool("tls", c.TLSCert != ""),
		slog.String("data_dir", c.DataDir),
		slog.Duration("shutdown_grace", c.ShutdownGrace),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.Duration("db_statement_timeout", c.DBStatementTimeout),
		slog.Duration("rebuild_statement_timeout", c.RebuildStatementTimeout),
		slog.Int("ingest_batch", c.GroupCommit.MaxBatch),
		slog.Duration("ingest_batch_wait", c.GroupCommit.MaxWait),
		slog.Int("ingest_writers", c.GroupCommit.Writers),
		slog.Int("max_inflight", c.MaxInFlight),
		slog.Duration("request_timeout", c.RequestTimeout),
		slog.Bool("dev", c.Dev),
		slog.String("public_url", c.PublicURL),
		slog.Bool("stripe_public_key_set", c.StripePublicKey != ""),
		slog.Duration("stripe_timeout", c.StripeTimeout),
		slog.Int("stripe_max_network_retries", c.StripeMaxNetworkRetries),
		slog.Duration("checkout_ttl", c.CheckoutSessionTTL),
		slog.Bool("rebuild_stale", c.RebuildStale),
		slog.Duration("reconcile_every", c.ReconcileEvery),
		slog.Any("edge", c.Edge),
		slog.Any("evidence", c.EvidenceConfig),
		slog.String("log_format", c.LogFormat),
		slog.Any("forward", c.Forward),
	)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
