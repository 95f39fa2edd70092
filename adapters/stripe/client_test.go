package stripe_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
)

func newClient(t *testing.T, base string, retries int) *stripe.Client {
	t.Helper()
	c, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_client", BaseURL: base, Timeout: 20 * time.Second, MaxNetworkRetries: retries})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sessionParams(id int64, now time.Time) stripe.CheckoutSessionParams {
	return stripe.CheckoutSessionParams{
		BookingID: id, Amount: 36000, Currency: "EUR", ProductName: "room-12, 2027-01-10 to 2027-01-13",
		CustomerEmail: "guest@example.com",
		SuccessURL:    "https://ledger.example.com/bookings/" + strconv.FormatInt(id, 10) + "/success?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:     "https://ledger.example.com/bookings/" + strconv.FormatInt(id, 10) + "/success?cancelled=true",
		ExpiresAt:     now.Add(time.Hour), IdempotencyKey: "checkout-" + strconv.FormatInt(id, 10),
	}
}

func TestNewClientValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  stripe.ClientConfig
	}{
		{"no key", stripe.ClientConfig{}},
		{"publishable key", stripe.ClientConfig{SecretKey: "pk_test_1"}},
		{"relative base", stripe.ClientConfig{SecretKey: "sk_test_1", BaseURL: "localhost:12111"}},
		{"negative retries", stripe.ClientConfig{SecretKey: "sk_test_1", MaxNetworkRetries: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := stripe.NewClient(tt.cfg); err == nil {
				t.Fatal("NewClient accepted it")
			}
		})
	}
	if _, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "rk_live_1", BaseURL: "https://api.stripe.com"}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateCheckoutSessionParameters(t *testing.T) {
	fake := stripetest.NewServer(t)
	c := newClient(t, fake.URL, 0)
	now := time.Now()
	p := sessionParams(7, now)
	s, err := c.CreateCheckoutSession(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	form := reqs[0].Form
	want := map[string]string{
		"mode":                                          "payment",
		"line_items[0][quantity]":                       "1",
		"line_items[0][price_data][unit_amount]":        "36000",
		"line_items[0][price_data][currency]":           "eur",
		"line_items[0][price_data][product_data][name]": "room-12, 2027-01-10 to 2027-01-13",
		"client_reference_id":                           "7",
		"metadata[booking_id]":                          "7",
		"payment_intent_data[metadata][booking_id]":     "7",
		"customer_email":                                "guest@example.com",
		"success_url":                                   p.SuccessURL,
		"cancel_url":                                    p.CancelURL,
		"expires_at":                                    strconv.FormatInt(p.ExpiresAt.Unix(), 10),
	}
	for k, v := range want {
		if got := form.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if reqs[0].IdempotencyKey != "checkout-7" {
		t.Errorf("Idempotency-Key %q", reqs[0].IdempotencyKey)
	}
	if s.Status != "open" || s.PaymentStatus != "unpaid" || s.URL == "" || s.AmountTotal != 36000 || s.Currency != "eur" ||
		!s.ExpiresAt.Equal(p.ExpiresAt.Truncate(time.Second)) || len(s.Raw) == 0 || s.RequestID == "" {
		t.Errorf("session %+v", s)
	}
	if s.BookingID != 7 {
		t.Errorf("BookingID = %d, want 7", s.BookingID)
	}

	// The same key returns the same session; another parameter under the
	// same key is refused for good.
	again, err := c.CreateCheckoutSession(context.Background(), p)
	if err != nil || again.ID != s.ID {
		t.Fatalf("repeat = %s, %v; want %s", again.ID, err, s.ID)
	}
	p.Amount++
	_, err = c.CreateCheckoutSession(context.Background(), p)
	if !stripe.IsPermanent(err) {
		t.Fatalf("changed parameters under one key: %v, want a permanent error", err)
	}

	// Incomplete parameters never reach Stripe.
	n := len(fake.Requests())
	if _, err := c.CreateCheckoutSession(context.Background(), stripe.CheckoutSessionParams{BookingID: 1}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("incomplete params: %v", err)
	}
	if len(fake.Requests()) != n {
		t.Error("incomplete params were sent")
	}
}

func TestRetrieveCheckoutSession(t *testing.T) {
	fake := stripetest.NewServer(t)
	c := newClient(t, fake.URL, 0)
	ctx := context.Background()
	created, err := c.CreateCheckoutSession(ctx, sessionParams(9, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	pi := fake.PaySession(created.ID)
	s, err := c.RetrieveCheckoutSession(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != "complete" || s.PaymentStatus != "paid" || s.PaymentIntentID != pi || s.Metadata["booking_id"] != "9" {
		t.Errorf("session %+v", s)
	}

	_, err = c.RetrieveCheckoutSession(ctx, "cs_test_unknown")
	if !errors.Is(err, domain.ErrNotFound) || !stripe.IsPermanent(err) {
		t.Errorf("unknown session: %v, want not found and permanent", err)
	}
	n := len(fake.Requests())
	for _, id := range []string{"", "cs_", "pi_123", "cs_test/../../v1/refunds", "cs_test?x=1"} {
		if _, err := c.RetrieveCheckoutSession(ctx, id); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("RetrieveCheckoutSession(%q) = %v, want ErrInvalid", id, err)
		}
	}
	if len(fake.Requests()) != n {
		t.Error("malformed ids were sent")
	}
}

// TestErrorClassification: which failures a retry may cure.
func TestErrorClassification(t *testing.T) {
	tests := []struct {
		status    int
		body      string
		permanent bool
		code      string
	}{
		{500, "", false, "api_error"},
		// Not Stripe's JSON (a proxy's page): stripe-go reports no status.
		{502, "<html>bad gateway</html>", false, "network_error"},
		{503, "", false, "api_error"},
		{400, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such payment_intent"}}`, true, "resource_missing"},
		{402, `{"error":{"type":"card_error","code":"card_declined","message":"declined"}}`, true, "card_declined"},
		{404, `{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}`, true, "invalid_request_error"},
		{401, `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}`, false, "invalid_request_error"},
		{403, `{"error":{"type":"invalid_request_error","message":"restricted key"}}`, false, "invalid_request_error"},
		{409, `{"error":{"type":"idempotency_error","message":"concurrent"}}`, false, "idempotency_error"},
		{429, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"slow down"}}`, false, "rate_limit"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			fake := stripetest.NewServer(t)
			c := newClient(t, fake.URL, 0)
			fake.AddFault(stripetest.Fault{Method: http.MethodGet, Path: "/v1/checkout/sessions/cs_test_1", Status: tt.status, Body: tt.body})
			_, err := c.RetrieveCheckoutSession(context.Background(), "cs_test_1")
			var apiErr *stripe.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			wantStatus := tt.status
			if tt.code == "network_error" {
				wantStatus = 0
			}
			if apiErr.HTTPStatus != wantStatus || apiErr.Permanent() != tt.permanent || stripe.IsPermanent(err) != tt.permanent {
				t.Errorf("%v: status %d, permanent %v; want %d, %v", err, apiErr.HTTPStatus, apiErr.Permanent(), wantStatus, tt.permanent)
			}
			if apiErr.FailureCode() != tt.code {
				t.Errorf("FailureCode() = %q, want %q", apiErr.FailureCode(), tt.code)
			}
		})
	}
	t.Run("no answer", func(t *testing.T) {
		fake := stripetest.NewServer(t)
		c := newClient(t, fake.URL, 0)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.RetrieveCheckoutSession(ctx, "cs_test_1")
		var apiErr *stripe.APIError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatus != 0 || apiErr.Permanent() || apiErr.FailureCode() != "network_error" {
			t.Errorf("err = %#v", err)
		}
	})
}

// TestNetworkRetries: stripe-go's own retries are on when configured, and
// resend the same idempotency key.
func TestNetworkRetries(t *testing.T) {
	for _, retries := range []int{0, 1} {
		t.Run(strconv.Itoa(retries), func(t *testing.T) {
			fake := stripetest.NewServer(t)
			c := newClient(t, fake.URL, retries)
			fake.AddFault(stripetest.Fault{Method: http.MethodPost, Path: "/v1/checkout/sessions", Status: http.StatusServiceUnavailable})
			_, err := c.CreateCheckoutSession(context.Background(), sessionParams(3, time.Now()))
			reqs := fake.Requests()
			if retries == 0 {
				if err == nil || len(reqs) != 1 {
					t.Fatalf("err %v after %d requests, want a failure after 1", err, len(reqs))
				}
				return
			}
			if err != nil || len(reqs) != 2 {
				t.Fatalf("err %v after %d requests, want success after 2", err, len(reqs))
			}
			if reqs[0].IdempotencyKey != "checkout-3" || reqs[1].IdempotencyKey != "checkout-3" {
				t.Errorf("keys %q, %q", reqs[0].IdempotencyKey, reqs[1].IdempotencyKey)
			}
		})
	}
}

// TestRefundAtMostOnce: whatever happened to earlier attempts, one key
// gives one refund.
func TestRefundAtMostOnce(t *testing.T) {
	const pi = "pi_3refund"
	params := stripe.RefundParams{PaymentIntentID: pi, Amount: 36000, Reason: "duplicate",
		Metadata: map[string]string{"booking_id": "7"}, IdempotencyKey: "refund-7-" + pi}
	tests := []struct {
		name  string
		fault *stripetest.Fault
		// firstFails: the first call returns a transient error.
		firstFails bool
		// posts is the number of POST /v1/refunds after both calls.
		posts int
	}{
		{"answered", nil, false, 1},
		{"500 before execution (nothing made, nothing saved)",
			&stripetest.Fault{Method: http.MethodPost, Path: "/v1/refunds", Status: 500}, true, 2},
		{"500 after execution (refund made, 500 saved under the key)",
			&stripetest.Fault{Method: http.MethodPost, Path: "/v1/refunds", Status: 500, AfterExecution: true}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := stripetest.NewServer(t)
			fake.AddPayment(pi, 36000, "eur")
			c := newClient(t, fake.URL, 0)
			if tt.fault != nil {
				fake.AddFault(*tt.fault)
			}
			ctx := context.Background()
			first, err := c.Refund(ctx, params)
			if tt.firstFails {
				if err == nil || stripe.IsPermanent(err) {
					t.Fatalf("first call: %v, want a transient error", err)
				}
			} else if err != nil || first.Found || first.Status != "succeeded" || first.Amount != 36000 || first.Currency != "eur" || first.PaymentIntentID != pi {
				t.Fatalf("first call: %+v, %v", first, err)
			}
			second, err := c.Refund(ctx, params)
			if err != nil {
				t.Fatalf("second call: %v", err)
			}
			refunds := fake.Refunds()
			if len(refunds) != 1 {
				t.Fatalf("%d refunds made, want 1", len(refunds))
			}
			if second.ID != refunds[0]["id"] || (!tt.firstFails && second.ID != first.ID) {
				t.Errorf("second call gave %s, first %s, made %s", second.ID, first.ID, refunds[0]["id"])
			}
			md := refunds[0]["metadata"].(map[string]any)
			if md[stripe.MetadataRefundKey] != params.IdempotencyKey || md["booking_id"] != "7" || refunds[0]["reason"] != "duplicate" {
				t.Errorf("refund %v", refunds[0])
			}
			if n := fake.Count(http.MethodPost, "/v1/refunds"); n != tt.posts {
				t.Errorf("%d POST /v1/refunds, want %d", n, tt.posts)
			}
			for _, r := range fake.Requests() {
				if r.Method == http.MethodPost && r.IdempotencyKey != params.IdempotencyKey {
					t.Errorf("POST with key %q", r.IdempotencyKey)
				}
			}
		})
	}

	t.Run("refused for good", func(t *testing.T) {
		fake := stripetest.NewServer(t)
		fake.RejectRefunds(pi, "charge_already_refunded", "Charge ch_1 has already been refunded.")
		c := newClient(t, fake.URL, 0)
		_, err := c.Refund(context.Background(), params)
		var apiErr *stripe.APIError
		if !errors.As(err, &apiErr) || !apiErr.Permanent() || apiErr.Code != "charge_already_refunded" || apiErr.RequestID == "" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("malformed requests are not sent", func(t *testing.T) {
		fake := stripetest.NewServer(t)
		c := newClient(t, fake.URL, 0)
		for _, p := range []stripe.RefundParams{
			{PaymentIntentID: "ch_1", Amount: 1, IdempotencyKey: "k"},
			{PaymentIntentID: pi, Amount: 0, IdempotencyKey: "k"},
			{PaymentIntentID: pi, Amount: 1},
		} {
			if _, err := c.Refund(context.Background(), p); !errors.Is(err, domain.ErrInvalid) {
				t.Errorf("Refund(%+v) = %v, want ErrInvalid", p, err)
			}
		}
		if n := len(fake.Requests()); n != 0 {
			t.Errorf("%d requests sent", n)
		}
	})
}

// TestListEvents: every page is read, the filters are sent, the result is
// oldest first and byte for byte what Stripe sent.
func TestListEvents(t *testing.T) {
	fake := stripetest.NewServer(t)
	c := newClient(t, fake.URL, 0)
	now := time.Now().Truncate(time.Second)
	since := now.Add(-72 * time.Hour)
	var want [][]byte
	for i := range 260 {
		typ := stripe.HandledEventTypes[i%len(stripe.HandledEventTypes)]
		if i%7 == 0 {
			typ = "customer.created"
		}
		created := since.Add(time.Duration(i-20) * 15 * time.Minute) // the first 20 are too old
		body, err := stripe.BuildEvent(typ, stripe.TestBooking{ID: int64(i + 1), Amount: 100, Currency: "eur"}, created)
		if err != nil {
			t.Fatal(err)
		}
		fake.AddEvent(body)
		if i >= 20 && i%7 != 0 {
			want = append(want, body)
		}
	}
	got, err := c.ListEvents(context.Background(), since, stripe.HandledEventTypes)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("event %d differs from what Stripe sent:\n%s\nwant\n%s", i, got[i], want[i])
		}
	}
	reqs := fake.Requests()
	if len(reqs) != 3 {
		t.Errorf("%d pages requested, want 3", len(reqs))
	}
	first := reqs[0].Form
	if first.Get("created[gte]") != strconv.FormatInt(since.Unix(), 10) || first.Get("limit") != "100" || first.Get("starting_after") != "" {
		t.Errorf("first page query %v", first)
	}
	for i, typ := range stripe.HandledEventTypes {
		if v := first.Get(fmt.Sprintf("types[%d]", i)); v != typ {
			t.Errorf("types[%d] = %q, want %q", i, v, typ)
		}
	}
	if reqs[1].Form.Get("starting_after") == "" {
		t.Error("second page without starting_after")
	}
}
