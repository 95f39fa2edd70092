package stripe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/booking-ledger/ledger/domain/app"
)

// APIVersion is the Stripe API version of every request this package makes
// (stripe-go v76 pins it), hence of the objects it returns.
const APIVersion = stripego.APIVersion

// CheckSessionID accepts a Checkout Session id: "cs_" followed by letters,
// digits and underscores. Anything else is a *domain.FieldError naming
// "session_id" (matching domain.ErrInvalid).
func CheckSessionID(id string) error { return checkObjectID("session_id", "cs_", id) }

// CheckoutSessionParams is what the ledger asks Stripe for when it opens a
// Checkout Session (declared by the use cases that ask).
type CheckoutSessionParams = app.CheckoutSessionParams

// CheckoutSession is a Checkout Session as Stripe answered it, reduced to
// what the ledger uses, with the answer's raw JSON (declared by the use
// cases that read it).
type CheckoutSession = app.CheckoutSession

// sessionBookingID returns the booking a session names in
// metadata.booking_id, else in client_reference_id (canonical positive
// decimals only), or 0.
func sessionBookingID(metadata map[string]string, clientReferenceID string) int64 {
	for _, v := range []string{metadata["booking_id"], clientReferenceID} {
		if id, ok := parseBookingID(v); ok {
			return id
		}
	}
	return 0
}

// CreateCheckoutSession opens a Checkout Session in payment mode with one
// line item priced from p (price_data), the booking's id in
// client_reference_id, metadata and payment_intent_data.metadata, the
// return URLs, expires_at and the idempotency key.
//
// It returns an error wrapping domain.ErrInvalid for incomplete parameters
// (nothing is sent), and an *APIError when Stripe fails or refuses.
func (c *Client) CreateCheckoutSession(ctx context.Context, p CheckoutSessionParams) (CheckoutSession, error) {
	var missing []string
	if p.BookingID <= 0 {
		missing = append(missing, "booking id")
	}
	if p.Amount <= 0 || !isCurrencyCode(p.Currency) {
		missing = append(missing, "amount and currency")
	}
	if p.SuccessURL == "" || p.CancelURL == "" {
		missing = append(missing, "return URLs")
	}
	if p.ExpiresAt.IsZero() {
		missing = append(missing, "expiry")
	}
	if p.IdempotencyKey == "" {
		missing = append(missing, "idempotency key")
	}
	if len(missing) > 0 {
		return CheckoutSession{}, fieldError("checkout_session", "missing "+strings.Join(missing, ", "))
	}
	id := strconv.FormatInt(p.BookingID, 10)
	name := p.ProductName
	if name == "" {
		name = "Booking " + id
	}
	params := &stripego.CheckoutSessionParams{
		Mode: stripego.String(string(stripego.CheckoutSessionModePayment)),
		LineItems: []*stripego.CheckoutSessionLineItemParams{{
			Quantity: stripego.Int64(1),
			PriceData: &stripego.CheckoutSessionLineItemPriceDataParams{
				Currency:    stripego.String(strings.ToLower(p.Currency)),
				UnitAmount:  stripego.Int64(p.Amount),
				ProductData: &stripego.CheckoutSessionLineItemPriceDataProductDataParams{Name: stripego.String(name)},
			},
		}},
		ClientReferenceID: stripego.String(id),
		Metadata:          map[string]string{"booking_id": id},
		PaymentIntentData: &stripego.CheckoutSessionPaymentIntentDataParams{
			Metadata:    map[string]string{"booking_id": id},
			Description: stripego.String("Booking " + id),
		},
		SuccessURL: stripego.String(p.SuccessURL),
		CancelURL:  stripego.String(p.CancelURL),
		ExpiresAt:  stripego.Int64(p.ExpiresAt.Unix()),
	}
	if p.CustomerEmail != "" {
		params.CustomerEmail = stripego.String(p.CustomerEmail)
	}
	params.Context = withContext(ctx)
	params.SetIdempotencyKey(p.IdempotencyKey)
	s, err := c.api.CheckoutSessions.New(params)
	if err != nil {
		return CheckoutSession{}, wrapError("create checkout session", err)
	}
	return sessionFrom(s), nil
}

// RetrieveCheckoutSession fetches the session id from Stripe: the only
// trustworthy word on whether it is paid.
//
// It returns an error wrapping domain.ErrInvalid, without calling Stripe,
// for an id that is not "cs_" followed by letters, digits and underscores,
// and an *APIError when Stripe fails or refuses (one that matches
// domain.ErrNotFound for an unknown session).
func (c *Client) RetrieveCheckoutSession(ctx context.Context, id string) (CheckoutSession, error) {
	if err := CheckSessionID(id); err != nil {
		return CheckoutSession{}, err
	}
	params := &stripego.CheckoutSessionParams{}
	params.Context = withContext(ctx)
	s, err := c.api.CheckoutSessions.Get(id, params)
	if err != nil {
		return CheckoutSession{}, wrapError("retrieve checkout session", err)
	}
	return sessionFrom(s), nil
}

func sessionFrom(s *stripego.CheckoutSession) CheckoutSession {
	out := CheckoutSession{
		ID:                s.ID,
		URL:               s.URL,
		Status:            string(s.Status),
		PaymentStatus:     string(s.PaymentStatus),
		ClientReferenceID: s.ClientReferenceID,
		Metadata:          s.Metadata,
		AmountTotal:       s.AmountTotal,
		Currency:          strings.ToLower(string(s.Currency)),
		Livemode:          s.Livemode,
		BookingID:         sessionBookingID(s.Metadata, s.ClientReferenceID),
		APIVersion:        APIVersion,
	}
	if s.PaymentIntent != nil {
		out.PaymentIntentID = s.PaymentIntent.ID
	}
	if s.ExpiresAt > 0 {
		out.ExpiresAt = time.Unix(s.ExpiresAt, 0).UTC()
	}
	if s.LastResponse != nil {
		out.Raw = s.LastResponse.RawJSON
		out.RequestID = s.LastResponse.RequestID
	}
	return out
}

// checkObjectID accepts prefix followed by letters, digits and underscores,
// the shape of Stripe's object ids, so that nothing else reaches a URL path.
func checkObjectID(field, prefix, id string) error {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || rest == "" || len(id) > maxEventIDLen {
		return fieldError(field, fmt.Sprintf("must be a Stripe id starting with %q", prefix))
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !isASCIILetter(c) && !(c >= '0' && c <= '9') && c != '_' {
			return fieldError(field, fmt.Sprintf("must be a Stripe id starting with %q", prefix))
		}
	}
	return nil
}
