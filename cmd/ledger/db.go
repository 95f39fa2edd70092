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
