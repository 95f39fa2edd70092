package eventlog

import (
	"bytes"
	"testing"
)

// TestCanonicalFastPathHandlesValidDocuments: the one-pass canonicalizer
// itself, without its fallback, gives the reference's bytes for valid
// documents, among them every shape the ledger writes (numbers of every
// form, escapes, nesting, duplicate keys). The fallback hides a fast path
// that gives up, so TestCanonicalFastMatchesReference alone cannot tell a
// fast path that works from one that always falls back.
func TestCanonicalFastPathHandlesValidDocuments(t *testing.T) {
	docs := []string{
		`0`, `-0`, `7`, `-12`, `10.5`, `-0.25`, `1e5`, `1E+5`, `1e-05`, `-1.5E10`, `123456789012345678901234567890`,
		`true`, `false`, `null`, `""`, `"a"`, `[0,-1,2.5e3]`, `[[],[[]],{}]`,
		`{"z":0,"a":-1,"m":[true,false,null],"é":"\u00e9","A":"\ud83d\ude00"}`,
		`{"k":"\"\\\/\b\f\n\r\t\u0001\u001f\u007f <>&"}`,
		`{"b":{"d":1,"c":2},"a":[{"y":1,"x":2}]}`,
		"{\"raw\":\"\xff\xfe \xe2\x80\xa8 \xe2\x80\xa9\"}",
		` { "spaced" : [ 1 , 2 ] , "x" : { } } `,
	}
	for _, d := range canonicalSeeds {
		if ref, err := canonicalReference([]byte(d)); err == nil && len(ref) > 0 && !bytes.Contains([]byte(d), []byte("trailing")) {
			docs = append(docs, d)
		}
	}
	for _, doc := range docs {
		want, err := canonicalReference([]byte(doc))
		if err != nil {
			t.Fatalf("%q: reference: %v", doc, err)
		}
		p := canonParser{s: []byte(doc)}
		p.skipWS()
		got, err := p.value(nil)
		p.skipWS()
		if err != nil || p.i != len(p.s) {
			t.Errorf("%q: the fast path gave up (%v) at byte %d of %d", doc, err, p.i, len(p.s))
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%q:\nfast      %q\nreference %q", doc, got, want)
		}
	}
}
