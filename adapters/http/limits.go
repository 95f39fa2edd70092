package http

import (
	"bytes"
	"context"
	"net/http"
)

// guard bounds the work the server takes on: at most MaxInFlight requests
// are handled at once, the others are answered 503 at once (with
// Retry-After; Stripe retries any non-2xx), so that a burst degrades latency
// and never memory or correctness; and each request's context ends after
// RequestTimeout, which cancels its database work.
//
// The answer never waits longer than RequestTimeout, even when the work
// does not stop with its context: lib/pq can only cancel a query by asking
// the server, so on a database that stops answering without closing the
// connection (a network partition, a paused machine) a query blocks until
// the server is back. The handler therefore writes into a buffer, and when
// the deadline comes first the client gets 503 instead; a handler still
// running keeps its in-flight slot until it returns, so stuck work stays
// bounded. Answering 503 for work that may still commit is safe: the
// webhook only answers 2xx after a commit, and Stripe's retry of an event
// committed meanwhile is a duplicate.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.inFlight <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "busy, try again"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		buf := &bufferedResponse{header: http.Header{}}
		done := make(chan any, 1)
		go func() {
			defer func() { <-s.inFlight }()
			defer cancel()
			defer func() { done <- recover() }()
			next.ServeHTTP(buf, r.WithContext(ctx))
		}()
		select {
		case p := <-done:
			s.finish(w, buf, p)
		case <-ctx.Done():
			// A handler that finished at the deadline still answers.
			select {
			case p := <-done:
				s.finish(w, buf, p)
				return
			default:
			}
			s.log.ErrorContext(r.Context(), "request timed out", "method", r.Method, "path", r.URL.Path, "timeout", s.cfg.RequestTimeout, "error", ctx.Err())
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msgTimedOut})
		}
	})
}

// finish sends the buffered answer of a handler that returned, or re-raises
// its panic on the serving goroutine, where net/http recovers it.
func (s *server) finish(w http.ResponseWriter, buf *bufferedResponse, recovered any) {
	if recovered != nil {
		panic(recovered)
	}
	for k, v := range buf.header {
		w.Header()[k] = v
	}
	if buf.status == 0 {
		buf.status = http.StatusOK
	}
	w.WriteHeader(buf.status)
	_, _ = w.Write(buf.body.Bytes())
}

// bufferedResponse is the http.ResponseWriter a guarded handler writes to.
// It is read only after the handler returned.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
