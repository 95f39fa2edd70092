package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/domain"
)

// DefaultRuntimeRole is the role `ledger serve` connects as in production
// (LEDGER_RUNTIME_ROLE).
const DefaultRuntimeRole = "ledger_app"

// logTablesSQL lists the append-only tables: those with a trigger that
// runs ledger_reject_change(), whatever migration added them. The one
// definition of "log table" for the grants and the start-up check.
const logTablesSQL = `
	SELECT c.oid, c.relname, c.relowner,
		bool_and(t.tgenabled = 'A') AS always,
		array_agg(t.tgname::text ORDER BY t.tgname) FILTER (WHERE t.tgenabled <> 'A') AS not_always
	FROM pg_trigger t
	JOIN pg_class c ON c.oid = t.tgrelid
	JOIN pg_proc p ON p.oid = t.tgfoid
	WHERE p.proname = 'ledger_reject_change' AND p.pronamespace = c.relnamespace
		AND c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
	GROUP BY c.oid, c.relname, c.relowner
	ORDER BY c.relname`

var roleNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// EnsureRuntimeRole creates role when it is missing (LOGIN, no password:
// authentication is the cluster's business) and gives it, in the database
// db is connected to (its current schema), exactly what the running service
// needs:
//
//   - SELECT and INSERT on every append-only table (those guarded by
//     ledger_reject_change(): the log, the inbox, the deliveries, the chain,
//     the access log, the checkpoints and the others), nothing more: no
//     UPDATE, DELETE, TRUNCATE, TRIGGER or REFERENCES;
//   - SELECT, INSERT, UPDATE, DELETE on every other table (the read models,
//     the subscriber offsets), SELECT on views, SELECT on goose's version
//     table, USAGE and SELECT on the sequences;
//   - no ownership and no membership in an owner's role, so that it can
//     neither ALTER, DROP nor disable a trigger of any table, nor replace
//     ledger_reject_change().
//
// Every trigger of ledger_reject_change() is set ENABLE ALWAYS on the way.
// It runs as the owner (the role db connects as: `ledger migrate`), after
// the migrations, and may run any number of times; the grants are reset
// each time, so a table added since gets its share. It refuses a role that
// is the caller itself, a superuser, BYPASSRLS, or a member of a log
// table's owner; errors wrap domain.ErrInvalid for those.
func EnsureRuntimeRole(ctx context.Context, db *sql.DB, role string) error {
	if !roleNameRE.MatchString(role) {
		return fmt.Errorf("postgres: runtime role %q: want a lower-case SQL name ([a-z_][a-z0-9_]*): %w", role, domain.ErrInvalid)
	}
	r := pq.QuoteIdentifier(role)
	// The role is created outside the grants' transaction: two databases
	// of one cluster migrated at once both try, and the loser's
	// duplicate is no error.
	if _, err := db.ExecContext(ctx, `DO $$ BEGIN CREATE ROLE `+r+` LOGIN;
		EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`); err != nil {
		return fmt.Errorf("postgres: create runtime role %s: %w", role, err)
	}
	return Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		var me string
		var super, bypass, login, createrole bool
		err := tx.QueryRowContext(ctx, `SELECT current_user, rolsuper, rolbypassrls, rolcanlogin, rolcreaterole
			FROM pg_roles WHERE rolname = $1`, role).Scan(&me, &super, &bypass, &login, &createrole)
		if err != nil {
			return fmt.Errorf("postgres: runtime role %s: %w", role, err)
		}
		switch {
		case me == role:
			return fmt.Errorf("postgres: the runtime role %s is the role running the migrations: give `ledger migrate` the owner's URL (MIGRATE_DATABASE_URL): %w", role, domain.ErrInvalid)
		case super || bypass:
			return fmt.Errorf("postgres: the runtime role %s is a superuser or BYPASSRLS: it could switch the append-only triggers off; choose another LEDGER_RUNTIME_ROLE: %w", role, domain.ErrInvalid)
		}
		var alter []string
		if !login {
			alter = append(alter, "LOGIN")
		}
		if createrole {
			// CREATEROLE could grant itself the owner's role.
			alter = append(alter, "NOCREATEROLE")
		}
		if len(alter) > 0 {
			if _, err := tx.ExecContext(ctx, `ALTER ROLE `+r+` `+strings.Join(alter, " ")); err != nil {
				return fmt.Errorf("postgres: runtime role %s: %w", role, err)
			}
		}

		type table struct {
			name       string
			appendOnly bool
		}
		var tables []table
		var notAlways [][2]string
		rows, err := tx.QueryContext(ctx, `SELECT c.relname, c.relkind::text,
				EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
					WHERE t.tgrelid = c.oid AND p.proname = 'ledger_reject_change' AND NOT t.tgisinternal),
				pg_has_role($1, c.relowner, 'MEMBER')
			FROM pg_class c
			WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
			ORDER BY c.relname`, role)
		if err != nil {
			return fmt.Errorf("postgres: runtime role %s: tables: %w", role, err)
		}
		var owned []string
		var views []string
		for rows.Next() {
			var name, kind string
			var appendOnly, member bool
			if err := rows.Scan(&name, &kind, &appendOnly, &member); err != nil {
				rows.Close()
				return fmt.Errorf("postgres: runtime role %s: tables: %w", role, err)
			}
			if member {
				owned = append(owned, name)
			}
			if kind == "v" || kind == "m" {
				views = append(views, name)
				continue
			}
			tables = append(tables, table{name, appendOnly})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: runtime role %s: tables: %w", role, err)
		}
		if len(owned) > 0 {
			return fmt.Errorf("postgres: the runtime role %s owns (or is a member of the owner of) %s: choose another LEDGER_RUNTIME_ROLE or REVOKE that membership: %w",
				role, strings.Join(owned, ", "), domain.ErrInvalid)
		}
		rows, err = tx.QueryContext(ctx, logTablesSQL)
		if err != nil {
			return fmt.Errorf("postgres: runtime role %s: triggers: %w", role, err)
		}
		for rows.Next() {
			var oid, owner int64
			var name string
			var always bool
			var names []string
			if err := rows.Scan(&oid, &name, &owner, &always, pq.Array(&names)); err != nil {
				rows.Close()
				return fmt.Errorf("postgres: runtime role %s: triggers: %w", role, err)
			}
			for _, n := range names {
				notAlways = append(notAlways, [2]string{name, n})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: runtime role %s: triggers: %w", role, err)
		}

		stmts := []string{
			`GRANT CONNECT ON DATABASE ` + pq.QuoteIdentifier(currentDatabase(ctx, tx)) + ` TO ` + r,
			`GRANT USAGE ON SCHEMA ` + pq.QuoteIdentifier(currentSchema(ctx, tx)) + ` TO ` + r,
			`REVOKE ALL ON ALL TABLES IN SCHEMA ` + pq.QuoteIdentifier(currentSchema(ctx, tx)) + ` FROM ` + r,
			`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ` + pq.QuoteIdentifier(currentSchema(ctx, tx)) + ` FROM ` + r,
			`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ` + pq.QuoteIdentifier(currentSchema(ctx, tx)) + ` TO ` + r,
		}
		for _, t := range tables {
			privileges := "SELECT, INSERT, UPDATE, DELETE"
			switch {
			case t.appendOnly:
				privileges = "SELECT, INSERT"
			case t.name == "goose_db_version":
				// Readiness reads it; only migrations write it.
				privileges = "SELECT"
			}
			stmts = append(stmts, `GRANT `+privileges+` ON `+pq.QuoteIdentifier(t.name)+` TO `+r)
		}
		for _, v := range views {
			stmts = append(stmts, `GRANT SELECT ON `+pq.QuoteIdentifier(v)+` TO `+r)
		}
		for _, tr := range notAlways {
			stmts = append(stmts, `ALTER TABLE `+pq.QuoteIdentifier(tr[0])+` ENABLE ALWAYS TRIGGER `+pq.QuoteIdentifier(tr[1]))
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("postgres: runtime role %s: %s: %w", role, s, err)
			}
		}
		return nil
	})
}

func currentDatabase(ctx context.Context, q Querier) string {
	var s string
	_ = q.QueryRowContext(ctx, `SELECT current_database()`).Scan(&s)
	return s
}

func currentSchema(ctx context.Context, q Querier) string {
	var s string
	_ = q.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&s)
	return s
}

// PrivilegeError is what CheckRuntimeRole found: the role and each way it
// could change or remove the evidence.
type PrivilegeError struct {
	Role    string
	Reasons []string
}

func (e *PrivilegeError) Error() string {
	return fmt.Sprintf("the database role %q could change the evidence: %s", e.Role, strings.Join(e.Reasons, "; "))
}

// CheckRuntimeRole reports, as a *PrivilegeError, every way the role q
// connects as could get around the append-only tables: it is a superuser
// (who can also SET session_replication_role), BYPASSRLS or CREATEROLE; it
// owns, or is a member of the owner of, a log table or of
// ledger_reject_change(); it holds UPDATE, DELETE, TRUNCATE or TRIGGER on
// a log table; or a log trigger is not ENABLE ALWAYS. It returns nil when
// none holds, and an error wrapping domain.ErrInvalid when the database
// has no log table (not migrated).
func CheckRuntimeRole(ctx context.Context, q Querier) error {
	var me string
	var super, bypass, createrole bool
	if err := q.QueryRowContext(ctx, `SELECT current_user, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = current_user`).
		Scan(&me, &super, &bypass, &createrole); err != nil {
		return fmt.Errorf("postgres: check the database role: %w", err)
	}
	perr := &PrivilegeError{Role: me}
	if super {
		perr.Reasons = append(perr.Reasons, "it is a superuser (it can disable any trigger and SET session_replication_role = replica)")
	}
	if bypass && !super {
		perr.Reasons = append(perr.Reasons, "it has BYPASSRLS")
	}
	if createrole && !super {
		perr.Reasons = append(perr.Reasons, "it has CREATEROLE (it could grant itself the owner's role)")
	}
	rows, err := q.QueryContext(ctx, `SELECT l.relname, pg_has_role(current_user, l.relowner, 'MEMBER'),
			has_table_privilege(l.oid, 'UPDATE'), has_table_privilege(l.oid, 'DELETE'),
			has_table_privilege(l.oid, 'TRUNCATE'), has_table_privilege(l.oid, 'TRIGGER'),
			coalesce(array_to_string(l.not_always, ','), '')
		FROM (`+logTablesSQL+`) l`)
	if err != nil {
		return fmt.Errorf("postgres: check the database role: %w", err)
	}
	defer rows.Close()
	tables := 0
	var owned, writable, notAlways []string
	for rows.Next() {
		var name, na string
		var member, upd, del, trunc, trig bool
		if err := rows.Scan(&name, &member, &upd, &del, &trunc, &trig, &na); err != nil {
			return fmt.Errorf("postgres: check the database role: %w", err)
		}
		tables++
		if member && !super {
			owned = append(owned, name)
		}
		if (upd || del || trunc || trig) && !super && !member {
			writable = append(writable, name)
		}
		if na != "" {
			notAlways = append(notAlways, name+" ("+na+")")
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: check the database role: %w", err)
	}
	if tables == 0 {
		return fmt.Errorf("postgres: the database has no append-only table: run `ledger migrate`: %w", domain.ErrInvalid)
	}
	if len(owned) > 0 {
		perr.Reasons = append(perr.Reasons, "it owns (or is a member of the owner of) "+strings.Join(owned, ", ")+" (it can ALTER, DROP or disable their triggers)")
	}
	var fnOwner bool
	if err := q.QueryRowContext(ctx, `SELECT coalesce(bool_or(pg_has_role(current_user, p.proowner, 'MEMBER')), false)
		FROM pg_proc p WHERE p.proname = 'ledger_reject_change' AND p.pronamespace = current_schema()::regnamespace`).Scan(&fnOwner); err != nil {
		return fmt.Errorf("postgres: check the database role: %w", err)
	}
	if fnOwner && !super && len(owned) == 0 {
		perr.Reasons = append(perr.Reasons, "it owns ledger_reject_change() (it can replace it)")
	}
	if len(writable) > 0 {
		perr.Reasons = append(perr.Reasons, "it may UPDATE, DELETE, TRUNCATE or add triggers to "+strings.Join(writable, ", "))
	}
	if len(notAlways) > 0 {
		perr.Reasons = append(perr.Reasons, "these append-only triggers are not ENABLE ALWAYS: "+strings.Join(notAlways, ", "))
	}
	if len(perr.Reasons) > 0 {
		return perr
	}
	return nil
}

// IsPrivilegeError reports whether err is (or wraps) a *PrivilegeError.
func IsPrivilegeError(err error) bool {
	var p *PrivilegeError
	return errors.As(err, &p)
}

// WithUser returns the postgres:// URL dsn with its user replaced by user
// and no password: how `--dev` reaches the runtime role on a local
// cluster that trusts it.
func WithUser(dsn, user string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "", errors.New("postgres: want a postgres:// URL")
	}
	u.User = url.User(user)
	return u.String(), nil
}

// UserOf is the user a postgres:// URL names ("" when none).
func UserOf(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return ""
	}
	return u.User.Username()
}
