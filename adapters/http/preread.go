package http

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// maxAPIBodyBytes bounds the body of every API request (POST /bookings and
// the other JSON requests): 64 KiB.
const maxAPIBodyBytes = 64 << 10

// bodyChunk is the first size of a body's buffer, which then doubles; each
// step is counted against Config.MaxBufferedBodyBytes.
const bodyChunk = 32 << 10

// preread receives the whole request body before next runs, within
// Config.BodyTimeout of the request's start, at most limit bytes, into
// memory counted against Config.MaxBufferedBodyBytes, and hands next the
// body from memory. It runs before guard: a client that sends its body
// slowly (by accident or to hold the server) costs a connection and the
// bytes it sent, never an in-flight slot, and is cut at the deadline with
// 408. Answers: 408 late, 413 too large, 400 cut short, 503 when the
// bodies being received already fill the memory budget.
func (s *server) preread(limit int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > limit {
			// Announced too large: refused without reading a byte.
			writeError(w, r, s.log, &http.MaxBytesError{Limit: limit})
			return
		}
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(s.cfg.BodyTimeout)
		// Where the connection's deadline cannot be set (a test's
		// recorder), the body is still read, without the deadline.
		_ = rc.SetReadDeadline(deadline)
		var held int64
		defer func() {
			if held > 0 {
				s.bodies.Release(held)
			}
		}()
		var buf []byte
		body := http.MaxBytesReader(w, r.Body, limit)
		for {
			if len(buf) == cap(buf) {
				// Grow by doubling from one chunk (never to the announced
				// length: a slow sender holds what it sent), each step
				// counted against the budget.
				grown := min(max(2*int64(cap(buf)), firstChunk(r.ContentLength)), limit+1)
				if !s.bodies.TryAcquire(grown - int64(cap(buf))) {
					w.Header().Set("Retry-After", "1")
					writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "busy, try again"})
					return
				}
				held += grown - int64(cap(buf))
				buf = append(make([]byte, 0, grown), buf...)
			}
			n, err := body.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				var maxBytes *http.MaxBytesError
				if errors.As(err, &maxBytes) {
					writeError(w, r, s.log, err)
				} else {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						err = errBodyTimeout
					}
					writeError(w, r, s.log, &bodyError{err: err})
				}
				return
			}
		}
		// The body is in; the connection's own timeouts apply again.
		_ = rc.SetReadDeadline(time.Time{})
		r.Body = &prereadBody{Reader: bytes.NewReader(buf), buf: buf}
		r.ContentLength = int64(len(buf))
		next.ServeHTTP(w, r)
	})
}

// firstChunk is the first size of a body's buffer: one byte more than
// the announced length when that is below bodyChunk (the end of the body is
// then read without growing the buffer), else bodyChunk, so that a sender
// that announces much and sends slowly holds no more than it sent.
func firstChunk(announced int64) int64 {
	if announced > 0 && announced < bodyChunk {
		return announced + 1
	}
	return bodyChunk
}

// prereadBody is a body preread received whole, handed on from memory.
// readBody takes its bytes as they are instead of copying them.
type prereadBody struct {
	*bytes.Reader
	buf []byte
}

func (*prereadBody) Close() error { return nil }

// take returns the whole body and consumes it, or false when some of it
// was read already.
func (b *prereadBody) take() ([]byte, bool) {
	if b.Len() != len(b.buf) {
		return nil, false
	}
	b.Reset(nil)
	return b.buf, true
}

// prereadAPI is preread for the API subrouter, with its body limit.
func (s *server) prereadAPI(next http.Handler) http.Handler {
	return s.preread(maxAPIBodyBytes, next)
}
