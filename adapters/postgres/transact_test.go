package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

func TestTransact(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	if _, err := db.Exec(`CREATE TABLE t (v INT NOT NULL, CONSTRAINT t_v_deferred UNIQUE (v) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		db.QueryRow(`SELECT count(*) FROM t`).Scan(&n)
		return n
	}
	insert := func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (1)`)
		return err
	}

	t.Run("commit", func(t *testing.T) {
		if err := postgres.Transact(ctx, db, insert); err != nil {
			t.Fatal(err)
		}
		if count() != 1 {
			t.Fatal("not committed")
		}
	})

	t.Run("rollback on error", func(t *testing.T) {
		boom := errors.New("boom")
		err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			tx.ExecContext(ctx, `INSERT INTO t VALUES (2)`)
			return boom
		})
		if !errors.Is(err, boom) || count() != 1 {
			t.Fatalf("err %v, %d rows", err, count())
		}
	})

	t.Run("rollback on panic", func(t *testing.T) {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("panic swallowed")
				}
			}()
			postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				tx.ExecContext(ctx, `INSERT INTO t VALUES (3)`)
				panic("bug")
			})
		}()
		if count() != 1 {
			t.Fatalf("%d rows after panic", count())
		}
	})

	t.Run("commit error is returned", func(t *testing.T) {
		// The deferred unique constraint is checked only at commit.
		err := postgres.Transact(ctx, db, insert)
		var pqErr *pq.Error
		if !errors.As(err, &pqErr) || pqErr.Code != "23505" {
			t.Fatalf("err = %v, want the commit's unique violation", err)
		}
		if count() != 1 {
			t.Fatalf("%d rows", count())
		}
	})

	t.Run("serialization failure is retried", func(t *testing.T) {
		var calls atomic.Int32
		err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			if calls.Add(1) < 3 {
				return &pq.Error{Code: "40001", Message: "could not serialize access"}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (4)`)
			return err
		})
		if err != nil || calls.Load() != 3 || count() != 2 {
			t.Fatalf("err %v after %d calls, %d rows", err, calls.Load(), count())
		}
	})

	t.Run("deadlock retried, bounded", func(t *testing.T) {
		var calls atomic.Int32
		err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			calls.Add(1)
			return &pq.Error{Code: "40P01", Message: "deadlock detected"}
		})
		if !postgres.IsRetryable(err) || calls.Load() != 5 {
			t.Fatalf("err %v after %d calls", err, calls.Load())
		}
	})

	t.Run("other errors are not retried", func(t *testing.T) {
		var calls atomic.Int32
		postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			calls.Add(1)
			return errors.New("no")
		})
		if calls.Load() != 1 {
			t.Fatalf("%d calls", calls.Load())
		}
	})
}

func TestMigrateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t) // already migrated once
	applied, err := postgres.Migrate(ctx, db, nil)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second migrate applied %v, err %v", applied, err)
	}
	pending, err := postgres.MigrationsPending(ctx, db)
	if err != nil || pending {
		t.Fatalf("pending %v, err %v", pending, err)
	}
}
