package http_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/adapters/stripe/stripetest"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/app/apptest"
	"github.com/booking-ledger/ledger/projections"
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
	t        *testing.T
	url      string
	store    backend
	booking  hostileBooking
	registry *prometheus.Registry
	sessions *apptest.Sessions
	audit    *hostileAudit
	// session is a UI session opened with the operator token at start:
	// the rows that play cross-site pages post with it.
	session *http.Cookie
	stripe  *stripetest.Server
}

type hostileBooking struct {
	id                  int64
	sessionID, intentID string
}

// hostileBodyTimeout is the harness's body deadline: short, so that the
// slow-body row ends quickly (the deadline is the server's, not a sleep).
const hostileBodyTimeout = 300 * time.Millisecond

// hostileAudit is an in-memory Audit for the hostile table: it serves the
// UI (an empty ledger) and counts the access-log rows, which are writes.
type hostileAudit struct {
	mu       sync.Mutex
	accesses int
}

func (a *hostileAudit) History(context.Context, int64, time.Time) (app.BookingHistory, error) {
	return app.BookingHistory{}, domain.ErrNotFound
}
func (a *hostileAudit) BookingAsOf(context.Context, int64, time.Time) (projections.BookingRow, error) {
	return projections.BookingRow{}, domain.ErrNotFound
}
func (a *hostileAudit) Export(context.Context, io.Writer, app.ExportQuery) (app.ExportResult, error) {
	return app.ExportResult{}, nil
}
func (a *hostileAudit) FindBooking(context.Context, string) (int64, error) {
	return 0, domain.ErrNotFound
}
func (a *hostileAudit) ChainStatus(context.Context) (app.ChainStatus, error) {
	return app.ChainStatus{}, nil
}
func (a *hostileAudit) RecordAccess(context.Context, app.Access) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.accesses++
	return nil
}
func (a *hostileAudit) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accesses
}

// The addresses the rows that authenticate come from (documentation
// ranges, sent as X-Forwarded-For through the trusted loopback proxy), so
// that each row's failures are counted apart.
const (
	hostileLoginClient = "198.51.100.7"
	hostileTokenClient = "203.0.113.9"
)

// hostileFailureBurst is the harness's failure budget per address; the
// budget refills once an hour, so within the test it does not.
const hostileFailureBurst = 3

func newHostileHarness(t *testing.T) *hostileHarness {
	t.Helper()
	store := newMemBackend(t)
	fake := stripetest.NewServer(t)
	client, err := stripe.NewClient(stripe.ClientConfig{SecretKey: "sk_test_hostile", BaseURL: fake.URL, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ledger := newService(t, store.bookings(), &app.CheckoutConfig{Payments: client, PublicURL: testPublicURL}, nil)
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{hostileSecret}, Now: func() time.Time { return hostileNow }})
	if err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	sessions := apptest.NewSessions()
	audit := &hostileAudit{}
	cfg := ledgerhttp.Config{
		Ledger: ledger, Verifier: verifier, APIToken: testToken, Tokens: testRoleTokens,
		Registry: registry, EventTypes: stripe.HandledEventTypes,
		Audit: audit, Sessions: sessions, InsecureCookies: true,
		BodyTimeout:      hostileBodyTimeout,
		AuthFailureBurst: hostileFailureBurst, AuthFailureEvery: time.Hour,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Now:            func() time.Time { return hostileNow },
	}
	handler, err := ledgerhttp.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every request here is hostile on purpose; the answers must still be
	// the documented ones.
	c := newContract(t, cfg)
	c.allowInvalid("hostile clients")
	handler = c.wrap(handler)
	// The production server settings: 64 KiB headers, the connection cap.
	srv := httptest.NewUnstartedServer(handler)
	srv.Config, srv.Listener = ledgerhttp.NewServer(handler, srv.Listener, ledgerhttp.ServerConfig{})
	srv.Start()
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
	h := &hostileHarness{t: t, url: srv.URL, store: store, booking: b, registry: registry, sessions: sessions, audit: audit, stripe: fake}
	h.session = h.login()
	return h
}

// login signs in on the UI's form with the operator token and returns the
// session cookie.
func (h *hostileHarness) login() *http.Cookie {
	h.t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(h.url+"/ui/login", url.Values{"token": {testToken}})
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "ledger_ui" && c.Value != "" {
			return c
		}
	}
	h.t.Fatalf("login: %d, no session cookie", resp.StatusCode)
	return nil
}

// series counts the metric series of the harness's registry.
func (h *hostileHarness) series() int {
	h.t.Helper()
	return countSeries(h.t, h.registry)
}

func countSeries(t testing.TB, reg *prometheus.Registry) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		n += len(f.GetMetric())
	}
	return n
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
	path   string // default the webhook's
	body   []byte
	header http.Header
	// raw, when set, is written as is on a connection of its own instead
	// (method, path, body and header are ignored); the write side is then
	// closed, unless open is set, in which case the server must answer
	// on its own (a deadline).
	raw  string
	open bool
	// session sends the harness's UI session cookie.
	session bool
}

func signed(body []byte) hostileRequest {
	return hostileRequest{body: body, header: http.Header{"Stripe-Signature": {hostileSign(body, hostileSecret, 0)}}}
}

func withSignature(body []byte, sig string) hostileRequest {
	return hostileRequest{body: body, header: http.Header{"Stripe-Signature": {sig}}}
}

// hostileState is everything a request could write: every table a
// webhook may write, the sessions (count and whether the harness's own
// still opens the UI), the access-log rows (counted before that check,
// which writes one), and the number of metric series.
type hostileState struct {
	Tables      tableDigest
	Sessions    int
	SessionOpen bool
	Accesses    int
	Series      int
}

func (h *hostileHarness) snapshot() hostileState {
	h.t.Helper()
	st := hostileState{Tables: h.store.digest(h.t), Sessions: h.sessions.Len(), Series: h.series(), Accesses: h.audit.count()}
	req, _ := http.NewRequest(http.MethodHead, h.url+"/ui", nil)
	req.AddCookie(h.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	st.SessionOpen = resp.StatusCode == http.StatusOK
	return st
}

// doRaw writes r.raw on a connection of its own and reads the answer.
func (h *hostileHarness) doRaw(r hostileRequest) (int, http.Header, string) {
	h.t.Helper()
	u, _ := url.Parse(h.url)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	// A generous bound on the whole exchange: the server answers at its
	// own deadline, long before.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, r.raw); err != nil {
		h.t.Fatal(err)
	}
	if !r.open {
		conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		h.t.Fatalf("raw request: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, strings.TrimSuffix(string(b), "\n")
}

func (h *hostileHarness) do(r hostileRequest) (int, http.Header, string) {
	h.t.Helper()
	if r.raw != "" {
		return h.doRaw(r)
	}
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	path := r.path
	if path == "" {
		path = "/webhooks/stripe/"
	}
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(r.body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if r.session {
		req.AddCookie(h.session)
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
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

	bookingPath := "/bookings/" + strconv.FormatInt(h.booking.id, 10)
	bearer := func(token, client string) http.Header {
		return http.Header{"Authorization": {"Bearer " + token}, "X-Forwarded-For": {client}, "Content-Type": {"application/json"}}
	}
	form := func(client string, extra ...string) http.Header {
		hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Forwarded-For": {client}}
		for i := 0; i+1 < len(extra); i += 2 {
			hdr.Set(extra[i], extra[i+1])
		}
		return hdr
	}
	bookingBody := []byte(`{"resource_id":"room-x","check_in":"2027-03-01","check_out":"2027-03-02","amount":100,"currency":"eur","customer_email":"a@example.com","session_id":"cs_test_x"}`)
	const (
		unauthorized = `{"error":"missing or wrong bearer token: unauthorized"}`
		html         = "text/html; charset=utf-8"
	)
	cases := []struct {
		name    string
		req     hostileRequest
		status  int
		body    string // the exact answer, without the final newline
		unmatch bool   // the one write allowed: an unmatched delivery
		// ct is the answer's Content-Type: "" for application/json (then
		// Cache-Control: no-store is checked too), "-" for none checked.
		ct string
		// hdr are answer headers that must be there, exactly.
		hdr http.Header
	}{
		// ---- headers
		{"header missing", hostileRequest{body: valid}, 400, hostileError("stripe signature: no Stripe-Signature header"), false, "", nil},
		{"header empty", withSignature(valid, ""), 400, hostileError("stripe signature: no Stripe-Signature header"), false, "", nil},
		{"header duplicated, both valid", hostileRequest{body: valid, header: http.Header{"Stripe-Signature": {hostileSign(valid, hostileSecret, 0), hostileSign(valid, hostileSecret, 0)}}},
			400, hostileError("more than one Stripe-Signature header: invalid input"), false, "", nil},
		{"header duplicated, one forged", hostileRequest{body: valid, header: http.Header{"Stripe-Signature": {"t=1,v1=00", hostileSign(valid, hostileSecret, 0)}}},
			400, hostileError("more than one Stripe-Signature header: invalid input"), false, "", nil},
		{"header oversized: 64 KiB v1", withSignature(valid, "t="+hostileT(now)+",v1="+strings.Repeat("ab", 32<<10)), 400, hostileError(badSig), false, "", nil},
		// The server takes 64 KiB of header (plus Go's 4 KiB of slack).
		{"header oversized: 10000 v1 elements (680 KB)", withSignature(valid, "t="+hostileT(now)+strings.Repeat(",v1="+strings.Repeat("0", 64), 10000)), 431, "431 Request Header Fields Too Large", false, "-", nil},
		{"header of 100 KiB: over the server's 64 KiB", withSignature(valid, "t="+hostileT(now)+",v1="+strings.Repeat("a", 100<<10)), 431, "431 Request Header Fields Too Large", false, "-", nil},
		{"header over 1 MiB", withSignature(valid, "t="+hostileT(now)+",v1="+strings.Repeat("a", 2<<20)), 431, "431 Request Header Fields Too Large", false, "-", nil},
		{"wrong scheme: only v0", withSignature(valid, "t="+hostileT(now)+",v0="+strings.TrimPrefix(v1(valid), "v1=")), 400, hostileError(noV1), false, "", nil},
		{"wrong scheme: V1 in capitals", withSignature(valid, "t="+hostileT(now)+",V1="+strings.TrimPrefix(v1(valid), "v1=")), 400, hostileError(noV1), false, "", nil},
		{"wrong scheme: v2", withSignature(valid, "t="+hostileT(now)+",v2="+strings.TrimPrefix(v1(valid), "v1=")), 400, hostileError(noV1), false, "", nil},
		{"wrong scheme: Bearer token", withSignature(valid, "Bearer "+hostileSecret), 400, hostileError(noEquals), false, "", nil},
		{"wrong scheme: HMAC in base64", withSignature(valid, "t="+hostileT(now)+",v1=q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"), 400, hostileError(badSig), false, "", nil},
		{"non-hex v1", withSignature(valid, "t="+hostileT(now)+",v1="+strings.Repeat("zz", 32)), 400, hostileError(badSig), false, "", nil},
		{"v1 cut short", withSignature(valid, "t="+hostileT(now)+","+v1(valid)[:40]), 400, hostileError(badSig), false, "", nil},
		{"empty v1", withSignature(valid, "t="+hostileT(now)+",v1="), 400, hostileError(badSig), false, "", nil},
		{"signed with another secret", withSignature(valid, hostileSign(valid, hostileOther, 0)), 400, hostileError(badSig), false, "", nil},
		{"signature of another body", withSignature(valid, hostileSign(h.completed(), hostileSecret, 0)), 400, hostileError(badSig), false, "", nil},
		{"trailing comma", withSignature(valid, hostileSign(valid, hostileSecret, 0)+","), 400, hostileError(noEquals), false, "", nil},
		{"t missing", withSignature(valid, v1(valid)), 400, hostileError(noT), false, "", nil},
		{"t twice", withSignature(valid, hostileSign(valid, hostileSecret, 0)+",t="+hostileT(now)), 400, hostileError("stripe signature: malformed Stripe-Signature header: more than one t"), false, "", nil},
		{"t as RFC 3339", withSignature(valid, "t="+hostileNow.Format(time.RFC3339)+","+v1(valid)), 400, hostileError(tNotInt), false, "", nil},
		{"t beyond int64", withSignature(valid, "t=9223372036854775808,"+v1(valid)), 400, hostileError(tNotInt), false, "", nil},
		{"t with a space", withSignature(valid, "t= "+hostileT(now)+","+v1(valid)), 400, hostileError(tNotInt), false, "", nil},
		{"timestamp far in the future (10 years)", withSignature(valid, hostileSign(valid, hostileSecret, 10*365*24*time.Hour)), 400, hostileError(tolerance(now + 10*365*24*3600)), false, "", nil},
		{"timestamp 301 s in the future", withSignature(valid, hostileSign(valid, hostileSecret, 301*time.Second)), 400, hostileError(tolerance(now + 301)), false, "", nil},
		{"timestamp far in the past (0)", withSignature(valid, "t=0,"+v1(valid)), 400, hostileError(tolerance(0)), false, "", nil},
		{"timestamp 301 s in the past", withSignature(valid, hostileSign(valid, hostileSecret, -301*time.Second)), 400, hostileError(tolerance(now - 301)), false, "", nil},
		{"timestamp negative", withSignature(valid, "t=-1,"+v1(valid)), 400, hostileError(tolerance(-1)), false, "", nil},
		{"timestamp int64 max", withSignature(valid, "t=9223372036854775807,"+v1(valid)), 400, hostileError(tolerance(9223372036854775807)), false, "", nil},

		// ---- methods and encodings
		{"GET", hostileRequest{method: http.MethodGet}, 405, notAllowed, false, "", nil},
		{"PUT with a valid event", hostileRequest{method: http.MethodPut, body: valid, header: signed(valid).header}, 405, notAllowed, false, "", nil},
		{"gzip body signed over the plain JSON", hostileRequest{body: gz.Bytes(), header: http.Header{"Content-Encoding": {"gzip"}, "Stripe-Signature": {hostileSign(valid, hostileSecret, 0)}}}, 400, hostileError(badSig), false, "", nil},

		// ---- bodies (validly signed unless said otherwise)
		{"body empty", signed(nil), 400, hostileError("body: invalid JSON at byte 0: unexpected end of JSON input"), false, "", nil},
		{"body truncated", signed(valid[:len(valid)/2]), 400, hostileError(fmt.Sprintf("body: invalid JSON at byte %d: unexpected end of JSON input", len(valid)/2)), false, "", nil},
		{"body over 1 MiB", signed(h.completed(hostileSet("padding", strings.Repeat("x", 1<<20)))), 413, hostileError("request body too large"), false, "", nil},
		{"body JSON null", signed([]byte("null")), 400, hostileError("id: missing"), false, "", nil},
		{"body JSON array", signed([]byte(`[` + string(valid) + `]`)), 400, hostileError("body: not a JSON object"), false, "", nil},
		{"body JSON string", signed([]byte(`"evt_1"`)), 400, hostileError("body: not a JSON object"), false, "", nil},
		{"body two JSON objects", signed(append(append([]byte{}, valid...), valid...)), 400, hostileError(fmt.Sprintf("body: invalid JSON at byte %d: invalid character '{' after top-level value", len(valid)+1)), false, "", nil},
		{"body with a byte-order mark", signed(append([]byte("\xef\xbb\xbf"), valid...)), 400, hostileError("body: invalid JSON at byte 1: invalid character 'ï' looking for beginning of value"), false, "", nil},
		{"deeply nested JSON in an unread field", signed(append([]byte(`{"request":`+hostileNested(20000)+`,`), valid[1:]...)), 400,
			hostileError("body: invalid JSON at byte 10011: invalid character '[' exceeded max depth"), false, "", nil},
		{"deeply nested JSON in metadata", signed(nested), 400,
			// encoding/json allows 10000 levels; the event, data, object and
			// metadata are four, so the 9997th bracket is one too many.
			hostileError(fmt.Sprintf("body: invalid JSON at byte %d: invalid character '[' exceeded max depth", bytes.Index(nested, []byte(`"booking_id":[`))+len(`"booking_id":`)+9997)), false, "", nil},
		{"huge string as event id", signed(h.completed(hostileSet("id", "evt_"+huge))), 400, hostileError("id: longer than 255 bytes"), false, "", nil},
		{"huge string as currency", signed(h.completed(hostileSetObj("currency", huge))), 400, hostileError(badCurr), false, "", nil},
		{"huge string as object kind", signed(h.completed(hostileSetObj("object", huge[:300]))), 400, hostileError(`data.object.object: is "` + huge[:300] + `", want "checkout.session"`), false, "", nil},

		// ---- every field the decision reads, with the wrong JSON type
		{"id: number", signed(h.completed(hostileSet("id", 42))), 400, hostileError("id: wrong type (number)"), false, "", nil},
		{"type: number", signed(h.completed(hostileSet("type", 42))), 400, hostileError("type: wrong type (number)"), false, "", nil},
		{"type: missing", signed(h.completed(hostileDelete("type"))), 400, hostileError("type: missing"), false, "", nil},
		{"created: string", signed(h.completed(hostileSet("created", "yesterday"))), 400, hostileError("created: wrong type (string)"), false, "", nil},
		{"created: negative", signed(h.completed(hostileSet("created", -1))), 400, hostileError("created: out of range"), false, "", nil},
		{"created: beyond year 9999", signed(h.completed(hostileSet("created", int64(253402300800)))), 400, hostileError("created: out of range"), false, "", nil},
		{"livemode: string", signed(h.completed(hostileSet("livemode", "false"))), 400, hostileError("livemode: wrong type (string)"), false, "", nil},
		{"api_version: number", signed(h.completed(hostileSet("api_version", 2023))), 400, hostileError("api_version: wrong type (number)"), false, "", nil},
		{"data: string", signed(h.completed(hostileSet("data", "object"))), 400, hostileError("data: wrong type (string)"), false, "", nil},
		{"data.object: array", signed(h.completed(hostileSet("data", map[string]any{"object": []any{}}))), 400, hostileError("data.object: wrong type (array)"), false, "", nil},
		{"data.object: missing", signed(h.completed(hostileSet("data", map[string]any{}))), 400, hostileError("data.object: missing"), false, "", nil},
		{"data.object.object: number", signed(h.completed(hostileSetObj("object", 1))), 400, hostileError("data.object.object: wrong type (number)"), false, "", nil},
		{"data.object.object: another kind", signed(h.event(stripe.EventPaymentIntentSucceeded, hostileSetObj("object", "checkout.session"))), 400, hostileError(`data.object.object: is "checkout.session", want "payment_intent"`), false, "", nil},
		{"data.object.id: number", signed(h.completed(hostileSetObj("id", 7))), 400, hostileError("data.object.id: wrong type (number)"), false, "", nil},
		{"client_reference_id: number", signed(h.completed(hostileSetObj("client_reference_id", 1))), 400, hostileError("data.object.client_reference_id: wrong type (number)"), false, "", nil},
		{"metadata: array", signed(h.completed(hostileSetObj("metadata", []any{"booking_id"}))), 400, hostileError("data.object.metadata: wrong type (array)"), false, "", nil},
		{"metadata.booking_id: number", signed(h.completed(hostileSetObj("metadata", map[string]any{"booking_id": 1}))), 400, hostileError("data.object.metadata: wrong type (number)"), false, "", nil},
		{"payment_intent: number", signed(h.completed(hostileSetObj("payment_intent", 5))), 400, hostileError("data.object.payment_intent: wrong type: want an id, null or an object with an id"), false, "", nil},
		{"payment_intent: object without id", signed(h.completed(hostileSetObj("payment_intent", map[string]any{"object": "payment_intent"}))), 400, hostileError("data.object.payment_intent: wrong type: want an id, null or an object with an id"), false, "", nil},
		{"amount_total: string", signed(h.completed(hostileSetObj("amount_total", "36000"))), 400, hostileError("data.object.amount_total: wrong type (string)"), false, "", nil},
		{"amount_total: fraction", signed(h.completed(hostileSetObj("amount_total", json.Number("360.5")))), 400, hostileError("data.object.amount_total: wrong type (number 360.5)"), false, "", nil},
		{"amount (payment_intent): string", signed(h.event(stripe.EventPaymentIntentSucceeded, hostileSetObj("amount", "36000"))), 400, hostileError("data.object.amount: wrong type (string)"), false, "", nil},
		{"currency: number", signed(h.completed(hostileSetObj("currency", 978))), 400, hostileError("data.object.currency: wrong type (number)"), false, "", nil},
		{"payment_status: boolean", signed(h.completed(hostileSetObj("payment_status", true))), 400, hostileError("data.object.payment_status: wrong type (bool)"), false, "", nil},
		{"status: number", signed(h.completed(hostileSetObj("status", 1))), 400, hostileError("data.object.status: wrong type (number)"), false, "", nil},
		{"last_payment_error: string", signed(h.event(stripe.EventPaymentIntentPaymentFailed, hostileSetObj("last_payment_error", "declined"))), 400, hostileError("data.object.last_payment_error: wrong type (string)"), false, "", nil},
		{"last_payment_error.code: number", signed(h.event(stripe.EventPaymentIntentPaymentFailed, hostileSetObj("last_payment_error", map[string]any{"code": 402}))), 400, hostileError("data.object.last_payment_error.code: wrong type (number)"), false, "", nil},

		// ---- amounts
		{"amount_total negative", signed(h.completed(hostileSetObj("amount_total", -36000))), 400, hostileError("data.object.amount_total: negative"), false, "", nil},
		{"amount_total int64 min", signed(h.completed(hostileSetObj("amount_total", json.Number("-9223372036854775808")))), 400, hostileError("data.object.amount_total: negative"), false, "", nil},
		{"amount_total overflowing int64", signed(h.completed(hostileSetObj("amount_total", json.Number("9223372036854775808")))), 400, hostileError("data.object.amount_total: wrong type (number 9223372036854775808)"), false, "", nil},
		{"amount_total 1e309", signed(h.completed(hostileSetObj("amount_total", json.Number("1e309")))), 400, hostileError("data.object.amount_total: wrong type (number 1e309)"), false, "", nil},
		{"amount (payment_intent) negative", signed(h.event(stripe.EventPaymentIntentSucceeded, hostileSetObj("amount", -1))), 400, hostileError("data.object.amount: negative"), false, "", nil},

		// ---- currencies
		{"currency missing", signed(h.completed(hostileSetObj("currency", nil))), 400, hostileError("data.object.currency: missing"), false, "", nil},
		{"currency two letters", signed(h.completed(hostileSetObj("currency", "eu"))), 400, hostileError(badCurr), false, "", nil},
		{"currency four letters", signed(h.completed(hostileSetObj("currency", "euro"))), 400, hostileError(badCurr), false, "", nil},
		{"currency with a digit", signed(h.completed(hostileSetObj("currency", "e1r"))), 400, hostileError(badCurr), false, "", nil},
		{"currency symbol", signed(h.completed(hostileSetObj("currency", "€"))), 400, hostileError(badCurr), false, "", nil},

		// ---- SQL and HTML in strings
		{"SQL in the event id", signed(h.completed(hostileSet("id", "evt_1'; DROP TABLE stripe_inbox; --"))), 400, hostileError("id: may only hold letters, digits and underscores"), false, "", nil},
		{"SQL in the currency", signed(h.completed(hostileSetObj("currency", "'; DROP TABLE bookings; --"))), 400, hostileError(badCurr), false, "", nil},
		{"HTML in the currency", signed(h.completed(hostileSetObj("currency", "<b>"))), 400, hostileError(badCurr), false, "", nil},
		{"HTML in the object kind", signed(h.completed(hostileSetObj("object", "<script>alert(1)</script>"))), 400,
			`{"error":"data.object.object: is \"\u003cscript\u003ealert(1)\u003c/script\u003e\", want \"checkout.session\""}`, false, "", nil},
		{"NUL in the event id", signed(h.completed(hostileSet("id", "evt_1\x00"))), 400, hostileError("id: may only hold letters, digits and underscores"), false, "", nil},

		// ---- booking ids that are not ours: no booking is found by them
		{"booking_id not a number", signed(h.completed(hostileUnknownBooking("abc"))), 404, notFound, true, "", nil},
		{"booking_id negative", signed(h.completed(hostileUnknownBooking("-1"))), 404, notFound, true, "", nil},
		{"booking_id zero", signed(h.completed(hostileUnknownBooking("0"))), 404, notFound, true, "", nil},
		{"booking_id with a plus sign", signed(h.completed(hostileUnknownBooking("+" + strconv.FormatInt(h.booking.id, 10)))), 404, notFound, true, "", nil},
		{"booking_id with a leading zero", signed(h.completed(hostileUnknownBooking("0" + strconv.FormatInt(h.booking.id, 10)))), 404, notFound, true, "", nil},
		{"booking_id in exponent form", signed(h.completed(hostileUnknownBooking("1e0"))), 404, notFound, true, "", nil},
		{"booking_id overflowing int64", signed(h.completed(hostileUnknownBooking("9223372036854775808"))), 404, notFound, true, "", nil},
		{"booking_id with SQL", signed(h.completed(hostileUnknownBooking(strconv.FormatInt(h.booking.id, 10) + " OR 1=1"))), 404, notFound, true, "", nil},
		{"booking_id with HTML", signed(h.completed(hostileUnknownBooking("<img src=x onerror=alert(1)>"))), 404, notFound, true, "", nil},

		// ---- issue 15: metric labels (H3) and bodies cut short (L5)
		{"unsigned body with a made-up type", hostileRequest{body: []byte(`{"id":"evt_1","type":"junk.type.1"}`)}, 400,
			hostileError("stripe signature: no Stripe-Signature header"), false, "", nil},
		{"signed body of an unhandled made-up type: label other", signed(h.event(stripe.EventCheckoutSessionCompleted, hostileSet("type", "junk.type.2"), hostileSet("id", "evt_junk_type_2"))), 200,
			`{"status":"ignored"}`, true, "", nil},
		{"body shorter than announced, made-up type, connection closed", hostileRequest{raw: "POST /webhooks/stripe/ HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n{\"type\":\"junk.type.3\"}"}, 400,
			hostileError("request body could not be read"), false, "", nil},
		{"signed body cut short", hostileRequest{raw: "POST /webhooks/stripe/ HTTP/1.1\r\nHost: x\r\nStripe-Signature: " + hostileSign(valid, hostileSecret, 0) + "\r\nContent-Length: " + strconv.Itoa(len(valid)) + "\r\n\r\n" + string(valid[:len(valid)/2])}, 400,
			hostileError("request body could not be read"), false, "", nil},

		// ---- slow clients (M2, L8)
		{"body slower than the body deadline", hostileRequest{raw: "POST /webhooks/stripe/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"type\":", open: true}, 408,
			hostileError("request body not received in time"), false, "", nil},
		{"API body slower than the body deadline", hostileRequest{raw: "POST /bookings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testToken + "\r\nContent-Length: 100\r\n\r\n{", open: true}, 408,
			hostileError("request body not received in time"), false, "", nil},
		{"body announced over 1 MiB: refused before it is read", hostileRequest{raw: "POST /webhooks/stripe/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{", open: true}, 413,
			hostileError("request body too large"), false, "", nil},
		{"API body over 64 KiB", hostileRequest{path: "/bookings", body: []byte(`{"resource_id":"` + strings.Repeat("r", 70<<10) + `"}`), header: bearer(testToken, "192.0.2.10")}, 413,
			hostileError("request body too large"), false, "", nil},

		// ---- scoped tokens (M4, L2)
		{"POST /bookings without a token", hostileRequest{path: "/bookings", body: bookingBody}, 401, unauthorized, false, "", http.Header{"Www-Authenticate": {`Bearer realm="ledger"`}}},
		{"POST /bookings, token one character short", hostileRequest{path: "/bookings", body: bookingBody, header: bearer(testToken[:len(testToken)-1], "192.0.2.10")}, 401, unauthorized, false, "", nil},
		{"POST /bookings, token one character longer", hostileRequest{path: "/bookings", body: bookingBody, header: bearer(testToken+"x", "192.0.2.10")}, 401, unauthorized, false, "", nil},
		{"POST /bookings with the auditor's token", hostileRequest{path: "/bookings", body: bookingBody, header: bearer(auditorToken, "192.0.2.1")}, 403,
			hostileError(`token "audit-team" (role auditor) may not use this endpoint`), false, "", nil},
		{"GET /bookings with the metrics token", hostileRequest{method: http.MethodGet, path: "/bookings", header: bearer(metricsToken, "192.0.2.1")}, 403,
			hostileError(`token "prometheus" (role metrics) may not use this endpoint`), false, "", nil},
		{"GET /audit/events with the metrics token", hostileRequest{method: http.MethodGet, path: "/audit/events", header: bearer(metricsToken, "192.0.2.1")}, 403,
			hostileError(`token "prometheus" (role metrics) may not use this endpoint`), false, "", nil},
		{"GET /metrics with the auditor's token", hostileRequest{method: http.MethodGet, path: "/metrics", header: bearer(auditorToken, "192.0.2.1")}, 403,
			hostileError(`token "audit-team" (role auditor) may not use this endpoint`), false, "", nil},
		{"/ui with the metrics token", hostileRequest{method: http.MethodGet, path: "/ui", header: bearer(metricsToken, "192.0.2.1")}, 403, "-", false, html, nil},
		{"bearer failures past the budget: 429", hostileRequest{method: http.MethodGet, path: bookingPath, header: bearer("wrong-"+testToken, hostileTokenClient)}, 429,
			hostileError("too many failed sign-ins from this address; try again later"), false, "", http.Header{"Retry-After": {"3600"}}},
		{"the right token from that address while over budget: 429", hostileRequest{method: http.MethodGet, path: bookingPath, header: bearer(testToken, hostileTokenClient)}, 429,
			hostileError("too many failed sign-ins from this address; try again later"), false, "", http.Header{"Retry-After": {"3600"}}},

		// ---- sessions (M3, L6)
		{"/ui with a forged session cookie", hostileRequest{method: http.MethodGet, path: "/ui", header: http.Header{"Cookie": {"ledger_ui=" + strings.Repeat("A", 43)}}}, 401, "-", false, html, nil},
		{"login with a wrong token (1)", hostileRequest{path: "/ui/login", body: []byte("token=wrong-1"), header: form(hostileLoginClient)}, 401, "-", false, html, nil},
		{"login with a wrong token (2)", hostileRequest{path: "/ui/login", body: []byte("token=wrong-2"), header: form(hostileLoginClient)}, 401, "-", false, html, nil},
		{"login with a wrong token (3)", hostileRequest{path: "/ui/login", body: []byte("token=wrong-3"), header: form(hostileLoginClient)}, 401, "-", false, html, nil},
		{"login past the failure budget: 429", hostileRequest{path: "/ui/login", body: []byte("token=wrong-4"), header: form(hostileLoginClient)}, 429, "-", false, html, http.Header{"Retry-After": {"3600"}}},
		{"login with the right token past the budget: 429, no session", hostileRequest{path: "/ui/login", body: []byte("token=" + testToken), header: form(hostileLoginClient)}, 429, "-", false, html, http.Header{"Retry-After": {"3600"}}},
		{"login posted by another site", hostileRequest{path: "/ui/login", body: []byte("token=" + testToken), header: form("192.0.2.2", "Sec-Fetch-Site", "cross-site")}, 403, "-", false, html, nil},
		{"login with the metrics token: no session", hostileRequest{path: "/ui/login", body: []byte("token=" + metricsToken), header: form("192.0.2.3")}, 403, "-", false, html, nil},
		{"logout by GET", hostileRequest{method: http.MethodGet, path: "/ui/logout", session: true}, 405, `{"error":"method not allowed; allowed: POST"}`, false, "", nil},
		{"logout posted by another site", hostileRequest{path: "/ui/logout", session: true, header: form("192.0.2.4", "Sec-Fetch-Site", "cross-site")}, 403, "-", false, html, nil},
		{"logout without its CSRF value", hostileRequest{path: "/ui/logout", session: true, body: []byte("csrf=00"), header: form("192.0.2.4")}, 403, "-", false, html, nil},

		// ---- the success page (L3)
		{"success page, another session than the booking's", hostileRequest{method: http.MethodGet, path: bookingPath + "/success?session_id=cs_test_other", header: http.Header{"Accept": {"application/json"}}}, 404, notFound, false, "", nil},
		{"success page, unknown booking", hostileRequest{method: http.MethodGet, path: "/bookings/999999/success?session_id=" + h.booking.sessionID, header: http.Header{"Accept": {"application/json"}}}, 404, notFound, false, "", nil},
		{"success page without a session id", hostileRequest{method: http.MethodGet, path: bookingPath + "/success", header: http.Header{"Accept": {"application/json"}}}, 200,
			`{"booking_id":` + strconv.FormatInt(h.booking.id, 10) + `,"checked":false,"outcome":"not_checked"}`, false, "", nil},

		// ---- /readyz (L4)
		{"/readyz without a token: the status only", hostileRequest{method: http.MethodGet, path: "/readyz"}, 200, `{"status":"ready"}`, false, "", nil},
		{"/readyz with a wrong token", hostileRequest{method: http.MethodGet, path: "/readyz", header: http.Header{"Authorization": {"Bearer nope"}, "X-Forwarded-For": {"192.0.2.5"}}}, 401, unauthorized, false, "", nil},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	// Burn the token rows' address's budget: the rows that follow meet
	// it empty.
	for i := range hostileFailureBurst {
		hdr := bearer(fmt.Sprintf("wrong-%d-%s", i, testToken), hostileTokenClient)
		if status, _, _ := h.do(hostileRequest{method: http.MethodGet, path: bookingPath, header: hdr}); status != 401 {
			t.Fatalf("failure %d: %d", i, status)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := *h
			h.t = t
			before := h.snapshot()
			stripeCalls := len(h.stripe.Requests())
			status, header, body := h.do(tc.req)
			if status != tc.status || (tc.body != "-" && body != tc.body) {
				t.Errorf("answer %d %s\nwant   %d %s", status, hostileCut(body), tc.status, hostileCut(tc.body))
			}
			switch tc.ct {
			case "":
				if ct := header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				if cc := header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", cc)
				}
			case "-":
			default:
				if ct := header.Get("Content-Type"); ct != tc.ct {
					t.Errorf("Content-Type %q, want %q", ct, tc.ct)
				}
			}
			for k, vs := range tc.hdr {
				if got := header.Values(k); !slices.Equal(got, vs) {
					t.Errorf("header %s: %q, want %q", k, got, vs)
				}
			}
			if status < 500 {
				if sig := tc.req.header.Get("Stripe-Signature"); len(sig) > 8 && strings.Contains(body, sig) {
					t.Errorf("the answer echoes the signature header")
				}
				for _, secret := range []string{testToken, auditorToken, metricsToken, hostileSecret} {
					if strings.Contains(body, secret) {
						t.Errorf("the answer holds a secret")
					}
				}
			}
			if n := len(h.stripe.Requests()); n != stripeCalls {
				t.Errorf("%d calls to Stripe", n-stripeCalls)
			}
			after := h.snapshot()
			// The session check of the first snapshot read the UI: one
			// access-log row of its own.
			after.Accesses--
			if tc.unmatch {
				// The design keeps the raw event (an unmatched delivery, or
				// the inbox row of an unhandled type): one row, nothing else.
				if tc.status == 200 {
					if after.Tables.Inbox == before.Tables.Inbox {
						t.Errorf("no inbox row for the ignored event")
					}
					after.Tables.Inbox = before.Tables.Inbox
				} else {
					all := h.store.deliveries(t, "")
					if len(all) == 0 {
						t.Fatal("no delivery row")
					}
					last := all[len(all)-1]
					if after.Tables.NDeliveries != before.Tables.NDeliveries+1 || last.Outcome != "unmatched" || last.BookingID != 0 {
						t.Errorf("want one unmatched delivery without booking; deliveries %d -> %d, last %s %d", before.Tables.NDeliveries, after.Tables.NDeliveries, last.Outcome, last.BookingID)
					}
					after.Tables.Deliveries, before.Tables.Deliveries = "", ""
					after.Tables.NDeliveries = before.Tables.NDeliveries
				}
			}
			if after != before {
				t.Errorf("state changed:\nbefore %+v\nafter  %+v", before, after)
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

// TestUnverifiedBodiesAddNoSeries: thousands of webhook requests with
// random event types — unsigned, forged, cut short, and validly signed but
// of types the ledger does not handle — leave the number of metric series
// as it was, and every event_type label is a handled type or "other".
func TestUnverifiedBodiesAddNoSeries(t *testing.T) {
	t.Parallel()
	h := newHostileHarness(t)
	before := h.series()
	u, _ := url.Parse(h.url)
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(body []byte, sig string) {
		req, _ := http.NewRequest(http.MethodPost, h.url+"/webhooks/stripe/", bytes.NewReader(body))
		if sig != "" {
			req.Header.Set("Stripe-Signature", sig)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	const n = 1000
	for i := range n {
		typ := fmt.Sprintf("junk.%d.%x", i, i*7919)
		body := []byte(`{"id":"evt_junk_` + strconv.Itoa(i) + `","object":"event","type":"` + typ + `"}`)
		post(body, "")                                              // unsigned
		post(body, hostileSign(body, hostileOther, 0))              // signed with another secret
		post(body, "t="+hostileT(hostileNow.Unix())+",v1=deadbeef") // forged
		// Cut short: announced longer than sent, connection closed.
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /webhooks/stripe/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body)+100, body)
		conn.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, conn)
		conn.Close()
		if i%4 == 0 {
			// Verified, but of a type the ledger does not handle.
			ev := h.event(stripe.EventCheckoutSessionCompleted, hostileSet("type", typ), hostileSet("id", "evt_signed_junk_"+strconv.Itoa(i)))
			post(ev, hostileSign(ev, hostileSecret, 0))
		}
	}
	if after := h.series(); after != before {
		t.Fatalf("%d metric series before %d hostile requests, %d after", before, 4*n+n/4, after)
	}
	handled := map[string]bool{"other": true}
	for _, typ := range stripe.HandledEventTypes {
		handled[typ] = true
	}
	families, _ := h.registry.Gather()
	var total float64
	for _, f := range families {
		if f.GetName() != "ledger_webhooks_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
			for _, l := range m.GetLabel() {
				if l.GetName() == "event_type" && !handled[l.GetValue()] {
					t.Errorf("event_type label %q", l.GetValue())
				}
			}
		}
	}
	// Each request was counted once, under a label of the fixed set.
	if want := float64(4*n + n/4); total != want {
		t.Errorf("ledger_webhooks_total sums to %v, want %v", total, want)
	}
}

// The hostile audit also stands for the evidence port, so that the routes
// of a server with every part on include the evidence endpoints.
var _ ledgerhttp.Evidence = (*hostileAudit)(nil)

func (a *hostileAudit) LatestCheckpoint(context.Context) ([]byte, error) {
	return nil, fmt.Errorf("no checkpoint: %w", domain.ErrNotFound)
}

func (a *hostileAudit) EvidenceBundle(context.Context, int64) ([]byte, error) {
	return nil, fmt.Errorf("no checkpoint: %w", domain.ErrNotFound)
}

func (a *hostileAudit) ConsistencyProof(context.Context, uint64, uint64) ([][]byte, error) {
	return nil, fmt.Errorf("no such tree sizes: %w", domain.ErrInvalid)
}
