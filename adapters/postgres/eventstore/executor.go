package eventstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

// txKey carries the transaction Append publishes on.
type txKey struct{}

var errNoTransaction = errors.New("eventstore: events are only published on a transaction given to Append")

// txExecutor is the executor of the event store's one watermill-sql
// publisher. It runs the publisher's INSERT on the transaction that Append
// put in the messages' context (the publisher executes with the first
// message's context), so a single publisher serves every transaction and the
// events still commit or roll back with the caller's work.
type txExecutor struct {
	stmts *postgres.Statements
}

func (e txExecutor) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	if !ok {
		return nil, errNoTransaction
	}
	if tr, ok := ctx.Value(trailerKey{}).(*Trailer); ok && !tr.done {
		// Once: watermill-sql v4 runs one INSERT per Publish, but should
		// a version split it, the rows would still be written once.
		tr.done = true
		if query != insertQuery || len(args) != InsertColumns {
			return nil, fmt.Errorf("eventstore: a trailer wraps InsertQuery, not %d parameters of %.40q", len(args), query)
		}
		err := e.stmts.QueryRow(ctx, tx, tr.SQL, append(args, tr.Args...)...).Scan(tr.Dest...)
		if err != nil {
			return nil, err
		}
		return oneRow{}, nil
	}
	return e.stmts.Exec(ctx, tx, query, args...)
}

// trailerKey carries an append's Trailer from AppendWith to txExecutor,
// within this package: the publisher executes with the first message's
// context.
type trailerKey struct{}

type oneRow struct{}

func (oneRow) RowsAffected() (int64, error) { return 1, nil }

func (e txExecutor) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	if !ok {
		return nil, errNoTransaction
	}
	return e.stmts.Query(ctx, tx, query, args...)
}
