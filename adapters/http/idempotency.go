package http

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"

	"github.com/booking-ledger/ledger/domain/app"
)

// maxIdempotencyKeyLen is Stripe's limit on Idempotency-Key.
const maxIdempotencyKeyLen = 255

type recoveredKey struct{}

// recovered reports whether the request's Idempotency-Key was claimed by an
// earlier request that stored no answer: the handler then looks for that
// request's effect (Ledger.FindCaused) before acting again.
func recovered(ctx context.Context) bool {
	v, _ := ctx.Value(recoveredKey{}).(bool)
	return v
}

// idempotent makes next honour Idempotency-Key as Stripe's API does: the
// first answer below 500 is kept with a hash of the method, path and body;
// a retry with the same key and request gets the same status and body and
// `Idempotent-Replayed: true`; the same key with another request 422; a
// retry while the first runs (in any process) 409. Keys are kept 24 h and
// are at most 255 characters. An answer of 500 or more is not kept: the
// retry runs again, and finds the first request's effect, if any, by its
// causation id ("api:<key>"). Without the header, or without
// Config.Idempotency, next runs as it is.
func (s *server) idempotent(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if key == "" || s.cfg.Idempotency == nil {
			next(w, r)
			return
		}
		if len(key) > maxIdempotencyKeyLen {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Idempotency-Key: must be at most 255 characters"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h := sha256.New()
		io.WriteString(h, r.Method+"\n"+r.URL.Path+"\n")
		h.Write(body)
		claim, err := s.cfg.Idempotency.Claim(r.Context(), r.Method+" "+r.URL.Path, key, h.Sum(nil))
		switch {
		case errors.Is(err, app.ErrIdempotencyInProgress):
			writeJSON(w, http.StatusConflict, map[string]string{"error": app.ErrIdempotencyInProgress.Error()})
			return
		case errors.Is(err, app.ErrIdempotencyKeyReused):
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": app.ErrIdempotencyKeyReused.Error()})
			return
		case err != nil:
			writeError(w, r, s.log, err)
			return
		}
		if a := claim.Stored(); a != nil {
			claim.Release()
			if a.ContentType != "" {
				w.Header().Set("Content-Type", a.ContentType)
			}
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(a.Status)
			w.Write(a.Body)
			return
		}
		rec := &keptAnswer{ResponseWriter: w}
		next(rec, r.WithContext(context.WithValue(r.Context(), recoveredKey{}, claim.Recovered())))
		if rec.status == 0 || rec.status >= 500 {
			claim.Release()
			return
		}
		// The answer is sent; keep it for a retry even if the client is
		// gone.
		ctx := context.WithoutCancel(r.Context())
		if err := claim.Complete(ctx, app.StoredAnswer{Status: rec.status, ContentType: rec.Header().Get("Content-Type"), Body: rec.body.Bytes()}); err != nil {
			s.log.ErrorContext(ctx, "idempotency: answer not kept", "path", r.URL.Path, "error", err)
		}
	})
}

// keptAnswer passes an answer through and keeps a copy.
type keptAnswer struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (a *keptAnswer) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
	a.ResponseWriter.WriteHeader(status)
}

func (a *keptAnswer) Write(p []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	a.body.Write(p)
	return a.ResponseWriter.Write(p)
}
