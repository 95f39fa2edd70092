package pgtest

import (
	"context"
	"strings"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

// Explain returns PostgreSQL's plan of `EXPLAIN stmt`, a line each, for
// tests that check how a statement reads (by which index, without a sort
// or a scan of a whole table): what makes its cost independent of the
// size of the tables.
func Explain(ctx context.Context, q postgres.Querier, stmt string, args ...any) (string, error) {
	rows, err := q.QueryContext(ctx, `EXPLAIN `+stmt, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return "", err
		}
		plan.WriteString(line + "\n")
	}
	return plan.String(), rows.Err()
}
