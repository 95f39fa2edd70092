package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/domain"
)

// maxAttempts bounds Transact's retries of serialization failures and
// deadlocks; past it the last error is returned.
const maxAttempts = 5

// Transact runs fn in a transaction and commits it when fn returns nil.
//
// It rolls back when fn returns an error or panics (the panic is re-raised
// after the rollback), returns the commit's own error, and runs fn again, a
// bounded number of times with a short jittered pause, when PostgreSQL
// reports a serialization failure (40001) or a deadlock (40P01): fn must
// therefore be safe to repeat, which holds for anything that only touches the
// transaction.
func Transact(ctx context.Context, db *sql.DB, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return TransactOpts(ctx, db, nil, fn)
}

// TransactOpts is Transact with explicit transaction options (isolation
// level, read-only).
func TransactOpts(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(ctx context.Context, tx *sql.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = transactOnce(ctx, db, opts, fn)
		if err == nil || !IsRetryable(err) || attempt == maxAttempts {
			return err
		}
		pause := time.Duration(attempt*attempt)*5*time.Millisecond + time.Duration(rand.Int64N(int64(5*time.Millisecond)))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// TransactOnce is Transact without its retries, for callers whose retry loop
// sits above (domain/app re-runs the whole decision, so that one delivery
// never nests two loops): a serialization failure or a deadlock is returned
// wrapping domain.ErrConcurrency, the error of a lost race.
func TransactOnce(ctx context.Context, db *sql.DB, fn func(ctx context.Context, tx *sql.Tx) error) error {
	err := transactOnce(ctx, db, nil, fn)
	if IsRetryable(err) {
		return fmt.Errorf("postgres: %w: %w", domain.ErrConcurrency, err)
	}
	return err
}

func transactOnce(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(ctx context.Context, tx *sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(ctx, tx); err != nil {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) && !errors.Is(rbErr, sql.ErrConnDone) {
			return errors.Join(err, fmt.Errorf("postgres: rollback: %w", rbErr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// IsRetryable reports whether err is a serialization failure or a deadlock,
// after which the whole transaction may simply be run again.
func IsRetryable(err error) bool {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return pqErr.Code == "40001" || pqErr.Code == "40P01"
	}
	return false
}

// constraintViolated reports whether err is a unique or exclusion violation
// of the named constraint.
func ConstraintViolated(err error, constraint string) bool {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return (pqErr.Code == "23505" || pqErr.Code == "23P01") && pqErr.Constraint == constraint
	}
	return false
}

// Querier is what reads need: a *sql.DB, *sql.Tx or *sql.Conn.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}
