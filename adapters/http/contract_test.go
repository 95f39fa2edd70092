package http_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
)

// The contract: every request a test sends to a handler built by the
// harness (newHarness, newAuditHarness and the tests that build their own
// server) and every answer it gets are checked against openapi.yaml, the
// document GET /openapi.json serves (docs/openapi.yaml links to it). A
// request or answer the document does not describe fails the test at its
// end, with every violation listed. See docs/ARCHITECTURE.md ("Keep the
// OpenAPI document in step").
//
// The checks, besides kin-openapi's request and response validation
// (openapi3filter, JSON Schema 2020-12 for an OpenAPI 3.1 document):
//   - the answer's status must be listed for the operation;
//   - HEAD is answered as the GET it mirrors (the document's convention);
//   - a method the path does not list must be answered 405 with Allow
//     naming exactly the documented methods, or with one of the errors that
//     come before the method is looked at (401, 403, 429, 408, 413, 400,
//     503), each as the document's shared responses describe them;
//   - an unknown path must be answered 404 "no such endpoint";
//   - a documented path answered 404 "no such endpoint" is a part the
//     test's server was built without (no Audit, no Obligations, ...):
//     TestOpenAPIDescribesEveryRoute checks the full server has the route;
//   - a request with a configured token whose role the operation lists
//     must not be answered 401 or 403 (the document's roles are the code's);
//   - a request the document calls invalid fails the test, unless the
//     test declared that it sends such requests on purpose
//     (sendsInvalidRequests); even then it must be refused (4xx or 5xx),
//     never accepted, and its answer must be described.

var (
	openAPIOnce   sync.Once
	openAPIDoc    *openapi3.T
	openAPIRouter routers.Router
	openAPIErr    error
)

// loadOpenAPI loads and validates openapi.yaml, once per test binary.
func loadOpenAPI(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	openAPIOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/x-ndjson", ndjsonDecoder)
		// The webhook reads its body as JSON whatever its Content-Type
		// (the document's "*/*"); no other media type falls through to it.
		openapi3filter.RegisterBodyDecoder("*/*", openapi3filter.JSONBodyDecoder)
		raw, err := os.ReadFile("openapi.yaml")
		if err != nil {
			openAPIErr = err
			return
		}
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(raw)
		if err != nil {
			openAPIErr = fmt.Errorf("load openapi.yaml: %w", err)
			return
		}
		if err := doc.Validate(loader.Context); err != nil {
			openAPIErr = fmt.Errorf("openapi.yaml is not a valid OpenAPI document: %w", err)
			return
		}
		router, err := gorillamux.NewRouter(doc)
		if err != nil {
			openAPIErr = fmt.Errorf("route openapi.yaml: %w", err)
			return
		}
		openAPIDoc, openAPIRouter = doc, router
	})
	if openAPIErr != nil {
		t.Fatal(openAPIErr)
	}
	return openAPIDoc, openAPIRouter
}

// ndjsonDecoder reads JSON lines as the array of their values, which is how
// the document describes GET /audit/events (a sequence of lines).
func ndjsonDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	dec := json.NewDecoder(body)
	dec.UseNumber()
	out := []any{}
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, &openapi3filter.ParseError{Kind: openapi3filter.KindInvalidFormat, Cause: err}
		}
		out = append(out, v)
	}
}

// contract checks the requests and answers of one test's server.
type contract struct {
	t      testing.TB
	doc    *openapi3.T
	router routers.Router
	// roles are the server's configured tokens.
	roles map[string]ledgerhttp.Role
	// invalid is why the test sends requests the document calls invalid
	// (nil: it does not).
	invalid atomic.Pointer[string]

	mu         sync.Mutex
	checked    int
	violations []string
}

// newContract returns the contract of a server configured with cfg's
// tokens; the test fails at its end if a violation was seen.
func newContract(t testing.TB, cfg ledgerhttp.Config) *contract {
	t.Helper()
	doc, router := loadOpenAPI(t)
	c := &contract{t: t, doc: doc, router: router, roles: map[string]ledgerhttp.Role{}}
	if cfg.APIToken != "" {
		c.roles[cfg.APIToken] = ledgerhttp.RoleOperator
	}
	for _, tok := range cfg.Tokens {
		c.roles[tok.Secret] = tok.Role
	}
	t.Cleanup(c.report)
	return c
}

// checkContract wraps the handler of a server configured with cfg in the
// contract's checks.
func checkContract(t testing.TB, cfg ledgerhttp.Config, handler http.Handler) http.Handler {
	t.Helper()
	return newContract(t, cfg).wrap(handler)
}

// allowInvalid declares that the test sends requests the document calls
// invalid on purpose (garbage, forged signatures, wrong tokens): they pass,
// as long as they are refused and their answers are described.
func (c *contract) allowInvalid(reason string) { c.invalid.Store(&reason) }

func (c *contract) report() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.violations) == 0 {
		return
	}
	shown := c.violations
	if len(shown) > 25 {
		shown = shown[:25]
	}
	c.t.Errorf("%d of %d requests or answers are not described by openapi.yaml (fix the document or the code; see docs/ARCHITECTURE.md):\n%s",
		len(c.violations), c.checked, strings.Join(shown, "\n"))
}

func (c *contract) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request as it arrived, for the check after the handler.
		seen := r.Clone(context.Background())
		var body *teeBody
		if r.Body != nil && r.Body != http.NoBody {
			// On a copy: net/http looks at the original request's body
			// after the handler (to drain or close an unread one).
			body = &teeBody{rc: r.Body}
			r = r.WithContext(r.Context())
			r.Body = body
		}
		rec := &contractRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		c.check(seen, body, rec)
	})
}

// teeBody keeps what the handler read of the request body.
type teeBody struct {
	rc  io.ReadCloser
	mu  sync.Mutex
	buf bytes.Buffer
	eof bool
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	b.buf.Write(p[:n])
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	b.mu.Unlock()
	return n, err
}

func (b *teeBody) Close() error { return b.rc.Close() }

// read is the body read and whether it was read whole.
func (b *teeBody) read() ([]byte, bool) {
	if b == nil {
		return nil, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes()), b.eof
}

// contractRecorder passes an answer through and keeps its status, header
// and body.
type contractRecorder struct {
	http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
}

func (r *contractRecorder) WriteHeader(status int) {
	if r.status == 0 && status >= 200 {
		r.status, r.header = status, r.ResponseWriter.Header().Clone()
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *contractRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	r.body.Write(p)
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (the body
// deadline is set through it).
func (r *contractRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// answer is the recorded answer as a client sees it: a Content-Type sniffed
// when the handler set none, the body decompressed.
func (r *contractRecorder) answer() (int, http.Header, []byte, error) {
	status, header := r.status, r.header
	if status == 0 {
		status, header = http.StatusOK, r.ResponseWriter.Header().Clone()
	}
	body := r.body.Bytes()
	if header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return status, header, nil, fmt.Errorf("gzip answer: %w", err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			return status, header, nil, fmt.Errorf("gzip answer: %w", err)
		}
	}
	if header.Get("Content-Type") == "" && len(body) > 0 {
		header.Set("Content-Type", http.DetectContentType(body))
	}
	return status, header, body, nil
}

func (c *contract) violation(r *http.Request, status int, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations = append(c.violations, fmt.Sprintf("  %s %s → %d: %s", r.Method, r.URL.RequestURI(), status, fmt.Sprintf(format, args...)))
}

func (c *contract) check(r *http.Request, tee *teeBody, rec *contractRecorder) {
	c.mu.Lock()
	c.checked++
	c.mu.Unlock()
	status, header, body, err := rec.answer()
	if err != nil {
		c.violation(r, status, "%v", err)
		return
	}
	reqBody, whole := tee.read()
	// The request for the router and the validator: HEAD is checked as the
	// GET it mirrors.
	req := r.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	head := r.Method == http.MethodHead
	if head {
		req.Method = http.MethodGet
	}
	invalid := c.invalid.Load()
	requestProblem := func(format string, args ...any) {
		switch {
		case invalid == nil:
			c.violation(r, status, "request not described: "+format, args...)
		case status < 400:
			c.violation(r, status, "a request the document calls invalid was accepted: "+format, args...)
		}
	}

	route, params, err := c.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		requestProblem("no such path in the document")
		c.checkShared(r, status, header, body, map[int]string{http.StatusNotFound: "NoSuchEndpoint"})
		return
	case errors.Is(err, routers.ErrMethodNotAllowed):
		requestProblem("the path does not take %s", r.Method)
		c.checkOtherMethod(r, req, status, header, body)
		return
	case err != nil:
		c.violation(r, status, "routing: %v", err)
		return
	}

	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: c.authenticate, ExcludeRequestBody: !whole},
	}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	if reqErr != nil {
		requestProblem("%v", oneLine(reqErr))
	}

	if status == http.StatusNotFound && c.matchesShared(r, status, header, body, "NoSuchEndpoint") {
		// A documented route this test's server was built without.
		return
	}
	if route.Operation.Responses.Status(status) == nil && route.Operation.Responses.Default() == nil {
		c.violation(r, status, "status %d is not documented for %s %s", status, route.Method, route.Path)
		return
	}
	if reqErr == nil {
		c.checkRoles(r, route, status)
	}
	if head {
		return
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.violation(r, status, "answer not described: %v (body %.300s)", oneLine(err), body)
	}
}

// checkRoles: a configured token whose role the operation lists is never
// refused (401) or forbidden (403).
func (c *contract) checkRoles(r *http.Request, route *routers.Route, status int) {
	if status != http.StatusUnauthorized && status != http.StatusForbidden {
		return
	}
	role, ok := c.bearerRole(r)
	if !ok {
		return
	}
	security := route.Operation.Security
	if security == nil {
		security = &c.doc.Security
	}
	for _, req := range *security {
		if roles, ok := req["bearerAuth"]; ok && (len(roles) == 0 || slices.Contains(roles, string(role))) {
			c.violation(r, status, "the document lets role %s use %s %s, the server answered %d", role, route.Method, route.Path, status)
			return
		}
	}
}

// checkOtherMethod checks the answer to a method the path does not list:
// 405 with Allow naming the documented methods (HEAD with GET), or an
// error that comes before the method is looked at.
func (c *contract) checkOtherMethod(r, req *http.Request, status int, header http.Header, body []byte) {
	if status != http.StatusMethodNotAllowed {
		c.checkShared(r, status, header, body, map[int]string{
			http.StatusUnauthorized: "Unauthorized", http.StatusForbidden: "Forbidden",
			http.StatusTooManyRequests: "TooManyRequests", http.StatusRequestTimeout: "BodyTimeout",
			http.StatusRequestEntityTooLarge: "TooLarge", http.StatusBadRequest: "BadRequest",
			http.StatusServiceUnavailable: "Unavailable",
		})
		return
	}
	c.checkShared(r, status, header, body, map[int]string{http.StatusMethodNotAllowed: "MethodNotAllowed"})
	var want []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace} {
		probe := req.Clone(context.Background())
		probe.Method = m
		if m == http.MethodHead {
			probe.Method = http.MethodGet
		}
		if _, _, err := c.router.FindRoute(probe); err == nil {
			want = append(want, m)
		}
	}
	got := strings.Split(header.Get("Allow"), ", ")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		c.violation(r, status, "Allow %q, the document lists %q", header.Get("Allow"), strings.Join(want, ", "))
	}
}

// checkShared checks an answer against the shared response of its status
// (components.responses) in byStatus.
func (c *contract) checkShared(r *http.Request, status int, header http.Header, body []byte, byStatus map[int]string) {
	name, ok := byStatus[status]
	if !ok {
		c.violation(r, status, "not a documented answer here (want one of %v)", byStatus)
		return
	}
	if err := c.validateShared(r, status, header, body, name); err != nil {
		c.violation(r, status, "answer not described by %s: %v (body %.300s)", name, oneLine(err), body)
	}
}

func (c *contract) matchesShared(r *http.Request, status int, header http.Header, body []byte, name string) bool {
	return c.validateShared(r, status, header, body, name) == nil
}

// validateShared validates an answer against components.responses[name].
func (c *contract) validateShared(r *http.Request, status int, header http.Header, body []byte, name string) error {
	ref := c.doc.Components.Responses[name]
	if ref == nil {
		return fmt.Errorf("openapi.yaml has no components.responses.%s", name)
	}
	if r.Method == http.MethodHead {
		return nil
	}
	op := openapi3.NewOperation()
	op.Responses = openapi3.NewResponses(openapi3.WithStatus(status, ref))
	route := &routers.Route{Spec: c.doc, Path: r.URL.Path, Method: r.Method, Operation: op, PathItem: &openapi3.PathItem{}}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, Route: route},
		Status:                 status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	out.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), out)
}

// authenticate is the validator's view of the security schemes: a bearer
// token must be one the server is configured with, of a role the
// requirement lists (none listed: any role); the UI's session cookie must
// be present (whether the session is open is the server's business).
func (c *contract) authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch in.SecuritySchemeName {
	case "bearerAuth":
		role, ok := c.bearerRole(r)
		if !ok {
			return in.NewError(errors.New("no bearer token the server knows"))
		}
		if len(in.Scopes) > 0 && !slices.Contains(in.Scopes, string(role)) {
			return in.NewError(fmt.Errorf("a %s token, the operation takes %v", role, in.Scopes))
		}
		return nil
	case "uiSession":
		if _, err := r.Cookie("ledger_ui"); err != nil {
			return in.NewError(errors.New("no session cookie"))
		}
		return nil
	}
	return in.NewError(fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName))
}

// bearerRole is the role of the request's bearer token, if the server is
// configured with it.
func (c *contract) bearerRole(r *http.Request) (ledgerhttp.Role, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	role, ok := c.roles[token]
	return role, ok
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
