package stripetest

import (
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
)

// Events builds, signs and parses Stripe events with the Stripe adapter's
// test builders: the ledgertest.Events a seeded test ledger is given.
type Events struct{}

// NewSessionID returns a fresh Checkout Session id.
func (Events) NewSessionID() string { return stripe.NewSessionID() }

// NewPaymentIntentID returns a fresh PaymentIntent id.
func (Events) NewPaymentIntentID() string { return stripe.NewPaymentIntentID() }

// Build returns a Stripe event of type typ about a booking's payment
// (stripe.BuildEvent).
func (Events) Build(typ string, bookingID int64, sessionID, paymentIntentID string, amount int64, currency, email string, at time.Time) ([]byte, error) {
	return stripe.BuildEvent(typ, stripe.TestBooking{ID: bookingID, SessionID: sessionID, PaymentIntentID: paymentIntentID,
		Amount: amount, Currency: currency, CustomerEmail: email}, at)
}

// BuildMoney returns a refund, charge.refunded or dispute event about a
// booking's payment (stripe.BuildEvent).
func (Events) BuildMoney(typ string, bookingID int64, paymentIntentID, chargeID, objectID string, amount, refunded int64, status, currency string, at time.Time) ([]byte, error) {
	b := stripe.TestBooking{ID: bookingID, PaymentIntentID: paymentIntentID, ChargeID: chargeID, Amount: amount, Currency: currency,
		AmountRefunded: refunded}
	switch {
	case strings.HasPrefix(typ, "charge.dispute."):
		b.Dispute = stripe.TestDispute{ID: objectID, Status: status, Created: at.Add(-time.Hour)}
	case typ == stripe.EventChargeRefunded:
	default:
		b.Refund = stripe.TestRefund{ID: objectID, Amount: amount, Status: status}
	}
	return stripe.BuildEvent(typ, b, at)
}

// Sign returns a Stripe-Signature header of body (stripe.Sign).
func (Events) Sign(body []byte, secret string, at time.Time) string {
	return stripe.Sign(body, secret, at)
}

// Delivery parses a raw event as a delivery (stripe.ParseDelivery).
func (Events) Delivery(raw []byte, header, source string, receivedAt time.Time) (app.Delivery, error) {
	return stripe.ParseDelivery(raw, header, source, receivedAt)
}

// Signatures returns a verifier of the signatures made with secret.
func Signatures(tb testing.TB, secret string) *stripe.Verifier {
	tb.Helper()
	v, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{secret}})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
