package readmodels

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// MonitoringConsumerGroup is the consumer group (a row of the
// watermill-sql offsets table) of the monitoring projection's consumer.
const MonitoringConsumerGroup = "projection.monitoring"

// errPoison marks an event the monitoring projection can never apply (it
// does not decode, or the projection does not know it): such an event is
// dead-lettered and the subscriber goes on. Any other error (the database)
// is retried.
var errPoison = errors.New("poison event")

// MonitoringConfig configures a MonitoringConsumer.
type MonitoringConfig struct {
	DB     *sql.DB
	Logger *slog.Logger
	// PollInterval is the pause after a poll that found less than a batch
	// (default 100 ms); BatchSize the events read per poll (default 100).
	PollInterval time.Duration
	BatchSize    int
}

// MonitoringConsumer keeps the monitoring projection: consumer group
// MonitoringConsumerGroup of the log, read a poll at a time in the
// subscribers' order (eventstore.ReadGroupLocked: watermill-sql's queries,
// the offset row locked for the poll, so that a rebuild that locks it
// pauses the consumer). Each poll is one transaction: the events after
// the projection's applied cut are decoded, their deltas summed per
// counter row, and one statement adds the sums and moves the applied cut
// to the poll's last event; an event that cannot be applied goes to
// projection_dead_letters in the same transaction and never blocks the
// events behind it; the group's offset moves with them. A database error
// rolls the poll back, and it is read again after PollInterval.
//
// One statement per poll, not per event: the counter rows of a poll are
// few (days, reasons, currencies), and under webhook load the per-event
// statements, each in a savepoint of the poll's transaction, were the
// biggest of PostgreSQL's work after the ingest itself.
type MonitoringConsumer struct {
	cfg     MonitoringConfig
	running chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// NewMonitoringConsumer builds the consumer; Run starts it.
func NewMonitoringConsumer(cfg MonitoringConfig) (*MonitoringConsumer, error) {
	if cfg.DB == nil {
		return nil, errors.New("postgres: monitoring consumer needs a database")
	}
	if cfg.PollInterval < 0 || cfg.BatchSize < 0 {
		return nil, errors.New("postgres: monitoring consumer: poll interval and batch size must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 100
	}
	return &MonitoringConsumer{cfg: cfg, running: make(chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Run consumes until ctx ends or Close is called.
func (c *MonitoringConsumer) Run(ctx context.Context) error {
	defer close(c.stopped)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		if err := eventstore.JoinGroup(ctx, c.cfg.DB, MonitoringConsumerGroup); err == nil {
			break
		} else if ctx.Err() != nil {
			return nil
		} else {
			c.cfg.Logger.WarnContext(ctx, "Monitoring projection cannot join its consumer group, trying again", "error", err)
		}
		if !c.pause(ctx) {
			return nil
		}
	}
	close(c.running)
	for {
		n, err := c.poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.cfg.Logger.WarnContext(ctx, "Monitoring projection poll failed, trying again", "error", err)
		}
		if (err != nil || n < c.cfg.BatchSize) && !c.pause(ctx) {
			return nil
		}
	}
}

// pause waits PollInterval; false when the consumer stops meanwhile.
func (c *MonitoringConsumer) pause(ctx context.Context) bool {
	t := time.NewTimer(c.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Running is closed once the consumer runs.
func (c *MonitoringConsumer) Running() chan struct{} { return c.running }

// Close stops the consumer; a poll in hand is rolled back (its events are
// read again by the next consumer). It waits for Run to return when Run
// was started.
func (c *MonitoringConsumer) Close() error {
	c.once.Do(func() { close(c.stop) })
	select {
	case <-c.stopped:
	case <-c.running:
		<-c.stopped
	default:
		// Run never started, or has not joined yet: it sees stop.
	}
	return nil
}

// monitoringSums sums the deltas of a poll's events per counter row, in
// the order the rows first appear.
type monitoringSums struct {
	index map[string]int
	rows  []projections.Counter
}

func (m *monitoringSums) add(deltas []projections.Counter) {
	if m.index == nil {
		m.index = map[string]int{}
	}
	for _, d := range deltas {
		k := d.Table + "\x00" + strings.Join(d.Key, "\x00")
		i, ok := m.index[k]
		if !ok {
			m.index[k] = len(m.rows)
			m.rows = append(m.rows, projections.Counter{Table: d.Table, Key: d.Key, Add: append([]int64(nil), d.Add...)})
			continue
		}
		for j, v := range d.Add {
			m.rows[i].Add[j] += v
		}
	}
}

// deadLetter is an event of a poll that the projection cannot apply.
type deadLetter struct {
	e   eventstore.StoredEvent
	err error
}

// poll applies the next batch of events, in one transaction, and returns
// how many it read.
func (c *MonitoringConsumer) poll(ctx context.Context) (int, error) {
	tx, err := c.cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("postgres: monitoring: begin: %w", err)
	}
	defer tx.Rollback()
	events, err := eventstore.ReadGroupLocked(ctx, tx, MonitoringConsumerGroup, c.cfg.BatchSize)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	// The applied cut: a rebuild or a redelivery may have moved it past
	// some of these events already (the offset row lock keeps a rebuild
	// from moving it during the poll).
	var appliedTx string
	var applied cut
	if err := tx.QueryRowContext(ctx, `SELECT applied_transaction_id::text, applied_position FROM projection_state WHERE name = $1`,
		projections.MonitoringName).Scan(&appliedTx, &applied.pos); err != nil {
		return 0, fmt.Errorf("postgres: monitoring: applied cut: %w", err)
	}
	if applied.tx, err = strconv.ParseUint(appliedTx, 10, 64); err != nil {
		return 0, fmt.Errorf("postgres: monitoring: applied cut %q: %w", appliedTx, err)
	}
	var sums monitoringSums
	var dead []deadLetter
	for _, e := range events {
		if !applied.less(cut{e.TransactionID, e.Position}) {
			continue
		}
		deltas, err := monitoringDeltas(e)
		if err != nil {
			dead = append(dead, deadLetter{e, err})
			continue
		}
		sums.add(deltas)
	}
	last := events[len(events)-1]
	query, args, err := monitoringStatement(sums.rows, cut{last.TransactionID, last.Position}, last.RecordedAt)
	if err != nil {
		return 0, fmt.Errorf("postgres: monitoring: %w", err)
	}
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		return 0, fmt.Errorf("postgres: monitoring: apply events %d to %d: %w", events[0].Position, last.Position, err)
	}
	for _, d := range dead {
		if err := c.writeDeadLetter(ctx, tx, d); err != nil {
			return 0, err
		}
	}
	if err := eventstore.AckGroup(ctx, tx, MonitoringConsumerGroup, last); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("postgres: monitoring: commit: %w", err)
	}
	return len(events), nil
}

// monitoringDeltas is what e adds to the monitoring tables, or why it
// cannot be applied: it does not decode, the projection does not know it,
// or its deltas do not fit the tables.
func monitoringDeltas(e eventstore.StoredEvent) ([]projections.Counter, error) {
	if e.TransactionID == 0 {
		return nil, fmt.Errorf("%w: event %d without transaction id", errPoison, e.Position)
	}
	ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: event %d: %v", errPoison, e.Position, err)
	}
	deltas, err := projections.MonitoringDeltas(projections.Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: ev})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errPoison, err)
	}
	for _, d := range deltas {
		if _, err := counterTable(d); err != nil {
			return nil, fmt.Errorf("%w: %v", errPoison, err)
		}
	}
	return deltas, nil
}

// writeDeadLetter records d in projection_dead_letters and its error as the
// projection's last, in the poll's transaction.
func (c *MonitoringConsumer) writeDeadLetter(ctx context.Context, tx *sql.Tx, d deadLetter) error {
	e := d.e
	c.cfg.Logger.ErrorContext(ctx, "Event dead-lettered by the monitoring projection", "position", e.Position, "event_type", e.Type, "error", d.err.Error())
	metadata, err := json.Marshal(e.Metadata)
	if err != nil {
		return fmt.Errorf("postgres: dead letter %d: metadata: %w", e.Position, err)
	}
	txid := strconv.FormatUint(e.TransactionID, 10)
	_, err = tx.ExecContext(ctx, `WITH state AS (
			UPDATE projection_state SET last_error = $8, last_error_at = now() WHERE name = $1 RETURNING 1)
		INSERT INTO projection_dead_letters
			(projection, projection_version, position, transaction_id, event_id, stream_id, event_type, payload, metadata, error)
		VALUES ($1, $2, $3, $4::xid8, $5, $6, $7, $9, $10, $8)
		ON CONFLICT (projection, projection_version, position) DO NOTHING`,
		projections.MonitoringName, projections.MonitoringVersion, e.Position, nullIfZero(txid),
		e.EventID, e.StreamID, e.Type, d.err.Error(), []byte(e.Payload), metadata)
	if err != nil {
		return fmt.Errorf("postgres: dead letter %d: %w", e.Position, err)
	}
	return nil
}

// monitoringStatement builds the one statement that applies an event: it
// moves the projection's applied cut to c if c is beyond it, and only then
// adds the deltas (each data-modifying CTE reads from the first). One
// statement is atomic even if the subscriber commits its transaction while
// the handler runs (on shutdown).
func monitoringStatement(deltas []projections.Counter, c cut, recordedAt time.Time) (string, []any, error) {
	args := []any{projections.MonitoringName, c.txText(), c.pos, recordedAt}
	return deltasStatement(`WITH applied AS (
		UPDATE projection_state SET applied_transaction_id = $2::xid8, applied_position = $3, applied_recorded_at = $4, applied_at = now()
		WHERE name = $1 AND (applied_transaction_id, applied_position) < ($2::xid8, $3)
		RETURNING 1)`, args, deltas)
}

// counterTable is the table d adds to, or an error when d names no
// counter table or does not fit its keys and values.
func counterTable(d projections.Counter) (projections.CounterTable, error) {
	t, ok := projections.CounterTableByName(d.Table)
	if !ok || len(d.Key) != len(t.Keys) || len(d.Add) != len(t.Values) {
		return t, fmt.Errorf("monitoring: delta for unknown table or shape %s", d.Table)
	}
	return t, nil
}

// deltasStatement adds deltas to the counter tables for each row of the
// CTE applied, which head defines with the parameters args.
//
// Each counter row is updated in place when it exists and inserted (ON
// CONFLICT ... DO UPDATE, for a row created meanwhile) only when it does
// not. When events were applied one by one, each in a savepoint of the
// poll's transaction, an INSERT ... ON CONFLICT DO UPDATE of a row that an
// earlier savepoint had updated left a MultiXact on the row's old version,
// and every later access looked its members up (16 % of PostgreSQL's CPU
// under webhook load). A plain UPDATE leaves none; the consumer now writes
// a poll in one statement, and the shape stays the cheap one.
func deltasStatement(head string, args []any, deltas []projections.Counter) (string, []any, error) {
	var b strings.Builder
	b.WriteString(head)
	for i, d := range deltas {
		t, err := counterTable(d)
		if err != nil {
			return "", nil, err
		}
		table := pq.QuoteIdentifier(t.Name)
		var sel, sets, match, adds []string
		for j, k := range t.Keys {
			args = append(args, d.Key[j])
			p := "$" + strconv.Itoa(len(args)) + "::" + k.Type
			sel = append(sel, p)
			match = append(match, pq.QuoteIdentifier(k.Name)+" = "+p)
		}
		for j, v := range t.Values {
			args = append(args, d.Add[j])
			p := "$" + strconv.Itoa(len(args)) + "::bigint"
			sel = append(sel, p)
			q := pq.QuoteIdentifier(v)
			sets = append(sets, q+" = "+table+"."+q+" + excluded."+q)
			adds = append(adds, q+" = "+table+"."+q+" + "+p)
		}
		var keys []string
		for _, k := range t.Keys {
			keys = append(keys, pq.QuoteIdentifier(k.Name))
		}
		fmt.Fprintf(&b, `, u%d AS (UPDATE %s SET %s WHERE %s AND EXISTS (SELECT 1 FROM applied) RETURNING 1)`,
			i, table, strings.Join(adds, ", "), strings.Join(match, " AND "))
		fmt.Fprintf(&b, `, d%d AS (INSERT INTO %s (%s) SELECT %s FROM applied WHERE NOT EXISTS (SELECT 1 FROM u%d) ON CONFLICT (%s) DO UPDATE SET %s)`,
			i, table, strings.Join(quoteAll(counterColumns(t)), ", "), strings.Join(sel, ", "), i,
			strings.Join(keys, ", "), strings.Join(sets, ", "))
	}
	b.WriteString(` SELECT count(*) FROM applied`)
	return b.String(), args, nil
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = pq.QuoteIdentifier(n)
	}
	return out
}

func nullIfZero(txid string) any {
	if txid == "0" {
		return nil
	}
	return txid
}
