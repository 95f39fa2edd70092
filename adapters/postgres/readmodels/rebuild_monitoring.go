package readmodels

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// cut is a point in the subscribers' reading order, (transaction_id,
// position): everything at or before it is applied, nothing after it.
// Watermill-sql keeps a consumer group's offset in this form.
type cut struct {
	tx  uint64
	pos int64
}

func (c cut) less(o cut) bool { return c.tx < o.tx || c.tx == o.tx && c.pos < o.pos }

func (c cut) txText() string { return strconv.FormatUint(c.tx, 10) }

// before returns the cut that holds every transaction below xmin, the
// oldest transaction still running in some snapshot: all of them are
// finished, so the cut is stable.
func before(xmin uint64) cut { return cut{tx: xmin - 1, pos: math.MaxInt64} }

// poisonEvent is an event the monitoring projection cannot apply.
type poisonEvent struct {
	position int64
	err      string
}

// monitoringFold is the monitoring projection being rebuilt in memory: its
// size grows with the number of distinct keys (days, reasons, currencies),
// not with the log, so no shadow table is needed to bound memory.
type monitoringFold struct {
	state  projections.Monitoring
	poison []poisonEvent
	cut    cut
}

// monitoringEventColumns are what the monitoring rebuild reads.
// The transaction id is read as text (database/sql has no uint64 scan) under
// another name: ORDER BY transaction_id must sort by the xid8 column.
const monitoringEventColumns = `position, transaction_id::text AS txid, stream_id, event_type, schema_version, recorded_at, payload`

// apply folds rows of monitoringEventColumns and moves the cut past them.
func (f *monitoringFold) apply(rows *sql.Rows) (int64, error) {
	var n int64
	for rows.Next() {
		var e projections.RawEvent
		var txText string
		if err := rows.Scan(&e.Position, &txText, &e.StreamID, &e.Type, &e.SchemaVersion, &e.RecordedAt, &e.Payload); err != nil {
			return n, fmt.Errorf("postgres: scan event: %w", err)
		}
		tx, err := strconv.ParseUint(txText, 10, 64)
		if err != nil {
			return n, fmt.Errorf("postgres: event %d: transaction id %q: %w", e.Position, txText, err)
		}
		n++
		f.cut = cut{tx, e.Position}
		if err := applyMonitoring(&f.state, e); err != nil {
			f.poison = append(f.poison, poisonEvent{e.Position, err.Error()})
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("postgres: read events: %w", err)
	}
	return n, nil
}

// applyMonitoring decodes a stored event and adds its deltas; a decoding
// or projection error makes it a poison event.
func applyMonitoring(m *projections.Monitoring, e projections.RawEvent) error {
	ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		return err
	}
	return m.Apply(projections.Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt.UTC(), Event: ev})
}

// foldRange folds the events after f.cut up to and including to, in the
// subscribers' order, page by page on the (transaction_id, position) index.
func (r *Rebuilder) foldRange(ctx context.Context, q postgres.Querier, f *monitoringFold, to cut) (int64, error) {
	var total int64
	for f.cut.less(to) {
		rows, err := q.QueryContext(ctx, `SELECT `+monitoringEventColumns+` FROM ledger_events
			WHERE (transaction_id, position) > ($1::xid8, $2::bigint) AND (transaction_id, position) <= ($3::xid8, $4::bigint)
			ORDER BY transaction_id, position LIMIT $5`,
			f.cut.txText(), f.cut.pos, to.txText(), to.pos, r.cfg.BatchSize)
		if err != nil {
			return total, fmt.Errorf("postgres: read events: %w", err)
		}
		n, err := f.apply(rows)
		rows.Close()
		total += n
		if err != nil {
			return total, err
		}
		if n < int64(r.cfg.BatchSize) {
			break
		}
	}
	// Whatever lies between the last event read and to is empty.
	f.cut = to
	return total, nil
}

// rebuildMonitoring: bulk fold of every event of the transactions finished
// before one snapshot, catch-ups, then the final catch-up to the
// subscriber's own offset and the replacement of the tables, with the
// subscriber paused, in one transaction.
func (r *Rebuilder) rebuildMonitoring(ctx context.Context, start time.Time, emit func(DiffEntry) error) (res RebuildResult, err error) {
	res.Version = projections.MonitoringVersion
	f := &monitoringFold{}
	db := r.cfg.DB

	tx, _, err := snapshotBegin(ctx, db, true)
	if err != nil {
		return res, err
	}
	var xminText string
	var total int64
	if err := tx.QueryRowContext(ctx, `SELECT `+postgres.Xmin(postgres.CurrentSnapshot)+`::text, COALESCE(max(position), 0) FROM ledger_events`).Scan(&xminText, &total); err != nil {
		tx.Rollback()
		return res, fmt.Errorf("postgres: snapshot: %w", err)
	}
	xmin, err := strconv.ParseUint(xminText, 10, 64)
	if err != nil {
		tx.Rollback()
		return res, fmt.Errorf("postgres: snapshot xmin %q: %w", xminText, err)
	}
	r.progress(projections.MonitoringName, PhaseBulk, 0, total, start)
	var last int64
	for {
		rows, err := tx.QueryContext(ctx, `SELECT `+monitoringEventColumns+` FROM ledger_events
			WHERE position > $1 AND transaction_id < $2::xid8 ORDER BY position LIMIT $3`, last, xminText, r.cfg.BatchSize)
		if err != nil {
			tx.Rollback()
			return res, fmt.Errorf("postgres: read events: %w", err)
		}
		n, err := f.apply(rows)
		rows.Close()
		if err != nil {
			tx.Rollback()
			return res, err
		}
		res.Events += n
		last = f.cut.pos
		r.progress(projections.MonitoringName, PhaseBulk, res.Events, max(total, res.Events), start)
		if h := r.cfg.Hooks.AfterBatch; h != nil && n > 0 {
			if err := h(ctx, res.Events); err != nil {
				tx.Rollback()
				return res, err
			}
		}
		if n < int64(r.cfg.BatchSize) {
			break
		}
	}
	tx.Rollback()
	f.cut = before(xmin)

	if h := r.cfg.Hooks.BeforeCatchUp; h != nil {
		if err := h(ctx); err != nil {
			return res, err
		}
	}
	r.progress(projections.MonitoringName, PhaseCatchUp, res.Events, res.Events, start)
	catchUp := func() (int64, error) {
		var xminText string
		if err := db.QueryRowContext(ctx, `SELECT `+postgres.Xmin(postgres.CurrentSnapshot)+`::text`).Scan(&xminText); err != nil {
			return 0, fmt.Errorf("postgres: snapshot: %w", err)
		}
		xmin, err := strconv.ParseUint(xminText, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("postgres: snapshot xmin %q: %w", xminText, err)
		}
		n, err := r.foldRange(ctx, db, f, before(xmin))
		res.CaughtUp += n
		return n, err
	}
	for range r.cfg.CatchUpRounds {
		n, err := catchUp()
		if err != nil {
			return res, err
		}
		if n < int64(r.cfg.CatchUpThreshold) {
			break
		}
	}

	final := func(write bool) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("postgres: begin swap: %w", err)
		}
		defer tx.Rollback()
		consumer, err := lockSubscriber(ctx, tx, r.lockTimeout())
		if err != nil {
			return err
		}
		locked := time.Now()
		if f.cut.less(consumer) {
			n, err := r.foldRange(ctx, tx, f, consumer)
			res.CaughtUp += n
			if err != nil {
				return err
			}
		}
		res.DeadLettered = int64(len(f.poison))
		if !write {
			res.Diff, err = diffMonitoring(ctx, tx, &f.state, emit)
			if err == nil && consumer.less(f.cut) {
				r.cfg.Logger.WarnContext(ctx, "diff: the monitoring subscriber is behind the rebuild; events it has not applied yet show as differences")
			}
			return err
		}
		// The cut of the bulk phase and the catch-ups names no event
		// ("every transaction below xmin"); store the last event it holds,
		// an equivalent cut, so that positions read as positions.
		if f.cut, err = lastEventAtOrBefore(ctx, tx, f.cut); err != nil {
			return err
		}
		if res.Rows, err = writeMonitoring(ctx, tx, &f.state); err != nil {
			return err
		}
		if err := recordRebuildPoison(ctx, tx, f.poison); err != nil {
			return err
		}
		if err := moveSubscriber(ctx, tx, f.cut); err != nil {
			return err
		}
		if err := setProjectionVersion(ctx, tx, projections.MonitoringName, projections.MonitoringVersion); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("postgres: commit swap: %w", err)
		}
		res.Locked = time.Since(locked)
		res.Swapped = true
		res.Strategy = StrategyReplace
		return nil
	}
	between := func() error { _, err := catchUp(); return err }
	if emit != nil {
		r.progress(projections.MonitoringName, PhaseDiff, res.Events, res.Events, start)
		return res, r.withSwapRetries(ctx, projections.MonitoringName, func() error { return final(false) }, between)
	}
	r.progress(projections.MonitoringName, PhaseSwap, res.Events, res.Events, start)
	return res, r.withSwapRetries(ctx, projections.MonitoringName, func() error { return final(true) }, between)
}

// lockSubscriber pauses the monitoring subscriber until tx ends, by locking
// its offset row (which every poll locks too), and returns the cut up to
// which it has applied events.
func lockSubscriber(ctx context.Context, tx *sql.Tx, lockTimeout string) (cut, error) {
	if _, err := tx.ExecContext(ctx, lockTimeout); err != nil {
		return cut{}, fmt.Errorf("postgres: lock timeout: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_events_offsets (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ($1, 0, '0') ON CONFLICT DO NOTHING`, MonitoringConsumerGroup); err != nil {
		return cut{}, fmt.Errorf("postgres: subscriber offset: %w", err)
	}
	var offset, applied cut
	var offTx, appTx string
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(offset_acked, 0), last_processed_transaction_id::text FROM ledger_events_offsets
		WHERE consumer_group = $1 FOR UPDATE`, MonitoringConsumerGroup).Scan(&offset.pos, &offTx); err != nil {
		return cut{}, fmt.Errorf("postgres: lock subscriber offset: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT applied_transaction_id::text, applied_position FROM projection_state
		WHERE name = $1 FOR UPDATE`, projections.MonitoringName).Scan(&appTx, &applied.pos); err != nil {
		return cut{}, fmt.Errorf("postgres: lock monitoring state: %w", err)
	}
	var err error
	if offset.tx, err = strconv.ParseUint(offTx, 10, 64); err != nil {
		return cut{}, fmt.Errorf("postgres: subscriber offset %q: %w", offTx, err)
	}
	if applied.tx, err = strconv.ParseUint(appTx, 10, 64); err != nil {
		return cut{}, fmt.Errorf("postgres: applied cut %q: %w", appTx, err)
	}
	if offset.less(applied) {
		return applied, nil
	}
	return offset, nil
}

// lastEventAtOrBefore returns the cut of the last event at or before c,
// (0, 0) when there is none.
func lastEventAtOrBefore(ctx context.Context, q postgres.Querier, c cut) (cut, error) {
	var txText string
	var last cut
	err := q.QueryRowContext(ctx, `SELECT transaction_id::text AS txid, position FROM ledger_events
		WHERE (transaction_id, position) <= ($1::xid8, $2::bigint) ORDER BY transaction_id DESC, position DESC LIMIT 1`,
		c.txText(), c.pos).Scan(&txText, &last.pos)
	if errors.Is(err, sql.ErrNoRows) {
		return cut{}, nil
	}
	if err != nil {
		return cut{}, fmt.Errorf("postgres: last applied event: %w", err)
	}
	if last.tx, err = strconv.ParseUint(txText, 10, 64); err != nil {
		return cut{}, fmt.Errorf("postgres: transaction id %q: %w", txText, err)
	}
	return last, nil
}

// moveSubscriber sets the subscriber's offset and the projection's applied
// cut to c.
func moveSubscriber(ctx context.Context, tx *sql.Tx, c cut) error {
	if _, err := tx.ExecContext(ctx, `UPDATE ledger_events_offsets SET offset_acked = $2, last_processed_transaction_id = $3::xid8
		WHERE consumer_group = $1`, MonitoringConsumerGroup, c.pos, c.txText()); err != nil {
		return fmt.Errorf("postgres: move subscriber offset: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE projection_state SET applied_transaction_id = $2::xid8, applied_position = $3,
			applied_recorded_at = COALESCE((SELECT recorded_at FROM ledger_events WHERE position = $3), applied_recorded_at),
			applied_at = now()
		WHERE name = $1`, projections.MonitoringName, c.txText(), c.pos); err != nil {
		return fmt.Errorf("postgres: move applied cut: %w", err)
	}
	return nil
}

// writeMonitoring replaces the rows of every monitoring table by m's, and
// returns the number of rows written. In one transaction, readers see the
// old rows or the new ones, never a mix.
func writeMonitoring(ctx context.Context, tx *sql.Tx, m *projections.Monitoring) (int64, error) {
	var n int64
	for _, t := range projections.MonitoringTables {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+pq.QuoteIdentifier(t.Name)); err != nil {
			return n, fmt.Errorf("postgres: clear %s: %w", t.Name, err)
		}
		rows := m.Rows(t.Name)
		if len(rows) == 0 {
			continue
		}
		stmt, err := tx.PrepareContext(ctx, pq.CopyIn(t.Name, counterColumns(t)...))
		if err != nil {
			return n, fmt.Errorf("postgres: copy into %s: %w", t.Name, err)
		}
		for _, row := range rows {
			args := make([]any, 0, len(row.Key)+len(row.Values))
			for _, k := range row.Key {
				args = append(args, k)
			}
			for _, v := range row.Values {
				args = append(args, v)
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				stmt.Close()
				return n, fmt.Errorf("postgres: copy into %s: %w", t.Name, err)
			}
		}
		if _, err := stmt.ExecContext(ctx); err != nil {
			stmt.Close()
			return n, fmt.Errorf("postgres: copy into %s: %w", t.Name, err)
		}
		stmt.Close()
		n += int64(len(rows))
	}
	return n, nil
}

func counterColumns(t projections.CounterTable) []string {
	cols := make([]string, 0, len(t.Keys)+len(t.Values))
	for _, k := range t.Keys {
		cols = append(cols, k.Name)
	}
	return append(cols, t.Values...)
}

// ReadMonitoring reads the monitoring tables into a Monitoring, for
// comparisons with a fold of the log.
func ReadMonitoring(ctx context.Context, q postgres.Querier) (*projections.Monitoring, error) {
	m := &projections.Monitoring{}
	for _, t := range projections.MonitoringTables {
		rows, err := readCounterRows(ctx, q, t)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			m.Add([]projections.Counter{{Table: t.Name, Key: r.Key, Add: r.Values}})
		}
	}
	return m, nil
}

func readCounterRows(ctx context.Context, q postgres.Querier, t projections.CounterTable) ([]projections.CounterRow, error) {
	var sel []string
	for _, k := range t.Keys {
		sel = append(sel, pq.QuoteIdentifier(k.Name)+`::text`)
	}
	for _, v := range t.Values {
		sel = append(sel, pq.QuoteIdentifier(v))
	}
	rows, err := q.QueryContext(ctx, `SELECT `+strings.Join(sel, ", ")+` FROM `+pq.QuoteIdentifier(t.Name))
	if err != nil {
		return nil, fmt.Errorf("postgres: read %s: %w", t.Name, err)
	}
	defer rows.Close()
	var out []projections.CounterRow
	for rows.Next() {
		r := projections.CounterRow{Key: make([]string, len(t.Keys)), Values: make([]int64, len(t.Values))}
		dest := make([]any, 0, len(sel))
		for i := range r.Key {
			dest = append(dest, &r.Key[i])
		}
		for i := range r.Values {
			dest = append(dest, &r.Values[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("postgres: read %s: %w", t.Name, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// diffMonitoring compares m with the live monitoring tables (small: one row
// per key) in tx's snapshot, table by table, ordered by key.
func diffMonitoring(ctx context.Context, tx *sql.Tx, m *projections.Monitoring, emit func(DiffEntry) error) (DiffSummary, error) {
	var sum DiffSummary
	for _, t := range projections.MonitoringTables {
		liveRows, err := readCounterRows(ctx, tx, t)
		if err != nil {
			return sum, err
		}
		live := map[string]projections.CounterRow{}
		for _, r := range liveRows {
			live[strings.Join(r.Key, "\x00")] = r
		}
		rebuilt := map[string]projections.CounterRow{}
		for _, r := range m.Rows(t.Name) {
			rebuilt[strings.Join(r.Key, "\x00")] = r
		}
		keys := slices.Sorted(maps.Keys(live))
		for k := range rebuilt {
			if _, ok := live[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			l, inLive := live[k]
			n, inRebuilt := rebuilt[k]
			if inLive && inRebuilt && slices.Equal(l.Values, n.Values) {
				continue
			}
			sum.Rows++
			key := l.Key
			if !inLive {
				sum.Added++
				key = n.Key
			}
			if !inRebuilt {
				sum.Removed++
			}
			for i, col := range t.Values {
				e := DiffEntry{Table: t.Name, Key: key, Column: col}
				if inLive {
					e.Old = ptr(strconv.FormatInt(l.Values[i], 10))
				}
				if inRebuilt {
					e.New = ptr(strconv.FormatInt(n.Values[i], 10))
				}
				if inLive && inRebuilt && *e.Old == *e.New {
					continue
				}
				sum.Values++
				if err := emit(e); err != nil {
					return sum, err
				}
			}
		}
	}
	return sum, nil
}

// recordRebuildPoison records the events a rebuild could not apply as dead
// letters of this version of the monitoring projection.
func recordRebuildPoison(ctx context.Context, tx *sql.Tx, poison []poisonEvent) error {
	for _, p := range poison {
		if _, err := tx.ExecContext(ctx, `INSERT INTO projection_dead_letters
			(projection, projection_version, position, transaction_id, event_id, stream_id, event_type, payload, metadata, error)
			SELECT $1, $2, position, transaction_id, event_id::text, stream_id, event_type, convert_to(payload::text, 'UTF8'), metadata, $4
			FROM ledger_events WHERE position = $3
			ON CONFLICT (projection, projection_version, position) DO NOTHING`,
			projections.MonitoringName, projections.MonitoringVersion, p.position, p.err); err != nil {
			return fmt.Errorf("postgres: dead letter %d: %w", p.position, err)
		}
	}
	return nil
}
