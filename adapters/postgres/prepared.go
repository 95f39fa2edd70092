package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
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
type statements struct {
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
func (s *statements) prepare(ctx context.Context, db *sql.DB, queries []string) error {
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
func (s *statements) on(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
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

func (s *statements) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.on(ctx, tx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

func (s *statements) query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := s.on(ctx, tx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

func (s *statements) queryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := s.on(ctx, tx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// txKey carries the transaction Append publishes on.
type txKey struct{}

var errNoTransaction = errors.New("postgres: events are only published on a transaction given to Append")

// txExecutor is the executor of the event store's one watermill-sql
// publisher. It runs the publisher's INSERT on the transaction that Append
// put in the messages' context (the publisher executes with the first
// message's context), so a single publisher serves every transaction and the
// events still commit or roll back with the caller's work.
type txExecutor struct {
	stmts *statements
}

func (e txExecutor) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	if !ok {
		return nil, errNoTransaction
	}
	if ep, ok := ctx.Value(epilogueKey{}).(*epilogue); ok && !ep.done {
		// Once: watermill-sql v4 runs one INSERT per Publish, but should
		// a version split it, the rows would still be written once.
		ep.done = true
		err := e.stmts.queryRow(ctx, tx, ep.sql(query, len(args)), append(args, ep.args...)...).Scan(ep.dest...)
		if err != nil {
			return nil, err
		}
		return oneRow{}, nil
	}
	return e.stmts.exec(ctx, tx, query, args...)
}

// epilogueKey carries an epilogue from the Ledger to txExecutor.
type epilogueKey struct{}

// epilogue is what the Ledger writes together with an append, in the same
// statement: sql wraps the events' INSERT (with its n parameters) into a
// statement that returns one row, scanned into dest; args follow the
// INSERT's parameters. It saves the round trip of a statement of its own.
type epilogue struct {
	sql  func(insert string, n int) string
	args []any
	dest []any
	done bool
}

type oneRow struct{}

func (oneRow) RowsAffected() (int64, error) { return 1, nil }

func (e txExecutor) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	if !ok {
		return nil, errNoTransaction
	}
	return e.stmts.query(ctx, tx, query, args...)
}
