package audit

import (
	"fmt"
	"strconv"

	"github.com/booking-ledger/ledger/domain/eventlog"
)

// The rows the chain seals besides events (eventlog.InboxRow, DeliveryRow,
// AccessRow): their tables' columns and one scan per table, shared by the
// sealer (database/sql), the verifier (pgx) and the evidence bundle, so
// that all three hash the same values.

// sideKinds are the link kinds that seal rows, in the order the sealer
// seals them within a batch.
var sideKinds = []string{eventlog.KindInbox, eventlog.KindDelivery, eventlog.KindAccess}

// rowColumns are the columns of each kind's table, in scanRow's order.
var rowColumns = map[string]string{
	eventlog.KindInbox: `id, event_id, event_type, api_version, livemode, created, received_at, source, outcome, booking_id,
		payload, payload_sha256, signature_header, account, transaction_id::text`,
	eventlog.KindDelivery: `id, event_id, event_type, received_at, outcome, booking_id,
		payload, payload_sha256, signature_header, account, transaction_id::text`,
	eventlog.KindAccess: `id, accessed_at, actor, channel, action, target, remote_addr, user_agent, transaction_id::text`,
}

// qualifiedColumns is rowColumns[kind] with each column prefixed by alias.
func qualifiedColumns(kind, alias string) string { return qualified(alias, rowColumns[kind]) }

// sealedRow is a row of one of the side tables, as the chain seals it.
type sealedRow struct {
	kind string
	id   int64
	// txid is 0 for a row written before version 2 (NULL transaction id).
	txid   uint64
	inbox  eventlog.InboxRow
	deliv  eventlog.DeliveryRow
	access eventlog.AccessRow
}

// hash is the row's version-2 hash (eventlog).
func (r *sealedRow) hash() []byte {
	switch r.kind {
	case eventlog.KindInbox:
		return r.inbox.Hash()
	case eventlog.KindDelivery:
		return r.deliv.Hash()
	default:
		return r.access.Hash()
	}
}

// scanRow reads the columns rowColumns[kind] of one row with the driver's
// scan, followed by extra destinations.
func scanRow(kind string, scan func(dest ...any) error, extra ...any) (sealedRow, error) {
	r := sealedRow{kind: kind}
	var txid *string
	var dest []any
	switch kind {
	case eventlog.KindInbox:
		i := &r.inbox
		dest = []any{&i.ID, &i.EventID, &i.EventType, &i.APIVersion, &i.Livemode, &i.Created, &i.ReceivedAt, &i.Source, &i.Outcome,
			&i.BookingID, &i.Payload, &i.PayloadSHA256, &i.SignatureHeader, &i.Account, &txid}
	case eventlog.KindDelivery:
		d := &r.deliv
		dest = []any{&d.ID, &d.EventID, &d.EventType, &d.ReceivedAt, &d.Outcome, &d.BookingID,
			&d.Payload, &d.PayloadSHA256, &d.SignatureHeader, &d.Account, &txid}
	case eventlog.KindAccess:
		a := &r.access
		dest = []any{&a.ID, &a.AccessedAt, &a.Actor, &a.Channel, &a.Action, &a.Target, &a.RemoteAddr, &a.UserAgent, &txid}
	default:
		return r, fmt.Errorf("audit: unknown link kind %q", kind)
	}
	if err := scan(append(dest, extra...)...); err != nil {
		return r, err
	}
	if txid != nil {
		v, err := strconv.ParseUint(*txid, 10, 64)
		if err != nil {
			return r, fmt.Errorf("audit: %s row: transaction id %q: %w", kind, *txid, err)
		}
		r.txid = v
	}
	switch kind {
	case eventlog.KindInbox:
		i := &r.inbox
		i.TransactionID, r.id = r.txid, i.ID
		i.Created, i.ReceivedAt = i.Created.UTC(), i.ReceivedAt.UTC()
	case eventlog.KindDelivery:
		d := &r.deliv
		d.TransactionID, r.id = r.txid, d.ID
		d.ReceivedAt = d.ReceivedAt.UTC()
	case eventlog.KindAccess:
		a := &r.access
		a.TransactionID, r.id = r.txid, a.ID
		a.AccessedAt = a.AccessedAt.UTC()
	}
	return r, nil
}
