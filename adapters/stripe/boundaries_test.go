package stripe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/booking-ledger/ledger/domain"
)

// The edges of the adapter's checks, written for the survivors of `make
// mutate` (docs/MUTATION.md): each limit is tested on both sides.

// TestParseEventCreatedRange: created 0 means "not given" (zero time),
// negative and past 9999-12-31T23:59:59Z are refused, the last second is
// accepted.
func TestParseEventCreatedRange(t *testing.T) {
	valid := event(EventCheckoutSessionCompleted, sessionObject)
	tests := []struct {
		name    string
		created string
		want    time.Time
		ok      bool
	}{
		{"zero", "0", time.Time{}, true},
		{"one", "1", time.Unix(1, 0).UTC(), true},
		{"negative", "-1", time.Time{}, false},
		{"last second", "253402300799", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), true},
		{"past the last second", "253402300800", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEvent([]byte(strings.Replace(valid, `"created":1700000000`, `"created":`+tt.created, 1)))
			if tt.ok != (err == nil) {
				t.Fatalf("ParseEvent: %v, want ok %v", err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), "created") {
					t.Errorf("error %v does not name created", err)
				}
				return
			}
			if !e.Created.Equal(tt.want) || e.Created.IsZero() != tt.want.IsZero() {
				t.Errorf("Created %v, want %v", e.Created, tt.want)
			}
		})
	}
}

// TestParseEventRejectsLeadingNUL: a NUL character is refused wherever it
// stands in a stored text, the first byte included.
func TestParseEventRejectsLeadingNUL(t *testing.T) {
	tests := []struct {
		name, object, field string
	}{
		{"status", withField(t, sessionObject, "status", `"\u0000complete"`), "data.object.status"},
		{"metadata key", withField(t, sessionObject, "metadata", `{"\u0000k":"v"}`), "data.object.metadata"},
		{"metadata value", withField(t, sessionObject, "metadata", `{"booking_id":"\u00005"}`), "data.object.metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEvent([]byte(event(EventCheckoutSessionCompleted, tt.object)))
			if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("ParseEvent: %v, want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
}

// TestCheckSessionIDLength: at most 255 bytes, prefix included.
func TestCheckSessionIDLength(t *testing.T) {
	if err := CheckSessionID("cs_" + strings.Repeat("a", maxEventIDLen-3)); err != nil {
		t.Errorf("255 bytes: %v", err)
	}
	if err := CheckSessionID("cs_" + strings.Repeat("a", maxEventIDLen-2)); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("256 bytes: %v, want ErrInvalid", err)
	}
}

// TestCreateCheckoutSessionRefusesBeforeSending: a booking id or an amount
// that is not positive is refused without a request (the client points at
// a closed port: a request would fail otherwise, not with ErrInvalid).
func TestCreateCheckoutSessionRefusesBeforeSending(t *testing.T) {
	c, err := NewClient(ClientConfig{SecretKey: "sk_test_1", BaseURL: "http://127.0.0.1:1", MaxNetworkRetries: 0})
	if err != nil {
		t.Fatal(err)
	}
	valid := CheckoutSessionParams{BookingID: 1, Amount: 1, Currency: "eur", ProductName: "room", SuccessURL: "https://l.example/s",
		CancelURL: "https://l.example/c", ExpiresAt: time.Now().Add(time.Hour), IdempotencyKey: "k"}
	tests := []struct {
		name string
		edit func(*CheckoutSessionParams)
		want string
	}{
		{"booking id 0", func(p *CheckoutSessionParams) { p.BookingID = 0 }, "booking id"},
		{"amount 0", func(p *CheckoutSessionParams) { p.Amount = 0 }, "amount and currency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := valid
			tt.edit(&p)
			_, err := c.CreateCheckoutSession(context.Background(), p)
			if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CreateCheckoutSession: %v, want ErrInvalid naming %s", err, tt.want)
			}
		})
	}
}

// TestSessionFromExpiry: a session without expires_at has a zero ExpiresAt,
// not 1970.
func TestSessionFromExpiry(t *testing.T) {
	if got := sessionFrom(&stripego.CheckoutSession{ID: "cs_1"}).ExpiresAt; !got.IsZero() {
		t.Errorf("ExpiresAt %v, want zero", got)
	}
	if got := sessionFrom(&stripego.CheckoutSession{ID: "cs_1", ExpiresAt: 1}).ExpiresAt; !got.Equal(time.Unix(1, 0)) {
		t.Errorf("ExpiresAt %v, want 1970-01-01T00:00:01Z", got)
	}
}

// TestClientConfigDefaults: a zero timeout means 15 seconds and zero
// retries are allowed; only negative values are refused.
func TestClientConfigDefaults(t *testing.T) {
	cfg := ClientConfig{SecretKey: "sk_test_1"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("zero timeout and retries: %v", err)
	}
	cfg.setDefaults()
	if cfg.Timeout != 15*time.Second {
		t.Errorf("default timeout %v, want 15s", cfg.Timeout)
	}
	given := ClientConfig{SecretKey: "sk_test_1", Timeout: time.Second}
	if given.setDefaults(); given.Timeout != time.Second {
		t.Errorf("given timeout replaced: %v", given.Timeout)
	}
	if err := (ClientConfig{SecretKey: "sk_test_1", Timeout: -1}).Validate(); err == nil {
		t.Error("negative timeout accepted")
	}
}
