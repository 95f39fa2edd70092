package http

import (
	"io"
	"net/http"
)

// readBody reads the request body, at most limit bytes (413 beyond). A
// body whose length is announced is read into a buffer of that size at
// once, instead of one io.ReadAll grows step by step.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n > 0 && n <= limit {
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
}
