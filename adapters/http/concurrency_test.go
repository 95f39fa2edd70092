package http_test

import (
	"bytes"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// TestWebhookConcurrentOverlappingPayments: 20 bookings of one resource whose
// stays all share some nights are paid at the same moment, each through its
// own request: exactly one is confirmed, the other 19 are cancelled with an
// availability conflict (and a refund requested), and every request is
// answered 200.
func TestWebhookConcurrentOverlappingPayments(t *testing.T) {
	t.Parallel()
	const n = 20
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		h := newHarness(t, opts...)
		resource := newResource("contested")
		base := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
		ids := make([]int64, n)
		events := make([]event, n)
		for i := range n {
			// Every stay covers [Mar 5, Mar 10): all pairs overlap, in
			// different ways.
			in := base.AddDate(0, 0, i%5)
			out := base.AddDate(0, 0, 9+i%4)
			b := h.newBooking(resource, in.Format(time.DateOnly), out.Format(time.DateOnly))
			ids[i] = b.ID
			typ := stripe.EventCheckoutSessionCompleted
			if i%2 == 1 {
				typ = stripe.EventPaymentIntentSucceeded
			}
			events[i] = h.buildEvent(typ, testBooking(b))
		}

		start := make(chan struct{})
		answers := make([]response, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			s := pickSigner(i)
			body := events[i].Body
			header := webhookHeader(s.sign(body, testSecret, h.now))
			wg.Go(func() {
				<-start
				answers[i], errs[i] = h.send(http.MethodPost, webhookPath, header, body)
			})
		}
		close(start)
		wg.Wait()

		for i := range n {
			if errs[i] != nil {
				t.Fatalf("booking %d: %v", ids[i], errs[i])
			}
			if answers[i].Status != http.StatusOK || string(bytes.TrimSpace(answers[i].Body)) != `{"status":"success"}` {
				t.Errorf("booking %d: answer %s, want 200 success", ids[i], answers[i])
			}
		}
		var confirmed []int64
		cancelled := 0
		for _, id := range ids {
			status, payment := h.status(id)
			stream := h.stream(id)
			switch status {
			case "confirmed":
				confirmed = append(confirmed, id)
				if payment != "paid" || !slices.Equal(stream, []string{evRequested, evSucceeded, evConfirmed}) {
					t.Errorf("confirmed booking %d: payment %s, stream %v", id, payment, stream)
				}
			case "cancelled":
				cancelled++
				if want := []string{evRequested, evSucceeded, evConflict, evCancelled, evRefund}; !slices.Equal(stream, want) {
					t.Errorf("cancelled booking %d: stream %v, want %v", id, stream, want)
				}
			default:
				t.Errorf("booking %d is %s/%s", id, status, payment)
			}
		}
		if len(confirmed) != 1 || cancelled != n-1 {
			t.Errorf("%d confirmed %v and %d cancelled, want 1 and %d", len(confirmed), confirmed, cancelled, n-1)
		}
	})
}

// TestWebhookConcurrentSameEvent: one event posted by 10 clients at once is
// processed once; the other deliveries are duplicates answered "ignored".
func TestWebhookConcurrentSameEvent(t *testing.T) {
	t.Parallel()
	const n = 10
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		h := newHarness(t, opts...)
		b := h.createBooking(bookingRequest(newResource("same-event")))
		ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b))

		start := make(chan struct{})
		answers := make([]response, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			header := webhookHeader(pickSigner(i).sign(ev.Body, testSecret, h.now))
			wg.Go(func() {
				<-start
				answers[i], errs[i] = h.send(http.MethodPost, webhookPath, header, ev.Body)
			})
		}
		close(start)
		wg.Wait()

		tally := map[string]int{}
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if answers[i].Status != http.StatusOK {
				t.Errorf("answer %s, want 200", answers[i])
			}
			tally[string(bytes.TrimSpace(answers[i].Body))]++
		}
		if tally[`{"status":"success"}`] != 1 || tally[`{"status":"ignored"}`] != n-1 {
			t.Errorf("answers %v, want one success and %d ignored", tally, n-1)
		}
		if got := h.countType(b.ID, evSucceeded); got != 1 {
			t.Errorf("%d PaymentSucceeded, want 1", got)
		}
		h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed)
		h.wantStatus(b.ID, "confirmed", "paid")
		if got := h.inboxOutcome(ev.ID); got != "processed" {
			t.Errorf("inbox outcome %q, want processed", got)
		}
		if got := h.deliveryOutcomes(ev.ID); len(got) != n-1 || slices.ContainsFunc(got, func(o string) bool { return o != "duplicate" }) {
			t.Errorf("deliveries %v, want %d duplicates", got, n-1)
		}
	})
}
