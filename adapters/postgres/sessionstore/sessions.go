// Package sessionstore keeps the auditor UI's sessions in PostgreSQL
// (ui_sessions, migration 00009): the HTTP edge decides when a session is
// valid; this package stores it, under the SHA-256 of its id only.
package sessionstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// Store keeps sessions in ui_sessions.
type Store struct {
	db *sql.DB
	// keep is how long a session row is kept after its creation; older
	// rows are deleted as new sessions are created.
	keep time.Duration
}

// New returns a Store on db. Rows older than keep (at least a day: the
// longest a session lives) are purged as sessions are created.
func New(db *sql.DB, keep time.Duration) (*Store, error) {
	if db == nil {
		return nil, errors.New("sessionstore: no database")
	}
	return &Store{db: db, keep: max(keep, 48*time.Hour)}, nil
}

// CreateSession stores s, and deletes the sessions too old to be valid.
func (st *Store) CreateSession(ctx context.Context, s app.Session) error {
	if len(s.Digest) != 32 {
		return fmt.Errorf("sessionstore: digest of %d bytes: %w", len(s.Digest), domain.ErrInvalid)
	}
	if _, err := st.db.ExecContext(ctx, `DELETE FROM ui_sessions WHERE created_at < $1`, s.CreatedAt.Add(-st.keep)); err != nil {
		return fmt.Errorf("sessionstore: purge: %w", err)
	}
	_, err := st.db.ExecContext(ctx, `INSERT INTO ui_sessions
		(id_sha256, token_name, token_fingerprint, created_at, last_seen_at, remote_addr, user_agent)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		s.Digest, s.TokenName, s.TokenFingerprint, s.CreatedAt, s.LastSeenAt, s.RemoteAddr, s.UserAgent)
	if err != nil {
		return fmt.Errorf("sessionstore: create: %w", err)
	}
	return nil
}

// Session returns the session stored under digest; domain.ErrNotFound
// when there is none.
func (st *Store) Session(ctx context.Context, digest []byte) (app.Session, error) {
	s := app.Session{Digest: digest}
	var revoked sql.NullTime
	err := st.db.QueryRowContext(ctx, `SELECT token_name, token_fingerprint, created_at, last_seen_at, revoked_at, remote_addr, user_agent
		FROM ui_sessions WHERE id_sha256 = $1`, digest).
		Scan(&s.TokenName, &s.TokenFingerprint, &s.CreatedAt, &s.LastSeenAt, &revoked, &s.RemoteAddr, &s.UserAgent)
	if errors.Is(err, sql.ErrNoRows) {
		return app.Session{}, fmt.Errorf("sessionstore: session: %w", domain.ErrNotFound)
	}
	if err != nil {
		return app.Session{}, fmt.Errorf("sessionstore: session: %w", err)
	}
	if revoked.Valid {
		s.RevokedAt = revoked.Time
	}
	return s, nil
}

// TouchSession moves the session's last use to at, never backwards.
func (st *Store) TouchSession(ctx context.Context, digest []byte, at time.Time) error {
	_, err := st.db.ExecContext(ctx, `UPDATE ui_sessions SET last_seen_at = $2 WHERE id_sha256 = $1 AND last_seen_at < $2`, digest, at)
	if err != nil {
		return fmt.Errorf("sessionstore: touch: %w", err)
	}
	return nil
}

// RevokeSession ends the session at at; a second revocation keeps the
// first time.
func (st *Store) RevokeSession(ctx context.Context, digest []byte, at time.Time) error {
	_, err := st.db.ExecContext(ctx, `UPDATE ui_sessions SET revoked_at = $2 WHERE id_sha256 = $1 AND revoked_at IS NULL`, digest, at)
	if err != nil {
		return fmt.Errorf("sessionstore: revoke: %w", err)
	}
	return nil
}
