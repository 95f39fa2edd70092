package http_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain"
)

// This file is a systematic table of malformed and hostile webhook
// requests. Each one is answered with an exact status and JSON body, and
// none of them writes anything: ledger_events, stripe_inbox,
// stripe_deliveries and bookings are compared, row for row, before and
// after. The only exception is the one the design asks for: an event whose
// booking_id is not ours, and which names no known session or
// PaymentIntent, is kept as one `unmatched` delivery (for Stripe's retry)
// and answered 404; even then nothing else changes.
//
// The harness is its own (hostile prefix); of the package's other test
// helpers it uses only the booking store (backend_test.go): in memory, so
// the table needs no database.

const (
	hostileSecret = "whsec_hostile_1f2e3d4c5b6a7980"
	hostileOther  = "whsec_hostile_other_0a9b8c7d6e5f"
)

// hostileNow is the verifier's clock: fixed, so that the answers that
// quote it are exact.
var hostileNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

type hostileHarness struct {
	t       *testing.T
	url     string
	store   backend
	booking hostileBooking
}

type hostileBooking struct {
	id                  int64
	sessionID, intentID string
}

func newHostileHarness(t *testing.T) *hostileHarness {
	t.Helper()
	store := newMemBackend(t)
	ledger := newService(t, store.bookings(), nil, nil)
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{hostileSecret}, Now: func() time.Time { return hostileNow }})
	if err != nil {
		t.Fatal(err)
	}
	handler, err := ledgerhttp.NewHandler(ledgerhttp.Config{Ledger: ledger, Verifier: verifier, APIToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)

	// A pending booking that every hostile event is about: a missing check
	// would show as a payment.
	b := hostileBooking{sessionID: "cs_test_hostile_session", intentID: "pi_test_hostile_intent"}
	row, err := ledger.CreateBooking(context.Background(), domain.NewBookingParams{
		ResourceID: "room-hostile", CheckIn: "2027-02-01", CheckOut: "2027-02-04",
		Amount: 36000, Currency: "eur", CustomerEmail: "guest@example.com", SessionID: b.sessionID,
	}, "api:hostile")
	if err != nil {
		t.Fatal(err)
	}
	b.id = row.ID
	return &hostileHarness{t: t, url: srv.URL, store: store, booking: b}
}

// hostileEvent is a complete checkout.session.completed (or another type)
// about the harness's booking, as Stripe would send it, with edits applied
// to its decoded JSON (numbers kept exact).
func (h *hostileHarness) event(typ string, edits ...func(ev, obj map[string]any)) []byte {
	h.t.Helper()
	body, err := stripe.BuildEvent(typ, stripe.TestBooking{
		ID: h.booking.id, SessionID: h.booking.sessionID, PaymentIntentID: h.booking.intentID,
		Amount: 36000, Currency: "eur",
	}, hostileNow)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(edits) == 0 {
		return body
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var ev map[string]any
	if err := dec.Decode(&ev); err != nil {
		h.t.Fatal(err)
	}
	obj := ev["data"].(map[string]any)["object"].(map[string]any)
	for _, edit := range edits {
		edit(ev, obj)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		h.t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func (h *hostileHarness) completed(edits ...func(ev, obj map[string]any)) []byte {
	return h.event(stripe.EventCheckoutSessionCompleted, edits...)
}

// Edits of the decoded event.
func hostileSet(key string, v any) func(ev, obj map[string]any) {
	return func(ev, _ map[string]any) { ev[key] = v }
}

func hostileSetObj(key string, v any) func(ev, obj map[string]any) {
	return func(_, obj map[string]any) { obj[key] = v }
}

func hostileDelete(key string) func(ev, obj map[string]any) {
	return func(ev, _ map[string]any) { delete(ev, key) }
}

// hostileUnknownBooking sets metadata.booking_id and client_reference_id
// to id and gives the object ids of no booking, so that only the hostile
// id could find one.
func hostileUnknownBooking(id any) func(ev, obj map[string]any) {
	return func(_, obj map[string]any) {
		obj["metadata"] = map[string]any{"booking_id": id}
		obj["client_reference_id"] = id
		obj["id"] = "cs_test_nobody"
		obj["payment_intent"] = "pi_test_nobody"
	}
}

// hostileSign is a valid Stripe-Signature for body at the harness's clock,
// plus ts seconds.
func hostileSign(body []byte, secret string, offset time.Duration) string {
	return stripe.Sign(body, secret, hostileNow.Add(offset))
}

func hostileT(ts int64) string { return strconv.FormatInt(ts, 10) }

// hostileRequest is what a case sends.
type hostileRequest struct {
	method string // default POST
	body   []byte
	header http.Header
}

func signed(body []byte) hostileRequest {
	return hostileRequest{body: body, header: http.Header{"Stripe-Signature": {hostileSign(body, hostileSecret, 0)}}}
}

func withSignature(body []byte, sig string) hostileRequest {
	return hostileRequest{body: body, header: http.Header{"Stripe-Signature": {sig}}}
}

// snapshot is the content of every table a webhook may write.
func (h *hostileHarness) snapshot() tableDigest {
	h.t.Helper()
	return h.store.digest(h.t)
}

func (h *hostileHarness) do(r hostileRequest) (int, http.Header, string) {
	h.t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, h.url+"/webhooks/stripe/", bytes.NewReader(r.body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, strings.TrimSuffix(string(b), "\n")
}

func hostileError(msg string) string {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return string(b)
}

// hostileNested is n levels of JSON arrays around a 0.
func hostileNested(n int) string { return strings.Repeat("[", n) + "0" + strings.Repeat("]", n) }

func TestWebhookHostileInput(t *testing.T) {
	t.Parallel()
	h := newHostileHarness(t)
	valid := h.completed()
	now := hostileNow.Unix()
	v1 := func(body []byte) string {
		_, sig, _ := strings.Cut(hostileSign(body, hostileSecret, 0), ",")
		return sig
	}
	const (
		badSig     = "stripe signature: no valid v1 signature"
		noV1       = "stripe signature: no valid v1 signature: header has no v1 signature"
		noEquals   = "stripe signature: malformed Stripe-Signature header: element without exactly one '='"
		tNotInt    = "stripe signature: malformed Stripe-Signature header: t is not an integer"
		noT        = "stripe signature: malformed Stripe-Signature header: no t"
		badCurr    = "data.object.currency: not a three-letter currency code"
		notFound   = `{"error":"booking not found"}`
		notAllowed = `{"error":"method not allowed; allowed: POST"}`
	)
	// The answer tells neither the server's clock nor the tolerance.
	tolerance := func(int64) string { return "stripe signature: timestamp outside tolerance" }
	huge := strings.Repeat("A", 900<<10)
	nested := bytes.Replace(h.completed(hostileSetObj("metadata", map[string]any{"booking_id": "NEST"})), []byte(`"NEST"`), []byte(hostileNested(20000)), 1)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(valid)
	zw.Close()

	cases := []struct {
		name    string
		req     hostileRequest
		status  int
		body    string // the exact answer, without the final newline
		unmatch bool   // the one write allowed: an unmatched delivery
	}{
		// ---- headers
		{"header missing", hostileRequest{body: valid}, 400, hostileError("stripe signature: no Stripe-Signature header"), false},
		{"header empty", withSignature(valid, ""), 400, hostileError("stripe signature: no Stripe-Signature header"), false},
		{"header duplicated, both valid", hostileRequest{body: valid, header: http.Header{"Stripe-Signature": {hostileSign(valid, hostileSecret, 0), hostileSign(valid, hostileSecret, 0)}}},
			400, hostileError("more than one Stripe-Signature header: invalid input"), false},
		{"header duplicated, one forged", hostileRequest{body: valid, header: http.Header{"Stripe-Signature": {"t=1,v1=00", hostileSign(valid, hostileSecret, 0)}}},
			400, hostileError("more than one Stripe-Signature header: invalid input"), false},
		{"header oversized: 64 KiB v1", withSignature(valid, "t="+hostileT(now)+",v1="+strings.Repeat("ab", 32<<10)), 400, hostileError(badSig), false},
		{"header oversized: 10000 v1 elements", withSignature(valid, "t="+hostileT(now)+strings.Repeat(",v1="+strings.Repeat("0", 64), 10000)), 400, hostileError(badSig), false},
		{"header over the server's 1 MiB limit", withSignature(valid, "t="+hostileT(now)+",v1="+strings.Repeat("a", 2<<20)), 431, "431 Request Header Fields Too Large", false},
		{"wrong scheme: only v0", withSignature(valid, "t="+hostileT(now)+",v0="+strings.TrimPrefix(v1(valid), "v1=")), 400, hostileError(noV1), false},
		{"wrong scheme: V1 in capitals", withSignature(valid, "t="+hostileT(now)+",V1="+strings.TrimPrefix(v1(valid), "v1=")), 400, hostileError(noV1), false},
		{"wrong scheme: v2", withSignature(valid, "t="+hostileT(now)+",v2="+strings.TrimPrefix(v1(valid), "v1=")), 400, hostileError(noV1), false},
		{"wrong scheme: Bearer token", withSignature(valid, "Bearer "+hostileSecret), 400, hostileError(noEquals), false},
		{"wrong scheme: HMAC in base64", withSignature(valid, "t="+hostileT(now)+",v1=q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"), 400, hostileError(badSig), false},
		{"non-hex v1", withSignature(valid, "t="+hostileT(now)+",v1="+strings.Repeat("zz", 32)), 400, hostileError(badSig), false},
		{"v1 cut short", withSignature(valid, "t="+hostileT(now)+","+v1(valid)[:40]), 400, hostileError(badSig), false},
		{"empty v1", withSignature(valid, "t="+hostileT(now)+",v1="), 400, hostileError(badSig), false},
		{"signed with another secret", withSignature(valid, hostileSign(valid, hostileOther, 0)), 400, hostileError(badSig), false},
		{"signature of another body", withSignature(valid, hostileSign(h.completed(), hostileSecret, 0)), 400, hostileError(badSig), false},
		{"trailing comma", withSignature(valid, hostileSign(valid, hostileSecret, 0)+","), 400, hostileError(noEquals), false},
		{"t missing", withSignature(valid, v1(valid)), 400, hostileError(noT), false},
		{"t twice", withSignature(valid, hostileSign(valid, hostileSecret, 0)+",t="+hostileT(now)), 400, hostileError("stripe signature: malformed Stripe-Signature header: more than one t"), false},
		{"t as RFC 3339", withSignature(valid, "t="+hostileNow.Format(time.RFC3339)+","+v1(valid)), 400, hostileError(tNotInt), false},
		{"t beyond int64", withSignature(valid, "t=9223372036854775808,"+v1(valid)), 400, hostileError(tNotInt), false},
		{"t with a space", withSignature(valid, "t= "+hostileT(now)+","+v1(valid)), 400, hostileError(tNotInt), false},
		{"timestamp far in the future (10 years)", withSignature(valid, hostileSign(valid, hostileSecret, 10*365*24*time.Hour)), 400, hostileError(tolerance(now + 10*365*24*3600)), false},
		{"timestamp 301 s in the future", withSignature(valid, hostileSign(valid, hostileSecret, 301*time.Second)), 400, hostileError(tolerance(now + 301)), false},
		{"timestamp far in the past (0)", withSignature(valid, "t=0,"+v1(valid)), 400, hostileError(tolerance(0)), false},
		{"timestamp 301 s in the past", withSignature(valid, hostileSign(valid, hostileSecret, -301*time.Second)), 400, hostileError(tolerance(now - 301)), false},
		{"timestamp negative", withSignature(valid, "t=-1,"+v1(valid)), 400, hostileError(tolerance(-1)), false},
		{"timestamp int64 max", withSignature(valid, "t=9223372036854775807,"+v1(valid)), 400, hostileError(tolerance(9223372036854775807)), false},

		// ---- methods and encodings
		{"GET", hostileRequest{method: http.MethodGet}, 405, notAllowed, false},
		{"PUT with a valid event", hostileRequest{method: http.MethodPut, body: valid, header: signed(valid).header}, 405, notAllowed, false},
		{"gzip body signed over the plain JSON", hostileRequest{body: gz.Bytes(), header: http.Header{"Content-Encoding": {"gzip"}, "Stripe-Signature": {hostileSign(valid, hostileSecret, 0)}}}, 400, hostileError(badSig), false},

		// ---- bodies (validly signed unless said otherwise)
		{"body empty", signed(nil), 400, hostileError("body: invalid JSON at byte 0: unexpected end of JSON input"), false},
		{"body truncated", signed(valid[:len(valid)/2]), 400, hostileError(fmt.Sprintf("body: invalid JSON at byte %d: unexpected end of JSON input", len(valid)/2)), false},
		{"body over 1 MiB", signed(h.completed(hostileSet("padding", strings.Repeat("x", 1<<20)))), 413, hostileError("request body too large"), false},
		{"body JSON null", signed([]byte("null")), 400, hostileError("id: missing"), false},
		{"body JSON array", signed([]byte(`[` + string(valid) + `]`)), 400, hostileError("body: not a JSON object"), false},
		{"body JSON string", signed([]byte(`"evt_1"`)), 400, hostileError("body: not a JSON object"), false},
		{"body two JSON objects", signed(append(append([]byte{}, valid...), valid...)), 400, hostileError(fmt.Sprintf("body: invalid JSON at byte %d: invalid character '{' after top-level value", len(valid)+1)), false},
		{"body with a byte-order mark", signed(append([]byte("\xef\xbb\xbf"), valid...)), 400, hostileError("body: invalid JSON at byte 1: invalid character 'ï' looking for beginning of value"), false},
		{"deeply nested JSON in an unread field", signed(append([]byte(`{"request":`+hostileNested(20000)+`,`), valid[1:]...)), 400,
			hostileError("body: invalid JSON at byte 10011: invalid character '[' exceeded max depth"), false},
		{"deeply nested JSON in metadata", signed(nested), 400,
			// encoding/json allows 10000 levels; the event, data, object and
			// metadata are four, so the 9997th bracket is one too many.
			hostileError(fmt.Sprintf("body: invalid JSON at byte %d: invalid character '[' exceeded max depth", bytes.Index(nested, []byte(`"booking_id":[`))+len(`"booking_id":`)+9997)), false},
		{"huge string as event id", signed(h.completed(hostileSet("id", "evt_"+huge))), 400, hostileError("id: longer than 255 bytes"), false},
		{"huge string as currency", signed(h.completed(hostileSetObj("currency", huge))), 400, hostileError(badCurr), false},
		{"huge string as object kind", signed(h.completed(hostileSetObj("object", huge[:300]))), 400, hostileError(`data.object.object: is "` + huge[:300] + `", want "checkout.session"`), false},

		// ---- every field the decision reads, with the wrong JSON type
		{"id: number", signed(h.completed(hostileSet("id", 42))), 400, hostileError("id: wrong type (number)"), false},
		{"type: number", signed(h.completed(hostileSet("type", 42))), 400, hostileError("type: wrong type (number)"), false},
		{"type: missing", signed(h.completed(hostileDelete("type"))), 400, hostileError("type: missing"), false},
		{"created: string", signed(h.completed(hostileSet("created", "yesterday"))), 400, hostileError("created: wrong type (string)"), false},
		{"created: negative", signed(h.completed(hostileSet("created", -1))), 400, hostileError("created: out of range"), false},
		{"created: beyond year 9999", signed(h.completed(hostileSet("created", int64(253402300800)))), 400, hostileError("created: out of range"), false},
		{"livemode: string", signed(h.completed(hostileSet("livemode", "false"))), 400, hostileError("livemode: wrong type (string)"), false},
		{"api_version: number", signed(h.completed(hostileSet("api_version", 2023))), 400, hostileError("api_version: wrong type (number)"), false},
		{"data: string", signed(h.completed(hostileSet("data", "object"))), 400, hostileError("data: wrong type (string)"), false},
		{"data.object: array", signed(h.completed(hostileSet("data", map[string]any{"object": []any{}}))), 400, hostileError("data.object: wrong type (array)"), false},
		{"data.object: missing", signed(h.completed(hostileSet("data", map[string]any{}))), 400, hostileError("data.object: missing"), false},
		{"data.object.object: number", signed(h.completed(hostileSetObj("object", 1))), 400, hostileError("data.object.object: wrong type (number)"), false},
		{"data.object.object: another kind", signed(h.event(stripe.EventPaymentIntentSucceeded, hostileSetObj("object", "checkout.session"))), 400, hostileError(`data.object.object: is "checkout.session", want "payment_intent"`), false},
		{"data.object.id: number", signed(h.completed(hostileSetObj("id", 7))), 400, hostileError("data.object.id: wrong type (number)"), false},
		{"client_reference_id: number", signed(h.completed(hostileSetObj("client_reference_id", 1))), 400, hostileError("data.object.client_reference_id: wrong type (number)"), false},
		{"metadata: array", signed(h.completed(hostileSetObj("metadata", []any{"booking_id"}))), 400, hostileError("data.object.metadata: wrong type (array)"), false},
		{"metadata.booking_id: number", signed(h.completed(hostileSetObj("metadata", map[string]any{"booking_id": 1}))), 400, hostileError("data.object.metadata: wrong type (number)"), false},
		{"payment_intent: number", signed(h.completed(hostileSetObj("payment_intent", 5))), 400, hostileError("data.object.payment_intent: wrong type: want an id, null or an object with an id"), false},
		{"payment_intent: object without id", signed(h.completed(hostileSetObj("payment_intent", map[string]any{"object": "payment_intent"}))), 400, hostileError("data.object.payment_intent: wrong type: want an id, null or an object with an id"), false},
		{"amount_total: string", signed(h.completed(hostileSetObj("amount_total", "36000"))), 400, hostileError("data.object.amount_total: wrong type (string)"), false},
		{"amount_total: fraction", signed(h.completed(hostileSetObj("amount_total", json.Number("360.5")))), 400, hostileError("data.object.amount_total: wrong type (number 360.5)"), false},
		{"amount (payment_intent): string", signed(h.event(stripe.EventPaymentIntentSucceeded, hostileSetObj("amount", "36000"))), 400, hostileError("data.object.amount: wrong type (string)"), false},
		{"currency: number", signed(h.completed(hostileSetObj("currency", 978))), 400, hostileError("data.object.currency: wrong type (number)"), false},
		{"payment_status: boolean", signed(h.completed(hostileSetObj("payment_status", true))), 400, hostileError("data.object.payment_status: wrong type (bool)"), false},
		{"status: number", signed(h.completed(hostileSetObj("status", 1))), 400, hostileError("data.object.status: wrong type (number)"), false},
		{"last_payment_error: string", signed(h.event(stripe.EventPaymentIntentPaymentFailed, hostileSetObj("last_payment_error", "declined"))), 400, hostileError("data.object.last_payment_error: wrong type (string)"), false},
		{"last_payment_error.code: number", signed(h.event(stripe.EventPaymentIntentPaymentFailed, hostileSetObj("last_payment_error", map[string]any{"code": 402}))), 400, hostileError("data.object.last_payment_error.code: wrong type (number)"), false},

		// ---- amounts
		{"amount_total negative", signed(h.completed(hostileSetObj("amount_total", -36000))), 400, hostileError("data.object.amount_total: negative"), false},
		{"amount_total int64 min", signed(h.completed(hostileSetObj("amount_total", json.Number("-9223372036854775808")))), 400, hostileError("data.object.amount_total: negative"), false},
		{"amount_total overflowing int64", signed(h.completed(hostileSetObj("amount_total", json.Number("9223372036854775808")))), 400, hostileError("data.object.amount_total: wrong type (number 9223372036854775808)"), false},
		{"amount_total 1e309", signed(h.completed(hostileSetObj("amount_total", json.Number("1e309")))), 400, hostileError("data.object.amount_total: wrong type (number 1e309)"), false},
		{"amount (payment_intent) negative", signed(h.event(stripe.EventPaymentIntentSucceeded, hostileSetObj("amount", -1))), 400, hostileError("data.object.amount: negative"), false},

		// ---- currencies
		{"currency missing", signed(h.completed(hostileSetObj("currency", nil))), 400, hostileError("data.object.currency: missing"), false},
		{"currency two letters", signed(h.completed(hostileSetObj("currency", "eu"))), 400, hostileError(badCurr), false},
		{"currency four letters", signed(h.completed(hostileSetObj("currency", "euro"))), 400, hostileError(badCurr), false},
		{"currency with a digit", signed(h.completed(hostileSetObj("currency", "e1r"))), 400, hostileError(badCurr), false},
		{"currency symbol", signed(h.completed(hostileSetObj("currency", "€"))), 400, hostileError(badCurr), false},

		// ---- SQL and HTML in strings
		{"SQL in the event id", signed(h.completed(hostileSet("id", "evt_1'; DROP TABLE stripe_inbox; --"))), 400, hostileError("id: may only hold letters, digits and underscores"), false},
		{"SQL in the currency", signed(h.completed(hostileSetObj("currency", "'; DROP TABLE bookings; --"))), 400, hostileError(badCurr), false},
		{"HTML in the currency", signed(h.completed(hostileSetObj("currency", "<b>"))), 400, hostileError(badCurr), false},
		{"HTML in the object kind", signed(h.completed(hostileSetObj("object", "<script>alert(1)</script>"))), 400,
			`{"error":"data.object.object: is \"\u003cscript\u003ealert(1)\u003c/script\u003e\", want \"checkout.session\""}`, false},
		{"NUL in the event id", signed(h.completed(hostileSet("id", "evt_1\x00"))), 400, hostileError("id: may only hold letters, digits and underscores"), false},

		// ---- booking ids that are not ours: no booking is found by them
		{"booking_id not a number", signed(h.completed(hostileUnknownBooking("abc"))), 404, notFound, true},
		{"booking_id negative", signed(h.completed(hostileUnknownBooking("-1"))), 404, notFound, true},
		{"booking_id zero", signed(h.completed(hostileUnknownBooking("0"))), 404, notFound, true},
		{"booking_id with a plus sign", signed(h.completed(hostileUnknownBooking("+" + strconv.FormatInt(h.booking.id, 10)))), 404, notFound, true},
		{"booking_id with a leading zero", signed(h.completed(hostileUnknownBooking("0" + strconv.FormatInt(h.booking.id, 10)))), 404, notFound, true},
		{"booking_id in exponent form", signed(h.completed(hostileUnknownBooking("1e0"))), 404, notFound, true},
		{"booking_id overflowing int64", signed(h.completed(hostileUnknownBooking("9223372036854775808"))), 404, notFound, true},
		{"booking_id with SQL", signed(h.completed(hostileUnknownBooking(strconv.FormatInt(h.booking.id, 10) + " OR 1=1"))), 404, notFound, true},
		{"booking_id with HTML", signed(h.completed(hostileUnknownBooking("<img src=x onerror=alert(1)>"))), 404, notFound, true},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := *h
			h.t = t
			before := h.snapshot()
			status, header, body := h.do(tc.req)
			if status != tc.status || body != tc.body {
				t.Errorf("answer %d %s\nwant   %d %s", status, hostileCut(body), tc.status, hostileCut(tc.body))
			}
			if status < 500 && tc.status != 431 {
				if ct := header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				if sig := tc.req.header.Get("Stripe-Signature"); len(sig) > 8 && strings.Contains(body, sig) {
					t.Errorf("the answer echoes the signature header")
				}
			}
			after := h.snapshot()
			if tc.unmatch {
				// The design keeps the raw event as unmatched, so that
				// Stripe's retry is matched again; nothing else changes.
				all := h.store.deliveries(t, "")
				if len(all) == 0 {
					t.Fatal("no delivery row")
				}
				last := all[len(all)-1]
				if after.NDeliveries != before.NDeliveries+1 || last.Outcome != "unmatched" || last.BookingID != 0 {
					t.Errorf("want one unmatched delivery without booking; deliveries %d -> %d, last %s %d", before.NDeliveries, after.NDeliveries, last.Outcome, last.BookingID)
				}
				after.Deliveries, before.Deliveries = "", ""
				after.NDeliveries = before.NDeliveries
			}
			if after != before {
				t.Errorf("tables changed:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	// The booking every event was about is still pending and unpaid.
	status, paymentStatus, _ := h.store.status(t, h.booking.id)
	if status != "pending" || paymentStatus != "unpaid" {
		t.Errorf("booking %d is %s/%s after the hostile requests", h.booking.id, status, paymentStatus)
	}
}

func hostileCut(s string) string {
	if len(s) > 300 {
		return s[:300] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}
