package http_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// Event types of the domain, as stored in ledger_events.event_type.
const (
	evRequested = "BookingRequested"
	evSucceeded = "PaymentSucceeded"
	evFailed    = "PaymentFailed"
	evMismatch  = "PaymentMismatch"
	evConflict  = "AvailabilityConflict"
	evConfirmed = "BookingConfirmed"
	evCancelled = "BookingCancelled"
	evRefund    = "RefundRequested"
)

// TestWebhookRejectsUnverifiedOrMalformed covers the first row of the answer
// table: every request that is not a verified, well-formed event gets 400
// with an error naming the problem, and writes nothing at all. Each request
// carries an event for an existing pending booking, so that a missing check
// would show as a processed payment.
func TestWebhookRejectsUnverifiedOrMalformed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sendsInvalidRequests("unsigned, forged and malformed webhooks")
	booking := h.createBooking(bookingRequest(newResource("reject")))
	tb := testBooking(booking)

	cases := []struct {
		name string
		// request returns the body and the Stripe-Signature header.
		request func(h *harness, s signer) ([]byte, string)
		// wantErr are fragments of the error message.
		wantErr []string
	}{
		{"missing header", func(h *harness, s signer) ([]byte, string) {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted, tb).Body, ""
		}, []string{"no Stripe-Signature header"}},
		{"malformed header: no key=value", func(h *harness, s signer) ([]byte, string) {
			return h.buildEvent(stripe.EventCheckoutSessionCompleted, tb).Body, "garbage"
		}, []string{"malformed"}},
		{"malformed header: t not an integer", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			valid := s.sign(ev.Body, testSecret, h.now)
			_, v1, _ := strings.Cut(valid, ",")
			return ev.Body, "t=yesterday," + v1
		}, []string{"malformed"}},
		{"malformed header: no t", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			valid := s.sign(ev.Body, testSecret, h.now)
			_, v1, _ := strings.Cut(valid, ",")
			return ev.Body, v1
		}, []string{"malformed"}},
		{"malformed header: two t", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			return ev.Body, s.sign(ev.Body, testSecret, h.now) + ",t=" + strconv.FormatInt(h.now.Unix(), 10)
		}, []string{"malformed"}},
		{"wrong secret", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			return ev.Body, s.sign(ev.Body, otherSecret, h.now)
		}, []string{"no valid v1 signature"}},
		{"only v0", func(h *harness, s signer) ([]byte, string) {
			// A correct HMAC under the right secret, but in the v0 scheme,
			// which must never count.
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			return ev.Body, strings.Replace(s.sign(ev.Body, testSecret, h.now), "v1=", "v0=", 1)
		}, []string{"no valid v1 signature"}},
		{"empty v1", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			return ev.Body, "t=" + strconv.FormatInt(h.now.Unix(), 10) + ",v1="
		}, []string{"no valid v1 signature"}},
		{"body changed after signing", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			sig := s.sign(ev.Body, testSecret, h.now)
			changed := bytes.Replace(ev.Body, []byte(`"amount_total": 36000`), []byte(`"amount_total": 36001`), 1)
			if bytes.Equal(changed, ev.Body) {
				h.t.Fatal("amount_total not found in the event")
			}
			return changed, sig
		}, []string{"no valid v1 signature"}},
		{"body with a trailing newline added after signing", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			return append(ev.Body, '\n'), s.sign(ev.Body, testSecret, h.now)
		}, []string{"no valid v1 signature"}},
		{"timestamp 301 s old", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			return ev.Body, s.sign(ev.Body, testSecret, h.now.Add(-301*time.Second))
		}, []string{"timestamp outside tolerance"}},
		{"timestamp 301 s in the future", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			return ev.Body, s.sign(ev.Body, testSecret, h.now.Add(301*time.Second))
		}, []string{"timestamp outside tolerance"}},
		{"invalid JSON, validly signed", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
			body := ev.Body[:len(ev.Body)/2]
			return body, s.sign(body, testSecret, h.now)
		}, []string{"invalid JSON"}},
		{"JSON array, validly signed", func(h *harness, s signer) ([]byte, string) {
			body := []byte(`[{"id": "evt_1abc", "type": "checkout.session.completed"}]`)
			return body, s.sign(body, testSecret, h.now)
		}, []string{"not a JSON object"}},
		{"missing event id, validly signed", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb, deleteEventField("id"))
			return ev.Body, s.sign(ev.Body, testSecret, h.now)
		}, []string{"id"}},
		{"event id not evt_, validly signed", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb, setEventField("id", "1; DROP TABLE stripe_inbox"))
			return ev.Body, s.sign(ev.Body, testSecret, h.now)
		}, []string{"id"}},
		{"missing type, validly signed", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb, deleteEventField("type"))
			return ev.Body, s.sign(ev.Body, testSecret, h.now)
		}, []string{"type"}},
		{"amount of the wrong JSON type, validly signed", func(h *harness, s signer) ([]byte, string) {
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb, setField("amount_total", "36000"))
			return ev.Body, s.sign(ev.Body, testSecret, h.now)
		}, []string{"amount_total"}},
	}
	for _, tc := range cases {
		for _, s := range signers {
			t.Run(tc.name+"/"+s.name, func(t *testing.T) {
				h := h.with(t)
				body, sig := tc.request(h, s)
				before := h.counts()
				resp := h.postWebhook(body, sig)
				msg := resp.wantError(t, http.StatusBadRequest, tc.wantErr...)
				if sig != "" && strings.Contains(msg, sig) {
					t.Errorf("error %q echoes the signature header", msg)
				}
				if after := h.counts(); after != before {
					t.Errorf("rows changed: before %+v, after %+v", before, after)
				}
			})
		}
	}
	h.wantStatus(booking.ID, "pending", "unpaid")
	h.wantStream(booking.ID, evRequested)
}

// TestWebhookRejectsTwoSignatureHeaders: a request with two Stripe-Signature
// header lines is not something Stripe sends; it must not be processed.
func TestWebhookRejectsTwoSignatureHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	booking := h.createBooking(bookingRequest(newResource("two-headers")))
	ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(booking))
	hdr := webhookHeader(stripeGoSigner.sign(ev.Body, testSecret, h.now))
	hdr.Add("Stripe-Signature", hmacSigner.sign(ev.Body, testSecret, h.now))
	before := h.counts()
	h.do(http.MethodPost, webhookPath, hdr, ev.Body).wantError(t, http.StatusBadRequest, "more than one Stripe-Signature")
	if after := h.counts(); after != before {
		t.Errorf("rows changed: before %+v, after %+v", before, after)
	}
}

// TestWebhookAnswers covers the 200 and 404 rows of the answer table, with
// the exact body and the rows each answer writes.
func TestWebhookAnswers(t *testing.T) {
	t.Parallel()
	for _, s := range signers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)

			t.Run("handled event: success", func(t *testing.T) {
				h := h.with(t)
				b := h.createBooking(bookingRequest(newResource("answer")))
				ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b))
				before := h.counts()
				h.deliver(ev, s).wantBody(t, http.StatusOK, `{"status":"success"}`)
				if got, want := h.counts(), (counts{before.Events + 2, before.Inbox + 1, before.Deliveries, before.Bookings}); got != want {
					t.Errorf("rows %+v, want %+v", got, want)
				}
				if got := h.inboxOutcome(ev.ID); got != "processed" {
					t.Errorf("inbox outcome %q, want processed", got)
				}
				h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed)
				h.wantStatus(b.ID, "confirmed", "paid")
			})

			t.Run("handled event without trailing slash: success", func(t *testing.T) {
				h := h.with(t)
				b := h.createBooking(bookingRequest(newResource("answer")))
				ev := h.buildEvent(stripe.EventPaymentIntentSucceeded, testBooking(b))
				before := h.counts()
				h.do(http.MethodPost, "/webhooks/stripe", webhookHeader(s.sign(ev.Body, testSecret, h.now)), ev.Body).
					wantBody(t, http.StatusOK, `{"status":"success"}`)
				if got, want := h.counts(), (counts{before.Events + 2, before.Inbox + 1, before.Deliveries, before.Bookings}); got != want {
					t.Errorf("rows %+v, want %+v", got, want)
				}
				h.wantStatus(b.ID, "confirmed", "paid")
			})

			for _, offset := range []time.Duration{-300 * time.Second, 300 * time.Second} {
				t.Run("timestamp "+offset.String()+" from now: success", func(t *testing.T) {
					h := h.with(t)
					b := h.createBooking(bookingRequest(newResource("answer")))
					ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b))
					h.postWebhook(ev.Body, s.sign(ev.Body, testSecret, h.now.Add(offset))).
						wantBody(t, http.StatusOK, `{"status":"success"}`)
					h.wantStatus(b.ID, "confirmed", "paid")
				})
			}

			t.Run("unhandled type: ignored", func(t *testing.T) {
				h := h.with(t)
				b := h.createBooking(bookingRequest(newResource("answer")))
				for _, typ := range []string{"customer.created", "charge.succeeded", "payment_intent.created"} {
					ev := h.buildEvent(typ, testBooking(b))
					before := h.counts()
					h.deliver(ev, s).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
					if got, want := h.counts(), (counts{before.Events, before.Inbox + 1, before.Deliveries, before.Bookings}); got != want {
						t.Errorf("%s: rows %+v, want %+v", typ, got, want)
					}
					if got := h.inboxOutcome(ev.ID); got != "ignored" {
						t.Errorf("%s: inbox outcome %q, want ignored", typ, got)
					}
				}
				h.wantStream(b.ID, evRequested)
				h.wantStatus(b.ID, "pending", "unpaid")
			})

			t.Run("duplicate redelivery: ignored", func(t *testing.T) {
				h := h.with(t)
				b := h.createBooking(bookingRequest(newResource("answer")))
				ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b))
				h.deliver(ev, s).wantBody(t, http.StatusOK, `{"status":"success"}`)
				before := h.counts()
				h.deliver(ev, s).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
				if got, want := h.counts(), (counts{before.Events, before.Inbox, before.Deliveries + 1, before.Bookings}); got != want {
					t.Errorf("rows %+v, want %+v", got, want)
				}
				if got := h.deliveryOutcomes(ev.ID); len(got) != 1 || got[0] != "duplicate" {
					t.Errorf("deliveries of %s: %v, want [duplicate]", ev.ID, got)
				}
				if got := h.inboxOutcome(ev.ID); got != "processed" {
					t.Errorf("inbox outcome %q, want processed", got)
				}
				h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed)
			})

			t.Run("duplicate of an ignored type: ignored", func(t *testing.T) {
				h := h.with(t)
				b := h.createBooking(bookingRequest(newResource("answer")))
				ev := h.buildEvent("customer.created", testBooking(b))
				h.deliver(ev, s).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
				before := h.counts()
				h.deliver(ev, s).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
				if got, want := h.counts(), (counts{before.Events, before.Inbox, before.Deliveries + 1, before.Bookings}); got != want {
					t.Errorf("rows %+v, want %+v", got, want)
				}
			})

			t.Run("no booking matches: 404", func(t *testing.T) {
				h := h.with(t)
				tb := stripe.TestBooking{Amount: defaultAmount, Currency: defaultCurrency}
				ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
				before := h.counts()
				h.deliver(ev, s).wantBody(t, http.StatusNotFound, `{"error":"booking not found"}`)
				if got, want := h.counts(), (counts{before.Events, before.Inbox, before.Deliveries + 1, before.Bookings}); got != want {
					t.Errorf("rows %+v, want %+v", got, want)
				}
				if got := h.deliveryOutcomes(ev.ID); len(got) != 1 || got[0] != "unmatched" {
					t.Errorf("deliveries of %s: %v, want [unmatched]", ev.ID, got)
				}
				if got := h.inboxOutcome(ev.ID); got != "" {
					t.Errorf("inbox outcome %q, want no inbox row", got)
				}
			})

			t.Run("booking id that does not exist: 404", func(t *testing.T) {
				h := h.with(t)
				tb := stripe.TestBooking{ID: 987654321, Amount: defaultAmount, Currency: defaultCurrency}
				ev := h.buildEvent(stripe.EventPaymentIntentSucceeded, tb)
				before := h.counts()
				h.deliver(ev, s).wantBody(t, http.StatusNotFound, `{"error":"booking not found"}`)
				if got, want := h.counts(), (counts{before.Events, before.Inbox, before.Deliveries + 1, before.Bookings}); got != want {
					t.Errorf("rows %+v, want %+v", got, want)
				}
			})
		})
	}
}

// TestWebhookUnmatchedEventMatchedOnRetry: an event that finds no booking is
// kept as unmatched and answered 404, so Stripe retries; once the booking
// exists, the retry of the same event is processed.
func TestWebhookUnmatchedEventMatchedOnRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sessionID := stripe.NewSessionID()
	// No booking id anywhere: only the session id can match.
	ev := h.buildEvent(stripe.EventCheckoutSessionCompleted,
		stripe.TestBooking{SessionID: sessionID, Amount: defaultAmount, Currency: defaultCurrency})

	h.deliver(ev, stripeGoSigner).wantBody(t, http.StatusNotFound, `{"error":"booking not found"}`)
	if got := h.deliveryOutcomes(ev.ID); len(got) != 1 || got[0] != "unmatched" {
		t.Fatalf("deliveries %v, want [unmatched]", got)
	}
	if c := h.counts(); c.Events != 0 || c.Inbox != 0 || c.Bookings != 0 {
		t.Fatalf("rows after an unmatched event: %+v", c)
	}

	req := bookingRequest(newResource("late"))
	req["session_id"] = sessionID
	b := h.createBooking(req)

	// Stripe signs every retry afresh.
	h.deliver(ev, hmacSigner).wantBody(t, http.StatusOK, `{"status":"success"}`)
	h.wantStatus(b.ID, "confirmed", "paid")
	h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed)
	if got := h.inboxOutcome(ev.ID); got != "processed" {
		t.Errorf("inbox outcome %q, want processed", got)
	}
	if got := h.deliveryOutcomes(ev.ID); len(got) != 1 || got[0] != "unmatched" {
		t.Errorf("deliveries %v, want the one unmatched delivery", got)
	}
	// And a third delivery is a duplicate.
	h.deliver(ev, stripeGoSigner).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
	h.wantStream(b.ID, evRequested, evSucceeded, evConfirmed)
}

// TestWebhookDatabaseGone: an internal failure is a 500 with a fixed
// message; the details are logged, never sent. In memory the store is
// broken on purpose; on PostgreSQL the pool is closed.
func TestWebhookDatabaseGone(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, opts ...harnessOption) {
		h := newHarness(t, opts...)
		b := h.createBooking(bookingRequest(newResource("gone")))
		ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b))
		detail := h.store.breakDown(t)
		for _, s := range signers {
			resp := h.deliver(ev, s)
			resp.wantBody(t, http.StatusInternalServerError, `{"error":"internal error"}`)
			for _, leak := range []string{"sql", "database", "postgres", "closed", "broken", "apptest", ev.ID} {
				if bytes.Contains(bytes.ToLower(resp.Body), []byte(leak)) {
					t.Errorf("500 body %s reveals %q", resp.Body, leak)
				}
			}
		}
		if logs := h.logs.String(); !strings.Contains(logs, detail) {
			t.Errorf("the failure's details (%q) are not in the log:\n%s", detail, logs)
		}
	})
}

// TestWebhookMethodNotAllowed: only POST, on both spellings of the path.
func TestWebhookMethodNotAllowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sendsInvalidRequests("other methods than POST")
	b := h.createBooking(bookingRequest(newResource("method")))
	ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b))
	for _, path := range []string{"/webhooks/stripe/", "/webhooks/stripe"} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			t.Run(method+" "+path, func(t *testing.T) {
				h := h.with(t)
				before := h.counts()
				// A validly signed event, so only the method is wrong.
				resp := h.do(method, path, webhookHeader(stripeGoSigner.sign(ev.Body, testSecret, h.now)), ev.Body)
				resp.wantError(t, http.StatusMethodNotAllowed)
				if got := resp.Header.Get("Allow"); got != "POST" {
					t.Errorf("Allow %q, want POST", got)
				}
				if after := h.counts(); after != before {
					t.Errorf("rows changed: %+v → %+v", before, after)
				}
			})
		}
	}
	h.wantStatus(b.ID, "pending", "unpaid")
}

// TestWebhookBodyLimit: a body of exactly 1 MiB is read, one byte more is
// 413 with nothing written.
func TestWebhookBodyLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	padded := func(h *harness, b createdBooking, size int) event {
		ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b), setEventField("padding", ""))
		pad := size - len(ev.Body)
		if pad < 0 {
			h.t.Fatalf("event is already %d bytes", len(ev.Body))
		}
		ev.Body = bytes.Replace(ev.Body, []byte(`"padding": ""`), []byte(`"padding": "`+strings.Repeat("x", pad)+`"`), 1)
		if len(ev.Body) != size {
			h.t.Fatalf("padded event is %d bytes, want %d", len(ev.Body), size)
		}
		return ev
	}

	t.Run("1 MiB + 1 byte", func(t *testing.T) {
		h := h.with(t)
		b := h.createBooking(bookingRequest(newResource("large")))
		ev := padded(h, b, 1<<20+1)
		before := h.counts()
		h.deliver(ev, hmacSigner).wantBody(t, http.StatusRequestEntityTooLarge, `{"error":"request body too large"}`)
		if after := h.counts(); after != before {
			t.Errorf("rows changed: %+v → %+v", before, after)
		}
		h.wantStatus(b.ID, "pending", "unpaid")
	})
	t.Run("exactly 1 MiB", func(t *testing.T) {
		h := h.with(t)
		b := h.createBooking(bookingRequest(newResource("large")))
		ev := padded(h, b, 1<<20)
		h.deliver(ev, stripeGoSigner).wantBody(t, http.StatusOK, `{"status":"success"}`)
		h.wantStatus(b.ID, "confirmed", "paid")
	})
}

// TestWebhookSecretRotation: while a secret is rolled, events signed with
// either secret are accepted, and so is Stripe's header carrying one v1 per
// active secret.
func TestWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	const (
		oldSecret = "whsec_test_rotation_old_1111111111111111"
		newSecret = "whsec_test_rotation_new_2222222222222222"
	)
	h := newHarness(t, withSecrets(oldSecret, newSecret))
	ts := strconv.FormatInt(h.now.Unix(), 10)
	cases := []struct {
		name   string
		header func(body []byte) string
		ok     bool
	}{
		{"old secret, stripe-go", func(body []byte) string { return stripeGoSigner.sign(body, oldSecret, h.now) }, true},
		{"new secret, stripe-go", func(body []byte) string { return stripeGoSigner.sign(body, newSecret, h.now) }, true},
		{"old secret, hmac", func(body []byte) string { return hmacSigner.sign(body, oldSecret, h.now) }, true},
		{"new secret, hmac", func(body []byte) string { return hmacSigner.sign(body, newSecret, h.now) }, true},
		{"two v1: old and new", func(body []byte) string {
			return "t=" + ts + ",v1=" + hmacV1(body, oldSecret, h.now) + ",v1=" + hmacV1(body, newSecret, h.now)
		}, true},
		{"two v1: new and old, with a v0", func(body []byte) string {
			return stripeGoSigner.sign(body, newSecret, h.now) + ",v1=" + hmacV1(body, oldSecret, h.now) + ",v0=" + hmacV1(body, otherSecret, h.now)
		}, true},
		{"two v1: unknown secret and new", func(body []byte) string {
			return "t=" + ts + ",v1=" + hmacV1(body, otherSecret, h.now) + ",v1=" + hmacV1(body, newSecret, h.now)
		}, true},
		{"two v1: both unknown", func(body []byte) string {
			return "t=" + ts + ",v1=" + hmacV1(body, otherSecret, h.now) + ",v1=" + hmacV1(body, testSecret, h.now)
		}, false},
		{"old secret, other timestamp in the signed string", func(body []byte) string {
			return "t=" + ts + ",v1=" + hmacV1(body, oldSecret, h.now.Add(time.Second))
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			b := h.createBooking(bookingRequest(newResource("rotation")))
			ev := h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b))
			before := h.counts()
			resp := h.postWebhook(ev.Body, tc.header(ev.Body))
			if tc.ok {
				resp.wantBody(t, http.StatusOK, `{"status":"success"}`)
				h.wantStatus(b.ID, "confirmed", "paid")
				return
			}
			resp.wantError(t, http.StatusBadRequest, "no valid v1 signature")
			if after := h.counts(); after != before {
				t.Errorf("rows changed: %+v → %+v", before, after)
			}
			h.wantStatus(b.ID, "pending", "unpaid")
		})
	}
}
