package stripe

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/booking-ledger/ledger/domain"
)

// DefaultTolerance is how far a signature's timestamp may lie from the
// verifier's clock, in either direction, when VerifierConfig.Tolerance is
// zero. It equals stripe-go's webhook.DefaultTolerance (300 s), the window
// Stripe documents.
const DefaultTolerance = webhook.DefaultTolerance

// Verification errors. Each error returned by Verifier.Verify wraps exactly
// one of them, and every one of them also matches domain.ErrInvalid, so the
// HTTP adapter answers 400 without knowing this package. Their messages (and
// those of the errors wrapping them) never contain a secret or a signature.
var (
	// ErrNoSignature reports an empty Stripe-Signature header.
	ErrNoSignature = newInvalid("stripe signature: no Stripe-Signature header")
	// ErrMalformedHeader reports a Stripe-Signature header that is not a
	// comma-separated list of key=value pairs with exactly one integer "t".
	ErrMalformedHeader = newInvalid("stripe signature: malformed Stripe-Signature header")
	// ErrTimestampOutOfTolerance reports a signature timestamp more than the
	// tolerance in the past or in the future.
	ErrTimestampOutOfTolerance = newInvalid("stripe signature: timestamp outside tolerance")
	// ErrBadSignature reports a header without any v1 signature, or whose v1
	// signatures match none of the configured secrets (wrong secret, or a
	// body changed in transit).
	ErrBadSignature = newInvalid("stripe signature: no valid v1 signature")
)

// invalidError is a sentinel whose class is domain.ErrInvalid: it unwraps to
// it instead of repeating domain.ErrInvalid's text in every message.
type invalidError struct{ msg string }

func newInvalid(msg string) error { return &invalidError{msg: msg} }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return domain.ErrInvalid }

// VerifierConfig configures a Verifier. The zero values of Tolerance and Now
// are replaced by their defaults.
type VerifierConfig struct {
	// Secrets are the endpoint's signing secrets ("whsec_..."). At least
	// one is required; while a secret is being rolled, list the old and the
	// new one: a payload is accepted when any of them signed it.
	Secrets []string
	// Tolerance is the largest accepted distance between the signature's
	// timestamp and Now, in the past as in the future. Default
	// DefaultTolerance (300 s).
	Tolerance time.Duration
	// Now is the clock used for the tolerance check. Default time.Now.
	Now func() time.Time
}

func (c *VerifierConfig) setDefaults() {
	if c.Tolerance == 0 {
		c.Tolerance = DefaultTolerance
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot verify anything: no secret,
// an empty secret, a secret with surrounding white space (almost always a
// copy-and-paste slip that would make every signature fail) or a negative
// tolerance. The error names the secret by position, never by value.
func (c VerifierConfig) Validate() error {
	if len(c.Secrets) == 0 {
		return errors.New("stripe verifier: at least one webhook secret is required")
	}
	for i, s := range c.Secrets {
		if s == "" {
			return fmt.Errorf("stripe verifier: webhook secret %d is empty", i+1)
		}
		if strings.TrimSpace(s) != s {
			return fmt.Errorf("stripe verifier: webhook secret %d has leading or trailing white space", i+1)
		}
	}
	if c.Tolerance < 0 {
		return fmt.Errorf("stripe verifier: tolerance %v is negative", c.Tolerance)
	}
	return nil
}

// Verifier checks Stripe-Signature headers against one or more secrets. It
// is safe for concurrent use.
type Verifier struct {
	secrets   []string
	tolerance time.Duration
	now       func() time.Time
}

// NewVerifier returns a Verifier for cfg after filling in its defaults; it
// fails when cfg.Validate does.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Verifier{
		// A copy, so a caller reusing its slice cannot change the secrets of
		// a running verifier.
		secrets:   append([]string(nil), cfg.Secrets...),
		tolerance: cfg.Tolerance,
		now:       cfg.Now,
	}, nil
}

// ParseSecrets splits a comma-separated list of secrets (the form of
// STRIPE_WEBHOOK_SECRET), trimming white space around each and dropping
// empty entries, so "whsec_a, whsec_b," gives two secrets. It returns nil
// when nothing is left.
func ParseSecrets(commaSeparated string) []string {
	var out []string
	for _, s := range strings.Split(commaSeparated, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Verify checks that header is a valid Stripe-Signature for payload, the raw
// request body byte for byte: its timestamp must lie within the tolerance of
// the verifier's clock (both ways), and one of its v1 signatures must be the
// HMAC-SHA256 of "<t>.<payload>" under one of the configured secrets. v0 and
// unknown schemes are ignored. It does not look at the JSON.
//
// It returns nil or an error wrapping exactly one of ErrNoSignature,
// ErrMalformedHeader, ErrTimestampOutOfTolerance, ErrBadSignature (checked
// in that order, so a stale header is reported as such without spending an
// HMAC per secret on it); all of them match domain.ErrInvalid.
func (v *Verifier) Verify(payload []byte, header string) error {
	if header == "" {
		return ErrNoSignature
	}
	// The header is stored as text with the raw event for the auditors:
	// bytes that are not UTF-8 (Go's server lets them through) would make
	// that write fail with 500 on every retry.
	if !utf8.ValidString(header) || strings.IndexByte(header, 0) >= 0 {
		return fmt.Errorf("%w: not UTF-8 text", ErrMalformedHeader)
	}
	ts, hasV1, err := parseHeader(header)
	if err != nil {
		return err
	}

	// stripe-go only rejects timestamps in the past, and against time.Now:
	// a timestamp far in the future would let a captured request be
	// replayed until then, and tests need an injected clock. Hence the
	// two-sided check here, with whole seconds on both sides because that
	// is the header's resolution.
	now := v.now().Unix()
	tol := int64(v.tolerance / time.Second)
	if ts < now-tol || ts > now+tol {
		// Neither the server's clock nor the tolerance goes into the
		// error: it is answered to unauthenticated senders.
		return ErrTimestampOutOfTolerance
	}
	if !hasV1 {
		return fmt.Errorf("%w: header has no v1 signature", ErrBadSignature)
	}

	return v.matchSecret(payload, header)
}

// matchSecret checks the header's v1 signatures against each configured
// secret with stripe-go's webhook package (tolerance skipped: the callers
// decide about the timestamp). stripe-go takes one secret per call, so
// rotation means trying each one.
func (v *Verifier) matchSecret(payload []byte, header string) error {
	for _, secret := range v.secrets {
		switch err := webhook.ValidatePayloadIgnoringTolerance(payload, header, secret); {
		case err == nil:
			return nil
		case errors.Is(err, webhook.ErrNoValidSignature):
			continue
		case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader):
			// parseHeader is at least as strict as stripe-go, so this is
			// unreachable unless stripe-go's parser changes.
			return fmt.Errorf("%w (rejected by stripe-go)", ErrMalformedHeader)
		default:
			return fmt.Errorf("%w: %w", ErrBadSignature, err)
		}
	}
	// How many secrets were tried is not said: the error is answered to
	// unauthenticated senders, and would tell a rotation under way.
	return ErrBadSignature
}

// parseHeader reads the timestamp of a Stripe-Signature header and whether
// it has a v1 element. It accepts exactly what stripe-go's parser accepts
// (comma-separated elements with exactly one "=", an integer t) except that
// it also requires exactly one t: stripe-go silently signs with the Unix
// epoch when t is missing and keeps the last of several, and neither is
// something Stripe sends.
func parseHeader(header string) (ts int64, hasV1 bool, err error) {
	seenT := false
	for elem := range strings.SplitSeq(header, ",") {
		key, value, ok := strings.Cut(elem, "=")
		if !ok || strings.Contains(value, "=") {
			return 0, false, fmt.Errorf("%w: element without exactly one '='", ErrMalformedHeader)
		}
		switch key {
		case "t":
			if seenT {
				return 0, false, fmt.Errorf("%w: more than one t", ErrMalformedHeader)
			}
			seenT = true
			ts, err = strconv.ParseInt(value, 10, 64)
			if err != nil {
				return 0, false, fmt.Errorf("%w: t is not an integer", ErrMalformedHeader)
			}
		case "v1":
			hasV1 = true
		}
	}
	if !seenT {
		return 0, false, fmt.Errorf("%w: no t", ErrMalformedHeader)
	}
	return ts, hasV1, nil
}

// Sign returns a Stripe-Signature header value for payload signed with
// secret at time t, exactly as Stripe would send it for one active secret
// ("t=<unix>,v1=<hex>"). It is made with stripe-go's
// webhook.GenerateTestSignedPayload; `ledger send-test-webhook` and the tests
// use it. A zero t means now.
func Sign(payload []byte, secret string, t time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload:   payload,
		Secret:    secret,
		Timestamp: t,
		Scheme:    "v1",
	}).Header
}
