package http

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/adapters/http/access"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// The auditor UI: read-only, server-rendered with html/template, no
// JavaScript at all. It takes an operator or auditor token either as a
// bearer header or through its login form, which opens a server-side
// session (sessions.go): the cookie holds a random id, never the token.

//go:embed ui/*.html
var uiFiles embed.FS

var uiTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000000Z")
	},
	"prettyJSON": prettyJSON,
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
	"positions": func(ps []int64) string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = strconv.FormatInt(p, 10)
		}
		return strings.Join(out, ", ")
	},
	"deref": func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	},
}).ParseFS(uiFiles, "ui/*.html"))

func (s *server) routeUI(r *mux.Router) {
	get := []string{http.MethodGet, http.MethodHead}
	// The UI is guarded like the API: it counts against the in-flight
	// bound and its requests time out.
	r.Handle("/ui", s.guard(s.requireUI(s.uiHome))).Methods(get...)
	r.Handle("/ui/", http.RedirectHandler("/ui", http.StatusMovedPermanently)).Methods(get...)
	r.Handle("/ui/bookings/{id}", s.guard(s.requireUI(s.uiBooking))).Methods(get...)
	if s.cfg.Obligations != nil {
		r.Handle("/ui/obligations", s.guard(s.requireUI(s.uiObligations))).Methods(get...)
		r.Handle("/ui/obligations", methodNotAllowed(get...))
	}
	r.Handle("/ui/login", s.preread(8<<10, s.guard(http.HandlerFunc(s.uiLogin)))).Methods(http.MethodPost)
	r.Handle("/ui/logout", s.preread(8<<10, s.guard(http.HandlerFunc(s.uiLogout)))).Methods(http.MethodPost)
	for _, p := range []string{"/ui", "/ui/", "/ui/bookings/{id}"} {
		r.Handle(p, methodNotAllowed(get...))
	}
	for _, p := range []string{"/ui/login", "/ui/logout"} {
		r.Handle(p, methodNotAllowed(http.MethodPost))
	}
}

// requireUI admits a request with a valid bearer header (operator or
// auditor) or an open session (sessions.go), and shows the login form
// (401) to the others; a wrong bearer is a failed authentication (counted,
// 429 beyond the budget).
func (s *server) requireUI(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id identity
		var csrf string
		if _, present := bearer(r); present {
			var out authOutcome
			var wait int
			switch id, out, wait = s.checkBearer(r); out {
			case authLimited:
				w.Header().Set("Retry-After", strconv.Itoa(wait))
				s.loginPage(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from this address; try again in "+strconv.Itoa(wait)+" s.", r.URL.RequestURI())
				return
			case authWrong, authMissing:
				s.loginPage(w, r, http.StatusUnauthorized, "", r.URL.RequestURI())
				return
			}
		} else if s.cfg.Sessions != nil {
			sid, sessionID, err := s.session(r)
			switch {
			case errors.Is(err, errNoSession):
				s.loginPage(w, r, http.StatusUnauthorized, "", r.URL.RequestURI())
				return
			case err != nil:
				s.uiError(w, r, uiPage{}, err)
				return
			}
			id, csrf = sid, access.CSRFToken(sessionID)
		} else {
			s.loginPage(w, r, http.StatusUnauthorized, "", r.URL.RequestURI())
			return
		}
		if !uiRole(id.role) {
			s.loginPage(w, r, http.StatusForbidden, "This token cannot use the auditor UI.", r.URL.RequestURI())
			return
		}
		ctx := withIdentity(r.Context(), id)
		ctx = context.WithValue(ctx, csrfKey{}, csrf)
		h(w, r.WithContext(ctx))
	})
}

type csrfKey struct{}

func (s *server) loginPage(w http.ResponseWriter, r *http.Request, status int, msg, next string) {
	s.render(w, r, status, "login.html", uiPage{Title: "Sign in", Error: msg, Next: next, NoLogin: s.cfg.Sessions == nil})
}

// uiPage is the data of every template.
type uiPage struct {
	Title    string
	Error    string
	Next     string
	Query    string
	AsOf     string
	Status   *app.ChainStatus
	History  *app.BookingHistory
	LoggedIn bool
	// Obligations is the worklist (obligations.html); HasObligations says
	// whether the server has one (the header's link).
	Obligations    []app.Obligation
	HasObligations bool
	// CSRF is the logout form's anti-forgery value ("" without a session).
	CSRF string
	// NoLogin: the login form is off (no session store).
	NoLogin bool
}

func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, p uiPage) {
	p.HasObligations = s.cfg.Obligations != nil
	if p.LoggedIn {
		p.CSRF, _ = r.Context().Value(csrfKey{}).(string)
	}
	var buf bytes.Buffer
	if err := uiTemplates.ExecuteTemplate(&buf, name, p); err != nil {
		s.log.ErrorContext(r.Context(), "render ui", "template", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// uiError renders the home page with an error, mapped like the API's.
func (s *server) uiError(w http.ResponseWriter, r *http.Request, p uiPage, err error) {
	status, msg := errorStatus(err)
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "ui request failed", "path", r.URL.Path, "error", err)
	}
	p.Error = msg
	p.LoggedIn = true
	if p.Title == "" {
		p.Title = "Auditor"
	}
	s.render(w, r, status, "home.html", p)
}

// uiRecord writes the access log row of a UI read; false when it failed
// (and the page was answered with the error).
func (s *server) uiRecord(w http.ResponseWriter, r *http.Request, action, target string) bool {
	err := s.cfg.Audit.RecordAccess(r.Context(), app.Access{
		Actor: actor(r), Channel: "ui", Action: action, Target: target,
		RemoteAddr: s.remoteAddr(r), UserAgent: r.UserAgent(),
	})
	if err != nil {
		s.uiError(w, r, uiPage{}, err)
		return false
	}
	return true
}

// uiHome is the search form and the chain status; ?q= finds a booking by
// id, Checkout Session id, PaymentIntent id or Stripe event id.
func (s *server) uiHome(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	p := uiPage{Title: "Auditor", Query: q, LoggedIn: true}
	if q != "" {
		if !s.uiRecord(w, r, "ui_search", q) {
			return
		}
		id, err := s.cfg.Audit.FindBooking(r.Context(), q)
		if err == nil {
			http.Redirect(w, r, "/ui/bookings/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
			return
		}
		if !errors.Is(err, domain.ErrNotFound) {
			s.uiError(w, r, p, err)
			return
		}
		p.Error = "No booking matches " + strconv.Quote(q) + "."
	} else if !s.uiRecord(w, r, "ui_status", "chain") {
		return
	}
	st, err := s.cfg.Audit.ChainStatus(r.Context())
	if err != nil {
		s.uiError(w, r, p, err)
		return
	}
	p.Status = &st
	status := http.StatusOK
	if p.Error != "" {
		status = http.StatusNotFound
	}
	s.render(w, r, status, "home.html", p)
}

// uiBooking is one booking's timeline: its events in order beside the raw
// Stripe events, and its integrity; ?as_of= cuts it at a moment.
func (s *server) uiBooking(w http.ResponseWriter, r *http.Request) {
	p := uiPage{Title: "Booking", LoggedIn: true}
	id, err := bookingID(r)
	if err != nil {
		s.uiError(w, r, p, err)
		return
	}
	p.AsOf = strings.TrimSpace(r.URL.Query().Get("as_of"))
	asOf, err := parseAsOf(p.AsOf)
	if err != nil {
		s.uiError(w, r, p, err)
		return
	}
	target := strconv.FormatInt(id, 10)
	if !asOf.IsZero() {
		target += "@" + asOf.UTC().Format(time.RFC3339Nano)
	}
	if !s.uiRecord(w, r, "ui_booking", target) {
		return
	}
	h, err := s.cfg.Audit.History(r.Context(), id, asOf)
	if errors.Is(err, domain.ErrNotFound) {
		when := ""
		if !asOf.IsZero() {
			when = " at that moment"
		}
		err = fmt.Errorf("booking %d not found%s: %w", id, when, domain.ErrNotFound)
	}
	if err != nil {
		s.uiError(w, r, p, err)
		return
	}
	st, err := s.cfg.Audit.ChainStatus(r.Context())
	if err != nil {
		s.uiError(w, r, p, err)
		return
	}
	p.Title = "Booking " + target
	p.History, p.Status = &h, &st
	s.render(w, r, http.StatusOK, "booking.html", p)
}

// uiObligations is the operators' worklist, read-only: acknowledging is an
// operator's write (POST /obligations/{id}/ack, `ledger obligations ack`).
func (s *server) uiObligations(w http.ResponseWriter, r *http.Request) {
	p := uiPage{Title: "Obligations", LoggedIn: true}
	if !s.uiRecord(w, r, "ui_obligations", "all") {
		return
	}
	obs, err := s.cfg.Obligations.List(r.Context())
	if err != nil {
		s.uiError(w, r, p, err)
		return
	}
	p.Obligations = obs
	s.render(w, r, http.StatusOK, "obligations.html", p)
}

// uiLogin checks the token of the login form and opens a session for it
// (operator and auditor tokens). A wrong token is a failed authentication:
// logged, counted against the client's address, 429 with Retry-After
// beyond the budget. A post from another site is refused (403).
func (s *server) uiLogin(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Sessions == nil {
		s.loginPage(w, r, http.StatusNotFound, "Signing in with the form is off: send the token as a bearer header.", "/ui")
		return
	}
	if !sameOrigin(r) {
		s.loginPage(w, r, http.StatusForbidden, "Sign in from this site's own form.", "/ui")
		return
	}
	client := s.clientAddr(r)
	if wait, blocked := s.failures.Blocked(client); blocked {
		w.Header().Set("Retry-After", strconv.Itoa(wait))
		s.log.WarnContext(r.Context(), "authentication rate-limited", "path", r.URL.Path, "client", client, "retry_after_s", wait)
		s.loginPage(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from this address; try again in "+strconv.Itoa(wait)+" s.", "/ui")
		return
	}
	next := safeNext(r.PostFormValue("next"))
	t, ok := s.tokens.Find(r.PostFormValue("token"))
	if !ok {
		s.authFailed(r, client, "ui_login", true)
		s.loginPage(w, r, http.StatusUnauthorized, "Wrong token.", next)
		return
	}
	if !uiRole(t.Role) {
		s.loginPage(w, r, http.StatusForbidden, "This token cannot use the auditor UI.", next)
		return
	}
	if err := s.newSession(w, r, t); err != nil {
		s.uiError(w, r, uiPage{}, err)
		return
	}
	s.log.InfoContext(r.Context(), "ui sign-in", "token", t.Name, "client", client)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// uiLogout ends the session (revoked in the store, so a copied cookie
// stops working too) and clears the cookie. It takes only a POST from this
// site carrying the session's CSRF value; others get 403 and change
// nothing.
func (s *server) uiLogout(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Sessions == nil {
		http.Redirect(w, r, "/ui", http.StatusSeeOther)
		return
	}
	_, sessionID, err := s.session(r)
	switch {
	case errors.Is(err, errNoSession):
		// Nothing to end; clear whatever cookie the browser holds.
		http.SetCookie(w, s.sessionCookie("", -1))
		http.Redirect(w, r, "/ui", http.StatusSeeOther)
		return
	case err != nil:
		s.uiError(w, r, uiPage{}, err)
		return
	}
	if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(access.CSRFToken(sessionID))) != 1 {
		s.log.WarnContext(r.Context(), "ui sign-out refused: cross-site or without its CSRF value", "client", s.clientAddr(r))
		s.loginPage(w, r, http.StatusForbidden, "Sign out from this site's own page.", "/ui")
		return
	}
	if err := s.cfg.Sessions.RevokeSession(r.Context(), access.SessionDigest(sessionID), s.cfg.Now()); err != nil {
		s.uiError(w, r, uiPage{}, err)
		return
	}
	http.SetCookie(w, s.sessionCookie("", -1))
	http.Redirect(w, r, "/ui", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on the UI itself.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.IsAbs() || u.Host != "" || !strings.HasPrefix(u.Path, "/ui") || strings.HasPrefix(next, "//") {
		return "/ui"
	}
	return u.RequestURI()
}

func prettyJSON(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case string:
		raw = []byte(x)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		raw = b
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}
