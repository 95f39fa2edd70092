package http

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/booking-ledger/ledger/domain"
)

// readBody reads the request body, at most limit bytes (413 beyond). The
// buffer grows with what arrives, never with what the client announced;
// a body preread received whole is taken as it is, without a copy.
// A body that cannot be read whole is the client's fault, never an
// internal error: it is answered 400 (408 when it did not arrive in time,
// see bodyError).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if p, ok := r.Body.(*prereadBody); ok {
		if b, ok := p.take(); ok {
			if int64(len(b)) > limit {
				return nil, &http.MaxBytesError{Limit: limit}
			}
			return b, nil
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var maxBytes *http.MaxBytesError
		if errors.As(err, &maxBytes) {
			return nil, err
		}
		return nil, &bodyError{err: err}
	}
	return b, nil
}

// bodyError is a request body that could not be read: the client closed
// the connection early, sent less than it announced, or was too slow.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return fmt.Sprintf("request body: %v", e.err) }
func (e *bodyError) Unwrap() error { return e.err }

// timeout reports a body that did not arrive within its deadline.
func (e *bodyError) timeout() bool {
	var ne net.Error
	return errors.Is(e.err, errBodyTimeout) || (errors.As(e.err, &ne) && ne.Timeout())
}

// errBodyTimeout is the body deadline (Config.BodyTimeout) passing.
var errBodyTimeout = fmt.Errorf("not received within the body deadline: %w", domain.ErrInvalid)
