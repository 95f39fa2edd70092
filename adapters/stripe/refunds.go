package stripe

import (
	"context"
	"strconv"
	"strings"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/booking-ledger/ledger/domain"
)

// MetadataRefundKey is the refund metadata key under which Refund stores the
// request's idempotency key, so that the refund can be found again by
// listing the PaymentIntent's refunds.
const MetadataRefundKey = "ledger_refund_key"

// RefundParams asks for a refund of a PaymentIntent.
type RefundParams struct {
	// PaymentIntentID is the payment to refund ("pi_...").
	PaymentIntentID string
	// Amount to refund in minor units (the full payment, for the ledger).
	Amount int64
	// Reason is Stripe's refund reason ("duplicate", "requested_by_customer",
	// "fraudulent") or "" for none.
	Reason string
	// Metadata is attached to the refund, with MetadataRefundKey added.
	Metadata map[string]string
	// IdempotencyKey identifies this refund for good: derive it from what
	// is refunded (booking and PaymentIntent), never from the attempt.
	IdempotencyKey string
}

// Refund is a refund as Stripe answered it.
type Refund struct {
	ID              string
	PaymentIntentID string
	// Status is "pending", "succeeded", "requires_action", "failed" or
	// "canceled".
	Status   string
	Amount   int64
	Currency string
	// Found is true when the refund already existed (made by an earlier
	// attempt with the same key) and no new one was requested.
	Found bool
	// Raw is the refund's JSON as Stripe sent it; RequestID the answer's
	// Request-Id.
	Raw       []byte
	RequestID string
}

// Refund refunds p.PaymentIntentID at most once per p.IdempotencyKey, however
// often it is called and whatever happened to earlier calls:
//
//  1. it lists the PaymentIntent's refunds and returns the one whose
//     metadata carries the key, if any is not failed or canceled (Found);
//  2. else it creates the refund with the key as Stripe idempotency key and
//     in its metadata.
//
// The first step covers what idempotency keys alone do not: Stripe replays a
// saved answer, 500s included, for 24 hours and forgets the key afterwards,
// so an attempt whose answer was lost, or answered 500 after the refund was
// made, is recognised by the refund itself. Stripe never refunds more than
// was paid, which backs both steps.
//
// It returns an error wrapping domain.ErrInvalid, without calling Stripe, for
// a malformed PaymentIntent id, a non-positive amount or an empty key, and an
// *APIError when Stripe fails or refuses.
func (c *Client) Refund(ctx context.Context, p RefundParams) (Refund, error) {
	if err := checkObjectID("payment_intent_id", "pi_", p.PaymentIntentID); err != nil {
		return Refund{}, err
	}
	if p.Amount <= 0 {
		return Refund{}, fieldError("amount", "must be positive")
	}
	if p.IdempotencyKey == "" || len(p.IdempotencyKey) > 255 {
		return Refund{}, fieldError("idempotency_key", "must be 1 to 255 characters")
	}
	ctx = withContext(ctx)
	if r, ok, err := c.findRefund(ctx, p.PaymentIntentID, p.IdempotencyKey); err != nil || ok {
		return r, err
	}
	params := &stripego.RefundParams{
		PaymentIntent: stripego.String(p.PaymentIntentID),
		Amount:        stripego.Int64(p.Amount),
	}
	if p.Reason != "" {
		params.Reason = stripego.String(p.Reason)
	}
	for k, v := range p.Metadata {
		params.AddMetadata(k, v)
	}
	params.AddMetadata(MetadataRefundKey, p.IdempotencyKey)
	params.Context = ctx
	params.SetIdempotencyKey(p.IdempotencyKey)
	r, err := c.api.Refunds.New(params)
	if err != nil {
		return Refund{}, wrapError("create refund", err)
	}
	out := refundFrom(r)
	if r.LastResponse != nil {
		out.Raw = r.LastResponse.RawJSON
		out.RequestID = r.LastResponse.RequestID
	}
	return out, nil
}

// findRefund looks for a live refund of paymentIntentID made with key.
func (c *Client) findRefund(ctx context.Context, paymentIntentID, key string) (Refund, bool, error) {
	params := &stripego.RefundListParams{PaymentIntent: stripego.String(paymentIntentID)}
	params.Limit = stripego.Int64(100)
	params.Context = ctx
	it := c.api.Refunds.List(params)
	for it.Next() {
		r := it.Refund()
		if r.Metadata[MetadataRefundKey] != key {
			continue
		}
		if r.Status == stripego.RefundStatusFailed || r.Status == stripego.RefundStatusCanceled {
			continue
		}
		out := refundFrom(r)
		out.Found = true
		if l := it.RefundList(); l != nil && l.LastResponse != nil {
			out.RequestID = l.LastResponse.RequestID
		}
		return out, true, nil
	}
	if err := it.Err(); err != nil {
		return Refund{}, false, wrapError("list refunds", err)
	}
	return Refund{}, false, nil
}

func refundFrom(r *stripego.Refund) Refund {
	out := Refund{
		ID:       r.ID,
		Status:   string(r.Status),
		Amount:   r.Amount,
		Currency: strings.ToLower(string(r.Currency)),
	}
	if r.PaymentIntent != nil {
		out.PaymentIntentID = r.PaymentIntent.ID
	}
	return out
}

// RefundPayment refunds what the ledger requested for booking (the whole
// req.Amount of req.PaymentIntentID) through Refund, with idempotencyKey,
// metadata booking_id and ledger_reason, and Stripe's reason "duplicate"
// for a duplicate payment. It returns the refund as the domain records it,
// and Refund's errors.
func (c *Client) RefundPayment(ctx context.Context, booking domain.BookingID, req domain.RefundRequested, idempotencyKey string) (domain.RefundIssued, error) {
	p := RefundParams{
		PaymentIntentID: req.PaymentIntentID,
		Amount:          req.Amount,
		Metadata:        map[string]string{"booking_id": strconv.FormatInt(int64(booking), 10), "ledger_reason": string(req.Reason)},
		IdempotencyKey:  idempotencyKey,
	}
	if req.Reason == domain.RefundDuplicatePayment {
		p.Reason = string(stripego.RefundReasonDuplicate)
	}
	r, err := c.Refund(ctx, p)
	if err != nil {
		return domain.RefundIssued{}, err
	}
	pi := r.PaymentIntentID
	if pi == "" {
		pi = req.PaymentIntentID
	}
	return domain.RefundIssued{RefundID: r.ID, PaymentIntentID: pi, Amount: r.Amount, Currency: r.Currency}, nil
}
