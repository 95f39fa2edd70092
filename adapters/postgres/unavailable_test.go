package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
)

// TestUnavailable: the statements the server gave up on, and deadlines,
// become domain.ErrUnavailable with the original error kept in the chain;
// every other error, and nil, passes unchanged.
func TestUnavailable(t *testing.T) {
	statementTimeout := &pq.Error{Code: "57014", Message: "canceling statement due to statement timeout"}
	tests := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"nil", nil, false},
		{"statement timeout or cancel request", fmt.Errorf("audit: export: %w", statementTimeout), true},
		{"lock timeout", &pq.Error{Code: "55P03"}, true},
		{"deadline before the statement", fmt.Errorf("audit: %w", context.DeadlineExceeded), true},
		{"already unavailable", fmt.Errorf("x: %w", domain.ErrUnavailable), true},
		{"unique violation", &pq.Error{Code: "23505"}, false},
		{"serialization failure", &pq.Error{Code: "40001"}, false},
		{"cancelled by the caller", context.Canceled, false},
		{"not found", domain.ErrNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := postgres.Unavailable(tt.err)
			if errors.Is(got, domain.ErrUnavailable) != tt.unavailable {
				t.Fatalf("Unavailable(%v) = %v, want unavailable %v", tt.err, got, tt.unavailable)
			}
			if !errors.Is(got, tt.err) {
				t.Fatalf("Unavailable(%v) = %v lost the original error", tt.err, got)
			}
			if !tt.unavailable && got != tt.err {
				t.Fatalf("Unavailable(%v) = %v, want it unchanged", tt.err, got)
			}
		})
	}
	var pqErr *pq.Error
	if !errors.As(postgres.Unavailable(statementTimeout), &pqErr) || pqErr.Code != "57014" {
		t.Fatal("the *pq.Error is not found in the chain")
	}
}
