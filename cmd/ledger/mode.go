package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/app"
)

// loadStripeMode reads LEDGER_STRIPE_MODE ("test", "live" or unset) and
// LEDGER_STRIPE_ACCOUNTS (comma-separated acct_... ids), refusing any other
// value: a typo must not turn the filter off. Which mode an unset
// LEDGER_STRIPE_MODE means is decided by stripeMode, once --dev is known.
func (c *Config) loadStripeMode() error {
	c.StripeMode = os.Getenv("LEDGER_STRIPE_MODE")
	switch c.StripeMode {
	case "", "test", "live":
	default:
		return fmt.Errorf("LEDGER_STRIPE_MODE is %q: set it to test or live", c.StripeMode)
	}
	c.StripeAccounts = nil
	raw := os.Getenv("LEDGER_STRIPE_ACCOUNTS")
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	for i, a := range strings.Split(raw, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return fmt.Errorf("LEDGER_STRIPE_ACCOUNTS: entry %d is empty: list acct_... ids separated by commas", i+1)
		}
		c.StripeAccounts = append(c.StripeAccounts, a)
	}
	if err := (app.Mode{Accounts: c.StripeAccounts}).Validate(); err != nil {
		return fmt.Errorf("LEDGER_STRIPE_ACCOUNTS: %w", err)
	}
	return nil
}

// stripeMode is the mode the ledger decides in, and what set it:
// LEDGER_STRIPE_MODE when set; else the prefix of STRIPE_SECRET_KEY
// (sk_live_/rk_live_ live, sk_test_/rk_test_ test); else test under --dev.
// Otherwise it refuses, naming LEDGER_STRIPE_MODE: guessing would either
// let test events confirm real bookings or ignore real payments. It also
// refuses a mode that a key contradicts (LEDGER_STRIPE_MODE live with an
// sk_test_ key, a test secret key with a pk_live_ public key): the API
// calls would then be made in the other mode than the events.
func (c Config) stripeMode() (mode app.Mode, source string, err error) {
	secretLive, secretKnown := stripe.KeyLivemode(c.StripeSecretKey)
	switch {
	case c.StripeMode != "":
		mode.Live, source = c.StripeMode == "live", "LEDGER_STRIPE_MODE"
		if secretKnown && secretLive != mode.Live {
			return mode, source, fmt.Errorf("LEDGER_STRIPE_MODE is %s but STRIPE_SECRET_KEY is a %s key (%s...): use the %s key, or set LEDGER_STRIPE_MODE=%s",
				mode, modeName(secretLive), keyPrefix(c.StripeSecretKey), mode, modeName(secretLive))
		}
	case secretKnown:
		mode.Live, source = secretLive, "STRIPE_SECRET_KEY"
	case c.Dev:
		source = "--dev"
	default:
		return mode, "", fmt.Errorf("LEDGER_STRIPE_MODE is not set and STRIPE_SECRET_KEY does not tell the mode: set LEDGER_STRIPE_MODE to test or live (or use an sk_live_/sk_test_ key, or run `ledger serve --dev` for test mode)")
	}
	if publicLive, known := stripe.KeyLivemode(c.StripePublicKey); known && publicLive != mode.Live {
		return mode, source, fmt.Errorf("STRIPE_PUBLIC_KEY is a %s key (%s...) but the mode is %s (from %s): use keys of one mode, or set LEDGER_STRIPE_MODE",
			modeName(publicLive), keyPrefix(c.StripePublicKey), mode, source)
	}
	mode.Accounts = c.StripeAccounts
	if err := mode.Validate(); err != nil {
		return mode, source, fmt.Errorf("LEDGER_STRIPE_ACCOUNTS: %w", err)
	}
	return mode, source, nil
}

func modeName(live bool) string {
	return app.Mode{Live: live}.String()
}

// keyPrefix is what a message may show of a key: "sk_test_", never the
// secret part.
func keyPrefix(key string) string {
	if i := strings.Index(key, "_"); i >= 0 {
		if j := strings.Index(key[i+1:], "_"); j >= 0 {
			return key[:i+j+2]
		}
	}
	return ""
}
