package domain

import (
	"errors"
	"fmt"
	"testing"
)

func TestFieldError(t *testing.T) {
	var err error = &FieldError{Field: "check_in", Msg: "must be a date"}
	if got, want := err.Error(), "check_in: must be a date"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("create booking: %w", err)
	if !errors.Is(wrapped, ErrInvalid) {
		t.Error("wrapped FieldError does not match ErrInvalid")
	}
	for _, other := range []error{ErrNotFound, ErrConflict, ErrConcurrency, ErrDuplicate, ErrUnauthorized} {
		if errors.Is(wrapped, other) {
			t.Errorf("FieldError matches %v", other)
		}
	}
	var fe *FieldError
	if !errors.As(wrapped, &fe) || fe.Field != "check_in" {
		t.Errorf("errors.As: got %+v", fe)
	}
}

func TestSentinelsDistinct(t *testing.T) {
	all := []error{ErrInvalid, ErrNotFound, ErrConflict, ErrConcurrency, ErrDuplicate, ErrUnauthorized}
	for i, a := range all {
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v matches %v", a, b)
			}
		}
	}
}
