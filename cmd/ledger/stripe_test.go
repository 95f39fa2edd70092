package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
)

type apiAnswer struct {
	status int
	body   map[string]any
}

func call(t *testing.T, method, url, token string, body any) apiAnswer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := apiAnswer{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return a
}

// TestAppPaymentFlow runs the whole flow against the real server with the
// Stripe settings of the environment, Stripe being a stateful fake of its
// API: two bookings of one room get Checkout Sessions; the first is paid and
// confirmed through the redirect; the second is paid too, its webhook finds
// the dates taken, and the refund worker refunds it once although Stripe's
// first answer is a 500.
func TestAppPaymentFlow(t *testing.T) {
	fake := stripetest.NewServer(t)
	cfg := testConfig(t, pgtest.NewEmptyURL(t))
	cfg.StripeSecretKey = "sk_test_app"
	cfg.StripePublicKey = "pk_test_app"
	cfg.StripeAPIBaseURL = fake.URL
	cfg.PublicURL = "https://ledger.example.com"
	app := startApp(t, cfg)
	base := "http://" + app.Addr()

	book := func() (id int64, session string) {
		t.Helper()
		a := call(t, http.MethodPost, base+"/bookings", cfg.APIToken, map[string]any{"resource_id": "room-12",
			"check_in": "2027-01-10", "check_out": "2027-01-13", "amount": 36000, "currency": "eur", "customer_email": "guest@example.com"})
		if a.status != http.StatusCreated || a.body["publishable_key"] != "pk_test_app" ||
			!strings.HasPrefix(a.body["checkout_url"].(string), "https://checkout.stripe.com/") {
			t.Fatalf("POST /bookings: %d %v", a.status, a.body)
		}
		return int64(a.body["booking_id"].(float64)), a.body["session_id"].(string)
	}
	first, firstSession := book()
	second, secondSession := book()

	// The first customer pays and comes back.
	fake.PaySession(firstSession)
	a := call(t, http.MethodGet, base+"/bookings/"+itoa(first)+"/success?session_id="+firstSession, "", nil)
	if a.status != 200 || a.body["status"] != "confirmed" || a.body["payment_status"] != "paid" {
		t.Fatalf("redirect: %d %v", a.status, a.body)
	}

	// The second pays as well; only the webhook reports it.
	pi := fake.PaySession(secondSession)
	fake.AddFault(stripetest.Fault{Method: http.MethodPost, Path: "/v1/refunds", Status: 500})
	body, err := stripe.BuildEvent(stripe.EventCheckoutSessionCompleted,
		stripe.TestBooking{ID: second, SessionID: secondSession, PaymentIntentID: pi, Amount: 36000, Currency: "eur"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/stripe/", bytes.NewReader(body))
	req.Header.Set("Stripe-Signature", stripe.Sign(body, testSecret, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}

	deadline := time.Now().Add(2 * time.Minute)
	for {
		a = call(t, http.MethodGet, base+"/bookings/"+itoa(second), cfg.APIToken, nil)
		if a.body["payment_status"] == "refunded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second booking never refunded: %v", a.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.body["status"] != "cancelled" {
		t.Errorf("second booking %v", a.body)
	}
	refunds := fake.Refunds()
	if len(refunds) != 1 || refunds[0]["payment_intent"] != pi {
		t.Fatalf("refunds %v, want one of %s", refunds, pi)
	}
	if n := fake.Count(http.MethodPost, "/v1/refunds"); n != 2 {
		t.Errorf("%d POST /v1/refunds, want 2 (a 500, then the refund)", n)
	}
	a = call(t, http.MethodGet, base+"/bookings/"+itoa(first), cfg.APIToken, nil)
	if a.body["status"] != "confirmed" || a.body["payment_status"] != "paid" {
		t.Errorf("first booking %v", a.body)
	}
}

func TestStartRefusesBadStripeSettings(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"publishable key as secret key", func(c *Config) { c.StripeSecretKey = "pk_test_1" }, "STRIPE_SECRET_KEY"},
		{"relative API base", func(c *Config) { c.StripeAPIBaseURL = "localhost:12111" }, "STRIPE_API_BASE_URL"},
		{"no public URL", func(c *Config) { c.PublicURL = "" }, "LEDGER_PUBLIC_URL"},
		{"session lifetime too short", func(c *Config) { c.CheckoutSessionTTL = 10 * time.Minute }, "LEDGER_CHECKOUT_TTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, pgtest.NewEmptyURL(t))
			cfg.StripeSecretKey, cfg.PublicURL = "sk_test_1", "http://localhost:8000"
			tt.edit(&cfg)
			app := NewApp(cfg, slog.New(slog.DiscardHandler))
			err := app.Start(t.Context())
			app.Close()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestLoadStripeConfig(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string // "" for success
	}{
		{map[string]string{}, ""},
		{map[string]string{"STRIPE_TIMEOUT": "soon"}, "STRIPE_TIMEOUT"},
		{map[string]string{"STRIPE_TIMEOUT": "-1s"}, "STRIPE_TIMEOUT"},
		{map[string]string{"STRIPE_MAX_NETWORK_RETRIES": "-1"}, "STRIPE_MAX_NETWORK_RETRIES"},
		{map[string]string{"LEDGER_CHECKOUT_TTL": "1 hour"}, "LEDGER_CHECKOUT_TTL"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(keys(tt.env), ","), func(t *testing.T) {
			for _, k := range []string{"LEDGER_PUBLIC_URL", "STRIPE_TIMEOUT", "STRIPE_MAX_NETWORK_RETRIES", "LEDGER_CHECKOUT_TTL"} {
				t.Setenv(k, tt.env[k])
			}
			var c Config
			err := c.loadStripeConfig()
			if tt.want == "" {
				if err != nil || c.PublicURL != defaultPublicURL || c.StripeTimeout != defaultStripeTimeout ||
					c.StripeMaxNetworkRetries != defaultStripeRetries || c.CheckoutSessionTTL != defaultCheckoutSessionTTL {
					t.Fatalf("defaults: %+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func keys(m map[string]string) []string {
	out := []string{"defaults"}
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// TestStripeEndpointCommands: `ledger stripe endpoint create|check|list`
// against stripe-mock. stripe-mock answers with its fixture endpoint, whose
// types are not the ledger's: check must say so and exit non-zero.
func TestStripeEndpointCommands(t *testing.T) {
	t.Setenv("STRIPE_SECRET_KEY", "sk_test_endpoint")
	t.Setenv("STRIPE_API_BASE_URL", stripetest.MockURL(t))
	dbURL := "postgres://unused.invalid/x"
	out, stderr, err := runLedger(t, dbURL, "stripe", "endpoint", "create", "--url", "https://ledger.example.com/webhooks/stripe/")
	if err != nil || !strings.Contains(out, "created we_") || !strings.Contains(out, "signing secret (shown once): ") ||
		!strings.Contains(out, "STRIPE_WEBHOOK_SECRET=") {
		t.Fatalf("create: %v\n%s%s", err, out, stderr)
	}
	if _, _, err := runLedger(t, dbURL, "stripe", "endpoint", "create"); err == nil {
		t.Error("create without --url ran")
	}
	out, _, err = runLedger(t, dbURL, "stripe", "endpoint", "list")
	if err != nil || !strings.Contains(out, "we_") {
		t.Errorf("list: %v\n%s", err, out)
	}
	out, _, err = runLedger(t, dbURL, "stripe", "endpoint", "check")
	if err == nil || !strings.Contains(out, "missing types (never delivered): ") || !strings.Contains(err.Error(), "need attention") {
		t.Errorf("check of the fixture endpoint: %v\n%s", err, out)
	}
	if _, _, err := runLedger(t, dbURL, "stripe", "endpoint", "check", "--url", "https://nowhere.example.com/"); err == nil ||
		!strings.Contains(err.Error(), "no endpoint is registered for") {
		t.Errorf("check of an unregistered URL: %v", err)
	}
}
