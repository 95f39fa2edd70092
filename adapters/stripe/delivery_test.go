package stripe

import (
	"slices"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain/app"
)

// TestDeliveryFacts: each handled type reports the fact written here by
// hand (not read back from the handled table), and the unhandled ones
// (parsed all the same, answered "ignored") none. This table is the test of
// which Stripe types the ledger decides on: a new type is one row here.
func TestDeliveryFacts(t *testing.T) {
	want := map[string]app.Fact{
		"checkout.session.completed":               app.FactPaymentSucceeded,
		"checkout.session.async_payment_succeeded": app.FactAsyncPaymentSucceeded,
		"checkout.session.async_payment_failed":    app.FactAsyncPaymentFailed,
		"checkout.session.expired":                 app.FactSessionExpired,
		"payment_intent.succeeded":                 app.FactPaymentSucceeded,
		"payment_intent.payment_failed":            app.FactPaymentFailed,
		"charge.succeeded":                         app.FactNone,
		"charge.failed":                            app.FactNone,
		"charge.refunded":                          app.FactNone,
		"payment_intent.created":                   app.FactNone,
		"payment_intent.canceled":                  app.FactNone,
		"checkout.session.async_payment_pending":   app.FactNone,
		"invoice.paid":                             app.FactNone,
		"customer.created":                         app.FactNone,
	}
	at := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
	for typ, fact := range want {
		t.Run(typ, func(t *testing.T) {
			raw, err := BuildEvent(typ, testBooking, at)
			if err != nil {
				t.Fatal(err)
			}
			d, err := ParseDelivery(raw, "t=1,v1=00", "webhook", at)
			if err != nil {
				t.Fatal(err)
			}
			if d.Fact != fact || d.Handled() != (fact != app.FactNone) {
				t.Errorf("fact %s (handled %v), want %s", d.Fact, d.Handled(), fact)
			}
			if d.Type != typ || d.EventID == "" || string(d.Raw) != string(raw) || d.Signature != "t=1,v1=00" ||
				d.Source != "webhook" || !d.ReceivedAt.Equal(at) {
				t.Errorf("envelope %+v", d)
			}
			if fact == app.FactNone {
				return
			}
			if !slices.Contains(d.Lookup.BookingIDs, testBooking.ID) || d.Payment.Amount != testBooking.Amount ||
				d.Payment.Currency != "eur" || d.Payment.Source != "webhook" || d.Payment.StripeEventType != typ {
				t.Errorf("lookup %+v, payment %+v", d.Lookup, d.Payment)
			}
		})
	}
	var listed []string
	for typ, fact := range want {
		if fact != app.FactNone {
			listed = append(listed, typ)
		}
	}
	slices.Sort(listed)
	got := slices.Sorted(slices.Values(HandledEventTypes))
	if !slices.Equal(got, listed) {
		t.Errorf("HandledEventTypes = %v, want %v", got, listed)
	}
}

// TestParseDeliveryRejects: what ParseEvent rejects is no delivery.
func TestParseDeliveryRejects(t *testing.T) {
	if _, err := ParseDelivery([]byte(`{"id": "evt_1"`), "", "webhook", time.Now()); err == nil {
		t.Fatal("truncated JSON parsed")
	}
}

// TestRedirectDelivery: a paid session checked on the customer's return is
// the completed session's payment, from source redirect, with one event id
// per session and the session's raw JSON.
func TestRedirectDelivery(t *testing.T) {
	at := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
	sess := CheckoutSession{ID: "cs_test_r1", PaymentIntentID: "pi_r1", PaymentStatus: "paid", AmountTotal: 36000,
		Currency: "eur", Livemode: true, APIVersion: APIVersion, Raw: []byte(`{"id":"cs_test_r1"}`)}
	d := (&Client{}).RedirectDelivery(42, sess, at)
	if d.EventID != "redirect:cs_test_r1" || d.Type != "checkout.session.completed" || d.Fact != app.FactPaymentSucceeded ||
		d.Source != "redirect" || d.Signature != "" || string(d.Raw) != `{"id":"cs_test_r1"}` || !d.Livemode ||
		!d.ReceivedAt.Equal(at) || !d.Created.Equal(at) {
		t.Errorf("delivery %+v", d)
	}
	if !slices.Equal(d.Lookup.BookingIDs, []int64{42}) || d.Lookup.SessionID != "cs_test_r1" || d.Lookup.PaymentIntentID != "pi_r1" {
		t.Errorf("lookup %+v", d.Lookup)
	}
	if p := d.Payment; p.SessionID != "cs_test_r1" || p.PaymentIntentID != "pi_r1" || p.Amount != 36000 || p.Currency != "eur" ||
		p.PaymentStatus != "paid" || p.Source != "redirect" || p.StripeEventType != "" {
		t.Errorf("payment %+v", p)
	}
}
