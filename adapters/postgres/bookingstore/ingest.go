package bookingstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/projections"
)

// errInboxTaken: a concurrent transaction recorded the same Stripe event
// first; the decision is run again (domain/app's retry) and finds it.
var errInboxTaken = fmt.Errorf("stripe event recorded concurrently: %w", domain.ErrConcurrency)

// Record implements app.Bookings: it records one Stripe delivery and its
// consequences in one transaction, run once (the retry loop is the
// caller's): the inbox row (raw body and signature), the decision on the
// booking it names, the appended events and the status row; or, for a
// duplicate or an unmatched event, a delivery row only. It returns after
// the commit, so a result without error is durable.
//
// Decisions about one resource are serialized by an advisory lock, across
// every server process. A race lost on the stream version or the inbox key
// returns an error wrapping domain.ErrConcurrency, one lost on the overlap
// constraint domain.ErrConflict; nothing is then written.
//
// With group commit on (Config.GroupCommit), deliveries that arrive
// together share a transaction (groupcommit.go); each is still decided as
// if alone and answered after its commit.
func (l *Store) Record(ctx context.Context, d app.Delivery, decide app.Decision) (app.IngestResult, error) {
	if d.Source == "" || d.ReceivedAt.IsZero() {
		return app.IngestResult{}, fmt.Errorf("bookingstore: stripe event %s without source or reception time: %w", d.EventID, domain.ErrInvalid)
	}
	l.prepare(ctx)
	if l.group != nil {
		return l.group.record(ctx, d, decide)
	}
	return l.recordOne(ctx, d, decide)
}

// recordOne records one delivery in a transaction of its own.
func (l *Store) recordOne(ctx context.Context, d app.Delivery, decide app.Decision) (app.IngestResult, error) {
	var res app.IngestResult
	err := postgres.TransactOnce(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		res, err = l.recordTx(ctx, tx, d, decide)
		return err
	})
	return res, err
}

// The statements of the ingest transaction. A webhook that decides takes
// five round trips: BEGIN, lookupQuery, streamQuery, the append together
// with the status and inbox rows (appendProjectInboxSQL), COMMIT.

// lookupQuery: is the event known (and for which booking), which booking
// does it name, and — when it is new, handled and its booking found — the
// resource's advisory lock. The lock is taken after this statement's
// snapshot, so the stream is read by the next statement, whose snapshot
// (READ COMMITTED) sees everything the lock's previous holder committed.
// Parameters: event id, two booking ids (0 for none), session id,
// PaymentIntent id, handled. A zero id, an empty session or PaymentIntent id
// match nothing (ids are positive; the columns hold NULL, never an empty
// string), so the statement has neither arrays nor conditions on its
// parameters and its generic plan is as good as a custom one: PostgreSQL
// then stops planning it on every execution. The same holds for the
// statements below.
var lookupQuery = `
	WITH found AS (
		SELECT id, resource_id FROM (
			SELECT id, resource_id, 1 AS rank FROM bookings WHERE id = $2
			UNION ALL SELECT id, resource_id, 2 FROM bookings WHERE id = $3
			UNION ALL SELECT id, resource_id, 3 FROM bookings WHERE session_id = $4
			UNION ALL SELECT id, resource_id, 4 FROM bookings WHERE payment_intent_id = $5
		) candidates ORDER BY rank, id LIMIT 1
	), inbox AS (
		SELECT booking_id FROM stripe_inbox WHERE event_id = $1
	)
	SELECT EXISTS (SELECT 1 FROM inbox), (SELECT booking_id FROM inbox), found.id, found.resource_id,
		CASE WHEN $6::boolean AND found.id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM inbox)
			THEN pg_advisory_xact_lock(` + ResourceLockKey("found.resource_id") + `)::text = ''
		END
	FROM (VALUES (1)) AS one LEFT JOIN found ON true`

// streamQuery returns the booking's stream in version order and, on every
// row, the confirmed stays of other bookings of its resource that overlap
// its stay (arrays of ids, check-ins, check-outs; NULL when there are none).
// The stays are listed whatever the event (one probe of the exclusion
// constraint's index), which keeps the plan generic. Parameter: booking id.
var streamQuery = `
	WITH confirmed AS (
		SELECT array_agg(o.id ORDER BY o.id) AS ids,
			array_agg(o.check_in::text ORDER BY o.id) AS check_ins,
			array_agg(o.check_out::text ORDER BY o.id) AS check_outs
		FROM bookings b JOIN bookings o ON ` + overlapProbe("o", "b.resource_id", "b.check_in", "b.check_out") + ` AND o.id <> b.id
		WHERE b.id = $1
	)
	SELECT ` + eventstore.SelectColumns + `, confirmed.ids, confirmed.check_ins, confirmed.check_outs
	FROM ledger_events CROSS JOIN confirmed WHERE stream_id = $1 ORDER BY stream_version`

// insertInboxSQL inserts an inbox row from the parameters $n to $n+11
// (inboxRow.args), booking id $b.
func insertInboxSQL(n, b int) string {
	p := func(i int) string { return "$" + strconv.Itoa(n+i) }
	return `INSERT INTO stripe_inbox
		(event_id, event_type, api_version, livemode, created, received_at, source, outcome, booking_id, payload, payload_sha256, signature_header, account)
		VALUES (` + p(0) + `, ` + p(1) + `, ` + p(2) + `, ` + p(3) + `, ` + p(4) + `, ` + p(5) + `, ` + p(6) + `, ` + p(7) + `, $` + strconv.Itoa(b) + `, ` + p(8) + `, ` + p(9) + `, ` + p(10) + `, ` + p(11) + `)`
}

// insertInboxQuery: the inbox row alone, booking id last.
var insertInboxQuery = insertInboxSQL(1, 13)

// appendProjectInboxSQL extends insert, the INSERT of the appended events
// with its n parameters, into one statement that also writes the status row
// (the upsertParams parameters after them, upsertArgs; its position is the
// last one the INSERT returns) and the inbox row (the 12 after those,
// inboxRow.args,
// with the status row's booking id), and returns the row's position.
func appendProjectInboxSQL(insert string, n int) string {
	return `WITH ev AS (` + insert + ` RETURNING position), inbox AS (` + insertInboxSQL(n+upsertParams+1, n+1) + `) ` +
		upsertBookingSQL("bookings", n+1, `(SELECT max(position) FROM ev)`) + ` RETURNING last_event_position`
}

// maxDecisionEvents is the most events a decision appends (capacity hints).
const maxDecisionEvents = 4

// appendProjectInboxQuery is appendProjectInboxSQL for the schema
// adapter's INSERT, which has one text for any number of events: built and
// prepared once (hotQueries).
var appendProjectInboxQuery = appendProjectInboxSQL(eventstore.InsertQuery(), eventstore.InsertColumns)

// inboxColumns are the inbox row's columns in the order of inboxRow.args
// followed by the booking id (the group commit's multi-row INSERT).
const (
	inboxColumns     = `event_id, event_type, api_version, livemode, created, received_at, source, outcome, payload, payload_sha256, signature_header, account, booking_id`
	inboxColumnCount = 13
)

// deliveryColumns are a delivery row's columns, in the order of deliveryArgs.
const (
	deliveryColumns     = `event_id, event_type, received_at, outcome, booking_id, payload, payload_sha256, signature_header, account`
	deliveryColumnCount = 9
)

const insertDeliveryQuery = `INSERT INTO stripe_deliveries (` + deliveryColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

// deliveryArgs are the parameters of a delivery row (deliveryColumns).
func deliveryArgs(d app.Delivery, outcome app.Outcome, bookingID sql.NullInt64) []any {
	return []any{d.EventID, d.Type, d.ReceivedAt.UTC(), string(outcome), bookingID, d.Raw, sha256Sum(d.Raw), d.Signature, account(d)}
}

func (l *Store) recordTx(ctx context.Context, tx *sql.Tx, d app.Delivery, decide app.Decision) (app.IngestResult, error) {
	var (
		known               bool
		inboxBooking, found sql.NullInt64
		resourceID          sql.NullString
		locked              sql.NullBool
	)
	var ids [2]int64
	copy(ids[:], d.Lookup.BookingIDs)
	err := l.stmts.QueryRow(ctx, tx, lookupQuery,
		d.EventID, ids[0], ids[1], d.Lookup.SessionID, d.Lookup.PaymentIntentID, d.Handled(),
	).Scan(&known, &inboxBooking, &found, &resourceID, &locked)
	if err != nil {
		return app.IngestResult{}, fmt.Errorf("bookingstore: look up stripe event %s: %w", d.EventID, err)
	}
	switch {
	case known:
		return app.IngestResult{Outcome: app.OutcomeDuplicate, BookingID: inboxBooking.Int64}, l.insertDelivery(ctx, tx, d, app.OutcomeDuplicate, inboxBooking)
	case !d.Handled():
		return app.IngestResult{Outcome: app.OutcomeIgnored}, l.insertInbox(ctx, tx, d, app.OutcomeIgnored, sql.NullInt64{})
	case !found.Valid:
		return app.IngestResult{Outcome: app.OutcomeUnmatched}, l.insertDelivery(ctx, tx, d, app.OutcomeUnmatched, sql.NullInt64{})
	case !locked.Valid:
		return app.IngestResult{}, fmt.Errorf("bookingstore: stripe event %s: resource %q not locked", d.EventID, resourceID.String)
	}

	bookingID := found.Int64
	stored, envs, prior, stays, err := l.loadStream(ctx, tx, bookingID)
	if err != nil {
		return app.IngestResult{}, err
	}
	b, err := domain.Rehydrate(domain.BookingID(bookingID), prior)
	if err != nil {
		return app.IngestResult{}, err
	}
	decided, err := decide(b, stays)
	if err != nil {
		return app.IngestResult{}, err
	}
	res := app.IngestResult{Outcome: app.OutcomeProcessed, BookingID: bookingID}
	inbox := &inboxRow{d: d, outcome: app.OutcomeProcessed}
	if len(decided) == 0 {
		// Nothing to append: the status row stays as it is, which is the
		// fold of the stream just read.
		if res.Booking, err = projections.FoldBooking(envs); err != nil {
			return app.IngestResult{}, err
		}
		return res, l.insertInbox(ctx, tx, d, app.OutcomeProcessed, found)
	}
	occurred := d.Created
	if occurred.IsZero() {
		occurred = d.ReceivedAt
	}
	if res.Booking, err = l.appendAndFold(ctx, tx, b.ID(), stored, envs, decided, occurred, d.EventID, inbox); err != nil {
		return app.IngestResult{}, err
	}
	res.Events = decided
	return res, nil
}

// loadStream reads booking id's stream, decoded, and the confirmed stays
// that overlap its stay, in one statement (streamQuery).
func (l *Store) loadStream(ctx context.Context, tx *sql.Tx, id int64) ([]eventstore.StoredEvent, []projections.Envelope, []domain.Event, []domain.Stay, error) {
	rows, err := l.stmts.Query(ctx, tx, streamQuery, id)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("bookingstore: load stream %d: %w", id, err)
	}
	defer rows.Close()
	var (
		stored              []eventstore.StoredEvent
		ids                 []int64
		checkIns, checkOuts []string
	)
	row := extraColumns{rows: rows, extra: []any{pq.Array(&ids), pq.Array(&checkIns), pq.Array(&checkOuts)}}
	for rows.Next() {
		e, err := eventstore.ScanEvent(row)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("bookingstore: load stream %d: %w", id, err)
		}
		stored = append(stored, e)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("bookingstore: load stream %d: %w", id, err)
	}
	envs, prior, err := decode(stored, maxDecisionEvents)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	stays, err := parseStays(id, ids, checkIns, checkOuts)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return stored, envs, prior, stays, nil
}

// extraColumns scans a row's leading columns into what scanEvent asks for
// and its trailing ones into extra.
type extraColumns struct {
	rows  *sql.Rows
	extra []any
}

func (c extraColumns) Scan(dest ...any) error { return c.rows.Scan(append(dest, c.extra...)...) }

// inboxRow is the inbox row of a delivery.
type inboxRow struct {
	d       app.Delivery
	outcome app.Outcome
}

// args are the parameters of insertInboxSQL, booking id excluded.
func (r inboxRow) args() []any {
	d := r.d
	return []any{d.EventID, d.Type, d.APIVersion, d.Livemode, d.Created.UTC(), d.ReceivedAt.UTC(), d.Source, string(r.outcome),
		d.Raw, sha256Sum(d.Raw), d.Signature, account(d)}
}

// account is the delivery's Connect account for the account columns: NULL
// for the platform's own events.
func account(d app.Delivery) sql.NullString {
	return sql.NullString{String: d.Account, Valid: d.Account != ""}
}

func (l *Store) insertInbox(ctx context.Context, tx *sql.Tx, d app.Delivery, outcome app.Outcome, bookingID sql.NullInt64) error {
	_, err := l.stmts.Exec(ctx, tx, insertInboxQuery, append(inboxRow{d: d, outcome: outcome}.args(), bookingID)...)
	if postgres.ConstraintViolated(err, "stripe_inbox_event_id_key") {
		return fmt.Errorf("bookingstore: inbox %s: %w", d.EventID, errInboxTaken)
	}
	if err != nil {
		return fmt.Errorf("bookingstore: inbox %s: %w", d.EventID, err)
	}
	return nil
}

func (l *Store) insertDelivery(ctx context.Context, tx *sql.Tx, d app.Delivery, outcome app.Outcome, bookingID sql.NullInt64) error {
	_, err := l.stmts.Exec(ctx, tx, insertDeliveryQuery, deliveryArgs(d, outcome, bookingID)...)
	if err != nil {
		return fmt.Errorf("bookingstore: delivery of %s: %w", d.EventID, err)
	}
	return nil
}

// RecordDelivery implements app.Bookings: it keeps d as a stripe_deliveries
// row with outcome (wrong_mode, foreign_account) and nothing else: no inbox
// row, no lookup, no lock, so an event that is not the ledger's never waits
// for, nor holds up, a decision. It returns after the commit.
func (l *Store) RecordDelivery(ctx context.Context, d app.Delivery, outcome app.Outcome) error {
	if d.Source == "" || d.ReceivedAt.IsZero() {
		return fmt.Errorf("bookingstore: stripe event %s without source or reception time: %w", d.EventID, domain.ErrInvalid)
	}
	l.prepare(ctx)
	return postgres.TransactOnce(ctx, l.db, func(ctx context.Context, tx *sql.Tx) error {
		return l.insertDelivery(ctx, tx, d, outcome, sql.NullInt64{})
	})
}
