package readmodels

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/lib/pq"
	"golang.org/x/sync/errgroup"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

// shadowSuffix names a shadow table and each of its indexes and
// constraints: the live name plus the suffix. A shadow left behind by a crash
// is dropped by the next rebuild, with everything it owns.
const shadowSuffix = "_shadow"

func shadowName(live string) string { return live + shadowSuffix }

// createShadow drops any leftover shadow of live and creates an empty one
// with live's columns, defaults and CHECK constraints but no index, so that
// the bulk load does not maintain indexes row by row (buildShadowIndexes adds
// them afterwards, but for an exclusion constraint, which is built row by row
// anyway and may be added before the bulk load). Grants on live are repeated on the shadow, so that the
// swapped-in table keeps them.
//
// It refuses a live table that has user triggers, because the swap would
// silently lose them.
func createShadow(ctx context.Context, db *sql.DB, live string) error {
	shadow := shadowName(live)
	var triggers int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, live).Scan(&triggers); err != nil {
		return fmt.Errorf("postgres: shadow of %s: %w", live, err)
	}
	if triggers > 0 {
		return fmt.Errorf("postgres: %s has %d trigger(s), which a rebuild would not carry over", live, triggers)
	}
	grants, err := tableGrants(ctx, db, live)
	if err != nil {
		return err
	}
	stmts := []string{
		`DROP TABLE IF EXISTS ` + pq.QuoteIdentifier(shadow),
		`CREATE TABLE ` + pq.QuoteIdentifier(shadow) + ` (LIKE ` + pq.QuoteIdentifier(live) + ` INCLUDING ALL EXCLUDING INDEXES)`,
	}
	for _, g := range grants {
		stmts = append(stmts, `GRANT `+g[0]+` ON `+pq.QuoteIdentifier(shadow)+` TO `+g[1])
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("postgres: shadow of %s: %w", live, err)
		}
	}
	return nil
}

// tableGrants returns the privileges granted on table to roles other than
// its owner, as (privilege, grantee) pairs ready for a GRANT statement.
func tableGrants(ctx context.Context, q postgres.Querier, table string) ([][2]string, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
		FROM pg_class c, aclexplode(c.relacl) a
		WHERE c.oid = $1::regclass AND a.grantee <> c.relowner`, table)
	if err != nil {
		return nil, fmt.Errorf("postgres: grants on %s: %w", table, err)
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var g [2]string
		if err := rows.Scan(&g[0], &g[1]); err != nil {
			return nil, fmt.Errorf("postgres: grants on %s: %w", table, err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

var indexDefRE = regexp.MustCompile(`^CREATE (UNIQUE )?INDEX \S+ ON \S+ (USING .*)$`)

// Which indexes and constraints of the live table buildShadowIndexes
// gives the shadow.
type indexSet int

const (
	// primaryKey alone: cheap, and all the catch-ups need.
	primaryKey indexSet = iota
	// exclusionConstraints: the expensive ones (a GiST build and a probe
	// per row), added to the empty shadow before the bulk phase when the
	// rebuild will replace the table, so that the COPYs build them while
	// the log is read and folded.
	exclusionConstraints
	// allIndexes: every one the shadow does not have yet.
	allIndexes
)

// buildShadowIndexes gives the shadow of live the indexes and
// index-backed or foreign-key constraints of set that live has and the
// shadow has not, under the live name plus shadowSuffix, then (but for
// exclusionConstraints) analyzes it so that the planner knows it.
//
// Constraints are added one after the other (ALTER TABLE locks the table
// against the others); then the plain indexes are built and the table
// analyzed together, on up to parallel connections (CREATE INDEX and
// ANALYZE take locks that do not conflict). Each statement runs with
// maintenance_work_mem set to workMem (e.g. "128MB"; "" leaves the
// server's), so that the sorts of large tables stay in memory.
func buildShadowIndexes(ctx context.Context, db *sql.DB, live string, set indexSet, parallel int, workMem string) error {
	shadow := shadowName(live)
	rows, err := db.QueryContext(ctx, `
		SELECT c.conname, pg_get_constraintdef(c.oid), c.contype::text
		FROM pg_constraint c
		WHERE c.conrelid = $1::regclass AND c.contype IN ('p', 'u', 'x', 'f')
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint s WHERE s.conrelid = $2::regclass AND s.conname = c.conname || $3)
		UNION ALL
		SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), ''
		FROM pg_index i
		WHERE i.indrelid = $1::regclass
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
		  AND NOT EXISTS (SELECT 1 FROM pg_index s WHERE s.indrelid = $2::regclass AND s.indexrelid::regclass::text = i.indexrelid::regclass::text || $3)
		ORDER BY 3 DESC, 1`, live, shadow, shadowSuffix)
	if err != nil {
		return fmt.Errorf("postgres: indexes of %s: %w", live, err)
	}
	var constraints, indexes []string
	for rows.Next() {
		var name, def, kind string
		if err := rows.Scan(&name, &def, &kind); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: indexes of %s: %w", live, err)
		}
		switch {
		case set == primaryKey && kind != "p", set == exclusionConstraints && kind != "x":
			continue
		}
		if len(name)+len(shadowSuffix) > 63 {
			rows.Close()
			return fmt.Errorf("postgres: %s: name too long for a shadow copy", name)
		}
		newName := pq.QuoteIdentifier(name + shadowSuffix)
		if kind != "" {
			constraints = append(constraints, `ALTER TABLE `+pq.QuoteIdentifier(shadow)+` ADD CONSTRAINT `+newName+` `+def)
			continue
		}
		m := indexDefRE.FindStringSubmatch(def)
		if m == nil {
			rows.Close()
			return fmt.Errorf("postgres: cannot copy index %s: %s", name, def)
		}
		indexes = append(indexes, `CREATE `+m[1]+`INDEX `+newName+` ON `+pq.QuoteIdentifier(shadow)+` `+m[2])
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: indexes of %s: %w", live, err)
	}
	if set != exclusionConstraints {
		indexes = append(indexes, `ANALYZE `+pq.QuoteIdentifier(shadow))
	}
	run := func(ctx context.Context, stmt string) error {
		err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			if workMem != "" {
				if _, err := tx.ExecContext(ctx, `SELECT set_config('maintenance_work_mem', $1, true)`, workMem); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, stmt)
			return err
		})
		if err := violation(live, err); err != nil {
			return err
		}
		if err != nil {
			return fmt.Errorf("postgres: %s: %w", stmt, err)
		}
		return nil
	}
	for _, s := range constraints {
		if err := run(ctx, s); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(parallel, 1))
	for _, s := range indexes {
		g.Go(func() error { return run(gctx, s) })
	}
	return g.Wait()
}

// violation returns, for an exclusion violation (23P01), an error naming
// the constraint and the rows the rebuilt table of live breaks it with;
// nil for any other error.
func violation(live string, err error) error {
	if pqErr := (*pq.Error)(nil); errors.As(err, &pqErr) && pqErr.Code == "23P01" {
		return fmt.Errorf("postgres: the rebuilt %s violates %s (%s): %w", live, pqErr.Constraint, pqErr.Detail, err)
	}
	return nil
}

// swapShadow replaces live by its shadow on tx: it drops live and gives the
// shadow, its indexes and its constraints the live names, so that every
// name is the one the migrations gave. The caller holds an ACCESS EXCLUSIVE
// lock on live. Dropping live fails, leaving everything as it was, when
// another object (a view, a foreign key) depends on it.
func swapShadow(ctx context.Context, tx *sql.Tx, live string) error {
	shadow := shadowName(live)
	rows, err := tx.QueryContext(ctx, `
		SELECT c.conname, true FROM pg_constraint c
		WHERE c.conrelid = $1::regclass AND c.contype IN ('p', 'u', 'x', 'f') AND right(c.conname, $2) = $3
		UNION ALL
		SELECT i.indexrelid::regclass::text, false FROM pg_index i
		WHERE i.indrelid = $1::regclass AND right(i.indexrelid::regclass::text, $2) = $3
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)`,
		shadow, len(shadowSuffix), shadowSuffix)
	if err != nil {
		return fmt.Errorf("postgres: swap %s: %w", live, err)
	}
	var renames []string
	for rows.Next() {
		var name string
		var constraint bool
		if err := rows.Scan(&name, &constraint); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: swap %s: %w", live, err)
		}
		to := pq.QuoteIdentifier(strings.TrimSuffix(name, shadowSuffix))
		if constraint {
			renames = append(renames, `ALTER TABLE `+pq.QuoteIdentifier(live)+` RENAME CONSTRAINT `+pq.QuoteIdentifier(name)+` TO `+to)
		} else {
			renames = append(renames, `ALTER INDEX `+pq.QuoteIdentifier(name)+` RENAME TO `+to)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: swap %s: %w", live, err)
	}
	stmts := append([]string{
		`DROP TABLE ` + pq.QuoteIdentifier(live),
		`ALTER TABLE ` + pq.QuoteIdentifier(shadow) + ` RENAME TO ` + pq.QuoteIdentifier(live),
	}, renames...)
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("postgres: swap %s: %s: %w", live, s, err)
		}
	}
	return nil
}

// dropShadow removes a shadow table (after a diff, a failure or a
// cancellation); it is a no-op when there is none.
func dropShadow(ctx context.Context, db *sql.DB, live string) error {
	if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS `+pq.QuoteIdentifier(shadowName(live))); err != nil {
		return fmt.Errorf("postgres: drop shadow of %s: %w", live, err)
	}
	return nil
}
