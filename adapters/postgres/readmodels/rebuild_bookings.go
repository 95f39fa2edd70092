package readmodels

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
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

	snap, events, rows, err := r.bulkBookings(ctx, code, start)
	res.Events, res.Rows = events, rows
	if err != nil {
		return res, err
	}
	r.progress(bookingsTable, PhaseIndex, events, events, start)
	if err := buildShadowIndexes(ctx, db, bookingsTable, true); err != nil {
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
	if err := buildShadowIndexes(ctx, db, bookingsTable, false); err != nil {
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
// into the shadow and returns that snapshot. Three goroutines form a
// pipeline: the reader pages through the log in (stream_id, stream_version)
// order with keyset queries on ledger_events_stream_version_key, the folder
// folds each complete stream (a stream may span pages), the writer COPYs the
// rows into the shadow, committing each page of rows so that no long
// transaction holds back the subscribers.
func (r *Rebuilder) bulkBookings(ctx context.Context, code BookingsCode, start time.Time) (snap string, events, written int64, err error) {
	g, gctx := errgroup.WithContext(ctx)
	pages := make(chan []projections.RawEvent, 2)
	rowPages := make(chan []projections.BookingRow, 2)
	var read atomic.Int64

	g.Go(func() error {
		defer close(pages)
		tx, s, err := snapshotBegin(gctx, r.cfg.DB, true)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		snap = s
		// The head position stands for the number of events (gaps make it
		// a slight overestimate) and, unlike count(*), costs no scan.
		var total int64
		if err := tx.QueryRowContext(gctx, `SELECT COALESCE(max(position), 0) FROM ledger_events`).Scan(&total); err != nil {
			return fmt.Errorf("postgres: head position: %w", err)
		}
		r.progress(bookingsTable, PhaseBulk, 0, total, start)
		lastStream, lastVersion := int64(math.MinInt64), 0
		for {
			page, err := r.readStreamsPage(gctx, tx, lastStream, lastVersion)
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
			case <-gctx.Done():
				return gctx.Err()
			}
			n := read.Add(int64(len(page)))
			r.progress(bookingsTable, PhaseBulk, n, max(total, n), start)
			if h := r.cfg.Hooks.AfterBatch; h != nil {
				if err := h(gctx, n); err != nil {
					return err
				}
			}
			if len(page) < r.cfg.BatchSize {
				return nil
			}
		}
	})

	g.Go(func() error {
		defer close(rowPages)
		f := streamFolder{code: code}
		for page := range pages {
			for _, e := range page {
				if err := f.add(e); err != nil {
					return err
				}
			}
			if len(f.rows) == 0 {
				continue
			}
			select {
			case rowPages <- f.rows:
				f.rows = nil
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		if gctx.Err() != nil {
			return gctx.Err()
		}
		if err := f.flush(); err != nil {
			return err
		}
		if len(f.rows) > 0 {
			select {
			case rowPages <- f.rows:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})

	g.Go(func() error {
		for rows := range rowPages {
			err := postgres.Transact(gctx, r.cfg.DB, func(ctx context.Context, tx *sql.Tx) error {
				return copyBookings(ctx, tx, shadowName(bookingsTable), rows)
			})
			if err != nil {
				return err
			}
			written += int64(len(rows))
		}
		return nil
	})

	err = g.Wait()
	return snap, read.Load(), written, err
}

// readStreamsPage reads the next page of events after (stream, version) in
// stream order.
func (r *Rebuilder) readStreamsPage(ctx context.Context, tx *sql.Tx, stream int64, version int) ([]projections.RawEvent, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+rawEventColumns+` FROM ledger_events
		WHERE (stream_id, stream_version) > ($1, $2) ORDER BY stream_id, stream_version LIMIT $3`,
		stream, version, r.cfg.BatchSize)
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
	shadow := shadowName(bookingsTable)
	var delta int64
	const chunk = 1000
	for i := 0; i < len(ids); i += chunk {
		part := ids[i:min(i+chunk, len(ids))]
		folded, err := r.foldStreams(ctx, tx, code, part)
		if err != nil {
			return 0, 0, err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM `+pq.QuoteIdentifier(shadow)+` WHERE id = ANY($1)`, pq.Array(part))
		if err != nil {
			return 0, 0, fmt.Errorf("postgres: catch-up: %w", err)
		}
		deleted, _ := res.RowsAffected()
		if err := copyBookings(ctx, tx, shadow, folded); err != nil {
			return 0, 0, err
		}
		delta += int64(len(folded)) - deleted
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
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Code == "23P01" {
			return 0, fmt.Errorf("postgres: the rebuilt %s violates %s (%s): %w", bookingsTable, pqErr.Constraint, pqErr.Detail, err)
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
			return fmt.Errorf("postgres: copy into %s: booking %d: %w", table, b.ID, err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
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
