package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/booking-ledger/ledger/migrations"
)

// migrationLockID is the session advisory lock that serializes migrations
// when several processes start at once.
const migrationLockID = 0x6c6564676572 // "ledger"

func provider(db *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID))
	if err != nil {
		return nil, fmt.Errorf("postgres: migration lock: %w", err)
	}
	// Out-of-order migrations are applied rather than refused: branches
	// land in any order, and a database migrated on one must still take a
	// lower-numbered migration that landed later. Each migration only adds.
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithAllowOutofOrder(true)}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, opts...)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	return p, nil
}

// Migrate applies every pending migration, each in its own transaction, and
// returns the versions it applied. It is idempotent and safe to run from
// several processes at once (a session advisory lock serializes them).
func Migrate(ctx context.Context, db *sql.DB, logger *slog.Logger) ([]int64, error) {
	p, err := provider(db, logger)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// MigrationsPending reports whether the database lacks a migration the
// binary carries; readiness fails while it does.
func MigrationsPending(ctx context.Context, db *sql.DB) (bool, error) {
	p, err := provider(db, nil)
	if err != nil {
		return false, err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: pending migrations: %w", err)
	}
	return pending, nil
}
