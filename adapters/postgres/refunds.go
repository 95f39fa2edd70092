package postgres

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

	"github.com/booking-ledger/ledger/domain"
)

// Refunder gives a payment back through the payment provider. The Stripe
// adapter's *stripe.Client is one.
type Refunder interface {
	// RefundPayment refunds req of booking at most once per
	// idempotencyKey, however often it is called, and returns the refund
	// as RefundIssued. An error that is a RefundRefusal with Permanent()
	// true means the provider refused for good; any other error is
	// transient and the call is repeated later with the same key.
	RefundPayment(ctx context.Context, booking domain.BookingID, req domain.RefundRequested, idempotencyKey string) (domain.RefundIssued, error)
}

// RefundRefusal is what a Refunder's errors implement to describe the
// provider's answer (the Stripe adapter's *stripe.APIError does).
type RefundRefusal interface {
	error
	// Permanent reports whether repeating the request cannot succeed.
	Permanent() bool
	// FailureCode is the provider's error code, e.g.
	// "charge_already_refunded".
	FailureCode() string
	// FailureMessage is the provider's message.
	FailureMessage() string
	// HTTPStatusCode is the answer's status, 0 without an answer.
	HTTPStatusCode() int
	// ProviderRequestID identifies the answer for the provider's support.
	ProviderRequestID() string
}

// RefundConsumerGroup is the refund worker's consumer group.
const RefundConsumerGroup = "refunds"

// RefundIdempotencyKey is the key a refund of paymentIntentID for booking is
// requested with: derived from what is refunded, never from the attempt,
// so that a crash between the provider's answer and the append repeats the
// same request and gets the same refund.
func RefundIdempotencyKey(booking domain.BookingID, paymentIntentID string) string {
	return fmt.Sprintf("refund-%d-%s", booking, paymentIntentID)
}

// RefundWorkerConfig configures a RefundWorker. DB, Ledger and Refunder are
// required; zero durations take the defaults of setDefaults.
type RefundWorkerConfig struct {
	DB       *sql.DB
	Ledger   *Ledger
	Refunder Refunder
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
		return errors.New("postgres: refund worker needs a database")
	case c.Ledger == nil:
		return errors.New("postgres: refund worker needs the ledger")
	case c.Refunder == nil:
		return errors.New("postgres: refund worker needs a refunder")
	case c.MaxRetries < 0 || c.InitialInterval < 0 || c.MaxInterval < 0 || c.AckDeadline < 0:
		return errors.New("postgres: refund worker retries and intervals must be positive")
	}
	return nil
}

// RefundWorker makes the refunds the ledger decided on. It subscribes to
// the event log in its own consumer group and, for every RefundRequested
// still pending on its booking, calls the Refunder with
// RefundIdempotencyKey, then appends in the subscriber's transaction, with
// the consumer group's offset:
//
//   - RefundIssued (payment_status refunded) when the refund was made;
//   - RefundFailed and a refund_failures row when the provider refused for
//     good (see RefundFailures);
//   - nothing, and the delivery is retried with backoff, on a transient
//     failure.
//
// A crash after the provider's answer and before the commit delivers the
// RefundRequested again; the repeated call carries the same key and the
// Refunder finds the refund already made, so a payment is never refunded
// twice. Several processes may run a worker: one consumer group reads one
// batch at a time.
type RefundWorker struct {
	cfg    RefundWorkerConfig
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
	sub, err := NewSubscriber(cfg.DB, SubscriberConfig{
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
		return nil, fmt.Errorf("postgres: refund router: %w", err)
	}
	w := &RefundWorker{cfg: cfg, log: cfg.Logger, sub: sub, router: router}
	h := router.AddConsumerHandler("refunds", EventsTopic, sub, w.handle)
	// Retry outside, Savepoint inside: each attempt's writes are rolled
	// back before the next one runs.
	h.AddMiddleware(middleware.Retry{
		MaxRetries:      cfg.MaxRetries,
		InitialInterval: cfg.InitialInterval,
		MaxInterval:     cfg.MaxInterval,
		Multiplier:      2,
		Logger:          wlog,
	}.Middleware, Savepoint)
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
	e, err := EventFromMessage(msg)
	if err != nil {
		return err
	}
	if e.Type != domain.EventRefundRequested {
		return nil
	}
	decoded, err := domain.Decode(e.Type, e.SchemaVersion, e.Payload)
	if err != nil {
		return fmt.Errorf("postgres: refund worker: %s: %w", e, err)
	}
	req := decoded.(domain.RefundRequested)
	wtx, ok := TxFromMessage(msg)
	if !ok {
		return errors.New("postgres: refund worker: message without the subscriber's transaction")
	}
	std, ok := wtx.(*wsql.StdSQLTx)
	if !ok {
		return fmt.Errorf("postgres: refund worker: unexpected transaction type %T", wtx)
	}
	tx := std.Tx
	ctx := msg.Context()
	log := w.log.With("booking_id", e.StreamID, "payment_intent_id", req.PaymentIntentID, "event_position", e.Position)

	// The subscriber's snapshot includes this event; a later append to the
	// stream by another transaction makes the append below fail on the
	// stream version, and the delivery is retried.
	b, stored, err := loadBooking(ctx, w.cfg.Ledger.store, tx, e.StreamID)
	if err != nil {
		return err
	}
	if !isPending(b, req) {
		log.DebugContext(ctx, "Refund already settled")
		return nil
	}
	key := RefundIdempotencyKey(b.ID(), req.PaymentIntentID)
	issued, err := w.cfg.Refunder.RefundPayment(ctx, b.ID(), req, key)
	causation := "event:" + e.EventID
	if err != nil {
		failed, permanent := refusalOf(err, req)
		if !permanent {
			log.WarnContext(ctx, "Refund failed, will retry", "outcome", "retry", "error", err)
			return err
		}
		decided, derr := domain.DecideRefundFailed(b, failed)
		if derr != nil {
			return errors.Join(err, derr)
		}
		if len(decided) == 0 {
			return nil
		}
		row, err := w.cfg.Ledger.appendAndProject(ctx, tx, b.ID(), stored, decided, w.cfg.Ledger.now(), causation)
		if err != nil {
			return err
		}
		if err := insertRefundFailure(ctx, tx, b.ID(), failed, row.LastEventPosition, row.UpdatedAt); err != nil {
			return err
		}
		log.ErrorContext(ctx, fmt.Sprintf("Refund for booking %d failed permanently", b.ID()),
			"outcome", "refund_failed", "failure_code", failed.FailureCode, "error", failed.FailureMessage)
		return nil
	}
	decided, err := domain.DecideRefundIssued(b, issued)
	if err != nil {
		return fmt.Errorf("postgres: refund %s of booking %d: %w", issued.RefundID, b.ID(), err)
	}
	if len(decided) > 0 {
		if _, err := w.cfg.Ledger.appendAndProject(ctx, tx, b.ID(), stored, decided, w.cfg.Ledger.now(), causation); err != nil {
			return err
		}
	}
	log.InfoContext(ctx, fmt.Sprintf("Refund %s issued for booking %d", issued.RefundID, b.ID()),
		"outcome", "refund_issued", "refund_id", issued.RefundID)
	return nil
}

func isPending(b *domain.Booking, req domain.RefundRequested) bool {
	for _, p := range b.PendingRefunds() {
		if p.PaymentIntentID == req.PaymentIntentID {
			return true
		}
	}
	return false
}

// refusalOf turns a Refunder's error into the RefundFailed to record, and
// says whether it is permanent. A request the Refunder rejects as invalid
// before asking anyone (domain.ErrInvalid) can never succeed either.
func refusalOf(err error, req domain.RefundRequested) (domain.RefundFailed, bool) {
	f := domain.RefundFailed{
		PaymentIntentID: req.PaymentIntentID,
		Amount:          req.Amount,
		Currency:        req.Currency,
		Reason:          req.Reason,
		FailureMessage:  err.Error(),
	}
	var r RefundRefusal
	switch {
	case errors.As(err, &r):
		f.FailureCode = r.FailureCode()
		f.FailureMessage = r.FailureMessage()
		f.HTTPStatus = r.HTTPStatusCode()
		f.StripeRequestID = r.ProviderRequestID()
		return f, r.Permanent()
	case errors.Is(err, domain.ErrInvalid):
		f.FailureCode = "invalid_refund_request"
		return f, true
	}
	return f, false
}

func insertRefundFailure(ctx context.Context, tx *sql.Tx, booking domain.BookingID, f domain.RefundFailed, position int64, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO refund_failures
		(position, booking_id, payment_intent_id, amount, currency, reason, failure_code, failure_message, http_status, stripe_request_id, failed_at)
		VALUES ($1, $2, $3, $4, lower($5), $6, $7, $8, $9, $10, $11)`,
		position, int64(booking), f.PaymentIntentID, f.Amount, f.Currency, string(f.Reason), f.FailureCode,
		f.FailureMessage, f.HTTPStatus, f.StripeRequestID, at.UTC())
	if err != nil {
		return fmt.Errorf("postgres: refund failure of booking %d: %w", booking, err)
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
	FailedAt        time.Time           `json:"failed_at"`
}

// RefundFailures returns every refund refused for good, oldest first: the
// money an operator must give back by hand. `ledger projections status` and
// the monitoring views show them. Errors are internal failures.
func RefundFailures(ctx context.Context, q Querier) ([]RefundFailure, error) {
	rows, err := q.QueryContext(ctx, `SELECT position, booking_id, payment_intent_id, amount, currency, reason,
		failure_code, failure_message, http_status, stripe_request_id, failed_at
		FROM refund_failures ORDER BY position`)
	if err != nil {
		return nil, fmt.Errorf("postgres: refund failures: %w", err)
	}
	defer rows.Close()
	out := []RefundFailure{}
	for rows.Next() {
		var f RefundFailure
		var reason string
		if err := rows.Scan(&f.Position, &f.BookingID, &f.PaymentIntentID, &f.Amount, &f.Currency, &reason,
			&f.FailureCode, &f.FailureMessage, &f.HTTPStatus, &f.StripeRequestID, &f.FailedAt); err != nil {
			return nil, fmt.Errorf("postgres: refund failures: %w", err)
		}
		if f.Reason, err = domain.ParseRefundReason(reason); err != nil {
			return nil, fmt.Errorf("postgres: refund failure at %d: %w", f.Position, err)
		}
		f.FailedAt = f.FailedAt.UTC()
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: refund failures: %w", err)
	}
	return out, nil
}
