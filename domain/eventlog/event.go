package eventlog

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
)

// NewEvent is an event to append: what the domain decided, with the
// envelope fields the caller knows.
type NewEvent struct {
	// EventID is the event's UUID; empty means a new random one.
	EventID       string
	Type          string
	SchemaVersion int
	// OccurredAt is when the fact happened (Stripe's event time).
	OccurredAt time.Time
	// CausationID names what caused the event: a Stripe event id, or an API
	// request id.
	CausationID string
	// Payload is the event's JSON document.
	Payload json.RawMessage
	// Metadata is free-form context kept with the event (correlation ids).
	Metadata map[string]string
}

// StoredEvent is an event as the log keeps it.
type StoredEvent struct {
	// Position is the global position: unique and increasing, with gaps.
	Position      int64
	EventID       string
	StreamID      int64
	StreamVersion int
	Type          string
	SchemaVersion int
	OccurredAt    time.Time
	RecordedAt    time.Time
	CausationID   string
	Payload       json.RawMessage
	Metadata      map[string]string
	// PrevHash is the hash of the stream's previous event (GenesisHash for
	// the first) and Hash this event's EventHash.
	PrevHash, Hash []byte
	// TransactionID is the PostgreSQL transaction that appended the event.
	TransactionID uint64
	// HashVersion is the layout of Hash (EventHash): 1 for events written
	// before version 2, which covers the metadata too.
	HashVersion int
}

// String identifies an event in logs and errors.
func (e StoredEvent) String() string {
	h := hex.EncodeToString(e.Hash)
	if len(h) > 12 {
		h = h[:12]
	}
	return e.Type + "#" + strconv.FormatInt(e.Position, 10) + " (stream " + strconv.FormatInt(e.StreamID, 10) + " v" + strconv.Itoa(e.StreamVersion) + ", hash " + h + ")"
}

// StorageTime is t as the log keeps it (PostgreSQL's timestamptz): UTC,
// microseconds.
func StorageTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// FormatTime is the text form of StorageTime(t) that EventHash hashes and
// the export writes (RFC 3339, up to microseconds).
func FormatTime(t time.Time) string { return StorageTime(t).Format(time.RFC3339Nano) }
