// Package access is the API's token model: roles, named bearer tokens,
// their parsing and validation, the constant-time token lookup, the
// per-client budget of failed authentications and the UI session digests.
package access

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Role is what a bearer token may do.
type Role string

// The roles. An operator may do everything; the others are read only.
const (
	// RoleOperator: every endpoint (create and cancel bookings, reads,
	// audit, metrics, the UI).
	RoleOperator Role = "operator"
	// RoleAuditor: reads only: bookings, history, audit events, the
	// monitoring summary and the auditor UI.
	RoleAuditor Role = "auditor"
	// RoleMetrics: GET /metrics only (a Prometheus scraper).
	RoleMetrics Role = "metrics"
)

// MinTokenLength is the shortest token accepted: 32 characters, e.g. 24
// random bytes in base64 or 16 in hex.
const MinTokenLength = 32

// Token is a named bearer token with a role. The name, never the secret,
// is what the access log and the request log record.
type Token struct {
	Name   string
	Role   Role
	Secret string
}

// DefaultTokenName names the single token of Config.APIToken
// (LEDGER_API_TOKEN): an operator.
const DefaultTokenName = "default"

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// ParseTokens reads a token list in the form of LEDGER_API_TOKENS:
// "name:role:token,..." (the token is everything after the second colon).
// Errors name the entry and its name, never its secret.
func ParseTokens(spec string) ([]Token, error) {
	var out []Token
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		parts := strings.SplitN(entry, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("entry %d: want name:role:token", i+1)
		}
		out = append(out, Token{Name: parts[0], Role: Role(parts[1]), Secret: parts[2]})
	}
	return out, nil
}

// ValidateTokens checks a token list: at least one token; names of 1-64
// letters, digits and _ . @ -, each once; known roles; secrets of at least
// MinTokenLength characters without white space or commas, each once.
// Errors name the token, never its secret.
func ValidateTokens(tokens []Token) error {
	if len(tokens) == 0 {
		return errors.New("http: no API token")
	}
	names := map[string]bool{}
	digests := map[[32]byte]bool{}
	for i, t := range tokens {
		switch {
		case !tokenName.MatchString(t.Name):
			return fmt.Errorf("http: token %d: name %q: want 1-64 letters, digits, _ . @ -", i+1, t.Name)
		case t.Role != RoleOperator && t.Role != RoleAuditor && t.Role != RoleMetrics:
			return fmt.Errorf("http: token %q: role %q: want operator, auditor or metrics", t.Name, t.Role)
		case len(t.Secret) < MinTokenLength:
			return fmt.Errorf("http: token %q is shorter than %d characters", t.Name, MinTokenLength)
		case strings.ContainsAny(t.Secret, " \t\r\n,"):
			return fmt.Errorf("http: token %q holds white space or a comma", t.Name)
		case names[t.Name]:
			return fmt.Errorf("http: token name %q given twice", t.Name)
		}
		d := sha256.Sum256([]byte(t.Secret))
		if digests[d] {
			return fmt.Errorf("http: token %q has the secret of another token", t.Name)
		}
		names[t.Name], digests[d] = true, true
	}
	return nil
}

// TokenSet looks tokens up by the SHA-256 digest of the presented value,
// comparing every configured digest in constant time: neither the
// contents nor the length of a token can be learnt from the timing.
type TokenSet struct {
	tokens  []Token
	digests [][32]byte
}

// NewTokenSet returns the set of tokens.
func NewTokenSet(tokens []Token) *TokenSet {
	s := &TokenSet{tokens: tokens, digests: make([][32]byte, len(tokens))}
	for i, t := range tokens {
		s.digests[i] = sha256.Sum256([]byte(t.Secret))
	}
	return s
}

// Find returns the token whose secret is presented, if any.
func (s *TokenSet) Find(presented string) (Token, bool) {
	d := sha256.Sum256([]byte(presented))
	found := -1
	for i := range s.digests {
		if subtle.ConstantTimeCompare(d[:], s.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Token{}, false
	}
	return s.tokens[found], true
}

// ByName returns the configured token called name, if any.
func (s *TokenSet) ByName(name string) (Token, bool) {
	for _, t := range s.tokens {
		if t.Name == name {
			return t, true
		}
	}
	return Token{}, false
}

// SessionDigest is what the server keeps of a UI session id: its SHA-256.
func SessionDigest(id string) []byte {
	d := sha256.Sum256([]byte(id))
	return d[:]
}

// TokenFingerprint ties a session to the token's secret at sign-in.
func TokenFingerprint(t Token) []byte {
	d := sha256.Sum256([]byte("ledger-ui-token-v1\x00" + t.Secret))
	return d[:16]
}

// CSRFToken is the logout form's anti-forgery value: an HMAC of a fixed
// label keyed with the session id, which only the cookie holds, so a page
// of another site can neither read nor compute it.
func CSRFToken(sessionID string) string {
	m := hmac.New(sha256.New, []byte(sessionID))
	m.Write([]byte("ledger-ui-csrf-v1"))
	return hex.EncodeToString(m.Sum(nil))
}
