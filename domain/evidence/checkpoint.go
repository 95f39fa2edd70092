// Package evidence is what lets someone check the ledger without trusting
// the database or its owner: the RFC 6962 (RFC 9162) Merkle tree over the
// global chain's links, signed checkpoints of it in the C2SP
// tlog-checkpoint / signed-note form, inclusion and consistency proofs,
// and the per-booking evidence bundle with its offline check.
//
// It is pure, like domain/eventlog: no I/O, no database. Besides the
// standard library and domain/..., it imports only the two libraries that
// define the formats it writes (github.com/transparency-dev/merkle and
// golang.org/x/mod/sumdb/note), both pure computation.
package evidence

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/booking-ledger/ledger/domain"
)

// Checkpoint is a signed statement that the log named Origin had Size
// leaves (chain links) with Merkle root Root.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
}

// Text is the checkpoint's body in the C2SP tlog-checkpoint form: the
// origin, the size in decimal and the root in base64, one per line.
func (c Checkpoint) Text() string {
	return c.Origin + "\n" + strconv.FormatUint(c.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(c.Root) + "\n"
}

// ParseText reads a checkpoint body (Text's form; extension lines, which
// the ledger never writes, are refused). Errors wrap domain.ErrInvalid.
func ParseText(text string) (Checkpoint, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return Checkpoint{}, fmt.Errorf("checkpoint: want origin, size and root on three lines: %w", domain.ErrInvalid)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("checkpoint: size %q: %w", lines[1], domain.ErrInvalid)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return Checkpoint{}, fmt.Errorf("checkpoint: root %q: %w", lines[2], domain.ErrInvalid)
	}
	if lines[0] == "" {
		return Checkpoint{}, fmt.Errorf("checkpoint: empty origin: %w", domain.ErrInvalid)
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: root}, nil
}

// GenerateKey returns a new Ed25519 key pair for signing checkpoints of the
// log named name (which becomes the checkpoints' origin): the signer key
// (PRIVATE+KEY+name+...) to keep secret and the verifier key to publish.
func GenerateKey(name string) (signerKey, verifierKey string, err error) {
	return note.GenerateKey(rand.Reader, name)
}

// Signer signs checkpoints with a signer key of GenerateKey.
type Signer struct{ s note.Signer }

// NewSigner reads a signer key. Errors wrap domain.ErrInvalid.
func NewSigner(key string) (*Signer, error) {
	s, err := note.NewSigner(strings.TrimSpace(key))
	if err != nil {
		return nil, fmt.Errorf("checkpoint signer key: %v: %w", err, domain.ErrInvalid)
	}
	return &Signer{s: s}, nil
}

// Origin is the name of the key, which every checkpoint it signs carries
// as its origin.
func (s *Signer) Origin() string { return s.s.Name() }

// Sign returns the signed note of a checkpoint of size and root.
func (s *Signer) Sign(size uint64, root []byte) ([]byte, error) {
	c := Checkpoint{Origin: s.Origin(), Size: size, Root: root}
	msg, err := note.Sign(&note.Note{Text: c.Text()}, s.s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}

// Verifier checks checkpoints against a verifier key of GenerateKey.
type Verifier struct{ v note.Verifier }

// NewVerifier reads a verifier key. Errors wrap domain.ErrInvalid.
func NewVerifier(key string) (*Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(key))
	if err != nil {
		return nil, fmt.Errorf("checkpoint verifier key: %v: %w", err, domain.ErrInvalid)
	}
	return &Verifier{v: v}, nil
}

// Origin is the log name the key signs for.
func (v *Verifier) Origin() string { return v.v.Name() }

// ErrBadSignature: a checkpoint that is not signed by the key, or whose
// bytes changed since.
var ErrBadSignature = errors.New("checkpoint: not signed by this key (or changed since)")

// Open checks a signed checkpoint's signature and returns the checkpoint.
// It is strict: one signature, by the key, in canonical base64.
// The error wraps ErrBadSignature when the signature does not verify, and
// domain.ErrInvalid when the note is malformed or its origin is not the
// key's.
func (v *Verifier) Open(msg []byte) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v.v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return Checkpoint{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return Checkpoint{}, fmt.Errorf("checkpoint: %v: %w", err, domain.ErrInvalid)
	}
	// Strict: the ledger's checkpoints carry its one signature, in
	// canonical base64 (the library also takes other padding bits, which
	// would let a byte change unnoticed).
	if len(n.UnverifiedSigs) > 0 {
		return Checkpoint{}, fmt.Errorf("%w: it carries a signature of another key (%s)", ErrBadSignature, n.UnverifiedSigs[0].Name)
	}
	for _, sig := range n.Sigs {
		b, err := base64.StdEncoding.DecodeString(sig.Base64)
		if err != nil || base64.StdEncoding.EncodeToString(b) != sig.Base64 {
			return Checkpoint{}, fmt.Errorf("%w: the signature is not in canonical base64", ErrBadSignature)
		}
	}
	c, err := ParseText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Origin() {
		return Checkpoint{}, fmt.Errorf("checkpoint: origin %q is not the key's %q: %w", c.Origin, v.Origin(), domain.ErrInvalid)
	}
	return c, nil
}
