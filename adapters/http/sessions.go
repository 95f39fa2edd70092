package http

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/booking-ledger/ledger/adapters/http/access"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// Sessions keeps the auditor UI's sign-ins: the storage side
// (adapters/postgres/sessionstore) or, in tests, apptest.Sessions. Session
// returns an error wrapping domain.ErrNotFound for an unknown digest.
type Sessions interface {
	CreateSession(ctx context.Context, s app.Session) error
	Session(ctx context.Context, digest []byte) (app.Session, error)
	TouchSession(ctx context.Context, digest []byte, at time.Time) error
	RevokeSession(ctx context.Context, digest []byte, at time.Time) error
}

// The session cookie. It holds a random id of 32 bytes (base64url); the
// server keeps only its SHA-256. HttpOnly, SameSite=Strict, scoped to /ui,
// Secure unless Config.InsecureCookies; the server decides expiry.
const uiCookie = "ledger_ui"

// touchEvery bounds the writes a session's use costs: its last use is
// stored at most once a minute.
const touchEvery = time.Minute

func (s *server) sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: uiCookie, Value: value, Path: "/ui", HttpOnly: true,
		Secure: !s.cfg.InsecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
}

// newSession creates a session for t and sets its cookie.
func (s *server) newSession(w http.ResponseWriter, r *http.Request, t Token) error {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	id := base64.RawURLEncoding.EncodeToString(raw)
	now := s.cfg.Now()
	err := s.cfg.Sessions.CreateSession(r.Context(), app.Session{
		Digest: access.SessionDigest(id), TokenName: t.Name, TokenFingerprint: access.TokenFingerprint(t),
		CreatedAt: now, LastSeenAt: now, RemoteAddr: s.remoteAddr(r), UserAgent: truncate(r.UserAgent(), 512),
	})
	if err != nil {
		return err
	}
	http.SetCookie(w, s.sessionCookie(id, int(s.cfg.SessionMax/time.Second)))
	return nil
}

// errNoSession: no cookie, or one naming no open session.
var errNoSession = errors.New("no open session")

// session resolves the request's session cookie: the identity and the
// session id, errNoSession when there is no valid one (unknown, revoked,
// idle for SessionIdle, older than SessionMax, or its token removed,
// replaced or no longer allowed the UI), another error when the store
// failed.
func (s *server) session(r *http.Request) (identity, string, error) {
	c, err := r.Cookie(uiCookie)
	if err != nil || len(c.Value) != 43 {
		return identity{}, "", errNoSession
	}
	digest := access.SessionDigest(c.Value)
	sess, err := s.cfg.Sessions.Session(r.Context(), digest)
	if errors.Is(err, domain.ErrNotFound) {
		return identity{}, "", errNoSession
	}
	if err != nil {
		return identity{}, "", err
	}
	now := s.cfg.Now()
	t, ok := s.tokens.ByName(sess.TokenName)
	switch {
	case !sess.RevokedAt.IsZero(),
		now.Sub(sess.LastSeenAt) > s.cfg.SessionIdle,
		now.Sub(sess.CreatedAt) > s.cfg.SessionMax,
		!ok || subtle.ConstantTimeCompare(access.TokenFingerprint(t), sess.TokenFingerprint) != 1,
		!uiRole(t.Role):
		return identity{}, "", errNoSession
	}
	if now.Sub(sess.LastSeenAt) >= touchEvery {
		if err := s.cfg.Sessions.TouchSession(r.Context(), digest, now); err != nil {
			return identity{}, "", err
		}
	}
	return identity{name: t.Name, role: t.Role}, c.Value, nil
}

// uiRole: the roles that may use the auditor UI.
func uiRole(r Role) bool { return r == RoleOperator || r == RoleAuditor }

// sameOrigin refuses a state-changing form post sent by another site.
// Current browsers say where a request comes from in Sec-Fetch-Site, which
// decides alone when present (the UI's no-referrer policy makes their
// Origin "null"); otherwise an Origin naming another host is refused. A
// request with neither (curl, an old browser) passes: it carries no
// ambient credential of a victim's browser anyway (the cookie is
// SameSite=Strict).
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
