package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// statements holds the hot statements of the ingest path, prepared once
// per pool. With lib/pq a one-off parameterized query takes two round trips
// (Parse and Describe, then Bind and Execute); a prepared statement takes
// one, and the server skips parsing and planning it again. Queries that are
// not prepared run as one-off queries, so the cache only changes speed.
//
// Statements are prepared outside any transaction, by prepare: database/sql
// prepares a pool-level statement on a free connection, and a transaction
// waiting for one could wait forever on a busy pool. Within a transaction,
// tx.StmtContext uses the statement already prepared on the transaction's
// connection, or prepares it there the first time.
type Statements struct {
	// prepared is read without locking by transactions in flight, so that
	// none of them ever waits for prepare, which waits for a connection.
	prepared atomic.Pointer[map[string]*sql.Stmt]

	mu        sync.Mutex // serializes prepare
	lastTry   time.Time
	lastError error
}

// retryPrepareAfter is how long a failed prepare is not tried again.
const retryPrepareAfter = time.Second

// prepare prepares queries on db, once. A failure (the database is down) is
// remembered for a second and returned; until it succeeds every query runs
// unprepared.
func (s *Statements) Prepare(ctx context.Context, db *sql.DB, queries []string) error {
	if s.prepared.Load() != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prepared.Load() != nil {
		return nil
	}
	if time.Since(s.lastTry) < retryPrepareAfter {
		return s.lastError
	}
	s.lastTry = time.Now()
	m := make(map[string]*sql.Stmt, len(queries))
	for _, q := range queries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			for _, st := range m {
				st.Close()
			}
			s.lastError = fmt.Errorf("postgres: prepare: %w", err)
			return s.lastError
		}
		m[q] = st
	}
	s.prepared.Store(&m)
	return nil
}

// on returns query's prepared statement bound to tx, nil when it is not
// prepared.
func (s *Statements) on(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	if s == nil {
		return nil
	}
	m := s.prepared.Load()
	if m == nil {
		return nil
	}
	st, ok := (*m)[query]
	if !ok {
		return nil
	}
	return tx.StmtContext(ctx, st)
}

func (s *Statements) Exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.on(ctx, tx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

func (s *Statements) Query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := s.on(ctx, tx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

func (s *Statements) QueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := s.on(ctx, tx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// QueryDB runs query on db, outside any transaction: on its prepared
// statement when it is prepared (on any connection of the pool; database/sql
// prepares it again on a connection that lacks it), as a one-off query
// otherwise.
func (s *Statements) QueryDB(ctx context.Context, db *sql.DB, query string, args ...any) (*sql.Rows, error) {
	if s != nil {
		if m := s.prepared.Load(); m != nil {
			if st, ok := (*m)[query]; ok {
				return st.QueryContext(ctx, args...)
			}
		}
	}
	return db.QueryContext(ctx, query, args...)
}

// On is tx running the statements prepared in s as such (one round trip,
// planned once per connection) and any other statement as a one-off query:
// for code written against a Querier, such as the chain sealer's.
func (s *Statements) On(tx *sql.Tx) PreparedTx { return PreparedTx{tx: tx, stmts: s} }

// PreparedTx is a transaction whose statements go through Statements.
type PreparedTx struct {
	tx    *sql.Tx
	stmts *Statements
}

func (p PreparedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return p.stmts.Query(ctx, p.tx, query, args...)
}

func (p PreparedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.stmts.QueryRow(ctx, p.tx, query, args...)
}

func (p PreparedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return p.stmts.Exec(ctx, p.tx, query, args...)
}
