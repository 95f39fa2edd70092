package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// BundleFormat names the layout of an evidence bundle.
const BundleFormat = "booking-ledger-evidence-bundle/v1"

// Bundle is the evidence about one booking that can be checked with no
// access to the ledger's database (CheckBundle): its events, the raw Stripe
// events about it with their signature headers, each with the link of the
// global chain that seals it and the proof that the link is in the tree a
// signed checkpoint names, and that checkpoint.
//
// Every byte of it is checked: each field is covered by a hash, a proof or
// the signature, or must agree with what is; and the file must be exactly
// what EncodeBundle writes for its content.
type Bundle struct {
	Format    string `json:"format"`
	BookingID int64  `json:"booking_id"`
	// Checkpoint is the signed checkpoint (the note, byte for byte) the
	// proofs lead to.
	Checkpoint string           `json:"checkpoint"`
	Events     []BundleEvent    `json:"events"`
	Inbox      []BundleInbox    `json:"stripe_inbox"`
	Deliveries []BundleDelivery `json:"stripe_deliveries"`
}

// Hex is a byte string written as lower-case hex.
type Hex []byte

// MarshalJSON writes h as a hex string.
func (h Hex) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// UnmarshalJSON reads a hex string.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// BundleLink is the chain link that seals an item, and the inclusion proof
// of its leaf (seq-1) in the checkpoint's tree.
type BundleLink struct {
	Seq           int64 `json:"seq"`
	PrevChainHash Hex   `json:"prev_chain_hash"`
	ChainHash     Hex   `json:"chain_hash"`
	Inclusion     []Hex `json:"inclusion"`
}

// BundleEvent is one event of the booking's stream, with every field its
// hash covers (times as eventlog.FormatTime writes them, the payload in
// canonical form).
type BundleEvent struct {
	Position      int64             `json:"position"`
	EventID       string            `json:"event_id"`
	StreamID      int64             `json:"stream_id"`
	StreamVersion int               `json:"stream_version"`
	Type          string            `json:"type"`
	SchemaVersion int               `json:"schema_version"`
	OccurredAt    string            `json:"occurred_at"`
	RecordedAt    string            `json:"recorded_at"`
	CausationID   string            `json:"causation_id"`
	Payload       json.RawMessage   `json:"payload"`
	Metadata      map[string]string `json:"metadata"`
	HashVersion   int               `json:"hash_version"`
	PrevHash      Hex               `json:"prev_hash"`
	Hash          Hex               `json:"hash"`
	Link          BundleLink        `json:"link"`
}

// BundleInbox is a row of the Stripe inbox about the booking.
type BundleInbox struct {
	Row     eventlog.InboxRow `json:"row"`
	RowHash Hex               `json:"row_hash"`
	Link    BundleLink        `json:"link"`
}

// BundleDelivery is a row of the deliveries about the booking.
type BundleDelivery struct {
	Row     eventlog.DeliveryRow `json:"row"`
	RowHash Hex                  `json:"row_hash"`
	Link    BundleLink           `json:"link"`
}

// EncodeBundle writes b in its one canonical form: indented JSON, fields in
// declaration order, no HTML escaping, a final newline.
func EncodeBundle(b Bundle) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("evidence bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// SignatureChecker re-checks a stored Stripe signature header over a raw
// body (the HMAC only: the header's timestamp is old by design).
type SignatureChecker interface {
	VerifySignature(payload []byte, header string) error
}

// BundleReport is what CheckBundle checked.
type BundleReport struct {
	BookingID      int64
	Origin         string
	CheckpointSize uint64
	Events         int
	StripeRows     int
	// SignaturesChecked counts the Stripe signatures re-checked; Unsigned
	// the rows that have none (fetched from Stripe's API, not posted).
	SignaturesChecked, Unsigned int
}

// CheckBundle checks an evidence bundle on its own, with the checkpoints'
// verifier key and, when sig is not nil, the webhook secrets: that it is
// exactly in the canonical form; the checkpoint's signature; the booking's
// stream (versions 1, 2, ... each chained to the previous event's hash and
// each event's content to its hash); every Stripe row's hash and raw body;
// every item's chain link and its inclusion in the checkpoint's tree; and,
// with sig, every stored Stripe signature. It returns an error naming the
// first thing that does not hold, wrapping domain.ErrInvalid.
func CheckBundle(data []byte, key *Verifier, sig SignatureChecker) (BundleReport, error) {
	fail := func(format string, args ...any) (BundleReport, error) {
		return BundleReport{}, fmt.Errorf("evidence bundle: "+format+": %w", append(args, domain.ErrInvalid)...)
	}
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return fail("not a bundle: %v", err)
	}
	canonical, err := EncodeBundle(b)
	if err != nil {
		return fail("%v", err)
	}
	if !bytes.Equal(canonical, data) {
		return fail("not in the form `ledger audit bundle` writes (byte %d differs): it was edited", firstDiff(canonical, data))
	}
	if b.Format != BundleFormat {
		return fail("format %q, want %q", b.Format, BundleFormat)
	}
	// null and [] (or {}) would hash alike: the bundle has only the latter.
	if b.Events == nil || b.Inbox == nil || b.Deliveries == nil {
		return fail("a list is null")
	}
	cp, err := key.Open([]byte(b.Checkpoint))
	if err != nil {
		return fail("checkpoint: %v", err)
	}
	r := BundleReport{BookingID: b.BookingID, Origin: cp.Origin, CheckpointSize: cp.Size}
	included := func(what string, l BundleLink) error {
		if l.Seq < 1 || uint64(l.Seq) > cp.Size {
			return fmt.Errorf("%s: chain seq %d is not in the checkpoint's %d links", what, l.Seq, cp.Size)
		}
		proof := make([][]byte, len(l.Inclusion))
		for i, h := range l.Inclusion {
			proof[i] = h
		}
		if err := VerifyInclusion(uint64(l.Seq-1), cp.Size, LeafHash(l.ChainHash), proof, cp.Root); err != nil {
			return fmt.Errorf("%s: chain seq %d is not in the checkpoint's tree: %v", what, l.Seq, err)
		}
		return nil
	}

	if len(b.Events) == 0 {
		return fail("no event")
	}
	stream := make([]eventlog.StoredEvent, len(b.Events))
	for i, e := range b.Events {
		what := fmt.Sprintf("event at position %d", e.Position)
		if e.Metadata == nil || e.Link.Inclusion == nil {
			return fail("%s: metadata or proof is null", what)
		}
		if e.StreamID != b.BookingID {
			return fail("%s belongs to booking %d, not %d", what, e.StreamID, b.BookingID)
		}
		if i > 0 && e.Position <= b.Events[i-1].Position {
			return fail("%s is not after position %d", what, b.Events[i-1].Position)
		}
		occurred, err1 := time.Parse(time.RFC3339Nano, e.OccurredAt)
		recorded, err2 := time.Parse(time.RFC3339Nano, e.RecordedAt)
		if err1 != nil || err2 != nil || eventlog.FormatTime(occurred) != e.OccurredAt || eventlog.FormatTime(recorded) != e.RecordedAt {
			return fail("%s: times not in the form the hash covers", what)
		}
		if e.HashVersion < 1 || e.HashVersion > eventlog.CurrentHashVersion || (e.HashVersion < 2 && len(e.Metadata) > 0) {
			return fail("%s: hash version %d", what, e.HashVersion)
		}
		stream[i] = eventlog.StoredEvent{Position: e.Position, EventID: e.EventID, StreamID: e.StreamID, StreamVersion: e.StreamVersion,
			Type: e.Type, SchemaVersion: e.SchemaVersion, OccurredAt: occurred, RecordedAt: recorded, CausationID: e.CausationID,
			Payload: e.Payload, Metadata: e.Metadata, HashVersion: e.HashVersion, PrevHash: e.PrevHash, Hash: e.Hash}
		if !bytes.Equal(eventlog.ChainHash(e.Link.Seq, e.Position, e.Hash, e.Link.PrevChainHash), e.Link.ChainHash) {
			return fail("%s: its chain link does not match its hash", what)
		}
		if err := included(what, e.Link); err != nil {
			return fail("%v", err)
		}
	}
	if pos, err := eventlog.VerifyStream(stream); err != nil {
		return fail("event at position %d: %v", pos, err)
	}
	r.Events = len(b.Events)

	type stripeRow struct {
		what, kind   string
		id           int64
		hash, stored []byte
		payload, sum []byte
		header       string
		link         BundleLink
	}
	var rows []stripeRow
	for _, x := range b.Inbox {
		rows = append(rows, stripeRow{fmt.Sprintf("stripe_inbox row %d (%s)", x.Row.ID, x.Row.EventID), eventlog.KindInbox, x.Row.ID,
			x.Row.Hash(), x.RowHash, x.Row.Payload, x.Row.PayloadSHA256, x.Row.SignatureHeader, x.Link})
	}
	for _, x := range b.Deliveries {
		rows = append(rows, stripeRow{fmt.Sprintf("stripe_deliveries row %d (%s)", x.Row.ID, x.Row.EventID), eventlog.KindDelivery, x.Row.ID,
			x.Row.Hash(), x.RowHash, x.Row.Payload, x.Row.PayloadSHA256, x.Row.SignatureHeader, x.Link})
	}
	for i, x := range rows {
		if x.link.Inclusion == nil {
			return fail("%s: proof is null", x.what)
		}
		if i > 0 && rows[i-1].kind == x.kind && x.id <= rows[i-1].id {
			return fail("%s is not after row %d", x.what, rows[i-1].id)
		}
		if !bytes.Equal(x.hash, x.stored) {
			return fail("%s: its content does not match its hash", x.what)
		}
		if got := sha256.Sum256(x.payload); !bytes.Equal(got[:], x.sum) {
			return fail("%s: the raw body does not match its SHA-256", x.what)
		}
		if !bytes.Equal(eventlog.LinkHash(x.link.Seq, x.kind, x.id, x.hash, x.link.PrevChainHash), x.link.ChainHash) {
			return fail("%s: its chain link does not match its hash", x.what)
		}
		if err := included(x.what, x.link); err != nil {
			return fail("%v", err)
		}
		if x.header == "" {
			r.Unsigned++
			continue
		}
		if sig != nil {
			if err := sig.VerifySignature(x.payload, x.header); err != nil {
				return fail("%s: Stripe's signature does not verify with the given secret: %v", x.what, err)
			}
			r.SignaturesChecked++
		}
	}
	r.StripeRows = len(rows)
	return r, nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
