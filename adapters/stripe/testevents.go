package stripe

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
)

// The objects are Stripe's own fixtures, copied unchanged from stripe-mock
// (see fixtures/README.md), so that test events carry every field a real
// event has, not only the ones this package reads.
var (
	//go:embed fixtures/checkout_session.json
	checkoutSessionFixture []byte
	//go:embed fixtures/payment_intent.json
	paymentIntentFixture []byte
	//go:embed fixtures/charge.json
	chargeFixture []byte
)

// TestBooking is what BuildEvent needs to know about a booking to make an
// event that the ledger will match to it.
type TestBooking struct {
	// ID is the booking id, written to metadata.booking_id and
	// client_reference_id; 0 leaves both null, so the event can only be
	// matched by its session or PaymentIntent id.
	ID int64
	// SessionID ("cs_...") and PaymentIntentID ("pi_..."); a fresh random id
	// is used for each one left empty.
	SessionID, PaymentIntentID string
	// Amount in minor units (not negative) and Currency (three letters,
	// written in lower case as Stripe does).
	Amount   int64
	Currency string
	// CustomerEmail is the payer's e-mail; default "customer@example.com".
	CustomerEmail string
	// ChargeID is the paying charge ("ch_..."), of charge, refund and
	// dispute events; a fresh random id when empty.
	ChargeID string
	// AmountRefunded is charge.refunded's cumulative amount_refunded;
	// Amount when 0 (a full refund).
	AmountRefunded int64
	// Refund is the refund of refund.* and charge.refund.updated events.
	Refund TestRefund
	// Dispute is the dispute of charge.dispute.* events.
	Dispute TestDispute
}

// TestRefund describes the refund object of a test event. Its metadata
// carries booking_id when TestBooking.ID is set, as the ledger's own
// refunds do; a refund made in the Dashboard has none (ID 0).
type TestRefund struct {
	// ID ("re_..."); a fresh one when empty.
	ID string
	// Amount; TestBooking.Amount when 0.
	Amount int64
	// Status; "failed" for refund.failed, else "succeeded", when empty.
	Status string
	// FailureReason of a failed refund; "expired_or_canceled_card" when
	// empty and the refund failed.
	FailureReason string
}

// TestDispute describes the dispute object of a test event. Disputes
// carry no booking metadata: the ledger finds them by PaymentIntent.
type TestDispute struct {
	// ID ("dp_..."); a fresh one when empty.
	ID string
	// Status; when empty, what the type usually carries: needs_response
	// (created, funds_withdrawn), under_review (updated), lost (closed), won
	// (funds_reinstated).
	Status string
	// Reason; "fraudulent" when empty.
	Reason string
	// DueBy is evidence_details.due_by; 14 days after now when zero.
	DueBy time.Time
	// Created is when the dispute was opened; an hour before now when zero.
	Created time.Time
}

// BuildEvent returns a complete, realistic Stripe event of type eventType
// about booking b, as Stripe would post it (pretty-printed JSON, unsigned:
// sign it with Sign). It is used by `ledger send-test-webhook` and by tests.
//
// The event has a random "evt_" id, api_version stripe-go v76's pinned
// version, created = now (time.Now when zero), livemode false,
// pending_webhooks and request. data.object is a complete checkout.session
// for checkout.session.* types (payment_status "paid" for completed and
// async_payment_succeeded, "unpaid" for expired and async_payment_failed;
// an expired session has a PaymentIntent only when b.PaymentIntentID is set,
// as a customer who never tried to pay leaves none), a complete
// payment_intent for payment_intent.* types (with a card-declined
// last_payment_error for payment_failed), a refund for refund.* and
// charge.refund.updated (b.Refund), a dispute for charge.dispute.*
// (b.Dispute), a charge for the other charge.* types, and the
// payment_intent for any other type. Objects carry b's ids, amount and currency and
// metadata.booking_id.
//
// It fails, with an error matching domain.ErrInvalid, when eventType is
// empty, b.ID or b.Amount is negative, or b.Currency is not three letters.
func BuildEvent(eventType string, b TestBooking, now time.Time) ([]byte, error) {
	if eventType == "" {
		return nil, fieldError("event_type", "missing")
	}
	if b.ID < 0 {
		return nil, fieldError("booking_id", "negative")
	}
	if b.Amount < 0 {
		return nil, fieldError("amount", "negative")
	}
	if !isCurrencyCode(b.Currency) {
		return nil, fieldError("currency", "not a three-letter currency code")
	}
	if now.IsZero() {
		now = time.Now()
	}
	b.Currency = strings.ToLower(b.Currency)
	if b.SessionID == "" {
		b.SessionID = NewSessionID()
	}
	// An expired session only has a PaymentIntent if the customer tried to
	// pay; an id given by the caller says so, an empty one says not.
	expiredPI := b.PaymentIntentID
	if b.PaymentIntentID == "" {
		b.PaymentIntentID = NewPaymentIntentID()
	}
	if b.CustomerEmail == "" {
		b.CustomerEmail = "customer@example.com"
	}

	var (
		obj map[string]any
		err error
		// Stripe fills request for events caused by an API call (a
		// PaymentIntent confirmation); events Checkout raises on its own
		// (completion, expiry, async results) have none.
		request = map[string]any{"id": nil, "idempotency_key": nil}
	)
	switch {
	case strings.HasPrefix(eventType, "checkout.session."):
		obj, err = buildSession(eventType, b, expiredPI, now)
	case strings.HasPrefix(eventType, "charge.dispute."):
		obj, err = buildDispute(eventType, b, now)
	case strings.HasPrefix(eventType, "refund.") || eventType == EventChargeRefundUpdated:
		obj, err = buildRefund(eventType, b, now)
		request = map[string]any{"id": "req_" + randomString(14), "idempotency_key": newUUID()}
	case strings.HasPrefix(eventType, "charge."):
		obj, err = buildCharge(eventType, b, now)
		request = map[string]any{"id": "req_" + randomString(14), "idempotency_key": newUUID()}
	default:
		obj, err = buildPaymentIntent(eventType, b, now)
		request = map[string]any{"id": "req_" + randomString(14), "idempotency_key": newUUID()}
	}
	if err != nil {
		return nil, err
	}

	event := map[string]any{
		"id":               NewEventID(),
		"object":           "event",
		"api_version":      stripego.APIVersion,
		"created":          now.Unix(),
		"data":             map[string]any{"object": obj},
		"livemode":         false,
		"pending_webhooks": 1,
		"request":          request,
		"type":             eventType,
	}
	return encodeJSON(event)
}

func buildSession(eventType string, b TestBooking, expiredPI string, now time.Time) (map[string]any, error) {
	s, err := loadFixture(checkoutSessionFixture)
	if err != nil {
		return nil, err
	}
	created := now.Add(-10 * time.Minute)
	status, paymentStatus := "complete", "paid"
	var paymentIntent any = b.PaymentIntentID
	var url any
	paymentMethodTypes := []any{"card"}
	switch eventType {
	case EventCheckoutSessionCompleted:
	case EventCheckoutSessionAsyncPaymentSucceeded, EventCheckoutSessionAsyncPaymentFailed:
		// Only delayed payment methods produce async results.
		paymentMethodTypes = []any{"card", "sepa_debit"}
		created = now.Add(-3 * 24 * time.Hour)
		if eventType == EventCheckoutSessionAsyncPaymentFailed {
			paymentStatus = "unpaid"
		}
	case EventCheckoutSessionExpired:
		// Since API 2022-08-01 a session creates its PaymentIntent only
		// when the customer confirms, so one that expired untouched has
		// none: the booking must be found by its metadata or session id.
		// A caller-given PaymentIntent id stands for a failed attempt.
		status, paymentStatus, paymentIntent = "expired", "unpaid", nil
		if expiredPI != "" {
			paymentIntent = expiredPI
		}
		created = now.Add(-24 * time.Hour)
	default:
		status, paymentStatus = "open", "unpaid"
		url = "https://checkout.stripe.com/c/pay/" + b.SessionID
	}
	bookingRef := bookingRef(b.ID)
	merge(s, map[string]any{
		"id":                   b.SessionID,
		"object":               ObjectCheckoutSession,
		"amount_subtotal":      b.Amount,
		"amount_total":         b.Amount,
		"currency":             b.Currency,
		"client_reference_id":  bookingRef,
		"metadata":             bookingMetadata(b.ID),
		"payment_intent":       paymentIntent,
		"payment_status":       paymentStatus,
		"status":               status,
		"url":                  url,
		"created":              created.Unix(),
		"expires_at":           created.Add(24 * time.Hour).Unix(),
		"livemode":             false,
		"mode":                 "payment",
		"customer_email":       b.CustomerEmail,
		"customer_creation":    "if_required",
		"payment_method_types": paymentMethodTypes,
		"success_url":          fmt.Sprintf("https://example.com/bookings/%d/success?session_id={CHECKOUT_SESSION_ID}", b.ID),
		"cancel_url":           fmt.Sprintf("https://example.com/bookings/%d/cancel", b.ID),
		"payment_method_configuration_details": map[string]any{
			"id": "pmc_" + randomString(24), "parent": nil,
		},
		// The fixture fills these with placeholders ("message", random
		// amounts in the billions); a plain booking checkout has none.
		"after_expiration":            nil,
		"consent_collection":          nil,
		"currency_conversion":         nil,
		"shipping_address_collection": nil,
		"shipping_cost":               nil,
		"collected_information":       nil,
		"custom_text": map[string]any{
			"after_submit": nil, "shipping_address": nil, "submit": nil, "terms_of_service_acceptance": nil,
		},
		"total_details":    map[string]any{"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
		"automatic_tax":    map[string]any{"enabled": false, "liability": nil, "status": nil, "provider": nil},
		"invoice_creation": map[string]any{"enabled": false},
		"managed_payments": map[string]any{"enabled": false},
	})
	if status == "complete" {
		merge(s, map[string]any{"customer_details": map[string]any{"email": b.CustomerEmail}})
	} else {
		s["customer_details"] = nil
	}
	return s, nil
}

func buildPaymentIntent(eventType string, b TestBooking, now time.Time) (map[string]any, error) {
	pi, err := loadFixture(paymentIntentFixture)
	if err != nil {
		return nil, err
	}
	chargeID := "ch_" + randomString(24)
	pmID := "pm_" + randomString(24)
	// A PaymentIntent that has not been paid waits for a payment method;
	// the nil fields stay JSON null unless the event type says otherwise.
	status := "requires_payment_method"
	var (
		amountReceived                                                   int64
		lastError, latestCharge, paymentMethod, canceledAt, cancelReason any
		extra                                                            map[string]any
	)
	switch eventType {
	case EventPaymentIntentSucceeded:
		status, amountReceived, latestCharge, paymentMethod = "succeeded", b.Amount, chargeID, pmID
	case EventPaymentIntentPaymentFailed:
		latestCharge = chargeID
		lastError = map[string]any{
			"type":         "card_error",
			"code":         "card_declined",
			"decline_code": "insufficient_funds",
			"message":      "Your card has insufficient funds.",
			"doc_url":      "https://stripe.com/docs/error-codes/card-declined",
			"charge":       chargeID,
			"payment_method": map[string]any{
				"id": pmID, "object": "payment_method", "type": "card",
				"created": now.Unix(), "customer": nil, "livemode": false, "metadata": map[string]any{},
				"billing_details": map[string]any{
					"address": map[string]any{"city": nil, "country": "DE", "line1": nil, "line2": nil, "postal_code": nil, "state": nil},
					"email":   b.CustomerEmail, "name": "Jenny Rosen", "phone": nil,
				},
				"card": map[string]any{
					"brand": "visa", "country": "US", "exp_month": 12, "exp_year": now.Year() + 3,
					"funding": "credit", "last4": "9995", "wallet": nil,
				},
			},
		}
	case "payment_intent.processing":
		status, paymentMethod = "processing", pmID
	case "payment_intent.requires_action":
		status, paymentMethod = "requires_action", pmID
	case "payment_intent.amount_capturable_updated":
		status, paymentMethod, latestCharge = "requires_capture", pmID, chargeID
		extra = map[string]any{"amount_capturable": b.Amount, "capture_method": "manual"}
	case "payment_intent.canceled":
		status, canceledAt, cancelReason = "canceled", now.Unix(), "abandoned"
	}
	merge(pi, map[string]any{
		"id":                  b.PaymentIntentID,
		"object":              ObjectPaymentIntent,
		"amount":              b.Amount,
		"amount_capturable":   0,
		"amount_received":     amountReceived,
		"currency":            b.Currency,
		"metadata":            bookingMetadata(b.ID),
		"description":         bookingDescription(b.ID),
		"status":              status,
		"last_payment_error":  lastError,
		"latest_charge":       latestCharge,
		"payment_method":      paymentMethod,
		"canceled_at":         canceledAt,
		"cancellation_reason": cancelReason,
		"created":             now.Add(-time.Minute).Unix(),
		"livemode":            false,
		"receipt_email":       b.CustomerEmail,
		"client_secret":       b.PaymentIntentID + "_secret_" + randomString(25),
		"payment_method_configuration_details": map[string]any{
			"id": "pmc_" + randomString(24), "parent": nil,
		},
		// Placeholders in the fixture that no real PaymentIntent of a
		// plain card checkout has.
		"next_action":      nil,
		"processing":       nil,
		"shipping":         nil,
		"transfer_data":    nil,
		"managed_payments": map[string]any{"enabled": false},
	})
	merge(pi, extra)
	return pi, nil
}

func buildCharge(eventType string, b TestBooking, now time.Time) (map[string]any, error) {
	ch, err := loadFixture(chargeFixture)
	if err != nil {
		return nil, err
	}
	id := b.ChargeID
	if id == "" {
		id = "ch_" + randomString(24)
	}
	o := map[string]any{
		"id":                  id,
		"object":              "charge",
		"amount":              b.Amount,
		"amount_captured":     b.Amount,
		"amount_refunded":     0,
		"currency":            b.Currency,
		"metadata":            bookingMetadata(b.ID),
		"description":         bookingDescription(b.ID),
		"payment_intent":      b.PaymentIntentID,
		"payment_method":      "pm_" + randomString(24),
		"balance_transaction": "txn_" + randomString(24),
		"billing_details":     map[string]any{"email": b.CustomerEmail},
		"captured":            true,
		"paid":                true,
		"refunded":            false,
		"status":              "succeeded",
		"created":             now.Add(-time.Minute).Unix(),
		"livemode":            false,
		"receipt_email":       b.CustomerEmail,
		"receipt_url":         "https://pay.stripe.com/receipts/payment/" + randomString(80),
		"source":              nil,
		"transfer_data":       nil,
		"outcome": map[string]any{
			"network_status": "approved_by_network", "reason": nil, "risk_level": "normal",
			"seller_message": "Payment complete.", "type": "authorized",
		},
		// The fixture's empty list: since API version 2022-11-15 Stripe
		// lists no refunds unless asked to expand them.
		"refunds": map[string]any{"url": "/v1/charges/" + id + "/refunds"},
	}
	switch eventType {
	case "charge.failed":
		o["status"], o["paid"], o["captured"], o["amount_captured"], o["balance_transaction"] = "failed", false, false, 0, nil
		o["failure_code"], o["failure_message"] = "card_declined", "Your card has insufficient funds."
		o["outcome"] = map[string]any{
			"network_status": "declined_by_network", "reason": "insufficient_funds", "risk_level": "normal",
			"seller_message": "The bank returned the decline code `insufficient_funds`.", "type": "issuer_declined",
		}
	case EventChargeRefunded:
		refunded := b.AmountRefunded
		if refunded == 0 {
			refunded = b.Amount
		}
		o["refunded"], o["amount_refunded"] = refunded >= b.Amount, refunded
	}
	merge(ch, o)
	return ch, nil
}

func buildRefund(eventType string, b TestBooking, now time.Time) (map[string]any, error) {
	r, err := loadFixture(refundFixture)
	if err != nil {
		return nil, err
	}
	rf := b.Refund
	if rf.ID == "" {
		rf.ID = "re_" + randomString(24)
	}
	if rf.Amount == 0 {
		rf.Amount = b.Amount
	}
	if rf.Status == "" {
		rf.Status = "succeeded"
		if eventType == EventRefundFailed {
			rf.Status = "failed"
		}
	}
	var failureReason, failureTxn any
	if rf.Status == "failed" {
		failureReason, failureTxn = rf.FailureReason, "txn_"+randomString(24)
		if rf.FailureReason == "" {
			failureReason = "expired_or_canceled_card"
		}
	}
	chargeID := b.ChargeID
	if chargeID == "" {
		chargeID = "ch_" + randomString(24)
	}
	merge(r, map[string]any{
		"id":                          rf.ID,
		"object":                      ObjectRefund,
		"amount":                      rf.Amount,
		"currency":                    b.Currency,
		"charge":                      chargeID,
		"payment_intent":              b.PaymentIntentID,
		"metadata":                    bookingMetadata(b.ID),
		"status":                      rf.Status,
		"reason":                      nil,
		"failure_reason":              failureReason,
		"failure_balance_transaction": failureTxn,
		"balance_transaction":         "txn_" + randomString(24),
		"created":                     now.Add(-time.Minute).Unix(),
	})
	return r, nil
}

func buildDispute(eventType string, b TestBooking, now time.Time) (map[string]any, error) {
	d, err := loadFixture(disputeFixture)
	if err != nil {
		return nil, err
	}
	dp := b.Dispute
	if dp.ID == "" {
		dp.ID = "dp_" + randomString(24)
	}
	if dp.Status == "" {
		switch eventType {
		case EventChargeDisputeUpdated:
			dp.Status = "under_review"
		case EventChargeDisputeClosed:
			dp.Status = "lost"
		case EventChargeDisputeFundsReinstated:
			dp.Status = "won"
		default:
			dp.Status = "needs_response"
		}
	}
	if dp.Reason == "" {
		dp.Reason = "fraudulent"
	}
	if dp.DueBy.IsZero() {
		dp.DueBy = now.Add(14 * 24 * time.Hour)
	}
	if dp.Created.IsZero() {
		dp.Created = now.Add(-time.Hour)
	}
	chargeID := b.ChargeID
	if chargeID == "" {
		chargeID = "ch_" + randomString(24)
	}
	caseType := "chargeback"
	if strings.HasPrefix(dp.Status, "warning_") {
		caseType = "inquiry"
	}
	merge(d, map[string]any{
		"id":                   dp.ID,
		"object":               ObjectDispute,
		"amount":               b.Amount,
		"currency":             b.Currency,
		"charge":               chargeID,
		"payment_intent":       b.PaymentIntentID,
		"status":               dp.Status,
		"reason":               dp.Reason,
		"created":              dp.Created.Unix(),
		"livemode":             false,
		"is_charge_refundable": false,
		"evidence_details": map[string]any{
			"due_by": dp.DueBy.Unix(), "has_evidence": false, "past_due": false, "submission_count": 0,
		},
		"payment_method_details": map[string]any{"card": map[string]any{"case_type": caseType}},
	})
	return d, nil
}

// loadFixture decodes an embedded fixture afresh, since the caller mutates
// the result. json.Number keeps the fixture's integers exact.
func loadFixture(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("stripe: embedded fixture: %w", err)
	}
	return m, nil
}

// merge writes src into dst, recursing into objects present on both sides
// so that an override of one nested field keeps the fixture's siblings.
func merge(dst, src map[string]any) {
	for k, v := range src {
		sv, srcIsMap := v.(map[string]any)
		dv, dstIsMap := dst[k].(map[string]any)
		if srcIsMap && dstIsMap && len(sv) > 0 {
			merge(dv, sv)
			continue
		}
		dst[k] = v
	}
}

// encodeJSON renders like Stripe's webhook bodies: two-space indentation and
// no HTML escaping (Stripe sends "&" in URLs as is).
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("stripe: encode test event: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func bookingRef(id int64) any {
	if id == 0 {
		return nil
	}
	return strconv.FormatInt(id, 10)
}

func bookingMetadata(id int64) map[string]any {
	if id == 0 {
		return map[string]any{}
	}
	return map[string]any{"booking_id": strconv.FormatInt(id, 10)}
}

func bookingDescription(id int64) any {
	if id == 0 {
		return nil
	}
	return fmt.Sprintf("Booking %d", id)
}

// NewEventID returns a random Stripe-shaped event id ("evt_1" and 23
// alphanumerics), for test events.
func NewEventID() string { return "evt_1" + randomString(23) }

// NewSessionID returns a random test-mode Checkout Session id
// ("cs_test_a1" and 56 alphanumerics).
func NewSessionID() string { return "cs_test_a1" + randomString(56) }

// NewPaymentIntentID returns a random PaymentIntent id ("pi_3" and 23
// alphanumerics).
func NewPaymentIntentID() string { return "pi_3" + randomString(23) }

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomString returns n random base62 characters from crypto/rand, so ids
// made by concurrent test runs or CLI calls never collide in the inbox.
func randomString(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		// crypto/rand.Read never fails (since Go 1.24 it crashes the
		// program instead).
		_, _ = rand.Read(buf)
		for _, c := range buf {
			// 248 = 4*62: rejecting the rest keeps every character equally
			// likely.
			if c < 248 && len(out) < n {
				out = append(out, base62[c%62])
			}
		}
	}
	return string(out)
}

// newUUID returns a random version-4 UUID, the shape of Stripe's generated
// idempotency keys.
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}
