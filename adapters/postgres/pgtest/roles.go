package pgtest

import (
	"context"
	"net/url"
	"testing"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

// RuntimeRole returns a role name of this test's own for the runtime role
// (roles are cluster-wide, and tests run in parallel against one server);
// nothing is created yet. When the test ends the role, if it exists by
// then, is dropped with what it was granted in every database.
func RuntimeRole(tb testing.TB) string {
	tb.Helper()
	server := ServerURL(tb)
	role := "ledger_app_t_" + randomSuffix()
	tb.Cleanup(func() { DropRole(tb, server, role) })
	return role
}

// DropRole drops role from the server: first what it holds in each
// database that still has a grant to it (DROP OWNED BY), then the role.
func DropRole(tb testing.TB, server *url.URL, role string) {
	tb.Helper()
	admin := open(tb, server.String())
	defer admin.Close()
	ctx := context.Background()
	rows, err := admin.QueryContext(ctx, `SELECT DISTINCT d.datname FROM pg_shdepend s
		JOIN pg_database d ON d.oid = s.dbid
		WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)`, role)
	if err != nil {
		tb.Errorf("pgtest: databases of role %s: %v", role, err)
		return
	}
	var dbs []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err == nil {
			dbs = append(dbs, name)
		}
	}
	rows.Close()
	for _, name := range dbs {
		u := *server
		u.Path = "/" + name
		db := open(tb, u.String())
		if _, err := db.ExecContext(ctx, `DROP OWNED BY `+pq.QuoteIdentifier(role)); err != nil {
			tb.Logf("pgtest: drop owned by %s in %s: %v", role, name, err)
		}
		db.Close()
	}
	if _, err := admin.ExecContext(ctx, `DROP ROLE IF EXISTS `+pq.QuoteIdentifier(role)); err != nil {
		tb.Errorf("pgtest: drop role %s: %v", role, err)
	}
}

// URLAs is dbURL with its user replaced by role (no password: the test
// servers trust local connections).
func URLAs(tb testing.TB, dbURL, role string) string {
	tb.Helper()
	u, err := postgres.WithUser(dbURL, role)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// NewRuntimeURL is NewURL set up as `ledger migrate` leaves it — migrated,
// with a runtime role of this test's own — and returns the owner's URL,
// the runtime role's URL and the role.
func NewRuntimeURL(tb testing.TB) (owner, runtime, role string) {
	tb.Helper()
	owner = NewURL(tb)
	role = RuntimeRole(tb)
	db := open(tb, owner)
	defer db.Close()
	if err := postgres.EnsureRuntimeRole(context.Background(), db, role); err != nil {
		tb.Fatalf("pgtest: runtime role: %v", err)
	}
	return owner, URLAs(tb, owner, role), role
}
