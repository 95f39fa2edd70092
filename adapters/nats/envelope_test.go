package natsforward_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsforward "github.com/booking-ledger/ledger/adapters/nats"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// sampleEvent is a stored event with a real hash chained to a previous one,
// a payload not in canonical form (keys out of order, spaces) and
// characters that HTML escaping would change.
func sampleEvent() eventlog.StoredEvent {
	e := eventlog.StoredEvent{
		Position:      4_294_967_301, // beyond 32 bits: CloudEvents integers would not hold it
		EventID:       "0d4f1c2e-5b6a-4c3d-9e8f-7a6b5c4d3e2f",
		StreamID:      42,
		StreamVersion: 3,
		Type:          "PaymentSucceeded",
		SchemaVersion: 1,
		OccurredAt:    time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC),
		RecordedAt:    time.Date(2027, 1, 10, 12, 0, 1, 234567000, time.FixedZone("CET", 3600)),
		CausationID:   "evt_1Abc",
		Payload:       json.RawMessage(`{"session_id": "cs_test_<&>", "amount": 36000, "currency": "eur", "payment_intent_id": "pi_1"}`),
		Metadata:      map[string]string{"request_id": "req_7", "actor": "token:0123456789abcdef"},
		PrevHash:      bytes.Repeat([]byte{0xab}, 32),
		HashVersion:   eventlog.CurrentHashVersion,
	}
	canon, err := eventlog.CanonicalJSON(e.Payload)
	if err != nil {
		panic(err)
	}
	hashed := e
	hashed.Payload = canon
	e.Hash = eventlog.EventHash(hashed, e.PrevHash)
	return e
}

func TestEnvelopeGolden(t *testing.T) {
	body, err := natsforward.Envelope(sampleEvent(), "https://ledger.example.com")
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	golden := filepath.Join("testdata", "cloudevent.golden")
	if *update {
		if err := os.WriteFile(golden, append(body, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(append(body, '\n'), want) {
		t.Fatalf("envelope changed (a consumer-visible change: run -update only on purpose)\ngot:  %s\nwant: %s", body, want)
	}
}

// TestParseRecomputesTheHash: what a consumer receives is enough to
// recompute the event's hash, and Parse gives back every hashed field.
func TestParseRecomputesTheHash(t *testing.T) {
	e := sampleEvent()
	body, err := natsforward.Envelope(e, "https://ledger.example.com")
	if err != nil {
		t.Fatal(err)
	}
	got, err := natsforward.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(eventlog.EventHash(got, got.PrevHash), e.Hash) || !bytes.Equal(got.Hash, e.Hash) {
		t.Fatal("the hash recomputed from the message differs from the event's")
	}
	if got.Position != e.Position || got.StreamID != e.StreamID || got.StreamVersion != e.StreamVersion || got.Type != e.Type ||
		!got.RecordedAt.Equal(e.RecordedAt) || !got.OccurredAt.Equal(e.OccurredAt) || got.CausationID != e.CausationID ||
		got.HashVersion != e.HashVersion || len(got.Metadata) != 2 || got.Metadata["request_id"] != "req_7" {
		t.Fatalf("parsed %+v\nfrom     %+v", got, e)
	}
	if s := natsforward.Subject("ledger", e); s != "ledger.42.PaymentSucceeded" {
		t.Fatalf("subject %q", s)
	}

	// An event hashed by version 1 (metadata not covered) verifies too.
	v1 := e
	v1.HashVersion = 1
	v1.Metadata = nil
	canonical := v1
	canonical.Payload, _ = eventlog.CanonicalJSON(v1.Payload)
	v1.Hash = eventlog.EventHash(canonical, v1.PrevHash)
	b1, err := natsforward.Envelope(v1, "s")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := natsforward.Parse(b1); err != nil || got.HashVersion != 1 || !bytes.Equal(eventlog.EventHash(got, got.PrevHash), v1.Hash) {
		t.Fatalf("version 1: %v", err)
	}

	tampered := bytes.Replace(body, []byte(`"amount":36000`), []byte(`"amount":36001`), 1)
	if bytes.Equal(tampered, body) {
		t.Fatal("test payload not found in the body")
	}
	bad, err := natsforward.Parse(tampered)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(eventlog.EventHash(bad, bad.PrevHash), bad.Hash) {
		t.Fatal("a changed amount still verifies")
	}

	for _, body := range []string{`{`, `{"specversion":"0.3"}`, `{"specversion":"1.0","type":"x","ledgerposition":"1","subject":"1"}`,
		`{"specversion":"1.0","type":"booking.X","ledgerposition":"1","subject":"1","time":"2027-01-01T00:00:00Z","ledgeroccurredat":"2027-01-01T00:00:00Z","ledgermetadata":"[1]"}`} {
		if _, err := natsforward.Parse([]byte(body)); err == nil {
			t.Errorf("Parse(%s): no error", body)
		}
	}
}
