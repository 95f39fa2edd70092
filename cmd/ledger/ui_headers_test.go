package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/booking-ledger/ledger/adapters/postgres/pgtest"
)

// wantCSP is the auditor UI's Content-Security-Policy, written out: no
// script, no foreign resource, no framing, forms only to the UI itself.
const wantCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// TestUICookieAndSecurityHeaders: through the real App, over HTTP and
// HTTPS, the auditor UI's session cookie is HttpOnly, SameSite=Strict,
// scoped to /ui, Secure (outside --dev, whatever the scheme: a TLS proxy
// is in front), and cleared on logout — which needs the page's CSRF value —
// with the same attributes, after which it opens nothing; every UI page (login, wrong token, home, booking) carries
// the CSP and anti-framing headers.
func TestUICookieAndSecurityHeaders(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "http"
		if useTLS {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			// Outside --dev (which turns Secure off): set up as `ledger
			// migrate` does and served as the runtime role.
			cfg := testConfig(t, pgtest.NewEmptyURL(t))
			cfg.DatabaseURL, cfg.Dev = runtimeURLFor(t, cfg.DatabaseURL), false
			transport := &http.Transport{}
			scheme := "http"
			if useTLS {
				certFile, keyFile, pool := selfSignedCert(t)
				cfg.TLSCert, cfg.TLSKey = certFile, keyFile
				transport.TLSClientConfig = &tls.Config{RootCAs: pool}
				scheme = "https"
			}
			app := startApp(t, cfg)
			base := scheme + "://" + app.Addr()
			client := &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			if !useTLS {
				created := <-sdDo(http.MethodPost, base+"/bookings", sdBooking("room-ui"))
				if created.err != nil || created.status != http.StatusCreated {
					t.Fatalf("create booking: %d %s %v", created.status, created.body, created.err)
				}
			}

			do := func(method, path string, form url.Values, cookie *http.Cookie) *http.Response {
				t.Helper()
				var req *http.Request
				if form != nil {
					req, _ = http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				} else {
					req, _ = http.NewRequest(method, base+path, nil)
				}
				if cookie != nil {
					req.AddCookie(cookie)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp
			}
			checkHeaders := func(what string, resp *http.Response) {
				t.Helper()
				h := resp.Header
				if h.Get("Content-Security-Policy") != wantCSP || h.Get("X-Frame-Options") != "DENY" ||
					h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
					t.Errorf("%s (%d): CSP %q, X-Frame-Options %q, X-Content-Type-Options %q, Cache-Control %q",
						what, resp.StatusCode, h.Get("Content-Security-Policy"), h.Get("X-Frame-Options"),
						h.Get("X-Content-Type-Options"), h.Get("Cache-Control"))
				}
			}
			checkCookie := func(what string, resp *http.Response, wantMaxAge int) *http.Cookie {
				t.Helper()
				lines := resp.Header.Values("Set-Cookie")
				if len(lines) != 1 {
					t.Fatalf("%s: Set-Cookie %q, want one", what, lines)
				}
				c, err := http.ParseSetCookie(lines[0])
				if err != nil {
					t.Fatal(err)
				}
				// Secure over plain HTTP too: outside --dev a TLS proxy is
				// in front, and the Go server cannot see it.
				if c.Name != "ledger_ui" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui" ||
					!c.Secure || c.MaxAge != wantMaxAge || c.Domain != "" {
					t.Errorf("%s: cookie %q; want ledger_ui, HttpOnly, SameSite=Strict, Path=/ui, Secure, Max-Age %d, no Domain",
						what, lines[0], wantMaxAge)
				}
				return c
			}

			checkHeaders("login page", do(http.MethodGet, "/ui", nil, nil))
			wrong := do(http.MethodPost, "/ui/login", url.Values{"token": {"wrong"}}, nil)
			if wrong.StatusCode != http.StatusUnauthorized || len(wrong.Header.Values("Set-Cookie")) != 0 {
				t.Errorf("wrong token: %d, Set-Cookie %q; want 401 and no cookie", wrong.StatusCode, wrong.Header.Values("Set-Cookie"))
			}
			checkHeaders("wrong token", wrong)
			login := do(http.MethodPost, "/ui/login", url.Values{"token": {"test-token-0123456789abcdefghijklmnop"}, "next": {"/ui"}}, nil)
			if login.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %d", login.StatusCode)
			}
			cookie := checkCookie("login", login, 24*3600)
			home := do(http.MethodGet, "/ui", nil, cookie)
			if home.StatusCode != http.StatusOK {
				t.Errorf("home with the cookie: %d", home.StatusCode)
			}
			checkHeaders("home", home)
			if !useTLS {
				booking := do(http.MethodGet, "/ui/bookings/1", nil, cookie)
				if booking.StatusCode != http.StatusOK {
					t.Errorf("booking page: %d", booking.StatusCode)
				}
				checkHeaders("booking page", booking)
			}
			// Logout needs the page's CSRF value: without it, 403 and the
			// session stays open.
			if refused := do(http.MethodPost, "/ui/logout", url.Values{}, cookie); refused.StatusCode != http.StatusForbidden {
				t.Errorf("logout without the CSRF value: %d", refused.StatusCode)
			}
			req, _ := http.NewRequest(http.MethodGet, base+"/ui", nil)
			req.AddCookie(cookie)
			page, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			html, _ := io.ReadAll(page.Body)
			page.Body.Close()
			m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindSubmatch(html)
			if m == nil {
				t.Fatalf("no CSRF value on the page:\n%s", html)
			}
			checkCookie("logout", do(http.MethodPost, "/ui/logout", url.Values{"csrf": {string(m[1])}}, cookie), -1)
			if after := do(http.MethodGet, "/ui", nil, cookie); after.StatusCode != http.StatusUnauthorized {
				t.Errorf("the cookie still opens the UI after logout: %d", after.StatusCode)
			}
		})
	}
}
