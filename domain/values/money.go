package values

import (
	"fmt"
	"strings"
)

// Money is an amount in the minor unit of its currency (cents for eur, yen
// for jpy) together with the lower-case ISO 4217 currency code, exactly as
// Stripe represents it. Minor units in an int64 keep arithmetic exact.
//
// The fields are exported because Money is a plain value that is compared
// with ==; NewMoney is the way to build one from untrusted input.
type Money struct {
	// Amount in minor units.
	Amount int64
	// Currency is a lower-case three-letter ISO 4217 code, e.g. "eur".
	Currency string
}

// NewMoney validates and normalises an amount and currency. The amount must be
// positive; the currency must be three ASCII letters and is lower-cased (Stripe
// uses lower case, clients sometimes send "EUR"). It does not check the code
// against the ISO list: Stripe rejects an unsupported currency when the
// Checkout Session is created.
//
// Errors are *FieldError values (matching ErrInvalid) naming "amount" and/or
// "currency", joined with errors.Join when both are wrong.
func NewMoney(amount int64, currency string) (Money, error) {
	var errs FieldErrors
	if amount <= 0 {
		errs.Add("amount", "must be a positive integer in minor units")
	}
	cur, ok := NormaliseCurrency(currency)
	if !ok {
		errs.Add("currency", "must be a three-letter ISO 4217 code")
	}
	if err := errs.Err(); err != nil {
		return Money{}, err
	}
	return Money{Amount: amount, Currency: cur}, nil
}

// String returns e.g. "36000 eur" (minor units; formatting for humans depends
// on the currency's exponent and belongs to the presentation layer).
func (m Money) String() string {
	return fmt.Sprintf("%d %s", m.Amount, m.Currency)
}

// NormaliseCurrency lower-cases a three-letter ASCII code; ok is false for
// anything else (including non-ASCII letters, which strings.ToLower would
// otherwise happily accept).
func NormaliseCurrency(s string) (string, bool) {
	if len(s) != 3 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return "", false
		}
	}
	return strings.ToLower(s), true
}
