package eventstore

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// SubscriberConfig configures a subscriber of the event log.
type SubscriberConfig struct {
	// ConsumerGroup names the reader; each group reads every event once and
	// keeps its own offset. Required.
	ConsumerGroup string
	// PollInterval is the pause after a poll that found nothing (default
	// 100 ms: the monitoring views should lag by well under a second).
	PollInterval time.Duration
	// BatchSize is the number of events read per poll (default 100).
	BatchSize int
	// AckDeadline bounds one message's handling (default 30 s).
	AckDeadline time.Duration
	// Logger receives watermill's log lines; nil discards them.
	Logger *slog.Logger
}

func (c *SubscriberConfig) setDefaults() {
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.AckDeadline == 0 {
		c.AckDeadline = 30 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c SubscriberConfig) Validate() error {
	if c.ConsumerGroup == "" {
		return errors.New("eventstore: subscriber needs a consumer group")
	}
	if c.PollInterval < 0 || c.BatchSize < 0 || c.AckDeadline < 0 {
		return errors.New("eventstore: subscriber intervals and sizes must be positive")
	}
	return nil
}

// NewSubscriber returns a watermill-sql subscriber of EventsTopic. Every
// committed event reaches its consumer group exactly once, in the order of
// the transactions that appended it; handlers find the poll transaction with
// wsql.TxFromContext and should run inside Savepoint.
func NewSubscriber(db *sql.DB, cfg SubscriberConfig) (*wsql.Subscriber, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if cfg.Logger != nil {
		logger = watermill.NewSlogLogger(cfg.Logger)
	}
	deadline := cfg.AckDeadline
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		ConsumerGroup:  cfg.ConsumerGroup,
		PollInterval:   cfg.PollInterval,
		ResendInterval: cfg.PollInterval,
		RetryInterval:  time.Second,
		AckDeadline:    &deadline,
		SchemaAdapter:  eventsSchema{batchSize: cfg.BatchSize},
		OffsetsAdapter: offsetsAdapter(),
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("eventstore: subscriber %s: %w", cfg.ConsumerGroup, err)
	}
	return sub, nil
}

// savepointName is fixed: savepoints nest by name, and a handler never runs
// inside another one's.
const savepointName = "ledger_message"

// Savepoint is a watermill handler middleware that runs each message inside
// a SAVEPOINT of the subscriber's poll transaction. A handler that fails has
// its writes rolled back to the savepoint before the message is nacked;
// watermill-sql alone would keep them (watermill issue #224) and commit
// them with the next acked message. Messages that do not come from a SQL
// subscriber pass straight through.
func Savepoint(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		tx, ok := wsql.TxFromContext(msg.Context())
		if !ok {
			return h(msg)
		}
		ctx := msg.Context()
		if _, err := tx.ExecContext(ctx, "SAVEPOINT "+savepointName); err != nil {
			return nil, fmt.Errorf("eventstore: savepoint: %w", err)
		}
		produced, err := runRecovering(h, msg)
		if err != nil {
			if _, rbErr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+savepointName); rbErr != nil {
				return nil, errors.Join(err, fmt.Errorf("eventstore: rollback to savepoint: %w", rbErr))
			}
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+savepointName); err != nil {
			return nil, fmt.Errorf("eventstore: release savepoint: %w", err)
		}
		return produced, nil
	}
}

// runRecovering turns a handler's panic into an error, so that its writes
// are rolled back to the savepoint like any other failure.
func runRecovering(h message.HandlerFunc, msg *message.Message) (produced []*message.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(msg)
}

// TxFromMessage returns the subscriber's poll transaction a message was read
// in, for handlers that write read models atomically with the offset.
func TxFromMessage(msg *message.Message) (wsql.Tx, bool) {
	return wsql.TxFromContext(msg.Context())
}
