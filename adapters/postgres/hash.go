package postgres

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// GenesisHash is the previous hash of a stream's first event.
var GenesisHash = make([]byte, sha256.Size)

// hashVersion names the layout hashed by EventHash; a new layout gets a new
// name so that old events keep verifying.
const hashVersion = "ledger-event-hash-v1"

// EventHash is the SHA-256 of an event's content chained to prevHash, the
// hash of the stream's previous event (GenesisHash for the first).
//
// Every field is length-prefixed, so no two different events encode alike.
// The payload is hashed in its canonical form (CanonicalJSON) because JSONB
// does not keep the bytes it was given. Times are hashed at microsecond
// precision in UTC, as PostgreSQL stores them. The global position is not
// part of it: it is assigned by the database at insert, and the global chain
// (audit) covers it.
func EventHash(e StoredEvent, prevHash []byte) []byte {
	h := sha256.New()
	var n [4]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(hashVersion))
	field([]byte(e.EventID))
	field(strconv.AppendInt(nil, e.StreamID, 10))
	field(strconv.AppendInt(nil, int64(e.StreamVersion), 10))
	field([]byte(e.Type))
	field(strconv.AppendInt(nil, int64(e.SchemaVersion), 10))
	field([]byte(formatTime(e.OccurredAt)))
	field([]byte(formatTime(e.RecordedAt)))
	field([]byte(e.CausationID))
	field(e.Payload)
	field(prevHash)
	return h.Sum(nil)
}

// VerifyStream recomputes the hash chain of one stream's events, given in
// stream order, and returns the position and reason of the first event that
// does not verify, or 0 and nil.
func VerifyStream(events []StoredEvent) (int64, error) {
	prev := GenesisHash
	for i, e := range events {
		if e.StreamVersion != i+1 {
			return e.Position, fmt.Errorf("stream %d: version %d where %d was expected", e.StreamID, e.StreamVersion, i+1)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			return e.Position, fmt.Errorf("stream %d version %d: previous hash does not match the previous event", e.StreamID, e.StreamVersion)
		}
		payload, err := CanonicalJSON(e.Payload)
		if err != nil {
			return e.Position, fmt.Errorf("stream %d version %d: payload: %w", e.StreamID, e.StreamVersion, err)
		}
		e.Payload = payload
		if want := EventHash(e, prev); !bytes.Equal(want, e.Hash) {
			return e.Position, fmt.Errorf("stream %d version %d: content does not match its hash", e.StreamID, e.StreamVersion)
		}
		prev = e.Hash
	}
	return 0, nil
}

// CanonicalJSON re-encodes a JSON document with sorted object keys, no
// insignificant white space and numbers kept as written, so that what Go
// wrote and what JSONB gives back hash alike. Appends, VerifyStream and the
// verifier all use it; it runs the one-pass canonicalizer (canonical.go),
// whose output is defined as canonicalReference's.
func CanonicalJSON(doc []byte) ([]byte, error) { return canonicalFast(doc) }

// canonicalReference defines the canonical form: decode with numbers kept
// as written, re-encode with encoding/json (sorted keys, no HTML escaping).
// The fast path falls back to it for anything unusual, and
// FuzzCanonicalFast checks the two agree.
func canonicalReference(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// storageTime is t as PostgreSQL keeps it: UTC, microseconds.
func StorageTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func formatTime(t time.Time) string { return StorageTime(t).Format(time.RFC3339Nano) }
