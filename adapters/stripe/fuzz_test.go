package stripe

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/booking-ledger/ledger/domain"
)

var seedTypes = []string{
	EventCheckoutSessionCompleted, EventCheckoutSessionAsyncPaymentSucceeded,
	EventCheckoutSessionAsyncPaymentFailed, EventCheckoutSessionExpired,
	EventPaymentIntentSucceeded, EventPaymentIntentPaymentFailed,
	"charge.succeeded", "payment_intent.created",
}

// seedEvents returns BuildEvent's events, compact and with data.object cut
// down to the fields ParseEvent reads. The fuzzer minimizes every new
// interesting input for up to -fuzzminimizetime (60 s by default), and
// mutants of the full 3-4 KB events took all of a 60 s run to minimize,
// leaving no time for fuzzing; events of about 500 bytes keep it busy
// fuzzing. The full events are checked by the other tests.
func seedEvents(f *testing.F) [][]byte {
	f.Helper()
	read := map[string]bool{
		"object": true, "id": true, "client_reference_id": true, "metadata": true,
		"payment_intent": true, "amount_total": true, "amount": true, "currency": true,
		"payment_status": true, "status": true, "last_payment_error": true,
	}
	var out [][]byte
	for _, typ := range seedTypes {
		b, err := BuildEvent(typ, TestBooking{ID: 7, Amount: 36000, Currency: "eur"}, testNow)
		if err != nil {
			f.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			f.Fatal(err)
		}
		obj := m["data"].(map[string]any)["object"].(map[string]any)
		for k := range obj {
			if !read[k] {
				delete(obj, k)
			}
		}
		if e, ok := obj["last_payment_error"].(map[string]any); ok {
			delete(e, "payment_method")
		}
		if b, err = json.Marshal(m); err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzParseEvent checks that ParseEvent never panics, that every error it
// returns is a *domain.FieldError matching domain.ErrInvalid, and that
// every accepted event keeps the promises its doc comment makes.
func FuzzParseEvent(f *testing.F) {
	for _, b := range seedEvents(f) {
		f.Add(b)
	}
	f.Add([]byte(event(EventCheckoutSessionCompleted, sessionObject)))
	f.Add([]byte(event(EventPaymentIntentPaymentFailed, piObject)))
	f.Add([]byte(`{"id":"evt_1","type":"x.y","data":{"object":{"amount":"x"}},"livemode":"no"}`))
	f.Add([]byte(`{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"object":"checkout.session","id":"cs_1","currency":"usd","payment_intent":{"id":"pi_1"}}}}`))

	f.Fuzz(func(t *testing.T, payload []byte) {
		e, err := ParseEvent(payload)
		if err != nil {
			var fe *domain.FieldError
			if !errors.Is(err, domain.ErrInvalid) || !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error %q (%T) is not a *domain.FieldError matching domain.ErrInvalid", err, err)
			}
			return
		}
		if !json.Valid(payload) {
			t.Fatalf("accepted invalid JSON")
		}
		if !strings.HasPrefix(e.ID, "evt_") || len(e.ID) <= 4 || len(e.ID) > maxEventIDLen || e.Type == "" {
			t.Fatalf("accepted envelope %+v", e)
		}
		if e.Handled() {
			o := e.Object
			if o.Object != handledObject(e.Type) || o.ID == "" || o.Amount < 0 || !isCurrencyCode(o.Currency) {
				t.Fatalf("accepted handled event with object %+v", o)
			}
		}
		l := e.Lookup()
		if slices.ContainsFunc(l.BookingIDs, func(id int64) bool { return id <= 0 }) {
			t.Fatalf("Lookup() = %+v", l)
		}
		if p := e.Payment("webhook"); p.StripeEventType != e.Type || p.Source != "webhook" {
			t.Fatalf("Payment() = %+v", p)
		}
	})
}

// FuzzVerify checks that Verify never panics, that every error has exactly
// one sentinel and matches domain.ErrInvalid without leaking the secret,
// and that whatever it accepts stripe-go accepts too and no longer passes
// once the body changes.
func FuzzVerify(f *testing.F) {
	for i, b := range seedEvents(f) {
		f.Add(b, Sign(b, secretA, testNow))
		f.Add(b, hmacHeader(secretB, testNow.Add(time.Duration(i)*time.Minute), b))
	}
	f.Add([]byte("{}"), "")
	f.Add([]byte("{}"), "t=1600000000,v0=00,v1=zz,v1=")
	f.Add([]byte("{}"), "t=abc")

	v, err := NewVerifier(VerifierConfig{Secrets: []string{secretA, secretB}, Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte, header string) {
		err := v.Verify(payload, header)
		if err != nil {
			checkVerifyError(t, err, header, []string{secretA, secretB})
			return
		}
		if webhook.ValidatePayloadIgnoringTolerance(payload, header, secretA) != nil &&
			webhook.ValidatePayloadIgnoringTolerance(payload, header, secretB) != nil {
			t.Fatalf("Verify accepted %q, stripe-go with either secret does not", header)
		}
		if err := v.Verify(append(payload[:len(payload):len(payload)], ' '), header); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("Verify of a changed body = %v", err)
		}
	})
}
