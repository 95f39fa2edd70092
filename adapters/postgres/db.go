// Package postgres is the PostgreSQL edge of the ledger: connections and
// migrations, the Transact helper, the event store on watermill-sql, the
// Stripe inbox and the storage of the projections.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

// Config configures a connection pool. Zero fields take the defaults of
// setDefaults; Validate reports what cannot work.
type Config struct {
	// URL is a postgres:// URL as understood by lib/pq.
	URL string
	// MaxOpenConns bounds the pool (default 20), so that a burst of webhooks
	// queues for a connection instead of exhausting the server's slots.
	MaxOpenConns int
	// MaxIdleConns defaults to MaxOpenConns: every webhook needs one.
	MaxIdleConns int
	// ConnMaxIdleTime closes idle connections (default 5 minutes).
	ConnMaxIdleTime time.Duration
	// ConnectTimeout bounds dialing the server (default 5 s), so that an
	// unreachable database answers quickly instead of hanging a request.
	ConnectTimeout time.Duration
	// StatementTimeout bounds every statement on the server (default 10 s),
	// lock waits included, so that no request hangs on a stuck database.
	StatementTimeout time.Duration
	// IdleInTransactionTimeout ends sessions that sit in an open
	// transaction (default 30 s): a crashed or stuck client must not hold
	// locks, nor hold back the subscribers' snapshot bound.
	IdleInTransactionTimeout time.Duration
	// ReadTimeout bounds every read and write on a connection (default
	// StatementTimeout + 5 s): a server that stops answering without
	// closing the connection (a partition) fails the statement after it
	// and the connection is replaced (deadline.go).
	ReadTimeout time.Duration
	// CreateDatabase creates the database named in URL when it is missing.
	CreateDatabase bool
}

func (c *Config) setDefaults() {
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = 20
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = c.MaxOpenConns
	}
	if c.ConnMaxIdleTime == 0 {
		c.ConnMaxIdleTime = 5 * time.Minute
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.StatementTimeout == 0 {
		c.StatementTimeout = 10 * time.Second
	}
	if c.IdleInTransactionTimeout == 0 {
		c.IdleInTransactionTimeout = 30 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = c.StatementTimeout + 5*time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("postgres: empty database URL")
	}
	if _, err := pq.NewConfig(c.URL); err != nil {
		// The parser's error is not wrapped: it may quote the URL, and
		// with it the password.
		return errUnparseableURL
	}
	if c.MaxOpenConns < 1 || c.MaxIdleConns < 0 || c.ConnectTimeout < 0 || c.StatementTimeout < 0 || c.IdleInTransactionTimeout < 0 || c.ReadTimeout < 0 {
		return errors.New("postgres: pool sizes and timeouts must be positive")
	}
	return nil
}

// Open opens a pool on cfg.URL, creating the database first when
// cfg.CreateDatabase is set, and checks that the server answers.
func Open(ctx context.Context, cfg Config) (*sql.DB, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dsn := withSessionDefaults(cfg.URL, cfg)
	if cfg.CreateDatabase {
		if err := EnsureDatabase(ctx, dsn); err != nil {
			return nil, err
		}
	}
	db, err := openPool(dsn, cfg.ReadTimeout)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	db.SetMaxIdleConns(cfg.MaxIdleConns)
	db.SetConnMaxIdleTime(cfg.ConnMaxIdleTime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", Redact(cfg.URL), err)
	}
	return db, nil
}

// EnsureDatabase creates the database named in dsn when it does not exist,
// connecting to the server's `postgres` database to do so. Two processes
// racing to create it both succeed.
func EnsureDatabase(ctx context.Context, dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("postgres: creating the database needs a postgres:// URL")
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	admin := *u
	admin.Path = "/postgres"
	db, err := openPool(admin.String(), 30*time.Second)
	if err != nil {
		return err
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: connect to %s: %w", Redact(admin.String()), err)
	}
	if exists {
		return nil
	}
	_, err = db.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(name))
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && (pqErr.Code == "42P04" || pqErr.Code == "23505") {
		// Created meanwhile by another process (42P04), or the catalog
		// race of two concurrent CREATE DATABASE (23505).
		return nil
	}
	if err != nil {
		return fmt.Errorf("postgres: create database %q: %w", name, err)
	}
	return nil
}

// errUnparseableURL names no part of the URL, which may hold a password.
var errUnparseableURL = errors.New("postgres: the database URL cannot be parsed (want postgres://user:password@host:port/db?... or key=value pairs)")

// openPool opens a pool on dsn through lib/pq's connector, with the
// deadline dialer.
func openPool(dsn string, readTimeout time.Duration) (*sql.DB, error) {
	connector, err := pq.NewConnector(dsn)
	if err != nil {
		return nil, errUnparseableURL
	}
	connector.Dialer(deadlineDialer{d: net.Dialer{KeepAlive: 15 * time.Second}, timeout: readTimeout})
	return sql.OpenDB(connector), nil
}

// Redact returns what may be logged of a database URL or key=value DSN:
// "user@host:port/db" only, read with lib/pq's own parser, so that no
// password (in the userinfo, a password= pair or ?password=) nor any other
// parameter is ever printed. It fails closed: a DSN the driver cannot parse
// gives "<unparseable database URL>".
func Redact(dsn string) string {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return "<unparseable database URL>"
	}
	host := cfg.Host
	if cfg.Hostaddr.IsValid() {
		host = cfg.Hostaddr.String()
	}
	return fmt.Sprintf("%s@%s/%s", cfg.User, net.JoinHostPort(host, strconv.Itoa(int(cfg.Port))), cfg.Database)
}

// withSessionDefaults adds the connect timeout and, as run-time parameters
// that lib/pq sends at connection start, the statement and idle timeouts —
// unless the URL sets them itself.
func withSessionDefaults(dsn string, cfg Config) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn
	}
	q := u.Query()
	set := func(key, value string) {
		if q.Get(key) == "" {
			q.Set(key, value)
		}
	}
	set("connect_timeout", fmt.Sprint(max(1, int(cfg.ConnectTimeout/time.Second))))
	set("statement_timeout", fmt.Sprint(cfg.StatementTimeout.Milliseconds()))
	set("idle_in_transaction_session_timeout", fmt.Sprint(cfg.IdleInTransactionTimeout.Milliseconds()))
	u.RawQuery = q.Encode()
	return u.String()
}
