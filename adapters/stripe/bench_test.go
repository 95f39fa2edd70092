package stripe

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// benchEvent returns a payment_intent.succeeded event of about 1 KB: the
// built event, compact, without its null fields (the size REFERENCE.md's
// figures are for), and the full pretty-printed checkout.session.completed
// event as Stripe would send it.
func benchEvents(b *testing.B) map[string][]byte {
	b.Helper()
	full, err := BuildEvent(EventCheckoutSessionCompleted, TestBooking{ID: 7, Amount: 36000, Currency: "eur"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	pi, err := BuildEvent(EventPaymentIntentSucceeded, TestBooking{ID: 7, Amount: 36000, Currency: "eur"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(pi, &m); err != nil {
		b.Fatal(err)
	}
	obj := m["data"].(map[string]any)["object"].(map[string]any)
	for k, v := range obj {
		if v == nil {
			delete(obj, k)
		}
	}
	small, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	return map[string][]byte{
		fmt.Sprintf("payment_intent_%dB", len(small)):  small,
		fmt.Sprintf("checkout_session_%dB", len(full)): full,
	}
}

// BenchmarkVerifyAndParse compares this package's Verify+ParseEvent with
// stripe-go's ConstructEventWithOptions, which verifies the same signature
// and decodes the whole event (data.object twice).
func BenchmarkVerifyAndParse(b *testing.B) {
	v, err := NewVerifier(VerifierConfig{Secrets: []string{secretA}})
	if err != nil {
		b.Fatal(err)
	}
	for name, payload := range benchEvents(b) {
		header := Sign(payload, secretA, time.Now())
		b.Run(name+"/Verify+ParseEvent", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Verify(payload, header); err != nil {
					b.Fatal(err)
				}
				if _, err := ParseEvent(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/stripe-go_ConstructEventWithOptions", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := webhook.ConstructEventWithOptions(payload, header, secretA, webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/Verify", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Verify(payload, header); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/ParseEvent", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseEvent(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
