package readmodels_test

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

func startMonitoring(t testing.TB, db *sql.DB) *readmodels.MonitoringConsumer {
	t.Helper()
	c, err := readmodels.NewMonitoringConsumer(readmodels.MonitoringConfig{DB: db, PollInterval: 10 * time.Millisecond, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); c.Close(); <-done })
	wait := pgtest.Context(t)
	select {
	case <-c.Running():
	case <-done:
		t.Fatal("the monitoring subscriber stopped before it ran")
	case <-wait.Done():
		t.Fatalf("the monitoring subscriber never started: %v", context.Cause(wait))
	}
	return c
}

// TestMonitoringDeadLettersPoisonAndGoesOn: events that do not decode (an
// unknown cancellation reason, an unknown type) land in the dead-letter
// table with their error and payload, and the subscriber applies the
// events behind them; the tables equal a fold of the log without them, also
// after a rebuild, which records no second dead letter.
func TestMonitoringDeadLettersPoisonAndGoesOn(t *testing.T) {
	ctx := pgtest.Context(t)
	db := newTestDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	pgtest.FillLog(t, db, 0, 100)
	poison := []eventstore.NewEvent{
		{Type: domain.EventBookingCancelled, SchemaVersion: 1, OccurredAt: time.Now(), CausationID: "evt_test", Payload: []byte(`{"reason": "bored"}`)},
		{Type: "BookingTeleported", SchemaVersion: 1, OccurredAt: time.Now(), CausationID: "evt_test", Payload: []byte(`{"to": "mars"}`)},
	}
	// A stream of its own, new: version 0 after the genesis hash.
	err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := store.Append(ctx, tx, 999_999, 0, eventlog.GenesisHash, poison)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	pgtest.FillLog(t, db, 100, 100)
	startMonitoring(t, db)
	s := pgtest.WaitMonitoring(t, db)

	want, skipped := pgtest.FoldMonitoring(t, db)
	if len(skipped) != 2 {
		t.Fatalf("fold skipped %v", skipped)
	}
	pgtest.SameMonitoring(t, "after the subscriber", want, db)
	if s.DeadLettered != 2 || !strings.Contains(s.LastError, "BookingTeleported") || s.LastErrorAt == nil {
		t.Errorf("status %+v, want 2 dead letters and the last error", s)
	}
	rows, err := db.Query(`SELECT position, event_type, error, convert_from(payload, 'UTF8') FROM projection_dead_letters ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var pos int64
		var typ, msg, payload string
		rows.Scan(&pos, &typ, &msg, &payload)
		got = append(got, fmt.Sprintf("%d %s %t %s", pos, typ, strings.Contains(msg, "unknown"), strings.ReplaceAll(payload, " ", "")))
	}
	rows.Close()
	// Append does not return positions: read them.
	var first, second int64
	db.QueryRow(`SELECT min(position), max(position) FROM ledger_events WHERE stream_id = 999999`).Scan(&first, &second)
	wantDead := []string{
		fmt.Sprintf(`%d BookingCancelled true {"reason":"bored"}`, first),
		fmt.Sprintf(`%d BookingTeleported true {"to":"mars"}`, second),
	}
	if !reflect.DeepEqual(got, wantDead) {
		t.Errorf("dead letters\n%v\nwant\n%v", got, wantDead)
	}

	res, err := newRebuilder(t, readmodels.RebuildConfig{DB: db, BatchSize: 100}).Rebuild(ctx, projections.MonitoringName)
	if err != nil {
		t.Fatal(err)
	}
	if res.DeadLettered != 2 || !res.Swapped {
		t.Errorf("rebuild %+v", res)
	}
	pgtest.SameMonitoring(t, "after a rebuild", want, db)
	if s := pgtest.WaitMonitoring(t, db); s.Position != s.Head || s.DeadLettered != 2 {
		t.Errorf("status after the rebuild %+v, want the head as position", s)
	}
	var n int
	db.QueryRow(`SELECT count(*) FROM projection_dead_letters`).Scan(&n)
	if n != 2 {
		t.Errorf("%d dead letters after the rebuild, want 2", n)
	}
}

// TestMonitoringRebuildWhileTheSubscriberRuns: events keep arriving while
// the monitoring projection is rebuilt under a running subscriber, and its
// tables end equal to a fold of the whole log: nothing applied twice or
// lost at the hand-over.
func TestMonitoringRebuildWhileTheSubscriberRuns(t *testing.T) {
	ctx := pgtest.Context(t)
	db := newTestDB(t)
	pgtest.FillLog(t, db, 0, 300)
	startMonitoring(t, db)
	next := int64(300)
	more := func(ctx context.Context) error {
		pgtest.FillLog(t, db, next, 20)
		next += 20
		return nil
	}
	r := newRebuilder(t, readmodels.RebuildConfig{DB: db, BatchSize: 100, Hooks: readmodels.RebuildHooks{AfterBatch: func(ctx context.Context, _ int64) error {
		return more(ctx)
	}, BeforeCatchUp: more}})
	// How the events split between the rebuild and the subscriber depends
	// on the oldest transaction running anywhere in the cluster (both read
	// only below it), so only the end state is asserted.
	if _, err := r.Rebuild(ctx, projections.MonitoringName); err != nil {
		t.Fatal(err)
	}
	pgtest.FillLog(t, db, next, 20)
	pgtest.WaitMonitoring(t, db)
	want, _ := pgtest.FoldMonitoring(t, db)
	pgtest.SameMonitoring(t, "after the rebuild", want, db)
}

// BenchmarkMonitoringCatchUp: the monitoring consumer applies a log of
// 35,000 events (pgtest.FillLog, 10,000 bookings) from the start, as after
// a deploy or an ingest peak; events/s is its catch-up rate.
//
//	go test -run '^$' -bench BenchmarkMonitoringCatchUp -benchtime 1x ./adapters/postgres/readmodels/
func BenchmarkMonitoringCatchUp(b *testing.B) {
	for range b.N {
		b.StopTimer()
		db := pgtest.NewDB(b)
		n := pgtest.FillLog(b, db, 0, 10_000)
		b.StartTimer()
		start := time.Now()
		c, err := readmodels.NewMonitoringConsumer(readmodels.MonitoringConfig{DB: db, PollInterval: 10 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		go c.Run(pgtest.Context(b))
		pgtest.WaitMonitoring(b, db)
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		b.StopTimer()
		c.Close()
	}
}
