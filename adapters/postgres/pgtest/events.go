package pgtest

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// NewEvent is an event of type typ with payload as JSON, schema version 1,
// a fixed occurred_at and causation, for tests that write a log.
func NewEvent(typ string, payload any) eventstore.NewEvent {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return eventstore.NewEvent{
		Type:          typ,
		SchemaVersion: 1,
		OccurredAt:    time.Date(2027, 1, 10, 12, 0, 0, 123456789, time.UTC),
		CausationID:   "evt_test",
		Payload:       b,
	}
}

// AppendTx appends events to a stream in a transaction of its own, after
// the stream's current last event.
func AppendTx(ctx context.Context, db *sql.DB, store *eventstore.EventStore, stream int64, events ...eventstore.NewEvent) ([]eventstore.StoredEvent, error) {
	var out []eventstore.StoredEvent
	err := postgres.Transact(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		prev, err := store.LoadStream(ctx, tx, stream)
		if err != nil {
			return err
		}
		version, hash := 0, eventlog.GenesisHash
		if n := len(prev); n > 0 {
			version, hash = prev[n-1].StreamVersion, prev[n-1].Hash
		}
		out, err = store.Append(ctx, tx, stream, version, hash, events)
		return err
	})
	return out, err
}
