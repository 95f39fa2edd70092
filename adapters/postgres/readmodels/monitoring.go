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

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/lib/pq"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/projections"
)

// MonitoringConsumerGroup is the watermill-sql consumer group of the
// monitoring projection's subscriber.
const MonitoringConsumerGroup = "projection.monitoring"

// deadLetterTopic is the topic the poison queue "publishes" to: the
// dead-letter table.
const deadLetterTopic = "projection_dead_letters"

// errPoison marks an event the monitoring projection can never apply (it
// does not decode, or the projection does not know it): such an event is
// dead-lettered and the subscriber goes on. Any other error (the database)
// is retried.
var errPoison = errors.New("poison event")

// MonitoringConfig configures a MonitoringConsumer.
type MonitoringConfig struct {
	DB     *sql.DB
	Logger *slog.Logger
	// PollInterval and BatchSize are the subscriber's (see eventstore.SubscriberConfig).
	PollInterval time.Duration
	BatchSize    int
}

// MonitoringConsumer keeps the monitoring projection: a watermill router
// with one handler on a watermill-sql subscriber of its own consumer group.
// Each event is applied in the subscriber's poll transaction, inside a
// SAVEPOINT, in one statement that also moves the projection's applied cut
// (so a redelivered event is recognised and skipped); an event that cannot
// be applied goes to projection_dead_letters (watermill's PoisonQueue with a
// publisher writing that table in the same transaction) and never blocks the
// events behind it.
type MonitoringConsumer struct {
	router *message.Router
	logger *slog.Logger
}

// NewMonitoringConsumer builds the consumer; Run starts it.
func NewMonitoringConsumer(cfg MonitoringConfig) (*MonitoringConsumer, error) {
	if cfg.DB == nil {
		return nil, errors.New("postgres: monitoring consumer needs a database")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	wlog := watermill.NewSlogLogger(cfg.Logger)
	sub, err := eventstore.NewSubscriber(cfg.DB, eventstore.SubscriberConfig{
		ConsumerGroup: MonitoringConsumerGroup,
		PollInterval:  cfg.PollInterval,
		BatchSize:     cfg.BatchSize,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("postgres: monitoring router: %w", err)
	}
	poison, err := middleware.PoisonQueueWithFilter(deadLetterPublisher{logger: cfg.Logger}, deadLetterTopic,
		func(err error) bool { return errors.Is(err, errPoison) })
	if err != nil {
		return nil, fmt.Errorf("postgres: poison queue: %w", err)
	}
	h := router.AddConsumerHandler(projections.MonitoringName, eventstore.EventsTopic, sub, (&pollStatements{}).applyMonitoringMessage)
	// Outermost first: a poison event's partial writes are rolled back to
	// the savepoint before the dead letter is written.
	h.AddMiddleware(poison, eventstore.Savepoint)
	return &MonitoringConsumer{router: router, logger: cfg.Logger}, nil
}

// Run consumes until ctx ends or Close is called.
func (c *MonitoringConsumer) Run(ctx context.Context) error {
	return c.router.Run(ctx)
}

// Running is closed once the consumer runs.
func (c *MonitoringConsumer) Running() chan struct{} { return c.router.Running() }

// Close stops the consumer, waiting for the message in hand.
func (c *MonitoringConsumer) Close() error { return c.router.Close() }

// pollStatements prepares the monitoring statements on the subscriber's
// poll transaction, once per poll and statement text (a handful of texts,
// one per kind of event): a poll of a hundred events then parses each text
// once and plans it once (a generic plan), instead of parsing and
// planning every event's statement (the busiest backend's main work under
// webhook load).
type pollStatements struct {
	mu sync.Mutex
	// tx is the poll transaction stmts are prepared on; holding it keeps
	// its address from being reused by a later one.
	tx    wsql.Tx
	stmts map[string]*sql.Stmt
}

// preparer is what a poll transaction of watermill-sql's standard adapter
// (wsql.StdSQLTx, a *sql.Tx) offers.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// exec runs query on tx, prepared on it when tx can prepare.
func (p *pollStatements) exec(ctx context.Context, tx wsql.Tx, query string, args ...any) error {
	prep, ok := tx.(preparer)
	if !ok {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tx != tx {
		// A new poll: the statements of the last one were closed with its
		// transaction. PostgreSQL plans a statement prepared anew for
		// each of its first five executions before it tries a generic
		// plan, which for these (primary-key updates and inserts) is the
		// same plan: planning was a quarter of the statements' server
		// time under webhook load. The setting ends with the poll.
		if _, err := tx.ExecContext(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
			return err
		}
		p.tx, p.stmts = tx, map[string]*sql.Stmt{}
	}
	st, ok := p.stmts[query]
	if !ok {
		var err error
		if st, err = prep.PrepareContext(ctx, query); err != nil {
			return err
		}
		p.stmts[query] = st
	}
	_, err := st.ExecContext(ctx, args...)
	return err
}

// applyMonitoringMessage applies one event of the log to the monitoring
// tables, in the subscriber's transaction.
func (p *pollStatements) applyMonitoringMessage(msg *message.Message) error {
	tx, ok := eventstore.TxFromMessage(msg)
	if !ok {
		return errors.New("postgres: monitoring: message without its poll transaction")
	}
	e, err := eventstore.EventFromMessage(msg)
	if err != nil {
		return fmt.Errorf("%w: %v", errPoison, err)
	}
	if e.TransactionID == 0 {
		return fmt.Errorf("%w: event %d without transaction id", errPoison, e.Position)
	}
	ev, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		return fmt.Errorf("%w: event %d: %v", errPoison, e.Position, err)
	}
	deltas, err := projections.MonitoringDeltas(projections.Envelope{Position: e.Position, StreamID: e.StreamID, RecordedAt: e.RecordedAt, Event: ev})
	if err != nil {
		return fmt.Errorf("%w: %v", errPoison, err)
	}
	query, args, err := monitoringStatement(deltas, cut{e.TransactionID, e.Position}, e.RecordedAt)
	if err != nil {
		return fmt.Errorf("%w: %v", errPoison, err)
	}
	if err := p.exec(msg.Context(), tx, query, args...); err != nil {
		return fmt.Errorf("postgres: monitoring: apply event %d: %w", e.Position, err)
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

// deltasStatement adds deltas to the counter tables for each row of the
// CTE applied, which head defines with the parameters args.
//
// Each counter row is updated in place when it exists and inserted (ON
// CONFLICT ... DO UPDATE, for a row created meanwhile) only when it does
// not. The subscriber applies each event of a poll in a savepoint of the
// poll's transaction, and an INSERT ... ON CONFLICT DO UPDATE of a row that
// an earlier savepoint of the same transaction updated leaves a MultiXact
// on the row's old version; every later access to the row then looked the
// MultiXact's members up along the row's chain of versions, which made the
// subscriber the busiest backend of the server (16 % of PostgreSQL's CPU
// under webhook load, most of it GetMultiXactIdMembers). A plain UPDATE
// leaves none.
func deltasStatement(head string, args []any, deltas []projections.Counter) (string, []any, error) {
	var b strings.Builder
	b.WriteString(head)
	for i, d := range deltas {
		t, ok := projections.CounterTableByName(d.Table)
		if !ok || len(d.Key) != len(t.Keys) || len(d.Add) != len(t.Values) {
			return "", nil, fmt.Errorf("monitoring: delta for unknown table or shape %s", d.Table)
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

// deadLetterPublisher is the poison queue's publisher: it records each
// poisoned message in projection_dead_letters and moves the projection's
// applied cut past it, in the subscriber's transaction (inside a savepoint of
// its own), so the dead letter commits with the offset.
type deadLetterPublisher struct {
	logger *slog.Logger
}

func (p deadLetterPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		tx, ok := eventstore.TxFromMessage(msg)
		if !ok {
			return errors.New("postgres: dead letter: message without its poll transaction")
		}
		ctx := msg.Context()
		md := msg.Metadata
		pos, err := strconv.ParseInt(md.Get(eventstore.MetaPosition), 10, 64)
		if err != nil {
			return fmt.Errorf("postgres: dead letter %s: position: %w", msg.UUID, err)
		}
		txid := md.Get(eventstore.MetaTransactionID)
		if txid == "" {
			txid = "0"
		}
		var stream sql.NullInt64
		if v, err := strconv.ParseInt(md.Get(eventstore.MetaStreamID), 10, 64); err == nil {
			stream = sql.NullInt64{Int64: v, Valid: true}
		}
		metadata, err := json.Marshal(md)
		if err != nil {
			return fmt.Errorf("postgres: dead letter %d: metadata: %w", pos, err)
		}
		reason := md.Get(middleware.ReasonForPoisonedKey)
		p.logger.ErrorContext(ctx, "Event dead-lettered by the monitoring projection", "position", pos, "event_type", md.Get(eventstore.MetaEventType), "error", reason)
		if _, err := tx.ExecContext(ctx, `SAVEPOINT ledger_dead_letter`); err != nil {
			return fmt.Errorf("postgres: dead letter %d: %w", pos, err)
		}
		_, err = tx.ExecContext(ctx, `WITH applied AS (
				UPDATE projection_state SET applied_transaction_id = $5::xid8, applied_position = $3, applied_at = now(),
					last_error = $9, last_error_at = now()
				WHERE name = $1 AND (applied_transaction_id, applied_position) < ($5::xid8, $3)
				RETURNING 1)
			INSERT INTO projection_dead_letters
				(projection, projection_version, position, transaction_id, event_id, stream_id, event_type, payload, metadata, error)
			VALUES ($1, $2, $3, $4::xid8, $6, $7, $8, $10, $11, $9)
			ON CONFLICT (projection, projection_version, position) DO NOTHING`,
			projections.MonitoringName, projections.MonitoringVersion, pos, nullIfZero(txid), txid,
			msg.UUID, stream, md.Get(eventstore.MetaEventType), reason, []byte(msg.Payload), metadata)
		if err != nil {
			_, _ = tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT ledger_dead_letter`)
			return fmt.Errorf("postgres: dead letter %d: %w", pos, err)
		}
		if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT ledger_dead_letter`); err != nil {
			return fmt.Errorf("postgres: dead letter %d: %w", pos, err)
		}
	}
	return nil
}

func (deadLetterPublisher) Close() error { return nil }

func nullIfZero(txid string) any {
	if txid == "0" {
		return nil
	}
	return txid
}
