package domain

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

var requestedAt = time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)

func validParams() NewBookingParams {
	return NewBookingParams{
		ID:            7,
		ResourceID:    "room-12",
		CheckIn:       "2027-01-10",
		CheckOut:      "2027-01-13",
		Amount:        36000,
		Currency:      "eur",
		CustomerEmail: "guest@example.com",
		SessionID:     "cs_test_1",
		RequestedAt:   requestedAt,
	}
}

func mustBooking(t *testing.T, mod func(*NewBookingParams)) *Booking {
	t.Helper()
	p := validParams()
	if mod != nil {
		mod(&p)
	}
	b, _, err := NewBooking(p)
	if err != nil {
		t.Fatalf("NewBooking: %v", err)
	}
	return b
}

func mustApply(t *testing.T, b *Booking, events ...Event) {
	t.Helper()
	for _, e := range events {
		if err := b.Apply(e); err != nil {
			t.Fatalf("Apply(%T): %v", e, err)
		}
	}
}

func mustRange(t *testing.T, in, out string) DateRange {
	t.Helper()
	r, err := ParseDateRange(in, out)
	if err != nil {
		t.Fatalf("ParseDateRange(%q, %q): %v", in, out, err)
	}
	return r
}

// wantFieldError asserts err is invalid input that names field.
func wantFieldError(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error naming %q, got nil", field)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	if !hasField(err, field) {
		t.Errorf("error %q does not name field %q", err, field)
	}
}

// hasField walks joined errors, because errors.As only finds the first
// FieldError and a join may name several fields.
func hasField(err error, field string) bool {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Field == field {
		return true
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if hasField(e, field) {
				return true
			}
		}
	}
	return false
}

func sameEvents(a, b []Event) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
