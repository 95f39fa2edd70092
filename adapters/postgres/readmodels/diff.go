package readmodels

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

// diffTables compares live and shadow, which share key and value columns,
// in q's snapshot, and calls emit for every value that differs (values
// compared as text), ordered by key. Rows present on one side only yield
// one entry per value column, with the absent side nil.
func diffTables(ctx context.Context, q postgres.Querier, live, shadow string, keys, values []string, emit func(DiffEntry) error) (DiffSummary, error) {
	var sel []string
	for _, k := range keys {
		k = pq.QuoteIdentifier(k)
		sel = append(sel, `COALESCE(l.`+k+`, s.`+k+`)::text`)
	}
	sel = append(sel, `l.`+pq.QuoteIdentifier(keys[0])+` IS NULL`, `s.`+pq.QuoteIdentifier(keys[0])+` IS NULL`)
	var differs []string
	for _, v := range values {
		v = pq.QuoteIdentifier(v)
		sel = append(sel, `l.`+v+`::text`, `s.`+v+`::text`)
		differs = append(differs, `l.`+v+` IS DISTINCT FROM s.`+v)
	}
	var on, order []string
	for _, k := range keys {
		k = pq.QuoteIdentifier(k)
		on = append(on, `l.`+k+` = s.`+k)
		order = append(order, `COALESCE(l.`+k+`, s.`+k+`)`)
	}
	query := `SELECT ` + strings.Join(sel, ", ") +
		` FROM ` + pq.QuoteIdentifier(live) + ` l FULL OUTER JOIN ` + pq.QuoteIdentifier(shadow) + ` s ON ` + strings.Join(on, " AND ") +
		` WHERE l.` + pq.QuoteIdentifier(keys[0]) + ` IS NULL OR s.` + pq.QuoteIdentifier(keys[0]) + ` IS NULL OR ` + strings.Join(differs, " OR ") +
		` ORDER BY ` + strings.Join(order, ", ")
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return DiffSummary{}, fmt.Errorf("postgres: diff %s: %w", live, err)
	}
	defer rows.Close()
	var sum DiffSummary
	key := make([]sql.NullString, len(keys))
	vals := make([]sql.NullString, 2*len(values))
	var added, removed bool
	dest := make([]any, 0, len(key)+2+len(vals))
	for i := range key {
		dest = append(dest, &key[i])
	}
	dest = append(dest, &added, &removed)
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return sum, fmt.Errorf("postgres: diff %s: %w", live, err)
		}
		sum.Rows++
		if added {
			sum.Added++
		}
		if removed {
			sum.Removed++
		}
		k := make([]string, len(key))
		for i, v := range key {
			k[i] = v.String
		}
		for i, col := range values {
			old, new := vals[2*i], vals[2*i+1]
			if !added && !removed && old == new {
				continue
			}
			e := DiffEntry{Table: live, Key: k, Column: col}
			if !added {
				e.Old = &old.String
				if !old.Valid {
					e.Old = ptr("NULL")
				}
			}
			if !removed {
				e.New = &new.String
				if !new.Valid {
					e.New = ptr("NULL")
				}
			}
			sum.Values++
			if err := emit(e); err != nil {
				return sum, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return sum, fmt.Errorf("postgres: diff %s: %w", live, err)
	}
	return sum, nil
}

func ptr[T any](v T) *T { return &v }
