package apptest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// Sessions keeps the auditor UI's sessions in memory, with the contract of
// the SQL store (adapters/postgres/sessionstore): a digest is stored once,
// an unknown digest is domain.ErrNotFound.
type Sessions struct {
	mu sync.Mutex
	m  map[string]app.Session
}

// NewSessions returns an empty session store.
func NewSessions() *Sessions { return &Sessions{m: map[string]app.Session{}} }

// CreateSession stores s; a digest stored before is domain.ErrConflict.
func (s *Sessions) CreateSession(_ context.Context, sess app.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[string(sess.Digest)]; ok {
		return fmt.Errorf("session exists: %w", domain.ErrConflict)
	}
	s.m[string(sess.Digest)] = sess
	return nil
}

// Session returns the session stored under digest.
func (s *Sessions) Session(_ context.Context, digest []byte) (app.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[string(digest)]
	if !ok {
		return app.Session{}, fmt.Errorf("session: %w", domain.ErrNotFound)
	}
	return sess, nil
}

// TouchSession moves the session's last use to at (never backwards).
func (s *Sessions) TouchSession(_ context.Context, digest []byte, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.m[string(digest)]; ok && at.After(sess.LastSeenAt) {
		sess.LastSeenAt = at
		s.m[string(digest)] = sess
	}
	return nil
}

// RevokeSession ends the session at at; revoking twice keeps the first.
func (s *Sessions) RevokeSession(_ context.Context, digest []byte, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.m[string(digest)]; ok && sess.RevokedAt.IsZero() {
		sess.RevokedAt = at
		s.m[string(digest)] = sess
	}
	return nil
}

// Len is the number of sessions stored (open or not).
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
