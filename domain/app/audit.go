package app

import (
	"encoding/json"
	"time"

	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

// The audit's read models: what the audit endpoints, the auditor UI and the
// CLI show. adapters/postgres/audit fills them.

// HistoryEvent is one domain event of a booking as the history shows it.
type HistoryEvent struct {
	Position      int64           `json:"position"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	StreamVersion int             `json:"stream_version"`
	SchemaVersion int             `json:"schema_version"`
	OccurredAt    time.Time       `json:"occurred_at"`
	RecordedAt    time.Time       `json:"recorded_at"`
	CausationID   string          `json:"causation_id"`
	Data          json.RawMessage `json:"data"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"`
	// ChainSeq is the event's link in the global chain; null while it is
	// not sealed yet.
	ChainSeq *int64 `json:"chain_seq"`
}

// StripeRecord is one raw Stripe delivery as the ledger keeps it.
type StripeRecord struct {
	// ID is the Stripe event id ("evt_...").
	ID   string `json:"id"`
	Type string `json:"type"`
	// Table and RowID name where it is stored: stripe_inbox (the delivery
	// the ledger decided on) or stripe_deliveries (a duplicate, or a
	// delivery no booking matched).
	Table      string    `json:"table"`
	RowID      int64     `json:"row_id"`
	ReceivedAt time.Time `json:"received_at"`
	// Outcome: processed, ignored, duplicate or unmatched.
	Outcome string `json:"outcome"`
	// Source: webhook, api or redirect.
	Source string `json:"source"`
	// MatchedBy says how the record belongs to the booking: "booking_id"
	// (recorded with it) or "payload" (its data.object names the booking,
	// its Checkout Session or its PaymentIntent).
	MatchedBy       string `json:"matched_by"`
	SignatureHeader string `json:"signature_header"`
	PayloadSHA256   string `json:"payload_sha256"`
	// Payload is the body exactly as received, as a string; a body that is
	// not valid UTF-8 is given in PayloadBase64 instead.
	Payload       string `json:"payload,omitempty"`
	PayloadBase64 string `json:"payload_base64,omitempty"`
	// CausedPositions are the events this Stripe event caused.
	CausedPositions []int64 `json:"caused_positions"`
	// Body is the stored body, byte for byte (not in the JSON: Payload or
	// PayloadBase64 carry it).
	Body []byte `json:"-"`
}

// BookingHistory is everything the ledger holds about one booking.
type BookingHistory struct {
	BookingID int64 `json:"booking_id"`
	// AsOf is set when the history is cut at a moment: only events
	// recorded and Stripe events received up to it are included.
	AsOf *time.Time `json:"as_of,omitempty"`
	// Booking is the state the events give (at AsOf when set).
	Booking      projections.BookingRow `json:"booking"`
	Events       []HistoryEvent         `json:"events"`
	StripeEvents []StripeRecord         `json:"stripe_events"`
	// StripeEventsTruncated is set when the booking has more raw Stripe
	// events than a history shows (the first MaxHistoryStripeEvents, in
	// the order received); the audit export has them all.
	StripeEventsTruncated bool             `json:"stripe_events_truncated,omitempty"`
	Integrity             HistoryIntegrity `json:"integrity"`
}

// MaxHistoryStripeEvents bounds the raw Stripe events of one history read.
const MaxHistoryStripeEvents = 1000

// HistoryIntegrity is what can be checked of one booking on its own: its
// stream's hash chain (VerifyStream) and, for each sealed event, that the
// global chain sealed the hash it has now. The whole ledger is checked by
// Verify.
type HistoryIntegrity struct {
	Intact bool `json:"intact"`
	// Problem names the first broken position and what is wrong.
	Problem  string `json:"problem,omitempty"`
	Sealed   int    `json:"sealed"`
	Unsealed int    `json:"unsealed"`
}

// Access is one audit read, for the access log.
type Access struct {
	// Actor is who read: "token:<fingerprint>" or "cli:<user>@<host>";
	// never a secret.
	Actor string
	// Channel is "http", "ui" or "cli".
	Channel string
	// Action names the read ("history", "as_of", "events", "export",
	// "verify", "head", "ui_search", "ui_booking", ...); Target what was
	// read (a booking id, a query, a range).
	Action, Target        string
	RemoteAddr, UserAgent string
}

// Export formats.
const (
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// ExportQuery selects a stretch of the log, in position order.
type ExportQuery struct {
	// After is the last position already read (0: from the start).
	After int64
	// Limit bounds the number of events (0: no bound).
	Limit int
	// From and To select events recorded in [From, To); zero means open.
	From, To time.Time
	// Format is FormatJSONL (default) or FormatCSV (with a header line).
	Format string
	// Settled bounds the positions read; 0 means SettledPosition, taken
	// at the start of the export.
	Settled int64
	// PageSize is the number of rows fetched per query (default 5000); the
	// export holds one page in memory at a time.
	PageSize int
	// Progress, when set, is called after each page with the last
	// position written and the bound.
	Progress func(last, settled int64)
}

// ExportResult reports what Export wrote.
type ExportResult struct {
	Events int64
	// Last is the position of the last event written (After when none).
	Last int64
	// Settled is the bound the export read up to.
	Settled int64
}

// ChainStatus summarizes the chain for the auditor UI.
type ChainStatus struct {
	Head eventlog.ChainHead `json:"head"`
	// Events is the number of events in the log, Sealed the number of
	// links, Unsealed the events not sealed yet.
	Events   int64 `json:"events"`
	Sealed   int64 `json:"sealed"`
	Unsealed int64 `json:"unsealed"`
}
