package stripe

import (
	"fmt"
)

// VerifySignature re-checks a stored Stripe-Signature header against the
// stored raw body: one of its v1 signatures must be the HMAC-SHA256 of
// "<t>.<payload>" under one of the configured secrets. The timestamp's age
// is not checked — a stored event is old by design — so this proves the
// origin of what the ledger kept, not the freshness of a request; webhooks
// are verified with Verify.
//
// It returns nil or an error wrapping ErrNoSignature, ErrMalformedHeader or
// ErrBadSignature (a secret rotated away since the event was received also
// gives ErrBadSignature: configure the old secret too to re-check those).
func (v *Verifier) VerifySignature(payload []byte, header string) error {
	if header == "" {
		return ErrNoSignature
	}
	if _, hasV1, err := parseHeader(header); err != nil {
		return err
	} else if !hasV1 {
		return fmt.Errorf("%w: header has no v1 signature", ErrBadSignature)
	}
	return v.matchSecret(payload, header)
}
