package eventlog

import (
	"bytes"
	"testing"
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
	var c Canonicalizer
	c.Canonical([]byte(`{"warm": {"up": [1, {"x": "y"}]}, "b": 2}`))
	again, _ := c.Canonical(doc)
	if !bytes.Equal(again, got) {
		t.Fatalf("%q: reused Canonicalizer %q, fresh %q", doc, again, got)
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
	b.Run("Canonicalizer", func(b *testing.B) {
		var c Canonicalizer
		for b.Loop() {
			c.Canonical(doc)
		}
	})
}
