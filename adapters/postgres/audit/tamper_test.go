package audit

// The database owner's attacks: each tamper below runs as a superuser who
// switches the triggers off and then recomputes every hash he can — the
// events' stream hashes, every link of the chain (renumbered when links are
// gone), the Merkle tree nodes and the checkpoints stored in the database
// (signed with a key of his own). Verify without the checkpoints kept
// outside the database then finds nothing; with them, it fails, naming the
// checkpoint that no longer holds and the first place the log departs
// from it.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/domain/evidence"
)

const tamperOrigin = "ledger.test/tamper"

// tamperLedger is a seeded ledger with checkpoints kept in dir, one every
// dozen writes.
type tamperLedger struct {
	db    *sql.DB
	url   string
	dir   string
	key   *evidence.Verifier
	sizes []uint64
}

func newTamperLedger(t *testing.T) *tamperLedger {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewURL(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	skey, vkey, err := evidence.GenerateKey(tamperOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := evidence.NewSigner(skey)
	l := &tamperLedger{db: db, url: url, dir: t.TempDir()}
	l.key, _ = evidence.NewVerifier(vkey)
	cp, err := checkpoints.New(checkpoints.Config{DB: db, Signer: signer, Dir: l.dir})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := NewSealer(SealerConfig{DB: db, BatchSize: 40, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	auditor, _ := NewAuditor(AuditorConfig{DB: db})
	checkpoint := func(i int) {
		for j := range 2 {
			if err := auditor.RecordAccess(ctx, Access{Actor: "token:t", Channel: "http", Action: "history", Target: strconv.Itoa(i*10 + j)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := sealer.SealCommitted(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := cp.Checkpoint(ctx)
		if err != nil || !res.New {
			t.Fatalf("checkpoint %d: %+v %v", i, res, err)
		}
		l.sizes = append(l.sizes, res.Size)
	}
	steps := 0
	ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 8, Seed: 14, Money: true,
		AfterStep: func(ledgertest.Step) {
			if steps++; steps%12 == 0 {
				checkpoint(steps)
			}
		}})
	checkpoint(steps + 1)
	if len(l.sizes) < 4 {
		t.Fatalf("%d checkpoints: too few for the cases", len(l.sizes))
	}
	return l
}

// verify runs Verify, with the kept checkpoints when withCheckpoints.
func (l *tamperLedger) verify(t *testing.T, withCheckpoints bool) VerifyReport {
	t.Helper()
	cfg := VerifyConfig{Signatures: stripetest.Signatures(t, ledgertest.Secret)}
	if withCheckpoints {
		files, err := checkpoints.ReadFiles(l.dir)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Checkpoints, cfg.CheckpointKey = files, l.key
	}
	r, err := Verify(context.Background(), l.url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (l *tamperLedger) int(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := l.db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// exec runs statements in one transaction with every append-only trigger
// off, then back to ENABLE ALWAYS: what the owner can do.
func (l *tamperLedger) exec(t *testing.T, stmts ...string) {
	t.Helper()
	l.tx(t, func(tx *sql.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
}

func (l *tamperLedger) tx(t *testing.T, fn func(tx *sql.Tx) error) {
	t.Helper()
	tables := []string{"ledger_events", "ledger_chain", "stripe_inbox", "stripe_deliveries", "audit_access_log", "ledger_tree_nodes", "ledger_checkpoints"}
	tx, err := l.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, table := range tables {
		if _, err := tx.Exec(`ALTER TABLE ` + table + ` DISABLE TRIGGER USER`); err != nil {
			t.Fatal(err)
		}
	}
	if err := fn(tx); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
			WHERE NOT t.tgisinternal AND c.relname = ANY('{` + strings.Join(tables, ",") + `}') LOOP
			EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', r.relname, r.tgname);
		END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// rehashStreams recomputes every stream's hash chain from the events as
// they are now.
func (l *tamperLedger) rehashStreams(t *testing.T) {
	t.Helper()
	events, err := eventstore.NewEventStore(eventstore.EventStoreConfig{}).ReadAll(context.Background(), l.db, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(events, func(a, b eventlog.StoredEvent) int {
		if a.StreamID != b.StreamID {
			return int(a.StreamID - b.StreamID)
		}
		return a.StreamVersion - b.StreamVersion
	})
	var stmts []string
	var prev []byte
	for i, e := range events {
		if i == 0 || events[i-1].StreamID != e.StreamID {
			prev = eventlog.GenesisHash
		}
		if e.Payload, err = eventlog.CanonicalJSON(e.Payload); err != nil {
			t.Fatal(err)
		}
		h := eventlog.EventHash(e, prev)
		if string(h) != string(e.Hash) || string(prev) != string(e.PrevHash) {
			stmts = append(stmts, fmt.Sprintf(`UPDATE ledger_events SET prev_hash = '\x%x', hash = '\x%x' WHERE position = %d`, prev, h, e.Position))
		}
		prev = h
	}
	if len(stmts) > 0 {
		l.exec(t, stmts...)
	}
}

// rehashChain rebuilds the chain from the events and rows as they are now,
// in the links' order: links whose event or row is gone are dropped and
// the others renumbered from 1.
func (l *tamperLedger) rehashChain(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	eventHash := map[int64][]byte{}
	rows, err := l.db.Query(`SELECT position, hash FROM ledger_events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p int64
		var h []byte
		rows.Scan(&p, &h)
		eventHash[p] = h
	}
	rows.Close()
	rowHash := map[string]map[int64][]byte{}
	for _, kind := range sideKinds {
		rowHash[kind] = map[int64][]byte{}
		rows, err := l.db.QueryContext(ctx, `SELECT `+rowColumns[kind]+` FROM `+eventlog.KindTable[kind])
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			r, err := scanRow(kind, rows.Scan)
			if err != nil {
				t.Fatal(err)
			}
			rowHash[kind][r.id] = r.hash()
		}
		rows.Close()
	}
	links, err := l.db.Query(`SELECT kind, coalesce(position, row_id), transaction_id::text FROM ledger_chain ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var p pendingLinks
	prev, seq := eventlog.GenesisHash, int64(0)
	for links.Next() {
		var kind, txid string
		var id int64
		if err := links.Scan(&kind, &id, &txid); err != nil {
			t.Fatal(err)
		}
		var entry, ch []byte
		if kind == eventlog.KindEvent {
			if entry = eventHash[id]; entry == nil {
				continue
			}
			seq++
			ch = eventlog.ChainHash(seq, id, entry, prev)
		} else {
			if entry = rowHash[kind][id]; entry == nil {
				continue
			}
			seq++
			ch = eventlog.LinkHash(seq, kind, id, entry, prev)
		}
		x, _ := strconv.ParseUint(txid, 10, 64)
		p.add(seq, kind, id, x, entry, prev, ch)
		prev = ch
	}
	links.Close()
	l.tx(t, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`DELETE FROM ledger_chain`); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO ledger_chain (seq, position, transaction_id, event_hash, prev_chain_hash, chain_hash, kind, row_id)
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]::xid8[], $4::bytea[], $5::bytea[], $6::bytea[], $7::text[], $8::bigint[])`,
			pq.Array(p.seqs), pq.Array(p.positions), pq.Array(p.txids), pq.ByteaArray(p.entries), pq.ByteaArray(p.prevs),
			pq.ByteaArray(p.chs), pq.Array(p.kinds), pq.Array(p.rowIDs))
		return err
	})
}

// resignTree rebuilds the tree nodes and the stored checkpoints for the
// chain as it is now, signed with a key of the attacker's own (same name).
func (l *tamperLedger) resignTree(t *testing.T) {
	t.Helper()
	l.exec(t, `DELETE FROM ledger_tree_nodes`, `DELETE FROM ledger_checkpoints`)
	skey, _, _ := evidence.GenerateKey(tamperOrigin)
	forged, _ := evidence.NewSigner(skey)
	cp, _ := checkpoints.New(checkpoints.Config{DB: l.db, Signer: forged})
	if _, err := cp.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// recomputeAll is the whole cover-up.
func (l *tamperLedger) recomputeAll(t *testing.T, nodesToo bool) {
	t.Helper()
	l.rehashStreams(t)
	l.rehashChain(t)
	if nodesToo {
		l.resignTree(t)
	}
}

// bounds are the sizes of the last checkpoint below seq (0: none) and of
// the first one at or above it: where the log first departs from the
// checkpoints when link seq is the first changed.
func (l *tamperLedger) bounds(seq int64) (good, bad uint64) {
	for _, s := range l.sizes {
		if int64(s) >= seq {
			return good, s
		}
		good = s
	}
	return good, 0
}

func TestCheckpointsCatchTheOwnersRewrites(t *testing.T) {
	l := newTamperLedger(t)
	clean := l.verify(t, true)
	if !clean.OK() || clean.CheckpointsChecked != int64(len(l.sizes)) {
		t.Fatalf("the untouched ledger: %v %+v (checkpoints %d)", clean.Err(), clean.Problems, clean.CheckpointsChecked)
	}
	// Every tamper below starts from a fresh copy of the same ledger.
	base := l.int(t, `SELECT count(*) FROM ledger_chain`)
	if base < int64(l.sizes[len(l.sizes)-1]) || l.sizes[0] == 0 {
		t.Fatalf("chain %d, checkpoints %v", base, l.sizes)
	}

	// middle is the seq of a link of kind in the third checkpoint's range.
	middle := func(t *testing.T, l *tamperLedger, kind string) (seq, id int64) {
		t.Helper()
		if err := l.db.QueryRow(`SELECT seq, coalesce(position, row_id) FROM ledger_chain WHERE kind = $1 AND seq > $2 AND seq <= $3 ORDER BY seq OFFSET 1 LIMIT 1`,
			kind, l.sizes[1], l.sizes[2]).Scan(&seq, &id); err != nil {
			t.Fatal(err)
		}
		return seq, id
	}
	tests := []struct {
		name string
		// tamper changes the ledger and returns the seq of the first link
		// that changed and whether the report must name it exactly (the
		// tree nodes were left as signed) or only the checkpoint's range.
		tamper func(t *testing.T, l *tamperLedger) (first int64, exact bool)
	}{
		{"an event rewritten and the chain rehashed", func(t *testing.T, l *tamperLedger) (int64, bool) {
			seq, pos := middle(t, l, eventlog.KindEvent)
			l.exec(t, fmt.Sprintf(`UPDATE ledger_events SET payload = payload || '{"forged": true}' WHERE position = %d`, pos))
			l.recomputeAll(t, true)
			return seq, false
		}},
		{"an event rewritten, the tree nodes left as signed", func(t *testing.T, l *tamperLedger) (int64, bool) {
			seq, pos := middle(t, l, eventlog.KindEvent)
			l.exec(t, fmt.Sprintf(`UPDATE ledger_events SET payload = payload || '{"forged": true}' WHERE position = %d`, pos))
			l.recomputeAll(t, false)
			return seq, true
		}},
		{"the newest 10 events deleted with their links", func(t *testing.T, l *tamperLedger) (int64, bool) {
			first := l.int(t, `SELECT min(seq) FROM ledger_chain WHERE position IN (SELECT position FROM ledger_events ORDER BY position DESC LIMIT 10)`)
			l.exec(t, `DELETE FROM ledger_chain WHERE position IN (SELECT position FROM ledger_events ORDER BY position DESC LIMIT 10)`,
				`DELETE FROM ledger_events WHERE position IN (SELECT position FROM ledger_events ORDER BY position DESC LIMIT 10)`)
			l.recomputeAll(t, true)
			return first, false
		}},
		{"two events swapped", func(t *testing.T, l *tamperLedger) (int64, bool) {
			// Two neighbours of different streams, each followed in its
			// stream only after both: the streams stay in order.
			var a, b int64
			err := l.db.QueryRow(`SELECT e.position, n.position FROM ledger_events e
				JOIN LATERAL (SELECT * FROM ledger_events x WHERE x.position > e.position ORDER BY x.position LIMIT 1) n ON n.stream_id <> e.stream_id
				WHERE NOT EXISTS (SELECT 1 FROM ledger_events y WHERE y.stream_id = e.stream_id AND y.stream_version > e.stream_version AND y.position < n.position)
				AND NOT EXISTS (SELECT 1 FROM ledger_events y WHERE y.stream_id = n.stream_id AND y.stream_version < n.stream_version AND y.position > e.position)
				AND e.position IN (SELECT position FROM ledger_chain WHERE seq > $1 AND seq <= $2)
				ORDER BY e.position LIMIT 1`, l.sizes[0], l.sizes[1]).Scan(&a, &b)
			if err != nil {
				t.Fatal(err)
			}
			first := l.int(t, `SELECT min(seq) FROM ledger_chain WHERE position IN ($1, $2)`, a, b)
			l.exec(t, fmt.Sprintf(`UPDATE ledger_events SET position = -1 WHERE position = %d`, a),
				fmt.Sprintf(`UPDATE ledger_events SET position = %d WHERE position = %d`, a, b),
				fmt.Sprintf(`UPDATE ledger_events SET position = %d WHERE position = -1`, b))
			l.recomputeAll(t, true)
			return first, false
		}},
		{"the log forked after a checkpoint", func(t *testing.T, l *tamperLedger) (int64, bool) {
			// Everything after the third checkpoint is replaced by another
			// history, longer than the fourth checkpoint: its events and
			// rows deleted with their links, forged events appended and
			// sealed in their place.
			after := l.sizes[2]
			l.exec(t,
				fmt.Sprintf(`DELETE FROM ledger_events WHERE position IN (SELECT position FROM ledger_chain WHERE seq > %d)`, after),
				fmt.Sprintf(`DELETE FROM stripe_inbox WHERE id IN (SELECT row_id FROM ledger_chain WHERE seq > %d AND kind = 'inbox')`, after),
				fmt.Sprintf(`DELETE FROM stripe_deliveries WHERE id IN (SELECT row_id FROM ledger_chain WHERE seq > %d AND kind = 'delivery')`, after),
				fmt.Sprintf(`DELETE FROM audit_access_log WHERE id IN (SELECT row_id FROM ledger_chain WHERE seq > %d AND kind = 'access')`, after),
				fmt.Sprintf(`DELETE FROM ledger_chain WHERE seq > %d`, after))
			store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
			for i := range int(l.sizes[3]-after) + 5 {
				forged := pgtest.NewEvent("BookingCancelled", map[string]any{"reason": "forged"})
				forged.CausationID = "api:forged"
				if _, err := pgtest.AppendTx(context.Background(), l.db, store, 900000+int64(i), forged); err != nil {
					t.Fatal(err)
				}
			}
			sealer, _ := NewSealer(SealerConfig{DB: l.db})
			if _, err := sealer.SealCommitted(context.Background()); err != nil {
				t.Fatal(err)
			}
			l.resignTree(t)
			if n := l.int(t, `SELECT count(*) FROM ledger_chain`); n <= int64(l.sizes[3]) {
				t.Fatalf("the forked log has %d links, not more than the fourth checkpoint (%v): the case tests something else", n, l.sizes)
			}
			return int64(after) + 1, false
		}},
		{"an inbox row's outcome edited", func(t *testing.T, l *tamperLedger) (int64, bool) {
			seq, id := middle(t, l, eventlog.KindInbox)
			l.exec(t, fmt.Sprintf(`UPDATE stripe_inbox SET outcome = CASE outcome WHEN 'processed' THEN 'ignored' ELSE 'processed' END WHERE id = %d`, id))
			l.recomputeAll(t, true)
			return seq, false
		}},
		{"an event's metadata edited", func(t *testing.T, l *tamperLedger) (int64, bool) {
			seq, pos := middle(t, l, eventlog.KindEvent)
			l.exec(t, fmt.Sprintf(`UPDATE ledger_events SET metadata = '{"correlation_id": "forged"}' WHERE position = %d`, pos))
			l.recomputeAll(t, true)
			return seq, false
		}},
		{"access-log rows deleted", func(t *testing.T, l *tamperLedger) (int64, bool) {
			seq, id := middle(t, l, eventlog.KindAccess)
			l.exec(t, fmt.Sprintf(`DELETE FROM audit_access_log WHERE id IN (%d, %d)`, id, id+1))
			l.recomputeAll(t, true)
			return seq, false
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTamperLedger(t)
			first, exact := tt.tamper(t, l)
			if r := l.verify(t, false); !r.OK() {
				t.Fatalf("the cover-up left a trace the database alone shows (%v): the case tests nothing", r.Err())
			}
			r := l.verify(t, true)
			if r.OK() {
				t.Fatal("the rewrite passed the checkpoints")
			}
			p := r.Problems[0]
			good, bad := l.bounds(first)
			js, _ := json.Marshal(p)
			if p.Check != CheckCheckpoint || bad == 0 || !strings.Contains(p.Detail, checkpoints.FileName(bad)) {
				t.Fatalf("first problem %s, want the checkpoint of %d links (the first changed link is seq %d)", js, bad, first)
			}
			want := int64(good) + 1
			if exact {
				want = first
			}
			if p.Seq != want {
				t.Fatalf("first problem %s names seq %d, want %d (checkpoints %v, first changed link %d)", js, p.Seq, want, l.sizes, first)
			}
			t.Logf("%s", p)
		})
	}
}
