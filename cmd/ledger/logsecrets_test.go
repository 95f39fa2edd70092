package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	httpapi "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
	"github.com/booking-ledger/ledger/adapters/stripe"
)

// e2eLogs is every log line of the servers the end-to-end tests start
// (startApp), at debug level, and the secrets they were configured with.
// TestMain searches the lines for the secrets once every test has run.
var e2eLogs = struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	secrets map[string]string // secret -> what it is
}{secrets: map[string]string{}}

type e2eSink struct{}

func (e2eSink) Write(p []byte) (int, error) {
	e2eLogs.mu.Lock()
	defer e2eLogs.mu.Unlock()
	return e2eLogs.buf.Write(p)
}

// e2eLogger is the logger of an end-to-end server configured with cfg: it
// logs JSON at debug level, as production would with debug on, into
// e2eLogs, and cfg's secrets are registered for the search.
func e2eLogger(cfg Config) *slog.Logger {
	registerSecrets(cfg)
	return slog.New(slog.NewJSONHandler(e2eSink{}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func registerSecrets(cfg Config) {
	e2eLogs.mu.Lock()
	defer e2eLogs.mu.Unlock()
	add := func(secret, what string) {
		if len(secret) >= 8 {
			e2eLogs.secrets[secret] = what
		}
	}
	for i, s := range cfg.WebhookSecrets {
		add(s, fmt.Sprintf("STRIPE_WEBHOOK_SECRET %d", i+1))
	}
	add(cfg.APIToken, "LEDGER_API_TOKEN")
	for _, t := range cfg.Edge.Tokens {
		add(t.Secret, "LEDGER_API_TOKENS "+t.Name)
	}
	add(cfg.StripeSecretKey, "STRIPE_SECRET_KEY")
	if pc, err := pq.NewConfig(cfg.DatabaseURL); err == nil {
		add(pc.Password, "the database password")
	}
}

// leakedSecrets names each registered secret found in logs.
func leakedSecrets(logs []byte) []string {
	e2eLogs.mu.Lock()
	defer e2eLogs.mu.Unlock()
	var out []string
	for secret, what := range e2eLogs.secrets {
		if bytes.Contains(logs, []byte(secret)) {
			out = append(out, what)
		}
	}
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	e2eLogs.mu.Lock()
	logs := bytes.Clone(e2eLogs.buf.Bytes())
	e2eLogs.mu.Unlock()
	if leaked := leakedSecrets(logs); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the end-to-end servers' logs (%d bytes) hold secrets: %s\n", len(logs), strings.Join(leaked, ", "))
		code = 1
	}
	os.Exit(code)
}

// TestNoSecretInLogs: a server given a database password, a webhook
// secret, an operator token and named tokens logs its configuration at
// start (App.Start) and then meets wrong tokens, forged webhooks, a UI
// sign-in and a refused one, and a readiness probe with details; none of
// its log lines holds any of those secrets. (Every other end-to-end test's lines are
// searched too, by TestMain.)
func TestNoSecretInLogs(t *testing.T) {
	u, err := url.Parse(pgtest.NewEmptyURL(t))
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts local connections, so the password is sent
	// and never checked: enough to see whether it is printed.
	u.User = url.UserPassword(u.User.Username(), "pw-0f1e2d3c4b5a6978")
	cfg := testConfig(t, u.String())
	cfg.Edge.Tokens = []httpapi.Token{
		{Name: "auditors", Role: httpapi.RoleAuditor, Secret: "auditor-secret-0123456789abcdefghijk"},
		{Name: "scraper", Role: httpapi.RoleMetrics, Secret: "metrics-secret-0123456789abcdefghijk"},
	}
	cfg.Edge.InsecureCookies = true
	var own bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(io.MultiWriter(&own, e2eSink{}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	registerSecrets(cfg)
	app := NewApp(cfg, logger) // Start logs the configuration
	if err := app.Start(context.Background()); err != nil {
		app.Close()
		t.Fatal(err)
	}
	defer app.Close()
	base := "http://" + app.Addr()
	send := func(method, path, body string, hdr map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	steps := []struct {
		method, path, body string
		hdr                map[string]string
		want               int
	}{
		{"GET", "/bookings", "", map[string]string{"Authorization": "Bearer " + cfg.APIToken + "x"}, 401},
		{"GET", "/metrics", "", map[string]string{"Authorization": "Bearer " + cfg.Edge.Tokens[0].Secret}, 403},
		{"GET", "/readyz", "", map[string]string{"Authorization": "Bearer " + cfg.Edge.Tokens[1].Secret}, 200},
		{"POST", "/webhooks/stripe/", `{"id":"evt_1","type":"x"}`, map[string]string{"Stripe-Signature": "t=1,v1=" + cfg.WebhookSecrets[0]}, 400},
		{"POST", "/webhooks/stripe/", `{"id":"evt_1","type":"x"}`, map[string]string{"Stripe-Signature": stripe.Sign([]byte(`{"id":"evt_1"`), cfg.WebhookSecrets[0], time.Now())}, 400},
		{"POST", "/ui/login", "token=" + url.QueryEscape(cfg.WebhookSecrets[0]), form, 401},
		{"POST", "/ui/login", "token=" + url.QueryEscape(cfg.Edge.Tokens[0].Secret), form, 303},
		{"GET", "/bookings/1", "", map[string]string{"Authorization": "Bearer " + cfg.APIToken}, 404},
	}
	for _, s := range steps {
		if got := send(s.method, s.path, s.body, s.hdr); got != s.want {
			t.Errorf("%s %s: %d, want %d", s.method, s.path, got, s.want)
		}
	}
	app.Close()
	if !strings.Contains(own.String(), `"database_url":"postgres@`) {
		t.Errorf("the configuration line does not show the redacted database URL:\n%s", own.String())
	}
	if leaked := leakedSecrets(own.Bytes()); len(leaked) > 0 {
		t.Fatalf("the log holds %s", strings.Join(leaked, ", "))
	}
}
