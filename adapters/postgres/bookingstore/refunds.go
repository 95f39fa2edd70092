package bookingstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain"
	"github.com/booking-ledger/ledger/domain/app"
)

// RefundConsumerGroup is the refund worker's consumer group.
const RefundConsumerGroup = "refunds"

// RefundWorkerConfig configures a RefundWorker. DB, Store and Refunder are
// required; zero durations take the defaults of setDefaults.
type RefundWorkerConfig struct {
	DB       *sql.DB
	Store    *Store
	Refunder app.Refunder
	Logger   *slog.Logger
	// ConsumerGroup defaults to RefundConsumerGroup. A new group starts
	// from the beginning of the log, so refunds requested while no worker
	// ran are made when one starts.
	ConsumerGroup string
	// PollInterval is the subscriber's pause after an empty poll (default
	// 100 ms).
	PollInterval time.Duration
	// MaxRetries, InitialInterval and MaxInterval shape watermill's Retry
	// middleware around each delivery (defaults 4, 500 ms, 8 s, doubling).
	// After the last retry the message is nacked and delivered again.
	MaxRetries      int
	InitialInterval time.Duration
	MaxInterval     time.Duration
	// AckDeadline bounds one delivery, retries included (default 60 s). The
	// subscriber's transaction stays open meanwhile, which holds back the
	// delivery of newer events to every consumer group, so keep it short.
	AckDeadline time.Duration
}

func (c *RefundWorkerConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = RefundConsumerGroup
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 4
	}
	if c.InitialInterval == 0 {
		c.InitialInterval = 500 * time.Millisecond
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = 8 * time.Second
	}
	if c.AckDeadline == 0 {
		c.AckDeadline = 60 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c RefundWorkerConfig) Validate() error {
	switch {
	case c.DB == nil:
		return errors.New("bookingstore: refund worker needs a database")
	case c.Store == nil:
		return errors.New("bookingstore: refund worker needs the store")
	case c.Refunder == nil:
		return errors.New("bookingstore: refund worker needs a refunder")
	case c.MaxRetries < 0 || c.InitialInterval < 0 || c.MaxInterval < 0 || c.AckDeadline < 0:
		return errors.New("bookingstore: refund worker retries and intervals must be positive")
	}
	return nil
}

// RefundWorker runs the refund use case (app.Refunds.Settle) for every
// RefundRequested in the log. It subscribes to the event log in its own
// consumer group and settles each request on the subscriber's transaction,
// so what it appends (RefundIssued, or RefundFailed and a refund_failures
// row, see RefundFailures) commits with the consumer group's offset; a
// transient failure rolls back to a savepoint and the delivery is retried
// with backoff.
//
// A crash after the provider's answer and before the commit delivers the
// RefundRequested again; the repeated call carries the same idempotency key
// and the Refunder finds the refund already made, so a payment is never
// refunded twice. Several processes may run a worker: one consumer group
// reads one batch at a time.
type RefundWorker struct {
	cfg    RefundWorkerConfig
	settle app.Refunds
	log    *slog.Logger
	sub    *wsql.Subscriber
	router *message.Router
}

// NewRefundWorker builds the worker; Run starts it.
func NewRefundWorker(cfg RefundWorkerConfig) (*RefundWorker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sub, err := eventstore.NewSubscriber(cfg.DB, eventstore.SubscriberConfig{
		ConsumerGroup: cfg.ConsumerGroup,
		PollInterval:  cfg.PollInterval,
		AckDeadline:   cfg.AckDeadline,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	wlog := watermill.NewSlogLogger(cfg.Logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 15 * time.Second}, wlog)
	if err != nil {
		sub.Close()
		return nil, fmt.Errorf("bookingstore: refund router: %w", err)
	}
	w := &RefundWorker{cfg: cfg, settle: app.Refunds{Refunder: cfg.Refunder, Logger: cfg.Logger}, log: cfg.Logger, sub: sub, router: router}
	h := router.AddConsumerHandler("refunds", eventstore.EventsTopic, sub, w.handle)
	// Retry outside, eventstore.Savepoint inside: each attempt's writes are rolled
	// back before the next one runs.
	h.AddMiddleware(middleware.Retry{
		MaxRetries:      cfg.MaxRetries,
		InitialInterval: cfg.InitialInterval,
		MaxInterval:     cfg.MaxInterval,
		Multiplier:      2,
		Logger:          wlog,
	}.Middleware, eventstore.Savepoint)
	return w, nil
}

// Run processes refunds until ctx ends or Close is called.
func (w *RefundWorker) Run(ctx context.Context) error {
	return w.router.Run(ctx)
}

// Running is closed once the worker's subscription runs.
func (w *RefundWorker) Running() chan struct{} { return w.router.Running() }

// Close stops the worker, waiting for the delivery in progress.
func (w *RefundWorker) Close() error {
	return errors.Join(w.router.Close(), w.sub.Close())
}

func (w *RefundWorker) handle(msg *message.Message) error {
	e, err := eventstore.EventFromMessage(msg)
	if err != nil {
		return err
	}
	if e.Type != domain.EventRefundRequested {
		return nil
	}
	decoded, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		return fmt.Errorf("bookingstore: refund worker: %s: %w", e, err)
	}
	req := decoded.(domain.RefundRequested)
	wtx, ok := eventstore.TxFromMessage(msg)
	if !ok {
		return errors.New("bookingstore: refund worker: message without the subscriber's transaction")
	}
	std, ok := wtx.(*wsql.StdSQLTx)
	if !ok {
		return fmt.Errorf("bookingstore: refund worker: unexpected transaction type %T", wtx)
	}
	// The subscriber's snapshot includes this event; a later append to the
	// stream by another transaction makes the append fail on the stream
	// version, and the delivery is retried.
	return w.settle.Settle(msg.Context(), w.cfg.Store.InTx(std.Tx), e.StreamID, req, "event:"+e.EventID)
}

func insertRefundFailure(ctx context.Context, tx *sql.Tx, booking domain.BookingID, f domain.RefundFailed, position int64, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO refund_failures
		(position, booking_id, payment_intent_id, amount, currency, reason, failure_code, failure_message, http_status, stripe_request_id, failed_at)
		VALUES ($1, $2, $3, $4, lower($5), $6, $7, $8, $9, $10, $11)`,
		position, int64(booking), f.PaymentIntentID, f.Amount, f.Currency, string(f.Reason), f.FailureCode,
		f.FailureMessage, f.HTTPStatus, f.StripeRequestID, at.UTC())
	if err != nil {
		return fmt.Errorf("bookingstore: refund failure of booking %d: %w", booking, err)
	}
	return nil
}

// mirrorLateRefundFailures copies the RefundFailed events with a refund id
// among the events of booking id after stream version after (the ones this
// transaction appended) into refund_failures: refunds that failed after
// Stripe accepted them, reported by a webhook. Refusals of the ledger's own
// requests are mirrored by the refund worker (RecordRefundFailure).
func mirrorLateRefundFailures(ctx context.Context, tx *sql.Tx, id domain.BookingID, after int) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO refund_failures
		(position, booking_id, payment_intent_id, amount, currency, reason, failure_code, failure_message, http_status,
		 stripe_request_id, refund_id, failed_at)
		SELECT position, stream_id, payload->>'payment_intent_id', (payload->>'amount')::bigint, payload->>'currency',
		       payload->>'reason', payload->>'failure_code', payload->>'failure_message', (payload->>'http_status')::int,
		       payload->>'stripe_request_id', payload->>'refund_id', recorded_at
		FROM ledger_events
		WHERE stream_id = $1 AND stream_version > $2 AND event_type = 'RefundFailed' AND payload ? 'refund_id'`, int64(id), after)
	if err != nil {
		return fmt.Errorf("bookingstore: refund failures of booking %d: %w", id, err)
	}
	return nil
}

// RefundFailure is one refund the payment provider refused for good: a row
// of refund_failures, mirroring the RefundFailed event at Position.
type RefundFailure struct {
	Position        int64               `json:"position"`
	BookingID       int64               `json:"booking_id"`
	PaymentIntentID string              `json:"payment_intent_id"`
	Amount          int64               `json:"amount"`
	Currency        string              `json:"currency"`
	Reason          domain.RefundReason `json:"reason"`
	FailureCode     string              `json:"failure_code"`
	FailureMessage  string              `json:"failure_message"`
	HTTPStatus      int                 `json:"http_status"`
	StripeRequestID string              `json:"stripe_request_id"`
	// RefundID is set for a refund that failed after Stripe accepted it
	// (reported by refund.failed / refund.updated), "" for a refusal.
	RefundID string    `json:"refund_id,omitempty"`
	FailedAt time.Time `json:"failed_at"`
}

// RefundFailures returns every refund refused for good, oldest first: the
// money an operator must give back by hand. `ledger projections status` and
// the monitoring views show them. Errors are internal failures.
func RefundFailures(ctx context.Context, q postgres.Querier) ([]RefundFailure, error) {
	rows, err := q.QueryContext(ctx, `SELECT position, booking_id, payment_intent_id, amount, currency, reason,
		failure_code, failure_message, http_status, stripe_request_id, COALESCE(refund_id, ''), failed_at
		FROM refund_failures ORDER BY position`)
	if err != nil {
		return nil, fmt.Errorf("bookingstore: refund failures: %w", err)
	}
	defer rows.Close()
	out := []RefundFailure{}
	for rows.Next() {
		var f RefundFailure
		var reason string
		if err := rows.Scan(&f.Position, &f.BookingID, &f.PaymentIntentID, &f.Amount, &f.Currency, &reason,
			&f.FailureCode, &f.FailureMessage, &f.HTTPStatus, &f.StripeRequestID, &f.RefundID, &f.FailedAt); err != nil {
			return nil, fmt.Errorf("bookingstore: refund failures: %w", err)
		}
		if f.Reason, err = domain.ParseRefundReason(reason); err != nil {
			return nil, fmt.Errorf("bookingstore: refund failure at %d: %w", f.Position, err)
		}
		f.FailedAt = f.FailedAt.UTC()
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bookingstore: refund failures: %w", err)
	}
	return out, nil
}
