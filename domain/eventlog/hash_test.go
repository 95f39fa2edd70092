package eventlog_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain/eventlog"
)

// TestHasherReusedMatchesEventHash: a Hasher reused from event to event (the
// verifier's way) gives EventHash of each, and SumCanonical of a payload
// as JSONB gives it back is EventHash of its canonical form.
func TestHasherReusedMatchesEventHash(t *testing.T) {
	var x eventlog.Hasher
	base := eventlog.StoredEvent{
		EventID: "0b5c7e0e-2a56-4b8e-9c57-3f7f2b1c9d10", StreamID: 42, StreamVersion: 3, Type: "PaymentSucceeded",
		SchemaVersion: 1, OccurredAt: time.Date(2027, 1, 10, 12, 0, 0, 123456789, time.FixedZone("x", 3600)),
		RecordedAt: time.Date(2027, 1, 10, 12, 0, 1, 0, time.UTC), CausationID: "evt_1",
		Payload: []byte(`{"b": 1, "a": "é<>"}`), PrevHash: eventlog.GenesisHash,
	}
	variants := []func(*eventlog.StoredEvent){
		func(e *eventlog.StoredEvent) {},
		func(e *eventlog.StoredEvent) { e.StreamID = -7; e.StreamVersion = 1000000 },
		func(e *eventlog.StoredEvent) { e.CausationID = "" },
		func(e *eventlog.StoredEvent) { e.Payload = []byte(`{}`) },
		func(e *eventlog.StoredEvent) {
			e.Payload = []byte(`{"nested": {"z": [1, 2.50, {"y": null}], "a": true}}`)
		},
		func(e *eventlog.StoredEvent) { e.RecordedAt = time.Date(2027, 1, 10, 12, 0, 1, 500000, time.UTC) },
		func(e *eventlog.StoredEvent) { e.PrevHash = bytes.Repeat([]byte{7}, 32) },
	}
	for i, vary := range variants {
		e := base
		vary(&e)
		canon, err := eventlog.CanonicalJSON(e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		c := e
		c.Payload = canon
		want := eventlog.EventHash(c, e.PrevHash)
		got, err := x.SumCanonical(eventlog.FieldsOf(&e, e.PrevHash))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("variant %d: reused hasher %x (%v), EventHash %x", i, got, err, want)
		}
	}
}

// TestEventHashCoversEveryField: changing any hashed field changes the
// hash; the position and the metadata are not hashed.
func TestEventHashCoversEveryField(t *testing.T) {
	base := eventlog.StoredEvent{
		Position: 9, EventID: "0b5c7e0e-2a56-4b8e-9c57-3f7f2b1c9d10", StreamID: 42, StreamVersion: 3, Type: "PaymentSucceeded",
		SchemaVersion: 1, OccurredAt: time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC),
		RecordedAt: time.Date(2027, 1, 10, 12, 0, 1, 0, time.UTC), CausationID: "evt_1", Payload: []byte(`{"a":1}`),
	}
	prev := bytes.Repeat([]byte{3}, 32)
	h := eventlog.EventHash(base, prev)
	for name, vary := range map[string]func(*eventlog.StoredEvent){
		"event id":       func(e *eventlog.StoredEvent) { e.EventID = "1" + e.EventID[1:] },
		"stream":         func(e *eventlog.StoredEvent) { e.StreamID++ },
		"version":        func(e *eventlog.StoredEvent) { e.StreamVersion++ },
		"type":           func(e *eventlog.StoredEvent) { e.Type = "PaymentFailed" },
		"schema version": func(e *eventlog.StoredEvent) { e.SchemaVersion++ },
		"occurred at":    func(e *eventlog.StoredEvent) { e.OccurredAt = e.OccurredAt.Add(time.Microsecond) },
		"recorded at":    func(e *eventlog.StoredEvent) { e.RecordedAt = e.RecordedAt.Add(time.Microsecond) },
		"causation":      func(e *eventlog.StoredEvent) { e.CausationID = "evt_2" },
		"payload":        func(e *eventlog.StoredEvent) { e.Payload = []byte(`{"a":2}`) },
	} {
		e := base
		vary(&e)
		if bytes.Equal(eventlog.EventHash(e, prev), h) {
			t.Errorf("changing the %s leaves the hash unchanged", name)
		}
	}
	if bytes.Equal(eventlog.EventHash(base, eventlog.GenesisHash), h) {
		t.Error("changing the previous hash leaves the hash unchanged")
	}
	same := base
	same.Position, same.Metadata = 10, map[string]string{"k": "v"}
	same.OccurredAt = same.OccurredAt.Add(999 * time.Nanosecond).In(time.FixedZone("y", -7200))
	if !bytes.Equal(eventlog.EventHash(same, prev), h) {
		t.Error("the position, the metadata, the time zone or sub-microseconds change the hash")
	}
}
