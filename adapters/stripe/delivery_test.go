package stripe

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
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
		"charge.refunded":                          app.FactChargeRefunded,
		"refund.created":                           app.FactRefund,
		"refund.updated":                           app.FactRefund,
		"refund.failed":                            app.FactRefund,
		"charge.refund.updated":                    app.FactRefund,
		"charge.dispute.created":                   app.FactDisputeCreated,
		"charge.dispute.updated":                   app.FactDisputeUpdated,
		"charge.dispute.closed":                    app.FactDisputeClosed,
		"charge.dispute.funds_withdrawn":           app.FactDisputeFundsWithdrawn,
		"charge.dispute.funds_reinstated":          app.FactDisputeFundsReinstated,
		"refund.canceled":                          app.FactNone,
		"charge.dispute.evidence_submitted":        app.FactNone,
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
			// Disputes carry no booking metadata: found by PaymentIntent.
			if !strings.HasPrefix(typ, "charge.dispute.") && !slices.Contains(d.Lookup.BookingIDs, testBooking.ID) ||
				d.Lookup.PaymentIntentID != testBooking.PaymentIntentID {
				t.Errorf("lookup %+v", d.Lookup)
			}
			switch d.Fact {
			case app.FactRefund:
				r := d.Refund
				if !strings.HasPrefix(r.ID, "re_") || r.ChargeID != testBooking.ChargeID || r.PaymentIntentID != testBooking.PaymentIntentID ||
					r.Amount != testBooking.Amount || r.Currency != "eur" || r.StripeEventType != typ ||
					(typ == "refund.failed") != (r.Status == domain.RefundStatusFailed && r.FailureReason == "expired_or_canceled_card") {
					t.Errorf("refund %+v", r)
				}
			case app.FactChargeRefunded:
				c := d.ChargeRefund
				if c.ChargeID != testBooking.ChargeID || c.PaymentIntentID != testBooking.PaymentIntentID || c.AmountRefunded != testBooking.Amount ||
					c.Currency != "eur" || len(c.Refunds) != 0 || c.StripeEventType != typ {
					t.Errorf("charge refund %+v", c)
				}
			case app.FactDisputeCreated, app.FactDisputeUpdated, app.FactDisputeClosed, app.FactDisputeFundsWithdrawn, app.FactDisputeFundsReinstated:
				dp := d.Dispute
				if !strings.HasPrefix(dp.ID, "dp_") || dp.ChargeID != testBooking.ChargeID || dp.PaymentIntentID != testBooking.PaymentIntentID ||
					dp.Amount != testBooking.Amount || dp.Currency != "eur" || !dp.Status.Valid() || dp.Reason != "fraudulent" ||
					!dp.EvidenceDueBy.Equal(at.Add(14*24*time.Hour)) || !dp.Created.Equal(at.Add(-time.Hour)) || dp.StripeEventType != typ {
					t.Errorf("dispute %+v", dp)
				}
			default:
				if d.Payment.Amount != testBooking.Amount || d.Payment.Currency != "eur" || d.Payment.Source != "webhook" ||
					d.Payment.StripeEventType != typ {
					t.Errorf("payment %+v", d.Payment)
				}
			}
			if d.Fact != app.FactRefund && d.Refund.ID != "" || d.Fact != app.FactChargeRefunded && d.ChargeRefund.ChargeID != "" ||
				!strings.HasPrefix(typ, "charge.dispute.") && d.Dispute.ID != "" {
				t.Errorf("facts of other types filled in: %+v %+v %+v", d.Refund, d.ChargeRefund, d.Dispute)
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
