package eventstore

import (
	stdsql "database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// EventsTopic is the watermill topic of the event log. The schema adapter
// maps it to the ledger_events table.
const EventsTopic = "ledger_events"

// Metadata keys of a watermill message that carries a ledger event. They
// travel from Append to the schema adapter's INSERT, and from the
// subscriber's SELECT to handlers (EventFromMessage).
const (
	MetaPosition      = "position"
	MetaStreamID      = "stream_id"
	MetaStreamVersion = "stream_version"
	MetaEventType     = "event_type"
	MetaSchemaVersion = "schema_version"
	MetaOccurredAt    = "occurred_at"
	MetaRecordedAt    = "recorded_at"
	MetaCausationID   = "causation_id"
	MetaPrevHash      = "prev_hash"
	MetaHash          = "hash"
	MetaTransactionID = "transaction_id"
)

var envelopeKeys = map[string]bool{
	MetaPosition: true, MetaStreamID: true, MetaStreamVersion: true, MetaEventType: true,
	MetaSchemaVersion: true, MetaOccurredAt: true, MetaRecordedAt: true, MetaCausationID: true,
	MetaPrevHash: true, MetaHash: true, MetaTransactionID: true,
}

// eventsSchema is watermill-sql's SchemaAdapter for ledger_events. It keeps
// the ordering rule of DefaultPostgreSQLSchema — subscribers read in
// (transaction_id, position) order, bounded by the oldest transaction still
// running — so every committed event is delivered once, in commit order of
// transaction ids, while the stored position stays a plain sequence value.
type eventsSchema struct {
	// batchSize is the number of events a subscriber reads per poll.
	batchSize int
}

// InsertColumns is the number of parameters of InsertQuery.
const InsertColumns = 12

// InsertQuery is the INSERT of any number of events: each column's values
// are one array parameter (insertArgs), unnested in the order of the
// messages, so positions are drawn in that order. One text for every
// number of events: the ledger prepares it once (Store.prepare) and the
// server neither parses nor plans it again, where a multi-row VALUES list
// was a new statement for each batch size, parsed and planned on every
// group commit. Every event is hashed with the current layout (Append),
// which the row names: a constant of the statement, not a parameter.
func InsertQuery() string { return insertQuery }

var insertQuery = `INSERT INTO ledger_events (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, recorded_at, causation_id, payload, metadata, prev_hash, hash, hash_version)
	SELECT e.*, ` + strconv.Itoa(eventlog.CurrentHashVersion) + ` FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::int[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::jsonb[], $10::jsonb[], $11::bytea[], $12::bytea[]) AS e`

func (s eventsSchema) InsertQuery(params wsql.InsertQueryParams) (wsql.Query, error) {
	if params.Topic != EventsTopic {
		return wsql.Query{}, fmt.Errorf("eventstore: unknown topic %q", params.Topic)
	}
	return insertArgs(params.Msgs)
}

// insertArgs are InsertQuery's parameters for msgs: one array per column.
func insertArgs(msgs message.Messages) (wsql.Query, error) {
	n := len(msgs)
	var (
		ids, streams, versions, types, schemas = make(pq.StringArray, n), make(pq.StringArray, n), make(pq.StringArray, n), make(pq.StringArray, n), make(pq.StringArray, n)
		occurred, recorded, causations         = make(pq.StringArray, n), make(pq.StringArray, n), make(pq.StringArray, n)
		payloads, metadata                     = make(pq.StringArray, n), make(pq.StringArray, n)
		prevs, hashes                          = make(pq.ByteaArray, n), make(pq.ByteaArray, n)
	)
	for i, msg := range msgs {
		md := msg.Metadata
		prev, err := hex.DecodeString(md.Get(MetaPrevHash))
		if err != nil {
			return wsql.Query{}, fmt.Errorf("eventstore: message %s: prev_hash: %w", msg.UUID, err)
		}
		hash, err := hex.DecodeString(md.Get(MetaHash))
		if err != nil {
			return wsql.Query{}, fmt.Errorf("eventstore: message %s: hash: %w", msg.UUID, err)
		}
		extraJSON, err := extraMetadata(md)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("eventstore: message %s: metadata: %w", msg.UUID, err)
		}
		ids[i], streams[i], versions[i], types[i], schemas[i] = msg.UUID, md.Get(MetaStreamID), md.Get(MetaStreamVersion), md.Get(MetaEventType), md.Get(MetaSchemaVersion)
		occurred[i], recorded[i], causations[i] = md.Get(MetaOccurredAt), md.Get(MetaRecordedAt), md.Get(MetaCausationID)
		payloads[i], metadata[i] = string(msg.Payload), string(extraJSON)
		prevs[i], hashes[i] = prev, hash
	}
	return wsql.Query{Query: insertQuery, Args: []any{ids, streams, versions, types, schemas, occurred, recorded, causations, payloads, metadata, prevs, hashes}}, nil
}

// extraMetadata is the JSON of the metadata that is not part of the
// envelope: "{}" without marshalling anything in the usual case of none.
func extraMetadata(md message.Metadata) ([]byte, error) {
	extra := map[string]string(nil)
	for k, v := range md {
		if !envelopeKeys[k] {
			if extra == nil {
				extra = map[string]string{}
			}
			extra[k] = v
		}
	}
	if extra == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(extra)
}

// SelectColumns is the column list ScanEvent reads: the subscriber's query,
// the store's reads, and the packages that query the log with SQL of their
// own (audit, the booking write side).
const SelectColumns = `position, transaction_id, event_id, stream_id, stream_version, event_type, schema_version, occurred_at, recorded_at, causation_id, payload, metadata, prev_hash, hash, hash_version`

func (s eventsSchema) SelectQuery(params wsql.SelectQueryParams) (wsql.Query, error) {
	next, err := params.OffsetsAdapter.NextOffsetQuery(wsql.NextOffsetQueryParams{
		Topic:         params.Topic,
		ConsumerGroup: params.ConsumerGroup,
	})
	if err != nil {
		return wsql.Query{}, err
	}
	batch := s.batchSize
	if batch <= 0 {
		batch = 100
	}
	// The events after the group's offset, in (transaction_id, position)
	// order, as DefaultPostgreSQLSchema.SelectQuery selects them, but with
	// the offset as one row comparison: that is an index condition of
	// ledger_events_transaction_position_idx, so the scan starts at the
	// offset and stops after batch rows. watermill-sql's form (an OR of
	// "same transaction, later position" and "later transaction") is a
	// bitmap scan of every event after the offset, sorted for the first
	// batch: its cost grew with the subscriber's lag (10.5 ms against
	// 0.24 ms for a batch of 100 at a lag of 4,000 events), so a lagging
	// subscriber slowed down as it fell behind. Both forms select the
	// same rows: the columns are NOT NULL, and a missing offset row (NULL)
	// selects nothing in either.
	q := `
	WITH last_processed AS (` + next.Query + `)
	SELECT ` + SelectColumns + ` FROM ledger_events
	WHERE (transaction_id, position) > (
			(SELECT last_processed_transaction_id FROM last_processed),
			(SELECT offset_acked FROM last_processed))
		AND ` + postgres.CommittedBeforeXmin(postgres.CurrentSnapshot) + `
	ORDER BY transaction_id ASC, position ASC
	LIMIT ` + strconv.Itoa(batch)
	return wsql.Query{Query: q, Args: next.Args}, nil
}

func (s eventsSchema) UnmarshalMessage(params wsql.UnmarshalMessageParams) (wsql.Row, error) {
	e, err := ScanEvent(params.Row)
	if err != nil {
		return wsql.Row{}, err
	}
	msg := message.NewMessage(e.EventID, message.Payload(e.Payload))
	for k, v := range e.Metadata {
		msg.Metadata.Set(k, v)
	}
	setEnvelope(msg, e)
	msg.Metadata.Set(MetaPosition, strconv.FormatInt(e.Position, 10))
	msg.Metadata.Set(MetaTransactionID, strconv.FormatUint(e.TransactionID, 10))
	return wsql.Row{
		Offset:    e.Position,
		UUID:      []byte(e.EventID),
		Payload:   e.Payload,
		Msg:       msg,
		ExtraData: map[string]any{"transaction_id": wsql.XID8(e.TransactionID)},
	}, nil
}

// SchemaInitializingQueries returns nothing: the tables belong to the
// migrations, so that every constraint is named and versioned.
func (s eventsSchema) SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return nil, nil
}

func (s eventsSchema) SubscribeIsolationLevel() stdsql.IsolationLevel {
	// One snapshot for the whole poll, as watermill-sql's own schema.
	return stdsql.LevelRepeatableRead
}

func setEnvelope(msg *message.Message, e StoredEvent) {
	md := msg.Metadata
	md.Set(MetaStreamID, strconv.FormatInt(e.StreamID, 10))
	md.Set(MetaStreamVersion, strconv.Itoa(e.StreamVersion))
	md.Set(MetaEventType, e.Type)
	md.Set(MetaSchemaVersion, strconv.Itoa(e.SchemaVersion))
	md.Set(MetaOccurredAt, eventlog.FormatTime(e.OccurredAt))
	md.Set(MetaRecordedAt, eventlog.FormatTime(e.RecordedAt))
	md.Set(MetaCausationID, e.CausationID)
	md.Set(MetaPrevHash, hex.EncodeToString(e.PrevHash))
	md.Set(MetaHash, hex.EncodeToString(e.Hash))
}

// EventFromMessage turns a message delivered by a subscriber of
// EventsTopic back into the stored event with its envelope.
func EventFromMessage(msg *message.Message) (StoredEvent, error) {
	md := msg.Metadata
	var e StoredEvent
	var errs []error
	parseInt := func(key string) int64 {
		v, err := strconv.ParseInt(md.Get(key), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		return v
	}
	parseTime := func(key string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, md.Get(key))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		return v
	}
	parseHex := func(key string) []byte {
		v, err := hex.DecodeString(md.Get(key))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		return v
	}
	e.EventID = msg.UUID
	e.Position = parseInt(MetaPosition)
	e.StreamID = parseInt(MetaStreamID)
	e.StreamVersion = int(parseInt(MetaStreamVersion))
	e.Type = md.Get(MetaEventType)
	e.SchemaVersion = int(parseInt(MetaSchemaVersion))
	e.OccurredAt = parseTime(MetaOccurredAt)
	e.RecordedAt = parseTime(MetaRecordedAt)
	e.CausationID = md.Get(MetaCausationID)
	e.PrevHash = parseHex(MetaPrevHash)
	e.Hash = parseHex(MetaHash)
	if tx, err := strconv.ParseUint(md.Get(MetaTransactionID), 10, 64); err == nil {
		e.TransactionID = tx
	}
	e.Payload = json.RawMessage(msg.Payload)
	if len(errs) > 0 {
		return StoredEvent{}, fmt.Errorf("eventstore: message %s is not a ledger event: %w", msg.UUID, errors.Join(errs...))
	}
	return e, nil
}

// offsetsAdapter stores subscriber offsets in ledger_events_offsets; its
// queries are watermill-sql's own.
func offsetsAdapter() wsql.OffsetsAdapter {
	return wsql.DefaultPostgreSQLOffsetsAdapter{
		GenerateMessagesOffsetsTableName: func(string) string { return "ledger_events_offsets" },
	}
}
