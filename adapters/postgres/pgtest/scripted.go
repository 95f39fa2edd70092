package pgtest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// ScriptedLog appends hand-chosen domain events with a hand-chosen
// recorded_at, so that tests can state their expected results as literal
// values. It goes through the real event store (hashes, triggers, the
// watermill-sql schema); only the clock is the test's.
type ScriptedLog struct {
	t     *testing.T
	db    *sql.DB
	at    time.Time
	store *eventstore.EventStore
}

// NewScriptedLog returns an empty script on db.
func NewScriptedLog(t *testing.T, db *sql.DB) *ScriptedLog {
	l := &ScriptedLog{t: t, db: db}
	l.store = eventstore.NewEventStore(eventstore.EventStoreConfig{Now: func() time.Time { return l.at }})
	return l
}

// Append appends evs to stream in one transaction, all recorded at at
// (which may lie before earlier appends: the clock is the test's).
func (l *ScriptedLog) Append(stream int64, at time.Time, evs ...domain.Event) {
	l.t.Helper()
	l.at = at
	news := make([]eventstore.NewEvent, len(evs))
	for i, ev := range evs {
		payload, err := domain.Encode(ev)
		if err != nil {
			l.t.Fatal(err)
		}
		news[i] = eventstore.NewEvent{Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), OccurredAt: at, CausationID: "scripted", Payload: payload}
	}
	ctx := context.Background()
	err := postgres.Transact(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
		prev, err := l.store.LoadStream(ctx, tx, stream)
		if err != nil {
			return err
		}
		version, hash := 0, eventlog.GenesisHash
		if n := len(prev); n > 0 {
			version, hash = prev[n-1].StreamVersion, prev[n-1].Hash
		}
		_, err = l.store.Append(ctx, tx, stream, version, hash, news)
		return err
	})
	if err != nil {
		l.t.Fatalf("append to stream %d at %s: %v", stream, at, err)
	}
}

// Requested is a valid BookingRequested of booking id.
func Requested(id int64, resource string, amount int64, currency string, at time.Time) domain.BookingRequested {
	return domain.BookingRequested{
		BookingID: domain.BookingID(id), ResourceID: resource, CheckIn: "2027-06-01", CheckOut: "2027-06-03",
		Amount: amount, Currency: currency, CustomerEmail: "guest@example.com", RequestedAt: at,
	}
}

// QueryRows returns every row of query, each as its columns' text joined
// by " | ", in the query's order.
func QueryRows(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT array_to_string(ARRAY(SELECT x FROM json_each_text(row_to_json(q)) AS j(k, x)), ' | ') FROM (` + query + `) q`)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
