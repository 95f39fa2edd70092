package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/booking-ledger/ledger/domain"
)

// chainHashVersion names the layout hashed by ChainHash.
const chainHashVersion = "ledger-chain-hash-v1"

// ChainHash is the hash of the global chain's link number seq: SHA-256 over
// the length-prefixed layout version, seq, the event's global position, the
// event's own hash (EventHash) and the previous link's chain hash
// (GenesisHash for seq 1). Covering the position means that two events
// whose positions were swapped no longer match their links.
func ChainHash(seq, position int64, eventHash, prevChainHash []byte) []byte {
	var buf [4 + len(chainHashVersion) + 4 + 8 + 4 + 8 + 4 + sha256.Size + 4 + sha256.Size]byte
	b := buf[:0]
	field := func(p []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	var n [8]byte
	field([]byte(chainHashVersion))
	binary.BigEndian.PutUint64(n[:], uint64(seq))
	field(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(position))
	field(n[:])
	field(eventHash)
	field(prevChainHash)
	sum := sha256.Sum256(b)
	return sum[:]
}

// ChainHead is the newest link of the global chain. Kept outside the
// database (printed by `ledger audit head`), it lets `ledger audit verify
// --anchor` detect that the newest events were deleted together with their
// links.
type ChainHead struct {
	Seq      int64     `json:"seq"`
	Position int64     `json:"position"`
	Hash     string    `json:"hash"`
	SealedAt time.Time `json:"sealed_at"`
}

// Anchor is the "POS:HASH" form of the head, as --anchor takes it.
func (h ChainHead) Anchor() string {
	return strconv.FormatInt(h.Position, 10) + ":" + h.Hash
}

// Anchor is a chain head kept outside the database: the position of an
// event and the chain hash of its link.
type Anchor struct {
	Position int64
	Hash     []byte
}

// ParseAnchor reads "POS:HASH" (HASH 64 hex digits). Errors wrap
// domain.ErrInvalid.
func ParseAnchor(s string) (Anchor, error) {
	pos, h, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Anchor{}, fmt.Errorf("anchor %q: want POS:HASH: %w", s, domain.ErrInvalid)
	}
	p, err := strconv.ParseInt(pos, 10, 64)
	if err != nil || p <= 0 {
		return Anchor{}, fmt.Errorf("anchor %q: position must be a positive integer: %w", s, domain.ErrInvalid)
	}
	hash, err := hex.DecodeString(h)
	if err != nil || len(hash) != sha256.Size {
		return Anchor{}, fmt.Errorf("anchor %q: hash must be 64 hex digits: %w", s, domain.ErrInvalid)
	}
	return Anchor{Position: p, Hash: hash}, nil
}
