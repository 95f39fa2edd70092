package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/domain/evidence"
	"github.com/booking-ledger/ledger/projections"
)

// errNoCheckpoint: a bundle needs a signed checkpoint to lead its proofs to.
var errNoCheckpoint = fmt.Errorf("no checkpoint signed yet (LEDGER_SIGNING_KEY, `ledger audit checkpoint`): %w", domain.ErrNotFound)

// BundleInfo says what Bundle left out.
type BundleInfo struct {
	CheckpointSize uint64
	Events         int
	StripeRows     int
	// Legacy counts the booking's raw Stripe events recorded before hash
	// version 2: no link seals them, so they cannot be proven and are left
	// out.
	Legacy int
}

// Bundle returns the evidence bundle of booking id (evidence.Bundle, in
// its canonical encoding): its events and the raw Stripe events History
// shows for it, each with its chain link and the inclusion proof of that
// link in the newest checkpoint, and the checkpoint.
//
// Errors wrap domain.ErrNotFound when the booking has no event or no
// checkpoint was signed yet, and domain.ErrConflict when some of its events
// or rows are not covered by the newest checkpoint yet (sign one, then ask
// again).
func (a *Auditor) Bundle(ctx context.Context, id int64) ([]byte, BundleInfo, error) {
	var b evidence.Bundle
	var info BundleInfo
	err := postgres.TransactOpts(ctx, a.db, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, func(ctx context.Context, tx *sql.Tx) error {
		b = evidence.Bundle{Format: evidence.BundleFormat, BookingID: id, Events: []evidence.BundleEvent{},
			Inbox: []evidence.BundleInbox{}, Deliveries: []evidence.BundleDelivery{}}
		info = BundleInfo{}
		var size uint64
		err := tx.QueryRowContext(ctx, `SELECT tree_size, note FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1`).Scan(&size, &b.Checkpoint)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoCheckpoint
		}
		if err != nil {
			return fmt.Errorf("audit: bundle: checkpoint: %w", err)
		}
		info.CheckpointSize = size
		events, seqs, _, err := loadStreamAsOf(ctx, tx, id, time.Time{})
		if err != nil {
			return err
		}
		links, err := bundleLinks(ctx, tx)
		if err != nil {
			return err
		}
		var leaves []uint64
		uncovered := 0
		for i, e := range events {
			if seqs[i] == nil || uint64(*seqs[i]) > size {
				uncovered++
				continue
			}
			l, err := links.get(ctx, *seqs[i])
			if err != nil {
				return err
			}
			b.Events = append(b.Events, evidence.BundleEvent{
				Position: e.Position, EventID: e.EventID, StreamID: e.StreamID, StreamVersion: e.StreamVersion, Type: e.Type,
				SchemaVersion: e.SchemaVersion, OccurredAt: eventlog.FormatTime(e.OccurredAt), RecordedAt: eventlog.FormatTime(e.RecordedAt),
				CausationID: e.CausationID, Payload: canonicalOr(e.Payload), Metadata: metadataOrEmpty(e.Metadata),
				HashVersion: max(e.HashVersion, 1), PrevHash: e.PrevHash, Hash: e.Hash, Link: l,
			})
			leaves = append(leaves, uint64(*seqs[i]-1))
		}
		row, err := projections.FoldStored(events)
		if err != nil {
			return err
		}
		records, err := stripeRecords(ctx, tx, id, row, events, time.Time{})
		if err != nil {
			return err
		}
		var inboxIDs, deliveryIDs []int64
		for _, r := range records {
			if r.Table == "stripe_inbox" {
				inboxIDs = append(inboxIDs, r.RowID)
			} else {
				deliveryIDs = append(deliveryIDs, r.RowID)
			}
		}
		for _, kind := range []string{eventlog.KindInbox, eventlog.KindDelivery} {
			ids := inboxIDs
			if kind == eventlog.KindDelivery {
				ids = deliveryIDs
			}
			rows, err := tx.QueryContext(ctx, `SELECT `+qualifiedColumns(kind, "t")+`, c.seq
				FROM `+eventlog.KindTable[kind]+` t LEFT JOIN ledger_chain c ON c.kind = $1 AND c.row_id = t.id
				WHERE t.id = ANY($2::bigint[]) ORDER BY t.id`, kind, pq.Array(ids))
			if err != nil {
				return fmt.Errorf("audit: bundle: %s: %w", kind, err)
			}
			type sealed struct {
				r   sealedRow
				seq int64
			}
			var found []sealed
			for rows.Next() {
				var seq *int64
				r, err := scanRow(kind, rows.Scan, &seq)
				if err != nil {
					rows.Close()
					return fmt.Errorf("audit: bundle: %s: %w", kind, err)
				}
				switch {
				case r.txid == 0:
					info.Legacy++
				case seq == nil || uint64(*seq) > size:
					uncovered++
				default:
					found = append(found, sealed{r, *seq})
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("audit: bundle: %s: %w", kind, err)
			}
			for _, f := range found {
				l, err := links.get(ctx, f.seq)
				if err != nil {
					return err
				}
				leaves = append(leaves, uint64(f.seq-1))
				if kind == eventlog.KindInbox {
					b.Inbox = append(b.Inbox, evidence.BundleInbox{Row: f.r.inbox, RowHash: f.r.hash(), Link: l})
				} else {
					b.Deliveries = append(b.Deliveries, evidence.BundleDelivery{Row: f.r.deliv, RowHash: f.r.hash(), Link: l})
				}
			}
		}
		if uncovered > 0 {
			return fmt.Errorf("%d of booking %d's events and raw Stripe events are not covered by the newest checkpoint (%d links) yet: sign one (`ledger audit checkpoint`) and ask again: %w",
				uncovered, id, size, domain.ErrConflict)
		}
		if len(b.Events) == 0 {
			return fmt.Errorf("booking %d: %w", id, domain.ErrNotFound)
		}
		// The proofs, from the stored nodes.
		proofs, err := checkpoints.InclusionProofs(ctx, tx, leaves, size)
		if err != nil {
			return err
		}
		k := 0
		next := func() []evidence.Hex {
			p := proofs[k]
			k++
			out := make([]evidence.Hex, len(p))
			for i, h := range p {
				out[i] = h
			}
			return out
		}
		for i := range b.Events {
			b.Events[i].Link.Inclusion = next()
		}
		for i := range b.Inbox {
			b.Inbox[i].Link.Inclusion = next()
		}
		for i := range b.Deliveries {
			b.Deliveries[i].Link.Inclusion = next()
		}
		info.Events, info.StripeRows = len(b.Events), len(b.Inbox)+len(b.Deliveries)
		return nil
	})
	if err != nil {
		return nil, BundleInfo{}, err
	}
	data, err := evidence.EncodeBundle(b)
	return data, info, err
}

// EvidenceBundle is Bundle's file; when the newest checkpoint does not
// cover the booking's newest facts and the Auditor has a checkpointer, it
// signs one and tries again once.
func (a *Auditor) EvidenceBundle(ctx context.Context, id int64) ([]byte, error) {
	data, _, err := a.Bundle(ctx, id)
	if a.cp != nil && (errors.Is(err, domain.ErrConflict) || errors.Is(err, errNoCheckpoint)) {
		if _, cerr := a.cp.Checkpoint(ctx); cerr != nil {
			return nil, cerr
		}
		data, _, err = a.Bundle(ctx, id)
	}
	return data, err
}

// linkReader reads chain links by seq.
type linkReader struct{ q postgres.Querier }

func bundleLinks(_ context.Context, q postgres.Querier) (linkReader, error) {
	return linkReader{q}, nil
}

func (r linkReader) get(ctx context.Context, seq int64) (evidence.BundleLink, error) {
	l := evidence.BundleLink{Seq: seq, Inclusion: []evidence.Hex{}}
	var prev, ch []byte
	if err := r.q.QueryRowContext(ctx, `SELECT prev_chain_hash, chain_hash FROM ledger_chain WHERE seq = $1`, seq).Scan(&prev, &ch); err != nil {
		return l, fmt.Errorf("audit: bundle: chain seq %d: %w", seq, err)
	}
	l.PrevChainHash, l.ChainHash = prev, ch
	return l, nil
}

func canonicalOr(payload []byte) []byte {
	if c, err := eventlog.CanonicalJSON(payload); err == nil {
		return c
	}
	return payload
}

func metadataOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// ConsistencyProof is checkpoints.ConsistencyProof on the Auditor's
// database: the proof that the tree of the first from links is a prefix of
// the tree of the first to links, from the stored nodes; errors wrap
// domain.ErrInvalid.
func (a *Auditor) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	return checkpoints.ConsistencyProof(ctx, a.db, from, to)
}

// LatestCheckpoint returns the newest signed checkpoint stored, or an error
// wrapping domain.ErrNotFound when none is (checkpoints.Latest).
func (a *Auditor) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	return checkpoints.Latest(ctx, a.db)
}
