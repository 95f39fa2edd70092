// Package stripe is the ledger's edge towards Stripe's webhooks: it verifies
// the Stripe-Signature header of a raw request body (Verifier), reduces the
// verified JSON to the few fields the ledger decides on (ParseEvent, Event),
// says how to find the booking an event is about (Event.Lookup) and turns it
// into the domain's payment fact (Event.Payment).
//
// Verification uses stripe-go v76's webhook package for the HMAC, accepts
// several secrets (rotation) and checks the timestamp in both directions
// against an injectable clock. Parsing does not use stripe-go's event type:
// it decodes once, only what is needed, and accepts every API version, since
// the endpoint's version is chosen in Stripe's dashboard, not here.
//
// BuildEvent and Sign make realistic signed events from Stripe's own object
// fixtures, for `ledger send-test-webhook` and for tests.
//
// Every error that describes bad input (a bad signature as much as bad JSON)
// matches domain.ErrInvalid, which the HTTP adapter answers with 400.
package stripe
