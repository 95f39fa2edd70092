package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/domain"
)

// Unavailable returns err wrapped with domain.ErrUnavailable when the
// database gave up on a statement rather than refusing it: the server's
// statement_timeout or a cancel request sent at a context's deadline
// (query_canceled, 57014), a lock_timeout (lock_not_available, 55P03), or
// a deadline that passed before the statement ran. The edge then answers
// "try again" instead of an internal error. Any other error, and nil, is
// returned as it is; the original error stays in the chain (errors.As
// still finds the *pq.Error).
func Unavailable(err error) error {
	if err == nil || errors.Is(err, domain.ErrUnavailable) {
		return err
	}
	var pqErr *pq.Error
	timedOut := errors.As(err, &pqErr) && (pqErr.Code == "57014" || pqErr.Code == "55P03")
	if timedOut || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
	}
	return err
}
