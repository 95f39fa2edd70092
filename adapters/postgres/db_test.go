package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

func TestOpenSetsSessionTimeouts(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewURL(t), StatementTimeout: 1500 * time.Millisecond, MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var statement, idle string
	if err := db.QueryRow(`SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')`).Scan(&statement, &idle); err != nil {
		t.Fatal(err)
	}
	if statement != "1500ms" || idle != "30s" {
		t.Fatalf("statement_timeout %s, idle_in_transaction_session_timeout %s", statement, idle)
	}
	// A statement past the timeout is cancelled by the server.
	if _, err := db.Exec(`SELECT pg_sleep(3)`); err == nil {
		t.Fatal("pg_sleep(3) ran past a 1.5 s statement timeout")
	}
}
