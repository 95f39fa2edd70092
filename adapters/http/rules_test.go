package http_test

import (
	"net/http"
	"testing"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// state is what a booking should look like after a step: its bookings row
// and its stream's event types.
type state struct {
	status, paymentStatus string
	stream                []string
}

// ruleStep delivers one event about one of the case's bookings and checks
// the answer and that booking's state afterwards.
type ruleStep struct {
	booking string // key into ruleCase.bookings
	typ     string
	edits   []editFunc
	answer  string // "success" or "ignored"
	want    state
}

type stay struct{ checkIn, checkOut string }

type ruleCase struct {
	name string
	// bookings on one resource, created in key order ("a", "b", ...).
	bookings map[string]stay
	steps    []ruleStep
	// final states of bookings the steps did not end on.
	final map[string]state
}

func pending() state { return state{"pending", "unpaid", []string{evRequested}} }

func confirmedState() state {
	return state{"confirmed", "paid", []string{evRequested, evSucceeded, evConfirmed}}
}

// TestWebhookRules runs every rule of the webhook flow (README) end to end: signed events
// through the real server, then the bookings row and the stream.
func TestWebhookRules(t *testing.T) {
	t.Parallel()
	one := map[string]stay{"a": {defaultCheckIn, defaultCheckOut}}
	unpaid := setField("payment_status", "unpaid")
	cases := []ruleCase{
		{
			name:     "checkout.session.completed paid confirms",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, nil, "success", confirmedState()},
			},
		},
		{
			name:     "payment_intent.succeeded confirms",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventPaymentIntentSucceeded, nil, "success", confirmedState()},
			},
		},
		{
			name:     "completed unpaid stays pending, async_payment_succeeded confirms",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, []editFunc{unpaid}, "success", pending()},
				{"a", stripe.EventCheckoutSessionAsyncPaymentSucceeded, nil, "success", confirmedState()},
			},
		},
		{
			name:     "completed no_payment_required does not confirm",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, []editFunc{setField("payment_status", "no_payment_required")}, "success", pending()},
			},
		},
		{
			name:     "completed unpaid, async_payment_failed cancels",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, []editFunc{unpaid}, "success", pending()},
				{"a", stripe.EventCheckoutSessionAsyncPaymentFailed, nil, "success",
					state{"cancelled", "failed", []string{evRequested, evFailed, evCancelled}}},
			},
		},
		{
			name:     "payment_intent.payment_failed cancels a pending booking",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventPaymentIntentPaymentFailed, nil, "success",
					state{"cancelled", "failed", []string{evRequested, evFailed, evCancelled}}},
			},
		},
		{
			name:     "a failure after paid changes nothing",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, nil, "success", confirmedState()},
				{"a", stripe.EventPaymentIntentPaymentFailed, nil, "success", confirmedState()},
				{"a", stripe.EventCheckoutSessionAsyncPaymentFailed, nil, "success", confirmedState()},
				{"a", stripe.EventCheckoutSessionExpired, nil, "success", confirmedState()},
			},
		},
		{
			name:     "a success after a failure confirms when the dates are free",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventPaymentIntentPaymentFailed, nil, "success",
					state{"cancelled", "failed", []string{evRequested, evFailed, evCancelled}}},
				{"a", stripe.EventPaymentIntentSucceeded, nil, "success",
					state{"confirmed", "paid", []string{evRequested, evFailed, evCancelled, evSucceeded, evConfirmed}}},
			},
		},
		{
			name: "a success after a failure when another booking took the dates: conflict, cancel, refund",
			bookings: map[string]stay{
				"a": {defaultCheckIn, defaultCheckOut},
				"b": {"2027-01-12", "2027-01-14"},
			},
			steps: []ruleStep{
				{"a", stripe.EventPaymentIntentPaymentFailed, nil, "success",
					state{"cancelled", "failed", []string{evRequested, evFailed, evCancelled}}},
				{"b", stripe.EventCheckoutSessionCompleted, nil, "success", confirmedState()},
				{"a", stripe.EventPaymentIntentSucceeded, nil, "success",
					state{"cancelled", "paid", []string{evRequested, evFailed, evCancelled, evSucceeded, evConflict, evCancelled, evRefund}}},
			},
			final: map[string]state{"b": confirmedState()},
		},
		{
			name:     "amount mismatch: recorded, not confirmed",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, []editFunc{setField("amount_total", defaultAmount-1)}, "success",
					state{"pending", "unpaid", []string{evRequested, evMismatch}}},
			},
		},
		{
			name:     "amount mismatch on payment_intent.succeeded: recorded, not confirmed",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventPaymentIntentSucceeded, []editFunc{setField("amount", defaultAmount*2)}, "success",
					state{"pending", "unpaid", []string{evRequested, evMismatch}}},
			},
		},
		{
			name:     "currency mismatch: recorded, not confirmed",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, []editFunc{setField("currency", "usd")}, "success",
					state{"pending", "unpaid", []string{evRequested, evMismatch}}},
			},
		},
		{
			name:     "currency in upper case is the same currency",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, []editFunc{setField("currency", "EUR")}, "success", confirmedState()},
			},
		},
		{
			name:     "checkout.session.expired cancels a pending unpaid booking",
			bookings: one,
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionExpired, nil, "success",
					state{"cancelled", "unpaid", []string{evRequested, evCancelled}}},
			},
		},
		{
			name: "adjacent stays both confirm, an overlapping one conflicts",
			bookings: map[string]stay{
				"a": {"2027-01-10", "2027-01-13"},
				"b": {"2027-01-13", "2027-01-15"},
				"c": {"2027-01-08", "2027-01-10"},
				"d": {"2027-01-12", "2027-01-14"},
			},
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionCompleted, nil, "success", confirmedState()},
				{"b", stripe.EventCheckoutSessionCompleted, nil, "success", confirmedState()},
				{"c", stripe.EventPaymentIntentSucceeded, nil, "success", confirmedState()},
				{"d", stripe.EventCheckoutSessionCompleted, nil, "success",
					state{"cancelled", "paid", []string{evRequested, evSucceeded, evConflict, evCancelled, evRefund}}},
			},
			final: map[string]state{"a": confirmedState(), "b": confirmedState(), "c": confirmedState()},
		},
		{
			name: "a cancelled booking does not hold its dates",
			bookings: map[string]stay{
				"a": {defaultCheckIn, defaultCheckOut},
				"b": {defaultCheckIn, defaultCheckOut},
			},
			steps: []ruleStep{
				{"a", stripe.EventCheckoutSessionExpired, nil, "success",
					state{"cancelled", "unpaid", []string{evRequested, evCancelled}}},
				{"b", stripe.EventCheckoutSessionCompleted, nil, "success", confirmedState()},
			},
		},
	}

	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		h := newHarness(t, opts...)
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				h := h.with(t)
				resource := newResource("rules")
				ids := map[string]int64{}
				tbs := map[string]stripe.TestBooking{}
				for _, key := range []string{"a", "b", "c", "d"} {
					s, ok := tc.bookings[key]
					if !ok {
						continue
					}
					b := h.newBooking(resource, s.checkIn, s.checkOut)
					ids[key], tbs[key] = b.ID, testBooking(b)
				}
				for j, step := range tc.steps {
					ev := h.buildEvent(step.typ, tbs[step.booking], step.edits...)
					resp := h.deliver(ev, pickSigner(i+j))
					resp.wantBody(t, http.StatusOK, `{"status":"`+step.answer+`"}`)
					id := ids[step.booking]
					h.wantStatus(id, step.want.status, step.want.paymentStatus)
					h.wantStream(id, step.want.stream...)
					if t.Failed() {
						t.Fatalf("after step %d (%s for %s)", j+1, step.typ, step.booking)
					}
				}
				for key, want := range tc.final {
					h.wantStatus(ids[key], want.status, want.paymentStatus)
					h.wantStream(ids[key], want.stream...)
				}
			})
		}
	})
}

// TestWebhookLookupOrder: a booking is found by metadata.booking_id, then
// client_reference_id, then the Checkout Session id, then the PaymentIntent
// id. Each event carries only the keys under test; where it carries two,
// they name different bookings and the earlier key must win.
func TestWebhookLookupOrder(t *testing.T) {
	t.Parallel()

	// setup creates bookings a and b on their own resources: a with a
	// Checkout Session id, b with a session id and, after a failed payment,
	// a PaymentIntent id; both are still unpaid.
	type fixture struct {
		a, b     createdBooking
		aSession string
		bSession string
		bIntent  string
	}
	setup := func(h *harness) fixture {
		var f fixture
		f.aSession, f.bSession, f.bIntent = stripe.NewSessionID(), stripe.NewSessionID(), stripe.NewPaymentIntentID()
		reqA := bookingRequest(newResource("lookup"))
		reqA["session_id"] = f.aSession
		f.a = h.createBooking(reqA)
		reqB := bookingRequest(newResource("lookup"))
		reqB["session_id"] = f.bSession
		f.b = h.createBooking(reqB)
		// The failure makes bIntent b's PaymentIntent id.
		failed := h.buildEvent(stripe.EventPaymentIntentPaymentFailed,
			stripe.TestBooking{ID: f.b.ID, PaymentIntentID: f.bIntent, Amount: defaultAmount, Currency: defaultCurrency})
		h.deliver(failed, hmacSigner).wantBody(h.t, http.StatusOK, `{"status":"success"}`)
		row := h.api(http.MethodGet, "/bookings/"+itoa(f.b.ID), nil)
		if got := row.JSON(h.t)["payment_intent_id"]; got != f.bIntent {
			h.t.Fatalf("booking b's payment_intent_id %v, want %s", got, f.bIntent)
		}
		return f
	}
	unknownID := func() int64 { return 900000000 + resourceSeq.Add(1) }
	metadata := func(id int64) editFunc {
		return func(_, obj map[string]any) { obj["metadata"] = map[string]any{"booking_id": itoa(id)} }
	}
	clientRef := func(id int64) editFunc {
		return func(_, obj map[string]any) { obj["client_reference_id"] = itoa(id) }
	}
	noMetadata := setField("metadata", map[string]any{})
	noClientRef := setField("client_reference_id", nil)

	cases := []struct {
		name string
		// event builds the event; it must match the booking that want picks.
		event func(h *harness, f fixture) event
		want  func(f fixture) int64
		// bug, when set, skips the case: a known deviation from the design.
		bug string
	}{
		{"metadata.booking_id only", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{ID: f.a.ID, Amount: defaultAmount, Currency: defaultCurrency}, noClientRef)
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"metadata.booking_id only, payment_intent event", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventPaymentIntentSucceeded,
				stripe.TestBooking{ID: f.a.ID, Amount: defaultAmount, Currency: defaultCurrency})
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"client_reference_id only", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{ID: f.a.ID, Amount: defaultAmount, Currency: defaultCurrency}, noMetadata)
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"Checkout Session id only", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{SessionID: f.aSession, Amount: defaultAmount, Currency: defaultCurrency})
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"PaymentIntent id only, payment_intent event", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventPaymentIntentSucceeded,
				stripe.TestBooking{PaymentIntentID: f.bIntent, Amount: defaultAmount, Currency: defaultCurrency})
		}, func(f fixture) int64 { return f.b.ID }, ""},
		{"PaymentIntent id only, session event with an unknown session", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{PaymentIntentID: f.bIntent, Amount: defaultAmount, Currency: defaultCurrency})
		}, func(f fixture) int64 { return f.b.ID }, ""},
		{"metadata.booking_id before client_reference_id", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{ID: f.a.ID, Amount: defaultAmount, Currency: defaultCurrency}, clientRef(f.b.ID))
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"client_reference_id before the session id", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{ID: f.a.ID, SessionID: f.bSession, Amount: defaultAmount, Currency: defaultCurrency}, noMetadata)
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"metadata.booking_id before the session id", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{ID: f.b.ID, SessionID: f.aSession, Amount: defaultAmount, Currency: defaultCurrency}, noClientRef)
		}, func(f fixture) int64 { return f.b.ID }, ""},
		{"session id before the PaymentIntent id", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{SessionID: f.aSession, PaymentIntentID: f.bIntent, Amount: defaultAmount, Currency: defaultCurrency})
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"booking_id of no booking falls back to the session id", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{ID: unknownID(), SessionID: f.aSession, Amount: defaultAmount, Currency: defaultCurrency})
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"booking_id of no booking falls back to the PaymentIntent id", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventPaymentIntentSucceeded,
				stripe.TestBooking{ID: unknownID(), PaymentIntentID: f.bIntent, Amount: defaultAmount, Currency: defaultCurrency})
		}, func(f fixture) int64 { return f.b.ID }, ""},
		{"metadata.booking_id that is not an id falls back to client_reference_id", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{ID: f.a.ID, Amount: defaultAmount, Currency: defaultCurrency},
				setField("metadata", map[string]any{"booking_id": "room-12"}))
		}, func(f fixture) int64 { return f.a.ID }, ""},
		{"metadata.booking_id of no booking falls back to client_reference_id", func(h *harness, f fixture) event {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted,
				stripe.TestBooking{ID: f.a.ID, Amount: defaultAmount, Currency: defaultCurrency}, metadata(unknownID()))
		}, func(f fixture) int64 { return f.a.ID }, ""},
	}
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		h := newHarness(t, opts...)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				if tc.bug != "" {
					t.Skip("BUG: " + tc.bug)
				}
				h := h.with(t)
				f := setup(h)
				ev := tc.event(h, f)
				h.deliver(ev, stripeGoSigner).wantBody(t, http.StatusOK, `{"status":"success"}`)
				wantID := tc.want(f)
				for _, b := range []createdBooking{f.a, f.b} {
					s, p := h.status(b.ID)
					confirmed := s == "confirmed" && p == "paid"
					if confirmed != (b.ID == wantID) {
						t.Errorf("booking %d is %s/%s; the event should have confirmed booking %d only", b.ID, s, p, wantID)
					}
				}
			})
		}
	})
}

// TestWebhookOnePaymentConfirmsOnce: checkout.session.completed and
// payment_intent.succeeded report the same payment; in either order, and
// with each delivered three times, the stream gets one PaymentSucceeded and
// one BookingConfirmed.
func TestWebhookOnePaymentConfirmsOnce(t *testing.T) {
	t.Parallel()
	orders := [][]string{
		{stripe.EventCheckoutSessionCompleted, stripe.EventPaymentIntentSucceeded},
		{stripe.EventPaymentIntentSucceeded, stripe.EventCheckoutSessionCompleted},
	}
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		h := newHarness(t, opts...)
		for _, order := range orders {
			t.Run(order[0]+" first", func(t *testing.T) {
				t.Parallel()
				h := h.with(t)
				b := h.createBooking(bookingRequest(newResource("once")))
				tb := testBooking(b) // one session, one PaymentIntent
				first, second := h.buildEvent(order[0], tb), h.buildEvent(order[1], tb)
				deliveries := []struct {
					ev     event
					answer string
				}{
					{first, "success"},
					{second, "success"}, // processed, nothing new to record
					{first, "ignored"},
					{second, "ignored"},
					{first, "ignored"},
					{second, "ignored"},
				}
				for i, d := range deliveries {
					h.deliver(d.ev, pickSigner(i)).wantBody(t, http.StatusOK, `{"status":"`+d.answer+`"}`)
				}
				if n := h.countType(b.ID, evSucceeded); n != 1 {
					t.Errorf("%d PaymentSucceeded, want 1", n)
				}
				if n := h.countType(b.ID, evConfirmed); n != 1 {
					t.Errorf("%d BookingConfirmed, want 1", n)
				}
				h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed)
				h.wantStatus(b.ID, "confirmed", "paid")
				for _, ev := range []event{first, second} {
					if got := h.inboxOutcome(ev.ID); got != "processed" {
						t.Errorf("inbox outcome of %s: %q, want processed", ev.Type, got)
					}
					if got := h.deliveryOutcomes(ev.ID); len(got) != 2 || got[0] != "duplicate" || got[1] != "duplicate" {
						t.Errorf("deliveries of %s: %v, want two duplicates", ev.Type, got)
					}
				}
			})
		}
	})
}
