package http_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/app/apptest"
)

const (
	testPublicURL      = "https://ledger.example.com"
	testPublishableKey = "pk_test_checkout"
)

// checkoutHarness is the harness with Stripe Checkout on, talking to a
// stateful fake of Stripe's API through the real Stripe client.
type checkoutHarness struct {
	*harness
	fake *stripetest.Server
}

func newCheckoutHarness(t *testing.T, opts ...harnessOption) *checkoutHarness {
	t.Helper()
	fake := stripetest.NewServer(t)
	client, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_http", BaseURL: fake.URL, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts,
		withCheckout(app.CheckoutConfig{Payments: client, PublicURL: testPublicURL}),
		withConfig(func(c *ledgerhttp.Config) { c.PublishableKey = testPublishableKey }))
	return &checkoutHarness{harness: newHarness(t, opts...), fake: fake}
}

// with returns a copy of h that reports to t, for use in a subtest.
func (h *checkoutHarness) with(t testing.TB) *checkoutHarness {
	return &checkoutHarness{harness: h.harness.with(t), fake: h.fake}
}

type checkoutBooking struct {
	createdBooking
	CheckoutURL       string    `json:"checkout_url"`
	CheckoutExpiresAt time.Time `json:"checkout_expires_at"`
	PublishableKey    string    `json:"publishable_key"`
}

// book posts a booking without a session id and requires 201 with a
// Checkout Session.
func (h *checkoutHarness) book(resource string) checkoutBooking {
	h.t.Helper()
	resp := h.api(http.MethodPost, "/bookings", bookingRequest(resource))
	if resp.Status != http.StatusCreated {
		h.t.Fatalf("POST /bookings: %s", resp)
	}
	var b checkoutBooking
	if err := json.Unmarshal(resp.Body, &b); err != nil {
		h.t.Fatal(err)
	}
	if b.SessionID == nil || b.CheckoutURL == "" {
		h.t.Fatalf("no Checkout Session in %s", resp.Body)
	}
	return b
}

// visit is the customer's browser coming back from Checkout.
func (h *checkoutHarness) visit(id int64, sessionID string, accept string) response {
	h.t.Helper()
	path := "/bookings/" + itoa(id) + "/success"
	if sessionID != "" {
		path += "?session_id=" + url.QueryEscape(sessionID)
	}
	hdr := http.Header{}
	if accept != "" {
		hdr.Set("Accept", accept)
	}
	return h.do(http.MethodGet, path, hdr, nil)
}

func TestCreateBookingOpensCheckoutSession(t *testing.T) {
	h := newCheckoutHarness(t)
	b := h.book(newResource("room"))

	if b.PublishableKey != testPublishableKey || !strings.HasPrefix(*b.SessionID, "cs_") ||
		b.Status != domain.StatusPending || b.PaymentStatus != domain.PaymentStatusUnpaid {
		t.Errorf("answer %+v", b)
	}
	sess := h.fake.Session(*b.SessionID)
	if sess == nil || sess["url"] != b.CheckoutURL {
		t.Fatalf("session %v, answered url %s", sess, b.CheckoutURL)
	}
	// Created once, with the booking's price, ids and return URLs.
	reqs := h.fake.Requests()
	if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].Path != "/v1/checkout/sessions" {
		t.Fatalf("requests %+v", reqs)
	}
	f := reqs[0].Form
	id := itoa(b.ID)
	for k, v := range map[string]string{
		"mode":                 "payment",
		"client_reference_id":  id,
		"metadata[booking_id]": id,
		"payment_intent_data[metadata][booking_id]": id,
		"line_items[0][price_data][unit_amount]":    "36000",
		"line_items[0][price_data][currency]":       "eur",
		"success_url":                               testPublicURL + "/bookings/" + id + "/success?session_id={CHECKOUT_SESSION_ID}",
		"cancel_url":                                testPublicURL + "/bookings/" + id + "/success?cancelled=true",
		"customer_email":                            "guest@example.com",
	} {
		if got := f.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !strings.HasPrefix(reqs[0].IdempotencyKey, "checkout-session-"+id+"-") {
		t.Errorf("idempotency key %q", reqs[0].IdempotencyKey)
	}
	if wantExp := b.CreatedAt.Add(time.Hour).Truncate(time.Second); !b.CheckoutExpiresAt.Equal(wantExp) {
		t.Errorf("expires %s, want %s", b.CheckoutExpiresAt, wantExp)
	}
	h.wantStream(b.ID, domain.EventBookingRequested, domain.EventCheckoutSessionOpened)
	if stored := h.storedRow(b.ID); stored.SessionID == nil || *stored.SessionID != *b.SessionID {
		t.Errorf("bookings.session_id %v, want %q", stored.SessionID, *b.SessionID)
	}

	t.Run("a caller's own session id is kept, Stripe is not asked", func(t *testing.T) {
		h := h.with(t)
		n := len(h.fake.Requests())
		req := bookingRequest(newResource("room"))
		req["session_id"] = "cs_test_own_1"
		own := h.createBooking(req)
		if len(h.fake.Requests()) != n || *own.SessionID != "cs_test_own_1" {
			t.Errorf("session %v after %d requests", own.SessionID, len(h.fake.Requests())-n)
		}
		h.wantStream(own.ID, domain.EventBookingRequested)
	})

	t.Run("Stripe failing leaves a pending booking without a session", func(t *testing.T) {
		h := h.with(t)
		h.fake.AddFault(stripetest.Fault{Method: http.MethodPost, Path: "/v1/checkout/sessions", Status: 500})
		resp := h.api(http.MethodPost, "/bookings", bookingRequest(newResource("room")))
		if resp.Status != http.StatusBadGateway {
			t.Fatalf("answer %s, want 502", resp)
		}
		m := resp.JSON(t)
		id, err := m["booking_id"].(json.Number).Int64()
		if err != nil || !strings.Contains(m["error"].(string), "Stripe") {
			t.Fatalf("body %s", resp.Body)
		}
		h.wantStatus(id, "pending", "unpaid")
		h.wantStream(id, domain.EventBookingRequested)
	})
}

// TestRedirectAndWebhookConfirmOnce: the customer's redirect and Stripe's
// webhooks report one payment, in every order, any number of times; one
// PaymentSucceeded results.
func TestRedirectAndWebhookConfirmOnce(t *testing.T) {
	type step string
	const (
		redirect  step = "redirect"
		completed step = stripe.EventCheckoutSessionCompleted
		succeeded step = stripe.EventPaymentIntentSucceeded
	)
	tests := []struct {
		name  string
		steps []step
	}{
		{"redirect, then webhook", []step{redirect, completed}},
		{"webhook, then redirect", []step{completed, redirect}},
		{"redirect twice, then both webhooks", []step{redirect, redirect, completed, succeeded}},
		{"payment_intent webhook, redirect, session webhook", []step{succeeded, redirect, completed}},
	}
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newCheckoutHarness(t, opts...)
				b := h.book(newResource("room"))
				pi := h.fake.PaySession(*b.SessionID)
				tb := stripe.TestBooking{ID: b.ID, SessionID: *b.SessionID, PaymentIntentID: pi, Amount: b.Amount, Currency: b.Currency}
				for i, s := range tt.steps {
					if s == redirect {
						resp := h.visit(b.ID, *b.SessionID, "application/json")
						if resp.Status != http.StatusOK {
							t.Fatalf("step %d: %s", i+1, resp)
						}
						m := resp.JSON(t)
						if m["status"] != "confirmed" || m["payment_status"] != "paid" || m["checked"] != true {
							t.Errorf("step %d: %s", i+1, resp.Body)
						}
						continue
					}
					ev := h.buildEvent(string(s), tb)
					if resp := h.deliver(ev, pickSigner(i)); resp.Status != http.StatusOK {
						t.Fatalf("step %d: webhook %s", i+1, resp)
					}
				}
				if n := h.countType(b.ID, domain.EventPaymentSucceeded); n != 1 {
					t.Errorf("%d PaymentSucceeded, want 1 (stream %v)", n, h.stream(b.ID))
				}
				if n := h.countType(b.ID, domain.EventBookingConfirmed); n != 1 {
					t.Errorf("%d BookingConfirmed, want 1", n)
				}
				h.wantStatus(b.ID, "confirmed", "paid")
				// The redirect check is kept like a Stripe event: the session
				// as Stripe answered, no signature, source redirect.
				row, ok := h.store.inbox(t, "redirect:"+*b.SessionID)
				if !ok {
					t.Fatal("no inbox row of the redirect")
				}
				var obj map[string]any
				if row.Source != "redirect" || row.Signature != "" || json.Unmarshal(row.Payload, &obj) != nil || obj["id"] != *b.SessionID || obj["payment_status"] != "paid" {
					t.Errorf("inbox row: source %q, signature %q, payload %s", row.Source, row.Signature, row.Payload)
				}
			})
		}
	})
}

func TestRedirectChecks(t *testing.T) {
	h := newCheckoutHarness(t)
	h.sendsInvalidRequests("a POST to the success page")
	paid := h.book(newResource("room"))
	h.fake.PaySession(*paid.SessionID)
	unpaid := h.book(newResource("room"))
	// A booking whose session is not recorded, paid through a session
	// that names another booking.
	h.fake.AddFault(stripetest.Fault{Method: http.MethodPost, Path: "/v1/checkout/sessions", Status: 500})
	resp := h.api(http.MethodPost, "/bookings", bookingRequest(newResource("room")))
	var foreign struct {
		ID int64 `json:"booking_id"`
	}
	if resp.Status != http.StatusBadGateway || json.Unmarshal(resp.Body, &foreign) != nil || foreign.ID == 0 {
		t.Fatalf("booking without a session: %s", resp)
	}

	tests := []struct {
		name      string
		id        int64
		session   string
		accept    string
		status    int
		stripe    bool   // Stripe is asked
		outcome   string // JSON outcome for 200s
		html      string // fragment of the HTML page
		bookingAs string // status/payment_status after
	}{
		{"paid: recorded", paid.ID, *paid.SessionID, "application/json", 200, true, "recorded", "", "confirmed/paid"},
		{"paid again: already recorded", paid.ID, *paid.SessionID, "application/json", 200, true, "already_recorded", "", "confirmed/paid"},
		{"paid, HTML page", paid.ID, *paid.SessionID, "text/html", 200, true, "", "Your booking is confirmed", "confirmed/paid"},
		{"unpaid", unpaid.ID, *unpaid.SessionID, "application/json", 200, true, "not_paid", "", "pending/unpaid"},
		{"unpaid, HTML page", unpaid.ID, *unpaid.SessionID, "", 200, true, "", "We have not received your payment yet", "pending/unpaid"},
		{"cancel URL: no session, nothing shown", unpaid.ID, "", "application/json", 200, false, "not_checked", "", "pending/unpaid"},
		{"cancel URL, HTML page", unpaid.ID, "", "", 200, false, "", "No payment was taken", "pending/unpaid"},
		{"another booking's session", unpaid.ID, *paid.SessionID, "application/json", 404, false, "", "", "pending/unpaid"},
		{"booking without a recorded session: Stripe not asked", foreign.ID, *paid.SessionID, "application/json", 404, false, "", "", "pending/unpaid"},
		{"session Stripe does not know", foreign.ID, "cs_test_nobody", "application/json", 404, false, "", "", "pending/unpaid"},
		{"malformed session id", paid.ID, "cs_test_1/../../v1/refunds", "application/json", 400, false, "", "", "confirmed/paid"},
		{"unknown booking", 999999, *paid.SessionID, "application/json", 404, false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.with(t)
			before := len(h.fake.Requests())
			resp := h.visit(tt.id, tt.session, tt.accept)
			if resp.Status != tt.status {
				t.Fatalf("answer %s, want %d", resp, tt.status)
			}
			if asked := len(h.fake.Requests()) > before; asked != tt.stripe {
				t.Errorf("Stripe asked: %v, want %v", asked, tt.stripe)
			}
			switch {
			case tt.status == 404:
				// An unknown booking and a wrong pair answer alike.
				resp.wantBody(t, 404, `{"error":"booking not found"}`)
			case tt.status != 200:
				resp.wantError(t, tt.status)
			case tt.html != "":
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || !strings.Contains(string(resp.Body), tt.html) {
					t.Errorf("page (%s) lacks %q:\n%s", ct, tt.html, resp.Body)
				}
			default:
				m := resp.JSON(t)
				if m["outcome"] != tt.outcome {
					t.Errorf("outcome %v, want %s: %s", m["outcome"], tt.outcome, resp.Body)
				}
				if tt.session == "" && (m["amount"] != nil || m["session_id"] != nil || m["status"] != nil || m["payment_status"] != nil) {
					t.Errorf("unchecked answer shows details: %s", resp.Body)
				}
			}
			if tt.bookingAs != "" {
				s, p := h.status(tt.id)
				if s+"/"+p != tt.bookingAs {
					t.Errorf("booking %s/%s, want %s", s, p, tt.bookingAs)
				}
			}
		})
	}

	t.Run("Stripe unavailable", func(t *testing.T) {
		h := h.with(t)
		h.fake.AddFault(stripetest.Fault{Method: http.MethodGet, Path: "/v1/checkout/sessions/" + *unpaid.SessionID, Status: 500})
		h.visit(unpaid.ID, *unpaid.SessionID, "application/json").wantError(t, http.StatusBadGateway, "Stripe")
	})
	t.Run("only GET and HEAD", func(t *testing.T) {
		h := h.with(t)
		resp := h.do(http.MethodPost, "/bookings/"+itoa(paid.ID)+"/success", nil, nil)
		if resp.Status != http.StatusMethodNotAllowed {
			t.Errorf("POST answered %s", resp)
		}
	})
}

func TestRedirectWithoutStripe(t *testing.T) {
	h := newHarness(t)
	b := h.createBooking(bookingRequest(newResource("room")))
	h.do(http.MethodGet, "/bookings/"+itoa(b.ID)+"/success?session_id=cs_test_1", nil, nil).wantError(t, http.StatusServiceUnavailable, "not configured")
}

// TestCheckoutConfigValidation: a Checkout configuration that cannot work
// is refused when the service is built.
func TestCheckoutConfigValidation(t *testing.T) {
	fake := stripetest.NewServer(t)
	client, _ := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_1", BaseURL: fake.URL})
	tests := []struct {
		name string
		cfg  app.CheckoutConfig
		ok   bool
	}{
		{"complete", app.CheckoutConfig{Payments: client, PublicURL: "http://localhost:8000"}, true},
		{"no public URL", app.CheckoutConfig{Payments: client}, false},
		{"relative public URL", app.CheckoutConfig{Payments: client, PublicURL: "ledger.example.com"}, false},
		{"no client", app.CheckoutConfig{PublicURL: "http://localhost:8000"}, false},
		{"session lifetime too short", app.CheckoutConfig{Payments: client, PublicURL: "http://localhost:8000", SessionTTL: 30 * time.Minute}, false},
		{"session lifetime too long", app.CheckoutConfig{Payments: client, PublicURL: "http://localhost:8000", SessionTTL: 25 * time.Hour}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			_, err := app.NewService(app.Config{Bookings: apptest.New(nil), Checkout: &cfg})
			if (err == nil) != tt.ok {
				t.Errorf("NewService: %v, want ok %v", err, tt.ok)
			}
		})
	}
}
