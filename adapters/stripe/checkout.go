package stripe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
)

// APIVersion is the Stripe API version of every request this package makes
// (stripe-go v76 pins it), hence of the objects it returns.
const APIVersion = stripego.APIVersion

// CheckSessionID accepts a Checkout Session id: "cs_" followed by letters,
// digits and underscores. Anything else is a *domain.FieldError naming
// "session_id" (matching domain.ErrInvalid).
func CheckSessionID(id string) error { return checkObjectID("session_id", "cs_", id) }

// CheckoutSessionParams is what the ledger asks Stripe for when it opens a
// Checkout Session for a booking.
type CheckoutSessionParams struct {
	// BookingID is written to client_reference_id, metadata.booking_id and
	// payment_intent_data.metadata.booking_id (Session metadata does not
	// reach the PaymentIntent otherwise), so every event about the payment
	// names the booking.
	BookingID int64
	// Amount in minor units and Currency (lower case) of the one line item.
	Amount   int64
	Currency string
	// ProductName is the line item's name shown on the payment page.
	ProductName string
	// CustomerEmail prefills the payment page; "" leaves it to the customer.
	CustomerEmail string
	// SuccessURL and CancelURL are where Stripe sends the customer back.
	// SuccessURL may hold Stripe's {CHECKOUT_SESSION_ID} placeholder.
	SuccessURL, CancelURL string
	// ExpiresAt is when the session expires: 30 minutes to 24 hours after
	// its creation, as Stripe requires.
	ExpiresAt time.Time
	// IdempotencyKey makes a repeated request return the first session.
	// Stripe rejects a repeated key with different parameters, so derive
	// every parameter, ExpiresAt included, from the booking.
	IdempotencyKey string
}

// CheckoutSession is a Checkout Session as Stripe answered it, reduced to
// what the ledger uses, with the answer's raw JSON.
type CheckoutSession struct {
	ID string
	// URL is the payment page ("" once the session is complete or expired).
	URL string
	// Status is "open", "complete" or "expired"; PaymentStatus "paid",
	// "unpaid" or "no_payment_required".
	Status, PaymentStatus string
	// PaymentIntentID is "" until the customer tries to pay.
	PaymentIntentID   string
	ClientReferenceID string
	Metadata          map[string]string
	// AmountTotal in minor units and Currency (lower case).
	AmountTotal int64
	Currency    string
	ExpiresAt   time.Time
	Livemode    bool
	// Raw is the answer's body, byte for byte.
	Raw []byte
	// RequestID is the answer's Request-Id.
	RequestID string
}

// BookingID returns the booking the session names in metadata.booking_id,
// else in client_reference_id (canonical positive decimals only), and
// whether one was found.
func (s CheckoutSession) BookingID() (int64, bool) {
	for _, v := range []string{s.Metadata["booking_id"], s.ClientReferenceID} {
		if id, ok := parseBookingID(v); ok {
			return id, true
		}
	}
	return 0, false
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
