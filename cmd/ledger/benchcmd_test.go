package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// benchConfig points the benchmarks at the test server; they create and
// drop their own databases beside it.
func benchConfig(t *testing.T) Config {
	return Config{DatabaseURL: pgtest.ServerURL(t).String(), ShutdownGrace: 5 * time.Second, DBMaxConns: 10, MaxInFlight: 128, RequestTimeout: 15 * time.Second}
}

// TestBenchIngest runs a small closed-loop and a small open-loop ingest
// benchmark end to end: every delivery is acknowledged, the ceiling runs
// as many transactions as there are deliveries, and the exactly-once check
// passes. No figure is asserted: they depend on the machine.
func TestBenchIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("sends hundreds of webhooks")
	}
	for name, o := range map[string]ingestOptions{
		"closed loop": {Events: 300, Concurrency: 4, Duplicates: 0.2, Seed: 1, Warmup: 20},
		"open loop":   {Events: 120, Concurrency: 4, Duplicates: 0.1, Seed: 2, Rate: 400},
	} {
		t.Run(name, func(t *testing.T) {
			var progress bytes.Buffer
			res, err := runIngestBench(context.Background(), benchConfig(t), o, &progress)
			if err != nil {
				t.Fatalf("%v\n%s", err, progress.String())
			}
			if !res.Check.OK {
				t.Errorf("exactly-once check: %s", res.Check)
			}
			all := o.Events + o.warmup()
			if res.Deliveries != o.Events || res.Warmup != o.warmup() {
				t.Errorf("%d deliveries after %d to warm up, want %d after %d", res.Deliveries, res.Warmup, o.Events, o.warmup())
			}
			if res.Check.NotAcked != 0 || res.Check.AckedDeliveries != all {
				t.Errorf("answers %v: %d of %d deliveries acknowledged", res.Answers, res.Check.AckedDeliveries, all)
			}
			if res.Check.Acked+res.Check.DuplicateRows != all {
				t.Errorf("%d events and %d duplicate rows for %d deliveries", res.Check.Acked, res.Check.DuplicateRows, all)
			}
			if res.Answers["200 success"] == 0 || res.Answers["200 ignored"] == 0 {
				t.Errorf("answers %v: want successes and ignored ones (duplicates, unhandled types)", res.Answers)
			}
			if res.Ceiling.Count != o.Events || res.Throughput <= 0 || res.Ceiling.Throughput() <= 0 {
				t.Errorf("ceiling %d transactions, throughput %.0f/%.0f", res.Ceiling.Count, res.Throughput, res.Ceiling.Throughput())
			}
			var out bytes.Buffer
			res.print(&out)
			for _, want := range []string{"ceiling:", "ratio:", "exactly once: ok", "load average:", "warm up"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestGenerateDeliveries: the generated mix holds successes by both event
// types, failures, expiries, unhandled types and redeliveries, in the
// numbers asked for.
func TestGenerateDeliveries(t *testing.T) {
	var bookings []benchBooking
	for i := range 200 {
		bookings = append(bookings, benchBooking{ID: int64(i + 1), Amount: 9000, Email: "g@example.com",
			SessionID: stripe.NewSessionID(), PaymentIntent: stripe.NewPaymentIntentID()})
	}
	deliveries, err := generateDeliveries(bookings, 250, 300, newRand(3))
	if err != nil {
		t.Fatal(err)
	}
	if len(deliveries) != 300 {
		t.Fatalf("%d deliveries, want 300", len(deliveries))
	}
	ids := map[string]bool{}
	types := map[string]int{}
	for _, d := range deliveries {
		ids[d.EventID] = true
		types[d.Type]++
	}
	if len(ids) != 250 {
		t.Errorf("%d distinct events, want 250", len(ids))
	}
	for _, typ := range []string{stripe.EventCheckoutSessionCompleted, stripe.EventPaymentIntentSucceeded, stripe.EventPaymentIntentPaymentFailed, stripe.EventCheckoutSessionExpired, "charge.succeeded"} {
		if types[typ] == 0 {
			t.Errorf("no %s in the mix %v", typ, types)
		}
	}
}

// TestRebuildByFoldEqualsLive: the default rebuild hook gives a table equal
// to the status table the ingest path kept, row for row, with its indexes
// and constraints.
func TestRebuildByFoldEqualsLive(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	store, err := bookingstore.New(bookingstore.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := app.NewService(app.Config{Bookings: store})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 6 {
		in := time.Date(2027, 5, 1+i%3, 0, 0, 0, 0, time.UTC) // overlapping stays
		row, err := ledger.CreateBooking(ctx, domain.NewBookingParams{ResourceID: "room-1", CheckIn: in.Format(time.DateOnly),
			CheckOut: in.AddDate(0, 0, 2).Format(time.DateOnly), Amount: 9000, Currency: "eur", CustomerEmail: "g@example.com"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, row.ID)
	}
	for i, id := range ids {
		typ, fact := stripe.EventPaymentIntentSucceeded, app.FactPaymentSucceeded
		if i%3 == 2 {
			typ, fact = stripe.EventPaymentIntentPaymentFailed, app.FactPaymentFailed
		}
		if _, err := ledger.Ingest(ctx, app.Delivery{EventID: stripe.NewEventID(), Type: typ, Created: time.Now(), Raw: []byte(`{}`),
			Source: "webhook", Fact: fact, Lookup: app.Lookup{BookingIDs: []int64{id}},
			Payment: domain.Payment{PaymentIntentID: stripe.NewPaymentIntentID(), Amount: 9000, Currency: "eur", Source: "webhook", FailureCode: "card_declined"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	var phases []string
	if err := rebuildByFold(withPhases(ctx, func(name string, _ time.Duration) { phases = append(phases, name) }), db); err != nil {
		t.Fatal(err)
	}
	if len(phases) != 2 {
		t.Errorf("phases %v, want fold and indexes", phases)
	}
	for _, q := range []string{
		`SELECT count(*) FROM (SELECT * FROM bookings EXCEPT SELECT * FROM ` + rebuildTable + `) d`,
		`SELECT count(*) FROM (SELECT * FROM ` + rebuildTable + ` EXCEPT SELECT * FROM bookings) d`,
	} {
		var n int
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows differ: %s", n, q)
		}
	}
	var confirmed, constraints int
	db.QueryRowContext(ctx, `SELECT count(*) FROM `+rebuildTable+` WHERE status = 'confirmed'`).Scan(&confirmed)
	if confirmed == 0 || confirmed == len(ids) {
		t.Errorf("%d of %d confirmed: the scenario should have conflicts", confirmed, len(ids))
	}
	db.QueryRowContext(ctx, `SELECT count(*) FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'x')`, rebuildTable).Scan(&constraints)
	if constraints != 2 {
		t.Errorf("%d primary key and exclusion constraints on %s, want 2", constraints, rebuildTable)
	}
}

// TestBenchRebuild runs a small rebuild benchmark end to end.
func TestBenchRebuild(t *testing.T) {
	if testing.Short() {
		t.Skip("generates thousands of events")
	}
	var progress bytes.Buffer
	res, err := runRebuildBench(context.Background(), benchConfig(t), rebuildOptions{Events: 3000, Seed: 1}, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if res.Events < 3000 || res.Rows != res.Streams || res.Streams == 0 {
		t.Errorf("%d events, %d streams, %d rows", res.Events, res.Streams, res.Rows)
	}
	if res.PeakRSS <= 0 || res.EventsPerSecond <= 0 {
		t.Errorf("peak RSS %d KiB, %.0f events/s", res.PeakRSS, res.EventsPerSecond)
	}
}

// TestGenerateLog: the rebuild benchmark's log is one the ledger could have
// written: every stream's hash chain verifies, every stream folds, and no
// two confirmed stays overlap (the rebuilt table's exclusion constraint
// builds).
func TestGenerateLog(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	events, streams, err := generateLog(ctx, db, 2000, 7)
	if err != nil {
		t.Fatal(err)
	}
	if events < 2000 || streams == 0 {
		t.Fatalf("%d events in %d streams", events, streams)
	}
	ids := make([]int64, streams)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	if broken, err := verifyChains(ctx, db, ids); err != nil || broken != 0 {
		t.Fatalf("%d broken chains, %v", broken, err)
	}
	if err := rebuildByFold(ctx, db); err != nil {
		t.Fatal(err)
	}
	var rows int
	var types []byte
	db.QueryRowContext(ctx, `SELECT count(*) FROM `+rebuildTable).Scan(&rows)
	db.QueryRowContext(ctx, `SELECT string_agg(DISTINCT event_type, ',' ORDER BY event_type) FROM ledger_events`).Scan(&types)
	if rows != streams {
		t.Errorf("%d rows for %d streams", rows, streams)
	}
	for _, want := range []string{"AvailabilityConflict", "BookingConfirmed", "CheckoutSessionOpened", "PaymentFailed", "RefundIssued", "RefundRequested"} {
		if !strings.Contains(string(types), want) {
			t.Errorf("no %s among %s", want, types)
		}
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }
