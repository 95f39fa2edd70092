package http

import (
	"context"
	"net/http"
)

// guard bounds the work the server takes on: at most MaxInFlight requests
// are handled at once, the others are answered 503 at once (with
// Retry-After; Stripe retries any non-2xx), so that a burst degrades latency
// and never memory or correctness; and each request's context ends after
// RequestTimeout, which cancels its database work.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.inFlight <- struct{}{}:
			defer func() { <-s.inFlight }()
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "busy, try again"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
