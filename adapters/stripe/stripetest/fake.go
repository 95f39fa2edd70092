// Package stripetest gives tests a Stripe API to talk to: Server, a stateful
// fake that answers the few endpoints the ledger uses in Stripe's JSON (its
// objects start from Stripe's own fixtures), with Stripe's idempotency-key
// semantics and injectable failures; and MockURL, a running stripe-mock,
// which checks every request against Stripe's OpenAPI specification but
// keeps no state.
package stripetest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// Request is one request the fake received.
type Request struct {
	Method, Path string
	// Form holds the query (GET) or the form body (POST).
	Form           url.Values
	IdempotencyKey string
	// Replayed is true when the answer was a replay of a saved one.
	Replayed bool
	// Status is the status answered.
	Status int
}

// Fault makes the fake fail a request instead of (or after) handling it.
type Fault struct {
	// Method and Path select the requests ("POST", "/v1/refunds"); the
	// first matching request consumes the fault.
	Method, Path string
	// Status and Body are the answer (Body defaults to a Stripe api_error).
	Status int
	Body   string
	// AfterExecution handles the request first (e.g. creates the refund)
	// and then answers Status, and saves that answer under the request's
	// idempotency key, as Stripe does once an endpoint started executing.
	// Otherwise nothing happens and nothing is saved, as for a failure in
	// front of the API.
	AfterExecution bool
}

type savedAnswer struct {
	fingerprint string
	status      int
	body        []byte
}

type payment struct {
	amount   int64
	currency string
	refunded int64
}

type storedEvent struct {
	id      string
	typ     string
	created int64
	raw     []byte
}

// Server is the fake. Its zero value is not usable: call NewServer.
type Server struct {
	// URL is the API base to give stripe.ClientConfig.BaseURL.
	URL string

	t   testing.TB
	srv *httptest.Server

	mu         sync.Mutex
	now        time.Time
	sessions   map[string]map[string]any
	piMetadata map[string]map[string]any // session id -> payment_intent_data.metadata
	payments   map[string]*payment       // PaymentIntent id -> money received
	refunds    []map[string]any
	rejects    map[string]stripeError // PaymentIntent id -> refusal of refunds
	events     []storedEvent          // oldest first
	saved      map[string]savedAnswer
	faults     []Fault
	requests   []Request
}

type stripeError struct {
	status  int
	typ     string
	code    string
	message string
}

// NewServer starts a fake on 127.0.0.1, closed when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:          t,
		now:        time.Now().UTC().Truncate(time.Second),
		sessions:   map[string]map[string]any{},
		piMetadata: map[string]map[string]any{},
		payments:   map[string]*payment{},
		rejects:    map[string]stripeError{},
		saved:      map[string]savedAnswer{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// AddFault queues a failure.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	s.faults = append(s.faults, f)
}

// PaySession makes session id complete and paid, as when the customer pays:
// it gets a new PaymentIntent carrying the session's
// payment_intent_data.metadata, whose money refunds can then give back. It
// returns the PaymentIntent id.
func (s *Server) PaySession(id string) string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		s.t.Fatalf("stripetest: PaySession: no session %s", id)
	}
	pi := "pi_3" + randomID(23)
	sess["status"] = "complete"
	sess["payment_status"] = "paid"
	sess["payment_intent"] = pi
	sess["url"] = nil
	s.payments[pi] = &payment{amount: toInt64(sess["amount_total"]), currency: sess["currency"].(string)}
	return pi
}

// AddPayment records money received on PaymentIntent pi, so that it can be
// refunded.
func (s *Server) AddPayment(pi string, amount int64, currency string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.payments[pi] = &payment{amount: amount, currency: strings.ToLower(currency)}
}

// RejectRefunds makes every refund of pi fail with a 400
// invalid_request_error with the given code and message.
func (s *Server) RejectRefunds(pi, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejects[pi] = stripeError{http.StatusBadRequest, "invalid_request_error", code, message}
}

// AddEvent makes the Events API list raw (a complete event, e.g. from
// stripe.BuildEvent), byte for byte.
func (s *Server) AddEvent(raw []byte) {
	s.t.Helper()
	var e struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Created int64  `json:"created"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.ID == "" {
		s.t.Fatalf("stripetest: AddEvent: not an event: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, storedEvent{e.ID, e.Type, e.Created, slices.Clone(raw)})
}

// Session returns a copy of session id's JSON object, nil if unknown.
func (s *Server) Session(id string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.sessions[id]; ok {
		return clone(sess)
	}
	return nil
}

// Refunds returns copies of every refund created, oldest first.
func (s *Server) Refunds() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, len(s.refunds))
	for i, r := range s.refunds {
		out[i] = clone(r)
	}
	return out
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count returns how many requests with method and path were received.
func (s *Server) Count(method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, stripeError{400, "invalid_request_error", "parameter_invalid", "cannot parse the request: " + err.Error()})
		return
	}
	form := r.Form
	if r.Method == http.MethodPost {
		form = r.PostForm
	}
	key := r.Header.Get("Idempotency-Key")
	rec := Request{Method: r.Method, Path: r.URL.Path, Form: form, IdempotencyKey: key}

	s.mu.Lock()
	defer s.mu.Unlock()
	status, body, replayed := s.answer(r, form, key)
	rec.Status, rec.Replayed = status, replayed
	s.requests = append(s.requests, rec)

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_"+randomID(14))
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(status)
	w.Write(body)
}

// answer runs under s.mu.
func (s *Server) answer(r *http.Request, form url.Values, key string) (int, []byte, bool) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer sk_") {
		return errorBody(stripeError{401, "invalid_request_error", "", "Invalid API Key provided"})
	}
	fingerprint := r.Method + " " + r.URL.Path + "?" + form.Encode()
	if r.Method == http.MethodPost && key != "" {
		if a, ok := s.saved[key]; ok {
			if a.fingerprint != fingerprint {
				return errorBody(stripeError{400, "idempotency_error", "",
					"Keys for idempotent requests can only be used with the same parameters they were first used with."})
			}
			return a.status, a.body, true
		}
	}
	var fault *Fault
	for i, f := range s.faults {
		if f.Method == r.Method && f.Path == r.URL.Path {
			fault = &f
			s.faults = slices.Delete(s.faults, i, i+1)
			break
		}
	}
	if fault != nil && !fault.AfterExecution {
		return fault.Status, faultBody(*fault), false
	}
	status, body := s.route(r.Method, r.URL.Path, form)
	if fault != nil {
		status, body = fault.Status, faultBody(*fault)
	}
	if r.Method == http.MethodPost && key != "" {
		s.saved[key] = savedAnswer{fingerprint, status, body}
	}
	return status, body, false
}

func (s *Server) route(method, path string, form url.Values) (int, []byte) {
	switch {
	case method == http.MethodPost && path == "/v1/checkout/sessions":
		return s.createSession(form)
	case method == http.MethodGet && strings.HasPrefix(path, "/v1/checkout/sessions/"):
		id := strings.TrimPrefix(path, "/v1/checkout/sessions/")
		sess, ok := s.sessions[id]
		if !ok {
			return statusBody(errorBody(stripeError{404, "invalid_request_error", "resource_missing", "No such checkout.session: '" + id + "'"}))
		}
		return http.StatusOK, encode(sess)
	case method == http.MethodPost && path == "/v1/refunds":
		return s.createRefund(form)
	case method == http.MethodGet && path == "/v1/refunds":
		pi := form.Get("payment_intent")
		var data []json.RawMessage
		for i := len(s.refunds) - 1; i >= 0; i-- {
			if pi == "" || s.refunds[i]["payment_intent"] == pi {
				data = append(data, encode(s.refunds[i]))
			}
		}
		return http.StatusOK, listBody("/v1/refunds", data, false)
	case method == http.MethodGet && path == "/v1/events":
		return s.listEvents(form)
	}
	return statusBody(errorBody(stripeError{404, "invalid_request_error", "", "Unrecognized request URL (" + method + ": " + path + ")"}))
}

func (s *Server) createSession(form url.Values) (int, []byte) {
	if form.Get("mode") != "payment" {
		return statusBody(errorBody(stripeError{400, "invalid_request_error", "parameter_missing", "Missing required param: mode."}))
	}
	for _, p := range []string{"success_url", "line_items[0][price_data][currency]", "line_items[0][price_data][unit_amount]",
		"line_items[0][price_data][product_data][name]", "line_items[0][quantity]"} {
		if form.Get(p) == "" {
			return statusBody(errorBody(stripeError{400, "invalid_request_error", "parameter_missing", "Missing required param: " + p + "."}))
		}
	}
	amount, err1 := strconv.ParseInt(form.Get("line_items[0][price_data][unit_amount]"), 10, 64)
	qty, err2 := strconv.ParseInt(form.Get("line_items[0][quantity]"), 10, 64)
	if err1 != nil || err2 != nil || amount < 0 || qty < 1 {
		return statusBody(errorBody(stripeError{400, "invalid_request_error", "parameter_invalid_integer", "Invalid integer."}))
	}
	expires := s.now.Add(24 * time.Hour).Unix()
	if v := form.Get("expires_at"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < s.now.Add(30*time.Minute).Unix() || n > s.now.Add(24*time.Hour).Unix() {
			return statusBody(errorBody(stripeError{400, "invalid_request_error", "parameter_invalid_integer",
				"The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation."}))
		}
		expires = n
	}
	sess, err := stripe.Fixture(stripe.ObjectCheckoutSession)
	if err != nil {
		return statusBody(errorBody(stripeError{500, "api_error", "", err.Error()}))
	}
	id := "cs_test_" + randomID(58)
	sess["id"] = id
	sess["object"] = "checkout.session"
	sess["mode"] = "payment"
	sess["status"] = "open"
	sess["payment_status"] = "unpaid"
	sess["payment_intent"] = nil
	sess["amount_subtotal"] = amount * qty
	sess["amount_total"] = amount * qty
	sess["currency"] = form.Get("line_items[0][price_data][currency]")
	sess["created"] = s.now.Unix()
	sess["expires_at"] = expires
	sess["livemode"] = false
	sess["url"] = "https://checkout.stripe.com/c/pay/" + id
	sess["success_url"] = form.Get("success_url")
	sess["cancel_url"] = nullable(form.Get("cancel_url"))
	sess["client_reference_id"] = nullable(form.Get("client_reference_id"))
	sess["customer_email"] = nullable(form.Get("customer_email"))
	sess["metadata"] = subMap(form, "metadata")
	s.sessions[id] = sess
	s.piMetadata[id] = subMap(form, "payment_intent_data[metadata]")
	return http.StatusOK, encode(sess)
}

func (s *Server) createRefund(form url.Values) (int, []byte) {
	pi := form.Get("payment_intent")
	if pi == "" {
		return statusBody(errorBody(stripeError{400, "invalid_request_error", "parameter_missing", "Missing required param: payment_intent."}))
	}
	if e, ok := s.rejects[pi]; ok {
		return statusBody(errorBody(e))
	}
	p, ok := s.payments[pi]
	if !ok {
		return statusBody(errorBody(stripeError{400, "invalid_request_error", "resource_missing", "No such payment_intent: '" + pi + "'"}))
	}
	amount := p.amount - p.refunded
	if v := form.Get("amount"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return statusBody(errorBody(stripeError{400, "invalid_request_error", "parameter_invalid_integer", "Invalid positive integer."}))
		}
		amount = n
	}
	if p.refunded >= p.amount {
		return statusBody(errorBody(stripeError{400, "invalid_request_error", "charge_already_refunded",
			"Charge for PaymentIntent " + pi + " has already been refunded."}))
	}
	if p.refunded+amount > p.amount {
		return statusBody(errorBody(stripeError{400, "invalid_request_error", "amount_too_large",
			"Refund amount is greater than the unrefunded amount on the charge."}))
	}
	re, err := stripe.Fixture("refund")
	if err != nil {
		return statusBody(errorBody(stripeError{500, "api_error", "", err.Error()}))
	}
	p.refunded += amount
	re["id"] = "re_3" + randomID(23)
	re["amount"] = amount
	re["currency"] = p.currency
	re["payment_intent"] = pi
	re["charge"] = "ch_3" + randomID(23)
	re["created"] = s.now.Unix()
	re["status"] = "succeeded"
	re["reason"] = nullable(form.Get("reason"))
	re["metadata"] = subMap(form, "metadata")
	s.refunds = append(s.refunds, re)
	return http.StatusOK, encode(re)
}

func (s *Server) listEvents(form url.Values) (int, []byte) {
	var types []string
	for k, vs := range form {
		if k == "types[]" || strings.HasPrefix(k, "types[") {
			types = append(types, vs...)
		}
	}
	var gte int64
	if v := form.Get("created[gte]"); v != "" {
		gte, _ = strconv.ParseInt(v, 10, 64)
	}
	limit := 10
	if v := form.Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	after := form.Get("starting_after")
	var page []json.RawMessage
	passed := after == ""
	more := false
	// Newest first, as Stripe lists.
	sorted := slices.Clone(s.events)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].created > sorted[j].created })
	for _, e := range sorted {
		if !passed {
			passed = e.id == after
			continue
		}
		if e.created < gte || (len(types) > 0 && !slices.Contains(types, e.typ)) {
			continue
		}
		if len(page) == limit {
			more = true
			break
		}
		page = append(page, e.raw)
	}
	return http.StatusOK, listBody("/v1/events", page, more)
}

// listBody writes a list object with each item's bytes as given.
func listBody(path string, data []json.RawMessage, more bool) []byte {
	var b bytes.Buffer
	b.WriteString("{\n  \"object\": \"list\",\n  \"data\": [")
	for i, d := range data {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n")
		b.Write(d)
	}
	fmt.Fprintf(&b, "\n  ],\n  \"has_more\": %t,\n  \"url\": %q\n}", more, path)
	return b.Bytes()
}

func faultBody(f Fault) []byte {
	if f.Body != "" {
		return []byte(f.Body)
	}
	_, body := statusBody(errorBody(stripeError{f.Status, "api_error", "", "An unknown error occurred (injected by stripetest)."}))
	return body
}

func errorBody(e stripeError) (int, []byte, bool) {
	m := map[string]any{"type": e.typ, "message": e.message}
	if e.code != "" {
		m["code"] = e.code
	}
	return e.status, encode(map[string]any{"error": m}), false
}

func statusBody(status int, body []byte, _ bool) (int, []byte) { return status, body }

func writeError(w http.ResponseWriter, e stripeError) {
	status, body, _ := errorBody(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func encode(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

// subMap collects form keys prefix[name] into a JSON object.
func subMap(form url.Values, prefix string) map[string]any {
	m := map[string]any{}
	for k, vs := range form {
		name, ok := strings.CutPrefix(k, prefix+"[")
		if !ok || !strings.HasSuffix(name, "]") || strings.Contains(strings.TrimSuffix(name, "]"), "[") {
			continue
		}
		m[strings.TrimSuffix(name, "]")] = vs[0]
	}
	return m
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func toInt64(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case json.Number:
		i, _ := n.Int64()
		return i
	case float64:
		return int64(n)
	}
	return 0
}

func clone(m map[string]any) map[string]any {
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(encode(m)))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		panic(err)
	}
	return out
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = base62[int(b[i])%len(base62)]
	}
	return string(b)
}
