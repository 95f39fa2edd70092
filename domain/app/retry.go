package app

import (
	"context"
	"errors"

	"github.com/booking-ledger/ledger/domain"
)

// maxAttempts bounds the runs of one write that keeps losing races: each
// re-run sees the winner's commit, so a second run almost always settles it.
const maxAttempts = 5

// retry runs write until it does not lose a race: an error wrapping
// domain.ErrConcurrency (the store maps a taken stream version or inbox key,
// a serialization failure and a deadlock onto it), or one of also. It is the
// only retry loop above the database: the stores run each transaction once.
func retry[T any](ctx context.Context, write func() (T, error), also ...error) (T, error) {
	var (
		out T
		err error
	)
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		out, err = write()
		if !lostRace(err, also) || ctx.Err() != nil {
			return out, err
		}
	}
	return out, err
}

func lostRace(err error, also []error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, domain.ErrConcurrency) {
		return true
	}
	for _, e := range also {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
