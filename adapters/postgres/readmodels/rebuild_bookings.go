package readmodels

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"golang.org/x/sync/errgroup"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/bookingstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// bookingsTable is the live status table.
const bookingsTable = "bookings"

var bookingCopyColumns = strings.Split(bookingstore.BookingColumns, ", ")

// rawEventColumns are what a rebuild of the bookings table reads, scanned
// by scanRawEvent.
const rawEventColumns = `stream_id, stream_version, position, event_type, schema_version, recorded_at, payload`

func scanRawEvent(rows *sql.Rows) (projections.RawEvent, error) {
	var e projections.RawEvent
	if err := rows.Scan(&e.StreamID, &e.StreamVersion, &e.Position, &e.Type, &e.SchemaVersion, &e.RecordedAt, &e.Payload); err != nil {
		return e, fmt.Errorf("postgres: scan event: %w", err)
	}
	e.RecordedAt = e.RecordedAt.UTC()
	return e, nil
}

// rebuildBookings: bulk fold into the shadow in one snapshot, catch-ups
// without locks, then the final catch-up and the change of the live table
// (or the diff) in one transaction.
func (r *Rebuilder) rebuildBookings(ctx context.Context, start time.Time, emit func(DiffEntry) error) (res RebuildResult, err error) {
	code := r.cfg.Bookings
	res.Version = code.Version
	db := r.cfg.DB
	if err := createShadow(ctx, db, bookingsTable); err != nil {
		return res, err
	}
	renamed := false
	defer func() {
		if renamed {
			return
		}
		// Patched, diffed, cancelled or failed: the shadow goes (a crash
		// leaves it to the next rebuild, which drops it first). Unless the
		// final transaction committed, the live table was never touched.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := dropShadow(dctx, db, bookingsTable); derr != nil {
			r.cfg.Logger.Warn("rebuild: shadow left behind", "projection", bookingsTable, "error", derr)
		}
	}()

	if emit == nil {
		replacing, err := r.expectReplace(ctx)
		if err != nil {
			return res, err
		}
		if replacing {
			// The exclusion constraint is built row by row whenever it is
			// built (GiST has no sorted build for these keys), so it costs
			// no more to build it during the bulk phase, by the COPYs,
			// while the log is read and folded.
			if err := buildShadowIndexes(ctx, db, bookingsTable, exclusionConstraints, 1, r.cfg.MaintenanceWorkMem); err != nil {
				return res, err
			}
		}
	}

	snap, events, rows, err := r.bulkBookings(ctx, code, start)
	res.Events, res.Rows = events, rows
	if err != nil {
		return res, err
	}
	r.progress(bookingsTable, PhaseIndex, events, events, start)
	if err := buildShadowIndexes(ctx, db, bookingsTable, primaryKey, 1, r.cfg.MaintenanceWorkMem); err != nil {
		return res, err
	}
	if h := r.cfg.Hooks.BeforeCatchUp; h != nil {
		if err := h(ctx); err != nil {
			return res, err
		}
	}

	r.progress(bookingsTable, PhaseCatchUp, events, events, start)
	// catchUp folds, in a snapshot, the streams changed since the last one,
	// and returns how many there were and (with countDiffering) the ids of
	// the shadow rows that differ from the live ones in that snapshot, at
	// most PatchLimit+1 of them.
	catchUp := func(countDiffering bool) (int, []int64, error) {
		tx, next, err := snapshotBegin(ctx, db, false)
		if err != nil {
			return 0, nil, err
		}
		defer tx.Rollback()
		n, delta, err := r.refoldChanged(ctx, tx, code, snap, nil)
		if err != nil {
			return 0, nil, err
		}
		var ids []int64
		if countDiffering {
			if ids, err = differingBookings(ctx, tx, nil, r.cfg.PatchLimit+1); err != nil {
				return 0, nil, err
			}
		}
		if err := tx.Commit(); err != nil {
			return 0, nil, fmt.Errorf("postgres: catch-up: %w", err)
		}
		snap = next
		res.CaughtUp += int64(n)
		res.Rows += delta
		return n, ids, nil
	}
	for range r.cfg.CatchUpRounds {
		n, _, err := catchUp(false)
		if err != nil {
			return res, err
		}
		if n < r.cfg.CatchUpThreshold {
			break
		}
	}

	if emit != nil {
		r.progress(bookingsTable, PhaseDiff, events, events, start)
		return res, r.diffBookings(ctx, code, snap, emit, &res)
	}

	_, differing, err := catchUp(r.cfg.PatchLimit >= 0)
	if err != nil {
		return res, err
	}
	between := func() error {
		_, ids, err := catchUp(len(differing) <= r.cfg.PatchLimit)
		if ids != nil {
			differing = ids
		}
		return err
	}
	if r.cfg.PatchLimit >= 0 && len(differing) <= r.cfg.PatchLimit {
		res.Strategy = StrategyPatch
		r.progress(bookingsTable, PhaseSwap, events, events, start)
		return res, r.withSwapRetries(ctx, bookingsTable, func() error {
			return r.finalBookings(ctx, code, snap, differing, &res)
		}, between)
	}

	res.Strategy = StrategyReplace
	r.progress(bookingsTable, PhaseIndex, events, events, start)
	if err := buildShadowIndexes(ctx, db, bookingsTable, allIndexes, r.indexBuilders(), r.cfg.MaintenanceWorkMem); err != nil {
		return res, err
	}
	if _, _, err := catchUp(false); err != nil {
		return res, err
	}
	r.progress(bookingsTable, PhaseSwap, events, events, start)
	err = r.withSwapRetries(ctx, bookingsTable, func() error {
		return r.finalBookings(ctx, code, snap, nil, &res)
	}, between)
	renamed = res.Swapped
	return res, err
}

// expectReplace reports whether the rebuild will replace the live table
// rather than patch it, as far as can be told before folding the log: when
// the patch limit is negative, or when the live table has fewer than half
// as many rows as the log has stream ids (stream ids are booking ids from a
// sequence, with a gap for each booking request refused): the rows to add
// alone then exceed any modest patch limit. A wrong guess costs time only:
// an exclusion constraint built for nothing, or built after the bulk phase.
func (r *Rebuilder) expectReplace(ctx context.Context) (bool, error) {
	if r.cfg.PatchLimit < 0 {
		return true, nil
	}
	var live, ids int64
	err := r.cfg.DB.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM `+bookingsTable+`),
		COALESCE((SELECT max(stream_id) FROM ledger_events) - (SELECT min(stream_id) FROM ledger_events) + 1, 0)`).Scan(&live, &ids)
	if err != nil {
		return false, fmt.Errorf("postgres: rows of %s: %w", bookingsTable, err)
	}
	return live+int64(r.cfg.PatchLimit) < ids/2, nil
}

// differingBookings returns the ids of the rows that differ between the
// shadow and the live table (only among ids, when given), in q's snapshot,
// at most limit of them.
func differingBookings(ctx context.Context, q postgres.Querier, ids []int64, limit int) ([]int64, error) {
	shadow := pq.QuoteIdentifier(shadowName(bookingsTable))
	cond := `true`
	args := []any{limit}
	if ids != nil {
		cond = `COALESCE(l.id, s.id) = ANY($2)`
		args = append(args, pq.Array(ids))
	}
	rows, err := q.QueryContext(ctx, `SELECT COALESCE(l.id, s.id) FROM `+bookingsTable+` l FULL OUTER JOIN `+shadow+` s ON l.id = s.id
		WHERE (l.id IS NULL OR s.id IS NULL OR (l.*) IS DISTINCT FROM (s.*)) AND `+cond+` LIMIT $1`, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: compare bookings: %w", err)
	}
	defer rows.Close()
	out := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("postgres: compare bookings: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// bulkBookings folds every stream visible in one REPEATABLE READ snapshot
// into the shadow and returns that snapshot. The streams are split by id
// into BulkReaders ranges, read in parallel in that same snapshot (exported
// by the first reader's transaction, imported by the others'). Each range
// is a pipeline of goroutines: the reader pages through the log in
// (stream_id, stream_version) order with keyset queries on
// ledger_events_stream_version_key, the folder folds each complete stream (a
// stream may span pages); writers COPY the rows into the shadow, committing
// each page of rows so that no long transaction holds back the subscribers.
// Memory is a few pages per range, whatever the length of the log.
func (r *Rebuilder) bulkBookings(ctx context.Context, code BookingsCode, start time.Time) (snap string, events, written int64, err error) {
	// The first range's reader runs in the transaction that takes the
	// snapshot and exports it; it stays open until every reader is done,
	// so the others can import it.
	tx, snap, err := snapshotBegin(ctx, r.cfg.DB, true)
	if err != nil {
		return "", 0, 0, err
	}
	defer tx.Rollback()
	// The head position stands for the number of events (gaps make it a
	// slight overestimate) and, unlike count(*), costs no scan; the
	// streams' ids bound the ranges.
	var total, lo, hi int64
	var exported string
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE((SELECT max(position) FROM ledger_events), 0),
		COALESCE((SELECT min(stream_id) FROM ledger_events), 0), COALESCE((SELECT max(stream_id) FROM ledger_events), 0),
		pg_export_snapshot()`).Scan(&total, &lo, &hi, &exported); err != nil {
		return "", 0, 0, fmt.Errorf("postgres: bulk snapshot: %w", err)
	}
	r.progress(bookingsTable, PhaseBulk, 0, total, start)
	ranges := streamRanges(lo, hi, r.bulkReaders())

	g, gctx := errgroup.WithContext(ctx)
	rowPages := make(chan []projections.BookingRow, 2*len(ranges))
	var read, wrote atomic.Int64
	var folders sync.WaitGroup
	var report sync.Mutex
	for i, rg := range ranges {
		pages := make(chan []projections.RawEvent, 2)
		g.Go(func() error {
			defer close(pages)
			rtx := tx
			if i > 0 {
				var err error
				if rtx, err = importSnapshot(gctx, r.cfg.DB, exported); err != nil {
					return err
				}
				defer rtx.Rollback()
			}
			return r.readRange(gctx, rtx, rg, pages, func(n int) error {
				// One call at a time, as from a single reader.
				report.Lock()
				defer report.Unlock()
				done := read.Add(int64(n))
				r.progress(bookingsTable, PhaseBulk, done, max(total, done), start)
				if h := r.cfg.Hooks.AfterBatch; h != nil {
					return h(gctx, done)
				}
				return nil
			})
		})
		folders.Add(1)
		g.Go(func() error {
			defer folders.Done()
			return foldPages(gctx, code, pages, rowPages)
		})
	}
	go func() {
		folders.Wait()
		close(rowPages)
	}()
	for range ranges {
		g.Go(func() error {
			for rows := range rowPages {
				err := postgres.Transact(gctx, r.cfg.DB, func(ctx context.Context, tx *sql.Tx) error {
					return copyBookings(ctx, tx, shadowName(bookingsTable), rows)
				})
				if err != nil {
					return err
				}
				wrote.Add(int64(len(rows)))
			}
			return nil
		})
	}
	err = g.Wait()
	return snap, read.Load(), wrote.Load(), err
}

// indexBuilders is the number of indexes built at once: the pool's
// connections but the rebuild's lock, at most 4.
func (r *Rebuilder) indexBuilders() int {
	n := 4
	if limit := r.cfg.DB.Stats().MaxOpenConnections; limit > 0 {
		n = min(n, limit-1)
	}
	return max(n, 1)
}

// bulkReaders is the number of ranges read in parallel: BulkReaders, fewer
// when the pool is too small for each to hold a reading transaction and
// have a writer besides the rebuild's lock (a reader holds its connection
// for the whole bulk phase; a writer needs one per page).
func (r *Rebuilder) bulkReaders() int {
	n := r.cfg.BulkReaders
	if limit := r.cfg.DB.Stats().MaxOpenConnections; limit > 0 {
		n = min(n, (limit-1)/2)
	}
	return max(n, 1)
}

// streamRange is an inclusive range of stream ids.
type streamRange struct{ first, last int64 }

// streamRanges splits [lo, hi] into n ranges of about as many ids (stream
// ids are booking ids from a sequence, so about as many streams).
func streamRanges(lo, hi int64, n int) []streamRange {
	if hi <= lo || n < 2 {
		return []streamRange{{lo, hi}}
	}
	// Two's complement arithmetic on uint64 does not overflow for any
	// pair of int64.
	width := (uint64(hi) - uint64(lo)) / uint64(n)
	if width == 0 {
		return []streamRange{{lo, hi}}
	}
	out := make([]streamRange, n)
	next := lo
	for i := range out {
		last := int64(uint64(next) + width - 1)
		if i == n-1 {
			last = hi
		}
		out[i] = streamRange{next, last}
		next = int64(uint64(last) + 1)
	}
	return out
}

// importSnapshot begins a REPEATABLE READ, read-only transaction in the
// snapshot another transaction exported (pg_export_snapshot).
func importSnapshot(ctx context.Context, db *sql.DB, id string) (*sql.Tx, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("postgres: begin snapshot: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `SET TRANSACTION SNAPSHOT `+pq.QuoteLiteral(id)); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("postgres: import snapshot: %w", err)
	}
	return tx, nil
}

// readRange sends the events of the streams in rg, in stream order, in
// pages of BatchSize, calling read after each page.
func (r *Rebuilder) readRange(ctx context.Context, tx *sql.Tx, rg streamRange, pages chan<- []projections.RawEvent, read func(n int) error) error {
	// stream_version is positive: (first, 0) comes before every event of
	// stream first.
	lastStream, lastVersion := rg.first, 0
	for {
		page, err := r.readStreamsPage(ctx, tx, lastStream, lastVersion, rg.last)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		last := page[len(page)-1]
		lastStream, lastVersion = last.StreamID, last.StreamVersion
		select {
		case pages <- page:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := read(len(page)); err != nil {
			return err
		}
		if len(page) < r.cfg.BatchSize {
			return nil
		}
	}
}

// foldPages folds the events of pages, which arrive in stream order, and
// sends the rows of the streams completed, a page of rows at a time.
func foldPages(ctx context.Context, code BookingsCode, pages <-chan []projections.RawEvent, rowPages chan<- []projections.BookingRow) error {
	f := streamFolder{code: code}
	send := func() error {
		if len(f.rows) == 0 {
			return nil
		}
		select {
		case rowPages <- f.rows:
			f.rows = nil
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for page := range pages {
		for _, e := range page {
			if err := f.add(e); err != nil {
				return err
			}
		}
		if err := send(); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		// The reader stopped early: the last stream may be incomplete.
		return ctx.Err()
	}
	if err := f.flush(); err != nil {
		return err
	}
	return send()
}

// readStreamsPage reads the next page of events after (stream, version) in
// stream order, up to stream last.
func (r *Rebuilder) readStreamsPage(ctx context.Context, tx *sql.Tx, stream int64, version int, last int64) ([]projections.RawEvent, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+rawEventColumns+` FROM ledger_events
		WHERE (stream_id, stream_version) > ($1, $2) AND stream_id <= $3 ORDER BY stream_id, stream_version LIMIT $4`,
		stream, version, last, r.cfg.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("postgres: read events: %w", err)
	}
	defer rows.Close()
	page := make([]projections.RawEvent, 0, r.cfg.BatchSize)
	for rows.Next() {
		e, err := scanRawEvent(rows)
		if err != nil {
			return nil, err
		}
		page = append(page, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read events: %w", err)
	}
	return page, nil
}

// refoldChanged folds again, on tx, every stream with events that were not
// visible in snapshot since, and replaces their rows in the shadow. It
// returns the number of streams and the change in the shadow's row count,
// and stores their ids in changed when it is not nil. Their old rows are
// all deleted before the new ones are written, so that a constraint on the
// shadow only ever sees a subset of the final rows.
func (r *Rebuilder) refoldChanged(ctx context.Context, tx *sql.Tx, code BookingsCode, since string, changed *[]int64) (int, int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT stream_id FROM ledger_events
		WHERE NOT `+postgres.CommittedBeforeXmin("$1::pg_snapshot")+` AND NOT pg_visible_in_snapshot(transaction_id, $1::pg_snapshot)
		ORDER BY stream_id`, since)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: changed streams: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("postgres: changed streams: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("postgres: changed streams: %w", err)
	}
	if len(ids) == 0 {
		return 0, 0, nil
	}
	shadow := shadowName(bookingsTable)
	res, err := tx.ExecContext(ctx, `DELETE FROM `+pq.QuoteIdentifier(shadow)+` WHERE id = ANY($1)`, pq.Array(ids))
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: catch-up: %w", err)
	}
	deleted, _ := res.RowsAffected()
	delta := -deleted
	const chunk = 1000
	for i := 0; i < len(ids); i += chunk {
		part := ids[i:min(i+chunk, len(ids))]
		folded, err := r.foldStreams(ctx, tx, code, part)
		if err != nil {
			return 0, 0, err
		}
		if err := copyBookings(ctx, tx, shadow, folded); err != nil {
			return 0, 0, err
		}
		delta += int64(len(folded))
	}
	if changed != nil {
		*changed = ids
	}
	return len(ids), delta, nil
}

// foldStreams loads and folds the given streams.
func (r *Rebuilder) foldStreams(ctx context.Context, tx *sql.Tx, code BookingsCode, ids []int64) ([]projections.BookingRow, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+rawEventColumns+` FROM ledger_events
		WHERE stream_id = ANY($1) ORDER BY stream_id, stream_version`, pq.Array(ids))
	if err != nil {
		return nil, fmt.Errorf("postgres: load streams: %w", err)
	}
	defer rows.Close()
	f := streamFolder{code: code}
	for rows.Next() {
		e, err := scanRawEvent(rows)
		if err != nil {
			return nil, err
		}
		if err := f.add(e); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: load streams: %w", err)
	}
	if err := f.flush(); err != nil {
		return nil, err
	}
	return f.rows, nil
}

// streamFolder folds events that arrive in stream order, one whole stream
// at a time, into rows.
type streamFolder struct {
	code   BookingsCode
	stream []projections.RawEvent
	rows   []projections.BookingRow
}

// add takes the next event, folding the previous stream when e starts a
// new one.
func (f *streamFolder) add(e projections.RawEvent) error {
	if len(f.stream) > 0 && e.StreamID != f.stream[0].StreamID {
		if err := f.flush(); err != nil {
			return err
		}
	}
	f.stream = append(f.stream, e)
	return nil
}

// flush folds the stream in hand, if any.
func (f *streamFolder) flush() error {
	if len(f.stream) == 0 {
		return nil
	}
	row, err := f.code.Fold(f.stream)
	if err != nil {
		return fmt.Errorf("postgres: rebuild bookings: stream %d: %w", f.stream[0].StreamID, err)
	}
	f.rows = append(f.rows, row)
	f.stream = f.stream[:0]
	return nil
}

// finalBookings is the final transaction: it blocks appends, folds what
// was appended since the last catch-up, and either rewrites in the live
// table the rows that differ among patch (plus the streams it just folded)
// or, when patch is nil, replaces the live table by the shadow.
//
// Locks are taken bookings first: every ledger transaction reads the
// bookings table before it appends, so once the bookings lock is held no
// append is in flight and the lock on ledger_events is granted at once. Each
// wait is bounded by LockTimeout; the caller retries.
func (r *Rebuilder) finalBookings(ctx context.Context, code BookingsCode, since string, patch []int64, res *RebuildResult) error {
	tx, err := r.cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("postgres: begin swap: %w", err)
	}
	defer tx.Rollback()
	for _, s := range []string{
		r.lockTimeout(),
		`LOCK TABLE ` + bookingsTable + ` IN ACCESS EXCLUSIVE MODE`,
		`LOCK TABLE ledger_events IN EXCLUSIVE MODE`,
	} {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("postgres: swap: %s: %w", s, err)
		}
	}
	locked := time.Now()
	var changed []int64
	n, delta, err := r.refoldChanged(ctx, tx, code, since, &changed)
	if err != nil {
		return err
	}
	var patched int64
	if patch != nil {
		if patched, err = patchBookings(ctx, tx, slices.Concat(patch, changed)); err != nil {
			return err
		}
	} else if err := swapShadow(ctx, tx, bookingsTable); err != nil {
		return err
	}
	if err := setProjectionVersion(ctx, tx, projections.BookingsName, code.Version); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: commit swap: %w", err)
	}
	res.Locked = time.Since(locked)
	res.CaughtUp += int64(n)
	res.Rows += delta
	res.Patched = patched
	res.Swapped = true
	return nil
}

// patchBookings makes the live rows of ids equal to the shadow's, in tx:
// it deletes every live row that differs and inserts the shadow's, so that
// the exclusion constraint only ever sees a subset of the final rows.
func patchBookings(ctx context.Context, tx *sql.Tx, ids []int64) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	differ, err := differingBookings(ctx, tx, ids, len(ids))
	if err != nil {
		return 0, err
	}
	if len(differ) == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+bookingsTable+` WHERE id = ANY($1)`, pq.Array(differ)); err != nil {
		return 0, fmt.Errorf("postgres: patch bookings: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+bookingsTable+` (`+bookingstore.BookingColumns+`) SELECT `+bookingstore.BookingColumns+` FROM `+
		pq.QuoteIdentifier(shadowName(bookingsTable))+` WHERE id = ANY($1)`, pq.Array(differ))
	if err != nil {
		if err := violation(bookingsTable, err); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("postgres: patch bookings: %w", err)
	}
	return int64(len(differ)), nil
}

// diffBookings catches the shadow up in one snapshot and compares it with
// the live table in that same snapshot; nothing is kept.
func (r *Rebuilder) diffBookings(ctx context.Context, code BookingsCode, since string, emit func(DiffEntry) error, res *RebuildResult) error {
	tx, _, err := snapshotBegin(ctx, r.cfg.DB, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	n, delta, err := r.refoldChanged(ctx, tx, code, since, nil)
	if err != nil {
		return err
	}
	res.CaughtUp += int64(n)
	res.Rows += delta
	res.Diff, err = diffTables(ctx, tx, bookingsTable, shadowName(bookingsTable), []string{"id"}, bookingCopyColumns[1:], emit)
	return err
}

// copyBookings writes rows into table with COPY.
func copyBookings(ctx context.Context, tx *sql.Tx, table string, rows []projections.BookingRow) error {
	if len(rows) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn(table, bookingCopyColumns...))
	if err != nil {
		return fmt.Errorf("postgres: copy into %s: %w", table, err)
	}
	defer stmt.Close()
	for _, b := range rows {
		if _, err := stmt.ExecContext(ctx, b.ID, b.ResourceID, b.CheckIn, b.CheckOut, string(b.Status), string(b.PaymentStatus),
			b.Amount, b.Currency, b.CustomerEmail, nullString(b.SessionID), nullString(b.PaymentIntentID),
			b.RefundedAmount, nullDispute(b.DisputeStatus), b.DisputedAmount, nullTime(b.DisputeEvidenceDueBy),
			b.CreatedAt, b.UpdatedAt, b.LastEventPosition); err != nil {
			if err := violation(bookingsTable, err); err != nil {
				return err
			}
			return fmt.Errorf("postgres: copy into %s: booking %d: %w", table, b.ID, err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		// The shadow's exclusion constraint, when built before the bulk
		// phase, checks the rows here.
		if err := violation(bookingsTable, err); err != nil {
			return err
		}
		return fmt.Errorf("postgres: copy into %s: %w", table, err)
	}
	return nil
}

func nullDispute(s *domain.DisputeStatus) any {
	if s == nil {
		return nil
	}
	return string(*s)
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

func nullString(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
