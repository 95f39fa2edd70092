package eventstore_test

import (
	"cmp"
	"database/sql"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// TestGroupReadFromEveryOffset: a consumer group's read returns the next
// events after its offset in (transaction_id, position) order, whatever
// the offset: the start, inside a transaction whose positions interleave
// with a later transaction's, at a transaction's last event, the end. The
// expectation is computed here from every event's two numbers; the read is
// the subscribers' statement (ReadGroup runs the subscriber's SelectQuery).
// Its plan starts the index scan at the offset and sorts nothing, so that
// a poll costs a batch, not the subscriber's lag.
func TestGroupReadFromEveryOffset(t *testing.T) {
	ctx := t.Context()
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})

	// A bulk of 1,050 events in one transaction, so that the planner has
	// a table worth an index.
	pgtest.FillLog(t, db, 0, 300)
	// Transaction a takes positions, b takes later ones and commits, a
	// takes more and commits: a's id is lower, so a's events, early and
	// late positions, all come before b's.
	txA, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback()
	events := func(n int) []eventstore.NewEvent {
		out := make([]eventstore.NewEvent, n)
		for i := range out {
			out[i] = pgtest.NewEvent("Step", map[string]any{"i": i})
		}
		return out
	}
	if _, err := store.Append(ctx, txA, 9001, 0, nil, events(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.AppendTx(ctx, db, store, 9002, events(4)...); err != nil {
		t.Fatal(err)
	}
	first, err := store.LoadStream(ctx, txA, 9001)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, txA, 9001, 3, first[2].Hash, events(2)); err != nil {
		t.Fatal(err)
	}
	if err := txA.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `ANALYZE ledger_events`); err != nil {
		t.Fatal(err)
	}

	type cut struct {
		tx  uint64
		pos int64
	}
	var log []cut
	rows, err := db.QueryContext(ctx, `SELECT transaction_id::text::bigint, position FROM ledger_events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c cut
		if err := rows.Scan(&c.tx, &c.pos); err != nil {
			t.Fatal(err)
		}
		log = append(log, c)
	}
	rows.Close()
	slices.SortFunc(log, func(a, b cut) int { return cmp.Or(cmp.Compare(a.tx, b.tx), cmp.Compare(a.pos, b.pos)) })
	n := len(log)
	// The interleaving happened: some event of a later transaction has a
	// lower position than one of an earlier transaction.
	interleaved := -1
	for i := 1; i < n; i++ {
		if log[i].pos < log[i-1].pos {
			interleaved = i - 1
		}
	}
	if interleaved < 0 {
		t.Fatal("the transactions' positions did not interleave")
	}

	// Give other tests' transactions on the server time to end, so that
	// the xmin bound of the read lets every event of this log through
	// (the checks below hold either way).
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if x := serverXmin(t, db); x > log[n-1].tx && x > log[interleaved].tx {
			break
		}
	}

	if err := eventstore.JoinGroup(ctx, db, "g"); err != nil {
		t.Fatal(err)
	}
	const limit = 100
	offsets := map[string]int{ // index into log of the last event acknowledged; -1: none
		"start":                       -1,
		"inside the bulk":             499,
		"last of the bulk":            1049,
		"inside the interleaved one":  interleaved - 1,
		"at its out-of-order event":   interleaved,
		"first of the last committed": n - 4,
		"end":                         n - 1,
	}
	for name, at := range offsets {
		t.Run(name, func(t *testing.T) {
			if at >= 0 {
				if _, err := db.ExecContext(ctx, `UPDATE ledger_events_offsets SET offset_acked = $2, last_processed_transaction_id = $3::text::xid8
					WHERE consumer_group = $1`, "g", log[at].pos, log[at].tx); err != nil {
					t.Fatal(err)
				}
			} else if _, err := db.ExecContext(ctx, `UPDATE ledger_events_offsets SET offset_acked = 0, last_processed_transaction_id = '0' WHERE consumer_group = $1`, "g"); err != nil {
				t.Fatal(err)
			}
			got, xmin := readSettled(t, db, "g", limit)
			// The read stops at the oldest transaction still running on
			// the server (other tests' too): the subscribers' rule.
			var want []cut
			for _, c := range log[at+1:] {
				if c.tx < xmin && len(want) < limit {
					want = append(want, c)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("read %d events, want %d", len(got), len(want))
			}
			for i, e := range got {
				if e.TransactionID != want[i].tx || e.Position != want[i].pos {
					t.Fatalf("event %d: (%d, %d), want (%d, %d)", i, e.TransactionID, e.Position, want[i].tx, want[i].pos)
				}
			}
		})
	}

	t.Run("plan", func(t *testing.T) {
		q, args, err := eventstore.GroupQuery("g", limit)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pgtest.Explain(ctx, db, q, args...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(plan, "Index Scan using ledger_events_transaction_position_idx") ||
			!strings.Contains(plan, `Index Cond: ((ROW(transaction_id, "position") > ROW(`) || strings.Contains(plan, "Sort") {
			t.Errorf("the group's read does not start the index scan at its offset:\n%s", plan)
		}
	})
}

// serverXmin is the xmin of a snapshot taken now: the oldest transaction
// still running on the server.
func serverXmin(t *testing.T, db *sql.DB) uint64 {
	t.Helper()
	var x uint64
	if err := db.QueryRowContext(t.Context(), `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&x); err != nil {
		t.Fatal(err)
	}
	return x
}

// readSettled reads group with ReadGroup and returns the xmin bound its
// snapshot had: the read is taken between two equal readings of the
// server's xmin (retried until it is).
func readSettled(t *testing.T, db *sql.DB, group string, limit int) ([]eventstore.StoredEvent, uint64) {
	t.Helper()
	for range 100 {
		before := serverXmin(t, db)
		tx, err := db.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := eventstore.ReadGroup(t.Context(), tx, group, limit)
		tx.Rollback()
		if err != nil {
			t.Fatal(err)
		}
		if serverXmin(t, db) == before {
			return got, before
		}
	}
	t.Fatal("the server's xmin moved during every one of 100 reads")
	return nil, 0
}
