package domain

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Tests written for the survivors of `make mutate` (docs/MUTATION.md): each
// states a rule the earlier tests left open.

// TestRehydrateNamesTheBadVersion: the error of a stream that does not
// apply names the version (1-based) of the event that failed, so that an
// operator finds it in the log.
func TestRehydrateNamesTheBadVersion(t *testing.T) {
	events := lifecycle()[:2]
	events = append(events, BookingRequested{BookingID: 7}) // a second request
	_, err := Rehydrate(7, events)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "booking 7, version 3:") {
		t.Fatalf("Rehydrate: %v, want ErrInvalid naming version 3", err)
	}
}

// TestSeenAcrossSessions: a payment fact recorded with its own session id
// is matched by that session id even after the booking moved to a newer
// session; a redelivered failure of the old session decides nothing.
func TestSeenAcrossSessions(t *testing.T) {
	b := mustBooking(t, func(p *NewBookingParams) { p.SessionID = "cs_old" })
	failed := Payment{SessionID: "cs_old", FailureCode: "card_declined", Source: "webhook"}
	events, err := DecidePaymentFailed(b, failed)
	if err != nil || len(events) != 2 {
		t.Fatalf("first failure: %v, %v", events, err)
	}
	mustApply(t, b, events...)
	mustApply(t, b, CheckoutSessionOpened{SessionID: "cs_new", URL: "https://pay.example/cs_new", ExpiresAt: requestedAt.Add(time.Hour)})

	tests := []struct {
		name    string
		session string
		want    int // events decided
	}{
		{"redelivery of the old session's failure", "cs_old", 0},
		{"a failure of the new session", "cs_new", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := failed
			p.SessionID = tt.session
			events, err := DecidePaymentFailed(b, p)
			if err != nil || len(events) != tt.want {
				t.Errorf("DecidePaymentFailed: %v, %v; want %d events", events, err, tt.want)
			}
		})
	}
}

// TestCheckStripeIDShape: prefix, then ASCII letters, digits and
// underscores, at most maxStripeIDLen bytes; the edges of each character
// range are in, their neighbours out.
func TestCheckStripeIDShape(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"cs_azAZ09_", true},
		{"cs_" + strings.Repeat("a", maxStripeIDLen-3), true},
		{"cs_" + strings.Repeat("a", maxStripeIDLen-2), false},
		{"cs_", false},
		{"pi_abc", false},
		{"cs_`", false}, // before 'a'
		{"cs_{", false}, // after 'z'
		{"cs_@", false}, // before 'A'
		{"cs_[", false}, // after 'Z'
		{"cs_/", false}, // before '0'
		{"cs_:", false}, // after '9'
		{"cs_a-b", false},
		{"cs_é", false},
	}
	for _, tt := range tests {
		err := CheckStripeID("session_id", "cs_", tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("CheckStripeID(%q) = %v, want ok %v", tt.id, err, tt.ok)
		}
		if err != nil && !hasField(err, "session_id") {
			t.Errorf("CheckStripeID(%q) = %v, want a FieldError naming session_id", tt.id, err)
		}
	}
}

// TestCurrencyLetters: a currency is three ASCII letters of either case,
// lower-cased; the edges of both letter ranges are in, their neighbours
// out.
func TestCurrencyLetters(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"azA", "aza", true},
		{"ZzZ", "zzz", true},
		{"`ur", "", false}, // before 'a'
		{"{ur", "", false}, // after 'z'
		{"@UR", "", false}, // before 'A'
		{"[UR", "", false}, // after 'Z'
		{"eu1", "", false},
		{"eu", "", false},
	}
	for _, tt := range tests {
		got, ok := normaliseCurrency(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normaliseCurrency(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
