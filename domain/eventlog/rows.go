package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"time"
)

// The global chain seals more than events: from version 2 on, every row of
// the Stripe inbox, of the deliveries and of the access log is a link of
// its own, so that a row changed, deleted or inserted afterwards breaks the
// chain, and the signed checkpoints over it, like an event. Rows written
// before (their transaction_id is NULL) keep version 1: the inbox's and
// the deliveries' raw body against its stored SHA-256, the access log
// nothing.

// Link kinds: what a link of the global chain seals.
const (
	KindEvent    = "event"
	KindInbox    = "inbox"
	KindDelivery = "delivery"
	KindAccess   = "access"
)

// KindTable is the table whose rows a link kind seals.
var KindTable = map[string]string{
	KindEvent: "ledger_events", KindInbox: "stripe_inbox", KindDelivery: "stripe_deliveries", KindAccess: "audit_access_log",
}

// rowHashVersion names the layout of the row hashes below.
const rowHashVersion = "ledger-row-hash-v2"

// rowHasher writes length-prefixed fields; NULL is a length of 2^32-1,
// which no value has.
type rowHasher struct{ b []byte }

func (h *rowHasher) bytes(p []byte) {
	h.b = binary.BigEndian.AppendUint32(h.b, uint32(len(p)))
	h.b = append(h.b, p...)
}
func (h *rowHasher) str(s string)     { h.bytes([]byte(s)) }
func (h *rowHasher) int(i int64)      { h.str(strconv.FormatInt(i, 10)) }
func (h *rowHasher) uint(i uint64)    { h.str(strconv.FormatUint(i, 10)) }
func (h *rowHasher) time(t time.Time) { h.str(FormatTime(t)) }
func (h *rowHasher) null()            { h.b = binary.BigEndian.AppendUint32(h.b, 0xFFFFFFFF) }
func (h *rowHasher) bool(v bool)      { h.str(strconv.FormatBool(v)) }
func (h *rowHasher) optInt(p *int64) {
	if p == nil {
		h.null()
		return
	}
	h.int(*p)
}
func (h *rowHasher) optStr(p *string) {
	if p == nil {
		h.null()
		return
	}
	h.str(*p)
}
func (h *rowHasher) sum() []byte {
	s := sha256.Sum256(h.b)
	return s[:]
}

func newRowHasher(table string) *rowHasher {
	h := &rowHasher{}
	h.str(rowHashVersion)
	h.str(table)
	return h
}

// InboxRow is a row of stripe_inbox: a Stripe event the ledger decided on
// (or ignored), with its raw body and signature header.
type InboxRow struct {
	ID              int64     `json:"id"`
	EventID         string    `json:"event_id"`
	EventType       string    `json:"event_type"`
	APIVersion      string    `json:"api_version"`
	Livemode        bool      `json:"livemode"`
	Created         time.Time `json:"created"`
	ReceivedAt      time.Time `json:"received_at"`
	Source          string    `json:"source"`
	Outcome         string    `json:"outcome"`
	BookingID       *int64    `json:"booking_id"`
	Payload         []byte    `json:"payload"`
	PayloadSHA256   []byte    `json:"payload_sha256"`
	SignatureHeader string    `json:"signature_header"`
	Account         *string   `json:"account"`
	TransactionID   uint64    `json:"transaction_id"`
}

// Hash covers every column of the row, the raw body by its SHA-256 as
// computed (the stored payload_sha256 is covered as well, and checked
// against it separately).
func (r InboxRow) Hash() []byte {
	h := newRowHasher("stripe_inbox")
	h.int(r.ID)
	h.str(r.EventID)
	h.str(r.EventType)
	h.str(r.APIVersion)
	h.bool(r.Livemode)
	h.time(r.Created)
	h.time(r.ReceivedAt)
	h.str(r.Source)
	h.str(r.Outcome)
	h.optInt(r.BookingID)
	body := sha256.Sum256(r.Payload)
	h.bytes(body[:])
	h.bytes(r.PayloadSHA256)
	h.str(r.SignatureHeader)
	h.optStr(r.Account)
	h.uint(r.TransactionID)
	return h.sum()
}

// DeliveryRow is a row of stripe_deliveries: a delivery that decided
// nothing (a duplicate, an unmatched event, another mode's or account's).
type DeliveryRow struct {
	ID              int64     `json:"id"`
	EventID         string    `json:"event_id"`
	EventType       string    `json:"event_type"`
	ReceivedAt      time.Time `json:"received_at"`
	Outcome         string    `json:"outcome"`
	BookingID       *int64    `json:"booking_id"`
	Payload         []byte    `json:"payload"`
	PayloadSHA256   []byte    `json:"payload_sha256"`
	SignatureHeader string    `json:"signature_header"`
	Account         *string   `json:"account"`
	TransactionID   uint64    `json:"transaction_id"`
}

// Hash covers every column of the row, as InboxRow.Hash.
func (r DeliveryRow) Hash() []byte {
	h := newRowHasher("stripe_deliveries")
	h.int(r.ID)
	h.str(r.EventID)
	h.str(r.EventType)
	h.time(r.ReceivedAt)
	h.str(r.Outcome)
	h.optInt(r.BookingID)
	body := sha256.Sum256(r.Payload)
	h.bytes(body[:])
	h.bytes(r.PayloadSHA256)
	h.str(r.SignatureHeader)
	h.optStr(r.Account)
	h.uint(r.TransactionID)
	return h.sum()
}

// AccessRow is a row of audit_access_log: who read what, when.
type AccessRow struct {
	ID            int64     `json:"id"`
	AccessedAt    time.Time `json:"accessed_at"`
	Actor         string    `json:"actor"`
	Channel       string    `json:"channel"`
	Action        string    `json:"action"`
	Target        string    `json:"target"`
	RemoteAddr    string    `json:"remote_addr"`
	UserAgent     string    `json:"user_agent"`
	TransactionID uint64    `json:"transaction_id"`
}

// Hash covers every column of the row.
func (r AccessRow) Hash() []byte {
	h := newRowHasher("audit_access_log")
	h.int(r.ID)
	h.time(r.AccessedAt)
	h.str(r.Actor)
	h.str(r.Channel)
	h.str(r.Action)
	h.str(r.Target)
	h.str(r.RemoteAddr)
	h.str(r.UserAgent)
	h.uint(r.TransactionID)
	return h.sum()
}

// chainHashVersionV2 names the layout of LinkHash.
const chainHashVersionV2 = "ledger-chain-hash-v2"

// LinkHash is the chain hash of a link that seals a row (kind KindInbox,
// KindDelivery or KindAccess): SHA-256 over the length-prefixed layout
// version, seq, the kind, the row's id, the row's hash and the previous
// link's chain hash. Links that seal events keep ChainHash, whose layout
// names the event's position.
func LinkHash(seq int64, kind string, rowID int64, rowHash, prevChainHash []byte) []byte {
	h := &rowHasher{}
	h.str(chainHashVersionV2)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(seq))
	h.bytes(n[:])
	h.str(kind)
	binary.BigEndian.PutUint64(n[:], uint64(rowID))
	h.bytes(n[:])
	h.bytes(rowHash)
	h.bytes(prevChainHash)
	return h.sum()
}
