package stripe

import (
	_ "embed"
	"fmt"
)

var (
	//go:embed fixtures/refund.json
	refundFixture []byte
	//go:embed fixtures/dispute.json
	disputeFixture []byte
)

// Fixture returns a fresh, mutable copy of one of Stripe's own object
// fixtures (see fixtures/README.md), decoded with json.Number for numbers:
// object is "checkout.session", "payment_intent", "charge", "refund" or "dispute". Test
// fakes of Stripe's API build their answers from it, so they carry every
// field a real answer has. It fails for any other object name.
func Fixture(object string) (map[string]any, error) {
	var raw []byte
	switch object {
	case ObjectCheckoutSession:
		raw = checkoutSessionFixture
	case ObjectPaymentIntent:
		raw = paymentIntentFixture
	case ObjectCharge:
		raw = chargeFixture
	case ObjectRefund:
		raw = refundFixture
	case ObjectDispute:
		raw = disputeFixture
	default:
		return nil, fmt.Errorf("stripe: no fixture for object %q", object)
	}
	return loadFixture(raw)
}
