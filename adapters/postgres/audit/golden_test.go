package audit_test

// The golden ledger: a log written once by the code of main 9d1baa4 (before
// the integrity code moved to domain/eventlog and this package), kept as testdata, must
// keep verifying and keep hashing to the bytes it stored. Moving or
// rewriting the hash, canonical-JSON, chain or verifier code must never
// change a stored hash: a ledger written by an older binary has to verify
// with a newer one.
//
// testdata/golden_ledger.jsonl holds the rows the verifier reads (events
// with their stored hashes, chain links, inbox and deliveries), one JSON
// object per line, as PostgreSQL's row_to_json writes them.
// testdata/golden_export.jsonl and golden_history.json are what Export and
// History gave for that ledger.
//
// Regenerate ONLY from the old code, never from the code under test, or the
// test proves nothing: check out commit 5b48ff9 (main 9d1baa4 plus this
// test, then in adapters/postgres) and run there
//
//	go test ./adapters/postgres/ -run TestGoldenLedger -update-golden-ledger
//
// then copy adapters/postgres/testdata/golden_* here.
//
// Changed by hand since, each a new column of the booking row and nothing
// else: the booking objects of golden_history.json gained refunded_amount
// (0, and booking 12's issued refund), dispute_status (null),
// disputed_amount (0) and dispute_evidence_due_by (null) with migration
// 00007; the stored events, hashes and export are as the old code wrote
// them.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/ledgertest"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

var updateGoldenLedger = flag.Bool("update-golden-ledger", false, "rewrite testdata/golden_* from the code under test (only ever from the old code: see golden_test.go)")

const (
	goldenLedgerFile  = "testdata/golden_ledger.jsonl"
	goldenExportFile  = "testdata/golden_export.jsonl"
	goldenHistoryFile = "testdata/golden_history.json"
)

// goldenTables are the tables the fixture holds, in load order.
var goldenTables = []struct{ name, order string }{
	{"ledger_events", "position"},
	{"ledger_chain", "seq"},
	{"stripe_inbox", "id"},
	{"stripe_deliveries", "id"},
}

// goldenLine is one line of the fixture: a row of a table, or (table
// "meta") the chain head kept outside the database.
type goldenLine struct {
	Table string          `json:"table"`
	Row   json.RawMessage `json:"row"`
}

type goldenMeta struct {
	Anchor   string  `json:"anchor"`
	Bookings []int64 `json:"bookings"`
}

func TestGoldenLedger(t *testing.T) {
	if *updateGoldenLedger {
		writeGoldenLedger(t)
	}
	ctx := pgtest.Context(t)
	db, url := newDBURL(t)
	lines, meta := loadGoldenLedger(t, db)
	count := func(table string) int64 {
		var n int64
		for _, l := range lines {
			if l.Table == table {
				n++
			}
		}
		return n
	}

	// The verifier, with the kept head and the signatures: everything holds.
	anchor, err := eventlog.ParseAnchor(meta.Anchor)
	if err != nil {
		t.Fatal(err)
	}
	report, err := audit.Verify(ctx, url, audit.VerifyConfig{Anchor: &anchor, Signatures: stripetest.Signatures(t, ledgertest.Secret)})
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		t.Fatalf("the golden ledger does not verify: %v\n%+v", report.Err(), report.Problems)
	}
	if report.Events != count("ledger_events") || report.ChainLinks != count("ledger_chain") ||
		report.InboxRows != count("stripe_inbox") || report.DeliveryRows != count("stripe_deliveries") {
		t.Errorf("verified %d events, %d links, %d inbox rows, %d deliveries; the fixture has %d, %d, %d, %d",
			report.Events, report.ChainLinks, report.InboxRows, report.DeliveryRows,
			count("ledger_events"), count("ledger_chain"), count("stripe_inbox"), count("stripe_deliveries"))
	}
	if report.Unsealed != 2 || !report.AnchorChecked || report.SignaturesChecked == 0 {
		t.Errorf("unsealed %d (want the 2 appended after sealing), anchor checked %v, signatures checked %d",
			report.Unsealed, report.AnchorChecked, report.SignaturesChecked)
	}

	// Every event hash, recomputed with the project's functions from the
	// rows as PostgreSQL gives them back, is the stored one.
	events, err := eventstore.NewEventStore(eventstore.EventStoreConfig{}).ReadAll(ctx, db, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	streams := map[int64][]eventstore.StoredEvent{}
	byPosition := map[int64]eventstore.StoredEvent{}
	for _, e := range events {
		payload, err := eventlog.CanonicalJSON(e.Payload)
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		c := e
		c.Payload = payload
		if got := eventlog.EventHash(c, e.PrevHash); !bytes.Equal(got, e.Hash) {
			t.Errorf("%s: EventHash gives %x, stored %x", e, got, e.Hash)
		}
		streams[e.StreamID] = append(streams[e.StreamID], e)
		byPosition[e.Position] = e
	}
	for id, s := range streams {
		slices.SortFunc(s, func(a, b eventstore.StoredEvent) int { return a.StreamVersion - b.StreamVersion })
		if pos, err := eventlog.VerifyStream(s); err != nil {
			t.Errorf("stream %d: VerifyStream: position %d: %v", id, pos, err)
		}
	}

	// Every chain hash too, each link chained to the one before and sealing
	// its event's stored hash.
	rows, err := db.QueryContext(ctx, `SELECT seq, position, event_hash, prev_chain_hash, chain_hash FROM ledger_chain ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	prev, links := eventlog.GenesisHash, 0
	for rows.Next() {
		var seq, pos int64
		var eventHash, prevChain, chain []byte
		if err := rows.Scan(&seq, &pos, &eventHash, &prevChain, &chain); err != nil {
			t.Fatal(err)
		}
		links++
		if got := eventlog.ChainHash(seq, pos, eventHash, prevChain); !bytes.Equal(got, chain) {
			t.Errorf("chain seq %d: ChainHash gives %x, stored %x", seq, got, chain)
		}
		if !bytes.Equal(prevChain, prev) {
			t.Errorf("chain seq %d: prev_chain_hash is not the previous link's hash", seq)
		}
		if !bytes.Equal(eventHash, byPosition[pos].Hash) {
			t.Errorf("chain seq %d: sealed %x, the event at %d has %x", seq, eventHash, pos, byPosition[pos].Hash)
		}
		prev = chain
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if links == 0 || links != len(events)-2 {
		t.Errorf("%d links for %d events", links, len(events))
	}
	if want := meta.Anchor; !strings.HasSuffix(want, ":"+hex.EncodeToString(prev)) {
		t.Errorf("the last link's hash %x is not the kept head %s", prev, want)
	}

	// What an auditor reads of it is unchanged: the export and every
	// booking's history.
	auditor, err := audit.NewAuditor(audit.AuditorConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	var export bytes.Buffer
	if _, err := auditor.Export(ctx, &export, audit.ExportQuery{Settled: events[len(events)-1].Position}); err != nil {
		t.Fatal(err)
	}
	history := goldenHistories(t, auditor, meta.Bookings)
	if *updateGoldenLedger {
		writeFile(t, goldenExportFile, export.Bytes())
		writeFile(t, goldenHistoryFile, history)
	}
	if want := readFile(t, goldenExportFile); !bytes.Equal(export.Bytes(), want) {
		t.Errorf("the export of the golden ledger changed:\n%s", firstDiff(export.Bytes(), want))
	}
	if want := readFile(t, goldenHistoryFile); !bytes.Equal(history, want) {
		t.Errorf("the history of the golden ledger changed:\n%s", firstDiff(history, want))
	}
}

func goldenHistories(t *testing.T, a *audit.Auditor, ids []int64) []byte {
	t.Helper()
	ctx := pgtest.Context(t)
	var hs []audit.BookingHistory
	for _, id := range ids {
		h, err := a.History(ctx, id, time.Time{})
		if err != nil {
			t.Fatalf("history of booking %d: %v", id, err)
		}
		hs = append(hs, h)
	}
	b, err := json.MarshalIndent(hs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// loadGoldenLedger inserts the fixture's rows into db as they were.
func loadGoldenLedger(t *testing.T, db *sql.DB) ([]goldenLine, goldenMeta) {
	t.Helper()
	f, err := os.Open(goldenLedgerFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []goldenLine
	var meta goldenMeta
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l goldenLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", goldenLedgerFile, err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	err = postgres.Transact(pgtest.Context(t), db, func(ctx context.Context, tx *sql.Tx) error {
		for _, l := range lines {
			if l.Table == "meta" {
				if err := json.Unmarshal(l.Row, &meta); err != nil {
					return err
				}
				continue
			}
			if !slices.ContainsFunc(goldenTables, func(g struct{ name, order string }) bool { return g.name == l.Table }) {
				return fmt.Errorf("unknown table %q", l.Table)
			}
			// The identity columns of the inbox tables keep their ids.
			// Only the columns the row had are written: those added since
			// (hash_version, transaction_id, kind) take their defaults, as
			// the migrations gave them to the rows already there.
			var cols map[string]json.RawMessage
			if err := json.Unmarshal(l.Row, &cols); err != nil {
				return err
			}
			names := slices.Sorted(maps.Keys(cols))
			list := strings.Join(names, ", ")
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+l.Table+` (`+list+`) OVERRIDING SYSTEM VALUE
				SELECT `+list+` FROM json_populate_record(NULL::`+l.Table+`, $1::json)`, string(l.Row)); err != nil {
				return fmt.Errorf("%s row %s: %w", l.Table, l.Row, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Anchor == "" || len(meta.Bookings) == 0 {
		t.Fatalf("%s: no meta line", goldenLedgerFile)
	}
	return lines, meta
}

// writeGoldenLedger writes a small but varied ledger through the real write
// path and dumps it to the fixture.
func writeGoldenLedger(t *testing.T) {
	t.Helper()
	ctx := pgtest.Context(t)
	db, _ := newDBURL(t)

	// Random histories: confirmations, failures, expiries, duplicates,
	// unmatched and ignored deliveries.
	seeded := ledgertest.Seed(t, db, ledgertest.Options{Stripe: stripetest.Events{}, Bookings: 10, Seed: 20270101})
	ledger, clock := seeded.Service, seeded.Clock
	bookings := slices.Clone(seeded.Bookings)

	// Availability conflicts with unicode resources and large amounts: the
	// second booking of each resource is paid after the first is
	// confirmed, cancelled and its payment refunded (issued for one,
	// refused for good for the other).
	pay := func(id int64, b stripe.TestBooking) {
		body, err := stripe.BuildEvent(stripe.EventCheckoutSessionCompleted, b, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		at := clock.Advance(1500 * time.Millisecond)
		ev, err := stripe.ParseEvent(body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.Ingest(ctx, ev.Delivery(body, stripe.Sign(body, ledgertest.Secret, at), "webhook", at)); err != nil {
			t.Fatalf("pay booking %d: %v", id, err)
		}
	}
	refused := map[string]bool{}
	for i, res := range []struct {
		resource, email, currency string
		amount                    int64
	}{
		{"chambre-été-🛏", "zoë@exämple.com", "eur", 9007199254740993},
		{"部屋-7 «vue»", "guest+\"quoted\"@example.com", "jpy", 123456789012345678},
	} {
		// Both are booked before either is paid: a stay that overlaps a
		// confirmed one cannot be booked.
		var pair []stripe.TestBooking
		for range 2 {
			clock.Advance(time.Second)
			sess := stripe.NewSessionID()
			row, err := ledger.CreateBooking(ctx, domain.NewBookingParams{ResourceID: res.resource, CheckIn: "2027-06-01", CheckOut: "2027-06-05",
				Amount: res.amount, Currency: res.currency, CustomerEmail: res.email, SessionID: sess}, fmt.Sprintf("api:golden-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			bookings = append(bookings, row.ID)
			pair = append(pair, stripe.TestBooking{ID: row.ID, SessionID: sess, PaymentIntentID: stripe.NewPaymentIntentID(),
				Amount: row.Amount, Currency: row.Currency, CustomerEmail: row.CustomerEmail})
		}
		for _, b := range pair {
			pay(b.ID, b)
		}
		last := pair[1]
		if i == 1 {
			refused[last.PaymentIntentID] = true
		}
	}
	// A checkout opened, a card declined and then paid; and a payment of
	// the wrong amount.
	deliver := func(typ string, b stripe.TestBooking) {
		body, err := stripe.BuildEvent(typ, b, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		at := clock.Advance(700 * time.Millisecond)
		ev, err := stripe.ParseEvent(body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.Ingest(ctx, ev.Delivery(body, stripe.Sign(body, ledgertest.Secret, at), "webhook", at)); err != nil {
			t.Fatalf("%s for booking %d: %v", typ, b.ID, err)
		}
	}
	for i, amount := range []int64{4200, 999999} {
		clock.Advance(time.Second)
		row, err := ledger.CreateBooking(ctx, domain.NewBookingParams{ResourceID: fmt.Sprintf("suite-%d", i), CheckIn: "2027-08-01", CheckOut: "2027-08-02",
			Amount: amount, Currency: "usd", CustomerEmail: "ann@example.org"}, fmt.Sprintf("api:golden-checkout-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		bookings = append(bookings, row.ID)
		sess := stripe.NewSessionID()
		if _, err := seeded.Ledger.Update(ctx, row.ID, fmt.Sprintf("api:golden-open-%d", i), func(b *domain.Booking) ([]domain.Event, error) {
			return domain.DecideCheckoutSessionOpened(b, sess, "https://checkout.stripe.com/c/pay/"+sess, clock.Now().Add(30*time.Minute))
		}); err != nil {
			t.Fatal(err)
		}
		b := stripe.TestBooking{ID: row.ID, SessionID: sess, PaymentIntentID: stripe.NewPaymentIntentID(), Amount: amount, Currency: "usd", CustomerEmail: row.CustomerEmail}
		if i == 0 {
			deliver(stripe.EventPaymentIntentPaymentFailed, b)
			deliver(stripe.EventCheckoutSessionCompleted, b)
		} else {
			b.Amount = amount - 1
			deliver(stripe.EventCheckoutSessionCompleted, b)
		}
	}

	worker, err := bookingstore.NewRefundWorker(bookingstore.RefundWorkerConfig{
		DB: db, Store: seeded.Ledger, Refunder: goldenRefunder{refused: refused, now: clock.Now}, ConsumerGroup: "golden",
		PollInterval: 20 * time.Millisecond, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx) }()
	select {
	case <-worker.Running():
	case err := <-done:
		t.Fatalf("the refund worker stopped before it ran: %v", err)
	case <-ctx.Done():
		t.Fatalf("the refund worker never started: %v", context.Cause(ctx))
	}
	pgtest.Poll(ctx, t, "the refunds to be recorded", func(ctx context.Context) (string, error) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM ledger_events WHERE event_type IN ('RefundIssued', 'RefundFailed')`).Scan(&n)
		if err != nil || n == 2 {
			return "", err
		}
		return fmt.Sprintf("%d of 2", n), nil
	})
	worker.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Events appended directly, with payloads the canonical form must
	// handle: unsorted keys, escapes, unicode beyond the BMP, HTML
	// characters, numbers beyond float64's precision, deep nesting, empty
	// containers. The stream id itself is beyond 2^53.
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{Now: clock.Now})
	probe := func(streamID int64, version int, prevHash []byte, payloads ...string) []byte {
		var events []eventstore.NewEvent
		for _, p := range payloads {
			events = append(events, eventstore.NewEvent{Type: "GoldenProbé", SchemaVersion: 3, OccurredAt: clock.Now().Add(-time.Hour + 123456789*time.Nanosecond),
				CausationID: "golden:probe ✓", Payload: json.RawMessage(p), Metadata: map[string]string{"correlation_id": "corr-ü-1", "z": "<&>"}})
		}
		var stored []eventstore.StoredEvent
		err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			stored, err = store.Append(ctx, tx, streamID, version, prevHash, events)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		return stored[len(stored)-1].Hash
	}
	const probeStream = 9007199254740993
	h := probe(probeStream, 0, nil,
		`{"b": 1, "a": {"z": [3, 2.50, -17, 0, 12345678901234567890123456789], "y": "\u00e9\u2028\u2029<>&\"\\\/\t\u0001"}}`,
		`{"emoji": "🛏️ \ud83d\ude00", "empty": {}, "arr": [], "null": null, "t": true, "f": false, "neg": -0.000001}`,
		` { "deep" : [[[[{"k": [{"x": "y"}]}]]]], "amount": 9223372036854775807, "min": -9223372036854775808 } `,
		`{"日本": "語", "Ä": "ä", "a": "A", "": "empty key", "1": 1.5}`)
	sealer, err := audit.NewSealer(audit.SealerConfig{DB: db, BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sealer.SealCommitted(ctx); err != nil {
		t.Fatal(err)
	}
	head, err := audit.Head(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	// Two events after the seal: unsealed, which is no problem.
	probe(probeStream, 4, h, `{"after": "seal"}`, `{"x": [1, {"b": 2, "a": 1}]}`)

	var out bytes.Buffer
	for _, g := range goldenTables {
		rows, err := db.Query(`SELECT row_to_json(t)::text FROM (SELECT * FROM ` + g.name + ` ORDER BY ` + g.order + `) t`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var row string
			if err := rows.Scan(&row); err != nil {
				t.Fatal(err)
			}
			line, err := json.Marshal(goldenLine{Table: g.name, Row: json.RawMessage(row)})
			if err != nil {
				t.Fatal(err)
			}
			out.Write(append(line, '\n'))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	meta, err := json.Marshal(goldenMeta{Anchor: head.Anchor(), Bookings: bookings})
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(goldenLine{Table: "meta", Row: meta})
	out.Write(append(line, '\n'))
	writeFile(t, goldenLedgerFile, out.Bytes())
}

// goldenRefunder issues every refund but those of the PaymentIntents in
// refused, which it refuses for good.
type goldenRefunder struct {
	refused map[string]bool
	now     func() time.Time
}

func (r goldenRefunder) RefundPayment(_ context.Context, booking domain.BookingID, req domain.RefundRequested, key string) (domain.RefundIssued, error) {
	if r.refused[req.PaymentIntentID] {
		return domain.RefundIssued{}, goldenRefusal{}
	}
	return domain.RefundIssued{RefundID: fmt.Sprintf("re_golden_%d", booking), PaymentIntentID: req.PaymentIntentID, Amount: req.Amount, Currency: req.Currency}, nil
}

type goldenRefusal struct{}

func (goldenRefusal) Error() string {
	return "charge_already_refunded: the charge was refunded already"
}
func (goldenRefusal) Permanent() bool     { return true }
func (goldenRefusal) FailureCode() string { return "charge_already_refunded" }
func (goldenRefusal) FailureMessage() string {
	return "Charge ch_golden has already been refunded — «déjà»."
}
func (goldenRefusal) HTTPStatusCode() int       { return 400 }
func (goldenRefusal) ProviderRequestID() string { return "req_golden" }

var _ app.RefundRefusal = goldenRefusal{}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, gl, wl)
		}
	}
	return "(no line differs)"
}
