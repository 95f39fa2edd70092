package eventstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// NewEvent and StoredEvent are the log's own types (domain/eventlog).
type (
	NewEvent    = eventlog.NewEvent
	StoredEvent = eventlog.StoredEvent
)

// EventStoreConfig configures an EventStore.
type EventStoreConfig struct {
	// Logger receives watermill's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock for recorded_at; nil means time.Now.
	Now func() time.Time
}

func (c *EventStoreConfig) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
}

// EventStore appends events through watermill-sql's publisher and reads
// them back. It holds no connection: every call runs on the caller's
// transaction or pool.
type EventStore struct {
	now    func() time.Time
	logger watermill.LoggerAdapter
	schema eventsSchema
	// pub is the one publisher of the store; its executor runs each
	// Publish on the transaction Append passes in the context.
	pub    *wsql.Publisher
	pubErr error
	// stmts are the prepared statements of the Ledger that owns the store
	// (none for a store of its own: its appends run unprepared).
	stmts *postgres.Statements
}

// Statements are the store's prepared statements, shared with the writer
// that owns the store (its queries are prepared with the store's).
func (s *EventStore) Statements() *postgres.Statements { return s.stmts }

// NewEventStore returns an event store with cfg's defaults applied.
func NewEventStore(cfg EventStoreConfig) *EventStore {
	cfg.setDefaults()
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if cfg.Logger != nil {
		logger = watermill.NewSlogLogger(cfg.Logger)
	}
	s := &EventStore{now: cfg.Now, logger: logger, stmts: &postgres.Statements{}}
	s.pub, s.pubErr = wsql.NewPublisher(txExecutor{stmts: s.stmts}, wsql.PublisherConfig{SchemaAdapter: s.schema}, s.logger)
	return s
}

// Append appends events to stream streamID on tx, numbering them from
// expectedVersion+1 and chaining their hashes from prevHash (the Hash of the
// stream's event number expectedVersion, or GenesisHash when it is 0).
//
// It publishes with the store's watermill-sql Publisher, whose executor runs
// the INSERT on tx, so the events commit or roll back with everything else
// the transaction does. When
// another transaction has already appended at one of these versions, it
// returns an error wrapping domain.ErrConcurrency; the transaction is then
// aborted and must be rolled back. The returned events carry every envelope
// field but Position and TransactionID, which the database assigns.
func (s *EventStore) Append(ctx context.Context, tx *sql.Tx, streamID int64, expectedVersion int, prevHash []byte, events []NewEvent) ([]StoredEvent, error) {
	return s.appendAt(ctx, tx, streamID, expectedVersion, prevHash, events, s.now())
}

// Trailer is SQL that an append runs in the same statement as the events'
// INSERT, to save a round trip: SQL wraps InsertQuery (whose InsertColumns
// parameters come first) into a statement that returns one row, scanned
// into Dest; Args follow the INSERT's parameters. InsertQuery's text is the
// same for any number of events, so SQL is one text, which the caller may
// prepare. The booking write side writes the status row and the inbox row
// this way.
type Trailer struct {
	SQL  string
	Args []any
	Dest []any
	done bool
}

// AppendWith is Append with recorded_at given and, when trailer is not nil,
// the trailer's SQL run in the INSERT's statement (see Trailer). Errors are
// Append's; a constraint of the trailer's statement is reported as it is.
func (s *EventStore) AppendWith(ctx context.Context, tx *sql.Tx, streamID int64, expectedVersion int, prevHash []byte, events []NewEvent, recordedAt time.Time, trailer *Trailer) ([]StoredEvent, error) {
	if trailer != nil {
		ctx = context.WithValue(ctx, trailerKey{}, trailer)
	}
	return s.appendAt(ctx, tx, streamID, expectedVersion, prevHash, events, recordedAt)
}

// appendAt is Append with recorded_at given.
func (s *EventStore) appendAt(ctx context.Context, tx *sql.Tx, streamID int64, expectedVersion int, prevHash []byte, events []NewEvent, recordedAt time.Time) ([]StoredEvent, error) {
	if len(events) == 0 {
		return nil, nil
	}
	stored, err := s.publish(ctx, tx, []StreamAppend{{StreamID: streamID, ExpectedVersion: expectedVersion, PrevHash: prevHash, Events: events}}, recordedAt)
	if err != nil {
		return nil, err
	}
	return stored[0], nil
}

// StreamAppend is what AppendBatch appends to one stream: Events numbered
// from ExpectedVersion+1, their hashes chained from PrevHash (see Append).
type StreamAppend struct {
	StreamID        int64
	ExpectedVersion int
	PrevHash        []byte
	Events          []NewEvent
}

// AppendBatch appends to several streams in one INSERT (one Publish of the
// store's publisher), with trailer run in its statement as AppendWith does:
// the group commit of the booking write side. Each stream's events are
// numbered and chained as Append does; the result holds each append's
// stored events, in the order of appends. An append without events is
// allowed and stores nothing; with no event at all nothing is published and
// the trailer is not run (the caller runs its SQL itself). A taken stream
// version of any stream fails the whole INSERT with domain.ErrConcurrency.
func (s *EventStore) AppendBatch(ctx context.Context, tx *sql.Tx, appends []StreamAppend, recordedAt time.Time, trailer *Trailer) ([][]StoredEvent, error) {
	if trailer != nil {
		ctx = context.WithValue(ctx, trailerKey{}, trailer)
	}
	return s.publish(ctx, tx, appends, recordedAt)
}

// publish numbers, hashes and publishes appends in one Publish.
func (s *EventStore) publish(ctx context.Context, tx *sql.Tx, appends []StreamAppend, recordedAt time.Time) ([][]StoredEvent, error) {
	if s.pubErr != nil {
		return nil, fmt.Errorf("eventstore: publisher: %w", s.pubErr)
	}
	// The publisher executes with the first message's context: it carries
	// the transaction to txExecutor.
	ctx = context.WithValue(ctx, txKey{}, tx)
	recordedAt = eventlog.StorageTime(recordedAt)
	n := 0
	for _, a := range appends {
		n += len(a.Events)
	}
	out := make([][]StoredEvent, len(appends))
	msgs := make(message.Messages, 0, n)
	for i, a := range appends {
		stored, err := s.messages(ctx, a, recordedAt, &msgs)
		if err != nil {
			return nil, err
		}
		out[i] = stored
	}
	if len(msgs) == 0 {
		return out, nil
	}
	if err := s.pub.Publish(EventsTopic, msgs...); err != nil {
		if postgres.ConstraintViolated(err, "ledger_events_stream_version_key") {
			if len(appends) == 1 {
				return nil, fmt.Errorf("eventstore: append to stream %d at version %d: %w", appends[0].StreamID, appends[0].ExpectedVersion+1, domain.ErrConcurrency)
			}
			return nil, fmt.Errorf("eventstore: append to %d streams: a stream version is taken: %w", len(appends), domain.ErrConcurrency)
		}
		return nil, fmt.Errorf("eventstore: append: %w", err)
	}
	return out, nil
}

// messages numbers and hashes one stream's events and adds their messages
// to msgs.
func (s *EventStore) messages(ctx context.Context, a StreamAppend, recordedAt time.Time, msgs *message.Messages) ([]StoredEvent, error) {
	streamID, expectedVersion, prevHash := a.StreamID, a.ExpectedVersion, a.PrevHash
	if expectedVersion < 0 {
		return nil, fmt.Errorf("eventstore: append to stream %d: negative expected version: %w", streamID, domain.ErrInvalid)
	}
	if expectedVersion == 0 {
		prevHash = eventlog.GenesisHash
	}
	if len(prevHash) != len(eventlog.GenesisHash) {
		return nil, fmt.Errorf("eventstore: append to stream %d: previous hash of %d bytes: %w", streamID, len(prevHash), domain.ErrInvalid)
	}
	stored := make([]StoredEvent, len(a.Events))
	for i, ne := range a.Events {
		payload, err := eventlog.CanonicalJSON(ne.Payload)
		if err != nil {
			return nil, fmt.Errorf("eventstore: append %s to stream %d: %w", ne.Type, streamID, err)
		}
		id := ne.EventID
		if id == "" {
			id = uuid.NewString()
		}
		e := StoredEvent{
			EventID:       id,
			StreamID:      streamID,
			StreamVersion: expectedVersion + i + 1,
			Type:          ne.Type,
			SchemaVersion: ne.SchemaVersion,
			OccurredAt:    eventlog.StorageTime(ne.OccurredAt),
			RecordedAt:    recordedAt,
			CausationID:   ne.CausationID,
			Payload:       payload,
			Metadata:      ne.Metadata,
			PrevHash:      prevHash,
			HashVersion:   eventlog.CurrentHashVersion,
		}
		if e.Type == "" || e.SchemaVersion < 1 {
			return nil, fmt.Errorf("eventstore: append to stream %d: event without type or schema version: %w", streamID, domain.ErrInvalid)
		}
		for k := range ne.Metadata {
			// The envelope's keys travel in the same message metadata and
			// are not stored there: the hash would cover a value the row
			// does not keep.
			if envelopeKeys[k] {
				return nil, fmt.Errorf("eventstore: append to stream %d: metadata key %q is reserved: %w", streamID, k, domain.ErrInvalid)
			}
		}
		e.Hash = eventlog.EventHash(e, prevHash)
		prevHash = e.Hash
		stored[i] = e

		msg := message.NewMessage(id, message.Payload(payload))
		// Room for the envelope's keys, set below, without regrowing.
		msg.Metadata = make(message.Metadata, len(ne.Metadata)+len(envelopeKeys))
		for k, v := range ne.Metadata {
			msg.Metadata.Set(k, v)
		}
		setEnvelope(msg, e)
		msg.SetContext(ctx)
		*msgs = append(*msgs, msg)
	}
	return stored, nil
}

// LoadStream returns the events of one stream in version order; an unknown
// stream has none.
func (s *EventStore) LoadStream(ctx context.Context, q postgres.Querier, streamID int64) ([]StoredEvent, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+SelectColumns+` FROM ledger_events WHERE stream_id = $1 ORDER BY stream_version`, streamID)
	if err != nil {
		return nil, fmt.Errorf("eventstore: load stream %d: %w", streamID, err)
	}
	events, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("eventstore: load stream %d: %w", streamID, err)
	}
	return events, nil
}

// ReadAll returns up to limit events with a position greater than after, in
// position order. Paging with the last position read walks the whole log
// with memory bounded by limit.
//
// Position order is not commit order: an event of a transaction still in
// flight can later appear behind a position already read. Readers that must
// see every event exactly once while appends go on use a Subscriber, or
// bound the read with HeadPosition taken under the appends' lock.
func (s *EventStore) ReadAll(ctx context.Context, q postgres.Querier, after int64, limit int) ([]StoredEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := q.QueryContext(ctx, `SELECT `+SelectColumns+` FROM ledger_events WHERE position > $1 ORDER BY position LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read events after %d: %w", after, err)
	}
	events, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read events after %d: %w", after, err)
	}
	return events, nil
}

// HeadPosition returns the highest committed position visible to q, 0 for
// an empty log.
func (s *EventStore) HeadPosition(ctx context.Context, q postgres.Querier) (int64, error) {
	var head int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(max(position), 0) FROM ledger_events`).Scan(&head); err != nil {
		return 0, fmt.Errorf("eventstore: head position: %w", err)
	}
	return head, nil
}

func scanEvents(rows *sql.Rows) ([]StoredEvent, error) {
	defer rows.Close()
	var events []StoredEvent
	for rows.Next() {
		e, err := ScanEvent(rows)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, rows.Err()
}

// ScanEvent reads one row of SelectColumns, for packages that query the log
// with SQL of their own (audit, the booking write side).
func ScanEvent(row wsql.Scanner) (StoredEvent, error) {
	var e StoredEvent
	var txid wsql.XID8
	var metadata []byte
	if err := row.Scan(&e.Position, &txid, &e.EventID, &e.StreamID, &e.StreamVersion, &e.Type, &e.SchemaVersion,
		&e.OccurredAt, &e.RecordedAt, &e.CausationID, (*[]byte)(&e.Payload), &metadata, &e.PrevHash, &e.Hash, &e.HashVersion); err != nil {
		return StoredEvent{}, fmt.Errorf("scan event: %w", err)
	}
	e.TransactionID = uint64(txid)
	e.OccurredAt = e.OccurredAt.UTC()
	e.RecordedAt = e.RecordedAt.UTC()
	if len(metadata) > 0 && string(metadata) != "{}" {
		if err := json.Unmarshal(metadata, &e.Metadata); err != nil {
			return StoredEvent{}, fmt.Errorf("event %d metadata: %w", e.Position, err)
		}
	}
	return e, nil
}
