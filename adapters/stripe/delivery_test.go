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
