package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
)

// Two database roles keep the evidence out of the runtime's reach. The
// owner (MIGRATE_DATABASE_URL, default DATABASE_URL) owns every table: only
// `ledger migrate`, `ledger projections rebuild` and `serve --dev` connect
// as it. The runtime role (LEDGER_RUNTIME_ROLE, default ledger_app), which
// migrate creates and grants, may read everything and append to the log
// tables but change none of them; `ledger serve` runs as it and refuses to
// run as anything stronger outside --dev.

// migrateOwner creates the database when missing, applies the migrations
// and sets up the runtime role, connected as the owner; it returns the
// versions applied.
func migrateOwner(ctx context.Context, cfg Config, logger *slog.Logger) ([]int64, error) {
	owner := cfg.ownerURL()
	if postgres.UserOf(owner) == cfg.runtimeRole() {
		return nil, fmt.Errorf("the migrations need the owner of the tables, and %s is the runtime role: set MIGRATE_DATABASE_URL to the owner's URL", postgres.Redact(owner))
	}
	c := cfg
	c.DatabaseURL = owner
	db, err := openDB(ctx, c)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	applied, err := postgres.Migrate(ctx, db, logger)
	if err != nil {
		return nil, err
	}
	if err := postgres.EnsureRuntimeRole(ctx, db, cfg.runtimeRole()); err != nil {
		return applied, err
	}
	return applied, nil
}

// runtimeURL is the URL serve connects with: DATABASE_URL, or under --dev,
// when DATABASE_URL is the owner's, the same server and database as the
// runtime role.
func (c Config) runtimeURL() (string, error) {
	if !c.Dev || (c.MigrateDatabaseURL != "" && postgres.UserOf(c.DatabaseURL) != postgres.UserOf(c.MigrateDatabaseURL)) {
		return c.DatabaseURL, nil
	}
	return postgres.WithUser(c.DatabaseURL, c.runtimeRole())
}

// roleAdvice says what to set to serve as the runtime role.
func (c Config) roleAdvice() string {
	runtime, err := postgres.WithUser(c.DatabaseURL, c.runtimeRole())
	if err != nil {
		runtime = "postgres://" + c.runtimeRole() + "@HOST/DATABASE"
	}
	owner := postgres.Redact(c.ownerURL())
	if postgres.UserOf(c.DatabaseURL) == c.runtimeRole() {
		owner = "postgres://OWNER@HOST/DATABASE"
	}
	return fmt.Sprintf("run `ledger migrate` as the tables' owner (MIGRATE_DATABASE_URL=%s; it creates the role %s and its grants), "+
		"then serve as that role: DATABASE_URL=%s (`ledger serve --dev` does both by itself)",
		owner, c.runtimeRole(), postgres.Redact(runtime))
}

// openDatabase opens the pool serve runs on. Under --dev it first migrates
// as the owner and sets up the runtime role, then connects as that role.
// Otherwise it connects with DATABASE_URL and refuses to go on when
// migrations are pending or when the role could change the evidence
// (postgres.CheckRuntimeRole), saying what to set.
func (a *App) openDatabase(ctx context.Context) (*sql.DB, error) {
	cfg := a.cfg
	if cfg.RebuildStale && !cfg.Dev {
		return nil, errors.New("--rebuild-stale needs the owner's rights, which serve does not hold outside --dev: run `ledger projections rebuild` with MIGRATE_DATABASE_URL instead")
	}
	runtime, err := cfg.runtimeURL()
	if err != nil {
		return nil, err
	}
	if cfg.Dev && postgres.UserOf(cfg.ownerURL()) != cfg.runtimeRole() {
		applied, err := migrateOwner(ctx, cfg, nil)
		if err != nil {
			return nil, fmt.Errorf("--dev: set up the database as its owner: %w", err)
		}
		if len(applied) > 0 {
			a.logger.Info("migrations applied", "versions", applied)
		}
		a.logger.Info("serving as the runtime role", "role", cfg.runtimeRole(), "database_url", postgres.Redact(runtime))
		if cfg.RebuildStale {
			a.ownerDB, err = postgres.Open(ctx, postgres.Config{URL: cfg.ownerURL(), MaxOpenConns: 4, StatementTimeout: cfg.DBStatementTimeout})
			if err != nil {
				return nil, err
			}
		}
	}
	if !cfg.Dev && cfg.MigrateDatabaseURL != "" {
		a.logger.Warn("MIGRATE_DATABASE_URL is set but serve does not use it: keep the owner's credentials out of the server's environment")
	}
	db, err := postgres.Open(ctx, postgres.Config{
		URL:              runtime,
		MaxOpenConns:     cfg.DBMaxConns,
		StatementTimeout: cfg.DBStatementTimeout,
	})
	if err != nil {
		return nil, err
	}
	if err := checkServeDatabase(ctx, db, cfg, a.logger); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// checkServeDatabase refuses a role that could change the evidence (under
// --dev this is only logged) and a database with pending migrations.
func checkServeDatabase(ctx context.Context, db *sql.DB, cfg Config, logger *slog.Logger) error {
	err := postgres.CheckRuntimeRole(ctx, db)
	switch {
	case err == nil:
	case postgres.IsPrivilegeError(err) && cfg.Dev:
		logger.Warn("--dev: serving with a role that could change the evidence", "reason", err)
	case postgres.IsPrivilegeError(err):
		return fmt.Errorf("refusing to serve: %w. To fix it, %s", err, cfg.roleAdvice())
	case errors.Is(err, domain.ErrInvalid):
		return fmt.Errorf("the database is not migrated: %s", cfg.roleAdvice())
	default:
		return err
	}
	pending, err := postgres.MigrationsPending(ctx, db)
	if err != nil {
		return fmt.Errorf("cannot read the database's migrations (%w): %s", err, cfg.roleAdvice())
	}
	if pending {
		return fmt.Errorf("the database lacks migrations this binary carries: %s", cfg.roleAdvice())
	}
	return nil
}
