// Package pgtest gives tests a real PostgreSQL database of their own.
//
// The server is found at TEST_DATABASE_URL, else DATABASE_URL, else
// 127.0.0.1:5432. When none answers, scripts/ensure-postgres.sh starts the
// machine's cluster or a throwaway one from the installed binaries. Each call
// of NewDB or NewURL creates a freshly named database, applies the
// migrations and drops the database when the test ends, so that runs never
// see each other's data. Under CI (CI=true) a missing server fails the test;
// elsewhere the test is skipped.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

var (
	serverOnce sync.Once
	serverURL  *url.URL
	serverErr  error
)

// ServerURL returns the URL of a server that answers, starting one when
// needed; its path names the `postgres` database.
func ServerURL(tb testing.TB) *url.URL {
	tb.Helper()
	serverOnce.Do(func() { serverURL, serverErr = findServer() })
	if serverErr != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("pgtest: no PostgreSQL server: %v", serverErr)
		}
		tb.Skipf("pgtest: no PostgreSQL server: %v", serverErr)
	}
	u := *serverURL
	return &u
}

func findServer() (*url.URL, error) {
	for _, env := range []string{"TEST_DATABASE_URL", "DATABASE_URL"} {
		if v := os.Getenv(env); v != "" {
			u, err := url.Parse(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", env, err)
			}
			u.Path = "/postgres"
			if err := ping(u); err != nil {
				return nil, fmt.Errorf("%s=%s: %w", env, postgres.Redact(v), err)
			}
			return u, nil
		}
	}
	u := mustURL("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	if ping(u) == nil {
		return u, nil
	}
	out, err := exec.Command(filepath.Join(repoRoot(), "scripts", "ensure-postgres.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/ensure-postgres.sh: %w", err)
	}
	u, err = url.Parse(strings.TrimSpace(string(out)) + "/postgres?sslmode=disable")
	if err != nil {
		return nil, err
	}
	return u, ping(u)
}

func ping(u *url.URL) error {
	q := u.Query()
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
	}
	q.Set("connect_timeout", "3")
	u.RawQuery = q.Encode()
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// NewURL creates an empty, migrated database for this test and returns
// its URL. The database is dropped when the test ends.
func NewURL(tb testing.TB) string {
	tb.Helper()
	u := NewEmptyURL(tb)
	db := open(tb, u)
	defer db.Close()
	if _, err := postgres.Migrate(context.Background(), db, nil); err != nil {
		tb.Fatalf("pgtest: migrate: %v", err)
	}
	return u
}

// NewEmptyURL is NewURL without the migrations.
func NewEmptyURL(tb testing.TB) string {
	tb.Helper()
	server := ServerURL(tb)
	name := "ledger_test_" + sanitize(tb.Name()) + "_" + randomSuffix()
	admin := open(tb, server.String())
	defer admin.Close()
	if _, err := admin.Exec(`CREATE DATABASE ` + pq.QuoteIdentifier(name)); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		admin := open(tb, server.String())
		defer admin.Close()
		if _, err := admin.Exec(`DROP DATABASE IF EXISTS ` + pq.QuoteIdentifier(name) + ` WITH (FORCE)`); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u := *server
	u.Path = "/" + name
	return u.String()
}

// NewDB is NewURL opened as a pool, closed when the test ends.
func NewDB(tb testing.TB) *sql.DB {
	tb.Helper()
	db := open(tb, NewURL(tb))
	tb.Cleanup(func() { db.Close() })
	return db
}

func open(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		tb.Fatalf("pgtest: open: %v", err)
	}
	db.SetMaxOpenConns(40)
	return db
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return b.String()
}

func randomSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// repoRoot is the module's top directory, found from this file's path.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}
