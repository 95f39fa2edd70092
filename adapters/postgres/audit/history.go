package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

// AuditorConfig configures an Auditor.
type AuditorConfig struct {
	DB *sql.DB
	// Now is the clock of the access log; nil means time.Now.
	Now func() time.Time
	// Checkpoints, when set, signs a checkpoint when an evidence bundle
	// asks for facts the newest one does not cover (EvidenceBundle).
	Checkpoints *checkpoints.Checkpointer
}

// Auditor answers the auditors' questions from the log, the inbox and the
// global chain: a booking's full history, its state at any moment, the
// whole log in pages or as a stream, and the chain's status. Every read it
// serves is meant to be recorded first with RecordAccess.
//
// Its methods return errors wrapping domain.ErrUnavailable when the
// database gave up on a statement (a statement or lock timeout, a query
// cancelled at ctx's deadline; postgres.Unavailable), so that the edge
// answers "try again" rather than an internal error.
type Auditor struct {
	db  *sql.DB
	now func() time.Time
	cp  *checkpoints.Checkpointer
}

// NewAuditor returns an Auditor on cfg.DB.
func NewAuditor(cfg AuditorConfig) (*Auditor, error) {
	if cfg.DB == nil {
		return nil, errors.New("audit: auditor needs a database")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Auditor{db: cfg.DB, now: cfg.Now, cp: cfg.Checkpoints}, nil
}

// History returns booking id's domain events in stream order beside every
// raw Stripe event that caused them or was received for the booking:
// inbox rows and deliveries recorded with the booking id, and those recorded
// without one (ignored types, unmatched deliveries, their duplicates) whose
// data.object names the booking (metadata.booking_id, client_reference_id)
// or its Checkout Session or PaymentIntent id. A non-zero asOf cuts both at
// that moment (see BookingAsOf).
//
// It returns an error wrapping domain.ErrNotFound when the booking has no
// event (up to asOf).
func (a *Auditor) History(ctx context.Context, id int64, asOf time.Time) (BookingHistory, error) {
	h := BookingHistory{BookingID: id, Events: []HistoryEvent{}, StripeEvents: []StripeRecord{}}
	err := postgres.TransactOpts(ctx, a.db, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, func(ctx context.Context, tx *sql.Tx) error {
		events, seqs, sealed, err := loadStreamAsOf(ctx, tx, id, asOf)
		if err != nil {
			return err
		}
		h.Integrity = integrity(events, seqs, sealed)
		row, err := projections.FoldStored(events)
		if err != nil {
			return err
		}
		h.Booking = row
		h.Events = make([]HistoryEvent, len(events))
		for i, e := range events {
			h.Events[i] = HistoryEvent{
				Position: e.Position, EventID: e.EventID, Type: e.Type, StreamVersion: e.StreamVersion,
				SchemaVersion: e.SchemaVersion, OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt,
				CausationID: e.CausationID, Data: e.Payload,
				PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash), ChainSeq: seqs[i],
			}
		}
		h.StripeEvents, err = stripeRecords(ctx, tx, id, row, events, asOf)
		if len(h.StripeEvents) > app.MaxHistoryStripeEvents {
			h.StripeEvents, h.StripeEventsTruncated = h.StripeEvents[:app.MaxHistoryStripeEvents], true
		}
		return err
	})
	if err != nil {
		return BookingHistory{}, postgres.Unavailable(err)
	}
	if !asOf.IsZero() {
		t := asOf.UTC()
		h.AsOf = &t
	}
	return h, nil
}

// BookingAsOf returns booking id's status row as it stood at moment t: the
// fold (projections.FoldBooking) of its events recorded up to t. Should a
// clock have gone backwards between two appends, the fold stops at the
// first event recorded after t, so that it never skips an event.
//
// It returns an error wrapping domain.ErrNotFound when the booking had no
// event by then.
func (a *Auditor) BookingAsOf(ctx context.Context, id int64, t time.Time) (projections.BookingRow, error) {
	events, _, _, err := loadStreamAsOf(ctx, a.db, id, t)
	if err != nil {
		return projections.BookingRow{}, postgres.Unavailable(err)
	}
	return projections.FoldStored(events)
}

func loadStreamAsOf(ctx context.Context, q postgres.Querier, id int64, asOf time.Time) ([]eventlog.StoredEvent, []*int64, [][]byte, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+qualified("e", eventstore.SelectColumns)+`, c.seq, c.event_hash FROM ledger_events e
		LEFT JOIN ledger_chain c ON c.position = e.position
		WHERE e.stream_id = $1 ORDER BY e.stream_version`, id)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("audit: history of booking %d: %w", id, err)
	}
	defer rows.Close()
	var events []eventlog.StoredEvent
	var seqs []*int64
	var sealed [][]byte
	for rows.Next() {
		var seq sql.NullInt64
		var sealedHash []byte
		e, err := scanEventWith(rows, &seq, &sealedHash)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("audit: history of booking %d: %w", id, err)
		}
		if !asOf.IsZero() && e.RecordedAt.After(asOf) {
			break
		}
		events = append(events, e)
		sealed = append(sealed, sealedHash)
		if seq.Valid {
			seqs = append(seqs, &seq.Int64)
		} else {
			seqs = append(seqs, nil)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("audit: history of booking %d: %w", id, err)
	}
	if len(events) == 0 {
		return nil, nil, nil, fmt.Errorf("booking %d: %w", id, domain.ErrNotFound)
	}
	return events, seqs, sealed, nil
}

func integrity(events []eventlog.StoredEvent, seqs []*int64, sealed [][]byte) HistoryIntegrity {
	in := HistoryIntegrity{Intact: true}
	if pos, err := eventlog.VerifyStream(events); err != nil {
		in.Intact, in.Problem = false, fmt.Sprintf("position %d: %v", pos, err)
	}
	for i, e := range events {
		if seqs[i] == nil {
			in.Unsealed++
			continue
		}
		in.Sealed++
		if in.Intact && !bytes.Equal(sealed[i], e.Hash) {
			in.Intact = false
			in.Problem = fmt.Sprintf("position %d: hash differs from the one sealed at chain seq %d", e.Position, *seqs[i])
		}
	}
	return in
}

// stripeRecords lists the raw Stripe events of booking id, in the order
// they were received: at most app.MaxHistoryStripeEvents + 1 (the caller
// tells a cut list by the extra one). The unlinked rows are matched by
// their parsed payload, which costs a JSON parse per row: only those
// received from an hour before the booking's first event on are looked at
// (an event naming the booking cannot be older: its ids did not exist),
// and PostgreSQL tests that cheap bound before calling the parser.
func stripeRecords(ctx context.Context, q postgres.Querier, id int64, row projections.BookingRow, events []eventlog.StoredEvent, asOf time.Time) ([]StripeRecord, error) {
	var session, intent string
	if row.SessionID != nil {
		session = *row.SessionID
	}
	if row.PaymentIntentID != nil {
		intent = *row.PaymentIntentID
	}
	// What an unlinked record's data.object must name to be this booking's.
	const names = `(o->'metadata'->>'booking_id' = $2 OR o->>'client_reference_id' = $2
		OR ($3 <> '' AND o->>'id' = $3)
		OR ($4 <> '' AND (o->>'id' = $4 OR o->>'payment_intent' = $4 OR o->'payment_intent'->>'id' = $4)))`
	const cols = `id, event_id, event_type, received_at, outcome, payload, payload_sha256, signature_header`
	since := time.Unix(0, 0)
	if len(events) > 0 {
		since = events[0].RecordedAt.Add(-time.Hour)
	}
	rows, err := q.QueryContext(ctx, `
		SELECT * FROM (
			SELECT 'stripe_inbox' AS tbl, `+cols+`, source, 'booking_id' AS matched_by FROM stripe_inbox WHERE booking_id = $1
			UNION ALL
			SELECT 'stripe_deliveries', `+cols+`, 'webhook', 'booking_id' FROM stripe_deliveries WHERE booking_id = $1
			UNION ALL
			SELECT 'stripe_inbox', `+cols+`, source, 'payload' FROM (
				SELECT *, ledger_stripe_object(payload) AS o FROM stripe_inbox WHERE booking_id IS NULL AND received_at >= $6) i WHERE `+names+`
			UNION ALL
			SELECT 'stripe_deliveries', `+cols+`, 'webhook', 'payload' FROM (
				SELECT *, ledger_stripe_object(payload) AS o FROM stripe_deliveries WHERE booking_id IS NULL AND received_at >= $6) d WHERE `+names+`
		) r
		WHERE $5::timestamptz IS NULL OR received_at <= $5
		ORDER BY received_at, tbl DESC, id
		LIMIT $7`,
		id, strconv.FormatInt(id, 10), session, intent, nullTime(asOf), since, app.MaxHistoryStripeEvents+1)
	if err != nil {
		return nil, fmt.Errorf("audit: stripe events of booking %d: %w", id, err)
	}
	defer rows.Close()
	caused := map[string][]int64{}
	for _, e := range events {
		caused[e.CausationID] = append(caused[e.CausationID], e.Position)
	}
	out := []StripeRecord{}
	for rows.Next() {
		var r StripeRecord
		var sum []byte
		if err := rows.Scan(&r.Table, &r.RowID, &r.ID, &r.Type, &r.ReceivedAt, &r.Outcome, &r.Body, &sum, &r.SignatureHeader, &r.Source, &r.MatchedBy); err != nil {
			return nil, fmt.Errorf("audit: stripe events of booking %d: %w", id, err)
		}
		r.ReceivedAt = r.ReceivedAt.UTC()
		r.PayloadSHA256 = hex.EncodeToString(sum)
		if utf8.Valid(r.Body) {
			r.Payload = string(r.Body)
		} else {
			r.PayloadBase64 = base64.StdEncoding.EncodeToString(r.Body)
		}
		r.CausedPositions = []int64{}
		if r.Table == "stripe_inbox" {
			if ps := caused[r.ID]; ps != nil {
				r.CausedPositions = ps
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: stripe events of booking %d: %w", id, err)
	}
	return out, nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// qualified prefixes every column of a comma-separated list with alias.
func qualified(alias, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// scanEventWith is scanEvent for a row with extra columns after the event's.
func scanEventWith(rows *sql.Rows, extra ...any) (eventlog.StoredEvent, error) {
	return eventstore.ScanEvent(scannerWith{rows, extra})
}

type scannerWith struct {
	rows  *sql.Rows
	extra []any
}

func (s scannerWith) Scan(dest ...any) error {
	return s.rows.Scan(append(dest, s.extra...)...)
}

// FindBooking resolves what an auditor typed — a booking id, a Checkout
// Session id, a PaymentIntent id or a Stripe event id — to a booking id. It
// returns an error wrapping domain.ErrNotFound when nothing matches.
func (a *Auditor) FindBooking(ctx context.Context, query string) (int64, error) {
	query = strings.TrimSpace(query)
	if query == "" {
		return 0, fmt.Errorf("empty search: %w", domain.ErrNotFound)
	}
	var id int64
	var err error
	if n, perr := strconv.ParseInt(strings.TrimPrefix(query, "#"), 10, 64); perr == nil && n > 0 {
		err = a.db.QueryRowContext(ctx, `SELECT stream_id FROM ledger_events WHERE stream_id = $1 LIMIT 1`, n).Scan(&id)
	} else {
		err = a.db.QueryRowContext(ctx, `
			SELECT id FROM (
				SELECT id, 1 AS rank FROM bookings WHERE session_id = $1
				UNION ALL SELECT id, 2 FROM bookings WHERE payment_intent_id = $1
				UNION ALL SELECT booking_id, 3 FROM stripe_inbox WHERE event_id = $1 AND booking_id IS NOT NULL
				UNION ALL SELECT booking_id, 4 FROM stripe_deliveries WHERE event_id = $1 AND booking_id IS NOT NULL
			) found ORDER BY rank, id LIMIT 1`, query).Scan(&id)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("no booking matches %q: %w", query, domain.ErrNotFound)
	}
	if err != nil {
		return 0, postgres.Unavailable(fmt.Errorf("audit: find booking %q: %w", query, err))
	}
	return id, nil
}

// ChainStatus returns the global chain's head and how much of the log it
// covers.
func (a *Auditor) ChainStatus(ctx context.Context) (ChainStatus, error) {
	st, err := chainStatus(ctx, a.db)
	return st, postgres.Unavailable(err)
}

// The read models of the audit, declared by domain/app, where the HTTP edge
// and the CLI consume them.
type (
	HistoryEvent     = app.HistoryEvent
	StripeRecord     = app.StripeRecord
	BookingHistory   = app.BookingHistory
	HistoryIntegrity = app.HistoryIntegrity
	Access           = app.Access
	ExportQuery      = app.ExportQuery
	ExportResult     = app.ExportResult
	ChainStatus      = app.ChainStatus
)

// Export formats (app.FormatJSONL, app.FormatCSV).
const (
	FormatJSONL = app.FormatJSONL
	FormatCSV   = app.FormatCSV
)

// RecordAccess appends one row to the access log (audit_access_log, append
// only) and returns once it is committed. Callers record before they
// answer, and do not answer when it fails.
func (a *Auditor) RecordAccess(ctx context.Context, acc Access) error {
	return postgres.Unavailable(RecordAccess(ctx, a.db, a.now(), acc))
}

// RecordAccess is Auditor.RecordAccess on any pool, at moment at.
func RecordAccess(ctx context.Context, db *sql.DB, at time.Time, acc Access) error {
	if acc.Actor == "" || acc.Channel == "" || acc.Action == "" {
		return fmt.Errorf("audit: access without actor, channel or action: %w", domain.ErrInvalid)
	}
	_, err := db.ExecContext(ctx, `INSERT INTO audit_access_log (accessed_at, actor, channel, action, target, remote_addr, user_agent)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, at.UTC(), acc.Actor, acc.Channel, acc.Action, truncate(acc.Target, 1000),
		truncate(acc.RemoteAddr, 200), truncate(acc.UserAgent, 500))
	if err != nil {
		return fmt.Errorf("audit: access log: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
