package eventlog

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// The tests of this file were written against the mutants that survived
// `make mutate` (docs/MUTATION.md): each names what it pins down.

// TestCanonicalCutDocuments: every prefix of documents that use every
// construct of the grammar (a document cut anywhere, as a truncated body
// would be) gets the reference's answer — an error, never a panic nor an
// accepted prefix. The parser's bounds checks (p.i < len(p.s) before each
// look-ahead) are what this pins down: each one relaxed by one reads past
// the end.
func TestCanonicalCutDocuments(t *testing.T) {
	docs := []string{
		`{"a":[-1.5e+10,0,2.5E-3,{"b":"x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00é"}],"c":true,"d":null,"e":false,"f":{}}`,
		` [ 1 , [ ] , { "k" : "v" } , "\u0041" ] `,
		`"\ud83dabc"`, `-0.0e-0`, `["é", "\u00e9x"]`,
	}
	for _, doc := range docs {
		for n := 0; n <= len(doc); n++ {
			checkCanonical(t, []byte(doc[:n]))
		}
	}
}

// TestCanonicalInvalidStrings: raw control characters inside a string make
// the document invalid, wherever they stand (the fast loop must hand them
// to the checking loop, not copy them), and so does a \u escape with a
// byte that is not a hex digit; a string that starts with a byte that
// cannot start UTF-8 (0x80) is valid JSON whose byte becomes U+FFFD as it
// is, not escaped.
func TestCanonicalInvalidStrings(t *testing.T) {
	docs := []string{
		"\"\n\"", "\"\x01x\"", "{\"\x1f\":1}", "[\"\x00\"]", "\"a\x1f\"",
		"\"\x80\"", "{\"\x80\":\"\x80x\"}", "\"\x7f\x80\"", "\" \x80\"",
		// Escapes with a byte that is not a hex digit, next to each range
		// of digits, and one cut short.
		`"\u00G0"`, `"\u00g0"`, `"\u00/0"`, `"\u00:0"`, `"\u00@0"`, "\"\\u00`0\"", `"\uD83D\uDE0G"`, `"\u12"`,
	}
	for _, doc := range docs {
		checkCanonical(t, []byte(doc))
	}
}

// TestCanonicalFastPathAtItsLimits: the fast path itself (no fallback)
// takes documents as deep as encoding/json allows (10000 levels, of arrays
// and of objects) and wide ones (its depth counter must come back down
// after each value: thousands of siblings are not deep), a string that
// starts with a byte that cannot start UTF-8, and escapes in upper-case
// hex; one level deeper than the limit, it gives up and the reference
// refuses the document.
func TestCanonicalFastPathAtItsLimits(t *testing.T) {
	deepArrays := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	deepObjects := func(n int) string { return strings.Repeat(`{"a":`, n-1) + "{}" + strings.Repeat("}", n-1) }
	valid := []string{
		deepArrays(10000), deepObjects(10000),
		"[" + strings.Repeat("[],", 6000) + "[]]",
		"[" + strings.Repeat("{},", 6000) + "{}]",
		`{"x":[` + strings.Repeat(`{"a":[1]},`, 6000) + `{}]}`,
		"\"\x80\"", "{\"\x80\":1}",
		// Upper-case hex digits in escapes, as other encoders write them.
		`"\u00C9\uD83D\uDE00\u00c9\u00Ff"`,
	}
	for _, doc := range valid {
		want, err := canonicalReference([]byte(doc))
		if err != nil {
			t.Fatalf("%.40q: reference: %v", doc, err)
		}
		p := canonParser{s: []byte(doc)}
		got, err := p.value(nil)
		if err != nil || p.i != len(p.s) {
			t.Errorf("%.40q (%d bytes): the fast path gave up (%v) at byte %d", doc, len(doc), err, p.i)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%.40q: fast %.40q, reference %.40q", doc, got, want)
		}
		if p.depth != 0 {
			t.Errorf("%.40q: depth %d after the document", doc, p.depth)
		}
	}
	for _, doc := range []string{deepArrays(10001), deepObjects(10001)} {
		p := canonParser{s: []byte(doc)}
		if _, err := p.value(nil); err == nil {
			t.Errorf("%d levels: the fast path took them", 10001)
		}
		checkCanonical(t, []byte(doc))
	}
}

// TestVerifyStreamFindsTheFirstBadEvent: a well-chained stream verifies;
// otherwise VerifyStream names the first event out of version order,
// chained to the wrong hash, with a payload that is not JSON, or whose
// content does not match its hash.
func TestVerifyStreamFindsTheFirstBadEvent(t *testing.T) {
	stream := func() []StoredEvent {
		var out []StoredEvent
		prev := GenesisHash
		for v := 1; v <= 3; v++ {
			e := StoredEvent{
				Position: int64(10 * v), EventID: "e" + string(rune('0'+v)), StreamID: 7, StreamVersion: v, Type: "Test",
				SchemaVersion: 1, OccurredAt: time.Date(2027, 1, v, 0, 0, 0, 0, time.UTC), RecordedAt: time.Date(2027, 1, v, 0, 0, 1, 0, time.UTC),
				Payload: []byte(`{"n": ` + string(rune('0'+v)) + `}`), PrevHash: prev,
			}
			canon, err := CanonicalJSON(e.Payload)
			if err != nil {
				t.Fatal(err)
			}
			c := e
			c.Payload = canon
			e.Hash = EventHash(c, prev)
			prev = e.Hash
			out = append(out, e)
		}
		return out
	}
	if pos, err := VerifyStream(stream()); pos != 0 || err != nil {
		t.Fatalf("a good stream: %d, %v", pos, err)
	}
	if pos, err := VerifyStream(nil); pos != 0 || err != nil {
		t.Fatalf("an empty stream: %d, %v", pos, err)
	}
	tests := []struct {
		name    string
		edit    func(s []StoredEvent) []StoredEvent
		wantPos int64
		wantErr string
	}{
		{"first event not version 1", func(s []StoredEvent) []StoredEvent { return s[1:] }, 20, "version 2 where 1 was expected"},
		{"a version skipped", func(s []StoredEvent) []StoredEvent { return []StoredEvent{s[0], s[2]} }, 30, "version 3 where 2 was expected"},
		{"chained to the wrong hash", func(s []StoredEvent) []StoredEvent { s[1].PrevHash = s[0].PrevHash; return s }, 20, "previous hash does not match"},
		{"payload not JSON", func(s []StoredEvent) []StoredEvent { s[2].Payload = []byte(`{"n": `); return s }, 30, "version 3: payload"},
		{"content changed", func(s []StoredEvent) []StoredEvent { s[1].Payload = []byte(`{"n": 9}`); return s }, 20, "content does not match its hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pos, err := VerifyStream(tt.edit(stream()))
			if pos != tt.wantPos || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("VerifyStream: %d, %v; want %d and %q", pos, err, tt.wantPos, tt.wantErr)
			}
		})
	}
}

// TestEventAndHeadStrings: what logs and `ledger audit head` print.
func TestEventAndHeadStrings(t *testing.T) {
	hash, _ := hex.DecodeString("0123456789abcdef")
	tests := []struct {
		hash []byte
		want string
	}{
		{hash, "Test#42 (stream 7 v3, hash 0123456789ab)"},
		{hash[:6], "Test#42 (stream 7 v3, hash 0123456789ab)"},
		{hash[:5], "Test#42 (stream 7 v3, hash 0123456789)"},
		{nil, "Test#42 (stream 7 v3, hash )"},
	}
	for _, tt := range tests {
		e := StoredEvent{Type: "Test", Position: 42, StreamID: 7, StreamVersion: 3, Hash: tt.hash}
		if got := e.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	chainHash := hex.EncodeToString(ChainHash(3, 42, hash, GenesisHash))
	head := ChainHead{Seq: 3, Position: 42, Hash: chainHash}
	if got := head.Anchor(); got != "42:"+chainHash {
		t.Errorf("Anchor() = %q", got)
	}
	if a, err := ParseAnchor(head.Anchor()); err != nil || a.Position != 42 || hex.EncodeToString(a.Hash) != chainHash {
		t.Errorf("ParseAnchor(Anchor()) = %+v, %v", a, err)
	}
}
