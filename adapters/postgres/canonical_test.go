package postgres

import (
	"bytes"
	"testing"
	"time"
)

var canonicalSeeds = []string{
	`{"b": 1, "a": [1, 2.50, -0, 1e5, 1E-2, true, false, null], "c": {"z": "x", "y": {}}}`,
	`{"amount": 36000, "source": "webhook", "currency": "eur", "session_id": "cs_test_a1"}`,
	`{"a": 1, "a": 2}`,
	`{"k": "<b>&</b> é \u2028 \u2029 \ud83d\ude00 \ud800 \udc00x \u0000 \b\f\n\r\t \/ \" \\ \u007f"}`,
	"{\"raw\": \"\x7f \xff\xfe invalid \xe2\x80\xa8\"}",
	`{"": "", "é": 1, "e": 2, "E": 3}`,
	`[]`, `{}`, `"s"`, `1`, `null`, ` {"a" : [ ] } `,
	`{"a": 1} trailing`, `{"a": }`, `{"a": 01}`, `[1,]`, `{"a":1,}`, `"\x"`, `nul`,
	`[[[[[[[[[[{"deep": [{"x": -1.5e+10}]}]]]]]]]]]]`,
}

// TestCanonicalFastMatchesReference: the fast canonical form is byte for
// byte the reference's, for valid and invalid documents alike.
func TestCanonicalFastMatchesReference(t *testing.T) {
	for _, doc := range canonicalSeeds {
		checkCanonical(t, []byte(doc))
	}
}

func FuzzCanonicalFast(f *testing.F) {
	for _, doc := range canonicalSeeds {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkCanonical(t, doc) })
}

func checkCanonical(t *testing.T, doc []byte) {
	t.Helper()
	want, wantErr := canonicalReference(doc)
	got, err := canonicalFast(doc)
	// The reusing form gives the same after another document.
	var c canonicalizer
	c.canonical([]byte(`{"warm": {"up": [1, {"x": "y"}]}, "b": 2}`))
	again, _ := c.canonical(doc)
	if !bytes.Equal(again, got) {
		t.Fatalf("%q: reused canonicalizer %q, fresh %q", doc, again, got)
	}
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: fast err %v, reference err %v", doc, err, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%q:\nfast      %q\ncanonical %q", doc, got, want)
	}
}

func BenchmarkCanonical(b *testing.B) {
	doc := []byte(`{"amount": 36000, "source": "webhook", "currency": "eur", "session_id": "cs_test_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6a7b8c9d0", "payment_intent_id": "pi_3abcdefghijklmnopqrstuvw", "stripe_event_type": "checkout.session.completed"}`)
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			canonicalReference(doc)
		}
	})
	b.Run("canonicalizer", func(b *testing.B) {
		var c canonicalizer
		for b.Loop() {
			c.canonical(doc)
		}
	})
}

// TestEventHasherMatchesEventHash: the verifier's buffered hasher computes
// EventHash, for events of every shape, and keeps doing so when reused.
func TestEventHasherMatchesEventHash(t *testing.T) {
	var x eventHasher
	base := StoredEvent{
		EventID: "0b5c7e0e-2a56-4b8e-9c57-3f7f2b1c9d10", StreamID: 42, StreamVersion: 3, Type: "PaymentSucceeded",
		SchemaVersion: 1, OccurredAt: time.Date(2027, 1, 10, 12, 0, 0, 123456789, time.FixedZone("x", 3600)),
		RecordedAt: time.Date(2027, 1, 10, 12, 0, 1, 0, time.UTC), CausationID: "evt_1",
		Payload: []byte(`{"b": 1, "a": "é<>"}`), PrevHash: GenesisHash,
	}
	variants := []func(*StoredEvent){
		func(e *StoredEvent) {},
		func(e *StoredEvent) { e.StreamID = -7; e.StreamVersion = 1000000 },
		func(e *StoredEvent) { e.CausationID = "" },
		func(e *StoredEvent) { e.Payload = []byte(`{}`) },
		func(e *StoredEvent) { e.Payload = []byte(`{"nested": {"z": [1, 2.50, {"y": null}], "a": true}}`) },
		func(e *StoredEvent) { e.RecordedAt = time.Date(2027, 1, 10, 12, 0, 1, 500000, time.UTC) },
		func(e *StoredEvent) { e.PrevHash = bytes.Repeat([]byte{7}, 32) },
	}
	for i, vary := range variants {
		e := base
		vary(&e)
		canon, err := CanonicalJSON(e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		want := EventHash(StoredEvent{EventID: e.EventID, StreamID: e.StreamID, StreamVersion: e.StreamVersion, Type: e.Type,
			SchemaVersion: e.SchemaVersion, OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt, CausationID: e.CausationID,
			Payload: canon}, e.PrevHash)
		got, err := x.hash(&e)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("variant %d: hasher %x (%v), EventHash %x", i, got, err, want)
		}
	}
}
