package eventstore_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

func TestAppendLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	now := time.Date(2027, 1, 1, 9, 30, 0, 987654321, time.UTC)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{Now: func() time.Time { return now }})

	first := pgtest.NewEvent("BookingRequested", map[string]any{"booking_id": 7, "resource_id": "room-12", "note": "<b>&</b> é"})
	first.Metadata = map[string]string{"correlation_id": "req-1"}
	appended, err := pgtest.AppendTx(ctx, db, store, 7, first, pgtest.NewEvent("PaymentSucceeded", map[string]any{"amount": 36000, "currency": "eur"}))
	if err != nil {
		t.Fatal(err)
	}
	more, err := pgtest.AppendTx(ctx, db, store, 7, pgtest.NewEvent("BookingConfirmed", map[string]any{}))
	if err != nil {
		t.Fatal(err)
	}
	appended = append(appended, more...)
	if _, err := pgtest.AppendTx(ctx, db, store, 8, pgtest.NewEvent("BookingRequested", map[string]any{"booking_id": 8})); err != nil {
		t.Fatal(err)
	}

	loaded, err := store.LoadStream(ctx, db, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 3 {
		t.Fatalf("loaded %d events, want 3", len(loaded))
	}
	for i, got := range loaded {
		want := appended[i]
		if got.Position <= 0 || (i > 0 && got.Position <= loaded[i-1].Position) {
			t.Errorf("event %d: position %d not increasing", i, got.Position)
		}
		if got.EventID != want.EventID || got.StreamID != 7 || got.StreamVersion != i+1 || got.Type != want.Type ||
			got.SchemaVersion != 1 || got.CausationID != "evt_test" {
			t.Errorf("event %d: envelope %+v, want %+v", i, got, want)
		}
		if !got.OccurredAt.Equal(want.OccurredAt) || !got.RecordedAt.Equal(now.Truncate(time.Microsecond)) {
			t.Errorf("event %d: occurred %v recorded %v", i, got.OccurredAt, got.RecordedAt)
		}
		canon, _ := eventlog.CanonicalJSON(got.Payload)
		if string(canon) != string(want.Payload) {
			t.Errorf("event %d: payload %s, want %s", i, canon, want.Payload)
		}
		if string(got.Hash) != string(want.Hash) || string(got.PrevHash) != string(want.PrevHash) {
			t.Errorf("event %d: hashes differ from the appended ones", i)
		}
		if got.TransactionID == 0 {
			t.Errorf("event %d: no transaction id", i)
		}
	}
	if loaded[0].Metadata["correlation_id"] != "req-1" {
		t.Errorf("metadata = %v", loaded[0].Metadata)
	}
	if pos, err := eventlog.VerifyStream(loaded); err != nil {
		t.Errorf("chain of an untouched stream: %v at %d", err, pos)
	}

	all, err := store.ReadAll(ctx, db, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := store.ReadAll(ctx, db, all[len(all)-1].Position, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(all) + len(rest); got != 4 {
		t.Errorf("ReadAll in pages gave %d events, want 4", got)
	}
	head, err := store.HeadPosition(ctx, db)
	if err != nil || head != rest[len(rest)-1].Position {
		t.Errorf("head = %d, %v", head, err)
	}
}

func TestAppendSameVersionConcurrentlyExactlyOneWins(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	if _, err := pgtest.AppendTx(ctx, db, store, 1, pgtest.NewEvent("BookingRequested", map[string]any{"booking_id": 1})); err != nil {
		t.Fatal(err)
	}
	loaded, _ := store.LoadStream(ctx, db, 1)

	const writers = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				_, err := store.Append(ctx, tx, 1, 1, loaded[0].Hash, []eventstore.NewEvent{pgtest.NewEvent("PaymentSucceeded", map[string]any{"writer": i})})
				return err
			})
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, domain.ErrConcurrency):
		default:
			t.Errorf("writer %d: %v, want nil or ErrConcurrency", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won, want exactly 1", wins)
	}
	var n int
	db.QueryRow(`SELECT count(*) FROM ledger_events WHERE stream_id = 1`).Scan(&n)
	if n != 2 {
		t.Fatalf("stream has %d events, want 2", n)
	}
}

func TestEventsTableIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	if _, err := pgtest.AppendTx(ctx, db, store, 1, pgtest.NewEvent("BookingRequested", map[string]any{"booking_id": 1})); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`UPDATE ledger_events SET payload = '{"booking_id": 2}'`,
		`UPDATE ledger_events SET event_type = 'X' WHERE stream_id = 1`,
		`DELETE FROM ledger_events`,
		`DELETE FROM ledger_events WHERE stream_id = 1`,
		`TRUNCATE ledger_events`,
		`TRUNCATE ledger_events CASCADE`,
	} {
		if _, err := db.Exec(stmt); err == nil {
			t.Errorf("%s: accepted, want rejected", stmt)
		}
	}
	var n int
	var payload string
	db.QueryRow(`SELECT count(*), min(payload::text) FROM ledger_events`).Scan(&n, &payload)
	if n != 1 || payload != `{"booking_id": 1}` {
		t.Fatalf("after the rejected changes: %d events, payload %s", n, payload)
	}
}

func TestRolledBackTransactionLeavesNoEvent(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	boom := errors.New("decision failed after the append")
	err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := store.Append(ctx, tx, 1, 0, nil, []eventstore.NewEvent{pgtest.NewEvent("BookingRequested", map[string]any{"booking_id": 1})}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Transact = %v, want %v", err, boom)
	}
	var n int
	db.QueryRow(`SELECT count(*) FROM ledger_events`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d events after rollback, want 0", n)
	}
	// The stream is still free at version 1.
	if _, err := pgtest.AppendTx(ctx, db, store, 1, pgtest.NewEvent("BookingRequested", map[string]any{"booking_id": 1})); err != nil {
		t.Fatal(err)
	}
}

func TestHashChainDetectsChangedPayload(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	for i := range 3 {
		if _, err := pgtest.AppendTx(ctx, db, store, 5, pgtest.NewEvent("Step", map[string]any{"n": i, "amount": 36000})); err != nil {
			t.Fatal(err)
		}
	}
	events, _ := store.LoadStream(ctx, db, 5)
	if pos, err := eventlog.VerifyStream(events); err != nil {
		t.Fatalf("untouched stream: %v at %d", err, pos)
	}

	// Someone with enough rights bypasses the trigger and edits the middle event.
	if _, err := db.Exec(`ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_append_only`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE ledger_events SET payload = jsonb_set(payload, '{amount}', '1') WHERE stream_id = 5 AND stream_version = 2`); err != nil {
		t.Fatal(err)
	}
	events, _ = store.LoadStream(ctx, db, 5)
	pos, err := eventlog.VerifyStream(events)
	if err == nil {
		t.Fatal("a changed payload verified")
	}
	if pos != events[1].Position {
		t.Fatalf("broken position %d, want %d (%v)", pos, events[1].Position, err)
	}
}

func TestAppendRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t)
	store := eventstore.NewEventStore(eventstore.EventStoreConfig{})
	tests := []struct {
		name   string
		events []eventstore.NewEvent
	}{
		{"invalid json", []eventstore.NewEvent{{Type: "X", SchemaVersion: 1, Payload: []byte(`{`)}}},
		{"no type", []eventstore.NewEvent{{SchemaVersion: 1, Payload: []byte(`{}`)}}},
		{"no schema version", []eventstore.NewEvent{{Type: "X", Payload: []byte(`{}`)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				_, err := store.Append(ctx, tx, 1, 0, nil, tt.events)
				return err
			})
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	var n int
	db.QueryRow(`SELECT count(*) FROM ledger_events`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d events written", n)
	}
}
