package stripe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/booking-ledger/ledger/domain"
)

// testNow is the verifier's injected clock in these tests: far from the
// real time, so a check that used time.Now instead would fail.
var testNow = time.Unix(1_600_000_000, 0)

const (
	secretA = "whsec_test_secret_A_0123456789abcdef"
	secretB = "whsec_test_secret_B_fedcba9876543210"
	secretC = "whsec_test_secret_C_aaaaaaaaaaaaaaaa"
)

// hmacSign is an independent signer written from Stripe's documentation,
// not from stripe-go: v1 = hex(HMAC-SHA256(secret, "<t>.<body>")).
func hmacSign(secret string, t time.Time, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(t.Unix(), 10) + "."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

func hmacHeader(secret string, t time.Time, body []byte) string {
	return fmt.Sprintf("t=%d,v1=%s", t.Unix(), hmacSign(secret, t, body))
}

func newTestVerifier(t *testing.T, secrets ...string) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Secrets: secrets, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func testPayload(t testing.TB) []byte {
	t.Helper()
	b, err := BuildEvent(EventCheckoutSessionCompleted, TestBooking{ID: 7, Amount: 36000, Currency: "eur"}, testNow)
	if err != nil {
		t.Fatalf("BuildEvent: %v", err)
	}
	return b
}

func TestVerifyAccepts(t *testing.T) {
	body := testPayload(t)
	sigA := hmacSign(secretA, testNow, body)
	sigB := hmacSign(secretB, testNow, body)
	tests := []struct {
		name    string
		secrets []string
		header  string
	}{
		{"Sign", []string{secretA}, Sign(body, secretA, testNow)},
		{"GenerateTestSignedPayload", []string{secretA}, webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
			Payload: body, Secret: secretA, Timestamp: testNow,
		}).Header},
		{"independent HMAC signer", []string{secretA}, hmacHeader(secretA, testNow, body)},
		{"second of three secrets", []string{secretC, secretA, secretB}, hmacHeader(secretA, testNow, body)},
		{"last of three secrets", []string{secretC, secretB, secretA}, Sign(body, secretA, testNow)},
		{"two v1 during a roll, new secret configured", []string{secretB}, fmt.Sprintf("t=%d,v1=%s,v1=%s", testNow.Unix(), sigA, sigB)},
		{"two v1 during a roll, old secret configured", []string{secretA}, fmt.Sprintf("t=%d,v1=%s,v1=%s", testNow.Unix(), sigA, sigB)},
		{"two v1 during a roll, both configured", []string{secretA, secretB}, fmt.Sprintf("t=%d,v1=%s,v1=%s", testNow.Unix(), sigB, sigA)},
		{"v0 and unknown schemes ignored", []string{secretA}, fmt.Sprintf("t=%d,v0=%s,v1=%s,v9=zz", testNow.Unix(), sigB, sigA)},
		{"undecodable v1 next to a good one", []string{secretA}, fmt.Sprintf("t=%d,v1=nothex,v1=%s", testNow.Unix(), sigA)},
		{"t after v1", []string{secretA}, fmt.Sprintf("v1=%s,t=%d", sigA, testNow.Unix())},
		{"300 s old", []string{secretA}, hmacHeader(secretA, testNow.Add(-300*time.Second), body)},
		{"300 s in the future", []string{secretA}, hmacHeader(secretA, testNow.Add(300*time.Second), body)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t, tt.secrets...)
			if err := v.Verify(body, tt.header); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

var verifySentinels = []error{ErrNoSignature, ErrMalformedHeader, ErrTimestampOutOfTolerance, ErrBadSignature}

// checkVerifyError asserts the error contract: domain.ErrInvalid, exactly
// one sentinel, and nothing secret in the message.
func checkVerifyError(t testing.TB, err error, header string, secrets []string) {
	t.Helper()
	if !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("error %q does not match domain.ErrInvalid", err)
	}
	n := 0
	for _, s := range verifySentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("error %q matches %d sentinels, want exactly 1", err, n)
	}
	msg := err.Error()
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Errorf("error %q contains a secret", msg)
		}
	}
	// Values made only of digits are skipped: the message states the
	// timestamp and the clock, and the fuzzer finds headers such as
	// "t=0,=00000000" whose "signature" is a substring of them.
	for elem := range strings.SplitSeq(header, ",") {
		if k, v, ok := strings.Cut(elem, "="); ok && k != "t" && len(v) >= 8 &&
			strings.Trim(v, "0123456789") != "" && strings.Contains(msg, v) {
			t.Errorf("error %q contains a signature", msg)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	body := testPayload(t)
	now := testNow.Unix()
	sigA := hmacSign(secretA, testNow, body)
	changed := slices.Clone(body)
	changed[len(changed)/2] ^= 0x01
	tests := []struct {
		name    string
		secrets []string
		body    []byte
		header  string
		want    error
	}{
		{"empty header", []string{secretA}, body, "", ErrNoSignature},
		{"garbage", []string{secretA}, body, "garbage", ErrMalformedHeader},
		{"element without =", []string{secretA}, body, fmt.Sprintf("t=%d,v1", now), ErrMalformedHeader},
		{"element with two =", []string{secretA}, body, fmt.Sprintf("t=%d,v1=%s=", now, sigA), ErrMalformedHeader},
		{"trailing comma", []string{secretA}, body, fmt.Sprintf("t=%d,v1=%s,", now, sigA), ErrMalformedHeader},
		{"no t", []string{secretA}, body, "v1=" + sigA, ErrMalformedHeader},
		{"two t", []string{secretA}, body, fmt.Sprintf("t=%d,t=%d,v1=%s", now, now, sigA), ErrMalformedHeader},
		{"non-integer t", []string{secretA}, body, "t=abc,v1=" + sigA, ErrMalformedHeader},
		{"fractional t", []string{secretA}, body, fmt.Sprintf("t=%d.5,v1=%s", now, sigA), ErrMalformedHeader},
		{"t overflowing int64", []string{secretA}, body, "t=99999999999999999999,v1=" + sigA, ErrMalformedHeader},
		{"only t", []string{secretA}, body, fmt.Sprintf("t=%d", now), ErrBadSignature},
		{"only v0", []string{secretA}, body, fmt.Sprintf("t=%d,v0=%s", now, sigA), ErrBadSignature},
		{"wrong secret", []string{secretB}, body, Sign(body, secretA, testNow), ErrBadSignature},
		{"wrong secret, several configured", []string{secretB, secretC}, body, Sign(body, secretA, testNow), ErrBadSignature},
		{"body changed by one byte", []string{secretA}, changed, Sign(body, secretA, testNow), ErrBadSignature},
		{"body with a trailing newline", []string{secretA}, append(slices.Clone(body), '\n'), Sign(body, secretA, testNow), ErrBadSignature},
		{"signature for another timestamp", []string{secretA}, body, fmt.Sprintf("t=%d,v1=%s", now+1, sigA), ErrBadSignature},
		{"301 s old", []string{secretA}, body, hmacHeader(secretA, testNow.Add(-301*time.Second), body), ErrTimestampOutOfTolerance},
		{"301 s in the future", []string{secretA}, body, hmacHeader(secretA, testNow.Add(301*time.Second), body), ErrTimestampOutOfTolerance},
		{"stale and forged", []string{secretA}, body, fmt.Sprintf("t=%d,v1=00", now-3600), ErrTimestampOutOfTolerance},
		{"t = 0", []string{secretA}, body, hmacHeader(secretA, time.Unix(0, 0), body), ErrTimestampOutOfTolerance},
		{"negative t", []string{secretA}, body, "t=-9223372036854775808,v1=" + sigA, ErrTimestampOutOfTolerance},
		{"largest t", []string{secretA}, body, "t=9223372036854775807,v1=" + sigA, ErrTimestampOutOfTolerance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t, tt.secrets...)
			err := v.Verify(tt.body, tt.header)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			checkVerifyError(t, err, tt.header, append(tt.secrets, secretA))
		})
	}
}

// TestVerifyUsesInjectedClock checks both directions of the window move
// with the clock, and that a custom tolerance is honoured.
func TestVerifyUsesInjectedClock(t *testing.T) {
	body := testPayload(t)
	header := Sign(body, secretA, testNow)
	now := testNow
	v, err := NewVerifier(VerifierConfig{Secrets: []string{secretA}, Tolerance: 10 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		offset time.Duration
		ok     bool
	}{
		{0, true}, {10 * time.Second, true}, {-10 * time.Second, true},
		{11 * time.Second, false}, {-11 * time.Second, false},
		// Sub-second clock positions must not shift the window.
		{10*time.Second + 999*time.Millisecond, true},
	} {
		now = testNow.Add(tt.offset)
		err := v.Verify(body, header)
		if (err == nil) != tt.ok {
			t.Errorf("clock %+v: Verify = %v, want ok=%v", tt.offset, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrTimestampOutOfTolerance) {
			t.Errorf("clock %+v: error %v is not ErrTimestampOutOfTolerance", tt.offset, err)
		}
	}
}

func TestNewVerifierDefaults(t *testing.T) {
	v, err := NewVerifier(VerifierConfig{Secrets: []string{secretA}})
	if err != nil {
		t.Fatal(err)
	}
	if v.tolerance != 300*time.Second {
		t.Errorf("default tolerance = %v, want 300s", v.tolerance)
	}
	body := []byte(`{"id":"evt_1"}`)
	if err := v.Verify(body, Sign(body, secretA, time.Now())); err != nil {
		t.Errorf("default clock: Verify of a fresh signature: %v", err)
	}
	if err := v.Verify(body, Sign(body, secretA, time.Now().Add(-time.Hour))); !errors.Is(err, ErrTimestampOutOfTolerance) {
		t.Errorf("default clock: Verify of an hour-old signature = %v", err)
	}
}

func TestNewVerifierCopiesSecrets(t *testing.T) {
	secrets := []string{secretA}
	v, err := NewVerifier(VerifierConfig{Secrets: secrets, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	secrets[0] = secretB
	body := testPayload(t)
	if err := v.Verify(body, Sign(body, secretA, testNow)); err != nil {
		t.Errorf("Verify after the caller changed its slice: %v", err)
	}
}

func TestNewVerifierRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  VerifierConfig
	}{
		{"no secrets", VerifierConfig{}},
		{"empty secret", VerifierConfig{Secrets: []string{secretA, ""}}},
		{"secret with spaces", VerifierConfig{Secrets: []string{" " + secretA}}},
		{"negative tolerance", VerifierConfig{Secrets: []string{secretA}, Tolerance: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.cfg)
			if err == nil || v != nil {
				t.Fatalf("NewVerifier = %v, %v; want an error", v, err)
			}
			if strings.Contains(err.Error(), secretA) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestParseSecrets(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"whsec_a", []string{"whsec_a"}},
		{"whsec_a,whsec_b", []string{"whsec_a", "whsec_b"}},
		{" whsec_a , whsec_b ,, ", []string{"whsec_a", "whsec_b"}},
		{"\twhsec_a\n", []string{"whsec_a"}},
	}
	for _, tt := range tests {
		if got := ParseSecrets(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("ParseSecrets(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSignMatchesIndependentSigner(t *testing.T) {
	body := testPayload(t)
	if got, want := Sign(body, secretA, testNow), hmacHeader(secretA, testNow, body); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}
