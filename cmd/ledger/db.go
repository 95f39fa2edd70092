package main

import (
	"context"
	"database/sql"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

func openDB(ctx context.Context, cfg Config) (*sql.DB, error) {
	return postgres.Open(ctx, postgres.Config{
		URL:              cfg.DatabaseURL,
		CreateDatabase:   true,
		MaxOpenConns:     cfg.DBMaxConns,
		StatementTimeout: cfg.DBStatementTimeout,
	})
}

// openRebuildDB opens the pool of projection rebuilds: a few connections
// whose statements and open transactions are bounded by
// RebuildStatementTimeout, not by the request path's
// LEDGER_DB_STATEMENT_TIMEOUT (a 1,000,000-event rebuild builds its GiST
// exclusion constraint for longer than a request may take).
//
// A rebuild swaps tables: it connects as their owner (MIGRATE_DATABASE_URL,
// default DATABASE_URL).
func openRebuildDB(ctx context.Context, cfg Config) (*sql.DB, error) {
	return postgres.Open(ctx, postgres.Config{
		URL:                      cfg.ownerURL(),
		CreateDatabase:           true,
		MaxOpenConns:             8,
		StatementTimeout:         cfg.RebuildStatementTimeout,
		IdleInTransactionTimeout: cfg.RebuildStatementTimeout,
	})
}
