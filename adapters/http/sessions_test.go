package http_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	ledgerhttp "github.com/booking-ledger/ledger/adapters/http"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app/apptest"
)

// TestUISessionLifetime: a UI session ends after 8 h unused and 24 h in
// all, whatever its use; at sign-out, for a copy of the cookie too; and
// when the token it was opened with is replaced or removed — checked on a
// settable clock, with the session store of the tests (the SQL store is
// exercised end to end by the UI tests on PostgreSQL).
func TestUISessionLifetime(t *testing.T) {
	t.Parallel()
	sessions := apptest.NewSessions()
	var mu sync.Mutex
	now := time.Date(2027, 1, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	verifier, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: []string{testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	server := func(tokens ...ledgerhttp.Token) string {
		cfg := ledgerhttp.Config{
			Ledger: newService(t, apptest.New(nil), nil, nil), Verifier: verifier, APIToken: testToken, Tokens: tokens,
			Audit: &hostileAudit{}, Sessions: sessions, InsecureCookies: true, Now: clock,
		}
		h, err := ledgerhttp.NewHandler(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(checkContract(t, cfg, h))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	login := func(base, token string) *http.Cookie {
		t.Helper()
		resp, err := noRedirect.PostForm(base+"/ui/login", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "ledger_ui" && c.Value != "" {
				return c
			}
		}
		t.Fatalf("login: %d without a cookie", resp.StatusCode)
		return nil
	}
	status := func(base string, c *http.Cookie) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/ui", nil)
		req.AddCookie(c)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	auditor := ledgerhttp.Token{Name: "ann", Role: ledgerhttp.RoleAuditor, Secret: auditorToken}
	base := server(auditor)

	// Used every 7 hours, it lives 24 hours and no longer.
	used := login(base, testToken)
	for _, step := range []time.Duration{7 * time.Hour, 7 * time.Hour, 7 * time.Hour, 3 * time.Hour} {
		advance(step)
		if got := status(base, used); got != http.StatusOK {
			t.Fatalf("used session at %v: %d", step, got)
		}
	}
	advance(time.Second)
	if got := status(base, used); got != http.StatusUnauthorized {
		t.Fatalf("session past 24 h: %d", got)
	}

	// Unused for 8 hours, it ends.
	idle := login(base, testToken)
	advance(8*time.Hour + time.Second)
	if got := status(base, idle); got != http.StatusUnauthorized {
		t.Fatalf("session idle 8 h: %d", got)
	}

	// A session of the auditor's token ends when the token is replaced
	// or removed, and opens again only where the token is unchanged.
	ann := login(base, auditorToken)
	replaced := server(ledgerhttp.Token{Name: "ann", Role: ledgerhttp.RoleAuditor, Secret: auditorToken + "-rotated"})
	removed := server()
	if status(base, ann) != http.StatusOK || status(replaced, ann) != http.StatusUnauthorized || status(removed, ann) != http.StatusUnauthorized {
		t.Fatalf("token replaced or removed: %d, %d, %d", status(base, ann), status(replaced, ann), status(removed, ann))
	}
	demoted := server(ledgerhttp.Token{Name: "ann", Role: ledgerhttp.RoleMetrics, Secret: auditorToken})
	if got := status(demoted, ann); got == http.StatusOK {
		t.Fatalf("a session of a token now without the UI's role: %d", got)
	}
}
