package http_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v4"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres/idempotency"
	"github.com/booking-ledger/ledger/adapters/postgres/worklist"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/app/apptest"
)

// TestOpenAPIServed: GET /openapi.json answers, without a token, the
// document of openapi.yaml as JSON, which is a valid OpenAPI 3.1 document
// (loadOpenAPI validates it).
func TestOpenAPIServed(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	h := newHarness(t)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		r := h.do(method, "/openapi.json", nil, nil)
		if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s /openapi.json: %d %s", method, r.Status, r.Header.Get("Content-Type"))
		}
		if method == http.MethodHead {
			continue
		}
		var served any
		if err := json.Unmarshal(r.Body, &served); err != nil {
			t.Fatalf("GET /openapi.json is not JSON: %v", err)
		}
		raw, err := os.ReadFile("openapi.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var fromYAML any
		if err := yaml.Unmarshal(raw, &fromYAML); err != nil {
			t.Fatal(err)
		}
		// Through JSON, so that both sides have JSON's types.
		b, err := json.Marshal(fromYAML)
		if err != nil {
			t.Fatal(err)
		}
		var want any
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(served, want) {
			t.Error("GET /openapi.json differs from openapi.yaml")
		}
	}
}

// TestOpenAPIDescribesEveryRoute lists the routes of a server with every
// part on (audit, UI and sessions, monitoring and metrics, obligations)
// and fails for a path or method the document does not describe, and for
// an operation the document describes that the server does not route.
// HEAD is described by the GET it mirrors; a route without methods is a
// path's "any other method: 405".
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	handler, err := ledgerhttp.NewHandler(ledgerhttp.Config{
		Ledger: newService(t, apptest.New(nil), nil, nil), Verifier: verifier, APIToken: testToken,
		Audit: &hostileAudit{}, Sessions: apptest.NewSessions(), Monitoring: pgMonitoring{},
		Registry: prometheus.NewRegistry(), Obligations: worklist.Obligations{}, Idempotency: idempotency.New(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	router, ok := handler.(*mux.Router)
	if !ok {
		t.Fatalf("NewHandler returns a %T, not its *mux.Router: give this test another way to walk the routes", handler)
	}
	routed := map[string]bool{} // "METHOD /path"
	err = router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil // a subrouter: its routes are walked too
		}
		item := doc.Paths.Value(path)
		if item == nil {
			t.Errorf("the server routes %s, the document does not describe it", path)
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil // the path's 405 for every other method
		}
		for _, m := range methods {
			routed[m+" "+path] = true
			described := m
			if m == http.MethodHead {
				described = http.MethodGet
			}
			if item.GetOperation(described) == nil {
				t.Errorf("the server routes %s %s, the document does not describe it", m, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !routed[method+" "+path] {
				t.Errorf("the document describes %s %s, the server does not route it", method, path)
			}
			if method == http.MethodGet && !routed[http.MethodHead+" "+path] {
				t.Errorf("%s answers GET but not HEAD, against the document's convention", path)
			}
		}
	}
	if len(routed) < 20 {
		t.Fatalf("only %d routes walked: %v", len(routed), routed)
	}
}

// TestContractCatchesDrift: the contract's checks fail on answers and
// requests the document does not describe, and pass the described ones.
func TestContractCatchesDrift(t *testing.T) {
	doc, router := loadOpenAPI(t)
	jsonAnswer := func(status int, body string, header ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // as preread does
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	row := `{"id":1,"resource_id":"r","check_in":"2027-01-10","check_out":"2027-01-13","status":"pending","payment_status":"unpaid",` +
		`"amount":1,"currency":"eur","customer_email":"a@b","session_id":null,"payment_intent_id":null,"refunded_amount":0,` +
		`"dispute_status":null,"disputed_amount":0,"dispute_evidence_due_by":null,"created_at":"2027-01-01T00:00:00Z",` +
		`"updated_at":"2027-01-01T00:00:00Z","last_event_position":1}`
	operator := http.Header{"Authorization": {"Bearer " + testToken}}
	auditor := http.Header{"Authorization": {"Bearer " + auditorToken}}
	cases := []struct {
		name          string
		method, path  string
		header        http.Header
		body          string
		handler       http.HandlerFunc
		invalidOK     bool
		wantViolation bool
	}{
		{"described answer", "GET", "/healthz", nil, "", jsonAnswer(200, `{"status":"ok"}`), false, false},
		{"HEAD of a GET", "HEAD", "/healthz", nil, "", jsonAnswer(200, ""), false, false},
		{"a field too many", "GET", "/healthz", nil, "", jsonAnswer(200, `{"status":"ok","extra":1}`), false, true},
		{"a status not listed", "GET", "/healthz", nil, "", jsonAnswer(500, `{"error":"internal error"}`), false, true},
		{"a booking row", "GET", "/bookings/1", auditor, "", jsonAnswer(200, row), false, false},
		{"a booking row with a column too many", "GET", "/bookings/1", operator, "", jsonAnswer(200, strings.Replace(row, `"id":1`, `"id":1,"x":2`, 1)), false, true},
		{"a role the document lists, forbidden", "GET", "/bookings/1", auditor, "", jsonAnswer(403, `{"error":"no"}`), false, true},
		{"503 without Retry-After", "GET", "/bookings/1", operator, "", jsonAnswer(503, `{"error":"busy, try again"}`), false, true},
		{"503 with Retry-After", "GET", "/bookings/1", operator, "", jsonAnswer(503, `{"error":"busy, try again"}`, "Retry-After", "1"), false, false},
		{"405 naming the documented methods", "PUT", "/bookings/1/cancel", operator, "", jsonAnswer(405, `{"error":"method not allowed"}`, "Allow", "POST"), true, false},
		{"405 naming others", "PUT", "/healthz", nil, "", jsonAnswer(405, `{"error":"method not allowed"}`, "Allow", "GET, HEAD, POST"), true, true},
		{"an undocumented method, not marked", "PUT", "/healthz", nil, "", jsonAnswer(405, `{"error":"method not allowed"}`, "Allow", "GET, HEAD"), false, true},
		{"an unknown path", "GET", "/nowhere", nil, "", jsonAnswer(404, `{"error":"no such endpoint"}`), true, false},
		{"an unknown path answered", "GET", "/nowhere", nil, "", jsonAnswer(200, `{}`), true, true},
		{"an invalid body, refused", "POST", "/bookings", operator, `{"resource_id":1}`, jsonAnswer(400, `{"error":"resource_id: must be a JSON string"}`), true, false},
		{"an invalid body, accepted", "POST", "/bookings", operator, `{"resource_id":1}`, jsonAnswer(201, `{}`), true, true},
		{"an invalid body, not marked", "POST", "/bookings", operator, `{"resource_id":1}`, jsonAnswer(400, `{"error":"x"}`), false, true},
		{"an auditor's POST, not marked", "POST", "/bookings/1/cancel", auditor, `{}`, jsonAnswer(403, `{"error":"no"}`), false, true},
		{"a wrong token, refused", "GET", "/bookings/1", http.Header{"Authorization": {"Bearer nope"}}, "",
			jsonAnswer(401, `{"error":"missing or wrong bearer token"}`, "WWW-Authenticate", `Bearer realm="ledger"`), true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &contract{t: t, doc: doc, router: router, roles: map[string]ledgerhttp.Role{testToken: ledgerhttp.RoleOperator, auditorToken: ledgerhttp.RoleAuditor}}
			if tc.invalidOK {
				c.allowInvalid("this case")
			}
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header[k] = v
			}
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			c.wrap(tc.handler).ServeHTTP(httptest.NewRecorder(), req)
			if got := len(c.violations) > 0; got != tc.wantViolation {
				t.Errorf("violation %v, want %v: %v", got, tc.wantViolation, c.violations)
			}
		})
	}
}

// stubMonitoring and stubObligations answer empty: enough for the role
// matrix, which only asks whether a token gets through.
type stubMonitoring struct{}

func (stubMonitoring) Summary(context.Context) (map[string][]map[string]any, error) {
	return map[string][]map[string]any{}, nil
}
func (stubMonitoring) Projections(context.Context) ([]app.ProjectionStatus, error) {
	return []app.ProjectionStatus{}, nil
}

type stubObligations struct{}

func (stubObligations) List(context.Context) ([]app.Obligation, error) { return nil, nil }
func (stubObligations) Ack(context.Context, string, string, string) error {
	return app.ErrObligationNotOpen
}

// TestOpenAPIRoles: for every operation that takes a bearer token, a token
// of each role is let through (neither 401 nor 403) exactly when the
// document lists its role; so the document's roles are the code's
// (allow, auth.go), route by route, for all three roles.
func TestOpenAPIRoles(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ledgerhttp.Config{
		Ledger: newService(t, apptest.New(nil), nil, nil), Verifier: verifier, APIToken: testToken, Tokens: testRoleTokens,
		Audit: &hostileAudit{}, Sessions: apptest.NewSessions(), Monitoring: stubMonitoring{},
		Registry: prometheus.NewRegistry(), Obligations: stubObligations{}, AuthFailureBurst: 100000,
	}
	handler, err := ledgerhttp.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newContract(t, cfg)
	c.allowInvalid("tokens of roles the operations do not take")
	srv := httptest.NewServer(c.wrap(handler))
	t.Cleanup(srv.Close)
	tokens := map[ledgerhttp.Role]string{ledgerhttp.RoleOperator: testToken, ledgerhttp.RoleAuditor: auditorToken, ledgerhttp.RoleMetrics: metricsToken}
	tried := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			security := doc.Security
			if op.Security != nil {
				security = *op.Security
			}
			listed := map[string]bool{}
			bearer := false
			for _, req := range security {
				roles, ok := req["bearerAuth"]
				if !ok {
					continue
				}
				bearer = true
				if len(roles) == 0 {
					for role := range tokens {
						listed[string(role)] = true
					}
				}
				for _, role := range roles {
					listed[role] = true
				}
			}
			if !bearer {
				continue
			}
			url := srv.URL + strings.NewReplacer("{id}", "1").Replace(path)
			for role, token := range tokens {
				req, err := http.NewRequest(method, url, strings.NewReader(`{"reason":"role matrix"}`))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				tried++
				refused := resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden
				if refused == listed[string(role)] {
					t.Errorf("%s %s with a %s token: %d; the document lists roles %v", method, path, role, resp.StatusCode, security)
				}
			}
		}
	}
	if tried < 30 {
		t.Fatalf("only %d requests", tried)
	}
}
