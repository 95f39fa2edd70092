// Package forwarding runs the forwarder of the log: a watermill-sql
// subscriber of its own consumer group ("forward", an offset in
// ledger_events_offsets like every subscriber's) that hands each committed
// event, in the subscribers' (transaction_id, position) order, to a Sink
// (cmd/ledger wires the NATS JetStream publisher of adapters/nats) and
// acknowledges it only once the sink has it, so the offset moves only
// after the broker's acknowledgement.
//
// The sink is called inside the subscriber's poll transaction, one event at
// a time, so the events of a booking reach the broker in their stream
// order: a publish starts only once the one before it was acknowledged.
// When the sink fails, the forwarder does not retry inside that
// transaction: it closes the subscriber, which commits the offset of the
// events acknowledged so far and ends the transaction (whose row lock on the
// offset, like every poll's, holds back the other subscribers while it
// lasts), waits with exponential backoff, and starts again from the offset.
package forwarding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// ConsumerGroup is the forwarder's consumer group in ledger_events_offsets
// and its row in forward_state.
const ConsumerGroup = "forward"

// Sink is where the forwarder sends events (the NATS publisher).
type Sink interface {
	// Prepare readies the destination before the forwarder starts or
	// resumes (creates the stream when missing).
	Prepare(ctx context.Context) error
	// Publish sends e and returns once the destination has stored it;
	// duplicate reports that it recognised e by its id as one it already
	// had.
	Publish(ctx context.Context, e eventlog.StoredEvent) (duplicate bool, err error)
	// Contains reports whether the destination already has e, given that
	// events reach it in order, each after the one before it was
	// acknowledged.
	Contains(ctx context.Context, e eventlog.StoredEvent) (bool, error)
}

// Config configures a Forwarder.
type Config struct {
	DB     *sql.DB
	Sink   Sink
	Logger *slog.Logger
	// PollInterval is the pause after a poll that found nothing (default
	// 50 ms: it bounds the forwarding delay of an idle ledger).
	PollInterval time.Duration
	// BatchSize is the number of events read per poll (default 100): the
	// offset is committed once per batch, so a crash republishes at most
	// this many events, which the destination then recognises.
	BatchSize int
	// PublishTimeout bounds one publish (default 5 s).
	PublishTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure, doubled
	// from one failure to the next (defaults 250 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PollInterval == 0 {
		c.PollInterval = 50 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 250 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.DB == nil:
		return errors.New("forwarding: a database is required")
	case c.Sink == nil:
		return errors.New("forwarding: a sink is required")
	case c.PollInterval < 0, c.BatchSize < 0, c.PublishTimeout < 0, c.MinBackoff < 0, c.MaxBackoff < c.MinBackoff:
		return errors.New("forwarding: intervals and sizes must be positive, MaxBackoff at least MinBackoff")
	}
	return nil
}

// Outcomes of one event, as counted by ledger_forwarded_total.
const (
	// OutcomeStored: the destination stored it.
	OutcomeStored = "stored"
	// OutcomeDuplicate: the destination dropped it by its id (a publish
	// repeated within JetStream's duplicate window).
	OutcomeDuplicate = "duplicate"
	// OutcomePresent: found in the destination before publishing (an event
	// whose earlier publish had an unknown fate), so not published again.
	OutcomePresent = "present"
)

// Forwarder forwards the log to a Sink. One Run at a time per Forwarder;
// several processes may each run one: the subscriber's row lock lets one
// batch at a time through.
type Forwarder struct {
	cfg Config

	// The last event this process knows the destination has, in the
	// subscribers' order: an event at or before it that comes again (the
	// poll transaction that carried its offset rolled back) is not sent
	// again.
	last     cut
	haveLast bool
	// verify: the next events' fate is unknown (after a start or a failed
	// publish): ask the sink whether it has them before publishing, until
	// the first it does not have.
	verify bool
	// present counts the events of the current verification found in the
	// destination.
	present int
	// failing: a failure is recorded and no recovery since.
	failing bool

	forwarded *prometheus.CounterVec
	errors    prometheus.Counter
	delay     prometheus.Histogram
}

// cut is a place in the subscribers' order.
type cut struct {
	tx  uint64
	pos int64
}

func (c cut) after(o cut) bool { return c.tx > o.tx || c.tx == o.tx && c.pos > o.pos }

// New returns a Forwarder; Run starts it.
func New(cfg Config) (*Forwarder, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Forwarder{
		cfg:     cfg,
		verify:  true,
		failing: true, // a failure recorded by an earlier process is closed by the first success
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_forwarded_total",
			Help: "Events of the log forwarded by this process and acknowledged by NATS JetStream, by outcome: stored, duplicate (dropped by JetStream by Nats-Msg-Id), present (found in the stream, not sent again).",
		}, []string{"outcome"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledger_forward_errors_total",
			Help: "Failures to forward (NATS unreachable, publish not acknowledged in time) in this process; each is followed by a backoff and a retry.",
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ledger_forward_delay_seconds",
			Help:    "Time from an event's recorded_at to JetStream's acknowledgement of its publish, in this process.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
	}
	for _, o := range []string{OutcomeStored, OutcomeDuplicate, OutcomePresent} {
		f.forwarded.WithLabelValues(o)
	}
	return f, nil
}

// Collectors are the forwarder's own metrics (per process), for a
// registry; NewCollector has the ones read from the database.
func (f *Forwarder) Collectors() []prometheus.Collector {
	return []prometheus.Collector{f.forwarded, f.errors, f.delay}
}

// Run forwards until ctx ends; it returns nil then. Failures of the sink are
// logged, recorded in forward_state and retried after a backoff; nothing
// is skipped.
func (f *Forwarder) Run(ctx context.Context) error {
	backoff := f.cfg.MinBackoff
	for {
		n, err := f.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if n > 0 {
			backoff = f.cfg.MinBackoff
		}
		f.recordFailure(err, backoff)
		// Jitter, so that the processes of one ledger do not retry in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, f.cfg.MaxBackoff)
	}
}

// session runs one subscriber until ctx ends (nil) or the sink fails (the
// error), and returns how many events it forwarded.
func (f *Forwarder) session(ctx context.Context) (n int, err error) {
	pctx, cancel := context.WithTimeout(ctx, f.cfg.PublishTimeout)
	err = f.cfg.Sink.Prepare(pctx)
	cancel()
	if err != nil {
		return 0, err
	}
	sub, err := eventstore.NewSubscriber(f.cfg.DB, eventstore.SubscriberConfig{
		ConsumerGroup: ConsumerGroup,
		PollInterval:  f.cfg.PollInterval,
		BatchSize:     f.cfg.BatchSize,
		// Beyond this the subscriber gives the event up and delivers it
		// again; the publish has its own, shorter bound.
		AckDeadline: 2 * f.cfg.PublishTimeout,
		Logger:      f.cfg.Logger,
	})
	if err != nil {
		return 0, err
	}
	// The subscription does not end with ctx: cancelling the context of a
	// watermill-sql subscription rolls back the poll transaction, and with
	// it the offset of the events already published. Close ends the poll
	// in hand and commits the offset of the events acknowledged so far.
	msgs, err := sub.Subscribe(context.WithoutCancel(ctx), eventstore.EventsTopic)
	if err != nil {
		sub.Close()
		return 0, fmt.Errorf("forwarding: subscribe: %w", err)
	}
	defer func() {
		if cerr := sub.Close(); cerr != nil {
			f.cfg.Logger.Warn("forwarding: closing the subscriber", "error", cerr)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return n, nil
		case msg, ok := <-msgs:
			if !ok {
				return n, errors.New("forwarding: the subscriber stopped")
			}
			sent, err := f.forward(ctx, msg)
			if err != nil {
				// Neither acked nor nacked: Close ends the poll before it.
				return n, err
			}
			msg.Ack()
			if sent {
				n++
			}
		}
	}
}

// forward hands one event to the sink; sent is false for an event the
// destination is known to have.
func (f *Forwarder) forward(ctx context.Context, msg *message.Message) (sent bool, err error) {
	e, err := eventstore.EventFromMessage(msg)
	if err != nil {
		return false, err
	}
	c := cut{e.TransactionID, e.Position}
	if f.haveLast && !c.after(f.last) {
		return false, nil
	}
	// A publish under way finishes even when ctx ends (bounded by the
	// timeout), so that a shutdown commits it.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.PublishTimeout)
	defer cancel()
	outcome := OutcomeStored
	if f.verify {
		has, err := f.cfg.Sink.Contains(pctx, e)
		if err != nil {
			return false, err
		}
		if has {
			outcome = OutcomePresent
			f.present++
		} else {
			f.verify = false
			if f.present > 0 {
				f.cfg.Logger.Info("Events already in the stream were not published again", "events", f.present, "next_position", e.Position)
				f.present = 0
			}
		}
	}
	if outcome != OutcomePresent {
		dup, err := f.cfg.Sink.Publish(pctx, e)
		if err != nil {
			f.verify = true
			return false, err
		}
		if dup {
			outcome = OutcomeDuplicate
		}
		f.delay.Observe(time.Since(e.RecordedAt).Seconds())
	}
	f.last, f.haveLast = c, true
	f.forwarded.WithLabelValues(outcome).Inc()
	if f.failing {
		f.recordRecovery(ctx)
	}
	return true, nil
}
