package http

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/booking-ledger/ledger/adapters/http/access"
	"github.com/booking-ledger/ledger/domain"
)

// The token model lives in adapters/http/access; these names keep the
// package's API (cmd/ledger) as it was.
type (
	Role  = access.Role
	Token = access.Token
)

const (
	RoleOperator     = access.RoleOperator
	RoleAuditor      = access.RoleAuditor
	RoleMetrics      = access.RoleMetrics
	MinTokenLength   = access.MinTokenLength
	DefaultTokenName = access.DefaultTokenName
)

var (
	ParseTokens    = access.ParseTokens
	ValidateTokens = access.ValidateTokens
)

// identity is who a request authenticated as.
type identity struct {
	name string
	role Role
}

type identityKey struct{}

func withIdentity(ctx context.Context, id identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// requestIdentity is the token (or UI session) a request authenticated
// with; ok is false on routes that need none.
func requestIdentity(r *http.Request) (identity, bool) {
	id, ok := r.Context().Value(identityKey{}).(identity)
	return id, ok
}

// actor is the access log's "who": the token's name.
func actor(r *http.Request) string {
	if id, ok := requestIdentity(r); ok {
		return "token:" + id.name
	}
	return "anonymous"
}

var errUnauthorized = fmt.Errorf("missing or wrong bearer token: %w", domain.ErrUnauthorized)

// bearer is the token of an `Authorization: Bearer <token>` header; ok is
// false when the header is missing, present is false only then.
func bearer(r *http.Request) (token string, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return token, true
}

// authOutcome is what checking a bearer token found.
type authOutcome int

const (
	authOK authOutcome = iota
	// authMissing: no Authorization header.
	authMissing
	// authWrong: a header with no valid token (logged, counted).
	authWrong
	// authLimited: the client is over its failure budget (not checked).
	authLimited
)

// checkBearer checks the request's bearer token, counting a wrong one
// against the client's address; wait is the Retry-After of authLimited.
func (s *server) checkBearer(r *http.Request) (id identity, out authOutcome, wait int) {
	client := s.clientAddr(r)
	if wait, blocked := s.failures.Blocked(client); blocked {
		s.log.WarnContext(r.Context(), "authentication rate-limited", "path", r.URL.Path, "client", client, "retry_after_s", wait)
		return identity{}, authLimited, wait
	}
	presented, present := bearer(r)
	t, ok := s.tokens.Find(presented)
	switch {
	case !present:
		s.authFailed(r, client, "bearer", false)
		return identity{}, authMissing, 0
	case !ok:
		s.authFailed(r, client, "bearer", true)
		return identity{}, authWrong, 0
	}
	return identity{name: t.Name, role: t.Role}, authOK, 0
}

// authenticateBearer is checkBearer for the JSON endpoints: the identity,
// or an answer already written (429 with Retry-After, 401).
func (s *server) authenticateBearer(w http.ResponseWriter, r *http.Request) (identity, bool) {
	id, out, wait := s.checkBearer(r)
	switch out {
	case authOK:
		return id, true
	case authLimited:
		s.tooManyFailures(w, wait)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="ledger"`)
		writeError(w, r, s.log, errUnauthorized)
	}
	return identity{}, false
}

// authFailed logs and counts a failed authentication. A request without
// any credentials is logged at debug only (browsers and probes do that
// all the time) and not counted.
func (s *server) authFailed(r *http.Request, client, via string, presented bool) {
	if !presented {
		s.log.DebugContext(r.Context(), "authentication missing", "via", via, "path", r.URL.Path, "client", client)
		return
	}
	s.failures.Fail(client)
	s.log.WarnContext(r.Context(), "authentication failed", "via", via, "method", r.Method, "path", r.URL.Path,
		"client", client, "user_agent", r.UserAgent())
}

func (s *server) tooManyFailures(w http.ResponseWriter, wait int) {
	w.Header().Set("Retry-After", strconv.Itoa(wait))
	writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many failed sign-ins from this address; try again later"})
}

// allow declares which roles, besides operator, may use a route of the
// API subrouter, and returns the route. Every API route is authenticated
// by requireToken; one that declares nothing is operator-only, so that a
// new route is closed by default. A route declares its roles where it is
// registered:
//
//	api.Handle("/bookings/{id}/cancel", h).Methods(http.MethodPost)          // operators only
//	s.allow(api.Handle("/obligations", h).Methods(http.MethodGet), RoleAuditor) // operators and auditors
//
// A token of another role gets 403. Handlers read who called with actor(r).
func (s *server) allow(rt *mux.Route, roles ...Role) *mux.Route {
	set := map[Role]bool{RoleOperator: true}
	for _, role := range roles {
		set[role] = true
	}
	s.roles[rt] = set
	return rt
}

// allowAll lets every role reach a route: the 405 answers of the API paths.
func (s *server) allowAll(rt *mux.Route) *mux.Route {
	return s.allow(rt, RoleAuditor, RoleMetrics)
}

// requireToken authenticates every request of the API subrouter with its
// bearer token and checks the token's role against the matched route's
// (allow): 401 without a valid token, 403 for a role the route does not
// admit, 429 for a client over its failure budget.
func (s *server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := s.authenticateBearer(w, r)
		if !ok {
			return
		}
		if !s.permits(mux.CurrentRoute(r), id.role) {
			s.log.InfoContext(r.Context(), "forbidden", "token", id.name, "role", string(id.role), "method", r.Method, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf("token %q (role %s) may not use this endpoint", id.name, id.role)})
			return
		}
		next.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
	})
}

// permits: operators everything, the other roles what the route declared.
func (s *server) permits(rt *mux.Route, role Role) bool {
	if role == RoleOperator {
		return true
	}
	return rt != nil && s.roles[rt][role]
}
