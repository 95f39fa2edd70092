package http_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// TestInFlightLimitAnswers503: with MaxInFlight 2 and two webhooks held
// inside the store (in memory, writes wait at the store's gate; on
// PostgreSQL, their resource's advisory lock is taken elsewhere), a third
// request is refused at once with 503 and Retry-After, writes nothing, and
// /healthz still answers; once the hold is released the two held webhooks
// are processed.
func TestInFlightLimitAnswers503(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		h := newHarness(t, append(opts, withConfig(func(c *ledgerhttp.Config) {
			c.MaxInFlight, c.RequestTimeout = 2, time.Minute
		}))...)
		resource := newResource("limits")
		events := make([]event, 3)
		for i := range events {
			b := h.newBooking(resource, fmt.Sprintf("2027-05-0%d", 2*i+1), fmt.Sprintf("2027-05-0%d", 2*i+2))
			events[i] = h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b))
		}
		post := func(ev event) string {
			resp, err := h.send(http.MethodPost, webhookPath, webhookHeader(hmacSigner.sign(ev.Body, testSecret, h.now)), ev.Body)
			if err != nil {
				t.Error(err)
				return err.Error()
			}
			return fmt.Sprintf("%d %s", resp.Status, bytes.TrimSpace(resp.Body))
		}

		// Hold the resource: every webhook about it waits inside the store.
		release := h.store.hold(t, resource)
		defer release()
		var wg sync.WaitGroup
		held := make([]string, 2)
		for i := range held {
			wg.Go(func() { held[i] = post(events[i]) })
		}
		h.store.waitHeld(t, 2)
		before := h.counts()

		resp, err := h.send(http.MethodPost, webhookPath, webhookHeader(stripeGoSigner.sign(events[2].Body, testSecret, h.now)), events[2].Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusServiceUnavailable || string(bytes.TrimSpace(resp.Body)) != `{"error":"busy, try again"}` || resp.Header.Get("Retry-After") != "1" {
			t.Errorf("third request: %s (Retry-After %q), want 503 busy", resp, resp.Header.Get("Retry-After"))
		}
		if r := h.do(http.MethodGet, "/healthz", nil, nil); r.Status != http.StatusOK {
			t.Errorf("/healthz at the limit: %s", r)
		}
		if after := h.counts(); after != before {
			t.Errorf("the refused request wrote something: %+v → %+v", before, after)
		}

		release()
		wg.Wait()
		for i, got := range held {
			if got != `200 {"status":"success"}` {
				t.Errorf("held request %d: %s", i, got)
			}
		}
		// Below the limit again, the refused event goes through on Stripe's retry.
		if got := post(events[2]); got != `200 {"status":"success"}` {
			t.Errorf("retry of the refused event: %s", got)
		}
	})
}
