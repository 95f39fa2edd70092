package eventlog_test

// Golden hashes: the canonical form, EventHash, ChainHash and GenesisHash
// of fixed inputs, against the values the code of main 9d1baa4 gave,
// written in testdata/golden_hashes.json. A stored hash must never change,
// however the code that computes it is rewritten.
//
// Regenerate ONLY from the old code, never from the code under test: check
// out commit 5b48ff9 (main 9d1baa4 plus this test, then in
// adapters/postgres), run there
//
//	go test ./adapters/postgres/ -run TestGoldenHashes -update-golden-hashes
//
// and copy adapters/postgres/testdata/golden_hashes.json here.

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain/eventlog"
)

var updateGoldenHashes = flag.Bool("update-golden-hashes", false, "rewrite testdata/golden_hashes.json from the code under test (only ever from the old code: see golden_hash_test.go)")

const goldenHashesFile = "testdata/golden_hashes.json"

// goldenCanonical are documents in every shape the canonical form handles,
// including ones the fast path leaves to the reference form.
var goldenCanonical = map[string]string{
	"object":         `{"b": 1, "a": 2, "c": {"z": null, "y": [true, false]}}`,
	"numbers":        `[0, -0, 1.50, -17, 1e3, 2E-7, 12345678901234567890123456789, 9223372036854775807, 0.000001]`,
	"escapes":        `"\u00e9\u2028\u2029<>&\"\\\/\b\f\n\r\t\u0001\u001f\u007f"`,
	"unicode":        `{"日本": "語", "emoji": "🛏️ \ud83d\ude00", "Ä": "ä", "": "empty"}`,
	"whitespace":     " \t\n{ \"a\" :\r\n [ 1 , 2 ] } \n",
	"nested":         `[[[[{"k": [{"x": "y", "w": {}}]}]]], []]`,
	"scalar":         `"just a string"`,
	"duplicate-key":  `{"a": 1, "a": 2}`,
	"lone-surrogate": `"\ud800 and \udc00"`,
	"invalid-utf8":   "\"\xff\xfe\"",
}

type goldenHashEvent struct {
	event eventlog.StoredEvent
	prev  []byte
}

func goldenEvents() map[string]goldenHashEvent {
	at := time.Date(2027, 3, 10, 14, 5, 6, 123456789, time.FixedZone("CET", 3600))
	prev := make([]byte, 32)
	for i := range prev {
		prev[i] = byte(i * 7)
	}
	base := eventlog.StoredEvent{
		Position: 77, EventID: "0f8fad5b-d9cb-469f-a165-70867728950e", StreamID: 42, StreamVersion: 3,
		Type: "PaymentSucceeded", SchemaVersion: 1, OccurredAt: at, RecordedAt: at.Add(1500 * time.Millisecond),
		CausationID: "evt_1Golden", Payload: []byte(`{"amount":36000,"currency":"eur","payment_intent_id":"pi_3Golden"}`),
	}
	first := base
	first.StreamVersion = 1
	unicode := base
	unicode.Type, unicode.CausationID = "GoldenProbé", "api:✓ «ok»"
	unicode.Payload = []byte(`{"a":"é\u2028<>&","b":[12345678901234567890123456789,2.50,-0.000001],"emoji":"🛏️😀"}`)
	large := base
	large.StreamID, large.StreamVersion, large.SchemaVersion = 9007199254740993, 2147483647, 12
	large.OccurredAt, large.RecordedAt = time.Unix(0, 0), time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	empty := base
	empty.CausationID, empty.Payload = "", []byte(`{}`)
	return map[string]goldenHashEvent{
		"first-of-stream": {first, eventlog.GenesisHash},
		"third":           {base, prev},
		"unicode":         {unicode, prev},
		"large":           {large, prev},
		"empty":           {empty, prev},
	}
}

func goldenChain() map[string][4]any {
	h := func(b byte) []byte {
		out := make([]byte, 32)
		for i := range out {
			out[i] = b + byte(i)
		}
		return out
	}
	return map[string][4]any{
		"first": {int64(1), int64(1), h(1), eventlog.GenesisHash},
		"later": {int64(123456), int64(987654321), h(9), h(200)},
		"large": {int64(1) << 62, int64(9007199254740993), h(0xf0), h(0x0f)},
	}
}

func TestGoldenHashes(t *testing.T) {
	got := map[string]string{"genesis": hex.EncodeToString(eventlog.GenesisHash)}
	for name, doc := range goldenCanonical {
		c, err := eventlog.CanonicalJSON([]byte(doc))
		if err != nil {
			got["canonical/"+name] = "error"
			continue
		}
		got["canonical/"+name] = string(c)
	}
	for name, e := range goldenEvents() {
		got["event/"+name] = hex.EncodeToString(eventlog.EventHash(e.event, e.prev))
	}
	for name, l := range goldenChain() {
		got["chain/"+name] = hex.EncodeToString(eventlog.ChainHash(l[0].(int64), l[1].(int64), l[2].([]byte), l[3].([]byte)))
	}
	if *updateGoldenHashes {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenHashesFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want map[string]string
	b, err := os.ReadFile(goldenHashesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d golden values computed, %d in %s", len(got), len(want), goldenHashesFile)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s:\n got %q\nwant %q", name, got[name], w)
		}
	}
}
