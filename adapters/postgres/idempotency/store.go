// Package idempotency keeps the answers of requests sent with an
// Idempotency-Key (table idempotency_keys), for the HTTP edge's
// Idempotency port: one request per key runs at a time across every server
// process (a session advisory lock held while it runs), and its answer is
// kept for a retry.
package idempotency

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/booking-ledger/ledger/domain/app"
)

// lockClass is the first key of the two-key advisory locks of this package;
// the resource locks use the one-key space, which PostgreSQL keeps apart.
const lockClass = 0x1de7

// Retention is how long answers are kept (at least 24 h, as Stripe does).
const Retention = 24 * time.Hour

// Store keeps the answers in PostgreSQL.
type Store struct {
	db        *sql.DB
	lastPurge atomic.Int64
	now       func() time.Time
}

// New returns a Store on db.
func New(db *sql.DB) *Store { return &Store{db: db, now: time.Now} }

var _ app.Idempotency = (*Store)(nil)

// claim is a request's hold on its key (app.IdempotencyClaim): the session
// holding the advisory lock.
type claim struct {
	stored    *app.StoredAnswer
	recovered bool

	conn       *sql.Conn
	scope, key string
}

func (c *claim) Stored() *app.StoredAnswer { return c.stored }
func (c *claim) Recovered() bool           { return c.recovered }

// Claim takes the key for one request (app.Idempotency): the lock is a
// session advisory lock, so a request in another process holds it too, and
// a crashed process lets it go with its connection.
func (s *Store) Claim(ctx context.Context, scope, key string, hash []byte) (app.IdempotencyClaim, error) {
	s.purge(ctx)
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("idempotency: %w", err)
	}
	c := &claim{conn: conn, scope: scope, key: key}
	var locked bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClass, scope+" "+key).Scan(&locked); err != nil {
		conn.Close()
		return nil, fmt.Errorf("idempotency: lock: %w", err)
	}
	if !locked {
		conn.Close()
		return nil, app.ErrIdempotencyInProgress
	}
	var (
		stored             []byte
		status             sql.NullInt64
		body               []byte
		contentType        sql.NullString
		inserted, mismatch bool
	)
	err = conn.QueryRowContext(ctx, `WITH ins AS (
			INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
			ON CONFLICT (scope, key) DO NOTHING RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM ins), k.request_hash, k.status, k.body, k.content_type
		FROM (SELECT 1) one LEFT JOIN idempotency_keys k ON k.scope = $1 AND k.key = $2`,
		scope, key, hash).Scan(&inserted, &stored, &status, &body, &contentType)
	if err != nil {
		c.Release()
		return nil, fmt.Errorf("idempotency: claim: %w", err)
	}
	if !inserted {
		mismatch = string(stored) != string(hash)
		switch {
		case mismatch:
			c.Release()
			return nil, app.ErrIdempotencyKeyReused
		case status.Valid:
			c.stored = &app.StoredAnswer{Status: int(status.Int64), ContentType: contentType.String, Body: body}
		default:
			c.recovered = true
		}
	}
	return c, nil
}

// Complete stores the answer and releases the key.
func (c *claim) Complete(ctx context.Context, a app.StoredAnswer) error {
	defer c.Release()
	_, err := c.conn.ExecContext(ctx, `UPDATE idempotency_keys SET status = $3, body = $4, content_type = $5
		WHERE scope = $1 AND key = $2`, c.scope, c.key, a.Status, a.Body, a.ContentType)
	if err != nil {
		return fmt.Errorf("idempotency: store the answer: %w", err)
	}
	return nil
}

// Release lets the key go without an answer (a failure the client may
// retry): the next request with it runs again, as Recovered.
func (c *claim) Release() {
	if c.conn == nil {
		return
	}
	// Closing the connection would end the session and its lock too, but
	// the pool keeps sessions open: unlock explicitly.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockClass, c.scope+" "+c.key); err != nil {
		// A connection that cannot unlock must not go back to the pool
		// holding the lock.
		_ = c.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	c.conn.Close()
	c.conn = nil
}

// purge deletes answers older than Retention, at most once a minute per
// process.
func (s *Store) purge(ctx context.Context) {
	now := s.now()
	last := s.lastPurge.Load()
	if now.Unix()-last < 60 || !s.lastPurge.CompareAndSwap(last, now.Unix()) {
		return
	}
	_, _ = s.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, now.Add(-Retention))
}
