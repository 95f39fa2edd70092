package main

import (
	"context"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// runtimeURLFor sets dbURL up as `ledger migrate` does (as its owner, with a
// runtime role of the test's own) and returns the runtime role's URL, which
// `ledger serve` outside --dev takes.
func runtimeURLFor(t *testing.T, dbURL string) string {
	t.Helper()
	role := pgtest.RuntimeRole(t)
	if _, err := migrateOwner(context.Background(), Config{DatabaseURL: dbURL, DBMaxConns: 2, EvidenceConfig: EvidenceConfig{RuntimeRole: role}}, nil); err != nil {
		t.Fatal(err)
	}
	u, err := postgres.WithUser(dbURL, role)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestServeRefusesAStrongerRole: outside --dev, `ledger serve` connected as
// a superuser, as a role that owns a log table, or to a database that is
// not migrated, exits 1 before serving, naming what is wrong and what to
// set; as the runtime role it serves.
func TestServeRefusesAStrongerRole(t *testing.T) {
	dbURL := pgtest.NewEmptyURL(t)
	runtime := runtimeURLFor(t, dbURL)
	role := postgres.UserOf(runtime)
	db := openTestDB(t, dbURL)
	owner := pgtest.RuntimeRole(t)
	if _, err := db.Exec(`CREATE ROLE ` + owner + ` LOGIN; ALTER TABLE audit_access_log OWNER TO ` + owner); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url string
		want      []string
	}{
		{"superuser", dbURL, []string{`role "postgres" could change the evidence`, "superuser", "MIGRATE_DATABASE_URL=", "DATABASE_URL=" + postgres.Redact(pgtest.URLAs(t, dbURL, "ledger_app"))}},
		{"owner of a log table", pgtest.URLAs(t, dbURL, owner), []string{"owns (or is a member of the owner of) audit_access_log"}},
		{"not migrated", pgtest.URLAs(t, pgtest.NewEmptyURL(t), role), []string{"not migrated", "ledger migrate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runLedgerProcess(t, []string{"DATABASE_URL=" + tt.url, "LEDGER_RUNTIME_ROLE=", "LEDGER_ADDR=127.0.0.1:0",
				"STRIPE_WEBHOOK_SECRET=" + testSecret, "LEDGER_API_TOKEN=" + serveToken, "LEDGER_STRIPE_MODE=test", "STRIPE_SECRET_KEY="}, "serve")
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	// As the runtime role it serves.
	cfg := testConfig(t, runtime)
	cfg.Dev, cfg.RuntimeRole = false, role
	startApp(t, cfg)
}

// TestDevServesAsTheRuntimeRole: `serve --dev` given the owner's URL only
// (what `make run` does) migrates as the owner and then holds connections
// as the runtime role only.
func TestDevServesAsTheRuntimeRole(t *testing.T) {
	dbURL := pgtest.NewEmptyURL(t)
	cfg := testConfig(t, dbURL)
	app := startApp(t, cfg)
	if err := app.db.PingContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	db := openTestDB(t, dbURL)
	var users []string
	rows, err := db.Query(`SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		rows.Scan(&u)
		users = append(users, u)
	}
	if len(users) != 1 || users[0] != cfg.RuntimeRole {
		t.Fatalf("the server's connections are %v, want only %s", users, cfg.RuntimeRole)
	}
	if err := postgres.CheckRuntimeRole(context.Background(), app.db); err != nil {
		t.Fatal(err)
	}
}
