package app

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/booking-ledger/ledger/domain"
)

// TestRetry: a lost race (domain.ErrConcurrency, or an error named in
// also) is run again, at most maxAttempts times; any other outcome ends the
// loop at once.
func TestRetry(t *testing.T) {
	errOther := errors.New("disk on fire")
	lost := fmt.Errorf("append: %w", domain.ErrConcurrency)
	conflict := fmt.Errorf("upsert: %w", domain.ErrConflict)
	tests := []struct {
		name      string
		errs      []error // the write's results, in order; nil after the list
		also      []error
		wantCalls int
		wantErr   error
	}{
		{"first try", nil, nil, 1, nil},
		{"lost once", []error{lost}, nil, 2, nil},
		{"lost every time", []error{lost, lost, lost, lost, lost, lost, lost}, nil, maxAttempts, domain.ErrConcurrency},
		{"other error", []error{errOther}, nil, 1, errOther},
		{"conflict not retried by default", []error{conflict}, nil, 1, domain.ErrConflict},
		{"conflict retried when named", []error{conflict, lost}, []error{domain.ErrConflict}, 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			got, err := retry(context.Background(), func() (int, error) {
				calls++
				if calls <= len(tt.errs) {
					return 0, tt.errs[calls-1]
				}
				return 7, nil
			}, tt.also...)
			if calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls, tt.wantCalls)
			}
			if tt.wantErr == nil && (err != nil || got != 7) {
				t.Errorf("got %d, %v", got, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestRetryStopsWhenTheContextEnds: no further attempt once the caller gave
// up.
func TestRetryStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := retry(ctx, func() (int, error) {
		calls++
		cancel()
		return 0, domain.ErrConcurrency
	})
	if calls != 1 || !errors.Is(err, domain.ErrConcurrency) {
		t.Errorf("%d calls, error %v", calls, err)
	}
}
