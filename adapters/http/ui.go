package http

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
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

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// The auditor UI: read-only, server-rendered with html/template, no
// JavaScript at all. It takes the API token either as a bearer header or
// through its login form, which sets an HttpOnly, SameSite=Strict cookie
// holding an HMAC of the token (never the token itself).

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

const uiCookie = "ledger_ui"

// uiSession is the cookie value: an HMAC of a fixed label keyed with the
// token, so the cookie proves knowledge of the token without holding it,
// and stops working when the token changes.
func (s *server) uiSession() string {
	m := hmac.New(sha256.New, []byte(s.cfg.APIToken))
	m.Write([]byte("ledger-ui-session-v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// uiAuthorized: a valid bearer header or session cookie, compared in
// constant time.
func (s *server) uiAuthorized(r *http.Request) bool {
	if h := r.Header.Get("Authorization"); h != "" {
		return subtle.ConstantTimeCompare([]byte(h), []byte("Bearer "+s.cfg.APIToken)) == 1
	}
	c, err := r.Cookie(uiCookie)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.uiSession())) == 1
}

func (s *server) routeUI(r *mux.Router) {
	get := []string{http.MethodGet, http.MethodHead}
	r.Handle("/ui", s.requireUI(s.uiHome)).Methods(get...)
	r.Handle("/ui/", http.RedirectHandler("/ui", http.StatusMovedPermanently)).Methods(get...)
	r.Handle("/ui/bookings/{id}", s.requireUI(s.uiBooking)).Methods(get...)
	if s.cfg.Obligations != nil {
		r.Handle("/ui/obligations", s.requireUI(s.uiObligations)).Methods(get...)
		r.Handle("/ui/obligations", methodNotAllowed(get...))
	}
	r.Handle("/ui/login", http.HandlerFunc(s.uiLogin)).Methods(http.MethodPost)
	r.Handle("/ui/logout", http.HandlerFunc(s.uiLogout)).Methods(http.MethodPost)
	for _, p := range []string{"/ui", "/ui/", "/ui/bookings/{id}"} {
		r.Handle(p, methodNotAllowed(get...))
	}
	for _, p := range []string{"/ui/login", "/ui/logout"} {
		r.Handle(p, methodNotAllowed(http.MethodPost))
	}
}

// requireUI shows the login form (401) to a request without the token.
func (s *server) requireUI(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.uiAuthorized(r) {
			s.render(w, r, http.StatusUnauthorized, "login.html", uiPage{Title: "Sign in", Next: r.URL.RequestURI()})
			return
		}
		h(w, r)
	})
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
}

func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, p uiPage) {
	p.HasObligations = s.cfg.Obligations != nil
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
		Actor: s.actor(), Channel: "ui", Action: action, Target: target,
		RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent(),
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

func (s *server) uiLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	next := safeNext(r.PostFormValue("next"))
	token := r.PostFormValue("token")
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.APIToken)) != 1 {
		s.render(w, r, http.StatusUnauthorized, "login.html", uiPage{Title: "Sign in", Error: "Wrong token.", Next: next})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: uiCookie, Value: s.uiSession(), Path: "/ui", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 12 * 3600,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *server) uiLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: uiCookie, Value: "", Path: "/ui", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: -1})
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
