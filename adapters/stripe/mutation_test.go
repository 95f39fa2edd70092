package stripe

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// The tests of this file were written against the mutants that survived
// `make mutate` (docs/MUTATION.md): each pins down an edge or a message
// the other tests left open. They live in a file of their own so that the
// tables of event types (event.go, delivery.go) can grow without touching
// them.

// TestCheckObjectIDCharacters: a Stripe object id is the prefix and then
// letters, digits and underscores, every edge of each range included;
// the bytes next to the ranges are refused.
func TestCheckObjectIDCharacters(t *testing.T) {
	for _, id := range []string{"pi_0", "pi_9", "pi_a", "pi_z", "pi_A", "pi_Z", "pi__", "pi_3Abc09_xyz"} {
		if err := checkObjectID("payment_intent_id", "pi_", id); err != nil {
			t.Errorf("%q refused: %v", id, err)
		}
	}
	for _, id := range []string{"pi_/", "pi_:", "pi_@", "pi_[", "pi_`", "pi_{", "pi_-", "pi_ ", "pi_", "ch_1", "pi_1/../x"} {
		if err := checkObjectID("payment_intent_id", "pi_", id); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%q accepted (%v)", id, err)
		}
	}
}

// TestParseEventObjectChecks: the refusal of an object names what is wrong
// with it (missing, or which object came instead); an amount of 0 (a
// booking paid in full by a discount) is accepted; empty metadata is nil,
// as Object.Metadata documents.
func TestParseEventObjectChecks(t *testing.T) {
	refusals := []struct {
		name, object, msg string
	}{
		{"no object", withField(t, sessionObject, "object", ""), "data.object.object: missing"},
		{"empty object", withField(t, sessionObject, "object", `""`), "data.object.object: missing"},
		{"another object", withField(t, sessionObject, "object", `"payment_intent"`), `data.object.object: is "payment_intent", want "checkout.session"`},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEvent([]byte(event(EventCheckoutSessionCompleted, tt.object)))
			if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ParseEvent: %v, want %q", err, tt.msg)
			}
		})
	}
	accepted := []struct {
		name, typ, object string
	}{
		{"session of amount 0", EventCheckoutSessionCompleted, withField(t, sessionObject, "amount_total", "0")},
		{"payment of amount 0", EventPaymentIntentSucceeded, withField(t, piObject, "amount", "0")},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEvent([]byte(event(tt.typ, tt.object)))
			if err != nil {
				t.Fatalf("ParseEvent: %v", err)
			}
			if e.Object.Amount != 0 {
				t.Errorf("amount %d", e.Object.Amount)
			}
		})
	}
	for _, md := range []string{`{}`, `null`} {
		e, err := ParseEvent([]byte(event(EventPaymentIntentSucceeded, withField(t, piObject, "metadata", md))))
		if err != nil {
			t.Fatal(err)
		}
		if e.Object.Metadata != nil {
			t.Errorf("metadata %s: Object.Metadata = %#v, want nil", md, e.Object.Metadata)
		}
	}
	e, err := ParseEvent([]byte(event(EventCheckoutSessionCompleted, sessionObject)))
	if err != nil || e.Object.Metadata["booking_id"] != "5" {
		t.Fatalf("metadata of %s: %v, %v", sessionObject, e.Object.Metadata, err)
	}
}

// TestVerifierMessages: the configuration errors name the secret by its
// position (1-based), a zero tolerance means the default, a header that
// starts with a NUL byte is refused as malformed however well signed the
// rest is, and a bad signature says how many secrets were tried.
func TestVerifierMessages(t *testing.T) {
	for _, tt := range []struct {
		secrets []string
		msg     string
	}{
		{[]string{secretA, ""}, "webhook secret 2 is empty"},
		{[]string{"", secretA}, "webhook secret 1 is empty"},
		{[]string{secretA, secretB + "\n"}, "webhook secret 2 has leading or trailing white space"},
	} {
		err := VerifierConfig{Secrets: tt.secrets}.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Validate(%d secrets): %v, want %q", len(tt.secrets), err, tt.msg)
		}
	}
	if err := (VerifierConfig{Secrets: []string{secretA}}).Validate(); err != nil {
		t.Errorf("Validate with a zero tolerance: %v", err)
	}

	payload := testPayload(t)
	now := testNow // the test verifiers' clock
	v := newTestVerifier(t, secretA)
	good := Sign(payload, secretA, now)
	if err := v.Verify(payload, good); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(payload, "\x00=0,"+good); !errors.Is(err, ErrMalformedHeader) {
		t.Errorf("header starting with NUL: %v, want ErrMalformedHeader", err)
	}
	// The message is answered to unauthenticated senders: it says neither
	// how many secrets were tried nor anything else (L1).
	if err := v.Verify(payload, Sign(payload, secretB, now)); err != ErrBadSignature {
		t.Errorf("one secret, wrong signature: %v, want exactly %v", err, ErrBadSignature)
	}
	two := newTestVerifier(t, secretA, secretB)
	if err := two.Verify(payload, Sign(payload, "whsec_other", now)); err != ErrBadSignature {
		t.Errorf("two secrets, wrong signature: %v, want exactly %v", err, ErrBadSignature)
	}
}

// TestBuildEventTimeline: a built event tells a story that holds together
// (the tests that replay it rely on it): its object was created before the
// event, a Checkout Session expires 24 hours after its creation, an async
// payment's session was opened days earlier, an expired one expired by
// now; a card shown in a failure has not expired; an amount of 0 is a
// valid booking.
func TestBuildEventTimeline(t *testing.T) {
	now := time.Date(2027, 1, 9, 12, 0, 0, 0, time.UTC)
	for _, typ := range []string{
		EventCheckoutSessionCompleted, EventCheckoutSessionAsyncPaymentSucceeded, EventCheckoutSessionAsyncPaymentFailed,
		EventCheckoutSessionExpired, "checkout.session.created", EventPaymentIntentSucceeded, EventPaymentIntentPaymentFailed,
		"charge.succeeded",
	} {
		t.Run(typ, func(t *testing.T) {
			obj := builtObject(t, typ, testBooking, now)
			created := unix(t, obj, "created")
			if !created.Before(now) {
				t.Errorf("object created %v, not before the event (%v)", created, now)
			}
			if obj["object"] == ObjectCheckoutSession {
				if expires := unix(t, obj, "expires_at"); !expires.Equal(created.Add(24 * time.Hour)) {
					t.Errorf("expires_at %v, want 24 h after created %v", expires, created)
				}
			}
			switch typ {
			case EventCheckoutSessionAsyncPaymentSucceeded, EventCheckoutSessionAsyncPaymentFailed:
				if now.Sub(created) < 24*time.Hour {
					t.Errorf("async payment's session created %v before the result, want days", now.Sub(created))
				}
			case EventCheckoutSessionExpired:
				if expires := unix(t, obj, "expires_at"); expires.After(now) {
					t.Errorf("expired session expires at %v, after the event %v", expires, now)
				}
			case EventPaymentIntentPaymentFailed:
				card := obj["last_payment_error"].(map[string]any)["payment_method"].(map[string]any)["card"].(map[string]any)
				if year, _ := card["exp_year"].(json.Number).Int64(); year <= int64(now.Year()) {
					t.Errorf("the card expires in %d, the failure happens in %d", year, now.Year())
				}
			}
		})
	}
	free := testBooking
	free.Amount = 0
	if _, err := BuildEvent(EventCheckoutSessionCompleted, free, now); err != nil {
		t.Errorf("BuildEvent with amount 0: %v", err)
	}
}

// TestBuildEventCustomerAndDescription: a completed session has the
// customer's details — the fixture's fields with the booking's email — and
// an open or expired one none; a PaymentIntent or a charge of a booking
// says which booking, and one without a booking has no description.
func TestBuildEventCustomerAndDescription(t *testing.T) {
	now := time.Now()
	completed := builtObject(t, EventCheckoutSessionCompleted, testBooking, now)
	cd, ok := completed["customer_details"].(map[string]any)
	if !ok || cd["email"] != testBooking.CustomerEmail {
		t.Fatalf("customer_details %v, want the booking's email", completed["customer_details"])
	}
	for _, field := range []string{"address", "name", "phone", "tax_exempt"} {
		if _, ok := cd[field]; !ok {
			t.Errorf("customer_details lost the fixture's %s: %v", field, cd)
		}
	}
	for _, typ := range []string{EventCheckoutSessionExpired, "checkout.session.created"} {
		if obj := builtObject(t, typ, testBooking, now); obj["customer_details"] != nil {
			t.Errorf("%s: customer_details %v, want null", typ, obj["customer_details"])
		}
	}
	for _, typ := range []string{EventPaymentIntentSucceeded, "charge.succeeded"} {
		if got := builtObject(t, typ, testBooking, now)["description"]; got != "Booking 42" {
			t.Errorf("%s: description %v, want Booking 42", typ, got)
		}
		anonymous := testBooking
		anonymous.ID = 0
		if got := builtObject(t, typ, anonymous, now)["description"]; got != nil {
			t.Errorf("%s without a booking: description %v, want null", typ, got)
		}
	}
	charge := builtObject(t, "charge.succeeded", testBooking, now)
	if refunds, ok := charge["refunds"].(map[string]any); !ok || refunds["url"] == nil || refunds["object"] != "list" {
		t.Errorf("charge refunds %v, want the fixture's list with the charge's url", charge["refunds"])
	}
}

// builtObject is data.object of BuildEvent(typ, b, now), numbers as
// json.Number.
func builtObject(t *testing.T, typ string, b TestBooking, now time.Time) map[string]any {
	t.Helper()
	body, err := BuildEvent(typ, b, now)
	if err != nil {
		t.Fatalf("BuildEvent(%s): %v", typ, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var ev struct {
		Data struct {
			Object map[string]any `json:"object"`
		} `json:"data"`
	}
	if err := dec.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	return ev.Data.Object
}

func unix(t *testing.T, obj map[string]any, field string) time.Time {
	t.Helper()
	n, ok := obj[field].(json.Number)
	if !ok {
		t.Fatalf("%s = %v, want a number", field, obj[field])
	}
	s, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(s, 0).UTC()
}
