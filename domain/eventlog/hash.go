package eventlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"time"
)

// GenesisHash is the previous hash of a stream's first event.
var GenesisHash = make([]byte, sha256.Size)

// hashVersion names the layout hashed by EventHash; a new layout gets a new
// name so that old events keep verifying. Version 2 adds the event's
// metadata; events written before it keep version 1 (their hash_version
// column says which).
const (
	hashVersion   = "ledger-event-hash-v1"
	hashVersionV2 = "ledger-event-hash-v2"
)

// CurrentHashVersion is the EventHash layout appends use: 2, which covers
// the metadata too.
const CurrentHashVersion = 2

// EventHash is the SHA-256 of an event's content chained to prevHash, the
// hash of the stream's previous event (GenesisHash for the first).
//
// The layout is e.HashVersion's: 1 (or 0, events written before versions
// were recorded) covers every column but the metadata, 2 the metadata too
// (as its canonical JSON, MetadataJSON). Every field is length-prefixed, so
// no two different events encode alike.
// The payload is hashed as given, which must be its canonical form
// (CanonicalJSON) because JSONB does not keep the bytes it was given. Times
// are hashed at microsecond precision in UTC, as PostgreSQL stores them
// (FormatTime). The global position is not part of it: it is assigned by
// the database at insert, and the global chain (ChainHash) covers it.
func EventHash(e StoredEvent, prevHash []byte) []byte {
	var x Hasher
	return x.Sum(FieldsOf(&e, prevHash))
}

// Fields are the fields EventHash covers, in the form the verifier reads
// them from the database, so that its hot path converts nothing it does not
// need to.
type Fields struct {
	EventID, Type, CausationID   []byte
	StreamID                     int64
	StreamVersion, SchemaVersion int
	// OccurredMicros and RecordedMicros are microseconds since the Unix
	// epoch (StorageTime).
	OccurredMicros, RecordedMicros int64
	Payload, PrevHash              []byte
	// HashVersion is the layout (0 and 1: version 1); Metadata, the
	// metadata's JSON, is hashed from version 2 on.
	HashVersion int
	Metadata    []byte
}

// FieldsOf returns e's hashed fields, chained to prevHash.
func FieldsOf(e *StoredEvent, prevHash []byte) *Fields {
	f := &Fields{
		EventID: []byte(e.EventID), Type: []byte(e.Type), CausationID: []byte(e.CausationID),
		StreamID: e.StreamID, StreamVersion: e.StreamVersion, SchemaVersion: e.SchemaVersion,
		OccurredMicros: StorageTime(e.OccurredAt).UnixMicro(), RecordedMicros: StorageTime(e.RecordedAt).UnixMicro(),
		Payload: e.Payload, PrevHash: prevHash, HashVersion: e.HashVersion,
	}
	if e.HashVersion >= 2 {
		f.Metadata = MetadataJSON(e.Metadata)
	}
	return f
}

// MetadataJSON is the JSON object of an event's metadata as version 2 of
// EventHash covers it: keys sorted, "{}" for none.
func MetadataJSON(m map[string]string) []byte {
	if len(m) == 0 {
		return []byte("{}")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return []byte("{}") // a map of strings always marshals
	}
	c, err := CanonicalJSON(b)
	if err != nil {
		return b
	}
	return c
}

// Hasher computes EventHash with buffers reused from call to call, for
// loops over many events (the verifier's hot path); one per goroutine. Its
// zero value is ready to use.
type Hasher struct {
	canon Canonicalizer
	h     hash.Hash
	num   []byte
	sum   []byte
	meta  []byte
}

// Sum is the EventHash of f, with f.Payload hashed as given (already
// canonical). The result is valid until the next call.
func (x *Hasher) Sum(f *Fields) []byte {
	if x.h == nil {
		x.h = sha256.New()
	}
	h := x.h
	h.Reset()
	var n [4]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	fieldInt := func(i int64) {
		x.num = strconv.AppendInt(x.num[:0], i, 10)
		field(x.num)
	}
	fieldTime := func(us int64) {
		x.num = time.UnixMicro(us).UTC().AppendFormat(x.num[:0], time.RFC3339Nano)
		field(x.num)
	}
	if f.HashVersion >= 2 {
		x.num = append(x.num[:0], hashVersionV2...)
	} else {
		x.num = append(x.num[:0], hashVersion...)
	}
	field(x.num)
	field(f.EventID)
	fieldInt(f.StreamID)
	fieldInt(int64(f.StreamVersion))
	field(f.Type)
	fieldInt(int64(f.SchemaVersion))
	fieldTime(f.OccurredMicros)
	fieldTime(f.RecordedMicros)
	field(f.CausationID)
	field(f.Payload)
	if f.HashVersion >= 2 {
		field(f.Metadata)
	}
	field(f.PrevHash)
	x.sum = h.Sum(x.sum[:0])
	return x.sum
}

// SumCanonical is Sum with f.Payload (and, from version 2, f.Metadata)
// first put in canonical form, as what is read back from the log needs;
// the error is the payload's or the metadata's.
func (x *Hasher) SumCanonical(f *Fields) ([]byte, error) {
	c := *f
	if f.HashVersion >= 2 {
		// The metadata first: Canonical's result lives until its next call.
		m, err := x.canon.Canonical(f.Metadata)
		if err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		x.meta = append(x.meta[:0], m...)
		c.Metadata = x.meta
	}
	payload, err := x.canon.Canonical(f.Payload)
	if err != nil {
		return nil, err
	}
	c.Payload = payload
	return x.Sum(&c), nil
}

// VerifyStream recomputes the hash chain of one stream's events, given in
// stream order, and returns the position and reason of the first event that
// does not verify, or 0 and nil.
func VerifyStream(events []StoredEvent) (int64, error) {
	prev := GenesisHash
	var x Hasher
	for i := range events {
		e := &events[i]
		if e.StreamVersion != i+1 {
			return e.Position, fmt.Errorf("stream %d: version %d where %d was expected", e.StreamID, e.StreamVersion, i+1)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			return e.Position, fmt.Errorf("stream %d version %d: previous hash does not match the previous event", e.StreamID, e.StreamVersion)
		}
		sum, err := x.SumCanonical(FieldsOf(e, prev))
		if err != nil {
			return e.Position, fmt.Errorf("stream %d version %d: payload: %w", e.StreamID, e.StreamVersion, err)
		}
		if !bytes.Equal(sum, e.Hash) {
			return e.Position, fmt.Errorf("stream %d version %d: content does not match its hash", e.StreamID, e.StreamVersion)
		}
		prev = e.Hash
	}
	return 0, nil
}
