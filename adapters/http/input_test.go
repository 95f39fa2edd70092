package http_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// postRaw sends a webhook over a raw connection, so that header bytes
// net/http's client refuses to send (but its server accepts) reach the
// server.
func (h *harness) postRaw(body []byte, signature string) response {
	h.t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(h.srv.URL, "http://"), 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: ledger.test\r\nContent-Type: application/json\r\n"+
		"Stripe-Signature: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", webhookPath, signature, len(body))
	if _, err := conn.Write(body); err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// wantNot5xx checks that a verified but odd request is answered as a client
// error (nothing written) or accepted, never as an internal failure, which
// Stripe would retry for three days with the same result.
func wantNot5xx(t *testing.T, h *harness, resp response, before counts) {
	t.Helper()
	switch {
	case resp.Status >= 500:
		t.Errorf("answer %s: a deterministic failure on a verified event is not an internal error", resp)
	case resp.Status == http.StatusBadRequest:
		if after := h.counts(); after != before {
			t.Errorf("400, but rows changed: %+v → %+v", before, after)
		}
	case resp.Status != http.StatusOK && resp.Status != http.StatusNotFound:
		t.Errorf("answer %s", resp)
	}
}

// TestWebhookVerifiedEventWithNUL: a validly signed event whose strings hold
// U+0000 (valid JSON, "\u0000") must not be a 500: PostgreSQL text and jsonb
// cannot store it, so the event must be rejected (400) or cleaned.
func TestWebhookVerifiedEventWithNUL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	b := h.createBooking(bookingRequest(newResource("nul")))
	tb := testBooking(b)
	cases := []struct {
		name string
		ev   func(h *harness) event
	}{
		{"type of an unhandled event", func(h *harness) event { return h.buildEvent("customer.created\x00", tb) }},
		{"api_version", func(h *harness) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted, tb, setEventField("api_version", "2023-10-16\x00"))
		}},
		{"Checkout Session id", func(h *harness) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted, tb, setField("id", "cs_test_\x00"))
		}},
		{"PaymentIntent id", func(h *harness) event {
			return h.buildEvent(stripe.EventPaymentIntentSucceeded, tb, setField("id", "pi_\x00"))
		}},
		{"last_payment_error.message", func(h *harness) event {
			return h.buildEvent(stripe.EventPaymentIntentPaymentFailed, tb, func(_, obj map[string]any) {
				obj["last_payment_error"].(map[string]any)["message"] = "declined\x00"
			})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			ev := tc.ev(h)
			before := h.counts()
			wantNot5xx(t, h, h.deliver(ev, hmacSigner), before)
		})
	}
}

// TestWebhookSignatureHeaderNotUTF8: Stripe-Signature elements other than t
// and v1 are ignored by the verification; one holding bytes that are not
// UTF-8 (which net/http's server lets through) must not turn a verified
// event into a 500.
func TestWebhookSignatureHeaderNotUTF8(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	b := h.createBooking(bookingRequest(newResource("header")))
	cases := []struct{ typ, extra string }{
		{"customer.updated", ",x=\xff"},
		{stripe.EventCheckoutSessionCompleted, ",x=\xff"},
		// What FuzzWebhook found: a second, corrupted v1 next to a valid one.
		{stripe.EventPaymentIntentSucceeded, ",v1=ba8563f1df2d04742cb5d8c264e59030cccf\x8a\x8a\x8a"},
	}
	for i, tc := range cases {
		ev := h.buildEvent(tc.typ, testBooking(b))
		before := h.counts()
		resp := h.postRaw(ev.Body, pickSigner(i).sign(ev.Body, testSecret, h.now)+tc.extra)
		wantNot5xx(t, h, resp, before)
	}
}
