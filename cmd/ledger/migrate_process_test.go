package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/migrations"
)

// migrationLockKey is goose's session lock in adapters/postgres/migrate.go
// ("ledger" in ASCII).
const migrationLockKey = 0x6c6564676572

type migrateRun struct {
	code           int
	stdout, stderr string
}

// startMigrate starts `ledger migrate` on dbURL; wait for it with the
// returned function. exited is closed when it has ended.
func startMigrate(t *testing.T, dbURL string) (wait func() migrateRun, exited <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(ledgerBinary(t), "migrate")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "LEDGER_RUNTIME_ROLE="+pgtest.RuntimeRole(t))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	return func() migrateRun {
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Fatalf("ledger migrate still running after 2 minutes: %s", stderr.String())
		}
		return migrateRun{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
	}, done
}

// TestTwoMigrateProcessesAtOnce: two `ledger migrate` processes start on
// the same database at the same moment. For an existing empty database the
// test holds the migration lock until both processes are waiting for it,
// so that they really overlap; for a missing one both race to create it.
// Both exit 0, between them every migration is applied exactly once, and
// the schema is complete.
func TestTwoMigrateProcessesAtOnce(t *testing.T) {
	for _, missing := range []bool{false, true} {
		name := "empty database"
		if missing {
			name = "missing database"
		}
		t.Run(name, func(t *testing.T) {
			dbURL := pgtest.NewEmptyURL(t)
			u, err := url.Parse(dbURL)
			if err != nil {
				t.Fatal(err)
			}
			dbName := strings.TrimPrefix(u.Path, "/")
			ctx := context.Background()
			server := *u
			server.Path = "/postgres"
			admin := sdOpen(t, server.String())
			var held *sql.Conn
			if missing {
				if _, err := admin.Exec(`DROP DATABASE "` + dbName + `"`); err != nil {
					t.Fatal(err)
				}
			} else {
				own := sdOpen(t, dbURL)
				if held, err = own.Conn(ctx); err != nil {
					t.Fatal(err)
				}
				defer held.Close()
				if _, err := held.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
					t.Fatal(err)
				}
			}

			wait1, exited1 := startMigrate(t, dbURL)
			wait2, exited2 := startMigrate(t, dbURL)
			waits := []func() migrateRun{wait1, wait2}
			if held != nil {
				// Both processes poll for the lock (goose's session locker
				// tries it every 5 s): wait until both have tried once. One
				// that ends first did not wait for the lock at all.
			barrier:
				for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
					select {
					case <-exited1:
						t.Error("a migrate process ended while the test held the migration lock")
						break barrier
					case <-exited2:
						t.Error("a migrate process ended while the test held the migration lock")
						break barrier
					default:
					}
					var n int
					if err := admin.QueryRow(`SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE datname = $1
						AND application_name <> 'sdtest' AND query LIKE 'SELECT pg_try_advisory_lock%'`, dbName).Scan(&n); err != nil {
						t.Fatal(err)
					}
					if n == 2 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%d migrate processes waiting for the lock after a minute, want 2", n)
					}
				}
				if _, err := held.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); err != nil {
					t.Fatal(err)
				}
			}
			var outputs []string
			for i, wait := range waits {
				r := wait()
				if r.code != 0 {
					t.Errorf("migrate process %d exited %d: %s%s", i, r.code, r.stdout, r.stderr)
				}
				outputs = append(outputs, strings.TrimSpace(r.stdout))
			}
			// One of them applied everything, the other nothing.
			slices.Sort(outputs)
			versions := migrationVersions(t)
			want := []string{"applied 0 migration(s) []", fmt.Sprintf("applied %d migration(s) %v", len(versions), versions)}
			if !reflect.DeepEqual(outputs, want) {
				t.Errorf("outputs %q, want %q (in some order)", outputs, want)
			}

			db := sdOpen(t, dbURL)
			applied := queryStrings(t, db, `SELECT version_id::text FROM goose_db_version WHERE version_id > 0 AND is_applied ORDER BY id`)
			if fmt.Sprint(applied) != fmt.Sprint(versions) {
				t.Errorf("goose_db_version lists %v, want each of %v once", applied, versions)
			}
			tables := queryStrings(t, db, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'
				AND table_name IN ('ledger_events', 'stripe_inbox', 'stripe_deliveries', 'bookings', 'projection_state',
					'projection_dead_letters', 'ledger_chain', 'audit_access_log', 'refund_failures', 'monitoring_revenue_by_currency')
				ORDER BY 1`)
			if len(tables) != 10 {
				t.Errorf("schema has %v, want all 10 tables", tables)
			}
			// A third run finds nothing to do.
			third, _ := startMigrate(t, dbURL)
			if r := third(); r.code != 0 || strings.TrimSpace(r.stdout) != "applied 0 migration(s) []" {
				t.Errorf("third migrate: exit %d, %q %s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// migrationVersions are the versions of the migrations the binary carries
// (migrations/NNNNN_*.sql), in order, so that a new migration needs no
// edit here.
func migrationVersions(t *testing.T) []int {
	t.Helper()
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for _, name := range names {
		prefix, _, _ := strings.Cut(name, "_")
		v, err := strconv.Atoi(prefix)
		if err != nil {
			t.Fatalf("migration %s: no version number", name)
		}
		versions = append(versions, v)
	}
	slices.Sort(versions)
	if len(versions) < 6 {
		t.Fatalf("migrations %v: the embedded files are missing", names)
	}
	return versions
}

func queryStrings(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
