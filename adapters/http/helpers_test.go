package http_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stripe/stripe-go/v76/webhook"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres/idempotency"
	"github.com/booking-ledger/ledger/adapters/postgres/monitoringviews"
	"github.com/booking-ledger/ledger/adapters/postgres/readmodels"
	"github.com/booking-ledger/ledger/adapters/postgres/worklist"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

const (
	// testSecret is the webhook signing secret of the default harness.
	testSecret = "whsec_test_http_5e1d0c3b9a7f4e21d8c6b0a2"
	// otherSecret signs nothing the default harness accepts.
	otherSecret = "whsec_test_http_other_0f9e8d7c6b5a4932"
	testToken   = "test-token-0123456789abcdefghijklmnop"
	// auditorToken and metricsToken are the harnesses' tokens of the
	// other roles (testToken is an operator's).
	auditorToken = "test-auditor-0123456789abcdefghijklmn"
	metricsToken = "test-metrics-0123456789abcdefghijklmn"
)

// Default stay and price of the bookings the tests create.
const (
	defaultCheckIn  = "2027-01-10"
	defaultCheckOut = "2027-01-13"
	defaultAmount   = 36000
	defaultCurrency = "eur"
)

// logBuffer collects the handler's JSON log lines; the server writes from
// its own goroutines while the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines decodes every log line; a line that is not a JSON object fails the
// test, since production alerts parse them.
func (b *logBuffer) Lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not a JSON object: %v\n%s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// harness is the real HTTP server on 127.0.0.1 in front of app.Service on
// a booking store of its own: in memory by default, a fresh, migrated
// PostgreSQL database withPostgres.
type harness struct {
	t       testing.TB
	srv     *httptest.Server
	handler http.Handler
	store   backend
	// db is the PostgreSQL backend's pool, nil in memory.
	db      *sql.DB
	logs    *logBuffer
	secrets []string
	// now is the verifier's clock, fixed for the harness's life (whole
	// seconds), so that timestamps at exact distances from it are
	// deterministic.
	now time.Time
	// contract checks every request and answer against openapi.yaml
	// (contract_test.go).
	contract *contract
}

// sendsInvalidRequests declares that the test sends, on purpose, requests
// the OpenAPI document calls invalid (garbage, forged signatures, wrong
// tokens): they must still be refused, and their answers described.
func (h *harness) sendsInvalidRequests(reason string) {
	h.contract.allowInvalid(reason)
}

type harnessOptions struct {
	secrets     []string
	now         time.Time
	noHTTP      bool
	discardLogs bool
	postgres    bool
	monitoring  bool
	idempotency bool
	retry       bool
	obligations *worklist.Obligations
	checkout    *app.CheckoutConfig
	mode        app.Mode
	config      func(*ledgerhttp.Config)
}

type harnessOption func(*harnessOptions)

// withSecrets configures the verifier's secrets (rotation).
func withSecrets(secrets ...string) harnessOption {
	return func(o *harnessOptions) { o.secrets = secrets }
}

// withClock fixes the verifier's clock.
func withClock(now time.Time) harnessOption {
	return func(o *harnessOptions) { o.now = now }
}

// withoutLogs discards the log (the fuzz target would otherwise collect
// every line of a long run in memory).
func withoutLogs() harnessOption {
	return func(o *harnessOptions) { o.discardLogs = true }
}

// withoutServer builds the handler only (the fuzz target calls it directly).
func withoutServer() harnessOption {
	return func(o *harnessOptions) { o.noHTTP = true }
}

// withPostgres puts the real PostgreSQL store under the service, on a
// database of the harness's own.
func withPostgres() harnessOption {
	return func(o *harnessOptions) { o.postgres = true }
}

// withMonitoring serves /monitoring/summary and /metrics from the
// PostgreSQL backend's views (implies withPostgres).
func withMonitoring() harnessOption {
	return func(o *harnessOptions) { o.postgres, o.monitoring = true, true }
}

// withIdempotency keeps Idempotency-Key answers in the PostgreSQL backend
// (implies withPostgres).
func withIdempotency() harnessOption {
	return func(o *harnessOptions) { o.postgres, o.idempotency = true, true }
}

// withObligations serves the worklist from the PostgreSQL backend (implies
// withPostgres); o.DB is filled in.
func withObligations(o worklist.Obligations) harnessOption {
	return func(opts *harnessOptions) { opts.postgres, opts.obligations = true, &o }
}

// withUnmatchedRetry makes the service decide unmatched deliveries again
// when their booking appears (implies withPostgres).
func withUnmatchedRetry() harnessOption {
	return func(o *harnessOptions) { o.postgres, o.retry = true, true }
}

// withCheckout turns Stripe Checkout on.
func withCheckout(c app.CheckoutConfig) harnessOption {
	return func(o *harnessOptions) { o.checkout = &c }
}

// withConfig edits the handler's configuration before it is built.
func withConfig(edit func(*ledgerhttp.Config)) harnessOption {
	return func(o *harnessOptions) { o.config = edit }
}

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	o := harnessOptions{secrets: []string{testSecret}, now: time.Now().Truncate(time.Second)}
	for _, opt := range opts {
		opt(&o)
	}
	logs := &logBuffer{}
	var sink io.Writer = logs
	if o.discardLogs {
		sink = io.Discard
	}
	logger := slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := &harness{t: t, logs: logs, secrets: o.secrets, now: o.now}
	if o.postgres {
		b := newSQLBackend(t, logger)
		h.store, h.db = b, b.db
	} else {
		h.store = newMemBackend(t)
	}
	now := o.now
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: o.secrets, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	// The service logs the decisions' alert lines, the handler the
	// requests: one log, as in production.
	cfg := ledgerhttp.Config{
		Ledger:   newServiceWith(t, app.Config{Bookings: h.store.bookings(), Checkout: o.checkout, Mode: o.mode, Logger: logger, Unmatched: unmatchedRetry(o, h)}),
		Verifier: verifier,
		APIToken: testToken,
		Tokens:   testRoleTokens,
		Logger:   logger,
		// The tests send many wrong tokens from one address on purpose;
		// the limit has tests of its own.
		AuthFailureBurst: 100000,
	}
	if o.obligations != nil {
		o.obligations.DB = h.db
		cfg.Obligations = *o.obligations
	}
	if o.idempotency {
		cfg.Idempotency = idempotency.New(h.db)
	}
	if o.monitoring {
		cfg.Monitoring = pgMonitoring{h.db}
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(monitoringviews.NewCollector(h.db))
		if o.obligations != nil {
			cfg.Registry.MustRegister(worklist.NewOperationsCollector(*o.obligations))
		}
	}
	if o.config != nil {
		o.config(&cfg)
	}
	handler, err := ledgerhttp.NewHandler(cfg)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	h.contract = newContract(t, cfg)
	h.handler = h.contract.wrap(handler)
	if !o.noHTTP {
		h.srv = httptest.NewServer(h.handler)
		t.Cleanup(h.srv.Close)
	}
	return h
}

// testRoleTokens are the named tokens of the auditor and metrics roles.
var testRoleTokens = []ledgerhttp.Token{
	{Name: "audit-team", Role: ledgerhttp.RoleAuditor, Secret: auditorToken},
	{Name: "prometheus", Role: ledgerhttp.RoleMetrics, Secret: metricsToken},
}

// with returns a copy of h that reports to t, for use in a subtest.
func (h *harness) with(t testing.TB) *harness {
	c := *h
	c.t = t
	return &c
}

// ---------------------------------------------------------------- signing

// signer makes a Stripe-Signature header for body, signed with secret at ts.
type signer struct {
	name string
	sign func(body []byte, secret string, ts time.Time) string
}

// stripeGoSigner signs with stripe-go's own test helper.
var stripeGoSigner = signer{"stripe-go", func(body []byte, secret string, ts time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: body, Secret: secret, Timestamp: ts, Scheme: "v1",
	}).Header
}}

// hmacSigner is written from Stripe's documentation, independently of
// stripe-go: t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<body>")).
var hmacSigner = signer{"hmac", func(body []byte, secret string, ts time.Time) string {
	return "t=" + strconv.FormatInt(ts.Unix(), 10) + ",v1=" + hmacV1(body, secret, ts)
}}

var signers = []signer{stripeGoSigner, hmacSigner}

func hmacV1(body []byte, secret string, ts time.Time) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// pickSigner alternates the signers, so both sign across a test.
func pickSigner(i int) signer { return signers[i%len(signers)] }

// ---------------------------------------------------------------- HTTP

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as one JSON object.
func (r response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("response body is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// wantBody checks the exact JSON answer, e.g. `{"status":"success"}`.
func (r response) wantBody(t testing.TB, status int, body string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("answer %s, want %d %s", r, status, body)
	}
	if got := string(bytes.TrimSpace(r.Body)); got != body {
		t.Fatalf("body %s, want %s", got, body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
}

// wantError checks a {"error": "..."} answer whose message contains each of
// the given fragments, and nothing but the error field.
func (r response) wantError(t testing.TB, status int, fragments ...string) string {
	t.Helper()
	if r.Status != status {
		t.Fatalf("answer %s, want %d with error %q", r, status, fragments)
	}
	m := r.JSON(t)
	msg, ok := m["error"].(string)
	if !ok || msg == "" || len(m) != 1 {
		t.Fatalf("body %s, want exactly one non-empty error field", r.Body)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not mention %q", msg, f)
		}
	}
	return msg
}

func (h *harness) do(method, path string, header http.Header, body []byte) response {
	h.t.Helper()
	r, err := h.send(method, path, header, body)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// send is do for other goroutines than the test's: it reports errors
// instead of failing the test.
func (h *harness) send(method, path string, header http.Header, body []byte) (response, error) {
	if h.srv == nil {
		// No server: call the handler directly.
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		for k, vs := range header {
			req.Header[k] = vs
		}
		rec := httptest.NewRecorder()
		h.handler.ServeHTTP(rec, req)
		return response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}, nil
	}
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		return response{}, fmt.Errorf("new request: %w", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// webhookHeader is the request header of a webhook delivery.
func webhookHeader(signature string) http.Header {
	hdr := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	if signature != "" {
		hdr.Set("Stripe-Signature", signature)
	}
	return hdr
}

const webhookPath = "/webhooks/stripe/"

// postWebhook posts body with the given Stripe-Signature header ("" sends
// none).
func (h *harness) postWebhook(body []byte, signature string) response {
	h.t.Helper()
	return h.do(http.MethodPost, webhookPath, webhookHeader(signature), body)
}

// deliver posts ev signed afresh with the harness's first secret at the
// harness's clock, as each Stripe (re)delivery is.
func (h *harness) deliver(ev event, s signer) response {
	h.t.Helper()
	return h.postWebhook(ev.Body, s.sign(ev.Body, h.secrets[0], h.now))
}

// api calls a bookings endpoint with the bearer token.
func (h *harness) api(method, path string, body any) response {
	h.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			h.t.Fatalf("encode request: %v", err)
		}
	}
	return h.do(method, path, http.Header{
		"Authorization": {"Bearer " + testToken},
		"Content-Type":  {"application/json"},
	}, raw)
}

// ---------------------------------------------------------------- bookings

var resourceSeq atomic.Int64

// newResource names a resource no other booking of this process uses.
func newResource(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, resourceSeq.Add(1))
}

// bookingRequest is a valid POST /bookings body for resource with the
// default stay and price.
func bookingRequest(resource string) map[string]any {
	return map[string]any{
		"resource_id":    resource,
		"check_in":       defaultCheckIn,
		"check_out":      defaultCheckOut,
		"amount":         defaultAmount,
		"currency":       defaultCurrency,
		"customer_email": "guest@example.com",
	}
}

type createdBooking struct {
	BookingID int64 `json:"booking_id"`
	projections.BookingRow
}

// createBooking posts req to POST /bookings and requires 201.
func (h *harness) createBooking(req map[string]any) createdBooking {
	h.t.Helper()
	resp := h.api(http.MethodPost, "/bookings", req)
	if resp.Status != http.StatusCreated {
		h.t.Fatalf("POST /bookings %v: %s", req, resp)
	}
	var b createdBooking
	if err := json.Unmarshal(resp.Body, &b); err != nil {
		h.t.Fatalf("decode booking: %v\n%s", err, resp.Body)
	}
	if b.BookingID <= 0 || b.BookingID != b.ID {
		h.t.Fatalf("booking_id %d, id %d: %s", b.BookingID, b.ID, resp.Body)
	}
	return b
}

// newBooking creates a booking of resource for [checkIn, checkOut) at the
// default price.
func (h *harness) newBooking(resource, checkIn, checkOut string) createdBooking {
	h.t.Helper()
	req := bookingRequest(resource)
	req["check_in"], req["check_out"] = checkIn, checkOut
	return h.createBooking(req)
}

// testBooking is what BuildEvent needs to make events about b: its id, its
// price, its session id if it has one, and fresh Stripe ids otherwise.
func testBooking(b createdBooking) stripe.TestBooking {
	tb := stripe.TestBooking{ID: b.ID, Amount: b.Amount, Currency: b.Currency, CustomerEmail: b.CustomerEmail}
	if b.SessionID != nil {
		tb.SessionID = *b.SessionID
	}
	if b.PaymentIntentID != nil {
		tb.PaymentIntentID = *b.PaymentIntentID
	}
	if tb.SessionID == "" {
		tb.SessionID = stripe.NewSessionID()
	}
	if tb.PaymentIntentID == "" {
		tb.PaymentIntentID = stripe.NewPaymentIntentID()
	}
	return tb
}

// ---------------------------------------------------------------- events

// event is one Stripe event body and the ids it carries.
type event struct {
	ID, Type                   string
	SessionID, PaymentIntentID string
	Body                       []byte
}

// editFunc changes a decoded event: ev is the whole event, obj its
// data.object.
type editFunc func(ev, obj map[string]any)

// buildEvent makes a complete event with stripe.BuildEvent and applies the
// edits to its decoded JSON before encoding it again.
func (h *harness) buildEvent(typ string, b stripe.TestBooking, edits ...editFunc) event {
	h.t.Helper()
	body, err := stripe.BuildEvent(typ, b, h.now)
	if err != nil {
		h.t.Fatalf("BuildEvent(%s): %v", typ, err)
	}
	return editEvent(h.t, body, edits...)
}

// editEvent decodes body (numbers kept exact), applies edits and encodes it
// the way Stripe does (indented, no HTML escaping).
func editEvent(t testing.TB, body []byte, edits ...editFunc) event {
	t.Helper()
	ev := decodeObject(t, body)
	obj, _ := ev["data"].(map[string]any)["object"].(map[string]any)
	for _, edit := range edits {
		edit(ev, obj)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(ev); err != nil {
		t.Fatalf("encode event: %v", err)
	}
	out := event{Body: bytes.TrimSuffix(buf.Bytes(), []byte("\n"))}
	out.ID, _ = ev["id"].(string)
	out.Type, _ = ev["type"].(string)
	if obj != nil {
		switch obj["object"] {
		case stripe.ObjectCheckoutSession:
			out.SessionID, _ = obj["id"].(string)
			out.PaymentIntentID, _ = obj["payment_intent"].(string)
		case stripe.ObjectPaymentIntent:
			out.PaymentIntentID, _ = obj["id"].(string)
		}
	}
	return out
}

func decodeObject(t testing.TB, body []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return m
}

// Edits.

func setField(key string, value any) editFunc {
	return func(_, obj map[string]any) { obj[key] = value }
}

func setEventField(key string, value any) editFunc {
	return func(ev, _ map[string]any) { ev[key] = value }
}

func deleteEventField(key string) editFunc {
	return func(ev, _ map[string]any) { delete(ev, key) }
}

// ---------------------------------------------------------------- store

// counts are the row counts of the tables a webhook may write.
type counts struct {
	Events, Inbox, Deliveries, Bookings int
}

func (h *harness) counts() counts {
	h.t.Helper()
	return h.store.counts(h.t)
}

// status reads a booking's status and payment status from the bookings
// table.
func (h *harness) status(id int64) (status, paymentStatus string) {
	h.t.Helper()
	status, paymentStatus, ok := h.store.status(h.t, id)
	if !ok {
		h.t.Fatalf("booking %d: no status row", id)
	}
	return status, paymentStatus
}

// wantStatus checks a booking's row in the bookings table.
func (h *harness) wantStatus(id int64, status, paymentStatus string) {
	h.t.Helper()
	s, p := h.status(id)
	if s != status || p != paymentStatus {
		h.t.Errorf("booking %d is %s/%s, want %s/%s (stream %v)", id, s, p, status, paymentStatus, h.stream(id))
	}
}

// stream lists the event types of a booking's stream in stream order.
func (h *harness) stream(id int64) []string {
	h.t.Helper()
	return h.store.stream(h.t, id)
}

func (h *harness) wantStream(id int64, want ...string) {
	h.t.Helper()
	if got := h.stream(id); !slices.Equal(got, want) {
		h.t.Errorf("stream of booking %d:\n got %v\nwant %v", id, got, want)
	}
}

// countType counts the events of one type in a booking's stream.
func (h *harness) countType(id int64, typ string) int {
	h.t.Helper()
	n := 0
	for _, t := range h.stream(id) {
		if t == typ {
			n++
		}
	}
	return n
}

// storedRow reads a booking's status row through the store.
func (h *harness) storedRow(id int64) projections.BookingRow {
	h.t.Helper()
	r, err := h.store.bookings().GetBooking(context.Background(), id)
	if err != nil {
		h.t.Fatalf("booking %d: %v", id, err)
	}
	return r
}

// inboxOutcome is the outcome of the inbox row of a Stripe event, "" when
// there is none.
func (h *harness) inboxOutcome(eventID string) string {
	h.t.Helper()
	r, _ := h.store.inbox(h.t, eventID)
	return r.Outcome
}

// deliveryOutcomes lists the stripe_deliveries outcomes of a Stripe event in
// arrival order.
func (h *harness) deliveryOutcomes(eventID string) []string {
	h.t.Helper()
	var out []string
	for _, d := range h.store.deliveries(h.t, eventID) {
		out = append(out, d.Outcome)
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// pgMonitoring reads the monitoring views of a PostgreSQL ledger, as `ledger
// serve` does.
type pgMonitoring struct{ db *sql.DB }

func (m pgMonitoring) Summary(ctx context.Context) (map[string][]map[string]any, error) {
	return monitoringviews.MonitoringSummary(ctx, m.db)
}

func (m pgMonitoring) Projections(ctx context.Context) ([]app.ProjectionStatus, error) {
	return readmodels.ProjectionStatuses(ctx, m.db)
}

func unmatchedRetry(o harnessOptions, h *harness) *app.UnmatchedRetry {
	if !o.retry {
		return nil
	}
	return &app.UnmatchedRetry{Deliveries: h.store.(*sqlBackend).ledger, Parse: stripe.ParseDelivery}
}
