package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// foldMonitoringFromScratch folds the whole log into the monitoring
// projection in memory, skipping what does not decode.
func foldMonitoringFromScratch(t testing.TB, db *sql.DB) (*projections.Monitoring, []int64) {
	t.Helper()
	store := postgres.NewEventStore(postgres.EventStoreConfig{})
	var envs []projections.Envelope
	var poison []int64
	for after := int64(0); ; {
		page, err := store.ReadAll(context.Background(), db, after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
			if err != nil {
				poison = append(poison, e.Position)
				continue
			}
			envs = append(envs, projections.Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: ev})
		}
		after = page[len(page)-1].Position
	}
	m, skipped := projections.FoldMonitoring(envs)
	for _, e := range skipped {
		poison = append(poison, e.Position)
	}
	return m, poison
}

// sameMonitoring compares the monitoring tables with a fold, table by table.
func sameMonitoring(t testing.TB, what string, want *projections.Monitoring, db *sql.DB) {
	t.Helper()
	got, err := postgres.ReadMonitoring(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range projections.MonitoringTables {
		w, g := want.Rows(table.Name), got.Rows(table.Name)
		if !reflect.DeepEqual(w, g) {
			t.Errorf("%s: %s\n got %v\nwant %v", what, table.Name, g, w)
		}
	}
	if len(want.Rows(projections.TableEventsByType)) == 0 {
		t.Errorf("%s: the fold is empty", what)
	}
}

// waitApplied waits until the monitoring projection has applied every
// committed event (not a timed assertion: the deadline only stops a hung
// test).
func waitApplied(t testing.TB, db *sql.DB) postgres.ProjectionStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		statuses, err := postgres.ProjectionStatuses(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		s := statuses[1]
		if s.Name != projections.MonitoringName {
			t.Fatalf("status %+v", statuses)
		}
		if s.LagEvents == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("monitoring still %d events behind", s.LagEvents)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startMonitoring(t testing.TB, db *sql.DB) *postgres.MonitoringConsumer {
	t.Helper()
	c, err := postgres.NewMonitoringConsumer(postgres.MonitoringConfig{DB: db, PollInterval: 10 * time.Millisecond, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); c.Close(); <-done })
	<-c.Running()
	return c
}

// TestMonitoringDeadLettersPoisonAndGoesOn: events that do not decode (an
// unknown cancellation reason, an unknown type) land in the dead-letter
// table with their error and payload, and the subscriber applies the
// events behind them; the tables equal a fold of the log without them, also
// after a rebuild, which records no second dead letter.
func TestMonitoringDeadLettersPoisonAndGoesOn(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t)
	store := postgres.NewEventStore(postgres.EventStoreConfig{})
	pgtest.FillLog(t, db, 0, 100)
	_, err := appendTx(ctx, db, store, 999_999,
		newEvent(domain.EventBookingCancelled, map[string]any{"reason": "bored"}),
		newEvent("BookingTeleported", map[string]any{"to": "mars"}))
	if err != nil {
		t.Fatal(err)
	}
	pgtest.FillLog(t, db, 100, 100)
	startMonitoring(t, db)
	s := waitApplied(t, db)

	want, skipped := foldMonitoringFromScratch(t, db)
	if len(skipped) != 2 {
		t.Fatalf("fold skipped %v", skipped)
	}
	sameMonitoring(t, "after the subscriber", want, db)
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

	res, err := newRebuilder(t, postgres.RebuildConfig{DB: db, BatchSize: 100}).Rebuild(ctx, projections.MonitoringName)
	if err != nil {
		t.Fatal(err)
	}
	if res.DeadLettered != 2 || !res.Swapped {
		t.Errorf("rebuild %+v", res)
	}
	sameMonitoring(t, "after a rebuild", want, db)
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
	ctx := context.Background()
	db := newTestDB(t)
	pgtest.FillLog(t, db, 0, 300)
	startMonitoring(t, db)
	next := int64(300)
	more := func(ctx context.Context) error {
		pgtest.FillLog(t, db, next, 20)
		next += 20
		return nil
	}
	r := newRebuilder(t, postgres.RebuildConfig{DB: db, BatchSize: 100, Hooks: postgres.RebuildHooks{AfterBatch: func(ctx context.Context, _ int64) error {
		return more(ctx)
	}, BeforeCatchUp: more}})
	res, err := r.Rebuild(ctx, projections.MonitoringName)
	if err != nil {
		t.Fatal(err)
	}
	if res.CaughtUp == 0 {
		t.Errorf("nothing to catch up: %+v", res)
	}
	pgtest.FillLog(t, db, next, 20)
	waitApplied(t, db)
	want, _ := foldMonitoringFromScratch(t, db)
	sameMonitoring(t, "after the rebuild", want, db)
}
