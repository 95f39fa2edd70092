package eventstore

import (
	"context"
	"database/sql"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// A consumer group read a batch at a time, with the subscriber's own
// queries (watermill-sql's SelectQuery of this package's schema adapter,
// and its offsets adapter's queries) but without its delivery loop, for a
// reader that must act on a whole batch before moving the offset: the
// forwarder publishes a batch to NATS with many messages in flight, while
// the subscriber hands over one message at a time and commits the offset
// only after the last is acknowledged. Same table, same order, same
// exactly-once rule as NewSubscriber's groups; one difference: the offset
// row is read without FOR UPDATE, so the reading transaction takes no
// transaction id (a row lock would give it one, and every subscriber of
// the log waits for transactions with an id below its snapshot's xmin):
// the caller serializes the readers of its group itself, e.g. with an
// advisory lock, and only its final AckGroup takes an id.

// JoinGroup creates group's offset row, at the start of the log, when it
// is missing (what the subscriber does before its first poll).
func JoinGroup(ctx context.Context, db *sql.DB, group string) error {
	qs, err := offsetsAdapter().BeforeSubscribingQueries(wsql.BeforeSubscribingQueriesParams{Topic: EventsTopic, ConsumerGroup: group})
	if err != nil {
		return fmt.Errorf("eventstore: join group %s: %w", group, err)
	}
	for _, q := range qs {
		if _, err := db.ExecContext(ctx, q.Query, q.Args...); err != nil {
			return fmt.Errorf("eventstore: join group %s: %w", group, err)
		}
	}
	return nil
}

// ReadGroup reads, in one statement of tx, up to limit committed events
// after group's offset, in the subscribers' (transaction_id, position)
// order. It does not lock the offset row: the caller makes sure that one
// reader of the group at a time reads and acknowledges.
func ReadGroup(ctx context.Context, tx *sql.Tx, group string, limit int) ([]StoredEvent, error) {
	return readGroup(ctx, tx, group, limit, unlockedOffsets{offsetsAdapter()})
}

// ReadGroupLocked is ReadGroup with the group's offset row locked until tx
// ends, as a subscriber's poll locks it: one poll of the group at a time,
// and whoever locks the row (a rebuild) pauses the group.
func ReadGroupLocked(ctx context.Context, tx *sql.Tx, group string, limit int) ([]StoredEvent, error) {
	return readGroup(ctx, tx, group, limit, offsetsAdapter())
}

func readGroup(ctx context.Context, tx *sql.Tx, group string, limit int, offsets wsql.OffsetsAdapter) ([]StoredEvent, error) {
	q, err := eventsSchema{batchSize: limit}.SelectQuery(wsql.SelectQueryParams{Topic: EventsTopic, ConsumerGroup: group, OffsetsAdapter: offsets})
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, q.Query, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read group %s: %w", group, err)
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		e, err := ScanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("eventstore: read group %s: %w", group, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eventstore: read group %s: %w", group, err)
	}
	return out, nil
}

// AckGroup moves group's offset to e, in tx (the subscriber's ack query).
func AckGroup(ctx context.Context, tx *sql.Tx, group string, e StoredEvent) error {
	q, err := offsetsAdapter().AckMessageQuery(wsql.AckMessageQueryParams{
		Topic:         EventsTopic,
		ConsumerGroup: group,
		LastRow:       wsql.Row{Offset: e.Position, ExtraData: map[string]any{"transaction_id": wsql.XID8(e.TransactionID)}},
	})
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
		return fmt.Errorf("eventstore: ack group %s at %d: %w", group, e.Position, err)
	}
	return nil
}

// unlockedOffsets is the subscribers' offsets adapter with the offset row
// read without FOR UPDATE (see ReadGroup).
type unlockedOffsets struct{ wsql.OffsetsAdapter }

func (a unlockedOffsets) NextOffsetQuery(params wsql.NextOffsetQueryParams) (wsql.Query, error) {
	return wsql.Query{
		Query: `SELECT offset_acked, last_processed_transaction_id FROM ledger_events_offsets WHERE consumer_group = $1`,
		Args:  []any{params.ConsumerGroup},
	}, nil
}
