package app

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

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
	for attempt := 1; ; attempt++ {
		out, err = write()
		if !lostRace(err, also) || ctx.Err() != nil || attempt == maxAttempts {
			return out, err
		}
		// A short jittered pause, growing with the attempts, so that two
		// writers that deadlocked do not meet again in step.
		pause := time.Duration(attempt*attempt)*time.Millisecond + rand.N(2*time.Millisecond)
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(pause):
		}
	}
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
