// Package forwarding runs the forwarder of the log: it reads the log as a
// consumer group of its own ("forward", an offset in ledger_events_offsets
// like every subscriber's, read and moved with the watermill-sql
// subscriber's own queries: eventstore.ReadGroup, AckGroup), hands each
// batch of committed events to a Sink (cmd/ledger wires the NATS JetStream
// publisher of adapters/nats), and moves the offset, in the batch's
// transaction, only past events the sink has acknowledged. One batch at a
// time across processes (a transaction-level advisory lock); the batch's
// transaction takes no transaction id before its final acknowledgement,
// so waiting for NATS never holds back the log's other subscribers.
//
// Order: the events of one booking reach the sink one after the other, each
// sent only once the one before it was acknowledged; events of different
// bookings are sent together, in waves (the first event of every booking
// of the batch, then the second, ...), so a batch costs a few round trips
// to the broker rather than one per event. A booking's events are thus
// stored in its log order whatever fails, and the stream's order across
// bookings is the log's within a wave.
//
// Exactly once: the offset is committed with the batch; a batch re-read
// after a failure skips what this process knows the sink has, and asks the
// sink (Contains) about each event whose fate is unknown (sent, no answer;
// or, after a start, within the first batch after the offset, which a
// previous process may have sent) before sending it again.
//
// Failures (the broker down, a publish not acknowledged in time) end the
// batch at once, committing the acknowledged prefix; the forwarder backs
// off exponentially, outside any transaction, and resumes from the offset.
package forwarding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-ledger/ledger/adapters/postgres/eventstore"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// ConsumerGroup is the forwarder's consumer group in ledger_events_offsets
// and its row in forward_state.
const ConsumerGroup = "forward"

// lockClass is the first key of the advisory lock that lets one batch of
// one forwarder at a time through (the two-key space, apart from the
// resource locks).
const lockClass = 0x0f3d

// Sink is where the forwarder sends events (the NATS publisher).
type Sink interface {
	// Prepare readies the destination before the forwarder starts or
	// resumes (creates the stream when missing).
	Prepare(ctx context.Context) error
	// PublishAsync sends e without waiting; wait returns once the
	// destination stored it (duplicate: it recognised e by its id as one
	// it already had) or failed. An error means e was not sent.
	PublishAsync(e eventlog.StoredEvent) (wait func(ctx context.Context) (duplicate bool, err error), err error)
	// Contains reports whether the destination already has e, given that
	// each booking's events reach it in order, each after the one before it
	// was acknowledged.
	Contains(ctx context.Context, e eventlog.StoredEvent) (bool, error)
}

// Config configures a Forwarder.
type Config struct {
	DB     *sql.DB
	Sink   Sink
	Logger *slog.Logger
	// PollInterval is the pause after a batch that was not full (default
	// 25 ms: it bounds the forwarding delay of a quiet ledger).
	PollInterval time.Duration
	// BatchSize is the number of events read per batch (default 500).
	BatchSize int
	// PublishTimeout bounds the wait for the acknowledgements of one wave of
	// sends, and for one lookup (default 5 s).
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
		c.PollInterval = 25 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
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
	// OutcomeDuplicate: the destination dropped it by its id (sent again
	// within JetStream's duplicate window).
	OutcomeDuplicate = "duplicate"
	// OutcomePresent: found in the destination before sending (an event
	// whose earlier send had an unknown fate), so not sent again.
	OutcomePresent = "present"
)

// Forwarder forwards the log to a Sink. One Run at a time per Forwarder;
// several processes may each run one: an advisory lock lets one batch at a
// time through.
type Forwarder struct {
	cfg Config

	// known: events the destination acknowledged (or was found to have)
	// that the offset may not cover yet (a batch that failed part-way, a
	// commit that failed), with their place, so a re-read skips them.
	known map[string]cut
	// unknown: events sent whose acknowledgement never came.
	unknown map[string]bool
	// verifyLeft: the next events after the offset that a previous process
	// may have sent (one batch, at start).
	verifyLeft int
	// present counts the events of the batch found in the destination,
	// for one log line.
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

func cutOf(e eventlog.StoredEvent) cut { return cut{e.TransactionID, e.Position} }

func (c cut) after(o cut) bool { return c.tx > o.tx || c.tx == o.tx && c.pos > o.pos }

// New returns a Forwarder; Run starts it.
func New(cfg Config) (*Forwarder, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Forwarder{
		cfg:        cfg,
		known:      map[string]cut{},
		unknown:    map[string]bool{},
		verifyLeft: cfg.BatchSize,
		failing:    true, // a failure recorded by an earlier process is closed by the first success
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

// Run forwards until ctx ends; it returns nil then, after the batch in
// hand (bounded by PublishTimeout) is acknowledged and committed. Failures
// are logged, recorded in forward_state and retried after a backoff;
// nothing is skipped.
func (f *Forwarder) Run(ctx context.Context) error {
	backoff := f.cfg.MinBackoff
	prepared := false
	for ctx.Err() == nil {
		var n, read int
		err := func() error {
			if prepared {
				return nil
			}
			pctx, cancel := context.WithTimeout(ctx, f.cfg.PublishTimeout)
			defer cancel()
			if err := eventstore.JoinGroup(pctx, f.cfg.DB, ConsumerGroup); err != nil {
				return err
			}
			return f.cfg.Sink.Prepare(pctx)
		}()
		if err == nil {
			prepared = true
			n, read, err = f.batch(ctx)
		}
		if n > 0 {
			backoff = f.cfg.MinBackoff
		}
		wait := f.cfg.PollInterval
		switch {
		case err != nil:
			prepared = false // the stream may be gone: make sure of it again
			f.recordFailure(err, backoff)
			// Jitter, so that the processes of one ledger do not retry in step.
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, f.cfg.MaxBackoff)
		case read == f.cfg.BatchSize:
			continue // more is waiting
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// batch forwards one batch and returns how many of its events are now
// forwarded and committed, and how many it read.
func (f *Forwarder) batch(ctx context.Context) (done, read int, err error) {
	// The batch finishes even when ctx ends (each wait is bounded), so
	// that a shutdown commits what was sent.
	bctx := context.WithoutCancel(ctx)
	tx, err := f.cfg.DB.BeginTx(bctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("forwarding: begin: %w", err)
	}
	defer tx.Rollback()
	// One batch at a time across processes. An advisory lock, not the
	// offset row's: a row lock would give this transaction an id while it
	// waits for NATS, and hold back every other subscriber of the log
	// meanwhile. Then the batch's statement reads the offset the previous
	// holder committed.
	var mine bool
	if err := tx.QueryRowContext(bctx, `SELECT pg_try_advisory_xact_lock($1, 0)`, lockClass).Scan(&mine); err != nil {
		return 0, 0, fmt.Errorf("forwarding: lock: %w", err)
	}
	if !mine {
		return 0, 0, nil // another process is forwarding a batch
	}
	events, err := eventstore.ReadGroup(bctx, tx, ConsumerGroup, f.cfg.BatchSize)
	if err != nil || len(events) == 0 {
		return 0, 0, err
	}
	done, sendErr := f.send(bctx, events)
	if done > 0 {
		last := events[done-1]
		if err := eventstore.AckGroup(bctx, tx, ConsumerGroup, last); err != nil {
			return 0, len(events), errors.Join(sendErr, err)
		}
		if err := tx.Commit(); err != nil {
			return 0, len(events), errors.Join(sendErr, fmt.Errorf("forwarding: commit: %w", err))
		}
		if done == len(events) {
			// A previous process's last batch began at the offset this
			// batch began at, and the log only grows after it: it was at
			// most this batch.
			f.verifyLeft = 0
		} else {
			f.verifyLeft = max(0, f.verifyLeft-done)
		}
		c := cutOf(last)
		for id, k := range f.known {
			if !k.after(c) {
				delete(f.known, id)
			}
		}
	}
	return done, len(events), sendErr
}

// send forwards events (in the subscribers' order) in waves, each
// booking's next event per wave, and returns the length of the prefix of
// events the destination now has, and the first failure.
func (f *Forwarder) send(ctx context.Context, events []eventlog.StoredEvent) (int, error) {
	have := make([]bool, len(events))
	queues := map[int64][]int{}
	var bookings []int64
	for i, e := range events {
		if _, ok := f.known[e.EventID]; ok {
			have[i] = true
			continue
		}
		if len(queues[e.StreamID]) == 0 {
			bookings = append(bookings, e.StreamID)
		}
		queues[e.StreamID] = append(queues[e.StreamID], i)
	}
	type inFlight struct {
		i    int
		wait func(context.Context) (bool, error)
	}
	var wave []inFlight
	var failed error
	for failed == nil {
		wave = wave[:0]
		for _, b := range bookings {
			q := queues[b]
			if len(q) == 0 {
				continue
			}
			i := q[0]
			queues[b] = q[1:]
			e := events[i]
			if f.unknown[e.EventID] || i < f.verifyLeft {
				has, err := f.contains(ctx, e)
				if err != nil {
					failed = err
					break
				}
				if has {
					have[i] = true
					continue // its booking's next event goes in the next wave
				}
			}
			wait, err := f.cfg.Sink.PublishAsync(e)
			if err != nil {
				failed = err
				break
			}
			wave = append(wave, inFlight{i, wait})
		}
		if len(wave) == 0 && failed == nil {
			if !anyLeft(queues) {
				break
			}
			continue // only events found present in this wave
		}
		// Every send of the wave is waited for, also after a failure, so
		// that what was stored is known; all within one PublishTimeout,
		// since they left together.
		wctx, cancel := context.WithTimeout(ctx, f.cfg.PublishTimeout)
		for _, s := range wave {
			e := events[s.i]
			dup, err := s.wait(wctx)
			if err != nil {
				f.unknown[e.EventID] = true
				if failed == nil {
					failed = fmt.Errorf("forwarding: event %d: %w", e.Position, err)
				}
				continue
			}
			delete(f.unknown, e.EventID)
			have[s.i] = true
			f.known[e.EventID] = cutOf(e)
			outcome := OutcomeStored
			if dup {
				outcome = OutcomeDuplicate
			}
			f.forwarded.WithLabelValues(outcome).Inc()
			f.delay.Observe(time.Since(e.RecordedAt).Seconds())
		}
		cancel()
	}
	if f.present > 0 {
		f.cfg.Logger.Info("Events already in the stream were not published again", "events", f.present)
		f.present = 0
	}
	done := 0
	for done < len(have) && have[done] {
		done++
	}
	if done > 0 && f.failing {
		f.recordRecovery(ctx)
	}
	return done, failed
}

func anyLeft(queues map[int64][]int) bool {
	for _, q := range queues {
		if len(q) > 0 {
			return true
		}
	}
	return false
}

// contains asks the destination about an event whose fate is unknown.
func (f *Forwarder) contains(ctx context.Context, e eventlog.StoredEvent) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, f.cfg.PublishTimeout)
	defer cancel()
	has, err := f.cfg.Sink.Contains(cctx, e)
	if err != nil {
		return false, fmt.Errorf("forwarding: is event %d in the stream: %w", e.Position, err)
	}
	delete(f.unknown, e.EventID)
	if has {
		f.known[e.EventID] = cutOf(e)
		f.forwarded.WithLabelValues(OutcomePresent).Inc()
		f.present++
	}
	return has, nil
}
