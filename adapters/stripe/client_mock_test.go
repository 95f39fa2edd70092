package stripe_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
)

// TestRequestsValidAgainstStripeMock sends every request the ledger makes to
// Stripe (session create and retrieve, refund list and create, events list)
// to stripe-mock, which answers 400 for any request its copy of Stripe's
// OpenAPI specification does not allow: unknown or misspelt parameters,
// wrong types, missing required ones. The control case shows it does.
func TestRequestsValidAgainstStripeMock(t *testing.T) {
	base := stripetest.MockURL(t)
	// A recording proxy in front of stripe-mock shows which requests each
	// call made and what stripe-mock answered to each.
	target, _ := url.Parse(base)
	var mu sync.Mutex
	var seen []string
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode))
		return nil
	}
	front := httptest.NewServer(proxy)
	defer front.Close()
	c, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_123", BaseURL: front.URL, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()

	tests := []struct {
		name string
		want []string // requests and stripe-mock's answers
		call func() error
	}{
		{"create checkout session", []string{"POST /v1/checkout/sessions 200"}, func() error {
			_, err := c.CreateCheckoutSession(ctx, stripe.CheckoutSessionParams{
				BookingID: 7, Amount: 36000, Currency: "eur", ProductName: "room-12, 2027-01-10 to 2027-01-13",
				CustomerEmail: "guest@example.com",
				SuccessURL:    "https://ledger.example.com/bookings/7/success?session_id={CHECKOUT_SESSION_ID}",
				CancelURL:     "https://ledger.example.com/bookings/7/success?cancelled=true",
				ExpiresAt:     now.Add(time.Hour), IdempotencyKey: "checkout-7-1",
			})
			return err
		}},
		{"create checkout session without e-mail", []string{"POST /v1/checkout/sessions 200"}, func() error {
			_, err := c.CreateCheckoutSession(ctx, stripe.CheckoutSessionParams{
				BookingID: 8, Amount: 100, Currency: "usd", SuccessURL: "http://localhost:8000/bookings/8/success",
				CancelURL: "http://localhost:8000/bookings/8/success", ExpiresAt: now.Add(30 * time.Minute), IdempotencyKey: "checkout-8-1",
			})
			return err
		}},
		{"retrieve checkout session", []string{"GET /v1/checkout/sessions/cs_test_a1b2c3 200"}, func() error {
			_, err := c.RetrieveCheckoutSession(ctx, "cs_test_a1b2c3")
			return err
		}},
		{"refund (list, then create)", []string{"GET /v1/refunds 200", "POST /v1/refunds 200"}, func() error {
			_, err := c.Refund(ctx, stripe.RefundParams{PaymentIntentID: "pi_3abc", Amount: 36000, Reason: "duplicate",
				Metadata: map[string]string{"booking_id": "7"}, IdempotencyKey: "refund-7-pi_3abc"})
			return err
		}},
		{"refund without reason", []string{"GET /v1/refunds 200", "POST /v1/refunds 200"}, func() error {
			_, err := c.Refund(ctx, stripe.RefundParams{PaymentIntentID: "pi_3abc", Amount: 1, IdempotencyKey: "refund-8-pi_3abc"})
			return err
		}},
		{"list events", []string{"GET /v1/events 200"}, func() error {
			_, err := c.ListEvents(ctx, now.Add(-72*time.Hour), stripe.HandledEventTypes)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			if err := tt.call(); err != nil {
				t.Fatalf("stripe-mock refused the request: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(seen, tt.want) {
				t.Errorf("requests %q, want %q", seen, tt.want)
			}
		})
	}

	// Controls: stripe-mock refuses what the specification does not allow,
	// in a form body as in a query string.
	controls := []struct{ method, path, query string }{
		{http.MethodPost, "/v1/refunds", "payment_intent=pi_3abc&amount_to_refund=1"},
		{http.MethodPost, "/v1/checkout/sessions", "mode=payment&success_url=https://x.example/s&line_items[0][price_data][unit_amount]=abc"},
		{http.MethodGet, "/v1/events", "limit=many"},
		{http.MethodGet, "/v1/events", "kinds[0]=checkout.session.completed"},
		{http.MethodGet, "/v1/refunds", "payment_intent_id=pi_3abc"},
	}
	for _, ctl := range controls {
		t.Run("control: "+ctl.method+" "+ctl.path+"?"+ctl.query, func(t *testing.T) {
			var req *http.Request
			if ctl.method == http.MethodGet {
				req, _ = http.NewRequest(ctl.method, base+ctl.path+"?"+ctl.query, nil)
			} else {
				req, _ = http.NewRequest(ctl.method, base+ctl.path, strings.NewReader(ctl.query))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			req.Header.Set("Authorization", "Bearer sk_test_123")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("stripe-mock answered %d %s; it does not validate this", resp.StatusCode, body)
			}
		})
	}
}
