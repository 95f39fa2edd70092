package audit_test

import (
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// testEvent is newEvent caused by a test, not by a Stripe event (whose raw
// body the verifier would look for in the inbox).
func testEvent(typ string, payload any) eventstore.NewEvent {
	e := pgtest.NewEvent(typ, payload)
	e.CausationID = "test:chain"
	return e
}

// newDBURL is pgtest.NewDB that also gives the URL (Verify connects by
// itself).
func newDBURL(t testing.TB) (*sql.DB, string) {
	t.Helper()
	url := pgtest.NewURL(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(10)
	t.Cleanup(func() { db.Close() })
	return db, url
}

func newSealer(t *testing.T, db *sql.DB, batch int) *audit.Sealer {
	t.Helper()
	s, err := audit.NewSealer(audit.SealerConfig{DB: db, BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type chainRow struct {
	seq, position int64
	txid          string
}

func chainRows(t *testing.T, db *sql.DB) []chainRow {
	t.Helper()
	rows, err := db.Query(`SELECT seq, position, transaction_id::text FROM ledger_chain ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []chainRow
	for rows.Next() {
		var r chainRow
		if err := rows.Scan(&r.seq, &r.position, &r.txid); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// commitOrder lists every event's position in the sealer's order:
// (transaction_id, position).
func commitOrder(t *testing.T, db *sql.DB) []int64 {
	t.Helper()
	rows, err := db.Query(`SELECT position FROM ledger_events ORDER BY transaction_id, position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var p int64
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestSealerChainsEveryEventOnceInCommitOrder: with appends and several
// sealers running at once, every event ends up sealed exactly once, in
// (transaction_id, position) order, with seq 1..N, and the chain verifies.
func TestSealerChainsEveryEventOnceInCommitOrder(t *testing.T) {
	ctx := pgtest.Context(t)
	db, url := newDBURL(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	sealers := []*audit.Sealer{newSealer(t, db, 7), newSealer(t, db, 3), newSealer(t, db, 50)}

	stop := make(chan struct{})
	var sealWG sync.WaitGroup
	for _, s := range sealers {
		sealWG.Add(1)
		go func() {
			defer sealWG.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.SealBatch(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var appendWG sync.WaitGroup
	for w := range 4 {
		appendWG.Add(1)
		go func() {
			defer appendWG.Done()
			for i := range 25 {
				stream := int64(1000*w + i%5)
				if _, err := pgtest.AppendTx(ctx, db, store, stream,
					testEvent("Tested", map[string]any{"w": w, "i": i}), testEvent("Tested", map[string]any{"n": 2})); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	appendWG.Wait()
	close(stop)
	sealWG.Wait()
	if _, err := sealers[0].SealCommitted(ctx); err != nil {
		t.Fatal(err)
	}

	links := chainRows(t, db)
	want := commitOrder(t, db)
	if len(want) != 200 {
		t.Fatalf("%d events, want 200", len(want))
	}
	got := make([]int64, len(links))
	for i, l := range links {
		if l.seq != int64(i+1) {
			t.Fatalf("link %d has seq %d", i, l.seq)
		}
		got[i] = l.position
	}
	if !slices.Equal(got, want) {
		t.Fatalf("chain order %v\nwant %v", got, want)
	}
	report, err := audit.Verify(ctx, url, audit.VerifyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() || report.Sealed != 200 || report.ChainLinks != 200 || report.Unsealed != 0 {
		t.Fatalf("verify: %d events, %d sealed, %d links, %d unsealed, problems %v", report.Events, report.Sealed,
			report.ChainLinks, report.Unsealed, report.Problems[:min(len(report.Problems), 5)])
	}
}

// TestSealerWaitsForEarlierTransactions: an event is not sealed while a
// transaction that started writing before it can still commit; the append
// that follows it is not held up, and neither is the sealer; once the
// earlier transaction commits, both are sealed in transaction order.
func TestSealerWaitsForEarlierTransactions(t *testing.T) {
	ctx := pgtest.Context(t)
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	sealer := newSealer(t, db, 100)

	early, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback()
	// The early transaction takes its id first...
	if _, err := early.ExecContext(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	// ...a later one appends and commits (it does not wait)...
	late, err := pgtest.AppendTx(ctx, db, store, 2, testEvent("Late", map[string]any{}))
	if err != nil {
		t.Fatal(err)
	}
	_ = late
	// ...and the early one appends afterwards, with a higher position.
	if _, err := store.Append(ctx, early, 1, 0, nil, []eventstore.NewEvent{testEvent("Early", map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	if n, err := sealer.SealAll(ctx); err != nil || n != 0 {
		t.Fatalf("sealed %d (%v) while an earlier transaction runs, want 0", n, err)
	}
	if err := early.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := sealer.SealCommitted(ctx); err != nil || n != 2 {
		t.Fatalf("sealed %d (%v), want 2", n, err)
	}
	links := chainRows(t, db)
	var types []string
	for _, l := range links {
		var typ string
		if err := db.QueryRow(`SELECT event_type FROM ledger_events WHERE position = $1`, l.position).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		types = append(types, typ)
	}
	if !slices.Equal(types, []string{"Early", "Late"}) {
		t.Fatalf("chain order %v, want [Early Late] (transaction order)", types)
	}
	if links[0].position < links[1].position {
		t.Fatalf("positions %d, %d: the test meant the early transaction to have the higher position", links[0].position, links[1].position)
	}
}

// TestVerifyUntouchedSeededLedger: a realistic ledger, sealed, verifies,
// including every stored Stripe signature.
func TestVerifyUntouchedSeededLedger(t *testing.T) {
	ctx := pgtest.Context(t)
	db, url := newDBURL(t)
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 15, Seed: 1})
	if _, err := newSealer(t, db, 10).SealCommitted(ctx); err != nil {
		t.Fatal(err)
	}
	head, err := audit.Head(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := eventlog.ParseAnchor(head.Anchor())
	if err != nil {
		t.Fatal(err)
	}
	report, err := audit.Verify(ctx, url, audit.VerifyConfig{Anchor: &anchor, Signatures: stripetest.Signatures(t, ledgertest.Secret)})
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		t.Fatalf("untouched ledger: %v", report.Problems)
	}
	if report.Events == 0 || report.Sealed != report.Events || report.SignaturesChecked == 0 || report.InboxRows == 0 || report.DeliveryRows == 0 || !report.AnchorChecked {
		t.Fatalf("report %+v", report)
	}
	if len(seeded.Bookings) != 15 {
		t.Fatal(len(seeded.Bookings))
	}
}

// TestVerifyRangesAgree: however the log is cut into ranges (streams and
// the chain then cross range boundaries), Verify finds the same problems.
func TestVerifyRangesAgree(t *testing.T) {
	ctx := pgtest.Context(t)
	db, url := newDBURL(t)
	ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 20, Seed: 3})
	if _, err := newSealer(t, db, 7).SealCommitted(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ranges := range []int{1, 2, 3, 8, 50} {
		r, err := audit.Verify(ctx, url, audit.VerifyConfig{Ranges: ranges})
		if err != nil || !r.OK() || r.Sealed != r.Events || r.ChainLinks != r.Events+r.RowsSealed || r.RowsUnsealed != 0 {
			t.Fatalf("untouched, %d ranges: %v %+v", ranges, err, r.Problems)
		}
	}
	// Delete an event in the middle of a stream: its link is orphaned and
	// the stream has a gap.
	var victim int64
	if err := db.QueryRow(`SELECT e.position FROM ledger_events e WHERE e.stream_version = 2
		AND EXISTS (SELECT 1 FROM ledger_events n WHERE n.stream_id = e.stream_id AND n.stream_version = 3)
		ORDER BY e.position OFFSET 3 LIMIT 1`).Scan(&victim); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`ALTER TABLE ledger_events DISABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM ledger_events WHERE position = $1`, victim); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`ALTER TABLE ledger_events ENABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	var want []audit.Problem
	for _, ranges := range []int{1, 2, 3, 8, 50} {
		r, err := audit.Verify(ctx, url, audit.VerifyConfig{Ranges: ranges})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Problems) < 2 || r.Problems[0].Position != victim {
			t.Fatalf("%d ranges: problems %v, want the deleted position %d first and the stream gap", ranges, r.Problems, victim)
		}
		if want == nil {
			want = r.Problems
		} else if fmt.Sprint(r.Problems) != fmt.Sprint(want) {
			t.Fatalf("%d ranges: %v\n1 range: %v", ranges, r.Problems, want)
		}
	}
}
