package http_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// fuzzNow is the verifier's clock during fuzzing: fixed, so that seed
// headers signed at it stay valid in every run and in the stored corpus.
var fuzzNow = time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)

// FuzzWebhook posts fuzzed bodies and Stripe-Signature headers to the
// webhook handler (called directly, against one in-memory store per
// fuzzing process). When sign is true the body is signed validly, so that the event
// parser and the ingestion are fuzzed too. Properties:
//
//   - no panic and never a 5xx;
//   - a signature that does not verify gets 400 (413 for an oversized
//     body) and writes nothing;
//   - every answer is one of the answer table's: 200 success/ignored with
//     the inbox or a delivery row written, 404 with an unmatched delivery
//     row, 400/413 with nothing written.
func FuzzWebhook(f *testing.F) {
	h := newHarness(f, withoutServer(), withClock(fuzzNow), withoutLogs())
	h.sendsInvalidRequests("fuzzed webhook bodies and headers")
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{testSecret}, Now: func() time.Time { return fuzzNow }})
	if err != nil {
		f.Fatal(err)
	}

	// Bookings for the seed events to match: two overlapping on one
	// resource (so conflicts are reachable), one on another.
	var tbs []stripe.TestBooking
	for i, stay := range []stay{{defaultCheckIn, defaultCheckOut}, {"2027-01-12", "2027-01-14"}, {defaultCheckIn, defaultCheckOut}} {
		resource := "fuzz-room-a"
		if i == 2 {
			resource = "fuzz-room-b"
		}
		req := bookingRequest(resource)
		req["check_in"], req["check_out"] = stay.checkIn, stay.checkOut
		req["session_id"] = "cs_test_fuzz" + strconv.Itoa(i)
		b := h.createBooking(req)
		tb := testBooking(b)
		tb.PaymentIntentID = "pi_fuzz" + strconv.Itoa(i)
		tbs = append(tbs, tb)
	}

	sign := func(body []byte) string { return stripeGoSigner.sign(body, testSecret, fuzzNow) }
	types := []string{
		stripe.EventCheckoutSessionCompleted, stripe.EventCheckoutSessionAsyncPaymentSucceeded,
		stripe.EventCheckoutSessionAsyncPaymentFailed, stripe.EventCheckoutSessionExpired,
		stripe.EventPaymentIntentSucceeded, stripe.EventPaymentIntentPaymentFailed,
		"customer.created", "charge.refunded",
	}
	for i, typ := range types {
		body, err := stripe.BuildEvent(typ, tbs[i%len(tbs)], fuzzNow)
		if err != nil {
			f.Fatal(err)
		}
		// Compact bodies keep the fuzzer's mutations meaningful.
		var compact bytes.Buffer
		if err := json.Compact(&compact, body); err != nil {
			f.Fatal(err)
		}
		for _, b := range [][]byte{body, compact.Bytes()} {
			f.Add(b, sign(b), false)
			f.Add(b, "", true)
			f.Add(b[:len(b)/2], sign(b[:len(b)/2]), false)
			f.Add(b[:len(b)/3], "", true)
			f.Add(b, sign(b[:len(b)-1]), false)
		}
	}
	for _, td := range testdataEvents {
		body, err := os.ReadFile(filepath.Join("testdata", td.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body, "", true)
	}
	// Minimal events the mutator can grow from.
	for _, body := range []string{
		`{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"object":"checkout.session","id":"cs_test_fuzz0","amount_total":36000,"currency":"eur","payment_status":"paid","metadata":{"booking_id":"1"}}}}`,
		`{"id":"evt_2","type":"payment_intent.succeeded","data":{"object":{"object":"payment_intent","id":"pi_fuzz1","amount":36000,"currency":"eur"}}}`,
		`{"id":"evt_3","type":"payment_intent.payment_failed","data":{"object":{"object":"payment_intent","id":"pi_x","amount":1,"currency":"eur","metadata":{"booking_id":"3"},"last_payment_error":{"code":"card_declined"}}}}`,
		`{"id":"evt_4","type":"checkout.session.expired","data":{"object":{"object":"checkout.session","id":"cs_test_fuzz2","amount_total":0,"currency":"eur","client_reference_id":"3","payment_intent":null}}}`,
		`{"id":"evt_5","type":"x"}`,
		// Control characters one mutation away from U+0000, in the fields
		// that end up in text columns.
		`{"id":"evt_6","type":"customer.created\u0001","api_version":"2023-10-16\u0001","data":{"object":{"object":"customer","id":"cus_\u0001"}}}`,
		`{"id":"evt_7","type":"payment_intent.payment_failed","data":{"object":{"object":"payment_intent","id":"pi_fuzz2","amount":36000,"currency":"eur","last_payment_error":{"code":"x\u0001","message":"\u0001"}}}}`,
		`{}`, `[]`, `null`, `"evt_1"`, ``,
	} {
		f.Add([]byte(body), "", true)
		f.Add([]byte(body), sign([]byte(body)), false)
	}
	// Bad headers on a valid body.
	valid, err := stripe.BuildEvent(stripe.EventCheckoutSessionCompleted, tbs[0], fuzzNow)
	if err != nil {
		f.Fatal(err)
	}
	ts := strconv.FormatInt(fuzzNow.Unix(), 10)
	good := sign(valid)
	for _, header := range []string{
		"", "garbage", "t=", "t=" + ts, "t=" + ts + ",v1=", "v1=" + hmacV1(valid, testSecret, fuzzNow),
		"t=abc,v1=00", "t=" + ts + ",v0=" + hmacV1(valid, testSecret, fuzzNow),
		"t=" + ts + ",t=" + ts + ",v1=" + hmacV1(valid, testSecret, fuzzNow),
		"t=" + strconv.FormatInt(fuzzNow.Unix()-301, 10) + ",v1=" + hmacV1(valid, testSecret, fuzzNow.Add(-301*time.Second)),
		"t=" + strconv.FormatInt(fuzzNow.Unix()+301, 10) + ",v1=" + hmacV1(valid, testSecret, fuzzNow.Add(301*time.Second)),
		"t=" + ts + ",v1=" + hmacV1(valid, otherSecret, fuzzNow),
		good + ",v1=" + hmacV1(valid, otherSecret, fuzzNow),
		good + ",v0=abc,x=y",
		good + ",x=\x01",
		good + ",x=\xc3\xa9",
		good + ",,",
		" " + good,
		"t=99999999999999999999,v1=00",
		"t=-1,v1=00",
	} {
		f.Add(valid, header, false)
	}

	f.Fuzz(func(t *testing.T, body []byte, header string, signIt bool) {
		h := h.with(t)
		if signIt {
			s := signers[len(body)%len(signers)]
			header = s.sign(body, testSecret, fuzzNow)
		}
		verified := verifier.Verify(body, header) == nil
		before := h.counts()
		hdr := http.Header{"Content-Type": {"application/json"}}
		if header != "" {
			hdr["Stripe-Signature"] = []string{header}
		}
		resp := h.do(http.MethodPost, webhookPath, hdr, body)
		after := h.counts()

		if resp.Status >= 500 {
			t.Fatalf("answer %s (verified %v, header %q)", resp, verified, header)
		}
		var answer map[string]any
		if err := json.Unmarshal(resp.Body, &answer); err != nil || len(answer) != 1 {
			t.Fatalf("answer %d %q is not a one-field JSON object", resp.Status, resp.Body)
		}
		got := string(bytes.TrimSpace(resp.Body))
		unchanged := after == before
		switch {
		case resp.Status == http.StatusRequestEntityTooLarge:
			if len(body) <= 1<<20 || !unchanged {
				t.Fatalf("413 for %d bytes, rows %+v → %+v", len(body), before, after)
			}
		case !verified:
			if resp.Status != http.StatusBadRequest || !unchanged {
				t.Fatalf("unverified request: answer %s, rows %+v → %+v (header %q)", resp, before, after, header)
			}
		case resp.Status == http.StatusBadRequest:
			if _, ok := answer["error"].(string); !ok || !unchanged {
				t.Fatalf("400 %s wrote rows %+v → %+v", got, before, after)
			}
		case resp.Status == http.StatusNotFound:
			want := before
			want.Deliveries++
			if got != `{"error":"booking not found"}` || after != want {
				t.Fatalf("404 %s, rows %+v → %+v", got, before, after)
			}
		case resp.Status == http.StatusOK:
			wrote := after.Inbox == before.Inbox+1 && after.Deliveries == before.Deliveries ||
				after.Inbox == before.Inbox && after.Deliveries == before.Deliveries+1
			if got != `{"status":"success"}` && got != `{"status":"ignored"}` || !wrote || after.Bookings != before.Bookings {
				t.Fatalf("200 %s, rows %+v → %+v", got, before, after)
			}
			if got == `{"status":"ignored"}` && after.Events != before.Events {
				t.Fatalf("ignored, but events were appended: %+v → %+v", before, after)
			}
		default:
			t.Fatalf("unexpected answer %s", resp)
		}
	})
}
