package http_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/sessionstore"
	"github.com/booking-ledger/ledger/adapters/postgres/worklist"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/projections"
)

// newAuditHarness is newHarness with the audit endpoints and the UI.
func newAuditHarness(t testing.TB) *harness {
	t.Helper()
	logs := &logBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	store := newSQLBackend(t, logger)
	db := store.db
	now := time.Now().Truncate(time.Second)
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{testSecret}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := audit.NewAuditor(audit.AuditorConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := sessionstore.New(db, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ledgerhttp.Config{Ledger: newService(t, store.ledger, nil, logger), Verifier: verifier,
		APIToken: testToken, Tokens: testRoleTokens, Logger: logger, Audit: auditor,
		Sessions: sessions, InsecureCookies: true, AuthFailureBurst: 100000, Obligations: worklist.Obligations{DB: db}}
	handler, err := ledgerhttp.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: store, db: db, logs: logs, secrets: []string{testSecret}, now: now, contract: newContract(t, cfg)}
	h.handler = h.contract.wrap(handler)
	h.srv = httptest.NewServer(h.handler)
	t.Cleanup(h.srv.Close)
	return h
}

// auditScenario is one booking with every kind of Stripe delivery: an
// early PaymentIntent failure no booking matched yet, an event type the
// ledger ignores, the completed Checkout Session, and its redelivery.
type auditScenario struct {
	booking   createdBooking
	delivered []event
	// signatures holds the Stripe-Signature header each delivery was sent
	// with, by event id (the last one for a redelivered event).
	signatures map[string]string
	outcomes   []string
}

func (h *harness) auditScenario() auditScenario {
	h.t.Helper()
	req := bookingRequest(newResource("audit"))
	req["session_id"] = stripe.NewSessionID()
	b := h.createBooking(req)
	tb := testBooking(b)
	anonymous := tb
	anonymous.ID = 0
	sc := auditScenario{booking: b, signatures: map[string]string{}}
	send := func(ev event, wantStatus int, outcome string) {
		sig := stripeGoSigner.sign(ev.Body, testSecret, h.now)
		if r := h.postWebhook(ev.Body, sig); r.Status != wantStatus {
			h.t.Fatalf("delivery of %s: %s", ev.Type, r)
		}
		sc.delivered = append(sc.delivered, ev)
		sc.signatures[ev.ID] = sig
		sc.outcomes = append(sc.outcomes, ev.ID+"/"+outcome)
	}
	send(h.buildEvent(stripe.EventPaymentIntentPaymentFailed, anonymous), http.StatusNotFound, "unmatched")
	send(h.buildEvent("charge.succeeded", tb), http.StatusOK, "ignored")
	completed := h.buildEvent(stripe.EventCheckoutSessionCompleted, tb)
	send(completed, http.StatusOK, "processed")
	send(completed, http.StatusOK, "duplicate")
	return sc
}

type historyBody struct {
	BookingID    int64                  `json:"booking_id"`
	Booking      projections.BookingRow `json:"booking"`
	Events       []audit.HistoryEvent   `json:"events"`
	StripeEvents []audit.StripeRecord   `json:"stripe_events"`
	Integrity    audit.HistoryIntegrity `json:"integrity"`
}

func (h *harness) history(path string) historyBody {
	h.t.Helper()
	r := h.api(http.MethodGet, path, nil)
	if r.Status != http.StatusOK {
		h.t.Fatalf("GET %s: %s", path, r)
	}
	var body historyBody
	if err := json.Unmarshal(r.Body, &body); err != nil {
		h.t.Fatal(err)
	}
	return body
}

// TestHistoryEndpoint: the history gives the stream in order and every
// Stripe delivery about the booking, each with the exact body and the
// signature header it came with.
func TestHistoryEndpoint(t *testing.T) {
	h := newAuditHarness(t)
	sc := h.auditScenario()
	id := sc.booking.ID
	body := h.history("/bookings/" + itoa(id) + "/history")
	if body.BookingID != id || body.Booking.Status != "confirmed" || !body.Integrity.Intact {
		t.Fatalf("history of %d: %+v", id, body)
	}
	var types []string
	for i, e := range body.Events {
		types = append(types, e.Type)
		if e.StreamVersion != i+1 || (i > 0 && e.Position <= body.Events[i-1].Position) {
			t.Fatalf("events out of order: %+v", body.Events)
		}
	}
	wantTypes := h.stream(id)
	if !slices.Equal(types, wantTypes) {
		t.Fatalf("history events %v, stream %v", types, wantTypes)
	}
	var got []string
	for _, r := range body.StripeEvents {
		got = append(got, r.ID+"/"+r.Outcome)
		var sent []byte
		for _, ev := range sc.delivered {
			if ev.ID == r.ID {
				sent = ev.Body
			}
		}
		if !bytes.Equal([]byte(r.Payload), sent) {
			t.Errorf("%s: payload differs from the body posted", r.ID)
		}
		if r.Outcome != "duplicate" && r.SignatureHeader != sc.signatures[r.ID] {
			t.Errorf("%s: signature header %q, posted %q", r.ID, r.SignatureHeader, sc.signatures[r.ID])
		}
	}
	if !slices.Equal(got, sc.outcomes) {
		t.Fatalf("stripe events\n got %v\nwant %v", got, sc.outcomes)
	}
	h.sendsInvalidRequests("malformed ids, times and methods")
	h.api(http.MethodGet, "/bookings/999999/history", nil).wantBody(t, http.StatusNotFound, `{"error":"booking not found"}`)
	h.api(http.MethodGet, "/bookings/x/history", nil).wantError(t, http.StatusBadRequest, "id")
	h.api(http.MethodGet, "/bookings/"+itoa(id)+"/history?as_of=yesterday", nil).wantError(t, http.StatusBadRequest, "as_of")
	h.api(http.MethodPost, "/bookings/"+itoa(id)+"/history", nil).wantError(t, http.StatusMethodNotAllowed)
}

// TestBookingAsOfEndpoint: GET /bookings/{id}?as_of= gives the row as it
// stood at each moment of the booking's life.
func TestBookingAsOfEndpoint(t *testing.T) {
	h := newAuditHarness(t)
	sc := h.auditScenario()
	id := sc.booking.ID
	events := h.history("/bookings/" + itoa(id) + "/history").Events
	path := func(t time.Time) string {
		return "/bookings/" + itoa(id) + "?as_of=" + url.QueryEscape(t.Format(time.RFC3339Nano))
	}
	h.api(http.MethodGet, path(events[0].RecordedAt.Add(-time.Microsecond)), nil).wantBody(t, http.StatusNotFound, `{"error":"booking not found"}`)
	for i, e := range events {
		r := h.api(http.MethodGet, path(e.RecordedAt), nil)
		var row projections.BookingRow
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &row) != nil {
			t.Fatalf("as of event %d: %s", i, r)
		}
		// The history cut at the same moment folds the same events.
		cut := h.history("/bookings/" + itoa(id) + "/history?as_of=" + url.QueryEscape(e.RecordedAt.Format(time.RFC3339Nano)))
		rowJSON, _ := json.Marshal(row)
		cutJSON, _ := json.Marshal(cut.Booking)
		if row.LastEventPosition != cut.Events[len(cut.Events)-1].Position || !bytes.Equal(rowJSON, cutJSON) {
			t.Fatalf("as of %s: row %+v, history cut %+v", e.RecordedAt, row, cut.Booking)
		}
		// Events appended together share their recorded_at.
		var want int64
		for _, other := range events {
			if !other.RecordedAt.After(e.RecordedAt) {
				want = other.Position
			}
		}
		if row.LastEventPosition != want {
			t.Fatalf("as of event %d: the row's last event is %d, want %d", i, row.LastEventPosition, want)
		}
	}
	first := h.api(http.MethodGet, path(events[0].RecordedAt), nil).JSON(t)
	if first["status"] != "pending" {
		t.Fatalf("as of creation: %v", first)
	}
	now := h.api(http.MethodGet, "/bookings/"+itoa(id), nil)
	later := h.api(http.MethodGet, path(time.Now().Add(time.Hour)), nil)
	if !bytes.Equal(now.Body, later.Body) {
		t.Fatalf("as of now %s, row %s", later.Body, now.Body)
	}
	h.sendsInvalidRequests("malformed as_of")
	h.api(http.MethodGet, "/bookings/"+itoa(id)+"?as_of=", nil).wantError(t, http.StatusBadRequest, "as_of")
	h.api(http.MethodGet, "/bookings/"+itoa(id)+"?as_of=2027-13-01", nil).wantError(t, http.StatusBadRequest, "as_of")
}

// TestAuditEventsPaging: JSON lines in position order; pages of any size
// concatenate to one big page; bad parameters are named.
func TestAuditEventsPaging(t *testing.T) {
	h := newAuditHarness(t)
	for range 3 {
		h.auditScenario()
	}
	all := h.api(http.MethodGet, "/audit/events?limit=10000", nil)
	if all.Status != http.StatusOK || all.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("GET /audit/events: %s %v", all, all.Header)
	}
	lines := strings.Split(strings.TrimSuffix(string(all.Body), "\n"), "\n")
	var last int64
	for _, l := range lines {
		var e audit.ExportLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if e.Position <= last {
			t.Fatalf("positions out of order: %d after %d", e.Position, last)
		}
		last = e.Position
	}
	if c := h.counts(); len(lines) != c.Events {
		t.Fatalf("%d lines, %d events", len(lines), c.Events)
	}
	var paged bytes.Buffer
	after := "0"
	for {
		r := h.api(http.MethodGet, "/audit/events?limit=4&after="+after, nil)
		if r.Status != http.StatusOK {
			t.Fatal(r)
		}
		paged.Write(r.Body)
		if n, _ := strconv.Atoi(r.Header.Get("X-Ledger-Events")); n < 4 {
			break
		}
		after = r.Header.Get("X-Ledger-Last-Position")
	}
	if !bytes.Equal(paged.Bytes(), all.Body) {
		t.Fatalf("pages differ from the whole")
	}
	h.sendsInvalidRequests("out-of-range paging")
	for _, q := range []string{"after=-1", "after=x", "limit=0", "limit=10001", "limit=x"} {
		h.api(http.MethodGet, "/audit/events?"+q, nil).wantError(t, http.StatusBadRequest, strings.Split(q, "=")[0])
	}
}

// TestAuditEndpointsRequireToken: every booking, audit and UI endpoint
// answers 401 without the token or with a wrong one (the UI with its
// login page), and serves it with the token.
func TestAuditEndpointsRequireToken(t *testing.T) {
	h := newAuditHarness(t)
	sc := h.auditScenario()
	id := itoa(sc.booking.ID)
	h.sendsInvalidRequests("missing and wrong tokens")
	paths := []string{"/bookings", "/bookings/" + id, "/bookings/" + id + "?as_of=2030-01-01T00:00:00Z",
		"/bookings/" + id + "/history", "/audit/events", "/ui", "/ui/bookings/" + id, "/ui?q=" + id}
	for _, p := range paths {
		for name, auth := range map[string]string{"none": "", "wrong": "Bearer nope", "prefix": "Bearer " + testToken[:len(testToken)-1],
			"longer": "Bearer " + testToken + "x", "basic": "Basic " + testToken} {
			hdr := http.Header{}
			if auth != "" {
				hdr.Set("Authorization", auth)
			}
			r := h.do(http.MethodGet, p, hdr, nil)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("GET %s with %s token: %d", p, name, r.Status)
			}
			if strings.HasPrefix(p, "/ui") && !strings.Contains(string(r.Body), `name="token"`) {
				t.Errorf("GET %s with %s token: no login form", p, name)
			}
		}
	}
	var logged int
	if err := h.db.QueryRow(`SELECT count(*) FROM audit_access_log`).Scan(&logged); err != nil || logged != 0 {
		t.Fatalf("refused reads left %d access log rows (%v)", logged, err)
	}
	for _, p := range paths {
		// The UI search redirects to the booking page; the client follows.
		r := h.do(http.MethodGet, p, http.Header{"Authorization": {"Bearer " + testToken}}, nil)
		if r.Status != http.StatusOK {
			t.Errorf("GET %s with the token: %s", p, r)
		}
	}
	if err := h.db.QueryRow(`SELECT count(*) FROM audit_access_log`).Scan(&logged); err != nil || logged < 6 {
		t.Fatalf("served audit reads left %d access log rows (%v)", logged, err)
	}
}

// TestAuditReadsAreLogged: each audit read leaves who (a token
// fingerprint, never the token), what, when, from where.
func TestAuditReadsAreLogged(t *testing.T) {
	h := newAuditHarness(t)
	sc := h.auditScenario()
	id := itoa(sc.booking.ID)
	before := time.Now().Add(-time.Second)
	reads := []struct{ path, action, target string }{
		{"/bookings/" + id + "/history", "history", id},
		{"/bookings/" + id + "?as_of=2030-01-01T00:00:00Z", "as_of", id + "@2030-01-01T00:00:00Z"},
		{"/audit/events?after=2&limit=5", "events", "after=2&limit=5"},
		{"/ui/bookings/" + id, "ui_booking", id},
		{"/ui?q=" + url.QueryEscape(*sc.booking.SessionID), "ui_search", *sc.booking.SessionID},
	}
	for _, rd := range reads {
		hdr := http.Header{"Authorization": {"Bearer " + testToken}, "User-Agent": {"auditor-test/" + rd.action}}
		if r := h.do(http.MethodGet, rd.path, hdr, nil); r.Status >= 400 {
			t.Fatalf("GET %s: %s", rd.path, r)
		}
		var actor, channel, target, remote string
		var at time.Time
		err := h.db.QueryRow(`SELECT actor, channel, target, remote_addr, accessed_at FROM audit_access_log
			WHERE action = $1 AND user_agent = $2 ORDER BY id DESC LIMIT 1`, rd.action, "auditor-test/"+rd.action).
			Scan(&actor, &channel, &target, &remote, &at)
		if err != nil {
			t.Fatalf("%s: no access log row: %v", rd.path, err)
		}
		if !strings.HasPrefix(actor, "token:") || strings.Contains(actor, testToken) || target != rd.target ||
			!strings.HasPrefix(remote, "127.0.0.1:") || at.Before(before) || (channel != "http" && channel != "ui") {
			t.Errorf("%s: logged actor %q channel %q target %q remote %q at %s", rd.path, actor, channel, target, remote, at)
		}
	}
}

// TestUISearch: the UI finds a booking by id, Checkout Session id,
// PaymentIntent id or Stripe event id, says so when nothing matches, and
// shows a booking as of a moment.
func TestUISearch(t *testing.T) {
	h := newAuditHarness(t)
	sc := h.auditScenario()
	h.auditScenario() // another booking, not to be found
	id := itoa(sc.booking.ID)
	row := h.api(http.MethodGet, "/bookings/"+id, nil).JSON(t)
	auth := http.Header{"Authorization": {"Bearer " + testToken}}
	for _, q := range []string{id, "#" + id, *sc.booking.SessionID, row["payment_intent_id"].(string), sc.delivered[2].ID} {
		r := h.do(http.MethodGet, "/ui?q="+url.QueryEscape(q), auth, nil)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `<span id="booking-id">`+id+`</span>`) {
			t.Errorf("search %q: %d, not booking %s", q, r.Status, id)
		}
	}
	for _, q := range []string{"999999", "cs_test_nothing", "pi_nothing"} {
		r := h.do(http.MethodGet, "/ui?q="+url.QueryEscape(q), auth, nil)
		if r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "No booking matches") {
			t.Errorf("search %q: %d", q, r.Status)
		}
	}
	events := h.history("/bookings/" + id + "/history").Events
	first := events[0].RecordedAt.Format(time.RFC3339Nano)
	r := h.do(http.MethodGet, "/ui/bookings/"+id+"?as_of="+url.QueryEscape(first), auth, nil)
	body := string(r.Body)
	if r.Status != http.StatusOK || !strings.Contains(body, `<dd id="status">pending / unpaid</dd>`) || strings.Count(body, `<tr data-position=`) != 1 {
		t.Fatalf("as of the first event: %d\n%s", r.Status, body)
	}
	r = h.do(http.MethodGet, "/ui/bookings/"+id+"?as_of=soon", auth, nil)
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "as_of") {
		t.Fatalf("bad as_of: %d", r.Status)
	}
	if r := h.do(http.MethodGet, "/ui/bookings/999999", auth, nil); r.Status != http.StatusNotFound {
		t.Fatalf("unknown booking: %d", r.Status)
	}
}

// TestUILoginCookie: the login form sets an HttpOnly, SameSite=Strict
// cookie that is not the token and opens the UI; a wrong token does not;
// logout clears it.
func TestUILoginCookie(t *testing.T) {
	h := newAuditHarness(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) *http.Response {
		resp, err := noRedirect.PostForm(h.srv.URL+path, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("/ui/login", url.Values{"token": {"wrong"}}); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp := post("/ui/login", url.Values{"token": {testToken}, "next": {"https://evil.example/ui"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || strings.Contains(cookies[0].Value, testToken) {
		t.Fatalf("cookie %+v", cookies)
	}
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/ui", nil)
	req.AddCookie(cookies[0])
	got, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got.Body.Close()
	if got.StatusCode != http.StatusOK {
		t.Fatalf("with the cookie: %d", got.StatusCode)
	}
	h.sendsInvalidRequests("the UI cookie on the API")
	// The cookie opens the UI only: the API still wants the bearer token.
	req, _ = http.NewRequest(http.MethodGet, h.srv.URL+"/audit/events", nil)
	req.AddCookie(cookies[0])
	if got, err = noRedirect.Do(req); err != nil || got.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API with the UI cookie: %v %v", got.StatusCode, err)
	}
	got.Body.Close()
	out := post("/ui/logout", nil)
	if c := out.Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Fatalf("logout cookies %+v", c)
	}
}
