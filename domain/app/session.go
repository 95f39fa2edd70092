package app

import "time"

// Session is a sign-in to the auditor UI, kept by the storage side so that
// it can expire and be revoked. Only the SHA-256 digest of the session id
// is stored: the id itself lives in the browser's cookie alone, so reading
// the table does not let anyone sign in.
type Session struct {
	// Digest is SHA-256 of the random session id (32 bytes).
	Digest []byte
	// TokenName is the token the user signed in with; TokenFingerprint
	// is a digest of that token's secret at the time, so that the session
	// ends when the token is removed or replaced.
	TokenName        string
	TokenFingerprint []byte
	CreatedAt        time.Time
	// LastSeenAt is refreshed as the session is used (the idle expiry).
	LastSeenAt time.Time
	// RevokedAt is set by a sign-out; zero while the session is open.
	RevokedAt time.Time
	// RemoteAddr and UserAgent are where the sign-in came from.
	RemoteAddr, UserAgent string
}
