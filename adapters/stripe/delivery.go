package stripe

import (
	"encoding/json"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// handledType is one Stripe event type the ledger decides on: the object it
// carries and the fact it reports.
type handledType struct {
	eventType string
	object    string
	fact      app.Fact
}

// handled is THE list of the Stripe event types the ledger decides on, and
// what each one means. Adding a type that reports an existing fact is one
// line here (the webhook endpoint's types, reconciliation's listing and the
// decision follow); a new fact also needs its decision in domain/app
// (ingest.go's decision).
var handled = []handledType{
	{EventCheckoutSessionCompleted, ObjectCheckoutSession, app.FactPaymentSucceeded},
	{EventCheckoutSessionAsyncPaymentSucceeded, ObjectCheckoutSession, app.FactAsyncPaymentSucceeded},
	{EventCheckoutSessionAsyncPaymentFailed, ObjectCheckoutSession, app.FactAsyncPaymentFailed},
	{EventCheckoutSessionExpired, ObjectCheckoutSession, app.FactSessionExpired},
	{EventPaymentIntentSucceeded, ObjectPaymentIntent, app.FactPaymentSucceeded},
	{EventPaymentIntentPaymentFailed, ObjectPaymentIntent, app.FactPaymentFailed},
	{EventChargeRefunded, ObjectCharge, app.FactChargeRefunded},
	{EventRefundCreated, ObjectRefund, app.FactRefund},
	{EventRefundUpdated, ObjectRefund, app.FactRefund},
	{EventRefundFailed, ObjectRefund, app.FactRefund},
	{EventChargeRefundUpdated, ObjectRefund, app.FactRefund},
	{EventChargeDisputeCreated, ObjectDispute, app.FactDisputeCreated},
	{EventChargeDisputeUpdated, ObjectDispute, app.FactDisputeUpdated},
	{EventChargeDisputeClosed, ObjectDispute, app.FactDisputeClosed},
	{EventChargeDisputeFundsWithdrawn, ObjectDispute, app.FactDisputeFundsWithdrawn},
	{EventChargeDisputeFundsReinstated, ObjectDispute, app.FactDisputeFundsReinstated},
}

var handledByType = func() map[string]handledType {
	m := make(map[string]handledType, len(handled))
	for _, h := range handled {
		m[h.eventType] = h
	}
	return m
}()

// HandledEventTypes are the event types the ledger decides on: the ones to
// enable on the webhook endpoint in Stripe's dashboard, and the ones
// reconciliation asks the Events API for.
var HandledEventTypes = func() []string {
	types := make([]string, len(handled))
	for i, h := range handled {
		types[i] = h.eventType
	}
	return types
}()

// Delivery is e as a delivery for the ledger's use cases: the raw body and
// signature header kept for the auditors (header "" for events fetched from
// the API), the fact e reports, the lookup keys and the payment. source is
// "webhook", "api" or "redirect". Every path that ingests Stripe events
// (webhook, reconcile, replays) builds its delivery here, so they decide
// alike.
func (e Event) Delivery(raw []byte, header, source string, receivedAt time.Time) app.Delivery {
	lookup := e.Lookup()
	return app.Delivery{
		EventID:    e.ID,
		Type:       e.Type,
		APIVersion: e.APIVersion,
		Livemode:   e.Livemode,
		Account:    e.Account,
		Created:    e.Created,
		Raw:        raw,
		Signature:  header,
		Source:     source,
		ReceivedAt: receivedAt,
		Fact:       handledByType[e.Type].fact,
		Lookup: app.Lookup{
			BookingIDs:      lookup.BookingIDs,
			SessionID:       lookup.SessionID,
			PaymentIntentID: lookup.PaymentIntentID,
		},
		Payment:      e.Payment(source),
		Refund:       e.Object.refund(e.Type),
		ChargeRefund: e.Object.chargeRefund(e.Type),
		Dispute:      e.Object.dispute(e.Type),
	}
}

// refund is o as the refund fact, zero unless o is a refund.
func (o Object) refund(eventType string) domain.Refund {
	if o.Object != ObjectRefund {
		return domain.Refund{}
	}
	return domain.Refund{
		ID:              o.ID,
		ChargeID:        o.ChargeID,
		PaymentIntentID: o.PaymentIntentID,
		Amount:          o.Amount,
		Currency:        o.Currency,
		Status:          domain.RefundStatus(o.Status),
		FailureReason:   o.FailureReason,
		StripeEventType: eventType,
	}
}

// chargeRefund is o as charge.refunded's fact, zero unless o is a charge.
func (o Object) chargeRefund(eventType string) domain.ChargeRefund {
	if o.Object != ObjectCharge {
		return domain.ChargeRefund{}
	}
	c := domain.ChargeRefund{
		ChargeID:        o.ChargeID,
		PaymentIntentID: o.PaymentIntentID,
		AmountRefunded:  o.AmountRefunded,
		Currency:        o.Currency,
		StripeEventType: eventType,
	}
	for _, r := range o.Refunds {
		c.Refunds = append(c.Refunds, r.refund(eventType))
	}
	return c
}

// dispute is o as a dispute fact, zero unless o is a dispute.
func (o Object) dispute(eventType string) domain.Dispute {
	if o.Object != ObjectDispute {
		return domain.Dispute{}
	}
	return domain.Dispute{
		ID:              o.ID,
		ChargeID:        o.ChargeID,
		PaymentIntentID: o.PaymentIntentID,
		Amount:          o.Amount,
		Currency:        o.Currency,
		Status:          domain.DisputeStatus(o.Status),
		Reason:          o.Reason,
		EvidenceDueBy:   o.EvidenceDueBy,
		Created:         o.Created,
		StripeEventType: eventType,
	}
}

// ParseDelivery parses raw (ParseEvent) and returns it as a delivery; it is
// the app.EventParser of reconciliation and replays. Errors are ParseEvent's.
func ParseDelivery(raw []byte, header, source string, receivedAt time.Time) (app.Delivery, error) {
	e, err := ParseEvent(raw)
	if err != nil {
		return app.Delivery{}, err
	}
	return e.Delivery(raw, header, source, receivedAt), nil
}

var _ app.EventParser = ParseDelivery

// ParseDelivery is the package's ParseDelivery, so that a Verifier is the
// HTTP edge's one port to Stripe's webhook format: verify, then parse.
func (v *Verifier) ParseDelivery(raw []byte, header, source string, receivedAt time.Time) (app.Delivery, error) {
	return ParseDelivery(raw, header, source, receivedAt)
}

// RedirectDelivery is a paid Checkout Session, retrieved from Stripe's API
// when the customer came back, as the delivery of the
// checkout.session.completed event it stands for: its raw JSON kept, no
// signature, source "redirect", event id "redirect:<session id>" (one per
// session: repeated visits are duplicates).
func (c *Client) RedirectDelivery(bookingID int64, sess CheckoutSession, receivedAt time.Time) app.Delivery {
	source := string(domain.SourceRedirect)
	return app.Delivery{
		EventID:    "redirect:" + sess.ID,
		Type:       EventCheckoutSessionCompleted,
		APIVersion: sess.APIVersion,
		Livemode:   sess.Livemode,
		Created:    receivedAt,
		Raw:        sess.Raw,
		Source:     source,
		ReceivedAt: receivedAt,
		Fact:       handledByType[EventCheckoutSessionCompleted].fact,
		Lookup:     app.Lookup{BookingIDs: []int64{bookingID}, SessionID: sess.ID, PaymentIntentID: sess.PaymentIntentID},
		Payment: domain.Payment{
			SessionID:       sess.ID,
			PaymentIntentID: sess.PaymentIntentID,
			Amount:          sess.AmountTotal,
			Currency:        sess.Currency,
			PaymentStatus:   sess.PaymentStatus,
			Source:          source,
		},
	}
}

var _ app.Payments = (*Client)(nil)

// ParseRedirectDelivery reads a Checkout Session kept by the redirect
// check (its raw JSON, the inbox row of source "redirect") back into the
// delivery RedirectDelivery made of it, for decisions run again from the
// stored inputs.
func ParseRedirectDelivery(raw []byte, bookingID int64, receivedAt time.Time) (app.Delivery, error) {
	var s stripego.CheckoutSession
	if err := json.Unmarshal(raw, &s); err != nil || s.ID == "" {
		return app.Delivery{}, fieldError("body", "not a Checkout Session")
	}
	sess := sessionFrom(&s)
	sess.Raw = raw
	return (&Client{}).RedirectDelivery(bookingID, sess, receivedAt), nil
}
