package bookingstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// groupSetup is a ledger whose store commits Stripe deliveries in groups.
type groupSetup struct {
	t     *testing.T
	db    *sql.DB
	store *bookingstore.Store
	svc   *app.Service
}

func newGroupSetup(t *testing.T, db *sql.DB, gc bookingstore.GroupCommit) groupSetup {
	return newGroupSetupAt(t, db, gc, nil)
}

// newGroupSetupAt is newGroupSetup with the clock now (nil: time.Now).
func newGroupSetupAt(t *testing.T, db *sql.DB, gc bookingstore.GroupCommit, now func() time.Time) groupSetup {
	t.Helper()
	store, err := bookingstore.New(bookingstore.Config{DB: db, GroupCommit: gc, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := app.NewService(app.Config{Bookings: store, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return groupSetup{t: t, db: db, store: store, svc: svc}
}

func (s groupSetup) book(resource, in, out string) int64 {
	s.t.Helper()
	row, err := s.svc.CreateBooking(context.Background(), domain.NewBookingParams{ResourceID: resource, CheckIn: in, CheckOut: out,
		Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com"}, "test")
	if err != nil {
		s.t.Fatal(err)
	}
	return row.ID
}

// paid is a payment_intent.succeeded delivery for booking (0: named by
// its PaymentIntent only).
func paid(booking int64, pi string) app.Delivery {
	d := app.Delivery{
		EventID: stripe.NewEventID(), Type: stripe.EventPaymentIntentSucceeded, Created: time.Now(),
		Raw: []byte(`{"id":"evt"}`), Signature: "t=1,v1=00", Source: "webhook", Fact: app.FactPaymentSucceeded,
		Lookup:  app.Lookup{PaymentIntentID: pi},
		Payment: domain.Payment{PaymentIntentID: pi, Amount: 36000, Currency: "eur", Source: "webhook", StripeEventType: stripe.EventPaymentIntentSucceeded},
	}
	if booking != 0 {
		d.Lookup.BookingIDs = []int64{booking}
	}
	return d
}

// ingestTogether holds the writers, queues ds in order, and lets one batch
// take them all; it returns each delivery's result and error.
func (s groupSetup) ingestTogether(ds ...app.Delivery) ([]app.IngestResult, []error) {
	s.t.Helper()
	queued, release := s.store.HoldGroupCommit()
	res := make([]app.IngestResult, len(ds))
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = s.svc.Ingest(context.Background(), d)
		}()
		// In order: each delivery is queued before the next is sent.
		for deadline := time.Now().Add(10 * time.Second); queued() < i+1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				s.t.Fatalf("delivery %d not queued", i)
			}
		}
	}
	release()
	wg.Wait()
	return res, errs
}

func (s groupSetup) status(id int64) (domain.Status, domain.PaymentStatus) {
	s.t.Helper()
	row, err := s.store.GetBooking(context.Background(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return row.Status, row.PaymentStatus
}

func (s groupSetup) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.db.QueryRow(query, args...).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// verifyChains checks every stream's hash chain, that every status row
// stands at its stream's last position, and that the status table equals
// a fold of the log from scratch.
func (s groupSetup) verifyChains() {
	s.t.Helper()
	pgtest.SameBookings(s.t, "status rows against a fold from scratch", pgtest.FoldBookings(s.t, s.db), pgtest.Bookings(s.t, s.db))
	ctx := context.Background()
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	rows, err := s.db.Query(`SELECT id, last_event_position FROM bookings ORDER BY id`)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, last int64
		if err := rows.Scan(&id, &last); err != nil {
			s.t.Fatal(err)
		}
		events, err := store.LoadStream(ctx, s.db, id)
		if err != nil {
			s.t.Fatal(err)
		}
		if _, err := eventlog.VerifyStream(events); err != nil {
			s.t.Errorf("booking %d: %v", id, err)
		}
		if got := events[len(events)-1].Position; got != last {
			s.t.Errorf("booking %d: status row at position %d, stream ends at %d", id, last, got)
		}
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
}

// TestGroupCommitDecidesAsAlone sends one batch holding every kind of
// delivery and checks each answer and row against what the delivery means
// on its own: a batch changes which deliveries share a commit, never what
// is decided.
func TestGroupCommitDecidesAsAlone(t *testing.T) {
	s := newGroupSetup(t, pgtest.NewDB(t), bookingstore.GroupCommit{MaxBatch: 64, Writers: 1})
	ctx := context.Background()
	a := s.book("room-a", "2027-03-01", "2027-03-04")
	b1 := s.book("room-b", "2027-03-01", "2027-03-04")
	b2 := s.book("room-b", "2027-03-02", "2027-03-05") // overlaps b1
	c := s.book("room-c", "2027-03-01", "2027-03-04")
	earlier := paid(c, stripe.NewPaymentIntentID())
	if _, err := s.svc.Ingest(ctx, earlier); err != nil {
		t.Fatal(err)
	}

	piA := stripe.NewPaymentIntentID()
	payA := paid(a, piA)
	refused := paid(c, stripe.NewPaymentIntentID())
	refused.Fact = app.Fact(1000) // a fact with no decision: the domain refuses it
	ignored := paid(0, "")
	ignored.Type, ignored.Fact = "customer.created", app.FactNone
	ds := []app.Delivery{
		payA,                                     // 0: confirms a
		paid(b1, stripe.NewPaymentIntentID()),    // 1: confirms b1
		paid(b2, stripe.NewPaymentIntentID()),    // 2: same resource as 1: next batch, sees b1 confirmed: conflict
		payA,                                     // 3: same event as 0: next batch, a duplicate
		earlier,                                  // 4: committed before: a duplicate
		ignored,                                  // 5: a type the ledger does not decide on
		paid(1<<40, stripe.NewPaymentIntentID()), // 6: names no booking: unmatched
		paid(0, piA),                             // 7: named by 0's PaymentIntent only: next batch, matched, nothing new
		refused,                                  // 8: refused alone; nothing written for it
	}
	res, errs := s.ingestTogether(ds...)

	want := []struct {
		outcome app.Outcome
		booking int64
		events  int
	}{
		{app.OutcomeProcessed, a, 2},
		{app.OutcomeProcessed, b1, 2},
		{app.OutcomeProcessed, b2, 4}, // paid, availability conflict, cancelled, refund requested
		{app.OutcomeDuplicate, a, 0},
		{app.OutcomeDuplicate, c, 0},
		{app.OutcomeIgnored, 0, 0},
		{app.OutcomeUnmatched, 0, 0},
		{app.OutcomeProcessed, a, 0},
	}
	for i, w := range want {
		if errs[i] != nil {
			t.Errorf("delivery %d: %v", i, errs[i])
			continue
		}
		if res[i].Outcome != w.outcome || res[i].BookingID != w.booking || len(res[i].Events) != w.events {
			t.Errorf("delivery %d: %s for booking %d with %d events, want %s for %d with %d", i,
				res[i].Outcome, res[i].BookingID, len(res[i].Events), w.outcome, w.booking, w.events)
		}
		if w.events > 0 && res[i].Booking.LastEventPosition == 0 {
			t.Errorf("delivery %d: status row without its position", i)
		}
	}
	if !errors.Is(errs[8], domain.ErrInvalid) {
		t.Errorf("refused delivery: %v, want domain.ErrInvalid", errs[8])
	}
	if n := s.count(`SELECT count(*) FROM stripe_inbox WHERE event_id = $1`, refused.EventID); n != 0 {
		t.Errorf("refused delivery: %d inbox rows, want none", n)
	}

	for _, c := range []struct {
		id            int64
		status        domain.Status
		paymentStatus domain.PaymentStatus
	}{
		{a, domain.StatusConfirmed, domain.PaymentStatusPaid},
		{b1, domain.StatusConfirmed, domain.PaymentStatusPaid},
		{b2, domain.StatusCancelled, domain.PaymentStatusPaid},
	} {
		if st, ps := s.status(c.id); st != c.status || ps != c.paymentStatus {
			t.Errorf("booking %d: %s/%s, want %s/%s", c.id, st, ps, c.status, c.paymentStatus)
		}
	}
	// Every event once in the inbox, every redelivery a delivery row.
	for _, q := range []struct {
		query string
		arg   string
		want  int
	}{
		{`SELECT count(*) FROM stripe_inbox WHERE event_id = $1`, payA.EventID, 1},
		{`SELECT count(*) FROM stripe_deliveries WHERE event_id = $1 AND outcome = 'duplicate'`, payA.EventID, 1},
		{`SELECT count(*) FROM stripe_deliveries WHERE event_id = $1 AND outcome = 'duplicate'`, earlier.EventID, 1},
		{`SELECT count(*) FROM stripe_inbox WHERE event_id = $1 AND outcome = 'ignored' AND booking_id IS NULL`, ignored.EventID, 1},
		{`SELECT count(*) FROM stripe_deliveries WHERE event_id = $1 AND outcome = 'unmatched'`, ds[6].EventID, 1},
		{`SELECT count(*) FROM stripe_inbox WHERE event_id = $1 AND booking_id IS NOT NULL`, ds[7].EventID, 1},
	} {
		if n := s.count(q.query, q.arg); n != q.want {
			t.Errorf("%s [%s]: %d, want %d", q.query, q.arg, n, q.want)
		}
	}
	if n := s.count(`SELECT count(*) FROM ledger_events WHERE event_type = 'PaymentSucceeded' AND stream_id = $1`, a); n != 1 {
		t.Errorf("booking %d: %d PaymentSucceeded, want 1", a, n)
	}
	s.verifyChains()

	// The batches: the first held the eight it could decide together; the
	// deferred ones followed.
	m := metrics(t, s.store)
	if m["ledger_ingest_batch_deferred_total"] < 3 {
		t.Errorf("deferred %v deliveries, want at least 3 (same resource, same event, a payment's PaymentIntent)", m["ledger_ingest_batch_deferred_total"])
	}
	if m["ledger_ingest_batch_fallbacks_total"] != 0 {
		t.Errorf("%v fallbacks, want none", m["ledger_ingest_batch_fallbacks_total"])
	}
}

// TestGroupCommitRaceIsolated: another process records one of the batch's
// events between the batch's lookup and its write. The batch is rolled
// back and each delivery written alone: the raced one is a duplicate, its
// batch-mates are decided as if nothing happened.
func TestGroupCommitRaceIsolated(t *testing.T) {
	db := pgtest.NewDB(t)
	s := newGroupSetup(t, db, bookingstore.GroupCommit{MaxBatch: 64, Writers: 1})
	other := newGroupSetup(t, db, bookingstore.GroupCommit{})
	var ds []app.Delivery
	for i := range 5 {
		ds = append(ds, paid(s.book(fmt.Sprintf("race-%d", i), "2027-04-01", "2027-04-03"), stripe.NewPaymentIntentID()))
	}
	// The race: an event of a type the ledger does not decide on takes no
	// lock, so two processes can record it at once.
	ds[2].Type, ds[2].Fact = "customer.updated", app.FactNone
	raced := ds[2]
	var once sync.Once
	s.store.BeforeBatchWrite(func(ctx context.Context, tx *sql.Tx) error {
		var err error
		once.Do(func() { _, err = other.svc.Ingest(ctx, raced) })
		return err
	})
	res, errs := s.ingestTogether(ds...)
	for i := range ds {
		want, status := app.OutcomeProcessed, domain.StatusConfirmed
		if i == 2 {
			want, status = app.OutcomeDuplicate, domain.StatusPending
		}
		if errs[i] != nil || res[i].Outcome != want {
			t.Errorf("delivery %d: %s, %v; want %s", i, res[i].Outcome, errs[i], want)
		}
		if st, _ := s.status(ds[i].Lookup.BookingIDs[0]); st != status {
			t.Errorf("delivery %d: booking %s, want %s", i, st, status)
		}
	}
	if n := s.count(`SELECT count(*) FROM ledger_events WHERE event_type = 'PaymentSucceeded'`); n != len(ds)-1 {
		t.Errorf("%d PaymentSucceeded, want %d", n, len(ds)-1)
	}
	if n := s.count(`SELECT count(*) FROM stripe_inbox WHERE event_id = $1`, raced.EventID); n != 1 {
		t.Errorf("raced event: %d inbox rows, want 1", n)
	}
	if m := metrics(t, s.store); m["ledger_ingest_batch_fallbacks_total"] != 1 {
		t.Errorf("%v fallbacks, want 1", m["ledger_ingest_batch_fallbacks_total"])
	}
	s.verifyChains()
}

// TestGroupCommitDatabaseFailure: the batch's connection dies before its
// commit. Every delivery of the batch reports the failure (the webhook
// answers 5xx and Stripe retries) and nothing of it is stored; the retry
// then records each once.
func TestGroupCommitDatabaseFailure(t *testing.T) {
	s := newGroupSetup(t, pgtest.NewDB(t), bookingstore.GroupCommit{MaxBatch: 64, Writers: 1})
	var ds []app.Delivery
	for i := range 4 {
		ds = append(ds, paid(s.book(fmt.Sprintf("fail-%d", i), "2027-05-01", "2027-05-03"), stripe.NewPaymentIntentID()))
	}
	var once sync.Once
	s.store.BeforeBatchWrite(func(ctx context.Context, tx *sql.Tx) error {
		var err error
		once.Do(func() { _, err = tx.ExecContext(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`) })
		return err
	})
	_, errs := s.ingestTogether(ds...)
	for i, err := range errs {
		if err == nil {
			t.Errorf("delivery %d: no error, though its transaction died", i)
		}
	}
	if n := s.count(`SELECT count(*) FROM stripe_inbox`); n != 0 {
		t.Errorf("%d inbox rows after a failed batch, want none", n)
	}
	res, errs := s.ingestTogether(ds...)
	for i := range ds {
		if errs[i] != nil || res[i].Outcome != app.OutcomeProcessed {
			t.Errorf("retry of delivery %d: %s, %v", i, res[i].Outcome, errs[i])
		}
	}
	if n := s.count(`SELECT count(*) FROM stripe_inbox`); n != len(ds) {
		t.Errorf("%d inbox rows after the retry, want %d", n, len(ds))
	}
	s.verifyChains()
}

// TestGroupCommitConcurrentWriters: two processes (pools) with several
// writers each take the same resources' locks in batches, with every
// delivery sent twice and in shuffled order. No deadlock surfaces as an
// error, every event is recorded once, and no resource holds two
// overlapping confirmed stays.
func TestGroupCommitConcurrentWriters(t *testing.T) {
	url := pgtest.NewURL(t)
	db1, err := postgres.Open(context.Background(), postgres.Config{URL: url, MaxOpenConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db1.Close() })
	db2, err := postgres.Open(context.Background(), postgres.Config{URL: url, MaxOpenConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	gc := bookingstore.GroupCommit{MaxBatch: 16, Writers: 3}
	s1 := newGroupSetup(t, db1, gc)
	s2 := newGroupSetup(t, db2, gc)
	var ds []app.Delivery
	for r := range 6 {
		for k := range 5 {
			// Stays of one resource overlapping their neighbours.
			in := time.Date(2027, 6, 1+2*k, 0, 0, 0, 0, time.UTC)
			id := s1.book(fmt.Sprintf("busy-%d", r), in.Format(domain.DateLayout), in.AddDate(0, 0, 3).Format(domain.DateLayout))
			ds = append(ds, paid(id, stripe.NewPaymentIntentID()))
		}
	}
	sends := append(append([]app.Delivery{}, ds...), ds...)
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })
	var wg sync.WaitGroup
	errs := make(chan error, len(sends))
	for i, d := range sends {
		svc := s1.svc
		if i%2 == 1 {
			svc = s2.svc
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := svc.Ingest(context.Background(), d); err != nil {
				errs <- fmt.Errorf("%s: %w", d.EventID, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s1.count(`SELECT count(*) FROM stripe_inbox`); n != len(ds) {
		t.Errorf("%d inbox rows, want %d", n, len(ds))
	}
	if n := s1.count(`SELECT count(*) FROM stripe_deliveries WHERE outcome = 'duplicate'`); n != len(ds) {
		t.Errorf("%d duplicate deliveries, want %d", n, len(ds))
	}
	if n := s1.count(`SELECT count(*) FROM ledger_events WHERE event_type = 'PaymentSucceeded'`); n != len(ds) {
		t.Errorf("%d PaymentSucceeded, want %d", n, len(ds))
	}
	if n := s1.count(`SELECT count(*) FROM bookings a JOIN bookings b ON a.resource_id = b.resource_id AND a.id < b.id
		AND a.status = 'confirmed' AND b.status = 'confirmed' AND daterange(a.check_in, a.check_out) && daterange(b.check_in, b.check_out)`); n != 0 {
		t.Errorf("%d overlapping confirmed pairs", n)
	}
	// Each resource: the stays alternate, so at least every other one is
	// confirmed; every booking is decided (confirmed or cancelled).
	if n := s1.count(`SELECT count(*) FROM bookings WHERE status = 'pending'`); n != 0 {
		t.Errorf("%d bookings still pending", n)
	}
	s1.verifyChains()
}

// metrics reads the group commit's counters by name.
func metrics(t *testing.T, s *bookingstore.Store) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, c := range s.Collectors() {
		if _, ok := c.(prometheus.Counter); !ok {
			continue
		}
		// Desc{fqName: "name", help: ...}
		_, rest, _ := strings.Cut(c.(prometheus.Counter).Desc().String(), `fqName: "`)
		name, _, _ := strings.Cut(rest, `"`)
		out[name] = testutil.ToFloat64(c)
	}
	return out
}

// TestGroupCommitWaitFillsBoundedBatches: with LEDGER_INGEST_BATCH_WAIT a
// writer waits for more deliveries instead of writing the first alone, and
// LEDGER_INGEST_BATCH bounds the batch: six payments for six resources,
// sent at once, are written as a batch of 4 then one of 2 (the inbox
// rows' transactions), and the batch-size histogram on /metrics says so.
func TestGroupCommitWaitFillsBoundedBatches(t *testing.T) {
	s := newGroupSetup(t, pgtest.NewDB(t), bookingstore.GroupCommit{MaxBatch: 4, MaxWait: 100 * time.Millisecond, Writers: 1})
	var ds []app.Delivery
	for i := range 6 {
		b := s.book(fmt.Sprintf("room-wait-%d", i), "2027-03-01", "2027-03-04")
		ds = append(ds, paid(b, stripe.NewPaymentIntentID()))
	}
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.svc.Ingest(context.Background(), d); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	var sizes []int
	rows, err := s.db.Query(`SELECT count(*) FROM stripe_inbox GROUP BY xmin::text ORDER BY 1 DESC`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int
		rows.Scan(&n)
		sizes = append(sizes, n)
	}
	rows.Close()
	if !reflect.DeepEqual(sizes, []int{4, 2}) {
		t.Errorf("inbox rows per transaction %v, want [4 2]", sizes)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(s.store.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var h *dto.Histogram
	for _, f := range families {
		if f.GetName() == "ledger_ingest_batch_size" {
			h = f.GetMetric()[0].GetHistogram()
		}
	}
	if h == nil || h.GetSampleCount() != 2 || h.GetSampleSum() != 6 {
		t.Errorf("ledger_ingest_batch_size %v, want 2 batches of 6 deliveries in all", h)
	}
}

// TestGroupCommitWritesRowsAsAlone: the rows a batch writes (its
// statement passes each table's columns as arrays) hold, column for
// column, what the single delivery's statements write for the same
// deliveries: raw bodies with bytes that are not text, quotes and
// backslashes, times with nanoseconds, a Connect account, NULLs.
func TestGroupCommitWritesRowsAsAlone(t *testing.T) {
	received := time.Date(2027, 2, 1, 10, 0, 0, 123456789, time.UTC)
	deliveries := func(bookings []int64) []app.Delivery {
		var ds []app.Delivery
		for i, b := range bookings {
			d := paid(b, fmt.Sprintf("pi_rows_%d", i))
			d.EventID = fmt.Sprintf("evt_rows_%d", i)
			d.Raw = []byte(fmt.Sprintf("{\"id\":\"evt_rows_%d\",\"note\":\"a \\\"quote\\\" and a \\\\ backslash\"}\x00\xff\xfe", i))
			d.Signature = `t=1,v1="` + strings.Repeat("ab", 32) + `"`
			d.APIVersion = "2023-10-16"
			if i%2 == 0 {
				d.Account = fmt.Sprintf("acct_%d", i) // else NULL
			}
			d.Created, d.ReceivedAt = received.Add(-time.Hour).Truncate(time.Second), received.Add(time.Duration(i)*time.Nanosecond)
			ds = append(ds, d)
		}
		for i := range ds {
			ds[i].Created = received.Add(-time.Hour).Truncate(time.Second)
		}
		unmatched := paid(1<<40, "pi_rows_unmatched")
		unmatched.EventID, unmatched.ReceivedAt, unmatched.Raw = "evt_rows_unmatched", received, []byte{0, 1, 2, '"', '\\'}
		ignored := paid(0, "")
		ignored.EventID, ignored.Type, ignored.Fact, ignored.ReceivedAt = "evt_rows_ignored", "customer.created", app.FactNone, received
		ignored.Created = received
		return append(ds, unmatched, ignored, ds[0]) // the last: a duplicate
	}
	tables := []string{
		`SELECT event_id, event_type, api_version, livemode, created, received_at, source, outcome, booking_id, payload, payload_sha256, signature_header, account FROM stripe_inbox ORDER BY event_id`,
		`SELECT event_id, event_type, received_at, outcome, booking_id, payload, payload_sha256, signature_header, account FROM stripe_deliveries ORDER BY event_id, outcome`,
		`SELECT stream_id, stream_version, event_type, schema_version, occurred_at, causation_id, payload, metadata, hash_version FROM ledger_events ORDER BY stream_id, stream_version`,
		`SELECT ` + bookingstore.BookingColumns + ` FROM bookings ORDER BY id`,
	}
	dump := func(s groupSetup) [][]string {
		var out [][]string
		for _, q := range tables {
			out = append(out, pgtest.QueryRows(t, s.db, q))
		}
		return out
	}
	setup := func(gc bookingstore.GroupCommit) (groupSetup, []app.Delivery) {
		// The clock ticks while the bookings are made, then stops: a
		// batch stores its events with one recorded_at, where deliveries
		// alone would each read the clock.
		now, ticking := received.Add(-24*time.Hour), true
		clock := func() time.Time {
			if ticking {
				now = now.Add(1234567 * time.Nanosecond)
			}
			return now
		}
		s := newGroupSetupAt(t, pgtest.NewDB(t), gc, clock)
		var bookings []int64
		for i := range 4 {
			bookings = append(bookings, s.book(fmt.Sprintf("room-rows-%d", i), "2027-03-01", "2027-03-04"))
		}
		ticking = false
		return s, deliveries(bookings)
	}

	alone, ds := setup(bookingstore.GroupCommit{})
	for i, d := range ds {
		if _, err := alone.svc.Ingest(context.Background(), d); err != nil {
			t.Fatalf("delivery %d alone: %v", i, err)
		}
	}
	batched, ds := setup(bookingstore.GroupCommit{MaxBatch: 64, Writers: 1})
	_, errs := batched.ingestTogether(ds[:len(ds)-1]...)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if _, err := batched.svc.Ingest(context.Background(), ds[len(ds)-1]); err != nil {
		t.Fatal(err)
	}
	if n := batched.count(`SELECT count(DISTINCT xmin::text) FROM stripe_inbox WHERE event_id LIKE 'evt_rows_%'`); n != 1 {
		t.Fatalf("the batch's inbox rows were written by %d transactions, want 1", n)
	}
	want, got := dump(alone), dump(batched)
	for i := range tables {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s\nbatch:\n%s\nalone:\n%s", tables[i], strings.Join(got[i], "\n"), strings.Join(want[i], "\n"))
		}
	}
	if len(want[0]) != 5 || len(want[1]) != 2 {
		t.Errorf("alone: %d inbox rows and %d delivery rows, want 5 and 2", len(want[0]), len(want[1]))
	}
}

// TestGroupCommitGenericPlans: a batch's transaction runs its statements
// with their generic plans (array parameters made PostgreSQL plan them on
// every batch), and the setting ends with the transaction: the pool's
// connections keep the server's.
func TestGroupCommitGenericPlans(t *testing.T) {
	db := pgtest.NewDB(t)
	db.SetMaxOpenConns(1) // the batch's connection is the one checked after
	s := newGroupSetup(t, db, bookingstore.GroupCommit{MaxBatch: 8, Writers: 1})
	var inBatch []string
	s.store.BeforeBatchWrite(func(ctx context.Context, tx *sql.Tx) error {
		var mode string
		err := tx.QueryRowContext(ctx, `SELECT current_setting('plan_cache_mode')`).Scan(&mode)
		inBatch = append(inBatch, mode)
		return err
	})
	a, b := s.book("room-plan-a", "2027-03-01", "2027-03-04"), s.book("room-plan-b", "2027-03-01", "2027-03-04")
	if _, errs := s.ingestTogether(paid(a, stripe.NewPaymentIntentID()), paid(b, stripe.NewPaymentIntentID())); errors.Join(errs...) != nil {
		t.Fatal(errors.Join(errs...))
	}
	if !reflect.DeepEqual(inBatch, []string{"force_generic_plan"}) {
		t.Errorf("plan_cache_mode in the batches: %v, want one batch with force_generic_plan", inBatch)
	}
	var after string
	if err := db.QueryRow(`SELECT current_setting('plan_cache_mode')`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != "auto" {
		t.Errorf("plan_cache_mode on the pool's connection after the batch: %q, want auto", after)
	}
}
