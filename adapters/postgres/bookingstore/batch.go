package bookingstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
	"github.com/booking-ledger/ledger/domain/eventlog"
	"github.com/booking-ledger/ledger/projections"
)

// The group commit's transaction: several Stripe deliveries decided and
// written together, with the statements of one delivery (ingest.go) made
// multi-row. Its round trips do not grow with the batch: BEGIN, the lookup,
// the resources' locks, the streams, the one write, COMMIT.
//
// Each item is decided exactly as Record decides it alone; what differs is
// only which items may share a transaction. An item is left for the next
// batch (deferred) when it names an event id, a booking or a resource an
// earlier item of the batch names, so that every decision still sees the
// commit of everything decided before it about its resource; and an
// unmatched item of a batch that decides something is looked up once more
// in the next batch, since one of the batch's payments may be the one it
// names (a refund arriving with its payment).

// batchItem is one delivery of a batch and what became of it.
type batchItem struct {
	d      app.Delivery
	decide app.Decision

	// The lookup: whether the inbox holds the event (and for which
	// booking), the booking it names and that booking's resource.
	known        bool
	inboxBooking sql.NullInt64
	found        sql.NullInt64
	resource     string

	// deferred: left for the next batch; deferrals counts how often.
	deferred  bool
	deferrals int

	// The decision and its writes.
	stored   []eventstore.StoredEvent
	envs     []projections.Envelope
	prior    []domain.Event
	stays    []domain.Stay
	decided  []domain.Event
	appendAt int // index in the batch's appends, -1 for none

	res app.IngestResult
	// err is the item's own failure: its decision refused, or its stream
	// unreadable. Nothing is written for it; its batch-mates go on.
	err error
}

// batchLookupQuery is lookupQuery for many deliveries: the arrays' elements
// are the parameters of lookupQuery, one delivery each, and the rows come
// back in their order. It takes no lock: the batch locks its resources in
// one statement after it (batchLockQuery), in a fixed order. Each table is
// probed per delivery in a LATERAL subquery with a LIMIT, which the
// planner cannot turn into a join over a whole table (see
// batchStreamQuery).
var batchLookupQuery = `
	SELECT i.known IS NOT NULL, i.booking_id, f.id, f.resource_id
	FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
		WITH ORDINALITY AS d(event_id, b1, b2, session_id, payment_intent_id, ord)
	LEFT JOIN LATERAL (SELECT true AS known, booking_id FROM stripe_inbox WHERE event_id = d.event_id LIMIT 1) i ON true
	LEFT JOIN LATERAL (
		SELECT id, resource_id FROM (
			SELECT id, resource_id, 1 AS rank FROM bookings WHERE id = d.b1
			UNION ALL SELECT id, resource_id, 2 FROM bookings WHERE id = d.b2
			UNION ALL SELECT id, resource_id, 3 FROM bookings WHERE session_id = d.session_id
			UNION ALL SELECT id, resource_id, 4 FROM bookings WHERE payment_intent_id = d.payment_intent_id
		) candidates ORDER BY rank, id LIMIT 1
	) f ON true
	ORDER BY d.ord`

// batchLockQuery takes the advisory locks of the resources $1, in the
// array's order (a function scan returns its rows in order and the
// aggregate evaluates them one by one). Every batch sorts its resources the
// same way and every other writer holds at most one resource lock, so two
// writers never wait for each other's locks in a cycle.
var batchLockQuery = `SELECT count(pg_advisory_xact_lock(` + ResourceLockKey("r") + `)) FROM unnest($1::text[]) AS r`

// batchStreamQuery is streamQuery for the bookings $1: their streams in
// (stream, version) order, each row with the confirmed stays that overlap
// its booking's stay. Each stream is read by its own index probe (the
// LATERAL subquery, kept apart by OFFSET 0): a join the planner may
// flatten was planned, generically for "some" bookings, as a hash join
// over a scan of the whole log.
var batchStreamQuery = `
	SELECT e.*, c.ids, c.check_ins, c.check_outs
	FROM unnest($1::bigint[]) AS s(booking)
	CROSS JOIN LATERAL (
		SELECT array_agg(o.id ORDER BY o.id) AS ids,
			array_agg(o.check_in::text ORDER BY o.id) AS check_ins,
			array_agg(o.check_out::text ORDER BY o.id) AS check_outs
		FROM bookings b JOIN bookings o ON ` + overlapProbe("o", "b.resource_id", "b.check_in", "b.check_out") + ` AND o.id <> b.id
		WHERE b.id = s.booking
	) c
	CROSS JOIN LATERAL (SELECT ` + eventstore.SelectColumns + ` FROM ledger_events WHERE stream_id = s.booking OFFSET 0) e
	ORDER BY e.stream_id, e.stream_version`

// batchPlanMode makes the batch's statements run their generic plans. Their
// parameters are arrays, which a custom plan sizes and a generic one
// guesses (ten elements), so PostgreSQL judged the generic plan dearer and
// planned the lookup and the streams' read again for every batch: 0.3 ms
// of backend CPU each, a fifth of a batch's. Their generic plans probe by
// index (TestBatchStatementsProbeByIndex). LOCAL: the setting ends with
// the transaction, so the pool's other statements keep the server's.
const batchPlanMode = `SET LOCAL plan_cache_mode = force_generic_plan`

// recordBatch decides and writes items on tx. It returns an error for the
// batch as a whole (nothing it wrote may commit); an item's own failure is
// its err. Deferred items are left untouched for the next batch.
func (l *Store) recordBatch(ctx context.Context, tx *sql.Tx, items []*batchItem) error {
	if _, err := tx.ExecContext(ctx, batchPlanMode); err != nil {
		return fmt.Errorf("bookingstore: batch plan mode: %w", err)
	}
	if err := l.lookupBatch(ctx, tx, items); err != nil {
		return err
	}
	decisions := partition(items)
	if len(decisions) > 0 {
		resources := make([]string, len(decisions))
		ids := make([]int64, len(decisions))
		for i, it := range decisions {
			resources[i], ids[i] = it.resource, it.found.Int64
		}
		slices.Sort(resources)
		if _, err := l.stmts.Exec(ctx, tx, batchLockQuery, pq.StringArray(resources)); err != nil {
			return fmt.Errorf("bookingstore: lock %d resources: %w", len(resources), err)
		}
		if err := l.loadStreams(ctx, tx, decisions, ids); err != nil {
			return err
		}
	}
	// One recorded_at for the batch: the status rows are folded with the
	// time the events are stored with.
	recordedAt := eventlog.StorageTime(l.now())
	var appends []eventstore.StreamAppend
	for _, it := range decisions {
		l.decideItem(it, recordedAt, &appends)
	}
	if l.beforeBatchWrite != nil {
		if err := l.beforeBatchWrite(ctx, tx); err != nil {
			return err
		}
	}
	return l.writeBatch(ctx, tx, items, appends, recordedAt)
}

// lookupBatch runs batchLookupQuery for items.
func (l *Store) lookupBatch(ctx context.Context, tx *sql.Tx, items []*batchItem) error {
	n := len(items)
	events, sessions, intents := make([]string, n), make([]string, n), make([]string, n)
	b1, b2 := make([]int64, n), make([]int64, n)
	for i, it := range items {
		events[i], sessions[i], intents[i] = it.d.EventID, it.d.Lookup.SessionID, it.d.Lookup.PaymentIntentID
		if ids := it.d.Lookup.BookingIDs; len(ids) > 0 {
			b1[i] = ids[0]
			if len(ids) > 1 {
				b2[i] = ids[1]
			}
		}
	}
	rows, err := l.stmts.Query(ctx, tx, batchLookupQuery,
		pq.StringArray(events), pq.Int64Array(b1), pq.Int64Array(b2), pq.StringArray(sessions), pq.StringArray(intents))
	if err != nil {
		return fmt.Errorf("bookingstore: look up %d stripe events: %w", n, err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		if i == n {
			return fmt.Errorf("bookingstore: look up %d stripe events: more rows than events", n)
		}
		it := items[i]
		var resource sql.NullString
		if err := rows.Scan(&it.known, &it.inboxBooking, &it.found, &resource); err != nil {
			return fmt.Errorf("bookingstore: look up stripe event %s: %w", it.d.EventID, err)
		}
		it.resource = resource.String
		i++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("bookingstore: look up %d stripe events: %w", n, err)
	}
	if i != n {
		return fmt.Errorf("bookingstore: look up %d stripe events: %d rows", n, i)
	}
	return nil
}

// partition gives each looked-up item its outcome, or defers it (see the
// comment at the top of this file), and returns the items to decide, at
// most one per resource.
func partition(items []*batchItem) []*batchItem {
	events := make(map[string]bool, len(items))
	resources := make(map[string]bool, len(items))
	var decisions, unmatched []*batchItem
	for _, it := range items {
		if events[it.d.EventID] {
			it.deferred = true
			continue
		}
		events[it.d.EventID] = true
		switch {
		case it.known:
			it.res = app.IngestResult{Outcome: app.OutcomeDuplicate, BookingID: it.inboxBooking.Int64}
		case !it.d.Handled():
			it.res = app.IngestResult{Outcome: app.OutcomeIgnored}
		case !it.found.Valid:
			it.res = app.IngestResult{Outcome: app.OutcomeUnmatched}
			unmatched = append(unmatched, it)
		case resources[it.resource]:
			it.deferred = true
		default:
			resources[it.resource] = true
			it.res = app.IngestResult{Outcome: app.OutcomeProcessed, BookingID: it.found.Int64}
			decisions = append(decisions, it)
		}
	}
	if len(decisions) > 0 {
		for _, it := range unmatched {
			if it.deferrals == 0 {
				it.deferred = true
			}
		}
	}
	return decisions
}

// loadStreams reads the streams of the bookings ids (one per decision, in
// its order) with batchStreamQuery.
func (l *Store) loadStreams(ctx context.Context, tx *sql.Tx, decisions []*batchItem, ids []int64) error {
	rows, err := l.stmts.Query(ctx, tx, batchStreamQuery, pq.Int64Array(ids))
	if err != nil {
		return fmt.Errorf("bookingstore: load %d streams: %w", len(ids), err)
	}
	defer rows.Close()
	byBooking := make(map[int64]*batchItem, len(decisions))
	for _, it := range decisions {
		byBooking[it.found.Int64] = it
	}
	var (
		stayIDs             []int64
		checkIns, checkOuts []string
	)
	row := extraColumns{rows: rows, extra: []any{pq.Array(&stayIDs), pq.Array(&checkIns), pq.Array(&checkOuts)}}
	for rows.Next() {
		stayIDs, checkIns, checkOuts = nil, nil, nil
		e, err := eventstore.ScanEvent(row)
		if err != nil {
			return fmt.Errorf("bookingstore: load %d streams: %w", len(ids), err)
		}
		it := byBooking[e.StreamID]
		if it == nil {
			return fmt.Errorf("bookingstore: load %d streams: unexpected stream %d", len(ids), e.StreamID)
		}
		if len(it.stored) == 0 {
			it.stays, it.err = parseStays(e.StreamID, stayIDs, checkIns, checkOuts)
		}
		it.stored = append(it.stored, e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("bookingstore: load %d streams: %w", len(ids), err)
	}
	return nil
}

// decideItem rehydrates one decision's booking and runs its decision; what
// it decides joins appends. A refusal is the item's own error.
func (l *Store) decideItem(it *batchItem, recordedAt time.Time, appends *[]eventstore.StreamAppend) {
	it.appendAt = -1
	if it.err != nil {
		return
	}
	id := it.found.Int64
	if len(it.stored) == 0 {
		it.err = fmt.Errorf("bookingstore: booking %d has no stream", id)
		return
	}
	var err error
	if it.envs, it.prior, err = decode(it.stored, maxDecisionEvents); err != nil {
		it.err = err
		return
	}
	b, err := domain.Rehydrate(domain.BookingID(id), it.prior)
	if err != nil {
		it.err = err
		return
	}
	if it.decided, err = it.decide(b, it.stays); err != nil {
		it.err = err
		return
	}
	if len(it.decided) == 0 {
		// Nothing to append: the status row stays the fold of the stream.
		if it.res.Booking, err = projections.FoldBooking(it.envs); err != nil {
			it.err = err
		}
		return
	}
	occurred := it.d.Created
	if occurred.IsZero() {
		occurred = it.d.ReceivedAt
	}
	newEvents, err := newEvents(it.decided, occurred, it.d.EventID)
	if err != nil {
		it.err = err
		return
	}
	last := it.stored[len(it.stored)-1]
	for _, ev := range it.decided {
		it.envs = append(it.envs, projections.Envelope{StreamID: id, RecordedAt: recordedAt, Event: ev})
	}
	if it.res.Booking, err = projections.FoldBooking(it.envs); err != nil {
		it.err = err
		return
	}
	it.res.Events = it.decided
	it.appendAt = len(*appends)
	*appends = append(*appends, eventstore.StreamAppend{StreamID: id, ExpectedVersion: last.StreamVersion, PrevHash: last.Hash, Events: newEvents})
}

// writeBatch writes, in one statement, the decided events (appends), the
// status rows of their bookings, and the inbox and delivery rows of every
// item that is neither deferred nor failed; then the rare extra rows of
// late refund failures.
func (l *Store) writeBatch(ctx context.Context, tx *sql.Tx, items []*batchItem, appends []eventstore.StreamAppend, recordedAt time.Time) error {
	var (
		statusRows, inboxRows, deliveryRows [][]any
		late                                []*batchItem
		size                                int // of the rows' raw bodies
	)
	for _, it := range items {
		if it.deferred || it.err != nil {
			continue
		}
		size += len(it.d.Raw)
		switch it.res.Outcome {
		case app.OutcomeDuplicate, app.OutcomeUnmatched:
			deliveryRows = append(deliveryRows, deliveryArgs(it.d, it.res.Outcome, it.inboxBooking))
		case app.OutcomeIgnored:
			inboxRows = append(inboxRows, append(inboxRow{d: it.d, outcome: app.OutcomeIgnored}.args(), sql.NullInt64{}))
		case app.OutcomeProcessed:
			inboxRows = append(inboxRows, append(inboxRow{d: it.d, outcome: app.OutcomeProcessed}.args(), it.found))
			if it.appendAt >= 0 {
				statusRows = append(statusRows, upsertArgs(it.res.Booking))
				if lateRefundFailure(it.decided) {
					late = append(late, it)
				}
			}
		}
	}
	rows, inboxes, deliveries := len(statusRows), len(inboxRows), len(deliveryRows)
	var ids, positions []int64
	dest := []any{(*pq.Int64Array)(&ids), (*pq.Int64Array)(&positions)}
	// Not nil: an empty bytea, not NULL, when no row has a body.
	bodies := make([]byte, 0, size)
	args := slices.Concat(columnArrays(inboxRows, inboxColumnTypes, &bodies), columnArrays(deliveryRows, deliveryColumnTypes, &bodies))
	if len(appends) > 0 {
		args = append(columnArrays(statusRows, bookingColumnTypes, &bodies), args...)
	}
	args = append([]any{bodies}, args...)
	var err error
	if len(appends) > 0 {
		_, err = l.store.AppendBatch(ctx, tx, appends, recordedAt, &eventstore.Trailer{SQL: batchWriteQuery, Args: args, Dest: dest})
	} else if inboxes+deliveries > 0 {
		err = l.stmts.QueryRow(ctx, tx, batchWriteNoEventsQuery, args...).Scan(dest...)
	}
	switch {
	case postgres.ConstraintViolated(err, "stripe_inbox_event_id_key"):
		return fmt.Errorf("bookingstore: inbox of %d stripe events: %w", inboxes, errInboxTaken)
	case errors.Is(err, domain.ErrConcurrency):
		return err
	case err != nil:
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Code == "23P01" {
			return fmt.Errorf("bookingstore: batch of %d status rows: %w", rows, domain.ErrConflict)
		}
		return fmt.Errorf("bookingstore: write batch: %w", err)
	}
	if len(ids) != len(positions) || len(ids) != rows {
		return fmt.Errorf("bookingstore: batch wrote %d status rows of %d", len(ids), rows)
	}
	position := make(map[int64]int64, len(ids))
	for i, id := range ids {
		position[id] = positions[i]
	}
	for _, it := range items {
		if it.appendAt >= 0 && !it.deferred && it.err == nil {
			it.res.Booking.LastEventPosition = position[it.found.Int64]
		}
	}
	for _, it := range late {
		if err := mirrorLateRefundFailures(ctx, tx, domain.BookingID(it.found.Int64), appends[it.appendAt].ExpectedVersion); err != nil {
			return err
		}
	}
	return nil
}

// columnArrays turns rows of statement parameters (upsertArgs,
// inboxRow.args, deliveryArgs) into one array parameter per column of
// types, for the unnest of batchWriteSQL: the rows' builders stay the one
// place that orders a table's values, for one row and for many. A column
// of type bodyColumn (raw bodies) is appended to bodies and passed as two
// arrays, the bodies' offsets and lengths in it.
func columnArrays(rows [][]any, types []string, bodies *[]byte) []any {
	out := make([]any, 0, len(types)+1)
	for c, t := range types {
		if t != bodyColumn {
			out = append(out, columnArray(rows, c))
			continue
		}
		offsets, lengths := make(pq.Int64Array, len(rows)), make(pq.Int64Array, len(rows))
		for r, row := range rows {
			b, _ := row[c].([]byte)
			offsets[r], lengths[r] = int64(len(*bodies))+1, int64(len(b))
			*bodies = append(*bodies, b...)
		}
		out = append(out, offsets, lengths)
	}
	return out
}

// columnArray is column c of rows as one array parameter: lib/pq's typed
// arrays when every value has their type (bytes, the bodies' SHA-256 sums,
// are hex-encoded straight into the literal), else a generic array of
// arrayElement values.
func columnArray(rows [][]any, c int) any {
	switch {
	case allOf[[]byte](rows, c):
		a := make(pq.ByteaArray, len(rows))
		for r, row := range rows {
			a[r] = row[c].([]byte)
		}
		return a
	case allOf[string](rows, c):
		a := make(pq.StringArray, len(rows))
		for r, row := range rows {
			a[r] = row[c].(string)
		}
		return a
	case allOf[int64](rows, c):
		a := make(pq.Int64Array, len(rows))
		for r, row := range rows {
			a[r] = row[c].(int64)
		}
		return a
	}
	a := make([]any, len(rows))
	for r, row := range rows {
		a[r] = arrayElement(row[c])
	}
	return pq.GenericArray{A: a}
}

// allOf reports whether column c of every row holds a T (false for none).
func allOf[T any](rows [][]any, c int) bool {
	for _, row := range rows {
		if _, ok := row[c].(T); !ok {
			return false
		}
	}
	return len(rows) > 0
}

// arrayElement is v as lib/pq writes it into an array literal: bytes as
// bytea's hex text (lib/pq would copy them raw), times as RFC 3339 with
// their nanoseconds (a column type's input rounds them as a plain
// parameter's does); everything else (strings, numbers, booleans, NULLs
// and sql.Null* values, pointers) as it is.
func arrayElement(v any) any {
	switch v := v.(type) {
	case []byte:
		return `\x` + hex.EncodeToString(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case *time.Time:
		if v == nil {
			return nil
		}
		return v.Format(time.RFC3339Nano)
	}
	return v
}

// batchWriteSQL is the batch's one write statement: insert, the events'
// INSERT with its n parameters ("" for none: no status row either), then
// the raw bodies of the inbox and delivery rows as one bytea, then the
// status rows (each with its last event's position), the inbox rows and
// the delivery rows, each table's columns one array parameter
// (columnArrays) in that order. It returns the status rows' ids and
// positions as two arrays. Its text does not depend on the batch: it is
// prepared once and planned once (batchPlanMode), where multi-row VALUES
// lists were parsed and planned again for every batch. The bodies travel
// as one bytea cut by offsets: PostgreSQL reads a bytea[] of 3 KB bodies
// six times slower than one bytea of the same size (array_in was 6 % of
// the backends' CPU).
func batchWriteSQL(insert string, n int) string {
	p := n + 1 // the next parameter
	param := func() string { s := "$" + strconv.Itoa(p); p++; return s }
	bodies := param()
	// rows is "SELECT <columns> FROM unnest(<arrays>) AS u(...)" for a
	// table's column types, the bodies cut out of the bytea.
	rows := func(types []string, extra string) string {
		var sel, arrays, names []string
		for i, t := range types {
			c := "c" + strconv.Itoa(i)
			if t == bodyColumn {
				arrays = append(arrays, param()+"::bigint[]", param()+"::bigint[]")
				names = append(names, c+"_at", c+"_len")
				sel = append(sel, "substring("+bodies+"::bytea FROM u."+c+"_at::int FOR u."+c+"_len::int)")
				continue
			}
			arrays = append(arrays, param()+"::"+t+"[]")
			names = append(names, c)
			sel = append(sel, "u."+c)
		}
		return "SELECT " + strings.Join(sel, ", ") + extra + " FROM unnest(" + strings.Join(arrays, ", ") + ") AS u(" + strings.Join(names, ", ") + ")"
	}
	var b strings.Builder
	b.WriteString("WITH ")
	if insert != "" {
		b.WriteString("ev AS (" + insert + " RETURNING stream_id, position), ")
		b.WriteString("st AS (INSERT INTO bookings (" + BookingColumns + ") " +
			rows(bookingColumnTypes, ", (SELECT max(position) FROM ev WHERE ev.stream_id = u.c0)") +
			upsertConflictSQL + " RETURNING id, last_event_position)")
	} else {
		b.WriteString("st AS (SELECT NULL::bigint AS id, NULL::bigint AS last_event_position WHERE false)")
	}
	b.WriteString(", ib AS (INSERT INTO stripe_inbox (" + inboxColumns + ") " + rows(inboxColumnTypes, "") + ")")
	b.WriteString(", dl AS (INSERT INTO stripe_deliveries (" + deliveryColumns + ") " + rows(deliveryColumnTypes, "") + ")")
	b.WriteString(" SELECT COALESCE(array_agg(id), '{}'), COALESCE(array_agg(last_event_position), '{}') FROM st")
	return b.String()
}

// The column types of upsertArgs, inboxRow.args with the booking id, and
// deliveryArgs: the arrays' element types in batchWriteSQL; bodyColumn
// marks a raw body, which travels in the statement's one bytea.
const bodyColumn = "body"

var (
	bookingColumnTypes = []string{"bigint", "text", "date", "date", "text", "text", "bigint", "text", "text", "text", "text",
		"bigint", "text", "bigint", "timestamptz", "timestamptz", "timestamptz"}
	inboxColumnTypes    = []string{"text", "text", "text", "boolean", "timestamptz", "timestamptz", "text", "text", bodyColumn, "bytea", "text", "text", "bigint"}
	deliveryColumnTypes = []string{"text", "text", "timestamptz", "text", "bigint", bodyColumn, "bytea", "text", "text"}
)

// batchWriteQuery and batchWriteNoEventsQuery are batchWriteSQL with the
// schema adapter's INSERT and without events, built and prepared once.
var (
	batchWriteQuery         = batchWriteSQL(eventstore.InsertQuery(), eventstore.InsertColumns)
	batchWriteNoEventsQuery = batchWriteSQL("", 0)
)

// parseStays turns the arrays of streamQuery's stay columns into stays.
func parseStays(booking int64, ids []int64, checkIns, checkOuts []string) ([]domain.Stay, error) {
	if len(ids) != len(checkIns) || len(ids) != len(checkOuts) {
		return nil, fmt.Errorf("bookingstore: confirmed stays of booking %d: %d ids, %d check-ins, %d check-outs", booking, len(ids), len(checkIns), len(checkOuts))
	}
	stays := make([]domain.Stay, len(ids))
	for i := range ids {
		r, err := domain.ParseDateRange(checkIns[i], checkOuts[i])
		if err != nil {
			return nil, fmt.Errorf("bookingstore: confirmed stay of booking %d: %w", ids[i], err)
		}
		stays[i] = domain.Stay{BookingID: domain.BookingID(ids[i]), Range: r}
	}
	return stays, nil
}
