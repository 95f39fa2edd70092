package stripe

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

func TestKeyLivemode(t *testing.T) {
	tests := []struct {
		key         string
		live, known bool
	}{
		{"sk_live_51Habc", true, true},
		{"rk_live_51Habc", true, true},
		{"pk_live_51Habc", true, true},
		{"sk_test_51Habc", false, true},
		{"rk_test_51Habc", false, true},
		{"pk_test_51Habc", false, true},
		{"", false, false},
		{"sk_123", false, false},
		{"sk_livex", false, false},
		{"whsec_live_1", false, false},
		{"live_sk_1", false, false},
	}
	for _, tt := range tests {
		live, known := KeyLivemode(tt.key)
		if live != tt.live || known != tt.known {
			t.Errorf("KeyLivemode(%q) = %v, %v; want %v, %v", tt.key, live, known, tt.live, tt.known)
		}
	}
}

// TestParseEventAccount: the top-level "account" of Connect events is read
// and reaches the delivery; absent or null it is the platform's (""); a NUL
// in it or another JSON type is refused, naming the field.
func TestParseEventAccount(t *testing.T) {
	valid := event(EventCheckoutSessionCompleted, sessionObject)
	with := func(value string) string {
		return strings.Replace(valid, `"livemode":false`, `"livemode":true,"account":`+value, 1)
	}
	tests := []struct {
		name, body, want, bad string
	}{
		{"absent", valid, "", ""},
		{"null", with(`null`), "", ""},
		{"connected account", with(`"acct_1Nv0FGQ9RKHgCVdK"`), "acct_1Nv0FGQ9RKHgCVdK", ""},
		{"NUL", with(`"acct_\u00001"`), "", "account"},
		{"number", with(`7`), "", "account"},
		{"NUL, unhandled type", strings.Replace(with(`"acct_\u00001"`), EventCheckoutSessionCompleted, "customer.created", 1), "", "account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDelivery([]byte(tt.body), "", "webhook", time.Now())
			if tt.bad != "" {
				if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), tt.bad) {
					t.Fatalf("ParseDelivery: %v, want ErrInvalid naming %s", err, tt.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Account != tt.want {
				t.Errorf("Account %q, want %q", d.Account, tt.want)
			}
		})
	}
}
