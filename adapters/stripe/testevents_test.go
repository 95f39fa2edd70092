package stripe

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/booking-ledger/ledger/domain"
)

// TestBuildEventIsRealistic checks each built event against stripe-go's own
// decoding (the strictest independent reader at hand) and against the
// fixture it came from: every field of Stripe's object is still there.
func TestBuildEventIsRealistic(t *testing.T) {
	now := time.Date(2027, 1, 9, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		typ, object, status, paymentStatus string
		fixture                            []byte
	}{
		{EventCheckoutSessionCompleted, "checkout.session", "complete", "paid", checkoutSessionFixture},
		{EventCheckoutSessionAsyncPaymentSucceeded, "checkout.session", "complete", "paid", checkoutSessionFixture},
		{EventCheckoutSessionAsyncPaymentFailed, "checkout.session", "complete", "unpaid", checkoutSessionFixture},
		{EventCheckoutSessionExpired, "checkout.session", "expired", "unpaid", checkoutSessionFixture},
		{EventPaymentIntentSucceeded, "payment_intent", "succeeded", "", paymentIntentFixture},
		{EventPaymentIntentPaymentFailed, "payment_intent", "requires_payment_method", "", paymentIntentFixture},
		{"payment_intent.canceled", "payment_intent", "canceled", "", paymentIntentFixture},
		{"charge.succeeded", "charge", "succeeded", "", chargeFixture},
		{"charge.failed", "charge", "failed", "", chargeFixture},
		{EventChargeRefunded, "charge", "succeeded", "", chargeFixture},
		{EventRefundCreated, "refund", "succeeded", "", refundFixture},
		{EventRefundFailed, "refund", "failed", "", refundFixture},
		{EventChargeRefundUpdated, "refund", "succeeded", "", refundFixture},
		{EventChargeDisputeCreated, "dispute", "needs_response", "", disputeFixture},
		{EventChargeDisputeClosed, "dispute", "lost", "", disputeFixture},
		{EventChargeDisputeFundsReinstated, "dispute", "won", "", disputeFixture},
		{"customer.created", "payment_intent", "requires_payment_method", "", paymentIntentFixture},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			payload, err := BuildEvent(tt.typ, testBooking, now)
			if err != nil {
				t.Fatalf("BuildEvent: %v", err)
			}
			header := Sign(payload, secretA, time.Now())
			ev, err := webhook.ConstructEventWithOptions(payload, header, secretA, webhook.ConstructEventOptions{})
			if err != nil {
				t.Fatalf("stripe-go ConstructEventWithOptions: %v", err)
			}
			if ev.Type != stripego.EventType(tt.typ) || ev.Livemode || ev.PendingWebhooks != 1 || ev.Request == nil ||
				ev.Created != now.Unix() || !strings.HasPrefix(ev.ID, "evt_") || ev.APIVersion != stripego.APIVersion {
				t.Errorf("event envelope = %+v", ev)
			}
			if got := ev.Data.Object["object"]; got != tt.object {
				t.Errorf("data.object.object = %v, want %s", got, tt.object)
			}
			if got := ev.Data.Object["status"]; got != tt.status {
				t.Errorf("status = %v, want %s", got, tt.status)
			}
			// Stripe's disputes carry metadata of their own, empty.
			if got := ev.Data.Object["metadata"].(map[string]any)["booking_id"]; got != "42" && tt.object != "dispute" {
				t.Errorf("metadata.booking_id = %v", got)
			}
			if got := ev.Data.Object["currency"]; got != "eur" {
				t.Errorf("currency = %v, want eur", got)
			}

			switch tt.object {
			case "checkout.session":
				var s stripego.CheckoutSession
				if err := json.Unmarshal(ev.Data.Raw, &s); err != nil {
					t.Fatalf("decode as stripe.CheckoutSession: %v", err)
				}
				if s.ID != testBooking.SessionID || s.AmountTotal != 36000 || s.ClientReferenceID != "42" ||
					string(s.PaymentStatus) != tt.paymentStatus || s.CustomerEmail != testBooking.CustomerEmail {
					t.Errorf("session = %+v", s)
				}
				wantPI := testBooking.PaymentIntentID
				if (s.PaymentIntent == nil && wantPI != "") || (s.PaymentIntent != nil && s.PaymentIntent.ID != wantPI) {
					t.Errorf("session payment_intent = %+v, want %q", s.PaymentIntent, wantPI)
				}
			case "payment_intent":
				var pi stripego.PaymentIntent
				if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
					t.Fatalf("decode as stripe.PaymentIntent: %v", err)
				}
				if pi.ID != testBooking.PaymentIntentID || pi.Amount != 36000 {
					t.Errorf("payment intent = %+v", pi)
				}
				if failed := tt.typ == EventPaymentIntentPaymentFailed; failed != (pi.LastPaymentError != nil) {
					t.Errorf("last_payment_error = %+v", pi.LastPaymentError)
				} else if failed && (pi.LastPaymentError.Code != "card_declined" || pi.LastPaymentError.Msg == "") {
					t.Errorf("last_payment_error = %+v", pi.LastPaymentError)
				}
				if tt.typ == EventPaymentIntentSucceeded && pi.AmountReceived != 36000 {
					t.Errorf("amount_received = %d", pi.AmountReceived)
				}
			case "charge":
				var ch stripego.Charge
				if err := json.Unmarshal(ev.Data.Raw, &ch); err != nil {
					t.Fatalf("decode as stripe.Charge: %v", err)
				}
				if ch.PaymentIntent == nil || ch.PaymentIntent.ID != testBooking.PaymentIntentID || ch.Amount != 36000 ||
					ch.ID != testBooking.ChargeID || (tt.typ == EventChargeRefunded) != (ch.AmountRefunded == 36000 && ch.Refunded) {
					t.Errorf("charge = %+v", ch)
				}
			case "refund":
				var r stripego.Refund
				if err := json.Unmarshal(ev.Data.Raw, &r); err != nil {
					t.Fatalf("decode as stripe.Refund: %v", err)
				}
				if r.PaymentIntent == nil || r.PaymentIntent.ID != testBooking.PaymentIntentID || r.Charge == nil ||
					r.Charge.ID != testBooking.ChargeID || r.Amount != 36000 || string(r.Status) != tt.status ||
					(tt.status == "failed") != (r.FailureReason != "") {
					t.Errorf("refund = %+v", r)
				}
			case "dispute":
				var d stripego.Dispute
				if err := json.Unmarshal(ev.Data.Raw, &d); err != nil {
					t.Fatalf("decode as stripe.Dispute: %v", err)
				}
				if d.PaymentIntent == nil || d.PaymentIntent.ID != testBooking.PaymentIntentID || d.Charge == nil ||
					d.Charge.ID != testBooking.ChargeID || d.Amount != 36000 || string(d.Status) != tt.status ||
					d.EvidenceDetails == nil || d.EvidenceDetails.DueBy != now.Add(14*24*time.Hour).Unix() {
					t.Errorf("dispute = %+v", d)
				}
			}

			var fixture map[string]any
			if err := json.Unmarshal(tt.fixture, &fixture); err != nil {
				t.Fatal(err)
			}
			for k := range fixture {
				if _, ok := ev.Data.Object[k]; !ok {
					t.Errorf("field %q of the fixture is missing", k)
				}
			}
		})
	}
}

func TestBuildEventDefaults(t *testing.T) {
	payload, err := BuildEvent(EventCheckoutSessionCompleted, TestBooking{Amount: 100, Currency: "usd"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseEvent(payload)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(e.Created) > time.Minute {
		t.Errorf("Created = %v, want about now", e.Created)
	}
	l := e.Lookup()
	if len(l.BookingIDs) > 0 || !strings.HasPrefix(l.SessionID, "cs_test_") || !strings.HasPrefix(l.PaymentIntentID, "pi_") {
		t.Errorf("Lookup() = %+v, want generated ids and no booking id", l)
	}
}

func TestBuildEventExpiredWithoutPaymentIntent(t *testing.T) {
	payload, err := BuildEvent(EventCheckoutSessionExpired, TestBooking{ID: 3, SessionID: "cs_test_3", Amount: 100, Currency: "usd"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseEvent(payload)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Lookup{BookingIDs: []int64{3}, SessionID: "cs_test_3"}); !reflect.DeepEqual(e.Lookup(), want) {
		t.Errorf("Lookup() = %+v, want %+v", e.Lookup(), want)
	}
	if !strings.Contains(string(payload), `"payment_intent": null`) {
		t.Errorf("expired session without a PaymentIntent id does not say payment_intent null")
	}
}

func TestBuildEventRejects(t *testing.T) {
	b := testBooking
	tests := []struct {
		name, typ string
		mutate    func(*TestBooking)
	}{
		{"no type", "", func(*TestBooking) {}},
		{"negative id", EventPaymentIntentSucceeded, func(b *TestBooking) { b.ID = -1 }},
		{"negative amount", EventPaymentIntentSucceeded, func(b *TestBooking) { b.Amount = -1 }},
		{"no currency", EventPaymentIntentSucceeded, func(b *TestBooking) { b.Currency = "" }},
		{"bad currency", EventPaymentIntentSucceeded, func(b *TestBooking) { b.Currency = "euro" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := b
			tt.mutate(&b)
			if _, err := BuildEvent(tt.typ, b, time.Now()); !errors.Is(err, domain.ErrInvalid) {
				t.Errorf("BuildEvent error = %v, want domain.ErrInvalid", err)
			}
		})
	}
}

func TestNewIDs(t *testing.T) {
	tests := []struct {
		name string
		gen  func() string
		re   *regexp.Regexp
	}{
		{"event", NewEventID, regexp.MustCompile(`^evt_1[0-9A-Za-z]{23}$`)},
		{"session", NewSessionID, regexp.MustCompile(`^cs_test_a1[0-9A-Za-z]{56}$`)},
		{"payment intent", NewPaymentIntentID, regexp.MustCompile(`^pi_3[0-9A-Za-z]{23}$`)},
	}
	for _, tt := range tests {
		seen := map[string]bool{}
		for range 1000 {
			id := tt.gen()
			if !tt.re.MatchString(id) {
				t.Fatalf("%s id %q does not match %s", tt.name, id, tt.re)
			}
			if seen[id] {
				t.Fatalf("%s id %q repeated", tt.name, id)
			}
			seen[id] = true
		}
	}
	if _, err := ParseEvent([]byte(`{"id":"` + NewEventID() + `","type":"x"}`)); err != nil {
		t.Errorf("ParseEvent rejects a NewEventID id: %v", err)
	}
}

func TestRandomStringUsesWholeAlphabet(t *testing.T) {
	seen := map[rune]bool{}
	for _, c := range randomString(20000) {
		seen[c] = true
	}
	if len(seen) != len(base62) {
		t.Errorf("randomString used %d distinct characters, want %d", len(seen), len(base62))
	}
}
