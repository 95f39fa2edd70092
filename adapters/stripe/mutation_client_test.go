package stripe_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
)

// The client's edges left open by the other tests, found by `make mutate`
// (docs/MUTATION.md), against the fake Stripe API of stripetest.

// TestClientLimitsOnBothSides: ListEvents takes up to 20 event types (the
// API's limit) and Refund idempotency keys up to 255 characters; one more
// is refused before anything is sent.
func TestClientLimitsOnBothSides(t *testing.T) {
	types := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("test.type_%d", i)
		}
		return out
	}
	t.Run("event types", func(t *testing.T) {
		fake := stripetest.NewServer(t)
		c := newClient(t, fake.URL, 0)
		if _, err := c.ListEvents(t.Context(), time.Now().Add(-time.Hour), types(20)); err != nil {
			t.Fatalf("20 types: %v", err)
		}
		sent := len(fake.Requests())
		if sent == 0 {
			t.Fatal("20 types: nothing sent")
		}
		if _, err := c.ListEvents(t.Context(), time.Now().Add(-time.Hour), types(21)); !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), "types") {
			t.Errorf("21 types: %v, want a refusal naming types", err)
		}
		if n := len(fake.Requests()); n != sent {
			t.Errorf("21 types: %d more requests sent", n-sent)
		}
	})
	t.Run("idempotency key", func(t *testing.T) {
		fake := stripetest.NewServer(t)
		fake.AddPayment("pi_3key", 1000, "eur")
		c := newClient(t, fake.URL, 0)
		long := strings.Repeat("k", 255)
		if _, err := c.Refund(t.Context(), stripe.RefundParams{PaymentIntentID: "pi_3key", Amount: 500, IdempotencyKey: long}); err != nil {
			t.Fatalf("key of 255: %v", err)
		}
		sent := len(fake.Requests())
		_, err := c.Refund(t.Context(), stripe.RefundParams{PaymentIntentID: "pi_3key", Amount: 500, IdempotencyKey: long + "k"})
		if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), "idempotency_key") {
			t.Errorf("key of 256: %v, want a refusal naming idempotency_key", err)
		}
		if n := len(fake.Requests()); n != sent {
			t.Errorf("key of 256: %d more requests sent", n-sent)
		}
	})
}

// TestRefundRecordsTheAnswer: a refund made carries Stripe's JSON and the
// answer's Request-Id, and so does one found again by listing (the list's
// Request-Id); a failed listing stops the call before anything is made.
func TestRefundRecordsTheAnswer(t *testing.T) {
	const pi = "pi_3answer"
	params := stripe.RefundParams{PaymentIntentID: pi, Amount: 1000, IdempotencyKey: "refund-answer"}
	fake := stripetest.NewServer(t)
	fake.AddPayment(pi, 1000, "eur")
	c := newClient(t, fake.URL, 0)
	made, err := c.Refund(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct{ ID, Object string }
	if err := json.Unmarshal(made.Raw, &raw); err != nil || raw.ID != made.ID || raw.Object != "refund" {
		t.Errorf("made: Raw %q (%v), want the refund's JSON", made.Raw, err)
	}
	if made.Found || !strings.HasPrefix(made.RequestID, "req_") {
		t.Errorf("made: Found %v, RequestID %q", made.Found, made.RequestID)
	}
	found, err := c.Refund(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if !found.Found || found.ID != made.ID || !strings.HasPrefix(found.RequestID, "req_") || found.RequestID == made.RequestID {
		t.Errorf("found: %+v, want the same refund with the listing's Request-Id", found)
	}

	other := stripetest.NewServer(t)
	other.AddPayment(pi, 1000, "eur")
	other.AddFault(stripetest.Fault{Method: http.MethodGet, Path: "/v1/refunds", Status: 500})
	if _, err := newClient(t, other.URL, 0).Refund(t.Context(), params); err == nil || stripe.IsPermanent(err) {
		t.Errorf("listing answered 500: %v, want a transient error", err)
	}
	if n := other.Count(http.MethodPost, "/v1/refunds"); n != 0 || len(other.Refunds()) != 0 {
		t.Errorf("listing failed, yet %d POST /v1/refunds and %d refunds", n, len(other.Refunds()))
	}
}

// TestRefundPayment: the ledger's refund request becomes one Stripe refund
// with the booking and the ledger's reason in its metadata, Stripe's reason
// "duplicate" for a duplicate payment only, and comes back as the domain's
// RefundIssued; a refusal is returned as it is.
func TestRefundPayment(t *testing.T) {
	const pi = "pi_3ledger"
	for _, tt := range []struct {
		reason       domain.RefundReason
		stripeReason any
	}{
		{domain.RefundDuplicatePayment, "duplicate"},
		{domain.RefundAvailabilityConflict, nil},
	} {
		t.Run(string(tt.reason), func(t *testing.T) {
			fake := stripetest.NewServer(t)
			fake.AddPayment(pi, 36000, "eur")
			c := newClient(t, fake.URL, 0)
			req := domain.RefundRequested{PaymentIntentID: pi, Amount: 36000, Currency: "eur", Reason: tt.reason}
			issued, err := c.RefundPayment(t.Context(), 7, req, "refund-7-"+string(tt.reason))
			if err != nil {
				t.Fatal(err)
			}
			refunds := fake.Refunds()
			if len(refunds) != 1 {
				t.Fatalf("%d refunds made", len(refunds))
			}
			r := refunds[0]
			md := r["metadata"].(map[string]any)
			if r["reason"] != tt.stripeReason || md["booking_id"] != "7" || md["ledger_reason"] != string(tt.reason) ||
				md[stripe.MetadataRefundKey] != "refund-7-"+string(tt.reason) {
				t.Errorf("refund made: %v", r)
			}
			want := domain.RefundIssued{RefundID: r["id"].(string), PaymentIntentID: pi, Amount: 36000, Currency: "eur"}
			if issued != want {
				t.Errorf("RefundIssued %+v, want %+v", issued, want)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		fake := stripetest.NewServer(t)
		fake.RejectRefunds(pi, "charge_already_refunded", "Charge ch_1 has already been refunded.")
		c := newClient(t, fake.URL, 0)
		req := domain.RefundRequested{PaymentIntentID: pi, Amount: 36000, Currency: "eur", Reason: domain.RefundDuplicatePayment}
		issued, err := c.RefundPayment(t.Context(), 7, req, "refund-7")
		var apiErr *stripe.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != "charge_already_refunded" || issued != (domain.RefundIssued{}) {
			t.Fatalf("RefundPayment = %+v, %v", issued, err)
		}
	})
}

// TestAPIErrorText: what an operator reads of a failed call (logs, the
// refund failures view): the operation, the status, Stripe's type and
// code, its message and the request id — each left out when absent — or
// the transport error when there was no answer.
func TestAPIErrorText(t *testing.T) {
	transport := errors.New("dial tcp: connection refused")
	tests := []struct {
		err             stripe.APIError
		text, code, msg string
	}{
		{stripe.APIError{Op: "create refund", HTTPStatus: 400, Type: "invalid_request_error", Code: "charge_already_refunded", Message: "Already refunded.", RequestID: "req_1"},
			"stripe: create refund: 400 invalid_request_error charge_already_refunded: Already refunded. (request req_1)", "charge_already_refunded", "Already refunded."},
		{stripe.APIError{Op: "list refunds", HTTPStatus: 500, Type: "api_error"},
			"stripe: list refunds: 500 api_error", "api_error", "stripe: list refunds: 500 api_error"},
		{stripe.APIError{Op: "list refunds", HTTPStatus: 502},
			"stripe: list refunds: 502", "http_502", "stripe: list refunds: 502"},
		{stripe.APIError{Op: "create refund", Err: transport},
			"stripe: create refund: dial tcp: connection refused", "network_error", "stripe: create refund: dial tcp: connection refused"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.text {
			t.Errorf("Error() = %q, want %q", got, tt.text)
		}
		if got := tt.err.FailureCode(); got != tt.code {
			t.Errorf("%s: FailureCode() = %q, want %q", tt.text, got, tt.code)
		}
		if got := tt.err.FailureMessage(); got != tt.msg {
			t.Errorf("%s: FailureMessage() = %q, want %q", tt.text, got, tt.msg)
		}
	}
}

// TestVerifySignatureIgnoresAge: a stored event's header re-checks however
// old it is, under any of the configured secrets; a header that is
// missing, malformed, without v1, or signed with another secret does not.
func TestVerifySignatureIgnoresAge(t *testing.T) {
	const secretA, secretB = "whsec_reverify_A_0123456789", "whsec_reverify_B_0123456789"
	v, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{secretA, secretB}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"evt_1old","object":"event"}`)
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, secret := range []string{secretA, secretB} {
		if err := v.VerifySignature(body, stripe.Sign(body, secret, old)); err != nil {
			t.Errorf("a header signed in 2020: %v", err)
		}
	}
	if err := v.Verify(body, stripe.Sign(body, secretA, old)); !errors.Is(err, stripe.ErrTimestampOutOfTolerance) {
		t.Errorf("Verify of the same header: %v, want it refused as stale", err)
	}
	for _, tt := range []struct {
		header string
		want   error
	}{
		{"", stripe.ErrNoSignature},
		{"t=1577836800,v1", stripe.ErrMalformedHeader},
		{"v1=abc", stripe.ErrMalformedHeader},
		{"t=1577836800,v0=abc", stripe.ErrBadSignature},
		{stripe.Sign(body, "whsec_someone_else", old), stripe.ErrBadSignature},
		{stripe.Sign([]byte(`{"id":"evt_1other"}`), secretA, old), stripe.ErrBadSignature},
	} {
		if err := v.VerifySignature(body, tt.header); !errors.Is(err, tt.want) {
			t.Errorf("VerifySignature(%q) = %v, want %v", tt.header, err, tt.want)
		}
	}
}

// TestRefundPaymentKeepsTheRequestedPaymentIntent: a refund answer without
// payment_intent (Stripe leaves it null for refunds of charges made
// without one) is recorded against the PaymentIntent the ledger asked to
// refund, never against none.
func TestRefundPaymentKeepsTheRequestedPaymentIntent(t *testing.T) {
	const pi = "pi_3nopi"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", "req_nopi")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/refunds":
			fmt.Fprint(w, `{"object":"list","data":[],"has_more":false,"url":"/v1/refunds"}`)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/refunds":
			re, err := stripe.Fixture("refund")
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			re["id"], re["amount"], re["currency"], re["status"], re["payment_intent"] = "re_nopi", 36000, "eur", "succeeded", nil
			_ = json.NewEncoder(w).Encode(re)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, 0)
	req := domain.RefundRequested{PaymentIntentID: pi, Amount: 36000, Currency: "eur", Reason: domain.RefundAvailabilityConflict}
	issued, err := c.RefundPayment(t.Context(), 7, req, "refund-nopi")
	if err != nil {
		t.Fatal(err)
	}
	if want := (domain.RefundIssued{RefundID: "re_nopi", PaymentIntentID: pi, Amount: 36000, Currency: "eur"}); issued != want {
		t.Errorf("RefundIssued %+v, want %+v", issued, want)
	}
}
