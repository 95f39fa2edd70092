package http

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"
)

// TestPrereadBodyReadOnce: a body announced below one chunk is received
// into a buffer of its length plus one (the end is read without growing
// it), only that much is counted against the memory budget while it is
// received, and readBody hands on those very bytes instead of a copy; a
// body of unknown length starts from a whole chunk; a handler that read
// part of the body itself gets the rest copied as before.
func TestPrereadBodyReadOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		announced int64 // -1: unknown (chunked)
		readFirst int   // bytes the handler reads itself before readBody
		wantHeld  int64 // budget held while the handler runs
		wantSame  bool  // readBody returns the preread buffer itself
	}{
		{"announced", strings.Repeat("a", 3000), 3000, 0, 3001, true},
		{"unknown length", strings.Repeat("b", 3000), -1, 0, bodyChunk, true},
		{"partly read", strings.Repeat("c", 100), 100, 10, 101, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const budget = 1 << 20
			s := &server{cfg: Config{BodyTimeout: time.Second}, log: slog.New(slog.DiscardHandler), bodies: semaphore.NewWeighted(budget)}
			var got, preread []byte
			var exact bool // the budget held is exactly wantHeld
			h := s.preread(64<<10, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p, ok := r.Body.(*prereadBody)
				if !ok {
					t.Fatalf("body %T, want the preread body", r.Body)
				}
				preread = p.buf
				if s.bodies.TryAcquire(budget - tc.wantHeld) {
					exact = !s.bodies.TryAcquire(1)
					s.bodies.Release(budget - tc.wantHeld)
				}
				if tc.readFirst > 0 {
					if _, err := io.ReadFull(r.Body, make([]byte, tc.readFirst)); err != nil {
						t.Fatal(err)
					}
				}
				var err error
				if got, err = readBody(w, r, 64<<10); err != nil {
					t.Fatal(err)
				}
			}))
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewBufferString(tc.body))
			req.ContentLength = tc.announced
			h.ServeHTTP(httptest.NewRecorder(), req)

			if string(got) != tc.body[tc.readFirst:] {
				t.Fatalf("readBody gave %d bytes, want the %d after the first %d", len(got), len(tc.body)-tc.readFirst, tc.readFirst)
			}
			if !exact {
				t.Errorf("the budget held while the handler ran is not %d bytes", tc.wantHeld)
			}
			if same := len(got) > 0 && &got[0] == &preread[0]; same != tc.wantSame {
				t.Errorf("readBody returned the preread buffer itself: %v, want %v", same, tc.wantSame)
			}
			if !s.bodies.TryAcquire(budget) {
				t.Error("the budget was not given back after the request")
			}
		})
	}
}
